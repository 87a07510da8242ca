// Block-quantized formats q8/q6/q4 and their GEMV / batched GEMV (see bitnet_blockquant.h).
//
// One generic kernel per ISA, specialised per format by always-inlined helpers with a constant `fmt`: a block is
// decoded to f32 weights (int8 codes -> f32), dotted with 32 activations and scaled. The GEMV and the GEMM share
// the block dot, so a GEMM token equals the GEMV of that token bit for bit.
#include "bitnet_blockquant.h"
#include "bitnet_dense.h"
#include "dense_simd.h"
#include <math.h>
#include <pthread.h>
#include <string.h>

#define BQ BITNET_BQ_BLOCK
#define ALWAYS_INLINE inline __attribute__((always_inline))

// MARK: - layout

size_t bitnet_bq_block_bytes(int format) {
    switch (format) {
    case BITNET_BQ_Q8: return BITNET_Q8_BLOCK_BYTES;
    case BITNET_BQ_Q6: return BITNET_Q6_BLOCK_BYTES;
    case BITNET_BQ_Q4: return BITNET_Q4_BLOCK_BYTES;
    default: return 0;
    }
}

size_t bitnet_bq_row_stride(int format, size_t cols) { return (cols + BQ - 1) / BQ * bitnet_bq_block_bytes(format); }

static ALWAYS_INLINE float bq_scale(int fmt, const uint8_t *blk) {
    if (fmt == BITNET_BQ_Q8) { float d; memcpy(&d, blk, 4); return d; }
    uint16_t h;
    memcpy(&h, blk, 2);
    return bitnet_f16_to_f32_scalar(h);
}

/// Code q of weight i (< 32) of a block.
static ALWAYS_INLINE int bq_code(int fmt, const uint8_t *blk, size_t i) {
    switch (fmt) {
    case BITNET_BQ_Q8: return ((const int8_t *)(blk + 4))[i];
    case BITNET_BQ_Q6: {
        int lo = (blk[2 + (i & 15)] >> (4 * (i >> 4))) & 15;
        int hi = (blk[18 + (i & 7)] >> (2 * (i >> 3))) & 3;
        return (lo | hi << 4) - 32;
    }
    default: return ((blk[2 + (i & 15)] >> (4 * (i >> 4))) & 15) - 8;
    }
}

// MARK: - quantize / dequantize

/// The smallest f16 >= d (d > 0 finite or inf), saturating at 65504 (0x7bff).
static uint16_t f16_round_up(float d) {
    uint16_t h = bitnet_f32_to_f16_scalar(d);
    if (h >= 0x7c00u) return 0x7bffu;
    if (bitnet_f16_to_f32_scalar(h) < d) h++;
    return h > 0x7bffu ? 0x7bffu : h;
}

/// One q6/q4 block of n <= 32 values.
static void bq_quantize_block(int fmt, const float *x, size_t n, uint8_t *out) {
    const float qmax = fmt == BITNET_BQ_Q6 ? 31.0f : 7.0f;
    float amax = 0;
    for (size_t i = 0; i < n; i++) { float a = fabsf(x[i]); if (a > amax) amax = a; }   // NaN never compares >
    uint16_t h = amax > 0 ? f16_round_up(amax / qmax) : 0;
    float d = bitnet_f16_to_f32_scalar(h);
    int q[BQ] = {0};
    if (d > 0) {
        for (size_t i = 0; i < n; i++) {
            float v = nearbyintf(x[i] / d);   // default rounding mode: ties to even
            if (v != v) v = 0;                // NaN element
            q[i] = (int)(v < -qmax ? -qmax : (v > qmax ? qmax : v));
        }
    }
    memcpy(out, &h, 2);
    if (fmt == BITNET_BQ_Q6) {
        int c[BQ];
        for (int i = 0; i < BQ; i++) c[i] = q[i] + 32;
        for (int k = 0; k < 16; k++) out[2 + k] = (uint8_t)((c[k] & 15) | (c[k + 16] & 15) << 4);
        for (int k = 0; k < 8; k++)
            out[18 + k] = (uint8_t)((c[k] >> 4) | (c[k + 8] >> 4) << 2 | (c[k + 16] >> 4) << 4 | (c[k + 24] >> 4) << 6);
    } else {
        for (int k = 0; k < 16; k++) out[2 + k] = (uint8_t)((q[k] + 8) | (q[k + 16] + 8) << 4);
    }
}

