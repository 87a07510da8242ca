// Decode attention over one KV head's cached rows (see bitnet_attention.h). Positions go by blocks of ATT_BLOCK:
// the block's scores for every query, then one online-softmax step (new max, rescale of l and o), then the
// exp-weighted values. Rows of a KV head are contiguous, so the loop streams them in order; q8/q4 rows are turned
// into floats once per row for all the queries that share them, and their per-position scale multiplies the
// score (keys) or the softmax weight (values) instead of every element.
#include "cpu_features.h"
#include "dense_simd.h"
#include "bitnet_attention.h"
#include "bitnet_dense.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

// Stack use stays bounded for any model shape: at most ATT_MAX_GROUP queries per pass (their block of scores lives
// on the stack), SIMD row buffers only for head sizes up to ATT_MAX_SIMD_HD, and larger heads' portable row buffer
// on the heap.
enum { ATT_BLOCK = 32, ATT_MAX_GROUP = 64, ATT_MAX_SIMD_HD = 1024 };
#define ATT512_ATTR AVX512_ATTR

// Paths: 0 portable, 1 AVX2 + FMA + F16C, 2 AVX-512 (F, BW, VL); the one a CPU with `features` takes.
static int attention_level(unsigned features) {
    if (!bitnet_cpu_has(features, BITNET_CPU_AVX2 | BITNET_CPU_FMA | BITNET_CPU_F16C)) return 0;
    return bitnet_cpu_has(features, BITNET_CPU_AVX512F | BITNET_CPU_AVX512BW | BITNET_CPU_AVX512VL) ? 2 : 1;
}

static int attention_simd_selected = -1;

static int attention_simd(void) { return bitnet_isa_selected(&attention_simd_selected, attention_level); }

int bitnet_attention_set_isa(int level) { return bitnet_isa_select(&attention_simd_selected, attention_level, level); }

const char *bitnet_attention_isa_name(void) {
    switch (attention_simd()) { case 2: return "avx512"; case 1: return "avx2"; default: return "portable"; }
}

// Scale of row t's codes (1 for f32/f16 rows).
static inline float row_scale(const float *scales, size_t t) { return scales ? scales[t] : 1.0f; }

// Positions in the block that starts at b0: ATT_BLOCK, or what is left before t1.
static inline size_t block_len(size_t b0, size_t t1) { return t1 - b0 < ATT_BLOCK ? t1 - b0 : ATT_BLOCK; }

// Queries j0..j0+3 of the g at q (a last partial set repeats its last query; put_scores drops those scores).
static inline void query_set(const float *q, size_t g, size_t hd, size_t j0, const float *qs[4]) {
    for (size_t j = 0; j < 4; j++) qs[j] = q + (j0 + j < g ? j0 + j : g - 1) * hd;
}

// Softmax weights s[j][i] times value row i's scale (q8/q4; none for f32/f16), so the weighted sum reads raw codes.
static inline void scale_weights(float s[][ATT_BLOCK], size_t g, size_t n, const float *value_scales) {
    if (!value_scales) return;
    for (size_t j = 0; j < g; j++)
        for (size_t i = 0; i < n; i++) s[j][i] *= value_scales[i];
}

// MARK: portable

// Row `row` (head_dim values) as floats: f32 rows in place, others converted into tmp (codes not yet scaled).
static const float *row_floats_portable(int format, const uint8_t *row, size_t hd, float *tmp) {
    switch (format) {
    case BITNET_KV_F32: return (const float *)(const void *)row;
    case BITNET_KV_F16:
        for (size_t i = 0; i < hd; i++) {
            uint16_t h;
            memcpy(&h, row + 2 * i, 2);
            tmp[i] = bitnet_f16_to_f32_scalar(h);
        }
        return tmp;
    case BITNET_KV_Q8:
        for (size_t i = 0; i < hd; i++) tmp[i] = (float)(int8_t)row[i];
        return tmp;
    default:
        for (size_t i = 0; i < hd / 2; i++) {
            tmp[2 * i] = (float)((int8_t)(uint8_t)(row[i] << 4) >> 4);
            tmp[2 * i + 1] = (float)((int8_t)row[i] >> 4);
        }
        return tmp;
    }
}

