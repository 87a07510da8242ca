// Block-quantized formats q8/q6/q4 and their GEMV / batched GEMV (see bitnet_blockquant.h).
//
// q8 is decoded to f32 and dotted with f32 activations (one generic kernel per ISA). q6/q4 run integer products:
// the activations are quantized to int8 per 32 values, each 128-weight group is unpacked to unsigned bytes with a
// few shifts and masks, and vpdpbusd (AVX-512 VNNI) or vpmaddubsw (AVX2) sums code x activation in int32; one
// float multiply-add per block of 32 applies both scales. The GEMV and the GEMM share the tile code, so a GEMM
// token equals the GEMV of that token bit for bit.
#include "bitnet_blockquant.h"
#include "cpu_features.h"
#include "dense_simd.h"
#include "quant_common.h"
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BQ BITNET_BQ_BLOCK
#define GROUP BITNET_BQ_GROUP
#define ALWAYS_INLINE inline __attribute__((always_inline))

// MARK: - layout

size_t bitnet_bq_group_size(int format) {
    switch (format) {
    case BITNET_BQ_Q8: return BQ;
    case BITNET_BQ_Q6: case BITNET_BQ_Q4: return GROUP;
    default: return 0;
    }
}

size_t bitnet_bq_group_bytes(int format) {
    switch (format) {
    case BITNET_BQ_Q8: return BITNET_Q8_BLOCK_BYTES;
    case BITNET_BQ_Q6: return BITNET_Q6_GROUP_BYTES;
    case BITNET_BQ_Q4: return BITNET_Q4_GROUP_BYTES;
    default: return 0;
    }
}

size_t bitnet_bq_row_stride(int format, size_t cols) {
    size_t n = bitnet_bq_group_size(format);
    return n ? (cols + n - 1) / n * bitnet_bq_group_bytes(format) : 0;
}

/// Code offset of the unsigned q6/q4 codes c = q + offset.
static ALWAYS_INLINE int bq_offset(int fmt) { return fmt == BITNET_BQ_Q6 ? 32 : 8; }

/// Scale of q8 block `blk` (f32) or of block b (< 4) of q6/q4 group `grp` (f16).
static ALWAYS_INLINE float bq_q8_scale(const uint8_t *blk) { float d; memcpy(&d, blk, 4); return d; }
static ALWAYS_INLINE float bq_group_scale(const uint8_t *grp, size_t b) {
    uint16_t h;
    memcpy(&h, grp + 2 * b, 2);
    return bitnet_f16_to_f32_scalar(h);
}

/// Code q of weight i (< 128) of a q6/q4 group.
static ALWAYS_INLINE int bq_group_code(int fmt, const uint8_t *grp, size_t i) {
    int c = (grp[8 + (i & 63)] >> (4 * (i >> 6))) & 15;
    if (fmt == BITNET_BQ_Q6) c |= ((grp[72 + (i & 31)] >> (2 * (i >> 5))) & 3) << 4;
    return c - bq_offset(fmt);
}

/// Packs the 128 unsigned codes c of a q6/q4 group into its ql (and qh) bytes.
static void bq_group_pack(int fmt, const uint8_t c[GROUP], uint8_t *grp) {
    for (size_t j = 0; j < 64; j++) grp[8 + j] = (uint8_t)((c[j] & 15u) | (c[j + 64] & 15u) << 4);
    if (fmt == BITNET_BQ_Q6)
        for (size_t j = 0; j < 32; j++)
            grp[72 + j] = (uint8_t)((c[j] >> 4) | (c[j + 32] >> 4) << 2 | (c[j + 64] >> 4) << 4 | (c[j + 96] >> 4) << 6);
}

// MARK: - q8 (declared in bitnet_dense.h)

size_t bitnet_q8_row_stride(size_t cols) { return (cols + BITNET_Q8_BLOCK - 1) / BITNET_Q8_BLOCK * BITNET_Q8_BLOCK_BYTES; }

void bitnet_q8_quantize(const float *src, size_t ld, size_t cols, uint8_t *dst, size_t r0, size_t r1) {
    size_t stride = bitnet_q8_row_stride(cols);
    for (size_t r = r0; r < r1; r++) {
        const float *row = src + r * ld;
        uint8_t *out = dst + r * stride;
        for (size_t j0 = 0; j0 < cols; j0 += BITNET_Q8_BLOCK, out += BITNET_Q8_BLOCK_BYTES) {
            size_t n = cols - j0 < BITNET_Q8_BLOCK ? cols - j0 : BITNET_Q8_BLOCK;
            float amax = 0;
            for (size_t i = 0; i < n; i++) { float a = fabsf(row[j0 + i]); if (a > amax) amax = a; }
            float d = amax / 127.0f;
            int8_t *q = (int8_t *)(out + 4);
            memset(q, 0, BITNET_Q8_BLOCK);
            if (d > 0) {
                for (size_t i = 0; i < n; i++) {
                    float v = nearbyintf(row[j0 + i] / d);   // default rounding mode: ties to even
                    if (v != v) v = 0;                        // NaN element
                    v = v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v);
                    q[i] = (int8_t)v;
                }
            } else {
                d = 0;   // also maps a NaN absmax... (NaN > 0 is false) to an all-zero block
            }
            memcpy(out, &d, 4);
        }
    }
}

