// AVX2 + FMA GEMM kernels: 6x16 register-blocked micro-kernel and vectorized packing.
// Every function carries target("avx2,fma") so the file builds without -mavx2; the driver only
// calls them after checking the CPU at run time.
#if defined(__x86_64__) || defined(__i386__)

#include "sgemm_internal.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma")))
#define AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) static inline

enum { MR = 6, NR = 16 };

// Cache blocks: A~ (MC x KC, 144 KB) stays in L2, a B~ micro-panel (KC x 16, 16 KB) in L1,
// B~ (KC x NC) in L2/L3. Overridable at compile time for tuning.
#ifndef BITNET_AVX2_MC
#define BITNET_AVX2_MC 144
#endif
#ifndef BITNET_AVX2_KC
#define BITNET_AVX2_KC 256
#endif
#ifndef BITNET_AVX2_NC
#define BITNET_AVX2_NC 3072
#endif

// In-place transpose of an 8x8 block held in 8 rows.
AVX2_INLINE void transpose8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// MARK: - Packing

// A~ panels of 6 rows: element (i, p) at p*6 + i.
AVX2 static void pack_a(int trans, size_t mc, size_t kc, const float *a, size_t lda, float *dst) {
    size_t i0 = 0;
    if (!trans) {
        // Rows are contiguous in p: transpose 8-column chunks of 6 rows (2 zero rows as filler),
        // storing 8 lanes per column; the 2 extra lanes are overwritten by the next column, and the
        // chunk's last column is stored masked, so nothing is written past the panel (threads may
        // pack neighbouring panels of a shared buffer concurrently).
        const __m256 zero = _mm256_setzero_ps();
        const __m256i mask6 = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
        for (; i0 + MR <= mc; i0 += MR) {
            const float *r0 = a + i0 * lda;
            size_t p = 0;
            for (; p + 8 <= kc; p += 8) {
                __m256 r[8];
                for (int i = 0; i < MR; ++i) r[i] = _mm256_loadu_ps(r0 + (size_t)i * lda + p);
                r[6] = zero;
                r[7] = zero;
                transpose8(r);
                for (int q = 0; q < 7; ++q) _mm256_storeu_ps(dst + (p + (size_t)q) * MR, r[q]);
                _mm256_maskstore_ps(dst + (p + 7) * MR, mask6, r[7]);
            }
            for (; p < kc; ++p)
                for (int i = 0; i < MR; ++i) dst[p * MR + (size_t)i] = r0[(size_t)i * lda + p];
            dst += kc * MR;
        }
    } else {
        // Columns of op(A) are contiguous: 6 floats per p and panel. Walk a's rows in order, all
        // panels per row, so reads stream sequentially. Masked loads/stores touch exactly 6 lanes
        // (a wide store would clobber the next panel, already written for earlier p).
        const __m256i mask6 = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
        size_t panels = mc / MR;
        for (size_t p = 0; p < kc; ++p) {
            const float *src = a + p * lda;
            float *d = dst + p * MR;
            for (size_t q = 0; q < panels; ++q)
                _mm256_maskstore_ps(d + q * kc * MR, mask6, _mm256_maskload_ps(src + q * MR, mask6));
        }
        i0 = panels * MR;
        dst += panels * kc * MR;
    }
    if (i0 < mc) {  // partial panel, zero-padded
        size_t mr = mc - i0;
        for (size_t p = 0; p < kc; ++p)
            for (size_t i = 0; i < MR; ++i)
                dst[p * MR + i] = i < mr ? (trans ? a[p * lda + i0 + i] : a[(i0 + i) * lda + p]) : 0.0f;
    }
}