void bitnet_bq_quantize(int format, const float *src, size_t ld, size_t cols, uint8_t *dst, size_t r0, size_t r1) {
    if (format == BITNET_BQ_Q8) { bitnet_q8_quantize(src, ld, cols, dst, r0, r1); return; }
    size_t stride = bitnet_bq_row_stride(format, cols), bb = bitnet_bq_block_bytes(format);
    if (bb == 0) return;
    for (size_t r = r0; r < r1; r++)
        for (size_t j0 = 0, o = 0; j0 < cols; j0 += BQ, o += bb)
            bq_quantize_block(format, src + r * ld + j0, cols - j0 < BQ ? cols - j0 : BQ, dst + r * stride + o);
}

void bitnet_bq_dequantize_row(int format, const uint8_t *row, size_t cols, float *dst) {
    size_t bb = bitnet_bq_block_bytes(format);
    if (bb == 0) return;
    for (size_t j0 = 0; j0 < cols; j0 += BQ, row += bb) {
        size_t n = cols - j0 < BQ ? cols - j0 : BQ;
        float d = bq_scale(format, row);
        for (size_t i = 0; i < n; i++) dst[j0 + i] = d * (float)bq_code(format, row, i);
    }
}

void bitnet_bq_dequantize(int format, const uint8_t *src, size_t row_stride, size_t cols, float *dst, size_t ld,
                          size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) bitnet_bq_dequantize_row(format, src + r * row_stride, cols, dst + r * ld);
}

// MARK: - portable GEMV / GEMM

/// One row dotted with x: per block s = sum_i q_i x_i in column order, acc += d * s.
static ALWAYS_INLINE float bq_row_dot_ref(int fmt, size_t bb, const uint8_t *blk, size_t cols, const float *x) {
    float acc = 0;
    for (size_t j0 = 0; j0 < cols; j0 += BQ, blk += bb) {
        size_t n = cols - j0 < BQ ? cols - j0 : BQ;
        float s = 0;
        for (size_t i = 0; i < n; i++) s += (float)bq_code(fmt, blk, i) * x[j0 + i];
        acc += bq_scale(fmt, blk) * s;
    }
    return acc;
}

static ALWAYS_INLINE void bq_gemm_ref_fmt(int fmt, const uint8_t *w, size_t rs, size_t cols, const float *x, size_t ldx,
                                          size_t ntok, float *y, size_t ldy, size_t r0, size_t r1) {
    size_t bb = bitnet_bq_block_bytes(fmt);
    for (size_t r = r0; r < r1; r++)
        for (size_t t = 0; t < ntok; t++) y[t * ldy + r] = bq_row_dot_ref(fmt, bb, w + r * rs, cols, x + t * ldx);
}

void bitnet_bq_gemm_ref(int format, const uint8_t *w, size_t row_stride, size_t cols, const float *x, size_t ldx,
                        size_t ntok, float *y, size_t ldy, size_t r0, size_t r1) {
    switch (format) {
    case BITNET_BQ_Q8: bq_gemm_ref_fmt(BITNET_BQ_Q8, w, row_stride, cols, x, ldx, ntok, y, ldy, r0, r1); break;
    case BITNET_BQ_Q6: bq_gemm_ref_fmt(BITNET_BQ_Q6, w, row_stride, cols, x, ldx, ntok, y, ldy, r0, r1); break;
    case BITNET_BQ_Q4: bq_gemm_ref_fmt(BITNET_BQ_Q4, w, row_stride, cols, x, ldx, ntok, y, ldy, r0, r1); break;
    default: break;
    }
}

void bitnet_bq_gemv_ref(int format, const uint8_t *w, size_t row_stride, size_t cols, const float *x, float *y,
                        size_t r0, size_t r1) {
    bitnet_bq_gemm_ref(format, w, row_stride, cols, x, cols, 1, y, 0, r0, r1);
}

#ifdef BITNET_X86
// MARK: - SIMD decode

// Software prefetch distance in bytes ahead in each row: the hardware prefetcher alone leaves the q8 GEMV ~35%
// short of streaming speed on a DRAM-resident head (measured on a Xeon with AVX-512).
#define BQ_PREFETCH 576