void bitnet_q8_dequantize(const uint8_t *src, size_t cols, float *dst, size_t ld, size_t r0, size_t r1) {
    size_t stride = bitnet_q8_row_stride(cols);
    for (size_t r = r0; r < r1; r++) {
        const uint8_t *blk = src + r * stride;
        float *row = dst + r * ld;
        for (size_t j0 = 0; j0 < cols; j0 += BITNET_Q8_BLOCK, blk += BITNET_Q8_BLOCK_BYTES) {
            size_t n = cols - j0 < BITNET_Q8_BLOCK ? cols - j0 : BITNET_Q8_BLOCK;
            float d = bq_q8_scale(blk);
            const int8_t *q = (const int8_t *)(blk + 4);
            for (size_t i = 0; i < n; i++) row[j0 + i] = d * (float)q[i];
        }
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

/// Block b of a q6/q4 group from n <= 32 values: its f16 scale at bytes 2b, 2b + 1 and its unsigned codes in c.
static void bq_quantize_block(int fmt, const float *x, size_t n, uint8_t *grp, size_t b, uint8_t *c) {
    const float qmax = fmt == BITNET_BQ_Q6 ? 31.0f : 7.0f;
    float amax = 0;
    for (size_t i = 0; i < n; i++) { float a = fabsf(x[i]); if (a > amax) amax = a; }   // NaN never compares >
    uint16_t h = amax > 0 ? f16_round_up(amax / qmax) : 0;
    float d = bitnet_f16_to_f32_scalar(h);
    memcpy(grp + 2 * b, &h, 2);
    for (size_t i = 0; i < n; i++) {
        int q = 0;
        if (d > 0) {
            float v = nearbyintf(x[i] / d);   // default rounding mode: ties to even
            if (v == v) q = (int)(v < -qmax ? -qmax : (v > qmax ? qmax : v));   // NaN element: 0
        }
        c[i] = (uint8_t)(q + bq_offset(fmt));
    }
}

/// One q6/q4 row of `cols` values into ceil(cols / 128) groups; missing blocks/weights are scale 0, code 0.
static void bq_quantize_row(int fmt, const float *x, size_t cols, uint8_t *dst) {
    const size_t gb = bitnet_bq_group_bytes(fmt);
    for (size_t j0 = 0; j0 < cols; j0 += GROUP, dst += gb) {
        uint8_t c[GROUP];
        memset(c, bq_offset(fmt), sizeof c);
        memset(dst, 0, 8);
        for (size_t b = 0; b < GROUP / BQ && j0 + b * BQ < cols; b++) {
            size_t n = cols - j0 - b * BQ;
            bq_quantize_block(fmt, x + j0 + b * BQ, n < BQ ? n : BQ, dst, b, c + b * BQ);
        }
        bq_group_pack(fmt, c, dst);
    }
}

void bitnet_bq_quantize(int format, const float *src, size_t ld, size_t cols, uint8_t *dst, size_t r0, size_t r1) {
    if (format == BITNET_BQ_Q8) { bitnet_q8_quantize(src, ld, cols, dst, r0, r1); return; }
    if (format != BITNET_BQ_Q6 && format != BITNET_BQ_Q4) return;
    size_t stride = bitnet_bq_row_stride(format, cols);
    for (size_t r = r0; r < r1; r++) bq_quantize_row(format, src + r * ld, cols, dst + r * stride);
}

void bitnet_bq_dequantize_row(int format, const uint8_t *row, size_t cols, float *dst) {
    if (format == BITNET_BQ_Q8) {
        for (size_t j0 = 0; j0 < cols; j0 += BQ, row += BITNET_Q8_BLOCK_BYTES) {
            float d = bq_q8_scale(row);
            for (size_t i = 0; i < BQ && j0 + i < cols; i++) dst[j0 + i] = d * (float)((const int8_t *)(row + 4))[i];
        }
        return;
    }
    if (format != BITNET_BQ_Q6 && format != BITNET_BQ_Q4) return;
    const size_t gb = bitnet_bq_group_bytes(format);
    for (size_t j0 = 0; j0 < cols; j0 += GROUP, row += gb)
        for (size_t i = 0; i < GROUP && j0 + i < cols; i++)
            dst[j0 + i] = bq_group_scale(row, i / BQ) * (float)bq_group_code(format, row, i);
}

void bitnet_bq_dequantize(int format, const uint8_t *src, size_t row_stride, size_t cols, float *dst, size_t ld,
                          size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) bitnet_bq_dequantize_row(format, src + r * row_stride, cols, dst + r * ld);
}

// MARK: - activations of the integer kernels

size_t bitnet_bq_act_bytes(size_t cols) { return (cols + GROUP - 1) / GROUP * (GROUP + 4 * sizeof(float) + 32 * sizeof(int32_t)); }

/// One token's activations for the q6/q4 kernels, carved from bitnet_bq_act_bytes(cols) bytes (64-aligned):
/// corr[groups * 32] int32, q[groups * 128] int8 (zero padded), d[groups * 4] f32.
typedef struct { int32_t *corr; int8_t *q; float *d; } bq_act;

static bq_act bq_act_carve(void *mem, size_t groups) {
    bq_act a;
    a.corr = (int32_t *)mem;
    a.q = (int8_t *)(a.corr + groups * 32);
    a.d = (float *)(a.q + groups * GROUP);
    return a;
}

void bitnet_bq_quantize_activations(int format, const float *x, size_t cols, int8_t *q, float *d, int32_t *corr) {
    const size_t groups = (cols + GROUP - 1) / GROUP;
    const int off = format == BITNET_BQ_Q6 ? 32 : 8;
    memset(q, 0, groups * GROUP);
    for (size_t b = 0; b < groups * (GROUP / BQ); b++) {
        const size_t j0 = b * BQ, n = j0 >= cols ? 0 : (cols - j0 < BQ ? cols - j0 : BQ);
        float amax = 0;
        for (size_t i = 0; i < n; i++) { float a = fabsf(x[j0 + i]); if (a > amax) amax = a; }   // NaN never compares >
        // An inf element makes id 0: its block quantizes to 0 (it has no finite int8 image).
        const float id = amax > 0 && amax <= 3.4028234663852886e38f ? 127.0f / amax : 0.0f;
        d[b] = id > 0 ? amax / 127.0f : 0.0f;
        for (size_t i = 0; i < n; i++) {
            float v = nearbyintf(x[j0 + i] * id);   // |v| <= 127; NaN stays NaN
            q[j0 + i] = (int8_t)(v == v ? (v > 127 ? 127 : (v < -127 ? -127 : v)) : 0);
        }
    }
    for (size_t l = 0; l < groups * 32; l++)
        corr[l] = -off * ((int32_t)q[4 * l] + q[4 * l + 1] + q[4 * l + 2] + q[4 * l + 3]);
}

static void bq_act_fill(int fmt, const float *x, size_t cols, bq_act *a) {
    bitnet_bq_quantize_activations(fmt, x, cols, a->q, a->d, a->corr);
}

// MARK: - portable GEMV / GEMM

/// q8: per block s = sum_i q_i x_i in column order, acc += d * s (f32 activations).
static float bq_q8_dot_ref(const uint8_t *blk, size_t cols, const float *x) {
    float acc = 0;
    for (size_t j0 = 0; j0 < cols; j0 += BQ, blk += BITNET_Q8_BLOCK_BYTES) {
        size_t n = cols - j0 < BQ ? cols - j0 : BQ;
        float s = 0;
        for (size_t i = 0; i < n; i++) s += (float)((const int8_t *)(blk + 4))[i] * x[j0 + i];
        acc += bq_q8_scale(blk) * s;
    }
    return acc;
}

/// q6/q4: per block the exact int32 sum of q_w * q_x, then acc += (float)sum * (d_w * d_x), blocks in order.
static float bq_int_dot_ref(int fmt, const uint8_t *row, size_t groups, const bq_act *a) {
    const size_t gb = bitnet_bq_group_bytes(fmt);
    float acc = 0;
    for (size_t g = 0; g < groups; g++, row += gb)
        for (size_t b = 0; b < GROUP / BQ; b++) {
            int32_t s = 0;
            for (size_t i = 0; i < BQ; i++) s += bq_group_code(fmt, row, b * BQ + i) * (int32_t)a->q[g * GROUP + b * BQ + i];
            acc += (float)s * (bq_group_scale(row, b) * a->d[g * 4 + b]);
        }
    return acc;
}

/// Runs body(acts, tokens) with the quantized activations of `ntok` tokens: on the stack for one token of up to
/// 16384 columns (the decode loop allocates nothing), else on the heap. Returns 0 if the heap allocation failed.
#define BQ_STACK_ACT_BYTES (16384 / GROUP * (GROUP + 4 * 4 + 32 * 4))
typedef void (*bq_int_body)(int fmt, const uint8_t *w, size_t rs, size_t groups, const bq_act *acts, size_t ntok,
                            float *y, size_t ldy, size_t r0, size_t r1);
static int bq_with_acts(int fmt, const uint8_t *w, size_t rs, size_t cols, const float *x, size_t ldx, size_t ntok,
                        float *y, size_t ldy, size_t r0, size_t r1, bq_int_body body) {
    const size_t groups = (cols + GROUP - 1) / GROUP, per = bitnet_bq_act_bytes(cols);
    _Alignas(64) uint8_t stack[BQ_STACK_ACT_BYTES];
    bq_act one[1];
    uint8_t *heap = NULL;
    bq_act *acts = one;
    if (ntok == 1 && per <= sizeof stack) {
        one[0] = bq_act_carve(stack, groups);
    } else {
        heap = (uint8_t *)aligned_alloc(64, (ntok * (per + sizeof(bq_act)) + 63) / 64 * 64 + 64);
        if (!heap) return 0;
        acts = (bq_act *)(heap + ntok * per);
        for (size_t t = 0; t < ntok; t++) acts[t] = bq_act_carve(heap + t * per, groups);
    }
    for (size_t t = 0; t < ntok; t++) bq_act_fill(fmt, x + t * ldx, cols, &acts[t]);
    body(fmt, w, rs, groups, acts, ntok, y, ldy, r0, r1);
    free(heap);
    return 1;
}

static void bq_int_gemm_ref(int fmt, const uint8_t *w, size_t rs, size_t groups, const bq_act *acts, size_t ntok,
                            float *y, size_t ldy, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++)
        for (size_t t = 0; t < ntok; t++) y[t * ldy + r] = bq_int_dot_ref(fmt, w + r * rs, groups, &acts[t]);
}

