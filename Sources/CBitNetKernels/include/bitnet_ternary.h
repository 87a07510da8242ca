// Packed ternary weights ({-1, 0, +1}) and exact integer kernels for int8 activations x ternary weights.
//
// 2-bit layout ("t2", bitnet.cpp I2_S style): each row is split into blocks of 128 weights stored in 32 bytes;
// byte j of a block holds elements j, j+32, j+64, j+96 of the block in bits 7-6, 5-4, 3-2, 1-0, each as
// code + 1 (0, 1 or 2). A row takes bitnet_t2_row_stride(cols) bytes; the tail of the last block is padded
// with code 0 (stored as 1). Rows are contiguous, row r starting at r * row_stride.
//
// Base-3 layout ("t3", 1.6 bit/weight): each row is split into blocks of 320 weights stored in 64 bytes; byte p
// of a block holds elements p, p+64, p+128, p+192, p+256 of the block as the digits u_0..u_4 (u_i = code + 1 in
// {0, 1, 2}) of b = u_0 + 3 u_1 + 9 u_2 + 28 u_3 + 84 u_4: base 3 with the top two places widened from 27 and 81
// to 28 and 84, so that b >> 2 tells u_3 and u_4 and the rest is below 32 (one 64-entry table lookup per digit in
// the AVX-512 kernel). 243 of the 256 byte values are used; every kernel path reads any byte by the same greedy rule
// (u_4 = [b >= 84] + [b >= 168], then 28, 9, 3, 1 on the remainder), so all paths agree even on bytes no packer
// writes. A row takes bitnet_t3_row_stride(cols) = ceil(cols / 320) * 64 bytes, the tail of its last block padded
// with code 0. Same kernel contracts as t2; the AVX512 path needs AVX512-VBMI (vpermb) besides VNNI, else it takes
// the AVX2 path.
// At 2B4T shapes t3 needs 419 MB per token against 521 MB for t2.
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

/// Weights per base-3 block (64 bytes).
#define BITNET_T3_BLOCK 320

/// Bytes per packed base-3 row: ceil(cols / 320) * 64.
size_t bitnet_t3_row_stride(size_t cols);

/// Packs [rows, cols] codes in {-1, 0, 1} into rows * bitnet_t3_row_stride(cols) bytes. Returns the number of
/// codes outside {-1, 0, 1} (stored as 0).
size_t bitnet_t3_pack(const int8_t *codes, size_t rows, size_t cols, uint8_t *dst);

/// Unpacks base-3 rows. Returns the number of bytes in the unpacked region that no packer writes (not one of
/// the 243 values a packer writes; their weights written as 0).
size_t bitnet_t3_unpack(const uint8_t *src, size_t rows, size_t cols, int8_t *codes);

/// Repacks rows [r0, r1) of a 2-bit matrix (row stride bitnet_t2_row_stride(cols)) into the base-3 layout (row
/// stride bitnet_t3_row_stride(cols)), 640 weights at a time through a stack buffer: the same bytes as unpacking
/// every code and packing them again, without the [rows, cols] codes in between or any allocation. Returns the number
/// of invalid 2-bit fields (value 3, stored as code 0).
size_t bitnet_t2_to_t3(const uint8_t *src, size_t cols, uint8_t *dst, size_t r0, size_t r1);

/// Arguments of bitnet_t2_to_t3_rows (for bitnet_pool_split_rows); `bad` receives the invalid fields' count.
typedef struct { const uint8_t *src; size_t cols; uint8_t *dst; size_t *bad; } bitnet_t2_to_t3_args;

/// bitnet_t2_to_t3 over rows [r0, r1) of a bitnet_t2_to_t3_args, adding its count of invalid fields to *bad (atomically).
void bitnet_t2_to_t3_rows(const void *args, size_t r0, size_t r1);

