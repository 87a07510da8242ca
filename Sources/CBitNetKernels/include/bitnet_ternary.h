// Packed ternary weights ({-1, 0, +1}) and exact integer kernels for int8 activations x ternary weights.
//
// 2-bit layout ("t2", bitnet.cpp I2_S style): each row is split into blocks of 128 weights stored in 32 bytes;
// byte j of a block holds elements j, j+32, j+64, j+96 of the block in bits 7-6, 5-4, 3-2, 1-0, each as
// code + 1 (0, 1 or 2). A row takes bitnet_t2_row_stride(cols) bytes; the tail of the last block is padded
// with code 0 (stored as 1). Rows are contiguous, row r starting at r * row_stride.
//
// Base-3 layout ("t3"): 5 weights per byte, byte = sum_i (code_i + 1) * 3^i for i = 0..4 (0...242), weights
// in row order; a row takes ceil(cols / 5) bytes, its tail padded with code 0.
//
// Kernels: y[r] = sum_j W[r, j] * x[j] in int32, exact (no floating point). The AVX2 path and the portable
// reference give identical results. Rows [r0, r1) only, so callers can split rows across threads;
// outputs are indexed by absolute row.
#ifndef BITNET_TERNARY_H
#define BITNET_TERNARY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Weights per 2-bit block (32 bytes).
#define BITNET_T2_BLOCK 128

/// Bytes per packed 2-bit row: ceil(cols / 128) * 32.
size_t bitnet_t2_row_stride(size_t cols);

/// Packs a row-major [rows, cols] matrix of codes in {-1, 0, 1} into `dst` (rows * bitnet_t2_row_stride(cols)
/// bytes). Returns the number of codes outside {-1, 0, 1} (each stored as 0); 0 means success.
size_t bitnet_t2_pack(const int8_t *codes, size_t rows, size_t cols, uint8_t *dst);

/// Unpacks to a row-major [rows, cols] matrix of codes. Returns the number of invalid 2-bit fields (value 3,
/// written as 0) found in the unpacked region; 0 means success.
size_t bitnet_t2_unpack(const uint8_t *src, size_t rows, size_t cols, int8_t *codes);

/// Bytes per packed base-3 row: ceil(cols / 5).
size_t bitnet_t3_row_stride(size_t cols);

/// Packs [rows, cols] codes in {-1, 0, 1} into rows * bitnet_t3_row_stride(cols) bytes. Returns the number of
/// codes outside {-1, 0, 1} (stored as 0).
size_t bitnet_t3_pack(const int8_t *codes, size_t rows, size_t cols, uint8_t *dst);

/// Unpacks base-3 rows. Returns the number of bytes above 242 (their weights written as 0).
size_t bitnet_t3_unpack(const uint8_t *src, size_t rows, size_t cols, int8_t *codes);

/// GEMV for decoding: y[r] = sum_{j < cols} W[r, j] * x[j] for r in [r0, r1). `w` is the packed matrix base
/// (row r at w + r * row_stride, row_stride >= bitnet_t2_row_stride(cols)); x has `cols` int8 values (no
/// padding needed); y is indexed by absolute row. Dispatches to AVX2 when available.
/// Arguments of bitnet_t2_gemv as one struct, for bitnet_pool_split_rows (bitnet_t2_gemv_rows runs rows [r0, r1)).
typedef struct {
    const uint8_t *w;
    size_t row_stride, cols;
    const int8_t *x;
    int32_t *y;
} bitnet_t2_gemv_args;
void bitnet_t2_gemv_rows(const void *args, size_t r0, size_t r1);

void bitnet_t2_gemv(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                    size_t r0, size_t r1);

/// GEMM for several tokens: Y[t * ldy + r] = sum_j W[r, j] * X[t * ldx + j] for t < tokens, r in [r0, r1).
/// Each unpacked weight block is reused across tokens. ldx >= cols, ldy >= r1.
void bitnet_t2_gemm(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                    size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1);

/// Portable scalar references with the same contracts (bit-identical results).
void bitnet_t2_gemv_ref(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                        size_t r0, size_t r1);
void bitnet_t2_gemm_ref(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                        size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1);

/// Paths of bitnet_t2_gemv / bitnet_t2_gemm (all give identical results).
#define BITNET_TERNARY_PORTABLE 0
#define BITNET_TERNARY_AVX2 1         /* AVX2: maddubs + madd */
#define BITNET_TERNARY_AVX512VNNI 2   /* AVX512-VNNI + VL on 256-bit vectors: vpdpbusd */

/// The path taken: the best the CPU supports, unless BITNET_ISA (read once) caps it (avx2 / avx2+fma at
/// BITNET_TERNARY_AVX2, portable / scalar at BITNET_TERNARY_PORTABLE) or bitnet_ternary_set_isa overrode it.
int bitnet_ternary_isa(void);

/// "avx512vnni", "avx2" or "portable".
const char *bitnet_ternary_isa_name(void);

/// Selects a path (tests, comparisons), capped at what the CPU supports; returns the path now in effect.
/// Not meant to be called while the kernels run on other threads.
int bitnet_ternary_set_isa(int isa);

#ifdef __cplusplus
}
#endif

#endif
