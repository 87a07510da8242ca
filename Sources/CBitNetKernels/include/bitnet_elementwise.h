// Elementwise hot loops of training and inference: activation quantization (Eq. 6-7) and the gated FFN
// activations. AVX2 paths picked at run time with a portable C fallback that gives identical results
// for the quantizer (same float operations) and results within a few ulp for exp-based functions.
#ifndef BITNET_ELEMENTWISE_H
#define BITNET_ELEMENTWISE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - paths

#define BITNET_ELEMENTWISE_PORTABLE 0
#define BITNET_ELEMENTWISE_AVX2 1   /* AVX2 + FMA, 256-bit */

/// The path the kernels below take: AVX2 where the CPU has AVX2 + FMA, unless BITNET_ISA=portable (read once)
/// forces the portable one or bitnet_elementwise_set_isa overrode it.
int bitnet_elementwise_isa(void);

/// "avx2" or "portable".
const char *bitnet_elementwise_isa_name(void);

/// Selects a path (tests, benchmarks), capped at what the CPU supports; returns the path now in effect.
/// Not meant to be called while the kernels run on other threads.
int bitnet_elementwise_set_isa(int isa);

// MARK: - kernels (each has a portable _ref twin, the same on every path)

/// Absmax quantization of one vector with a given gamma (Eq. 6): q = clamp(round_half_even(x * s), qn, qp),
/// s = qp / (gamma + eps). Writes q / s to `dequant` and/or q to `codes` (either may be NULL).
void bitnet_absmax_quantize(const float *x, size_t n, float gamma, float qn, float qp, float eps,
                            float *dequant, int8_t *codes);
void bitnet_absmax_quantize_ref(const float *x, size_t n, float gamma, float qn, float qp, float eps,
                                float *dequant, int8_t *codes);

/// max_i |x_i| (Eq. 7).
float bitnet_absmax(const float *x, size_t n);
float bitnet_absmax_ref(const float *x, size_t n);

/// Per-row (per-group) absmax fake quantization of a [rows, cols] matrix: each row splits into `groups` groups
/// of cols/groups features with their own gamma. Rows in [row_begin, row_end).
void bitnet_quantize_rows(const float *x, float *out, size_t row_begin, size_t row_end, size_t cols,
                          size_t groups, float qn, float qp, float eps);

/// SwiGLU: h = silu(g) * u.
void bitnet_swiglu_forward(float *h, const float *g, const float *u, size_t n);
void bitnet_swiglu_forward_ref(float *h, const float *g, const float *u, size_t n);
/// dg = dh * u * silu'(g), du = dh * silu(g).
void bitnet_swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n);
void bitnet_swiglu_backward_ref(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n);

/// out[i] = exp(x[i] - shift); returns the sum of the outputs (in double).
double bitnet_exp_shifted_sum(const float *x, float *out, size_t n, float shift);
double bitnet_exp_shifted_sum_ref(const float *x, float *out, size_t n, float shift);

#ifdef __cplusplus
}
#endif
#endif