/// Activations of one GEMV made ready once for all its row ranges (bitnet_t2_gemv_prepare / bitnet_t3_gemv_prepare):
/// their sum, and the copy the kernel path reads (t2 AVX-512: 256-column blocks reordered; t3: the zero-padded tail
/// block; NULL where the path reads x in place).
typedef struct {
    const int8_t *x;
    size_t cols;
    int32_t xsum;
    const int8_t *xr;
} bitnet_gemv_prepared;

/// Arguments of bitnet_t2_gemv as one struct, for bitnet_pool_split_rows (bitnet_t2_gemv_rows / bitnet_t3_gemv_rows
/// run rows [r0, r1)).
typedef struct {
    const uint8_t *w;
    size_t row_stride, cols;
    const int8_t *x;
    int32_t *y;
    /// NULL, or the layout's prepare result for this x and cols (ignored when it was made for another x or cols):
    /// then each row range skips its own activation sum and copy.
    const bitnet_gemv_prepared *prepared;
} bitnet_t2_gemv_args;
void bitnet_t2_gemv_rows(const void *args, size_t r0, size_t r1);

/// Prepares x [cols] for the t2 / t3 GEMV row kernels of this thread's split: the result lives in the calling
/// thread's own storage until its next prepare call, so it serves one bitnet_t2_gemv_rows / bitnet_t3_gemv_rows split
/// (whose caller waits for its workers). Per-range setup costs 0.1-0.3 us; a decode GEMV runs 32 ranges.
const bitnet_gemv_prepared *bitnet_t2_gemv_prepare(const int8_t *x, size_t cols);
const bitnet_gemv_prepared *bitnet_t3_gemv_prepare(const int8_t *x, size_t cols);

/// GEMV for decoding: y[r] = sum_{j < cols} W[r, j] * x[j] for r in [r0, r1). `w` is the packed matrix base
/// (row r at w + r * row_stride, row_stride >= bitnet_t2_row_stride(cols)); x has `cols` int8 values (no
/// padding needed); y is indexed by absolute row. Dispatches to AVX2 when available.
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

/// Base-3 kernels: the contracts of bitnet_t2_gemv / _gemm / _gemv_rows / the references, over the t3 layout
/// (row_stride >= bitnet_t3_row_stride(cols)). bitnet_t3_gemv_rows takes a bitnet_t2_gemv_args.
void bitnet_t3_gemv(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                    size_t r0, size_t r1);
void bitnet_t3_gemm(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                    size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1);
void bitnet_t3_gemv_rows(const void *args, size_t r0, size_t r1);
void bitnet_t3_gemv_ref(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                        size_t r0, size_t r1);
void bitnet_t3_gemm_ref(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                        size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1);

/// Paths of the t2 and t3 kernels (all give identical results).
#define BITNET_TERNARY_PORTABLE 0
#define BITNET_TERNARY_AVX2 1         /* AVX2: maddubs + madd */
#define BITNET_TERNARY_AVX512VNNI 2   /* AVX512-VNNI + VL: vpdpbusd (t2 on 256-bit vectors; t3 on 512-bit, with VBMI) */

/// The path taken: the best the CPU supports, unless BITNET_ISA (read once) caps it (avx2 / avx2+fma at
/// BITNET_TERNARY_AVX2, portable / scalar at BITNET_TERNARY_PORTABLE) or bitnet_ternary_set_isa overrode it.
int bitnet_ternary_isa(void);

/// "avx512vnni", "avx2" or "portable".
const char *bitnet_ternary_isa_name(void);

/// 1 when the t3 kernels take their AVX512-VBMI path (then they stream fewer bytes than t2 at a similar
/// rate); 0 when they fall back to AVX2 or portable code, where t2 is faster.
int bitnet_t3_is_fast(void);

/// Selects a path (tests, comparisons), capped at what the CPU supports; returns the path now in effect.
/// Not meant to be called while the kernels run on other threads.
int bitnet_ternary_set_isa(int isa);

#ifdef __cplusplus
}
#endif

#endif
