// AVX-512F GEMM kernels: 6x64 register-blocked micro-kernel (6 rows of C, four zmm per row: 24
// accumulators of the 32 registers), masked edge tiles, vectorized packing and a dot-product path.
// Every function carries the target attribute so the file builds without -mavx512f; the driver only
// calls them after checking the CPU at run time.
#if defined(__x86_64__) || defined(__i386__)

#include "sgemm_internal.h"

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#define AVX512_INLINE __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma"), always_inline)) static inline

// Micro-tile MR x NR, NR = 16*NV. 6x64 measured faster here than 14x32, 12x32 and 8x48: 10 loads
// (4 of B~, 6 broadcasts of A) per 24 FMAs.
enum { MR = 6, NV = 4, NR = 16 * NV };

// Cache blocks (overridable at compile time for tuning). Per thread, L2 (2 MB on the Xeons this was
// tuned on) holds B~ (KC x NC, 1.2 MB) and the MC x KC block of A~; a micro-panel of A (6 x KC,
// packed or in place) stays in L1 while the B~ micro-panels stream from L2. KC = 384 halves the
// passes over C against 256 for k = 768.
#ifndef BITNET_AVX512_MC
#define BITNET_AVX512_MC 168
#endif
#ifndef BITNET_AVX512_KC
#define BITNET_AVX512_KC 384
#endif
#ifndef BITNET_AVX512_NC
#define BITNET_AVX512_NC 768
#endif
// Widest column range for which the driver reads a non-transposed A in place instead of packing
// it: NC, i.e. always (6 rows of A in L1 serve a whole NC block; measured 3-7% faster than packing).
#ifndef BITNET_AVX512_DIRECT_A_MAX_N
#define BITNET_AVX512_DIRECT_A_MAX_N BITNET_AVX512_NC
#endif
// k steps ahead that the micro-kernel prefetches B~ rows.
#ifndef BITNET_AVX512_PREFETCH
#define BITNET_AVX512_PREFETCH 8
#endif
// Rows of a (op(A) transposed) copied per block when packing A~: keeps the source lines in L1
// while every panel receives contiguous writes.
#ifndef BITNET_AVX512_PACK_ROWS
#define BITNET_AVX512_PACK_ROWS 16
#endif

// Loops over the register tile must unroll completely, or the accumulators live in memory.
#if defined(__clang__)
#define UNROLL _Pragma("clang loop unroll(full)")
#else
#define UNROLL _Pragma("GCC unroll 32")
#endif

AVX512_INLINE __mmask16 mask_first(size_t n) {  // lanes [0, n) of 16, n <= 16
    return (__mmask16)(n >= 16 ? 0xFFFFu : (1u << n) - 1u);
}