/// Outputs of a call that could not allocate its activation buffers: NaN, never garbage.
static void bq_fill_nan(size_t ntok, float *y, size_t ldy, size_t r0, size_t r1) {
    for (size_t t = 0; t < ntok; t++)
        for (size_t r = r0; r < r1; r++) y[t * ldy + r] = NAN;
}

void bitnet_bq_gemm_ref(int format, const uint8_t *w, size_t row_stride, size_t cols, const float *x, size_t ldx,
                        size_t ntok, float *y, size_t ldy, size_t r0, size_t r1) {
    if (format == BITNET_BQ_Q8) {
        for (size_t r = r0; r < r1; r++)
            for (size_t t = 0; t < ntok; t++) y[t * ldy + r] = bq_q8_dot_ref(w + r * row_stride, cols, x + t * ldx);
        return;
    }
    if (format != BITNET_BQ_Q6 && format != BITNET_BQ_Q4) return;
    if (!bq_with_acts(format, w, row_stride, cols, x, ldx, ntok, y, ldy, r0, r1, bq_int_gemm_ref)) bq_fill_nan(ntok, y, ldy, r0, r1);
}

void bitnet_bq_gemv_ref(int format, const uint8_t *w, size_t row_stride, size_t cols, const float *x, float *y,
                        size_t r0, size_t r1) {
    bitnet_bq_gemm_ref(format, w, row_stride, cols, x, cols, 1, y, 0, r0, r1);
}