/// The 32 int8 codes of a q6/q4 block: c0 = codes 0-15, c1 = codes 16-31.
AVX2_ATTR
static ALWAYS_INLINE void bq_codes128(int fmt, const uint8_t *blk, __m128i *c0, __m128i *c1) {
    const __m128i m4 = _mm_set1_epi8(15);
    __m128i ql = _mm_loadu_si128((const __m128i *)(blk + 2));
    __m128i lo = _mm_and_si128(ql, m4), hi = _mm_and_si128(_mm_srli_epi16(ql, 4), m4);
    if (fmt == BITNET_BQ_Q6) {
        int64_t qh64;
        memcpy(&qh64, blk + 18, 8);
        // Bytes 0-7 of qh shifted by 0 and 2 bits give the high bits of codes 0-7 and 8-15; by 4 and 6, of 16-31.
        const __m128i qh = _mm_set1_epi64x(qh64), m2 = _mm_set1_epi8(3), k32 = _mm_set1_epi8(32);
        __m128i h0 = _mm_and_si128(_mm_srlv_epi64(qh, _mm_set_epi64x(2, 0)), m2);
        __m128i h1 = _mm_and_si128(_mm_srlv_epi64(qh, _mm_set_epi64x(6, 4)), m2);
        *c0 = _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(h0, 4)), k32);
        *c1 = _mm_sub_epi8(_mm_or_si128(hi, _mm_slli_epi16(h1, 4)), k32);
    } else {
        const __m128i k8 = _mm_set1_epi8(8);
        *c0 = _mm_sub_epi8(lo, k8);
        *c1 = _mm_sub_epi8(hi, k8);
    }
}

// f32 value of every f16 (256 KiB, filled once): a scale lookup is two loads and no ALU uop, where F16C costs
// insert + convert + broadcast on the two vector ports that bound the q6/q4 loops (the trick of ggml's
// table_f32_f16). Only the few entries of the scales in use stay cached.
static float bq_f16_table[65536];
static pthread_once_t bq_f16_table_once = PTHREAD_ONCE_INIT;

static void bq_fill_f16_table(void) {
    for (uint32_t h = 0; h < 65536; h++) bq_f16_table[h] = bitnet_f16_to_f32_scalar((uint16_t)h);
}

/// Block scale on the SIMD paths (equal to bq_scale; the table is filled by the dispatchers).
static ALWAYS_INLINE float bq_scale_simd(int fmt, const uint8_t *blk) {
    if (fmt == BITNET_BQ_Q8) { float d; memcpy(&d, blk, 4); return d; }
    uint16_t h;
    memcpy(&h, blk, 2);
    return bq_f16_table[h];
}

#define CVT8(v) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))

/// A block's 32 weights as f32 codes in four 8-lane vectors.
AVX2_ATTR
static ALWAYS_INLINE void bq_load_avx2(int fmt, const uint8_t *blk, __m256 w[4]) {
    if (fmt == BITNET_BQ_Q8) {
        for (int k = 0; k < 4; k++) w[k] = CVT8(_mm_loadl_epi64((const __m128i *)(blk + 4 + 8 * k)));
        return;
    }
    __m128i c0, c1;
    bq_codes128(fmt, blk, &c0, &c1);
    w[0] = CVT8(c0); w[1] = CVT8(_mm_srli_si128(c0, 8));
    w[2] = CVT8(c1); w[3] = CVT8(_mm_srli_si128(c1, 8));
}

/// acc + d * (w . x) for one block; the products are paired (0+2, 1+3) as in the original q8 kernel.
AVX2_ATTR
static ALWAYS_INLINE __m256 bq_dot_avx2(const __m256 w[4], __m256 d, const __m256 xv[4], __m256 acc) {
    __m256 p = _mm256_mul_ps(w[0], xv[0]), p2 = _mm256_mul_ps(w[1], xv[1]);
    p = _mm256_fmadd_ps(w[2], xv[2], p);
    p2 = _mm256_fmadd_ps(w[3], xv[3], p2);
    return _mm256_fmadd_ps(d, _mm256_add_ps(p, p2), acc);
}

/// The activations of block b; the tail block (cols % 32 values) is a zero-filled masked load.
AVX2_ATTR
static ALWAYS_INLINE void bq_x_avx2(const float *x, size_t j, size_t n, __m256 xv[4]) {
    if (n == BQ) {
        for (int k = 0; k < 4; k++) xv[k] = _mm256_loadu_ps(x + j + 8 * k);
        return;
    }
    for (int k = 0; k < 4; k++) {
        int m = (int)n - 8 * k;
        m = m < 0 ? 0 : (m > 8 ? 8 : m);
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(m), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        xv[k] = m ? _mm256_maskload_ps(x + j + 8 * k, mask) : _mm256_setzero_ps();
    }
}

