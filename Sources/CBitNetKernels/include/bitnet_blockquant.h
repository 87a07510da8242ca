// Block-quantized weight formats for the output head / embedding (q8, q6, q4) and batched GEMVs ("GEMM" for a
// few tokens) over them and over f16 weights.
//
// Every format cuts each row into ceil(cols / 32) blocks of 32 weights, weight = d * q with one scale d per block;
// rows are contiguous, row r at w + r * row_stride bytes (row_stride >= bitnet_bq_row_stride(format, cols)); no
// alignment is required. The tail of a row's last block is padded with q = 0.
//
//   q8 (BITNET_BQ_Q8, 36 bytes = 9 bits/weight): the q8 layout of bitnet_dense.h: f32 d (little endian), then
//       32 int8 q in [-127, 127]; d = absmax / 127 (exact f32, not rounded further).
//   q6 (BITNET_BQ_Q6, 26 bytes = 6.5 bits/weight): bytes 0-1 f16 d; with c_i = q_i + 32 in [1, 63]:
//       bytes 2-17  ql[k] = (c_k & 15) | (c_{k+16} & 15) << 4                      (k < 16, low nibbles)
//       bytes 18-25 qh[k] = sum_{g<4} (c_{k+8g} >> 4) << 2g                         (k < 8, high 2 bits)
//       q in [-31, 31]; padding c = 32.
//   q4 (BITNET_BQ_Q4, 18 bytes = 4.5 bits/weight): bytes 0-1 f16 d; bytes 2-17 b[k] = c_k | c_{k+16} << 4 with
//       c_i = q_i + 8 in [1, 15]; q in [-7, 7]; padding c = 8.
//
// Quantization of q6/q4 (Q = 31 or 7), per block: d = the smallest f16 >= absmax / Q (rounded UP, so
// |x| / d <= Q and no code is clamped: every element's round-trip error is <= d / 2, subnormal scales included),
// q = round-half-to-even(x / d). An all-zero block has d = 0, q = 0. Edge cases: NaN elements get q = 0 (and are
// ignored by absmax); a block with absmax / Q > 65504 (the largest f16; e.g. an inf element) saturates to
// d = 65504 with codes clamped to [-Q, Q].
//
// GEMV: y[r] = sum_b d_b * (sum_{i<32} q_{b,i} * x[32 b + i]), each block sum in f32, f32 activations (no
// activation quantization). GEMM: the same for ntok tokens, X[t, j] at x + t * ldx + j, Y[t, r] at y + t * ldy + r;
// register tiles of 4 rows x 4 tokens (AVX-512; each decoded block and each activation load serves 4 products) or
// 1 row x 4 tokens (AVX2), so the weights stream from memory once for all tokens. For every path the GEMM's
// Y[t, :] is bit-identical to the GEMV of X[t, :] on the same path (same summation order), and no result depends
// on the row split [r0, r1). Paths (AVX-512, AVX2, portable) follow bitnet_dense_isa() and round differently from
// each other.
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

/// Weights per block (all formats).
#define BITNET_BQ_BLOCK 32
#define BITNET_Q6_BLOCK_BYTES 26
#define BITNET_Q4_BLOCK_BYTES 18

/// Bytes per block of `format` (36, 26 or 18); 0 for an unknown format.
size_t bitnet_bq_block_bytes(int format);

/// Bytes per row: ceil(cols / 32) * bitnet_bq_block_bytes(format).
size_t bitnet_bq_row_stride(int format, size_t cols);

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