#ifdef BITNET_X86
// Software prefetch distances in bytes ahead in each row of a GEMV, as in the ternary GEMVs (ternary_internal.h): a
// T0 prefetch of the lines the tile will read soon (about 4 rows of a 2560-wide head ahead of the 4-row tile) and a
// T2 prefetch far ahead, which starts the DRAM reads early without holding L1 fill buffers. A near distance of a few
// KiB streamed the q6 head faster than one of a few hundred bytes.
#ifndef BQ_PREFETCH
#define BQ_PREFETCH 8192
#endif
#ifndef BQ_PREFETCH_FAR
#define BQ_PREFETCH_FAR 40960
#endif
// Both prefetches of the 104-byte q6 (72-byte q4) group at offset `off` of row r (pf: the near target's row base).
#define BQ_PF_GROUP(pf, off)                                                                               \
    do {                                                                                                   \
        _mm_prefetch((const char *)((pf) + (off)), _MM_HINT_T0);                                           \
        _mm_prefetch((const char *)((pf) + (off) + 64), _MM_HINT_T0);                                      \
        _mm_prefetch((const char *)((pf) + (off) + (BQ_PREFETCH_FAR - BQ_PREFETCH)), _MM_HINT_T2);         \
        _mm_prefetch((const char *)((pf) + (off) + (BQ_PREFETCH_FAR - BQ_PREFETCH) + 64), _MM_HINT_T2);    \
    } while (0)

// f32 value of every f16 (256 KiB, filled once): a scale lookup is two loads and no ALU uop (the trick of ggml's
// table_f32_f16). Only the few entries of the scales in use stay cached.
static float bq_f16_table[65536];
static int bq_vnni;   // the CPU has AVX-512 VNNI (+ VL, BW); set with the table
static pthread_once_t bq_init_once = PTHREAD_ONCE_INIT;

static int bq_cpu_has_vnni(void);
static void bq_init(void) {
    for (uint32_t h = 0; h < 65536; h++) bq_f16_table[h] = bitnet_f16_to_f32_scalar((uint16_t)h);
    bq_vnni = bq_cpu_has_vnni();
}

static ALWAYS_INLINE float bq_group_scale_simd(const uint8_t *grp, size_t b) {
    uint16_t h;
    memcpy(&h, grp + 2 * b, 2);
    return bq_f16_table[h];
}

#define CVT8(v) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))
#define CVT16(v) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v))

// MARK: - q8 (f32 activations), AVX2 and AVX-512

/// acc + d * (w . x) for one q8 block of 32 weights; the products are paired (0+2, 1+3).
AVX2_ATTR
static ALWAYS_INLINE __m256 q8_block_avx2(const uint8_t *blk, const __m256 xv[4], __m256 acc) {
    __m256 w[4];
    for (int k = 0; k < 4; k++) w[k] = CVT8(_mm_loadl_epi64((const __m128i *)(blk + 4 + 8 * k)));
    __m256 p = _mm256_mul_ps(w[0], xv[0]), p2 = _mm256_mul_ps(w[1], xv[1]);
    p = _mm256_fmadd_ps(w[2], xv[2], p);
    p2 = _mm256_fmadd_ps(w[3], xv[3], p2);
    return _mm256_fmadd_ps(_mm256_set1_ps(bq_q8_scale(blk)), _mm256_add_ps(p, p2), acc);
}

/// The activations of block j; the tail block (n < 32 values) is a zero-filled masked load.
AVX2_ATTR
static ALWAYS_INLINE void q8_x_avx2(const float *x, size_t j, size_t n, __m256 xv[4]) {
    for (int k = 0; k < 4; k++) {
        int m = (int)n - 8 * k;
        m = m < 0 ? 0 : (m > 8 ? 8 : m);
        if (m == 8) { xv[k] = _mm256_loadu_ps(x + j + 8 * k); continue; }
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(m), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        xv[k] = m ? _mm256_maskload_ps(x + j + 8 * k, mask) : _mm256_setzero_ps();
    }
}