// One online-softmax step for query j over n scores s (overwritten with exp(s - m_new)); rescales l and o.
static void softmax_step_portable(float *s, size_t n, float *m, float *l, float *o, size_t hd) {
    float bm = s[0];
    for (size_t i = 1; i < n; i++) bm = s[i] > bm ? s[i] : bm;
    const float mn = bm > *m ? bm : *m, c = expf(*m - mn);   // first block: m = -inf, c = 0
    float sum = 0;
    for (size_t i = 0; i < n; i++) { s[i] = expf(s[i] - mn); sum += s[i]; }
    *l = *l * c + sum;
    for (size_t d = 0; d < hd; d++) o[d] *= c;
    *m = mn;
}

static void part_portable(const bitnet_attend_args *a, size_t t0, size_t t1, float *m, float *l, float *o) {
    const size_t g = a->group, hd = a->head_dim, rb = a->row_bytes;
    const uint8_t *K = a->keys, *V = a->values;
    float s[g][ATT_BLOCK], small[ATT_MAX_SIMD_HD];
    float *tmp = hd <= ATT_MAX_SIMD_HD ? small : malloc(hd * sizeof(float));
    if (!tmp) return;   // out of memory: the part stays empty (l = 0), so the merge gives zeros rather than a crash
    for (size_t b0 = t0; b0 < t1; b0 += ATT_BLOCK) {
        const size_t n = block_len(b0, t1);
        for (size_t i = 0; i < n; i++) {
            const float *k = row_floats_portable(a->format, K + (b0 + i) * rb, hd, tmp);
            const float ks = row_scale(a->key_scales, b0 + i) * a->scale;
            for (size_t j = 0; j < g; j++) {
                float dot = 0;
                for (size_t d = 0; d < hd; d++) dot += a->q[j * hd + d] * k[d];
                s[j][i] = dot * ks;
            }
        }
        for (size_t j = 0; j < g; j++) softmax_step_portable(s[j], n, m + j, l + j, o + j * hd, hd);
        for (size_t i = 0; i < n; i++) {
            const float *v = row_floats_portable(a->format, V + (b0 + i) * rb, hd, tmp);
            const float vs = row_scale(a->value_scales, b0 + i);
            for (size_t j = 0; j < g; j++) {
                const float w = s[j][i] * vs;
                for (size_t d = 0; d < hd; d++) o[j * hd + d] += w * v[d];
            }
        }
    }
    if (tmp != small) free(tmp);
}

// MARK: AVX2 + FMA + F16C

#ifdef BITNET_X86
// Row as floats (see row_floats_portable); 8 values at a time, the tail by the portable code.
AVX2_ATTR
static const float *row_floats_avx2(int format, const uint8_t *row, size_t hd, float *tmp) {
    size_t i = 0;
    switch (format) {
    case BITNET_KV_F32: return (const float *)(const void *)row;
    case BITNET_KV_F16:
        for (; i + 8 <= hd; i += 8) _mm256_storeu_ps(tmp + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * i))));
        break;
    case BITNET_KV_Q8:
        for (; i + 8 <= hd; i += 8)
            _mm256_storeu_ps(tmp + i, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(row + i)))));
        break;
    default:
        for (; i + 8 <= hd; i += 8) {
            int32_t word;
            memcpy(&word, row + i / 2, 4);
            const __m128i b = _mm_cvtsi32_si128(word), m4 = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
            const __m128i lo = _mm_and_si128(b, m4), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m4);
            // Nibble pairs in element order, then sign extension of 4-bit two's complement: (x ^ 8) - 8.
            const __m128i x = _mm_sub_epi8(_mm_xor_si128(_mm_unpacklo_epi8(lo, hi), eight), eight);
            _mm256_storeu_ps(tmp + i, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(x)));
        }
        break;
    }
    if (i < hd) {
        // Tail (head_dim not a multiple of 8): q4 tails start on a whole byte since i and head_dim are even.
        const size_t bytes = format == BITNET_KV_F16 ? 2 * i : format == BITNET_KV_Q8 ? i : i / 2;
        row_floats_portable(format, row + bytes, hd - i, tmp + i);
    }
    return tmp;
}