#define CVT16(v) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v))

AVX512_ATTR
static ALWAYS_INLINE void bq_load_avx512(int fmt, const uint8_t *blk, __m512 *lo, __m512 *hi) {
    if (fmt == BITNET_BQ_Q8) {
        *lo = CVT16(_mm_loadu_si128((const __m128i *)(blk + 4)));
        *hi = CVT16(_mm_loadu_si128((const __m128i *)(blk + 20)));
        return;
    }
    // Codes straight to f32 in 32-bit lanes: float bits 0x4B000000 | c are 2^23 + c, minus 2^23 + offset gives
    // c - offset exactly, in fewer port-0/5 uops (the bottleneck of these loops) than unpack + sign-extend + convert.
    // ternlog 0xEA = (A & B) | C.
    const __m512i magic = _mm512_set1_epi32(0x4B000000);
    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + 2)));   // ql / nibble pairs
    __m512i l = _mm512_ternarylogic_epi32(v, _mm512_set1_epi32(15), magic, 0xEA);     // low nibble | magic
    __m512i h = _mm512_or_si512(_mm512_srli_epi32(v, 4), magic);                      // high nibble | magic
    if (fmt == BITNET_BQ_Q6) {
        // qh bytes 0-7 twice, shifted left 4: shifting right by 2g puts the 2 high bits of code k + 8g at bits 4-5.
        int64_t qh;
        memcpy(&qh, blk + 18, 8);
        __m512i u = _mm512_slli_epi32(_mm512_cvtepu8_epi32(_mm_set1_epi64x(qh)), 4);
        const __m512i m = _mm512_set1_epi32(0x30);
        const __m512i s01 = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
        l = _mm512_ternarylogic_epi32(_mm512_srlv_epi32(u, s01), m, l, 0xEA);
        h = _mm512_ternarylogic_epi32(_mm512_srlv_epi32(u, _mm512_add_epi32(s01, _mm512_set1_epi32(4))), m, h, 0xEA);
    }
    const __m512 bias = _mm512_set1_ps(fmt == BITNET_BQ_Q6 ? 8388640.0f : 8388616.0f);   // 2^23 + 32 / 2^23 + 8
    *lo = _mm512_sub_ps(_mm512_castsi512_ps(l), bias);
    *hi = _mm512_sub_ps(_mm512_castsi512_ps(h), bias);
}

AVX512_ATTR
static ALWAYS_INLINE __m512 bq_dot_avx512(__m512 lo, __m512 hi, __m512 d, __m512 xa, __m512 xb, __m512 acc) {
    return _mm512_fmadd_ps(d, _mm512_fmadd_ps(hi, xb, _mm512_mul_ps(lo, xa)), acc);
}

/// Masks of the tail block's two 16-lane halves (n = cols % 32 valid values).
static inline __mmask16 tail_mask(size_t n, size_t half) {
    size_t m = n > 16 * half ? n - 16 * half : 0;
    return m >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << m) - 1u);
}

// MARK: - AVX2 GEMV / GEMM

#define BQ_SCALE_AVX2(fmt, blk) _mm256_set1_ps(bq_scale_simd(fmt, blk))