// In-place transpose of a 16x16 block held in 16 rows: r[j] becomes column j.
AVX512_INLINE void transpose16(__m512 r[16]) {
    __m512 t[16], s[16];
    for (int g = 0; g < 4; ++g) {
        t[4 * g + 0] = _mm512_unpacklo_ps(r[4 * g + 0], r[4 * g + 1]);
        t[4 * g + 1] = _mm512_unpackhi_ps(r[4 * g + 0], r[4 * g + 1]);
        t[4 * g + 2] = _mm512_unpacklo_ps(r[4 * g + 2], r[4 * g + 3]);
        t[4 * g + 3] = _mm512_unpackhi_ps(r[4 * g + 2], r[4 * g + 3]);
    }
    // s[4g + q], 128-bit lane L: column 4L + q of rows 4g..4g+3.
    for (int g = 0; g < 4; ++g) {
        s[4 * g + 0] = _mm512_shuffle_ps(t[4 * g + 0], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
        s[4 * g + 1] = _mm512_shuffle_ps(t[4 * g + 0], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
        s[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
        s[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int q = 0; q < 4; ++q) {
        __m512 u0 = _mm512_shuffle_f32x4(s[q], s[4 + q], _MM_SHUFFLE(2, 0, 2, 0));
        __m512 u1 = _mm512_shuffle_f32x4(s[q], s[4 + q], _MM_SHUFFLE(3, 1, 3, 1));
        __m512 u2 = _mm512_shuffle_f32x4(s[8 + q], s[12 + q], _MM_SHUFFLE(2, 0, 2, 0));
        __m512 u3 = _mm512_shuffle_f32x4(s[8 + q], s[12 + q], _MM_SHUFFLE(3, 1, 3, 1));
        r[q] = _mm512_shuffle_f32x4(u0, u2, _MM_SHUFFLE(2, 0, 2, 0));
        r[8 + q] = _mm512_shuffle_f32x4(u0, u2, _MM_SHUFFLE(3, 1, 3, 1));
        r[4 + q] = _mm512_shuffle_f32x4(u1, u3, _MM_SHUFFLE(2, 0, 2, 0));
        r[12 + q] = _mm512_shuffle_f32x4(u1, u3, _MM_SHUFFLE(3, 1, 3, 1));
    }
}

// Transposes `rows` (<= 16) row vectors src + i*ld, columns [p, p + cols) (cols <= 16), into
// dst + q*dst_stride for q < cols, storing the first `width` lanes (<= 16) of each transposed
// column: lanes at and past `rows` are zero. Only the lanes named are read and written.
AVX512_INLINE void transpose_block(const float *src, size_t ld, size_t rows, size_t cols, float *dst,
                                   size_t dst_stride, size_t width) {
    __m512 r[16];
    const __mmask16 lm = mask_first(cols), sm = mask_first(width);
    for (size_t i = 0; i < 16; ++i)
        r[i] = i < rows ? _mm512_maskz_loadu_ps(lm, src + i * ld) : _mm512_setzero_ps();
    transpose16(r);
    for (size_t q = 0; q < cols; ++q) _mm512_mask_storeu_ps(dst + q * dst_stride, sm, r[q]);
}

// MARK: - Packing

// A~ panels of MR rows: element (i, p) at p*MR + i; rows past mc are zero.
AVX512 static void pack_a(int trans, size_t mc, size_t kc, const float *a, size_t lda, float *dst) {
    if (!trans) {
        // Rows contiguous in p: transpose 16-column slices of an MR-row panel (zero rows as filler);
        // masked stores write exactly MR lanes per column, so neighbouring panels stay untouched.
        for (size_t i0 = 0; i0 < mc; i0 += MR) {
            size_t rows = mc - i0 < MR ? mc - i0 : MR;
            const float *src = a + i0 * lda;
            for (size_t p = 0; p < kc; p += 16) {
                size_t cols = kc - p < 16 ? kc - p : 16;
                transpose_block(src + p, lda, rows, cols, dst + p * MR, MR, MR);
            }
            dst += kc * MR;
        }
    } else {
        // Columns of op(A) contiguous (MR floats per panel in each row of a). Blocks of PACK_ROWS
        // rows: the source lines stay in L1 while each panel receives PACK_ROWS*MR contiguous
        // floats (row by row, the writes would scatter over every panel).
        const __mmask16 sm = mask_first(MR);
        size_t panels = (mc + MR - 1) / MR;
        const __mmask16 last = mask_first(mc - (panels - 1) * MR);
        for (size_t p0 = 0; p0 < kc; p0 += BITNET_AVX512_PACK_ROWS) {
            size_t pe = kc - p0 < BITNET_AVX512_PACK_ROWS ? kc - p0 : BITNET_AVX512_PACK_ROWS;
            for (size_t q = 0; q < panels; ++q) {
                const __mmask16 lm = q + 1 == panels ? last : sm;
                const float *src = a + p0 * lda + q * MR;
                float *d = dst + q * kc * MR + p0 * MR;
                for (size_t p = 0; p < pe; ++p)
                    _mm512_mask_storeu_ps(d + p * MR, sm, _mm512_maskz_loadu_ps(lm, src + p * lda));
            }
        }
    }
}

// B~ panels of NR columns: element (p, j) at p*NR + j; columns past nc are zero.
AVX512 static void pack_b(int trans, size_t kc, size_t nc, const float *b, size_t ldb, float *dst) {
    if (!trans) {
        // Walk b's rows in order (sequential reads), scattering NR-float pieces to the panels.
        size_t panels = (nc + NR - 1) / NR;
        size_t full = nc / NR;
        for (size_t p = 0; p < kc; ++p) {
            const float *src = b + p * ldb;
            float *d = dst + p * NR;
            for (size_t q = 0; q < full; ++q)
                for (int v = 0; v < NV; ++v)
                    _mm512_storeu_ps(d + q * kc * NR + 16 * v, _mm512_loadu_ps(src + q * NR + 16 * v));
            if (full < panels) {
                size_t rem = nc - full * NR;
                for (int v = 0; v < NV; ++v) {
                    size_t lanes = rem > (size_t)(16 * v) ? rem - (size_t)(16 * v) : 0;
                    _mm512_storeu_ps(d + full * kc * NR + 16 * v,
                                     _mm512_maskz_loadu_ps(mask_first(lanes), src + full * NR + 16 * v));
                }
            }
        }
    } else {
        // op(B) columns are rows of b: transpose 16x16 blocks, NV row groups per panel.
        for (size_t j0 = 0; j0 < nc; j0 += NR) {
            for (int v = 0; v < NV; ++v) {
                size_t jv = j0 + 16 * (size_t)v;
                size_t rows = nc > jv ? (nc - jv < 16 ? nc - jv : 16) : 0;
                const float *src = b + jv * ldb;
                for (size_t p = 0; p < kc; p += 16) {
                    size_t cols = kc - p < 16 ? kc - p : 16;
                    transpose_block(src + p, ldb, rows, cols, dst + p * NR + 16 * v, NR, 16);
                }
            }
            dst += kc * NR;
        }
    }
}

// MARK: - Micro-kernel

// C[0:mr, 0:nr] <- store(mode) of sum over p of A(i, p) * b[p*NR + j], A(i, p) = a[i*rs + p*cs].
// The MR x NR tile is always computed in full (A~ and B~ are zero-padded); only mr rows and the
// columns in mask[v] are loaded from and stored to C. A lane's arithmetic (one FMA per p, in
// order, then the store formula) depends neither on rs/cs nor on the tile's extent, so packed,
// in-place and edge tiles give the same bits for the same inputs.
AVX512_INLINE void kernel_body(size_t kc, const float *restrict a, size_t rs, size_t cs,
                               const float *restrict b, float *restrict c, size_t ldc, float alpha,
                               float beta, int mode, size_t mr, const __mmask16 *mask) {
    __m512 acc[MR][NV];
    UNROLL for (int i = 0; i < MR; ++i)
        UNROLL for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
    for (size_t i = 0; i < mr; ++i)
        UNROLL for (int v = 0; v < NV; ++v) _mm_prefetch((const char *)(c + i * ldc + 16 * v), _MM_HINT_T0);

#define BITNET_STEP(off)                                                           \
    do {                                                                           \
        __m512 bv[NV];                                                             \
        UNROLL for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(b + (off) * NR + 16 * v); \
        UNROLL for (int i = 0; i < MR; ++i) {                                      \
            __m512 av = _mm512_set1_ps(a[(size_t)i * rs + (off) * cs]);            \
            UNROLL for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]); \
        }                                                                          \
    } while (0)
    size_t p = 0;
    for (; p + 4 <= kc; p += 4) {
        // First line of each B~ row PREFETCH steps ahead (the L1 streamer fetches the rest).
        UNROLL for (int q = 0; q < 4; ++q)
            _mm_prefetch((const char *)(b + (BITNET_AVX512_PREFETCH + q) * NR), _MM_HINT_T0);
        BITNET_STEP(0);
        BITNET_STEP(1);
        BITNET_STEP(2);
        BITNET_STEP(3);
        a += 4 * cs;
        b += 4 * NR;
    }
    for (; p < kc; ++p) {
        BITNET_STEP(0);
        a += cs;
        b += NR;
    }
#undef BITNET_STEP

    // Fully unrolled (constant indices keep acc in registers); rows past mr are skipped.
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    UNROLL for (int i = 0; i < MR; ++i) {
        if ((size_t)i >= mr) break;
        float *ci = c + (size_t)i * ldc;
        UNROLL for (int v = 0; v < NV; ++v) {
            __m512 t = _mm512_mul_ps(va, acc[i][v]);
            if (mode == GEMM_STORE_BETA)
                t = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], ci + 16 * v), t);
            else if (mode == GEMM_STORE_ADD)
                t = _mm512_add_ps(_mm512_maskz_loadu_ps(mask[v], ci + 16 * v), t);
            _mm512_mask_storeu_ps(ci + 16 * v, mask[v], t);
        }
    }
}

