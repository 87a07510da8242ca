// Dense inference kernels (see bitnet_dense.h): f16 GEMV and batched GEMV, read-bandwidth probe. The q8 block format
// of bitnet_dense.h lives with the other block formats in blockquant.c; the path (bitnet_dense_isa) and the f16
// conversions in quant_common.c.
// AVX-512 / AVX2 versions under target attributes, chosen at run time; portable versions for everything.
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE) && !defined(__APPLE__)
#define _POSIX_C_SOURCE 200809L   /* clock_gettime, posix_memalign under strict -std=c11 */
#endif
#include "quant_common.h"
#include "bitnet_blockquant.h"
#include "bitnet_memory.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dense_simd.h"

// MARK: - f16 GEMV

void bitnet_f16_gemv_ref(const uint16_t *w, size_t ld, size_t cols, const float *x, float *y, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) {
        const uint16_t *row = w + r * ld;
        float acc = 0;
        for (size_t j = 0; j < cols; j++) acc += f16_to_f32_inline(row[j]) * x[j];
        y[r] = acc;
    }
}

#ifdef BITNET_X86
#define LDH8(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))

// Tail columns (cols % 8) of one row, added to a partial sum.
__attribute__((target("avx2,fma,f16c")))
static inline float f16_tail(const uint16_t *row, const float *x, size_t j, size_t cols, float s) {
    for (; j < cols; j++) s += _cvtsh_ss(row[j]) * x[j];
    return s;
}

// One row: two 8-wide accumulators over 16 columns, then 8, then scalar tail.
__attribute__((target("avx2,fma,f16c")))
static float f16_row_avx2(const uint16_t *row, const float *x, size_t cols) {
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 16 <= cols; j += 16) {
        a = _mm256_fmadd_ps(LDH8(row + j), _mm256_loadu_ps(x + j), a);
        b = _mm256_fmadd_ps(LDH8(row + j + 8), _mm256_loadu_ps(x + j + 8), b);
    }
    if (j + 8 <= cols) { a = _mm256_fmadd_ps(LDH8(row + j), _mm256_loadu_ps(x + j), a); j += 8; }
    return f16_tail(row, x, j, cols, hsum256(_mm256_add_ps(a, b)));
}

// Four rows at once (x loads shared), same per-row summation order as f16_row_avx2.
__attribute__((target("avx2,fma,f16c")))
static void f16_gemv_avx2(const uint16_t *w, size_t ld, size_t cols, const float *x, float *y, size_t r0, size_t r1) {
    size_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const uint16_t *w0 = w + r * ld, *w1 = w0 + ld, *w2 = w1 + ld, *w3 = w2 + ld;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        size_t j = 0;
        for (; j + 16 <= cols; j += 16) {
            __m256 xa = _mm256_loadu_ps(x + j), xb = _mm256_loadu_ps(x + j + 8);
            a0 = _mm256_fmadd_ps(LDH8(w0 + j), xa, a0);
            a1 = _mm256_fmadd_ps(LDH8(w1 + j), xa, a1);
            a2 = _mm256_fmadd_ps(LDH8(w2 + j), xa, a2);
            a3 = _mm256_fmadd_ps(LDH8(w3 + j), xa, a3);
            b0 = _mm256_fmadd_ps(LDH8(w0 + j + 8), xb, b0);
            b1 = _mm256_fmadd_ps(LDH8(w1 + j + 8), xb, b1);
            b2 = _mm256_fmadd_ps(LDH8(w2 + j + 8), xb, b2);
            b3 = _mm256_fmadd_ps(LDH8(w3 + j + 8), xb, b3);
        }
        if (j + 8 <= cols) {
            __m256 xa = _mm256_loadu_ps(x + j);
            a0 = _mm256_fmadd_ps(LDH8(w0 + j), xa, a0);
            a1 = _mm256_fmadd_ps(LDH8(w1 + j), xa, a1);
            a2 = _mm256_fmadd_ps(LDH8(w2 + j), xa, a2);
            a3 = _mm256_fmadd_ps(LDH8(w3 + j), xa, a3);
            j += 8;
        }
        y[r + 0] = f16_tail(w0, x, j, cols, hsum256(_mm256_add_ps(a0, b0)));
        y[r + 1] = f16_tail(w1, x, j, cols, hsum256(_mm256_add_ps(a1, b1)));
        y[r + 2] = f16_tail(w2, x, j, cols, hsum256(_mm256_add_ps(a2, b2)));
        y[r + 3] = f16_tail(w3, x, j, cols, hsum256(_mm256_add_ps(a3, b3)));
    }
    for (; r < r1; r++) y[r] = f16_row_avx2(w + r * ld, x, cols);
}