/// R rows (R <= 4) x T tokens (R * T <= 4) of q8 into y[t * ldy + r]; `pf` (or NULL) prefetched alongside.
AVX2_ATTR
static ALWAYS_INLINE void q8_tile_avx2(const uint8_t *row, size_t rs, const uint8_t *pf, int R, size_t cols,
                                       const float *x, size_t ldx, int T, float *y, size_t ldy) {
    __m256 acc[4], xv[4];
    for (int i = 0; i < R * T; i++) acc[i] = _mm256_setzero_ps();
    for (size_t j = 0, o = 0; j < cols; j += BQ, o += BITNET_Q8_BLOCK_BYTES) {
        size_t n = cols - j < BQ ? cols - j : BQ;
        for (int r = 0; r < R; r++) {
            if (pf) {
                _mm_prefetch((const char *)(pf + r * rs + o), _MM_HINT_T0);
                if (T == 1) _mm_prefetch((const char *)(pf + r * rs + o + (BQ_PREFETCH_FAR - BQ_PREFETCH)), _MM_HINT_T2);
            }
        }
        for (int t = 0; t < T; t++) {
            q8_x_avx2(x + t * ldx, j, n, xv);
            for (int r = 0; r < R; r++) acc[r * T + t] = q8_block_avx2(row + r * rs + o, xv, acc[r * T + t]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) y[t * ldy + r] = hsum256(acc[r * T + t]);
}

AVX2_ATTR
static void q8_gemm_avx2(const uint8_t *w, size_t rs, size_t cols, const float *x, size_t ldx, size_t ntok, float *y,
                         size_t ldy, size_t r0, size_t r1) {
    size_t r = r0;
    if (ntok == 1) {
        for (; r + 4 <= r1; r += 4) q8_tile_avx2(w + r * rs, rs, w + r * rs + BQ_PREFETCH, 4, cols, x, 0, 1, y + r, 0);
        for (; r < r1; r++) q8_tile_avx2(w + r * rs, rs, NULL, 1, cols, x, 0, 1, y + r, 0);
        return;
    }
    for (; r < r1; r++) {
        size_t t = 0;
        for (; t + 4 <= ntok; t += 4) q8_tile_avx2(w + r * rs, rs, NULL, 1, cols, x + t * ldx, ldx, 4, y + t * ldy + r, ldy);
        for (; t < ntok; t++) q8_tile_avx2(w + r * rs, rs, NULL, 1, cols, x + t * ldx, ldx, 1, y + t * ldy + r, ldy);
    }
}

/// Masks of the tail block's two 16-lane halves (n = cols % 32 valid values).
static inline __mmask16 tail_mask(size_t n, size_t half) {
    size_t m = n > 16 * half ? n - 16 * half : 0;
    return m >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << m) - 1u);
}

/// R rows x T tokens (R, T <= 4) of q8: each block decoded once per row and applied to every token.
AVX512_ATTR
static ALWAYS_INLINE void q8_tile_avx512(const uint8_t *row, size_t rs, const uint8_t *pf, int R, size_t cols,
                                         const float *x, size_t ldx, int T, float *y, size_t ldy) {
    __m512 acc[16];
    for (int i = 0; i < R * T; i++) acc[i] = _mm512_setzero_ps();
    for (size_t j = 0, o = 0; j < cols; j += BQ, o += BITNET_Q8_BLOCK_BYTES) {
        const size_t n = cols - j < BQ ? cols - j : BQ;
        const __mmask16 ma = tail_mask(n, 0), mb = tail_mask(n, 1);
        __m512 lo[4], hi[4], d[4];
        for (int r = 0; r < R; r++) {
            const uint8_t *blk = row + r * rs + o;
            if (pf) {
                _mm_prefetch((const char *)(pf + r * rs + o), _MM_HINT_T0);
                if (T == 1) _mm_prefetch((const char *)(pf + r * rs + o + (BQ_PREFETCH_FAR - BQ_PREFETCH)), _MM_HINT_T2);
            }
            lo[r] = CVT16(_mm_loadu_si128((const __m128i *)(blk + 4)));
            hi[r] = CVT16(_mm_loadu_si128((const __m128i *)(blk + 20)));
            d[r] = _mm512_set1_ps(bq_q8_scale(blk));
        }
        for (int t = 0; t < T; t++) {
            __m512 xa = _mm512_maskz_loadu_ps(ma, x + t * ldx + j), xb = _mm512_maskz_loadu_ps(mb, x + t * ldx + j + 16);
            for (int r = 0; r < R; r++)
                acc[r * T + t] = _mm512_fmadd_ps(d[r], _mm512_fmadd_ps(hi[r], xb, _mm512_mul_ps(lo[r], xa)), acc[r * T + t]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r * T + t]);
}

AVX512_ATTR
static void q8_gemm_avx512(const uint8_t *w, size_t rs, size_t cols, const float *x, size_t ldx, size_t ntok, float *y,
                           size_t ldy, size_t r0, size_t r1) {
    size_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const uint8_t *row = w + r * rs, *pf = ntok == 1 ? row + BQ_PREFETCH : (r + 8 <= r1 ? row + 4 * rs : NULL);
        size_t t = 0;
        for (; t + 4 <= ntok; t += 4, pf = NULL) q8_tile_avx512(row, rs, pf, 4, cols, x + t * ldx, ldx, 4, y + t * ldy + r, ldy);
        for (; t < ntok; t++, pf = NULL) q8_tile_avx512(row, rs, pf, 4, cols, x + t * ldx, ldx, 1, y + t * ldy + r, ldy);
    }
    for (; r < r1; r++)
        for (size_t t = 0; t < ntok; t++) q8_tile_avx512(w + r * rs, rs, NULL, 1, cols, x + t * ldx, ldx, 1, y + t * ldy + r, ldy);
}