/// Rows row .. row + R - 1 against tokens x .. x + (T - 1) ldx (R <= 4, T <= 4, R * T <= 4; constants after
/// inlining); Y[t, r] to y[t * ldy + r]; `pf` (or NULL) is prefetched at the same offsets. With one token the
/// activations are loaded first and each row decoded just before its dot (GEMV); otherwise the R blocks are decoded
/// once and applied to every token.
AVX2_ATTR
static ALWAYS_INLINE void bq_tile_avx2(int fmt, const uint8_t *row, size_t rs, const uint8_t *pf, int R, size_t cols,
                                       const float *x, size_t ldx, int T, float *y, size_t ldy) {
    size_t bb = bitnet_bq_block_bytes(fmt);
    __m256 acc[4], w[4][4], d[4], xv[4];
    for (int i = 0; i < R * T; i++) acc[i] = _mm256_setzero_ps();
    for (size_t j = 0, o = 0; j < cols; j += BQ, o += bb) {
        size_t n = cols - j < BQ ? cols - j : BQ;
        if (T == 1) bq_x_avx2(x, j, n, xv);
        for (int r = 0; r < R; r++) {
            if (pf) _mm_prefetch((const char *)(pf + r * rs + o), _MM_HINT_T0);
            bq_load_avx2(fmt, row + r * rs + o, w[r]);
            d[r] = BQ_SCALE_AVX2(fmt, row + r * rs + o);
            if (T == 1) acc[r] = bq_dot_avx2(w[r], d[r], xv, acc[r]);
        }
        if (T > 1) {
            for (int t = 0; t < T; t++) {
                bq_x_avx2(x + t * ldx, j, n, xv);
                for (int r = 0; r < R; r++) acc[r * T + t] = bq_dot_avx2(w[r], d[r], xv, acc[r * T + t]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) y[t * ldy + r] = hsum256(acc[r * T + t]);
}

/// GEMV: four rows at a time sharing the activation loads, each row prefetched BQ_PREFETCH bytes ahead.
AVX2_ATTR
static ALWAYS_INLINE void bq_gemv_avx2(int fmt, const uint8_t *w, size_t rs, size_t cols, const float *x, float *y,
                                       size_t r0, size_t r1) {
    size_t r = r0;
    for (; r + 4 <= r1; r += 4) bq_tile_avx2(fmt, w + r * rs, rs, w + r * rs + BQ_PREFETCH, 4, cols, x, 0, 1, y + r, 0);
    for (; r < r1; r++) bq_tile_avx2(fmt, w + r * rs, rs, NULL, 1, cols, x, 0, 1, y + r, 0);
}

/// Tokens in tiles of T_MAX = 4 / R, then 2, then 1 for R rows; the next R rows (`pf`) are prefetched during the
/// first tile.
AVX2_ATTR
static ALWAYS_INLINE void bq_rows_avx2(int fmt, const uint8_t *row, size_t rs, const uint8_t *pf, int R, size_t cols,
                                       const float *x, size_t ldx, size_t ntok, float *y, size_t ldy) {
    size_t t = 0;
    if (R == 1)
        for (; t + 4 <= ntok; t += 4, pf = NULL) bq_tile_avx2(fmt, row, rs, pf, 1, cols, x + t * ldx, ldx, 4, y + t * ldy, ldy);
    for (; t + 2 <= ntok; t += 2, pf = NULL) bq_tile_avx2(fmt, row, rs, pf, R, cols, x + t * ldx, ldx, 2, y + t * ldy, ldy);
    if (t < ntok) bq_tile_avx2(fmt, row, rs, pf, R, cols, x + t * ldx, ldx, 1, y + t * ldy, ldy);
}

/// GEMM: 2-row x 2-token register tiles (AVX2 has 16 vector registers), leftover row with 4-token tiles.
AVX2_ATTR
static ALWAYS_INLINE void bq_gemm_avx2(int fmt, const uint8_t *w, size_t rs, size_t cols, const float *x, size_t ldx,
                                       size_t ntok, float *y, size_t ldy, size_t r0, size_t r1) {
    size_t r = r0;
    for (; r + 2 <= r1; r += 2)
        bq_rows_avx2(fmt, w + r * rs, rs, r + 4 <= r1 ? w + (r + 2) * rs : NULL, 2, cols, x, ldx, ntok, y + r, ldy);
    if (r < r1) bq_rows_avx2(fmt, w + r * rs, rs, NULL, 1, cols, x, ldx, ntok, y + r, ldy);
}

// MARK: - AVX-512 GEMV / GEMM

#define BQ_SCALE_AVX512(fmt, blk) _mm512_set1_ps(bq_scale_simd(fmt, blk))

/// One block column b of an R-row x T-token tile (R, T constant after inlining): the R weight blocks are decoded
/// once, each activation load serves the R rows; acc[r * T + t] += d_r * (w_r . x_t) in the GEMV's order.
AVX512_ATTR
static ALWAYS_INLINE void bq_rt_block_avx512(int fmt, const uint8_t *blk, size_t rs, const uint8_t *pf, int R,
                                             const float *x, size_t ldx, int T, __mmask16 ma, __mmask16 mb, __m512 *acc) {
    __m512 lo[4], hi[4], d[4];
    for (int r = 0; r < R; r++) {
        if (pf) _mm_prefetch((const char *)(pf + r * rs), _MM_HINT_T0);
        bq_load_avx512(fmt, blk + r * rs, &lo[r], &hi[r]);
        d[r] = BQ_SCALE_AVX512(fmt, blk + r * rs);
    }
    for (int t = 0; t < T; t++) {
        __m512 xa = _mm512_maskz_loadu_ps(ma, x + t * ldx), xb = _mm512_maskz_loadu_ps(mb, x + t * ldx + 16);
        for (int r = 0; r < R; r++) acc[r * T + t] = bq_dot_avx512(lo[r], hi[r], d[r], xa, xb, acc[r * T + t]);
    }
}

/// Rows row .. row + R - 1 against tokens x .. x + (T - 1) ldx; Y[t, r] to y[t * ldy + r]. `pf` (or NULL) is
/// prefetched alongside, at the same offsets in the same R-row layout.
AVX512_ATTR
static ALWAYS_INLINE void bq_tile_avx512(int fmt, const uint8_t *row, size_t rs, const uint8_t *pf, int R, size_t cols,
                                         const float *x, size_t ldx, int T, float *y, size_t ldy) {
    size_t bb = bitnet_bq_block_bytes(fmt), nfull = cols / BQ, rem = cols % BQ;
    __m512 acc[16];
    for (int i = 0; i < R * T; i++) acc[i] = _mm512_setzero_ps();
    for (size_t b = 0; b < nfull; b++)
        bq_rt_block_avx512(fmt, row + b * bb, rs, pf ? pf + b * bb : NULL, R, x + b * BQ, ldx, T, 0xffff, 0xffff, acc);
    if (rem)
        bq_rt_block_avx512(fmt, row + nfull * bb, rs, NULL, R, x + nfull * BQ, ldx, T, tail_mask(rem, 0), tail_mask(rem, 1), acc);
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r * T + t]);
}

/// GEMV: four rows at a time sharing the activation loads, each row prefetched BQ_PREFETCH bytes ahead.
AVX512_ATTR
static ALWAYS_INLINE void bq_gemv_avx512(int fmt, const uint8_t *w, size_t rs, size_t cols, const float *x, float *y,
                                         size_t r0, size_t r1) {
    size_t r = r0;
    for (; r + 4 <= r1; r += 4) bq_tile_avx512(fmt, w + r * rs, rs, w + r * rs + BQ_PREFETCH, 4, cols, x, 0, 1, y + r, 0);
    for (; r < r1; r++) bq_tile_avx512(fmt, w + r * rs, rs, NULL, 1, cols, x, 0, 1, y + r, 0);
}

/// Tokens in tiles of 4, then 2, then 1 for R rows; the next R rows (`pf`) are prefetched during the first tile.
AVX512_ATTR
static ALWAYS_INLINE void bq_rows_avx512(int fmt, const uint8_t *row, size_t rs, const uint8_t *pf, int R, size_t cols,
                                         const float *x, size_t ldx, size_t ntok, float *y, size_t ldy) {
    size_t t = 0;
    for (; t + 4 <= ntok; t += 4, pf = NULL) bq_tile_avx512(fmt, row, rs, pf, R, cols, x + t * ldx, ldx, 4, y + t * ldy, ldy);
    if (t + 2 <= ntok) { bq_tile_avx512(fmt, row, rs, pf, R, cols, x + t * ldx, ldx, 2, y + t * ldy, ldy); t += 2; pf = NULL; }
    if (t < ntok) bq_tile_avx512(fmt, row, rs, pf, R, cols, x + t * ldx, ldx, 1, y + t * ldy, ldy);
}

/// GEMM: 4-row x 4-token register tiles (16 accumulators), so each decoded block and each activation load is
/// reused 4 times; leftover rows one at a time.
AVX512_ATTR
static ALWAYS_INLINE void bq_gemm_avx512(int fmt, const uint8_t *w, size_t rs, size_t cols, const float *x, size_t ldx,
                                         size_t ntok, float *y, size_t ldy, size_t r0, size_t r1) {
    size_t r = r0;
    for (; r + 4 <= r1; r += 4)
        bq_rows_avx512(fmt, w + r * rs, rs, r + 8 <= r1 ? w + (r + 4) * rs : NULL, 4, cols, x, ldx, ntok, y + r, ldy);
    for (; r < r1; r++) bq_rows_avx512(fmt, w + r * rs, rs, NULL, 1, cols, x, ldx, ntok, y + r, ldy);
}

// One non-inlined instance per (ISA, format): gemv_avx2_q8, gemm_avx2_q8, ...
#define ATTR_avx2 AVX2_ATTR
#define ATTR_avx512 AVX512_ATTR
#define BQ_INSTANCES(isa, name, fmt)                                                                                   \
    ATTR_##isa static void gemv_##isa##_##name(const uint8_t *w, size_t rs, size_t cols, const float *x, float *y,    \
                                               size_t r0, size_t r1) { bq_gemv_##isa(fmt, w, rs, cols, x, y, r0, r1); } \
    ATTR_##isa static void gemm_##isa##_##name(const uint8_t *w, size_t rs, size_t cols, const float *x, size_t ldx,  \
                                               size_t ntok, float *y, size_t ldy, size_t r0, size_t r1) {              \
        bq_gemm_##isa(fmt, w, rs, cols, x, ldx, ntok, y, ldy, r0, r1);                                                 \
    }