// Scores of 4 queries (q0..q3, head_dim floats each) against one row: 4 accumulators share each row load, then
// one transposing reduction (hadd) gives the 4 sums.
AVX2_ATTR
static inline __m128 dot4_avx2(const float *const q[4], const float *k, size_t hd) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t d = 0;
    for (; d + 8 <= hd; d += 8) {
        const __m256 x = _mm256_loadu_ps(k + d);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q[0] + d), x, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q[1] + d), x, a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q[2] + d), x, a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q[3] + d), x, a3);
    }
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    if (d < hd) {
        float t[4] = {0, 0, 0, 0};
        for (; d < hd; d++) for (int j = 0; j < 4; j++) t[j] += q[j][d] * k[d];
        r = _mm_add_ps(r, _mm_loadu_ps(t));
    }
    return r;
}

// s[j0 + j][i] = d[j] * scale for the queries j of this set of 4 that exist (j0 + j < g).
static inline void put_scores(float s[][ATT_BLOCK], size_t j0, size_t g, size_t i, __m128 d, float scale) {
    float r[4];
    _mm_storeu_ps(r, _mm_mul_ps(d, _mm_set1_ps(scale)));
    for (size_t j = 0; j < 4 && j0 + j < g; j++) s[j0 + j][i] = r[j];
}

// s[j][i] = scale_i * q_j . row_i for all queries (4 at a time; a last partial set repeats its last query).
AVX2_ATTR
static void scores_avx2(const float *q, size_t g, size_t hd, const float *const *rows, const float *rs, size_t n,
                        float s[][ATT_BLOCK]) {
    for (size_t j0 = 0; j0 < g; j0 += 4) {
        const float *qs[4];
        query_set(q, g, hd, j0, qs);
        for (size_t i = 0; i < n; i++) put_scores(s, j0, g, i, dot4_avx2(qs, rows[i], hd), rs[i]);
    }
}

// o_j[d] += sum_i w[j][i] * row_i[d]: 16 dims of up to 4 queries (8 accumulators, enough independent FMA chains to
// fill both FMA ports) stay in registers across the block's rows.
AVX2_ATTR
static void weighted_rows_avx2(float w[][ATT_BLOCK], size_t g, const float *const *rows, size_t n, float *o, size_t hd) {
    size_t d = 0;
    for (; d + 16 <= hd; d += 16) {
        size_t j0 = 0;
        for (; j0 + 4 <= g; j0 += 4) {
            float *o0 = o + j0 * hd + d, *o1 = o0 + hd, *o2 = o1 + hd, *o3 = o2 + hd;
            __m256 a0 = _mm256_loadu_ps(o0), a1 = _mm256_loadu_ps(o1), a2 = _mm256_loadu_ps(o2), a3 = _mm256_loadu_ps(o3);
            __m256 b0 = _mm256_loadu_ps(o0 + 8), b1 = _mm256_loadu_ps(o1 + 8), b2 = _mm256_loadu_ps(o2 + 8), b3 = _mm256_loadu_ps(o3 + 8);
            for (size_t i = 0; i < n; i++) {
                const __m256 x = _mm256_loadu_ps(rows[i] + d), y = _mm256_loadu_ps(rows[i] + d + 8);
                const __m256 w0 = _mm256_set1_ps(w[j0][i]), w1 = _mm256_set1_ps(w[j0 + 1][i]);
                const __m256 w2 = _mm256_set1_ps(w[j0 + 2][i]), w3 = _mm256_set1_ps(w[j0 + 3][i]);
                a0 = _mm256_fmadd_ps(w0, x, a0); b0 = _mm256_fmadd_ps(w0, y, b0);
                a1 = _mm256_fmadd_ps(w1, x, a1); b1 = _mm256_fmadd_ps(w1, y, b1);
                a2 = _mm256_fmadd_ps(w2, x, a2); b2 = _mm256_fmadd_ps(w2, y, b2);
                a3 = _mm256_fmadd_ps(w3, x, a3); b3 = _mm256_fmadd_ps(w3, y, b3);
            }
            _mm256_storeu_ps(o0, a0); _mm256_storeu_ps(o1, a1); _mm256_storeu_ps(o2, a2); _mm256_storeu_ps(o3, a3);
            _mm256_storeu_ps(o0 + 8, b0); _mm256_storeu_ps(o1 + 8, b1); _mm256_storeu_ps(o2 + 8, b2); _mm256_storeu_ps(o3 + 8, b3);
        }
        for (; j0 < g; j0++) {
            __m256 a = _mm256_loadu_ps(o + j0 * hd + d), b = _mm256_loadu_ps(o + j0 * hd + d + 8);
            for (size_t i = 0; i < n; i++) {
                const __m256 wj = _mm256_set1_ps(w[j0][i]);
                a = _mm256_fmadd_ps(wj, _mm256_loadu_ps(rows[i] + d), a);
                b = _mm256_fmadd_ps(wj, _mm256_loadu_ps(rows[i] + d + 8), b);
            }
            _mm256_storeu_ps(o + j0 * hd + d, a); _mm256_storeu_ps(o + j0 * hd + d + 8, b);
        }
    }
    for (; d < hd; d++)
        for (size_t j = 0; j < g; j++)
            for (size_t i = 0; i < n; i++) o[j * hd + d] += w[j][i] * rows[i][d];
}