// MARK: - q6/q4 integer kernels, AVX2 (vpmaddubsw)

/// The 32 unsigned codes c = q + offset of block b of a group. Block b takes the low (b < 2) or high nibbles of
/// ql bytes 32 (b & 1) .. + 31 and, for q6, bits 2b..2b+1 of qh moved to bits 4-5.
AVX2_ATTR
static ALWAYS_INLINE __m256i bq_codes_avx2(int fmt, const uint8_t *grp, int b) {
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i ql = _mm256_loadu_si256((const __m256i *)(grp + 8 + 32 * (b & 1)));
    __m256i c = _mm256_and_si256(b >= 2 ? _mm256_srli_epi16(ql, 4) : ql, m4);
    if (fmt == BITNET_BQ_Q6) {
        __m256i qh = _mm256_loadu_si256((const __m256i *)(grp + 72));
        __m256i h = b == 0 ? _mm256_slli_epi16(qh, 4) : b == 1 ? _mm256_slli_epi16(qh, 2) : b == 2 ? qh : _mm256_srli_epi16(qh, 2);
        c = _mm256_or_si256(c, _mm256_and_si256(h, _mm256_set1_epi8(0x30)));
    }
    return c;
}

/// R rows x T tokens (R * T <= 4): per block, c . x_q by vpmaddubsw (|c x| pairs <= 2 * 63 * 127, no saturation)
/// and vpmaddwd, plus the offset correction, in int32; then one FMA with d_w * d_x.
AVX2_ATTR
static ALWAYS_INLINE void bq_int_tile_avx2(int fmt, const uint8_t *row, size_t rs, const uint8_t *pf, int R,
                                           size_t groups, const bq_act *acts, int T, float *y, size_t ldy) {
    const size_t gb = bitnet_bq_group_bytes(fmt);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4];
    for (int i = 0; i < R * T; i++) acc[i] = _mm256_setzero_ps();
    for (size_t g = 0; g < groups; g++) {
        for (int r = 0; r < R; r++) {
            const uint8_t *grp = row + r * rs + g * gb;
            if (pf && T == 1) BQ_PF_GROUP(pf + r * rs, g * gb);   // a GEMV: near and far
            else if (pf) {                                        // a GEMM: the next row tile
                _mm_prefetch((const char *)(pf + r * rs + g * gb), _MM_HINT_T0);
                _mm_prefetch((const char *)(pf + r * rs + g * gb + 64), _MM_HINT_T0);
            }
            for (int b = 0; b < 4; b++) {
                const __m256i c = bq_codes_avx2(fmt, grp, b);
                const float dw = bq_group_scale_simd(grp, (size_t)b);
                for (int t = 0; t < T; t++) {
                    const bq_act *a = &acts[t];
                    __m256i p = _mm256_maddubs_epi16(c, _mm256_loadu_si256((const __m256i *)(a->q + g * GROUP + 32 * b)));
                    __m256i s = _mm256_add_epi32(_mm256_madd_epi16(p, ones), _mm256_loadu_si256((const __m256i *)(a->corr + g * 32 + 8 * b)));
                    acc[r * T + t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dw * a->d[g * 4 + b]), acc[r * T + t]);
                }
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) y[t * ldy + r] = hsum256(acc[r * T + t]);
}

/// GEMV: 4 rows at a time (each prefetched BQ_PREFETCH bytes ahead); GEMM: 1 row x 4 tokens tiles.
AVX2_ATTR
static ALWAYS_INLINE void bq_int_gemm_avx2_fmt(int fmt, const uint8_t *w, size_t rs, size_t groups, const bq_act *acts,
                                               size_t ntok, float *y, size_t ldy, size_t r0, size_t r1) {
    size_t r = r0;
    if (ntok == 1) {
        for (; r + 4 <= r1; r += 4) bq_int_tile_avx2(fmt, w + r * rs, rs, w + r * rs + BQ_PREFETCH, 4, groups, acts, 1, y + r, 0);
        for (; r < r1; r++) bq_int_tile_avx2(fmt, w + r * rs, rs, NULL, 1, groups, acts, 1, y + r, 0);
        return;
    }
    for (; r < r1; r++) {
        size_t t = 0;
        for (; t + 4 <= ntok; t += 4) bq_int_tile_avx2(fmt, w + r * rs, rs, NULL, 1, groups, acts + t, 4, y + t * ldy + r, ldy);
        for (; t < ntok; t++) bq_int_tile_avx2(fmt, w + r * rs, rs, NULL, 1, groups, acts + t, 1, y + t * ldy + r, ldy);
    }
}