// Packed A~ micro-panel: A(i, p) = a[p*MR + i].
AVX512 static void kernel_packed(size_t kc, const float *a, const float *b, float *c, size_t ldc,
                                 float alpha, float beta, int mode, size_t mr, const __mmask16 *mask) {
    kernel_body(kc, a, 1, MR, b, c, ldc, alpha, beta, mode, mr, mask);
}

// A read in place from MR row-major rows (stride lda).
AVX512 static void kernel_rows(size_t kc, const float *a, size_t lda, const float *b, float *c,
                               size_t ldc, float alpha, float beta, int mode, const __mmask16 *mask) {
    kernel_body(kc, a, lda, 1, b, c, ldc, alpha, beta, mode, MR, mask);
}

AVX512_INLINE void column_masks(size_t nr, __mmask16 mask[NV]) {
    for (int v = 0; v < NV; ++v) mask[v] = mask_first(nr > (size_t)(16 * v) ? nr - (size_t)(16 * v) : 0);
}

// A~ micro-panel outermost: its MR x kc floats stay in L1 while the B~ micro-panels stream from L2.
AVX512 static void macro_kernel(size_t mc, size_t nc, size_t kc, const float *pa, const float *pb,
                                float *c, size_t ldc, float alpha, float beta, int mode) {
    for (size_t i0 = 0; i0 < mc; i0 += MR) {
        size_t mr = mc - i0 < MR ? mc - i0 : MR;
        for (size_t j0 = 0; j0 < nc; j0 += NR) {
            __mmask16 mask[NV];
            column_masks(nc - j0, mask);
            kernel_packed(kc, pa + i0 * kc, pb + j0 * kc, c + i0 * ldc + j0, ldc, alpha, beta, mode, mr, mask);
        }
    }
}