// B~ panels of 16 columns: element (p, j) at p*16 + j.
AVX2 static void pack_b(int trans, size_t kc, size_t nc, const float *b, size_t ldb, float *dst) {
    size_t j0 = 0;
    if (!trans) {
        // Walk b's rows in order (sequential reads), scattering 16-float pieces to the panels.
        size_t panels = nc / NR;
        for (size_t p = 0; p < kc; ++p) {
            const float *src = b + p * ldb;
            float *d = dst + p * NR;
            for (size_t q = 0; q < panels; ++q) {
                __m256 x0 = _mm256_loadu_ps(src + q * NR);
                __m256 x1 = _mm256_loadu_ps(src + q * NR + 8);
                _mm256_store_ps(d + q * kc * NR, x0);
                _mm256_store_ps(d + q * kc * NR + 8, x1);
            }
        }
        j0 = panels * NR;
        dst += panels * kc * NR;
    } else {
        // op(B) columns are rows of b: transpose 8x8 blocks of two 8-row groups.
        for (; j0 + NR <= nc; j0 += NR) {
            const float *src = b + j0 * ldb;
            size_t p = 0;
            for (; p + 8 <= kc; p += 8) {
                for (int h = 0; h < 2; ++h) {
                    __m256 r[8];
                    for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(src + (size_t)(h * 8 + j) * ldb + p);
                    transpose8(r);
                    for (int q = 0; q < 8; ++q) _mm256_store_ps(dst + (p + (size_t)q) * NR + h * 8, r[q]);
                }
            }
            for (; p < kc; ++p)
                for (size_t j = 0; j < NR; ++j) dst[p * NR + j] = src[j * ldb + p];
            dst += kc * NR;
        }
    }
    if (j0 < nc) {  // partial panel, zero-padded
        size_t nr = nc - j0;
        for (size_t p = 0; p < kc; ++p)
            for (size_t j = 0; j < NR; ++j)
                dst[p * NR + j] = j < nr ? (trans ? b[(j0 + j) * ldb + p] : b[p * ldb + j0 + j]) : 0.0f;
    }
}

// MARK: - Micro-kernel

AVX2_INLINE void store_row(float *c, __m256 acc, __m256 valpha, __m256 vbeta, int mode) {
    __m256 t = _mm256_mul_ps(valpha, acc);
    if (mode == GEMM_STORE_SET) _mm256_storeu_ps(c, t);
    else if (mode == GEMM_STORE_BETA) _mm256_storeu_ps(c, _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(c), t));
    else _mm256_storeu_ps(c, _mm256_add_ps(_mm256_loadu_ps(c), t));
}

// C[0:6, 0:16] <- store(mode) of sum over p of A(i, p) * b[p*16 + j], with A(i, p) = a[i*rs + p*cs];
// 12 accumulators. Every lane sums its products in the same order whatever rs/cs, so packed and
// direct variants give identical bits.
AVX2_INLINE void kernel_body(size_t kc, const float *restrict a, size_t rs, size_t cs,
                             const float *restrict b, float *restrict c, size_t ldc, float alpha,
                             float beta, int mode) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    if (mode != GEMM_STORE_SET) {
        for (int i = 0; i < MR; ++i) {
            _mm_prefetch((const char *)(c + (size_t)i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + (size_t)i * ldc + 15), _MM_HINT_T0);
        }
    }
    const float *a0 = a, *a1 = a + rs, *a2 = a + 2 * rs, *a3 = a + 3 * rs, *a4 = a + 4 * rs, *a5 = a + 5 * rs;
#define BITNET_STEP(off)                                                   \
    do {                                                                   \
        __m256 b0 = _mm256_load_ps(b + (off) * NR);                        \
        __m256 b1 = _mm256_load_ps(b + (off) * NR + 8);                    \
        __m256 av = _mm256_broadcast_ss(a0 + (off) * cs);                  \
        c00 = _mm256_fmadd_ps(av, b0, c00);                                \
        c01 = _mm256_fmadd_ps(av, b1, c01);                                \
        av = _mm256_broadcast_ss(a1 + (off) * cs);                         \
        c10 = _mm256_fmadd_ps(av, b0, c10);                                \
        c11 = _mm256_fmadd_ps(av, b1, c11);                                \
        av = _mm256_broadcast_ss(a2 + (off) * cs);                         \
        c20 = _mm256_fmadd_ps(av, b0, c20);                                \
        c21 = _mm256_fmadd_ps(av, b1, c21);                                \
        av = _mm256_broadcast_ss(a3 + (off) * cs);                         \
        c30 = _mm256_fmadd_ps(av, b0, c30);                                \
        c31 = _mm256_fmadd_ps(av, b1, c31);                                \
        av = _mm256_broadcast_ss(a4 + (off) * cs);                         \
        c40 = _mm256_fmadd_ps(av, b0, c40);                                \
        c41 = _mm256_fmadd_ps(av, b1, c41);                                \
        av = _mm256_broadcast_ss(a5 + (off) * cs);                         \
        c50 = _mm256_fmadd_ps(av, b0, c50);                                \
        c51 = _mm256_fmadd_ps(av, b1, c51);                                \
    } while (0)
    size_t p = 0;
    for (; p + 4 <= kc; p += 4) {
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + 8 * NR + 16), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + 8 * NR + 32), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + 8 * NR + 48), _MM_HINT_T0);
        BITNET_STEP(0);
        BITNET_STEP(1);
        BITNET_STEP(2);
        BITNET_STEP(3);
        a0 += 4 * cs, a1 += 4 * cs, a2 += 4 * cs, a3 += 4 * cs, a4 += 4 * cs, a5 += 4 * cs;
        b += 4 * NR;
    }
    for (; p < kc; ++p) {
        BITNET_STEP(0);
        a0 += cs, a1 += cs, a2 += cs, a3 += cs, a4 += cs, a5 += cs;
        b += NR;
    }