AVX2_ATTR
static void softmax_step_avx2(float *s, size_t n, float *m, float *l, float *o, size_t hd) {
    float bm = s[0];
    size_t k = 0;
    if (n >= 8) {
        __m256 vmax = _mm256_loadu_ps(s);
        for (k = 8; k + 8 <= n; k += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + k));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        bm = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
    }
    for (; k < n; k++) bm = s[k] > bm ? s[k] : bm;
    const float mn = bm > *m ? bm : *m, c = expf(*m - mn);
    const __m256 vm = _mm256_set1_ps(mn);
    __m256 acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + i), vm));
        _mm256_storeu_ps(s + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = hsum256(acc);
    for (; i < n; i++) { s[i] = expf(s[i] - mn); sum += s[i]; }
    *l = *l * c + sum;
    if (c != 1.0f) {
        const __m256 vc = _mm256_set1_ps(c);
        size_t d = 0;
        for (; d + 8 <= hd; d += 8) _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_loadu_ps(o + d), vc));
        for (; d < hd; d++) o[d] *= c;
    }
    *m = mn;
}

// Requests `bytes` at p into L1, one prefetch per line.
static inline void prefetch_bytes(const uint8_t *p, size_t bytes) {
    for (size_t off = 0; off < bytes; off += 64) _mm_prefetch((const char *)p + off, _MM_HINT_T0);
}

// While key row t is read: request value row t (read after the block's scores) and key row t + ATT_BLOCK into L1,
// and both rows ~32 KB further on into L2 (early DRAM requests, as the ternary GEMVs do; they shorten cold passes over f32,
// f16 and q8 rows).
static inline size_t prefetch_far_rows(size_t rb) { return 32768 / rb > 2 * ATT_BLOCK ? 32768 / rb : 2 * ATT_BLOCK; }
static inline void prefetch_ahead(const uint8_t *K, const uint8_t *V, size_t rb, size_t t, size_t t1, size_t far) {
    prefetch_bytes(V + t * rb, rb);
    if (t + ATT_BLOCK < t1) prefetch_bytes(K + (t + ATT_BLOCK) * rb, rb);
    if (t + far < t1)
        for (size_t off = 0; off < rb; off += 64) {
            _mm_prefetch((const char *)K + (t + far) * rb + off, _MM_HINT_T2);
            _mm_prefetch((const char *)V + (t + far) * rb + off, _MM_HINT_T2);
        }
}

// Per block: the rows as floats (f32 rows in place, others converted once into buf), scores, softmax step, values.
// The cache rows come from DRAM (each decode step's weight stream evicts them), and the hardware prefetcher stops
// at every 4 KB page, so each key row visited also requests the block's value row and the next block's key row.
AVX2_ATTR
static void part_avx2(const bitnet_attend_args *a, size_t t0, size_t t1, float *m, float *l, float *o) {
    const size_t g = a->group, hd = a->head_dim, rb = a->row_bytes;
    const uint8_t *K = a->keys, *V = a->values;
    float s[g][ATT_BLOCK], rs[ATT_BLOCK], buf[ATT_BLOCK * hd + 8];
    const float *rows[ATT_BLOCK];
    const size_t far = prefetch_far_rows(rb);
    prefetch_bytes(K + t0 * rb, block_len(t0, t1) * rb);
    for (size_t b0 = t0; b0 < t1; b0 += ATT_BLOCK) {
        const size_t n = block_len(b0, t1);
        for (size_t i = 0; i < n; i++) {
            prefetch_ahead(K, V, rb, b0 + i, t1, far);
            rows[i] = row_floats_avx2(a->format, K + (b0 + i) * rb, hd, buf + i * hd);
            rs[i] = row_scale(a->key_scales, b0 + i) * a->scale;
        }
        scores_avx2(a->q, g, hd, rows, rs, n, s);
        for (size_t j = 0; j < g; j++) softmax_step_avx2(s[j], n, m + j, l + j, o + j * hd, hd);
        for (size_t i = 0; i < n; i++) rows[i] = row_floats_avx2(a->format, V + (b0 + i) * rb, hd, buf + i * hd);
        scale_weights(s, g, n, a->value_scales ? a->value_scales + b0 : NULL);
        weighted_rows_avx2(s, g, rows, n, o, hd);
    }
}