#define LDH16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))

// One row; the tail (cols % 16) is a masked load of zero-filled halves (f16 0 -> 0.0f).
AVX512_ATTR
static float f16_row_avx512(const uint16_t *row, const float *x, size_t cols) {
    __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
    size_t j = 0;
    for (; j + 32 <= cols; j += 32) {
        a = _mm512_fmadd_ps(LDH16(row + j), _mm512_loadu_ps(x + j), a);
        b = _mm512_fmadd_ps(LDH16(row + j + 16), _mm512_loadu_ps(x + j + 16), b);
    }
    if (j + 16 <= cols) { a = _mm512_fmadd_ps(LDH16(row + j), _mm512_loadu_ps(x + j), a); j += 16; }
    if (j < cols) {
        __mmask16 m = (__mmask16)((1u << (cols - j)) - 1u);
        __m512 wv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + j));
        b = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + j), b);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a, b));
}

AVX512_ATTR
static void f16_gemv_avx512(const uint16_t *w, size_t ld, size_t cols, const float *x, float *y, size_t r0, size_t r1) {
    size_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const uint16_t *w0 = w + r * ld, *w1 = w0 + ld, *w2 = w1 + ld, *w3 = w2 + ld;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        size_t j = 0;
        for (; j + 32 <= cols; j += 32) {
            __m512 xa = _mm512_loadu_ps(x + j), xb = _mm512_loadu_ps(x + j + 16);
            a0 = _mm512_fmadd_ps(LDH16(w0 + j), xa, a0);
            a1 = _mm512_fmadd_ps(LDH16(w1 + j), xa, a1);
            a2 = _mm512_fmadd_ps(LDH16(w2 + j), xa, a2);
            a3 = _mm512_fmadd_ps(LDH16(w3 + j), xa, a3);
            b0 = _mm512_fmadd_ps(LDH16(w0 + j + 16), xb, b0);
            b1 = _mm512_fmadd_ps(LDH16(w1 + j + 16), xb, b1);
            b2 = _mm512_fmadd_ps(LDH16(w2 + j + 16), xb, b2);
            b3 = _mm512_fmadd_ps(LDH16(w3 + j + 16), xb, b3);
        }
        if (j + 16 <= cols) {
            __m512 xa = _mm512_loadu_ps(x + j);
            a0 = _mm512_fmadd_ps(LDH16(w0 + j), xa, a0);
            a1 = _mm512_fmadd_ps(LDH16(w1 + j), xa, a1);
            a2 = _mm512_fmadd_ps(LDH16(w2 + j), xa, a2);
            a3 = _mm512_fmadd_ps(LDH16(w3 + j), xa, a3);
            j += 16;
        }
        if (j < cols) {
            __mmask16 m = (__mmask16)((1u << (cols - j)) - 1u);
            __m512 xm = _mm512_maskz_loadu_ps(m, x + j);
            b0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w0 + j)), xm, b0);
            b1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w1 + j)), xm, b1);
            b2 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w2 + j)), xm, b2);
            b3 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w3 + j)), xm, b3);
        }
        y[r + 0] = _mm512_reduce_add_ps(_mm512_add_ps(a0, b0));
        y[r + 1] = _mm512_reduce_add_ps(_mm512_add_ps(a1, b1));
        y[r + 2] = _mm512_reduce_add_ps(_mm512_add_ps(a2, b2));
        y[r + 3] = _mm512_reduce_add_ps(_mm512_add_ps(a3, b3));
    }
    for (; r < r1; r++) y[r] = f16_row_avx512(w + r * ld, x, cols);
}
#endif

void bitnet_f16_gemv(const uint16_t *w, size_t ld, size_t cols, const float *x, float *y, size_t r0, size_t r1) {
#ifdef BITNET_X86
    int isa = bitnet_dense_isa();
    if (isa == BITNET_DENSE_AVX512) { f16_gemv_avx512(w, ld, cols, x, y, r0, r1); return; }
    if (isa == BITNET_DENSE_AVX2) { f16_gemv_avx2(w, ld, cols, x, y, r0, r1); return; }
#endif
    bitnet_f16_gemv_ref(w, ld, cols, x, y, r0, r1);
}

