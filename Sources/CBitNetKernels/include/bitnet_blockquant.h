// Block-quantized weight formats for the output head / embedding (q8, q6, q4) and batched GEMVs ("GEMM" for a
// few tokens) over them and over f16 weights.
//
// Weight = d * q with one scale d per block of 32 weights; rows are contiguous, row r at w + r * row_stride bytes
// (row_stride >= bitnet_bq_row_stride(format, cols)); no alignment is required. The tail of a row is padded with
// q = 0 (and scale 0 for blocks past the end).
//
//   q8 (BITNET_BQ_Q8, 36 bytes per 32 weights = 9 bits/weight): the q8 layout of bitnet_dense.h: f32 d (little
//       endian), then 32 int8 q in [-127, 127]; d = absmax / 127 (exact f32, not rounded further).
//   q6 (BITNET_BQ_Q6) and q4 (BITNET_BQ_Q4): groups of BITNET_BQ_GROUP = 128 weights (4 blocks), laid out for
//       64-byte vectors. Codes are stored unsigned, c = q + 32 (q6, q in [-31, 31]) or c = q + 8 (q4, q in [-7, 7]).
//       bytes 0-7     four f16 scales d_0..d_3 (block b = weights 32b .. 32b + 31 of the group)
//       bytes 8-71    ql[j] = (c_j & 15) | (c_{j+64} & 15) << 4                      (j < 64)
//       q6 only: bytes 72-103  qh[j] = sum_{k<4} (c_{j+32k} >> 4) << 2k               (j < 32)
//       A group takes 104 bytes (q6, 6.5 bits/weight) or 72 bytes (q4, 4.5 bits/weight); a row takes
//       ceil(cols / 128) groups.
//
// Quantization of q6/q4 (Q = 31 or 7), per block: d = the smallest f16 >= absmax / Q (rounded UP, so
// |x| / d <= Q and no code is clamped: every element's round-trip error is <= d / 2, subnormal scales included),
// q = round-half-to-even(x / d). An all-zero block has d = 0, q = 0. Edge cases: NaN elements get q = 0 (and are
// ignored by absmax); a block with absmax / Q > 65504 (the largest f16; e.g. an inf element) saturates to
// d = 65504 with codes clamped to [-Q, Q].
//
// q8 GEMV: y[r] = sum_b d_b * (sum_{i<32} q_{b,i} * x[32 b + i]), each block sum in f32, f32 activations.
// q6/q4 GEMV (integer products, as llama.cpp runs its k-quants against q8 activations): the activations are first
// quantized per block of 32 to int8 (bitnet_bq_quantize_activations: e = absmax / 127, x_q = round-half-even(x *
// (127 / absmax)) in [-127, 127]); then y[r] = sum_b (d_b * e_b) * S_b where S_b = sum_i q_{b,i} * x_q[32 b + i]
// is exact in int32. The float sums' order differs between paths (AVX-512 VNNI, AVX2, portable), the integer S_b
// do not.
// GEMM: the same for ntok tokens, X[t, j] at x + t * ldx + j, Y[t, r] at y + t * ldy + r; register tiles of up to
// 4 rows x 4 tokens, so the weights stream from memory once for all tokens. For every path the GEMM's Y[t, :] is
// bit-identical to the GEMV of X[t, :] on the same path (same operations per output), and no result depends on
// the row split [r0, r1).
#ifndef BITNET_BLOCKQUANT_H
#define BITNET_BLOCKQUANT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BITNET_BQ_Q8 0
#define BITNET_BQ_Q6 1
#define BITNET_BQ_Q4 2

/// Weights per scale block (all formats).
#define BITNET_BQ_BLOCK 32
/// Weights per q6/q4 group (4 blocks).
#define BITNET_BQ_GROUP 128
#define BITNET_Q6_GROUP_BYTES 104
#define BITNET_Q4_GROUP_BYTES 72

/// Weights per storage unit: 32 (a q8 block) or 128 (a q6/q4 group); 0 for an unknown format.
size_t bitnet_bq_group_size(int format);

/// Bytes per storage unit: 36 (q8), 104 (q6) or 72 (q4); 0 for an unknown format.
size_t bitnet_bq_group_bytes(int format);