// MARK: - q6/q4 integer kernels, AVX-512 VNNI (vpdpbusd)

#define VNNI_ATTR __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")))

/// A group's 128 unsigned codes: A = weights 0-63 (low nibbles of ql), B = 64-127 (high nibbles); for q6 the qh
/// fields (weights j, j+32, j+64, j+96 in bits 0-1, 2-3, 4-5, 6-7 of byte j) are shifted to bits 4-5 (16-bit
/// shifts; the bits they drag across bytes are masked off) and merged: ternlog 0xEA = (h & 0x30) | nibble.
VNNI_ATTR
static ALWAYS_INLINE void bq_codes_vnni(int fmt, const uint8_t *grp, __m512i *A, __m512i *B) {
    const __m512i m4 = _mm512_set1_epi8(15);
    const __m512i ql = _mm512_loadu_si512(grp + 8);
    __m512i lo = _mm512_and_si512(ql, m4), hi = _mm512_and_si512(_mm512_srli_epi16(ql, 4), m4);
    if (fmt == BITNET_BQ_Q6) {
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(grp + 72)));
        const __m512i left = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);    // bytes 0-31: << 4, 32-63: << 2
        const __m512i right = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);  // 64-95: in place, 96-127: >> 2
        const __m512i m30 = _mm512_set1_epi8(0x30);
        lo = _mm512_ternarylogic_epi32(_mm512_sllv_epi16(qh, left), m30, lo, 0xEA);
        hi = _mm512_ternarylogic_epi32(_mm512_srlv_epi16(qh, right), m30, hi, 0xEA);
    }
    *A = lo;
    *B = hi;
}

/// R rows x T tokens (R, T <= 4). Per group and token: two vpdpbusd started from the offset correction give the
/// exact int32 sums q_w . q_x of 4 weights per lane (lanes 0-7 block 0, 8-15 block 1 of each half-group), then
/// acc += lanes * (d_w * d_x) with the block scales spread over the lanes.
VNNI_ATTR
static ALWAYS_INLINE void bq_int_tile_vnni(int fmt, const uint8_t *row, size_t rs, const uint8_t *pf, int R,
                                           size_t groups, const bq_act *acts, int T, float *y, size_t ldy) {
    const size_t gb = bitnet_bq_group_bytes(fmt);
    const __m512i idx_a = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i idx_b = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
    __m512 acc[16];
    for (int i = 0; i < R * T; i++) acc[i] = _mm512_setzero_ps();
    for (size_t g = 0; g < groups; g++) {
        for (int r = 0; r < R; r++) {
            const uint8_t *grp = row + r * rs + g * gb;
            if (pf && T == 1) BQ_PF_GROUP(pf + r * rs, g * gb);   // a GEMV: near and far
            else if (pf) {                                        // a GEMM: the next row tile
                _mm_prefetch((const char *)(pf + r * rs + g * gb), _MM_HINT_T0);
                _mm_prefetch((const char *)(pf + r * rs + g * gb + 64), _MM_HINT_T0);
            }
            __m512i A, B;
            bq_codes_vnni(fmt, grp, &A, &B);
            const __m128 dw = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)grp));
            for (int t = 0; t < T; t++) {
                const bq_act *a = &acts[t];
                __m512i ia = _mm512_dpbusd_epi32(_mm512_loadu_si512(a->corr + g * 32), A, _mm512_loadu_si512(a->q + g * GROUP));
                __m512i ib = _mm512_dpbusd_epi32(_mm512_loadu_si512(a->corr + g * 32 + 16), B, _mm512_loadu_si512(a->q + g * GROUP + 64));
                __m512 s = _mm512_castps128_ps512(_mm_mul_ps(dw, _mm_loadu_ps(a->d + g * 4)));
                __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia), _mm512_permutexvar_ps(idx_a, s), acc[r * T + t]);
                acc[r * T + t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ib), _mm512_permutexvar_ps(idx_b, s), v);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r * T + t]);
}

/// GEMV: 4 rows at a time, each prefetched BQ_PREFETCH bytes ahead; GEMM: 4 rows x 4 tokens register tiles (each
/// decoded group serves 4 tokens), leftover tokens and rows one at a time.
VNNI_ATTR
static ALWAYS_INLINE void bq_int_gemm_vnni_fmt(int fmt, const uint8_t *w, size_t rs, size_t groups, const bq_act *acts,
                                               size_t ntok, float *y, size_t ldy, size_t r0, size_t r1) {
    size_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const uint8_t *row = w + r * rs, *pf = ntok == 1 ? row + BQ_PREFETCH : (r + 8 <= r1 ? row + 4 * rs : NULL);
        size_t t = 0;
        for (; t + 4 <= ntok; t += 4, pf = NULL) bq_int_tile_vnni(fmt, row, rs, pf, 4, groups, acts + t, 4, y + t * ldy + r, ldy);
        for (; t < ntok; t++) bq_int_tile_vnni(fmt, row, rs, ntok == 1 ? pf : NULL, 4, groups, acts + t, 1, y + t * ldy + r, ldy);
    }
    for (; r < r1; r++)
        for (size_t t = 0; t < ntok; t++) bq_int_tile_vnni(fmt, w + r * rs, rs, NULL, 1, groups, acts + t, 1, y + t * ldy + r, ldy);
}