// MARK: - f16 GEMM (a few tokens)

void bitnet_f16_gemm_ref(const uint16_t *w, size_t ld, size_t cols, const float *x, size_t ldx, size_t ntok, float *y,
                         size_t ldy, size_t r0, size_t r1) {
    for (size_t t = 0; t < ntok; t++) bitnet_f16_gemv_ref(w, ld, cols, x + t * ldx, y + t * ldy, r0, r1);
}

#ifdef BITNET_X86
#define ALWAYS_INLINE inline __attribute__((always_inline))

// `tn` tokens (constant after inlining) of one row, each in the summation order of f16_row_avx2: the halves are
// converted once per 16 columns and applied to every token.
AVX2_ATTR
static ALWAYS_INLINE void f16_tile_avx2(const uint16_t *row, size_t cols, const float *x, size_t ldx, float *y,
                                        size_t ldy, int tn) {
    __m256 a[4], b[4];
    for (int t = 0; t < tn; t++) a[t] = b[t] = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 16 <= cols; j += 16) {
        __m256 wa = LDH8(row + j), wb = LDH8(row + j + 8);
        for (int t = 0; t < tn; t++) {
            a[t] = _mm256_fmadd_ps(wa, _mm256_loadu_ps(x + t * ldx + j), a[t]);
            b[t] = _mm256_fmadd_ps(wb, _mm256_loadu_ps(x + t * ldx + j + 8), b[t]);
        }
    }
    if (j + 8 <= cols) {
        __m256 wa = LDH8(row + j);
        for (int t = 0; t < tn; t++) a[t] = _mm256_fmadd_ps(wa, _mm256_loadu_ps(x + t * ldx + j), a[t]);
        j += 8;
    }
    for (int t = 0; t < tn; t++) y[t * ldy] = f16_tail(row, x + t * ldx, j, cols, hsum256(_mm256_add_ps(a[t], b[t])));
}

AVX2_ATTR
static void f16_gemm_avx2(const uint16_t *w, size_t ld, size_t cols, const float *x, size_t ldx, size_t ntok, float *y,
                          size_t ldy, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) {
        const uint16_t *row = w + r * ld;
        size_t t = 0;
        for (; t + 4 <= ntok; t += 4) f16_tile_avx2(row, cols, x + t * ldx, ldx, y + t * ldy + r, ldy, 4);
        if (t + 2 <= ntok) { f16_tile_avx2(row, cols, x + t * ldx, ldx, y + t * ldy + r, ldy, 2); t += 2; }
        if (t < ntok) f16_tile_avx2(row, cols, x + t * ldx, ldx, y + t * ldy + r, ldy, 1);
    }
}

// R rows x T tokens (R <= 2, T <= 4, constants after inlining) in the summation order of f16_row_avx512: the halves
// are converted once per 32 columns and each activation load serves the R rows.
AVX512_ATTR
static ALWAYS_INLINE void f16_tile_avx512(const uint16_t *row, size_t ld, int R, size_t cols, const float *x, size_t ldx,
                                          int T, float *y, size_t ldy) {
    __m512 a[8], b[8], wa[2], wb[2];
    for (int i = 0; i < R * T; i++) a[i] = b[i] = _mm512_setzero_ps();
    size_t j = 0;
    for (; j + 32 <= cols; j += 32) {
        for (int r = 0; r < R; r++) { wa[r] = LDH16(row + r * ld + j); wb[r] = LDH16(row + r * ld + j + 16); }
        for (int t = 0; t < T; t++) {
            __m512 xa = _mm512_loadu_ps(x + t * ldx + j), xb = _mm512_loadu_ps(x + t * ldx + j + 16);
            for (int r = 0; r < R; r++) {
                a[r * T + t] = _mm512_fmadd_ps(wa[r], xa, a[r * T + t]);
                b[r * T + t] = _mm512_fmadd_ps(wb[r], xb, b[r * T + t]);
            }
        }
    }
    if (j + 16 <= cols) {
        for (int r = 0; r < R; r++) wa[r] = LDH16(row + r * ld + j);
        for (int t = 0; t < T; t++) {
            __m512 xa = _mm512_loadu_ps(x + t * ldx + j);
            for (int r = 0; r < R; r++) a[r * T + t] = _mm512_fmadd_ps(wa[r], xa, a[r * T + t]);
        }
        j += 16;
    }
    if (j < cols) {
        __mmask16 m = (__mmask16)((1u << (cols - j)) - 1u);
        for (int r = 0; r < R; r++) wb[r] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + r * ld + j));
        for (int t = 0; t < T; t++) {
            __m512 xm = _mm512_maskz_loadu_ps(m, x + t * ldx + j);
            for (int r = 0; r < R; r++) b[r * T + t] = _mm512_fmadd_ps(wb[r], xm, b[r * T + t]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) y[t * ldy + r] = _mm512_reduce_add_ps(_mm512_add_ps(a[r * T + t], b[r * T + t]));
}

