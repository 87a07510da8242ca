// Dense (non-ternary) inference kernels: IEEE half (f16) weight GEMV, an int8 block-quantized weight format
// ("q8": blocks of 32 weights with one f32 scale, in the spirit of llama.cpp's Q8_0) and its GEMV, and a memory
// read-bandwidth probe for rooflines.
//
// f16: weights are IEEE binary16 bit patterns (uint16_t), row-major, row r at w + r * ld (ld >= cols, in
// elements). Activations and outputs are f32; products are accumulated in f32 (FMA on the SIMD paths).
//
// q8 layout: each row is ceil(cols / 32) blocks of BITNET_Q8_BLOCK_BYTES = 36 bytes: a little-endian f32 scale d
// followed by 32 int8 codes q (weight = d * q, q in [-127, 127]); the tail of the last block is padded with
// q = 0. Rows are contiguous (row stride bitnet_q8_row_stride(cols) bytes); no alignment is required.
// Quantization per block: d = absmax / 127, q = round-half-to-even(x / d) clamped to [-127, 127]
// (an all-zero block has d = 0, q = 0). The q8 GEMV takes f32 activations (no activation quantization): y[r] =
// sum_blocks d_b * (sum_{i<32} q_i * x_i), each block sum in f32. The q6/q4 formats and the batched GEMVs
// (f16 and all block formats) are in bitnet_blockquant.h; the q8 GEMVs here are its q8 instances.
//
// GEMVs compute rows [r0, r1) only, so callers can split rows across threads; y is indexed by absolute row.
// Paths are picked at run time (AVX-512, AVX2+FMA+F16C, portable); they round differently from each other
// (different summation orders) but each is deterministic and independent of how rows are split.
#ifndef BITNET_DENSE_H
#define BITNET_DENSE_H

#include <stddef.h>
#include <stdint.h>
#include "bitnet_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - paths

#define BITNET_DENSE_PORTABLE 0
#define BITNET_DENSE_AVX2 1      /* AVX2 + FMA + F16C, 256-bit */
#define BITNET_DENSE_AVX512 2    /* AVX-512 F + BW + VL (+ F16C), 512-bit */

/// The path taken by the f16/q8 GEMVs: the best the CPU supports unless BITNET_ISA (read once) caps it
/// ("avx2"/"avx2+fma" -> AVX2, "portable"/"scalar" -> portable) or bitnet_dense_set_isa overrode it.
int bitnet_dense_isa(void);

/// "avx512", "avx2" or "portable".
const char *bitnet_dense_isa_name(void);

/// Selects a path (tests, benchmarks), capped at what the CPU supports; returns the path now in effect.
/// Not meant to be called while the kernels run on other threads.
int bitnet_dense_set_isa(int isa);

// MARK: - f16 conversion

/// dst[i] = f16(src[i]), round to nearest even (overflow -> inf, NaN stays NaN). F16C when available.
void bitnet_f32_to_f16(const float *src, uint16_t *dst, size_t n);

/// dst[i] = f32(src[i]) (exact).
void bitnet_f16_to_f32(const uint16_t *src, float *dst, size_t n);

/// Portable scalar conversions (bit-identical to the above).
uint16_t bitnet_f32_to_f16_scalar(float x);
float bitnet_f16_to_f32_scalar(uint16_t h);

// MARK: - f16 GEMV

/// y[r] = sum_{j < cols} W[r, j] * x[j] for r in [r0, r1); W is f16 bits, row r at w + r * ld.
void bitnet_f16_gemv(const uint16_t *w, size_t ld, size_t cols, const float *x, float *y, size_t r0, size_t r1);

/// Portable reference: same contract, scalar f32 accumulation in column order.
void bitnet_f16_gemv_ref(const uint16_t *w, size_t ld, size_t cols, const float *x, float *y, size_t r0, size_t r1);

// MARK: - q8 block format

/// Weights per q8 block.
#define BITNET_Q8_BLOCK 32
/// Bytes per q8 block: f32 scale + 32 int8 codes.
#define BITNET_Q8_BLOCK_BYTES 36

/// Bytes per q8 row: ceil(cols / 32) * 36.
size_t bitnet_q8_row_stride(size_t cols);

/// Quantizes row-major [rows, cols] f32 (row r at src + r * ld, ld >= cols) into rows [r0, r1) of dst
/// (row r at dst + r * bitnet_q8_row_stride(cols)).
void bitnet_q8_quantize(const float *src, size_t ld, size_t cols, uint8_t *dst, size_t r0, size_t r1);

/// Dequantizes rows [r0, r1) of a q8 matrix to f32 (row r at dst + r * ld): dst = d * q.
void bitnet_q8_dequantize(const uint8_t *src, size_t cols, float *dst, size_t ld, size_t r0, size_t r1);

/// y[r] = sum_b d_b * sum_i q_{b,i} * x[32 b + i] for r in [r0, r1); row r at w + r * row_stride
/// (row_stride >= bitnet_q8_row_stride(cols)). x has `cols` f32 values (no padding needed).
void bitnet_q8_gemv(const uint8_t *w, size_t row_stride, size_t cols, const float *x, float *y, size_t r0, size_t r1);

/// Portable reference: same contract, scalar f32.
void bitnet_q8_gemv_ref(const uint8_t *w, size_t row_stride, size_t cols, const float *x, float *y, size_t r0, size_t r1);

// MARK: - memory bandwidth

/// Reads `bytes` starting at p (any alignment) with the widest loads available and returns a 64-bit
/// wrapping sum of the unaligned little-endian 64-bit words at offsets 0, 8, ... (the last bytes % 8 bytes
/// added one by one), so the loads cannot be elided.
uint64_t bitnet_read_sum(const void *p, size_t bytes);

/// Streams a freshly mapped, page-touched buffer of `bytes` (rounded up to 4 KiB; on 2 MiB pages where the
/// system grants them, like the weights of bitnet_memory.h) `repetitions` times
/// (at least 1, after one untimed warm-up pass), split into one contiguous chunk per pool thread
/// (pool == NULL: one thread), and returns the best rate in bytes per second; 0 if allocation fails.
double bitnet_measure_read_bandwidth(size_t bytes, int repetitions, bitnet_pool *pool);

/// A read probe kept between passes (for a roofline taken step by step, next to the work it rates): a mapped,
/// page-touched buffer of `bytes` (rounded up to 4 KiB, on 2 MiB pages where granted) streamed by the pool's threads,
/// one contiguous chunk each (pool == NULL: the caller). NULL if bytes is 0 or allocation fails.
typedef struct bitnet_read_probe bitnet_read_probe;
bitnet_read_probe *bitnet_read_probe_create(size_t bytes, bitnet_pool *pool);
/// One timed pass over the whole buffer: its rate in bytes per second.
double bitnet_read_probe_pass(bitnet_read_probe *p);
void bitnet_read_probe_destroy(bitnet_read_probe *p);

#ifdef __cplusplus
}
#endif

#endif
