// Private helpers shared by dense.c and blockquant.c (x86 SIMD only).
#ifndef BITNET_DENSE_SIMD_H
#define BITNET_DENSE_SIMD_H

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BITNET_X86 1

#define AVX512_ATTR __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))
#define AVX2_ATTR __attribute__((target("avx2,fma,f16c")))

/// Horizontal sum of 8 floats in a fixed order ((lo + hi) halves, then pairs), so results are reproducible.
AVX2_ATTR
static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

#endif