// One non-inlined instance per (ISA, format).
AVX2_ATTR static void bq_int_avx2_q6(int fmt, const uint8_t *w, size_t rs, size_t groups, const bq_act *acts, size_t ntok,
                                     float *y, size_t ldy, size_t r0, size_t r1) {
    (void)fmt; bq_int_gemm_avx2_fmt(BITNET_BQ_Q6, w, rs, groups, acts, ntok, y, ldy, r0, r1);
}
AVX2_ATTR static void bq_int_avx2_q4(int fmt, const uint8_t *w, size_t rs, size_t groups, const bq_act *acts, size_t ntok,
                                     float *y, size_t ldy, size_t r0, size_t r1) {
    (void)fmt; bq_int_gemm_avx2_fmt(BITNET_BQ_Q4, w, rs, groups, acts, ntok, y, ldy, r0, r1);
}
VNNI_ATTR static void bq_int_vnni_q6(int fmt, const uint8_t *w, size_t rs, size_t groups, const bq_act *acts, size_t ntok,
                                     float *y, size_t ldy, size_t r0, size_t r1) {
    (void)fmt; bq_int_gemm_vnni_fmt(BITNET_BQ_Q6, w, rs, groups, acts, ntok, y, ldy, r0, r1);
}
VNNI_ATTR static void bq_int_vnni_q4(int fmt, const uint8_t *w, size_t rs, size_t groups, const bq_act *acts, size_t ntok,
                                     float *y, size_t ldy, size_t r0, size_t r1) {
    (void)fmt; bq_int_gemm_vnni_fmt(BITNET_BQ_Q4, w, rs, groups, acts, ntok, y, ldy, r0, r1);
}

static int bq_cpu_has_vnni(void) {
    return bitnet_cpu_has(bitnet_cpu()->cpu, BITNET_CPU_AVX512VNNI | BITNET_CPU_AVX512VL | BITNET_CPU_AVX512BW);
}
#endif

// MARK: - dispatch

/// The integer q6/q4 kernel of the active dense path: VNNI where the AVX-512 path runs on a CPU with VNNI, AVX2
/// (vpmaddubsw) on the AVX2 path or an AVX-512 CPU without VNNI, the portable reference otherwise.
static bq_int_body bq_int_kernel(int fmt) {
#ifdef BITNET_X86
    int isa = bitnet_dense_isa();
    if (isa >= BITNET_DENSE_AVX2) {
        pthread_once(&bq_init_once, bq_init);
        if (isa == BITNET_DENSE_AVX512 && bq_vnni) return fmt == BITNET_BQ_Q6 ? bq_int_vnni_q6 : bq_int_vnni_q4;
        return fmt == BITNET_BQ_Q6 ? bq_int_avx2_q6 : bq_int_avx2_q4;
    }
#endif
    (void)fmt;
    return bq_int_gemm_ref;
}

void bitnet_bq_gemm(int format, const uint8_t *w, size_t row_stride, size_t cols, const float *x, size_t ldx,
                    size_t ntok, float *y, size_t ldy, size_t r0, size_t r1) {
    if (ntok == 0 || r0 >= r1) return;
    if (format == BITNET_BQ_Q8) {
#ifdef BITNET_X86
        int isa = bitnet_dense_isa();
        if (isa == BITNET_DENSE_AVX512) { q8_gemm_avx512(w, row_stride, cols, x, ldx, ntok, y, ldy, r0, r1); return; }
        if (isa == BITNET_DENSE_AVX2) { q8_gemm_avx2(w, row_stride, cols, x, ldx, ntok, y, ldy, r0, r1); return; }
#endif
        bitnet_bq_gemm_ref(format, w, row_stride, cols, x, ldx, ntok, y, ldy, r0, r1);
        return;
    }
    if (format != BITNET_BQ_Q6 && format != BITNET_BQ_Q4) return;
    if (!bq_with_acts(format, w, row_stride, cols, x, ldx, ntok, y, ldy, r0, r1, bq_int_kernel(format)))
        bq_fill_nan(ntok, y, ldy, r0, r1);
}

void bitnet_bq_gemv(int format, const uint8_t *w, size_t row_stride, size_t cols, const float *x, float *y,
                    size_t r0, size_t r1) {
    bitnet_bq_gemm(format, w, row_stride, cols, x, cols, 1, y, 0, r0, r1);
}

void bitnet_bq_gemv_rows(const void *args, size_t r0, size_t r1) {
    const bitnet_bq_gemv_args *a = (const bitnet_bq_gemv_args *)args;
    bitnet_bq_gemv(a->format, a->w, a->row_stride, a->cols, a->x, a->y, r0, r1);
}

// The q8 GEMVs are the q8 instances of the block-format kernels.
void bitnet_q8_gemv_ref(const uint8_t *w, size_t row_stride, size_t cols, const float *x, float *y, size_t r0, size_t r1) {
    bitnet_bq_gemv_ref(BITNET_BQ_Q8, w, row_stride, cols, x, y, r0, r1);
}

void bitnet_q8_gemv(const uint8_t *w, size_t row_stride, size_t cols, const float *x, float *y, size_t r0, size_t r1) {
    bitnet_bq_gemv(BITNET_BQ_Q8, w, row_stride, cols, x, y, r0, r1);
}