// R rows against all tokens in tiles of 4, 2, 1; the next R rows are prefetched first.
AVX512_ATTR
static ALWAYS_INLINE void f16_rows_avx512(const uint16_t *row, size_t ld, int R, const uint16_t *next, size_t cols,
                                          const float *x, size_t ldx, size_t ntok, float *y, size_t ldy) {
    if (next)
        for (int r = 0; r < R; r++)
            for (size_t j = 0; j < cols; j += 32) _mm_prefetch((const char *)(next + r * ld + j), _MM_HINT_T0);
    size_t t = 0;
    for (; t + 4 <= ntok; t += 4) f16_tile_avx512(row, ld, R, cols, x + t * ldx, ldx, 4, y + t * ldy, ldy);
    if (t + 2 <= ntok) { f16_tile_avx512(row, ld, R, cols, x + t * ldx, ldx, 2, y + t * ldy, ldy); t += 2; }
    if (t < ntok) f16_tile_avx512(row, ld, R, cols, x + t * ldx, ldx, 1, y + t * ldy, ldy);
}

// 2-row x 4-token register tiles (16 accumulators), leftover row alone.
AVX512_ATTR
static void f16_gemm_avx512(const uint16_t *w, size_t ld, size_t cols, const float *x, size_t ldx, size_t ntok,
                            float *y, size_t ldy, size_t r0, size_t r1) {
    size_t r = r0;
    for (; r + 2 <= r1; r += 2)
        f16_rows_avx512(w + r * ld, ld, 2, r + 4 <= r1 ? w + (r + 2) * ld : NULL, cols, x, ldx, ntok, y + r, ldy);
    if (r < r1) f16_rows_avx512(w + r * ld, ld, 1, NULL, cols, x, ldx, ntok, y + r, ldy);
}
#endif

void bitnet_f16_gemm(const uint16_t *w, size_t ld, size_t cols, const float *x, size_t ldx, size_t ntok, float *y,
                     size_t ldy, size_t r0, size_t r1) {
#ifdef BITNET_X86
    int isa = bitnet_dense_isa();
    if (isa == BITNET_DENSE_AVX512) { f16_gemm_avx512(w, ld, cols, x, ldx, ntok, y, ldy, r0, r1); return; }
    if (isa == BITNET_DENSE_AVX2) { f16_gemm_avx2(w, ld, cols, x, ldx, ntok, y, ldy, r0, r1); return; }
#endif
    bitnet_f16_gemm_ref(w, ld, cols, x, ldx, ntok, y, ldy, r0, r1);
}

// MARK: - read bandwidth

static uint64_t read_sum_portable(const uint8_t *p, size_t n) {
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t v[4];
        memcpy(v, p + i, 32);
        s0 += v[0]; s1 += v[1]; s2 += v[2]; s3 += v[3];
    }
    for (; i + 8 <= n; i += 8) { uint64_t v; memcpy(&v, p + i, 8); s0 += v; }
    for (; i < n; i++) s0 += p[i];
    return s0 + s1 + s2 + s3;
}

#ifdef BITNET_X86
__attribute__((target("avx2")))
static uint64_t read_sum_avx2(const uint8_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_loadu_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_loadu_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_loadu_si256((const __m256i *)(p + i + 96)));
    }
    uint64_t v[4];
    _mm256_storeu_si256((__m256i *)v, _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
    return v[0] + v[1] + v[2] + v[3] + read_sum_portable(p + i, n - i);
}