// MARK: AVX-512: rows read 16 values at a time straight from the cache (f16 and q8 converted in registers, q4 through
// a float buffer), 4 queries per row load, 32 dims of 4 outputs in registers across a block's value rows.

// 16 values of a row at element d as floats (format f32, f16 or q8; q4 rows arrive as f32 buffers).
ATT512_ATTR
static inline __m512 load16(const uint8_t *row, size_t d, const int format) {
    switch (format) {
    case BITNET_KV_F16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(row + 2 * d)));
    case BITNET_KV_Q8: return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(row + d))));
    default: return _mm512_loadu_ps((const float *)(const void *)row + d);
    }
}

// The sums of 4 accumulators (one per query) as [a0, a1, a2, a3]: unpack-add twice, then the four 128-bit lanes.
ATT512_ATTR __attribute__((always_inline))
static inline __m128 reduce4_512(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    const __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    const __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    const __m512d p0 = _mm512_castps_pd(t0), p1 = _mm512_castps_pd(t1);
    const __m512 t2 = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(p0, p1)), _mm512_castpd_ps(_mm512_unpackhi_pd(p0, p1)));
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(t2), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t2), 1)));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// q_j . row for 4 queries (the tail row of a block with an odd count).
ATT512_ATTR __attribute__((always_inline))
static inline __m128 dot4_512(const float *const q[4], const uint8_t *row, size_t hd, const int format) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t d = 0; d < hd; d += 16) {
        const __m512 x = load16(row, d, format);
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q[0] + d), x, a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q[1] + d), x, a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(q[2] + d), x, a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(q[3] + d), x, a3);
    }
    return reduce4_512(a0, a1, a2, a3);
}

// dot4_512 for two rows at once (each query load feeds both).
ATT512_ATTR __attribute__((always_inline))
static inline void dot4x2_512(const float *const q[4], const uint8_t *r0, const uint8_t *r1, size_t hd, const int format,
                              __m128 *d0, __m128 *d1) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (size_t d = 0; d < hd; d += 16) {
        const __m512 x = load16(r0, d, format), y = load16(r1, d, format);
        const __m512 q0 = _mm512_loadu_ps(q[0] + d), q1 = _mm512_loadu_ps(q[1] + d);
        const __m512 q2 = _mm512_loadu_ps(q[2] + d), q3 = _mm512_loadu_ps(q[3] + d);
        a0 = _mm512_fmadd_ps(q0, x, a0); a1 = _mm512_fmadd_ps(q1, x, a1); a2 = _mm512_fmadd_ps(q2, x, a2); a3 = _mm512_fmadd_ps(q3, x, a3);
        b0 = _mm512_fmadd_ps(q0, y, b0); b1 = _mm512_fmadd_ps(q1, y, b1); b2 = _mm512_fmadd_ps(q2, y, b2); b3 = _mm512_fmadd_ps(q3, y, b3);
    }
    *d0 = reduce4_512(a0, a1, a2, a3);
    *d1 = reduce4_512(b0, b1, b2, b3);
}

