// The path of the dense and block-quantized kernels (bitnet_dense_isa) and the f16 <-> f32 conversions of
// bitnet_dense.h: the pieces dense.c and blockquant.c share (see quant_common.h).
#include "cpu_features.h"
#include "dense_simd.h"
#include "quant_common.h"

// MARK: - path

// The path a CPU with `features` takes.
static int dense_level(unsigned features) {
    if (!bitnet_cpu_has(features, BITNET_CPU_AVX2 | BITNET_CPU_FMA | BITNET_CPU_F16C)) return BITNET_DENSE_PORTABLE;
    if (bitnet_cpu_has(features, BITNET_CPU_AVX512F | BITNET_CPU_AVX512BW | BITNET_CPU_AVX512VL)) return BITNET_DENSE_AVX512;
    return BITNET_DENSE_AVX2;
}

static int dense_isa_selected = -1;

int bitnet_dense_isa(void) { return bitnet_isa_selected(&dense_isa_selected, dense_level); }

int bitnet_dense_set_isa(int isa) { return bitnet_isa_select(&dense_isa_selected, dense_level, isa); }

const char *bitnet_dense_isa_name(void) {
    switch (bitnet_dense_isa()) {
    case BITNET_DENSE_AVX512: return "avx512";
    case BITNET_DENSE_AVX2: return "avx2";
    default: return "portable";
    }
}

// MARK: - f16 conversion

float bitnet_f16_to_f32_scalar(uint16_t h) { return f16_to_f32_inline(h); }

uint16_t bitnet_f32_to_f16_scalar(float f) { return f32_to_f16_inline(f); }

#ifdef BITNET_X86
__attribute__((target("avx2,f16c")))
static void f32_to_f16_f16c(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = f32_to_f16_inline(src[i]);
}

__attribute__((target("avx2,f16c")))
static void f16_to_f32_f16c(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = f16_to_f32_inline(src[i]);
}
#endif

void bitnet_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
#ifdef BITNET_X86
    if (bitnet_dense_isa() >= BITNET_DENSE_AVX2) { f32_to_f16_f16c(src, dst, n); return; }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_f16_inline(src[i]);
}

void bitnet_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
#ifdef BITNET_X86
    if (bitnet_dense_isa() >= BITNET_DENSE_AVX2) { f16_to_f32_f16c(src, dst, n); return; }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32_inline(src[i]);
}
