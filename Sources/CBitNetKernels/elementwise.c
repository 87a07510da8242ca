// Elementwise kernels: AVX2 versions under target attributes, chosen at run time, and portable versions (also
// callable on their own as the _ref entry points).
#include "cpu_features.h"
#include "dense_simd.h"
#include "bitnet_elementwise.h"
#include <math.h>

// MARK: path

// The path a CPU with `features` takes.
static int elementwise_level(unsigned features) {
    return bitnet_cpu_has(features, BITNET_CPU_AVX2 | BITNET_CPU_FMA) ? BITNET_ELEMENTWISE_AVX2 : BITNET_ELEMENTWISE_PORTABLE;
}

static int elementwise_isa_selected = -1;

int bitnet_elementwise_isa(void) { return bitnet_isa_selected(&elementwise_isa_selected, elementwise_level); }

int bitnet_elementwise_set_isa(int isa) { return bitnet_isa_select(&elementwise_isa_selected, elementwise_level, isa); }

const char *bitnet_elementwise_isa_name(void) {
    return bitnet_elementwise_isa() == BITNET_ELEMENTWISE_AVX2 ? "avx2" : "portable";
}

#ifdef BITNET_X86
static int has_avx2(void) { return bitnet_elementwise_isa() == BITNET_ELEMENTWISE_AVX2; }
#endif

// MARK: portable

static float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

static void quantize_portable(const float *x, size_t n, float s, float qn, float qp, float *dq, int8_t *codes) {
    for (size_t i = 0; i < n; i++) {
        float q = clampf(nearbyintf(x[i] * s), qn, qp);   // default rounding mode: ties to even
        if (dq) dq[i] = q / s;
        if (codes) codes[i] = (int8_t)q;
    }
}

static float absmax_portable(const float *x, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) { float a = fabsf(x[i]); if (a > m) m = a; }
    return m;
}

static void swiglu_fwd_portable(float *h, const float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) { float x = g[i]; h[i] = x / (1.0f + expf(-x)) * u[i]; }
}

static void swiglu_bwd_portable(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = g[i], s = 1.0f / (1.0f + expf(-x));
        du[i] = dh[i] * x * s;
        dg[i] = dh[i] * u[i] * s * (1.0f + x * (1.0f - s));
    }
}

static double exp_sum_portable(const float *x, float *out, size_t n, float shift) {
    double sum = 0;
    for (size_t i = 0; i < n; i++) { float e = expf(x[i] - shift); if (out) out[i] = e; sum += e; }
    return sum;
}

#ifdef BITNET_X86
// MARK: AVX2

__attribute__((target("avx2,fma")))
static float absmax_avx2(const float *x, size_t n) {
    const __m256 signmask = _mm256_set1_ps(-0.0f);
    // Four running maxima, not one dependent max per 8 values (max is exact in any order).
    __m256 m = _mm256_setzero_ps(), m1 = m, m2 = m, m3 = m;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        m = _mm256_max_ps(m, _mm256_andnot_ps(signmask, _mm256_loadu_ps(x + i)));
        m1 = _mm256_max_ps(m1, _mm256_andnot_ps(signmask, _mm256_loadu_ps(x + i + 8)));
        m2 = _mm256_max_ps(m2, _mm256_andnot_ps(signmask, _mm256_loadu_ps(x + i + 16)));
        m3 = _mm256_max_ps(m3, _mm256_andnot_ps(signmask, _mm256_loadu_ps(x + i + 24)));
    }
    m = _mm256_max_ps(_mm256_max_ps(m, m1), _mm256_max_ps(m2, m3));
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(signmask, _mm256_loadu_ps(x + i)));
    float buf[8];
    _mm256_storeu_ps(buf, m);
    float r = 0;
    for (int j = 0; j < 8; j++) if (buf[j] > r) r = buf[j];
    for (; i < n; i++) { float a = fabsf(x[i]); if (a > r) r = a; }
    return r;
}

__attribute__((target("avx2,fma")))
static void quantize_avx2(const float *x, size_t n, float s, float qn, float qp, float *dq, int8_t *codes) {
    const __m256 vs = _mm256_set1_ps(s), vlo = _mm256_set1_ps(qn), vhi = _mm256_set1_ps(qp);
    size_t i = 0;
    if (!dq && codes && qn >= -128 && qp <= 127) {
        // Codes only (the decode path): 32 at a time, int32 -> int8 by saturating packs (exact: the values are
        // clamped to int8 already), whose 128-bit lane interleave one permutation undoes.
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (; i + 32 <= n; i += 32) {
            __m256i q[4];
            for (int k = 0; k < 4; k++) {
                const __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                q[k] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, vlo), vhi));
            }
            const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            _mm256_storeu_si256((__m256i *)(codes + i), _mm256_permutevar8x32_epi32(b, order));
        }
    }
    for (; i + 8 <= n; i += 8) {
        __m256 q = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q = _mm256_min_ps(_mm256_max_ps(q, vlo), vhi);
        if (dq) _mm256_storeu_ps(dq + i, _mm256_div_ps(q, vs));
        if (codes) {
            __m256i qi = _mm256_cvtps_epi32(q);
            int32_t tmp[8];
            _mm256_storeu_si256((__m256i *)tmp, qi);
            for (int j = 0; j < 8; j++) codes[i + j] = (int8_t)tmp[j];
        }
    }
    if (i < n) quantize_portable(x + i, n - i, s, qn, qp, dq ? dq + i : NULL, codes ? codes + i : NULL);
}