// o_j[d] += sum_i w[j][i] * row_i[d] (head_dim a multiple of 16).
ATT512_ATTR __attribute__((always_inline))
static inline void weighted_rows_512(float w[][ATT_BLOCK], size_t g, const uint8_t *const *rows, size_t n, float *o, size_t hd,
                                     const int format) {
    for (size_t d = 0; d < hd; d += 32) {
        const int two = d + 32 <= hd;   // 32 dims, or the last 16
        size_t j0 = 0;
        for (; j0 + 4 <= g; j0 += 4) {
            float *o0 = o + j0 * hd + d, *o1 = o0 + hd, *o2 = o1 + hd, *o3 = o2 + hd;
            __m512 a0 = _mm512_loadu_ps(o0), a1 = _mm512_loadu_ps(o1), a2 = _mm512_loadu_ps(o2), a3 = _mm512_loadu_ps(o3);
            __m512 b0 = _mm512_setzero_ps(), b1 = b0, b2 = b0, b3 = b0;
            if (two) { b0 = _mm512_loadu_ps(o0 + 16); b1 = _mm512_loadu_ps(o1 + 16); b2 = _mm512_loadu_ps(o2 + 16); b3 = _mm512_loadu_ps(o3 + 16); }
            for (size_t i = 0; i < n; i++) {
                const __m512 w0 = _mm512_set1_ps(w[j0][i]), w1 = _mm512_set1_ps(w[j0 + 1][i]);
                const __m512 w2 = _mm512_set1_ps(w[j0 + 2][i]), w3 = _mm512_set1_ps(w[j0 + 3][i]);
                const __m512 x = load16(rows[i], d, format);
                a0 = _mm512_fmadd_ps(w0, x, a0); a1 = _mm512_fmadd_ps(w1, x, a1);
                a2 = _mm512_fmadd_ps(w2, x, a2); a3 = _mm512_fmadd_ps(w3, x, a3);
                if (two) {
                    const __m512 y = load16(rows[i], d + 16, format);
                    b0 = _mm512_fmadd_ps(w0, y, b0); b1 = _mm512_fmadd_ps(w1, y, b1);
                    b2 = _mm512_fmadd_ps(w2, y, b2); b3 = _mm512_fmadd_ps(w3, y, b3);
                }
            }
            _mm512_storeu_ps(o0, a0); _mm512_storeu_ps(o1, a1); _mm512_storeu_ps(o2, a2); _mm512_storeu_ps(o3, a3);
            if (two) { _mm512_storeu_ps(o0 + 16, b0); _mm512_storeu_ps(o1 + 16, b1); _mm512_storeu_ps(o2 + 16, b2); _mm512_storeu_ps(o3 + 16, b3); }
        }
        for (; j0 < g; j0++)
            for (size_t e = d; e < d + (two ? 32 : 16); e += 16) {
                __m512 a = _mm512_loadu_ps(o + j0 * hd + e);
                for (size_t i = 0; i < n; i++) a = _mm512_fmadd_ps(_mm512_set1_ps(w[j0][i]), load16(rows[i], e, format), a);
                _mm512_storeu_ps(o + j0 * hd + e, a);
            }
    }
}

ATT512_ATTR __attribute__((always_inline))
static inline void part_512(const bitnet_attend_args *a, size_t t0, size_t t1, float *m, float *l, float *o, const int format) {
    const size_t g = a->group, hd = a->head_dim, rb = a->row_bytes;
    const uint8_t *K = a->keys, *V = a->values;
    float s[g][ATT_BLOCK], rs[ATT_BLOCK], buf[format == BITNET_KV_Q4 ? ATT_BLOCK * hd : 1];
    const uint8_t *rows[ATT_BLOCK];
    const int rf = format == BITNET_KV_Q4 ? BITNET_KV_F32 : format;   // how load16 reads `rows`
    const size_t far = prefetch_far_rows(rb);
    prefetch_bytes(K + t0 * rb, block_len(t0, t1) * rb);
    for (size_t b0 = t0; b0 < t1; b0 += ATT_BLOCK) {
        const size_t n = block_len(b0, t1);
        for (size_t i = 0; i < n; i++) {
            prefetch_ahead(K, V, rb, b0 + i, t1, far);
            rows[i] = K + (b0 + i) * rb;
            if (format == BITNET_KV_Q4) rows[i] = (const uint8_t *)(const void *)row_floats_avx2(format, rows[i], hd, buf + i * hd);
            rs[i] = row_scale(a->key_scales, b0 + i) * a->scale;
        }
        for (size_t j0 = 0; j0 < g; j0 += 4) {
            const float *qs[4];
            query_set(a->q, g, hd, j0, qs);
            size_t i = 0;
            for (; i + 2 <= n; i += 2) {
                // Two rows per pass: 8 independent FMA chains.
                __m128 d0, d1;
                dot4x2_512(qs, rows[i], rows[i + 1], hd, rf, &d0, &d1);
                put_scores(s, j0, g, i, d0, rs[i]);
                put_scores(s, j0, g, i + 1, d1, rs[i + 1]);
            }
            for (; i < n; i++) put_scores(s, j0, g, i, dot4_512(qs, rows[i], hd, rf), rs[i]);
        }
        for (size_t j = 0; j < g; j++) softmax_step_avx2(s[j], n, m + j, l + j, o + j * hd, hd);
        for (size_t i = 0; i < n; i++) {
            rows[i] = V + (b0 + i) * rb;
            if (format == BITNET_KV_Q4) rows[i] = (const uint8_t *)(const void *)row_floats_avx2(format, rows[i], hd, buf + i * hd);
        }
        scale_weights(s, g, n, a->value_scales ? a->value_scales + b0 : NULL);
        weighted_rows_512(s, g, rows, n, o, hd, rf);
    }
}