// Macro-kernel reading A (not transposed) in place; only a trailing partial row panel is packed
// (into `scratch`, MR*kc floats), since reading past row mc would leave the matrix.
AVX512 static void macro_kernel_rows(size_t mc, size_t nc, size_t kc, const float *a, size_t lda,
                                     const float *pb, float *c, size_t ldc, float alpha, float beta,
                                     int mode, float *scratch) {
    size_t full = mc / MR * MR;
    if (full < mc) pack_a(0, mc - full, kc, a + full * lda, lda, scratch);
    for (size_t i0 = 0; i0 < mc; i0 += MR) {
        size_t mr = mc - i0 < MR ? mc - i0 : MR;
        // Row panel outermost: its MR rows stay in L1 across all column panels.
        for (size_t j0 = 0; j0 < nc; j0 += NR) {
            __mmask16 mask[NV];
            column_masks(nc - j0, mask);
            float *cij = c + i0 * ldc + j0;
            if (mr == MR) kernel_rows(kc, a + i0 * lda, lda, pb + j0 * kc, cij, ldc, alpha, beta, mode, mask);
            else kernel_packed(kc, scratch, pb + j0 * kc, cij, ldc, alpha, beta, mode, mr, mask);
        }
    }
}

// MARK: - Dot-product path (few rows of op(A), B transposed)

// out[r] = dot(a, brow[r]) over k for r < R. Each row's arithmetic is independent of R, so an
// element gets the same bits whether it falls in a block of 4 rows or in the tail.
AVX512_INLINE void dot_rows(int R, size_t k, const float *a, const float *const *brow, float *out) {
    __m512 s0[4], s1[4];
    for (int r = 0; r < R; ++r) s0[r] = s1[r] = _mm512_setzero_ps();
    size_t p = 0;
    for (; p + 32 <= k; p += 32) {
        __m512 a0 = _mm512_loadu_ps(a + p), a1 = _mm512_loadu_ps(a + p + 16);
        for (int r = 0; r < R; ++r) {
            s0[r] = _mm512_fmadd_ps(a0, _mm512_loadu_ps(brow[r] + p), s0[r]);
            s1[r] = _mm512_fmadd_ps(a1, _mm512_loadu_ps(brow[r] + p + 16), s1[r]);
        }
    }
    if (p + 16 <= k) {
        __m512 a0 = _mm512_loadu_ps(a + p);
        for (int r = 0; r < R; ++r) s0[r] = _mm512_fmadd_ps(a0, _mm512_loadu_ps(brow[r] + p), s0[r]);
        p += 16;
    }
    if (p < k) {  // masked loads read only the k - p valid floats
        const __mmask16 m = mask_first(k - p);
        __m512 a0 = _mm512_maskz_loadu_ps(m, a + p);
        for (int r = 0; r < R; ++r) s1[r] = _mm512_fmadd_ps(a0, _mm512_maskz_loadu_ps(m, brow[r] + p), s1[r]);
    }
    for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(s0[r], s1[r]));
}

AVX512 static void dots(size_t m, size_t n0, size_t n1, size_t k, float alpha, const float *a, size_t lda,
                        const float *b, size_t ldb, float beta, float *c, size_t ldc) {
    size_t j = n0;
    for (; j + 4 <= n1; j += 4) {
        const float *brow[4] = {b + j * ldb, b + (j + 1) * ldb, b + (j + 2) * ldb, b + (j + 3) * ldb};
        for (size_t i = 0; i < m; ++i) {
            float d[4];
            dot_rows(4, k, a + i * lda, brow, d);
            float *ci = c + i * ldc + j;
            for (int r = 0; r < 4; ++r) ci[r] = beta == 0.0f ? alpha * d[r] : __builtin_fmaf(beta, ci[r], alpha * d[r]);
        }
    }
    for (; j < n1; ++j) {
        const float *brow[1] = {b + j * ldb};
        for (size_t i = 0; i < m; ++i) {
            float d[1];
            dot_rows(1, k, a + i * lda, brow, d);
            float *ci = c + i * ldc + j;
            ci[0] = beta == 0.0f ? alpha * d[0] : __builtin_fmaf(beta, ci[0], alpha * d[0]);
        }
    }
}

const bitnet_gemm_ops bitnet_gemm_ops_avx512 = {
    .mr = MR, .nr = NR, .mc = BITNET_AVX512_MC, .kc = BITNET_AVX512_KC, .nc = BITNET_AVX512_NC,
    .pack_a = pack_a, .pack_b = pack_b, .macro = macro_kernel, .macro_rows = macro_kernel_rows,
    .dots = dots, .direct_a_max_n = BITNET_AVX512_DIRECT_A_MAX_N,
};

#endif