__attribute__((target("avx2,fma")))
static void swiglu_fwd_avx2(float *h, const float *g, const float *u, size_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(zero, x))));
        _mm256_storeu_ps(h + i, _mm256_mul_ps(_mm256_mul_ps(x, sig), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) { float x = g[i]; h[i] = x / (1.0f + expf(-x)) * u[i]; }
}

__attribute__((target("avx2,fma")))
static void swiglu_bwd_avx2(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i), d = _mm256_loadu_ps(dh + i);
        __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(zero, x))));
        _mm256_storeu_ps(du + i, _mm256_mul_ps(d, _mm256_mul_ps(x, s)));
        // silu'(x) = s (1 + x (1 - s))
        __m256 ds = _mm256_mul_ps(s, _mm256_fmadd_ps(x, _mm256_sub_ps(one, s), one));
        _mm256_storeu_ps(dg + i, _mm256_mul_ps(_mm256_mul_ps(d, _mm256_loadu_ps(u + i)), ds));
    }
    for (; i < n; i++) {
        float x = g[i], s = 1.0f / (1.0f + expf(-x));
        du[i] = dh[i] * x * s;
        dg[i] = dh[i] * u[i] * s * (1.0f + x * (1.0f - s));
    }
}

__attribute__((target("avx2,fma")))
static double exp_sum_avx2(const float *x, float *out, size_t n, float shift) {
    const __m256 vs = _mm256_set1_ps(shift);
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs));
        if (out) _mm256_storeu_ps(out + i, e);
        acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double buf[4];
    _mm256_storeu_pd(buf, _mm256_add_pd(acc0, acc1));
    double sum = buf[0] + buf[1] + buf[2] + buf[3];
    for (; i < n; i++) { float e = expf(x[i] - shift); if (out) out[i] = e; sum += e; }
    return sum;
}
#endif

// MARK: dispatch

float bitnet_absmax(const float *x, size_t n) {
#ifdef BITNET_X86
    if (has_avx2()) return absmax_avx2(x, n);
#endif
    return absmax_portable(x, n);
}

float bitnet_absmax_ref(const float *x, size_t n) { return absmax_portable(x, n); }

void bitnet_absmax_quantize(const float *x, size_t n, float gamma, float qn, float qp, float eps, float *dequant, int8_t *codes) {
    float s = qp / (gamma + eps);
#ifdef BITNET_X86
    if (has_avx2()) { quantize_avx2(x, n, s, qn, qp, dequant, codes); return; }
#endif
    quantize_portable(x, n, s, qn, qp, dequant, codes);
}

void bitnet_absmax_quantize_ref(const float *x, size_t n, float gamma, float qn, float qp, float eps, float *dequant,
                                int8_t *codes) {
    quantize_portable(x, n, qp / (gamma + eps), qn, qp, dequant, codes);
}

void bitnet_quantize_rows(const float *x, float *out, size_t row_begin, size_t row_end, size_t cols, size_t groups,
                          float qn, float qp, float eps) {
    size_t gs = cols / groups;
    for (size_t r = row_begin; r < row_end; r++) {
        for (size_t g = 0; g < groups; g++) {
            const float *p = x + r * cols + g * gs;
            bitnet_absmax_quantize(p, gs, bitnet_absmax(p, gs), qn, qp, eps, out + r * cols + g * gs, NULL);
        }
    }
}

void bitnet_swiglu_forward(float *h, const float *g, const float *u, size_t n) {
#ifdef BITNET_X86
    if (has_avx2()) { swiglu_fwd_avx2(h, g, u, n); return; }
#endif
    swiglu_fwd_portable(h, g, u, n);
}

void bitnet_swiglu_forward_ref(float *h, const float *g, const float *u, size_t n) { swiglu_fwd_portable(h, g, u, n); }

void bitnet_swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n) {
#ifdef BITNET_X86
    if (has_avx2()) { swiglu_bwd_avx2(dg, du, dh, g, u, n); return; }
#endif
    swiglu_bwd_portable(dg, du, dh, g, u, n);
}

void bitnet_swiglu_backward_ref(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n) {
    swiglu_bwd_portable(dg, du, dh, g, u, n);
}

double bitnet_exp_shifted_sum(const float *x, float *out, size_t n, float shift) {
#ifdef BITNET_X86
    if (has_avx2()) return exp_sum_avx2(x, out, n, shift);
#endif
    return exp_sum_portable(x, out, n, shift);
}

double bitnet_exp_shifted_sum_ref(const float *x, float *out, size_t n, float shift) { return exp_sum_portable(x, out, n, shift); }