__attribute__((target("avx512f")))
static uint64_t read_sum_avx512(const uint8_t *p, size_t n) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 256 <= n; i += 256) {
        a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(p + i));
        a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(p + i + 64));
        a2 = _mm512_add_epi64(a2, _mm512_loadu_si512(p + i + 128));
        a3 = _mm512_add_epi64(a3, _mm512_loadu_si512(p + i + 192));
    }
    uint64_t s = (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
    return s + read_sum_portable(p + i, n - i);
}
#endif

uint64_t bitnet_read_sum(const void *p, size_t bytes) {
    const uint8_t *b = (const uint8_t *)p;
#ifdef BITNET_X86
    int isa = bitnet_dense_isa();
    if (isa == BITNET_DENSE_AVX512) return read_sum_avx512(b, bytes);
    if (isa == BITNET_DENSE_AVX2) return read_sum_avx2(b, bytes);
#endif
    return read_sum_portable(b, bytes);
}

struct bitnet_read_probe {
    uint8_t *buf;
    size_t bytes, chunk, tasks;
    bitnet_pool *pool;
    uint64_t sums[64];
};

static void probe_task(void *ctx, size_t i) {
    bitnet_read_probe *c = (bitnet_read_probe *)ctx;
    size_t lo = i * c->chunk;
    if (lo >= c->bytes) return;
    size_t n = c->bytes - lo < c->chunk ? c->bytes - lo : c->chunk;
    c->sums[i] += bitnet_read_sum(c->buf + lo, n);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

bitnet_read_probe *bitnet_read_probe_create(size_t bytes, bitnet_pool *pool) {
    if (bytes == 0) return NULL;
    bitnet_read_probe *p = (bitnet_read_probe *)calloc(1, sizeof *p);
    if (!p) return NULL;
    p->bytes = (bytes + 4095) & ~(size_t)4095;
    // On 2 MiB pages where the system grants them, as the weights are (bitnet_memory.h): the roofline is the best
    // read rate of this machine, not one handicapped by page walks the decode loop does not pay.
    p->buf = (uint8_t *)bitnet_region_map(p->bytes, 1);
    if (!p->buf) { free(p); return NULL; }
    for (size_t i = 0; i < p->bytes; i += 4096) memset(p->buf + i, (int)((i >> 12) & 0xff) | 1, 4096);   // touch every page
    p->pool = pool;
    p->tasks = pool ? (size_t)bitnet_pool_thread_count(pool) : 1;
    if (p->tasks > 64) p->tasks = 64;
    if (p->tasks < 1) p->tasks = 1;
    p->chunk = ((p->bytes / p->tasks) + 4095) & ~(size_t)4095;
    return p;
}

double bitnet_read_probe_pass(bitnet_read_probe *p) {
    double t0 = now_seconds();
    bitnet_pool_parallel_for(p->pool, p->tasks, probe_task, p);
    double dt = now_seconds() - t0;
    uint64_t total = 0;
    for (size_t i = 0; i < p->tasks; i++) total += p->sums[i];
    __asm__ volatile("" : : "r"(total) : "memory");   // keep the sums (and so the loads) alive
    return dt > 0 ? (double)p->bytes / dt : 0;
}

void bitnet_read_probe_destroy(bitnet_read_probe *p) {
    if (!p) return;
    bitnet_region_unmap(p->buf, p->bytes);
    free(p);
}

double bitnet_measure_read_bandwidth(size_t bytes, int repetitions, bitnet_pool *pool) {
    bitnet_read_probe *p = bitnet_read_probe_create(bytes, pool);
    if (!p) return 0;
    if (repetitions < 1) repetitions = 1;
    double best = 0;
    bitnet_read_probe_pass(p);   // warm-up
    for (int rep = 0; rep < repetitions; rep++) {
        double rate = bitnet_read_probe_pass(p);
        if (rate > best) best = rate;
    }
    bitnet_read_probe_destroy(p);
    return best;
}

void bitnet_f16_gemv_rows(const void *args, size_t r0, size_t r1) {
    const bitnet_f16_gemv_args *a = (const bitnet_f16_gemv_args *)args;
    bitnet_f16_gemv(a->w, a->ld, a->cols, a->x, a->y, r0, r1);
}