#undef BITNET_STEP
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    store_row(c + 0 * ldc, c00, va, vb, mode);
    store_row(c + 0 * ldc + 8, c01, va, vb, mode);
    store_row(c + 1 * ldc, c10, va, vb, mode);
    store_row(c + 1 * ldc + 8, c11, va, vb, mode);
    store_row(c + 2 * ldc, c20, va, vb, mode);
    store_row(c + 2 * ldc + 8, c21, va, vb, mode);
    store_row(c + 3 * ldc, c30, va, vb, mode);
    store_row(c + 3 * ldc + 8, c31, va, vb, mode);
    store_row(c + 4 * ldc, c40, va, vb, mode);
    store_row(c + 4 * ldc + 8, c41, va, vb, mode);
    store_row(c + 5 * ldc, c50, va, vb, mode);
    store_row(c + 5 * ldc + 8, c51, va, vb, mode);
}

// Packed A~ micro-panel: A(i, p) = a[p*6 + i].
AVX2 static void kernel_6x16(size_t kc, const float *a, const float *b, float *c, size_t ldc,
                             float alpha, float beta, int mode) {
    kernel_body(kc, a, 1, MR, b, c, ldc, alpha, beta, mode);
}

// A read in place from row-major rows (stride lda): saves packing when few columns reuse it.
AVX2 static void kernel_6x16_rows(size_t kc, const float *a, size_t lda, const float *b, float *c,
                                  size_t ldc, float alpha, float beta, int mode) {
    kernel_body(kc, a, lda, 1, b, c, ldc, alpha, beta, mode);
}

// Runs one 6x16 tile; edge tiles (mr < 6 or nr < 16) go through a padded copy of C so their bits
// match interior tiles. `a` is a packed micro-panel (lda == 0) or 6 rows in place (lda > 0, mr == 6).
AVX2_INLINE void tile(size_t mr, size_t nr, size_t kc, const float *a, size_t lda, const float *b,
                      float *c, size_t ldc, float alpha, float beta, int mode) {
    if (mr == MR && nr == NR) {
        if (lda) kernel_6x16_rows(kc, a, lda, b, c, ldc, alpha, beta, mode);
        else kernel_6x16(kc, a, b, c, ldc, alpha, beta, mode);
        return;
    }
    _Alignas(32) float tmp[MR * NR] = {0};
    if (mode != GEMM_STORE_SET)
        for (size_t i = 0; i < mr; ++i) memcpy(tmp + i * NR, c + i * ldc, nr * sizeof(float));
    if (lda) kernel_6x16_rows(kc, a, lda, b, tmp, NR, alpha, beta, mode);
    else kernel_6x16(kc, a, b, tmp, NR, alpha, beta, mode);
    for (size_t i = 0; i < mr; ++i) memcpy(c + i * ldc, tmp + i * NR, nr * sizeof(float));
}

AVX2 static void macro_kernel(size_t mc, size_t nc, size_t kc, const float *pa, const float *pb,
                              float *c, size_t ldc, float alpha, float beta, int mode) {
    for (size_t j0 = 0; j0 < nc; j0 += NR) {
        size_t nr = nc - j0 < NR ? nc - j0 : NR;
        for (size_t i0 = 0; i0 < mc; i0 += MR) {
            size_t mr = mc - i0 < MR ? mc - i0 : MR;
            tile(mr, nr, kc, pa + i0 * kc, 0, pb + j0 * kc, c + i0 * ldc + j0, ldc, alpha, beta, mode);
        }
    }
}