BQ_INSTANCES(avx2, q8, BITNET_BQ_Q8)
BQ_INSTANCES(avx2, q6, BITNET_BQ_Q6)
BQ_INSTANCES(avx2, q4, BITNET_BQ_Q4)
BQ_INSTANCES(avx512, q8, BITNET_BQ_Q8)
BQ_INSTANCES(avx512, q6, BITNET_BQ_Q6)
BQ_INSTANCES(avx512, q4, BITNET_BQ_Q4)
#endif

// MARK: - dispatch

#ifdef BITNET_X86
typedef void (*bq_gemv_fn)(const uint8_t *, size_t, size_t, const float *, float *, size_t, size_t);
typedef void (*bq_gemm_fn)(const uint8_t *, size_t, size_t, const float *, size_t, size_t, float *, size_t, size_t, size_t);
// [isa - BITNET_DENSE_AVX2][format]
static const bq_gemv_fn bq_gemv_table[2][3] = {{gemv_avx2_q8, gemv_avx2_q6, gemv_avx2_q4},
                                               {gemv_avx512_q8, gemv_avx512_q6, gemv_avx512_q4}};
static const bq_gemm_fn bq_gemm_table[2][3] = {{gemm_avx2_q8, gemm_avx2_q6, gemm_avx2_q4},
                                               {gemm_avx512_q8, gemm_avx512_q6, gemm_avx512_q4}};