/// Bytes per row: ceil(cols / group size) * group bytes.
size_t bitnet_bq_row_stride(int format, size_t cols);

/// Bytes of one token's quantized activations for the q6/q4 kernels (ceil(cols / 128) * 272).
size_t bitnet_bq_act_bytes(size_t cols);

/// The activation quantization of the q6/q4 GEMV, exposed for tests: q[ceil(cols / 128) * 128] int8 (zero padded),
/// d[ceil(cols / 32) rounded up to groups] f32 scales e_b, corr[groups * 32] = -offset * (sum of 4 consecutive q).
void bitnet_bq_quantize_activations(int format, const float *x, size_t cols, int8_t *q, float *d, int32_t *corr);

/// Quantizes row-major f32 (row r at src + r * ld, ld >= cols) into rows [r0, r1) of dst (row r at
/// dst + r * bitnet_bq_row_stride(format, cols)).
void bitnet_bq_quantize(int format, const float *src, size_t ld, size_t cols, uint8_t *dst, size_t r0, size_t r1);

/// dst[j] = d * q for one row (`cols` values): the embedding lookup.
void bitnet_bq_dequantize_row(int format, const uint8_t *row, size_t cols, float *dst);

/// Dequantizes rows [r0, r1) (row r at src + r * row_stride) to f32 rows at dst + r * ld.
void bitnet_bq_dequantize(int format, const uint8_t *src, size_t row_stride, size_t cols, float *dst, size_t ld,
                          size_t r0, size_t r1);

/// y[r] = sum_b d_b * sum_i q_{b,i} * x[32 b + i] for r in [r0, r1); x has `cols` values (no padding needed).
/// Arguments of bitnet_bq_gemv / bitnet_f16_gemv as structs, for bitnet_pool_split_rows (no closure per call).
typedef struct { int format; const uint8_t *w; size_t row_stride, cols; const float *x; float *y; } bitnet_bq_gemv_args;
void bitnet_bq_gemv_rows(const void *args, size_t r0, size_t r1);
typedef struct { const uint16_t *w; size_t ld, cols; const float *x; float *y; } bitnet_f16_gemv_args;
void bitnet_f16_gemv_rows(const void *args, size_t r0, size_t r1);

void bitnet_bq_gemv(int format, const uint8_t *w, size_t row_stride, size_t cols, const float *x, float *y,
                    size_t r0, size_t r1);

/// Portable reference of bitnet_bq_gemv: scalar f32, columns in order within a block.
void bitnet_bq_gemv_ref(int format, const uint8_t *w, size_t row_stride, size_t cols, const float *x, float *y,
                        size_t r0, size_t r1);

/// Y[t, r] = sum_j W[r, j] * X[t, j] for t < ntok, r in [r0, r1); bit-identical to bitnet_bq_gemv of X[t, :].
void bitnet_bq_gemm(int format, const uint8_t *w, size_t row_stride, size_t cols, const float *x, size_t ldx,
                    size_t ntok, float *y, size_t ldy, size_t r0, size_t r1);

/// Portable reference of bitnet_bq_gemm (bit-identical to bitnet_bq_gemv_ref per token).
void bitnet_bq_gemm_ref(int format, const uint8_t *w, size_t row_stride, size_t cols, const float *x, size_t ldx,
                        size_t ntok, float *y, size_t ldy, size_t r0, size_t r1);

/// f16 weights (row r at w + r * ld halves): Y[t, r] = sum_j W[r, j] * X[t, j] for t < ntok, r in [r0, r1);
/// bit-identical to bitnet_f16_gemv of X[t, :] on the same path.
void bitnet_f16_gemm(const uint16_t *w, size_t ld, size_t cols, const float *x, size_t ldx, size_t ntok, float *y,
                     size_t ldy, size_t r0, size_t r1);

/// Portable reference of bitnet_f16_gemm (bit-identical to bitnet_f16_gemv_ref per token).
void bitnet_f16_gemm_ref(const uint16_t *w, size_t ld, size_t cols, const float *x, size_t ldx, size_t ntok,
                         float *y, size_t ldy, size_t r0, size_t r1);

#ifdef __cplusplus
}
#endif

#endif