// Macro-kernel reading A (not transposed) in place; only a trailing partial row panel is packed
// (into `scratch`, 6*kc floats), since reading past row mc would leave the matrix.
AVX2 static void macro_kernel_rows(size_t mc, size_t nc, size_t kc, const float *a, size_t lda,
                                   const float *pb, float *c, size_t ldc, float alpha, float beta,
                                   int mode, float *scratch) {
    size_t full = mc / MR * MR;
    if (full < mc) pack_a(0, mc - full, kc, a + full * lda, lda, scratch);
    for (size_t i0 = 0; i0 < mc; i0 += MR) {
        size_t mr = mc - i0 < MR ? mc - i0 : MR;
        const float *ap = mr == MR ? a + i0 * lda : scratch;
        size_t lda_tile = mr == MR ? lda : 0;
        // Row panel outermost: its 6 rows stay in L1 across all column panels.
        for (size_t j0 = 0; j0 < nc; j0 += NR) {
            size_t nr = nc - j0 < NR ? nc - j0 : NR;
            tile(mr, nr, kc, ap, lda_tile, pb + j0 * kc, c + i0 * ldc + j0, ldc, alpha, beta, mode);
        }
    }
}

// MARK: - Dot-product path (few rows of op(A), B transposed)

AVX2_INLINE float hsum8(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

// out[r] = dot(a, brow[r]) over k for r < R. Each row's arithmetic is independent of R, so an
// element gets the same bits whether it falls in a block of 4 rows or in the tail.
AVX2_INLINE void dot_rows(int R, size_t k, const float *a, const float *const *brow, float *out) {
    __m256 s0[4], s1[4];
    for (int r = 0; r < R; ++r) s0[r] = s1[r] = _mm256_setzero_ps();
    size_t p = 0;
    for (; p + 16 <= k; p += 16) {
        __m256 a0 = _mm256_loadu_ps(a + p), a1 = _mm256_loadu_ps(a + p + 8);
        for (int r = 0; r < R; ++r) {
            s0[r] = _mm256_fmadd_ps(a0, _mm256_loadu_ps(brow[r] + p), s0[r]);
            s1[r] = _mm256_fmadd_ps(a1, _mm256_loadu_ps(brow[r] + p + 8), s1[r]);
        }
    }
    if (p + 8 <= k) {
        __m256 a0 = _mm256_loadu_ps(a + p);
        for (int r = 0; r < R; ++r) s0[r] = _mm256_fmadd_ps(a0, _mm256_loadu_ps(brow[r] + p), s0[r]);
        p += 8;
    }
    if (p < k) {  // masked loads read only the k - p valid floats
        const int rem = (int)(k - p);
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256 a0 = _mm256_maskload_ps(a + p, mask);
        for (int r = 0; r < R; ++r) s1[r] = _mm256_fmadd_ps(a0, _mm256_maskload_ps(brow[r] + p, mask), s1[r]);
    }
    for (int r = 0; r < R; ++r) out[r] = hsum8(_mm256_add_ps(s0[r], s1[r]));
}

AVX2 static void dots(size_t m, size_t n0, size_t n1, size_t k, float alpha, const float *a, size_t lda,
                      const float *b, size_t ldb, float beta, float *c, size_t ldc) {
    size_t j = n0;
    for (; j + 4 <= n1; j += 4) {
        const float *brow[4] = {b + j * ldb, b + (j + 1) * ldb, b + (j + 2) * ldb, b + (j + 3) * ldb};
        for (size_t i = 0; i < m; ++i) {
            float d[4];
            dot_rows(4, k, a + i * lda, brow, d);
            float *ci = c + i * ldc + j;
            for (int r = 0; r < 4; ++r) ci[r] = beta == 0.0f ? alpha * d[r] : fmaf(beta, ci[r], alpha * d[r]);
        }
    }
    for (; j < n1; ++j) {
        const float *brow[1] = {b + j * ldb};
        for (size_t i = 0; i < m; ++i) {
            float d[1];
            dot_rows(1, k, a + i * lda, brow, d);
            float *ci = c + i * ldc + j;
            ci[0] = beta == 0.0f ? alpha * d[0] : fmaf(beta, ci[0], alpha * d[0]);
        }
    }
}

const bitnet_gemm_ops bitnet_gemm_ops_avx2 = {
    .mr = MR, .nr = NR, .mc = BITNET_AVX2_MC, .kc = BITNET_AVX2_KC, .nc = BITNET_AVX2_NC,
    .pack_a = pack_a, .pack_b = pack_b, .macro = macro_kernel, .macro_rows = macro_kernel_rows,
    .dots = dots,
};

#endif