#endif

void bitnet_bq_gemm(int format, const uint8_t *w, size_t row_stride, size_t cols, const float *x, size_t ldx,
                    size_t ntok, float *y, size_t ldy, size_t r0, size_t r1) {
    if (ntok == 0 || r0 >= r1 || format < 0 || format > BITNET_BQ_Q4) return;
#ifdef BITNET_X86
    int isa = bitnet_dense_isa();
    if (isa >= BITNET_DENSE_AVX2) {
        pthread_once(&bq_f16_table_once, bq_fill_f16_table);
        bq_gemm_table[isa - BITNET_DENSE_AVX2][format](w, row_stride, cols, x, ldx, ntok, y, ldy, r0, r1);
        return;
    }
#endif
    bitnet_bq_gemm_ref(format, w, row_stride, cols, x, ldx, ntok, y, ldy, r0, r1);
}

void bitnet_bq_gemv(int format, const uint8_t *w, size_t row_stride, size_t cols, const float *x, float *y,
                    size_t r0, size_t r1) {
    if (r0 >= r1 || format < 0 || format > BITNET_BQ_Q4) return;
#ifdef BITNET_X86
    int isa = bitnet_dense_isa();
    if (isa >= BITNET_DENSE_AVX2) {
        pthread_once(&bq_f16_table_once, bq_fill_f16_table);
        bq_gemv_table[isa - BITNET_DENSE_AVX2][format](w, row_stride, cols, x, y, r0, r1);
        return;
    }
#endif
    bitnet_bq_gemv_ref(format, w, row_stride, cols, x, y, r0, r1);
}

void bitnet_bq_gemv_rows(const void *args, size_t r0, size_t r1) {
    const bitnet_bq_gemv_args *a = (const bitnet_bq_gemv_args *)args;
    bitnet_bq_gemv(a->format, a->w, a->row_stride, a->cols, a->x, a->y, r0, r1);
}

void bitnet_f16_gemv_rows(const void *args, size_t r0, size_t r1) {
    const bitnet_f16_gemv_args *a = (const bitnet_f16_gemv_args *)args;
    bitnet_f16_gemv(a->w, a->ld, a->cols, a->x, a->y, r0, r1);
}