// One specialized loop per format (the format is a constant inside each).
ATT512_ATTR static void part_512_f32(const bitnet_attend_args *a, size_t t0, size_t t1, float *m, float *l, float *o) { part_512(a, t0, t1, m, l, o, BITNET_KV_F32); }
ATT512_ATTR static void part_512_f16(const bitnet_attend_args *a, size_t t0, size_t t1, float *m, float *l, float *o) { part_512(a, t0, t1, m, l, o, BITNET_KV_F16); }
ATT512_ATTR static void part_512_q8(const bitnet_attend_args *a, size_t t0, size_t t1, float *m, float *l, float *o) { part_512(a, t0, t1, m, l, o, BITNET_KV_Q8); }
ATT512_ATTR static void part_512_q4(const bitnet_attend_args *a, size_t t0, size_t t1, float *m, float *l, float *o) { part_512(a, t0, t1, m, l, o, BITNET_KV_Q4); }
#endif

// MARK: dispatch

// One pass of at most ATT_MAX_GROUP queries on the chosen path.
static void part_dispatch(const bitnet_attend_args *a, size_t t0, size_t t1, float *m, float *l, float *o) {
    const size_t hd = a->head_dim;
#ifdef BITNET_X86
    const int level = attention_simd();
    if (level == 2 && hd % 16 == 0 && hd <= ATT_MAX_SIMD_HD) {
        switch (a->format) {
        case BITNET_KV_F32: part_512_f32(a, t0, t1, m, l, o); return;
        case BITNET_KV_F16: part_512_f16(a, t0, t1, m, l, o); return;
        case BITNET_KV_Q8: part_512_q8(a, t0, t1, m, l, o); return;
        default: part_512_q4(a, t0, t1, m, l, o); return;
        }
    }
    if (level >= 1 && hd <= ATT_MAX_SIMD_HD) { part_avx2(a, t0, t1, m, l, o); return; }
#endif
    part_portable(a, t0, t1, m, l, o);
}

void bitnet_attend_part(const bitnet_attend_args *a, size_t t0, size_t t1, float *m, float *l, float *o) {
    const size_t g = a->group, hd = a->head_dim;
    for (size_t j = 0; j < g; j++) { m[j] = -INFINITY; l[j] = 0; }
    memset(o, 0, g * hd * sizeof(float));
    if (t1 <= t0) return;
    for (size_t j0 = 0; j0 < g; j0 += ATT_MAX_GROUP) {
        bitnet_attend_args pass = *a;
        pass.group = g - j0 < ATT_MAX_GROUP ? g - j0 : ATT_MAX_GROUP;
        pass.q = a->q + j0 * hd;
        part_dispatch(&pass, t0, t1, m + j0, l + j0, o + j0 * hd);
    }
}

void bitnet_attend_merge(size_t parts, size_t group, size_t head_dim, const float *m, const float *l, const float *o, float *out) {
    for (size_t j = 0; j < group; j++) {
        float M = -INFINITY;
        for (size_t p = 0; p < parts; p++) M = m[p * group + j] > M ? m[p * group + j] : M;
        float L = 0;
        for (size_t p = 0; p < parts; p++) if (l[p * group + j] > 0) L += expf(m[p * group + j] - M) * l[p * group + j];
        float *oj = out + j * head_dim;
        for (size_t p = 0; p < parts; p++) {
            // Empty parts (l = 0, m = -inf) add nothing; c = e^(m_p - M) / L folds the division in.
            const float c = l[p * group + j] > 0 ? expf(m[p * group + j] - M) / L : 0.0f;
            const float *op = o + (p * group + j) * head_dim;
            for (size_t d = 0; d < head_dim; d++) oj[d] = (p == 0 ? 0.0f : oj[d]) + c * op[d];
        }
    }
}
