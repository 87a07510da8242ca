// AVX-512 ternary kernels: t2 by AVX512-VNNI (vpdpbusd; the GEMV on 512-bit vectors, finishing ragged columns with
// the 256-bit VNNI GEMV, the GEMM on 256-bit register tiles), t3 by VBMI table lookups + VNNI on 512-bit vectors.
// Only taken at BITNET_TERNARY_AVX512VNNI (the VBMI kernels only where the CPU also has VBMI).
#include "ternary_internal.h"
#include <pthread.h>

#ifdef BITNET_X86
// MARK: AVX512-VNNI (256-bit vectors): vpdpbusd sums four u8 x s8 products straight into int32 lanes.

// One row's four segment products of a block into its four accumulators.
#define T2_VNNI_ROW(p, s0, s1, s2, s3)                                                     \
    do {                                                                                   \
        s0 = _mm256_dpbusd_epi32(s0, _mm256_and_si256(_mm256_srli_epi16(p, 6), m3), x0);  \
        s1 = _mm256_dpbusd_epi32(s1, _mm256_and_si256(_mm256_srli_epi16(p, 4), m3), x1);  \
        s2 = _mm256_dpbusd_epi32(s2, _mm256_and_si256(_mm256_srli_epi16(p, 2), m3), x2);  \
        s3 = _mm256_dpbusd_epi32(s3, _mm256_and_si256(p, m3), x3);                         \
    } while (0)
#define T2_SUM4(s0, s1, s2, s3) hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(s0, s1), _mm256_add_epi32(s2, s3)))

// Four rows at once (16 accumulators of the 32 vector registers), then two; one prefetch per row per 64 bytes.
__attribute__((target("avx2,fma,avx512f,avx512vl,avx512vnni")))
static void t2_gemv_vnni(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                         size_t r0, size_t r1, const bitnet_gemv_prepared *p) {
    const size_t nfull = cols / 128, tail = cols % 128, nblk = nfull + (tail ? 1 : 0);
    int8_t xt[128] __attribute__((aligned(32)));
    memset(xt, 0, sizeof xt);
    if (tail) memcpy(xt, x + nfull * 128, tail);
    const int32_t sx = p ? p->xsum : sum_i8(x, cols);
    const t2_prefetch pf = t2_pf_offsets(row_stride);
    const __m256i m3 = _mm256_set1_epi8(3);
    size_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const uint8_t *a = w + r * row_stride, *b = a + row_stride, *c = b + row_stride, *d = c + row_stride;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        __m256i c0 = a0, c1 = a0, c2 = a0, c3 = a0, d0 = a0, d1 = a0, d2 = a0, d3 = a0;
        for (size_t k = 0; k < nblk; k++) {
            if (!(k & 1)) {
                T2_PF(a, k * 32); T2_PF(b, k * 32); T2_PF(c, k * 32); T2_PF(d, k * 32);
            }
            const int8_t *xk = k < nfull ? x + k * 128 : xt;
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(xk)), x1 = _mm256_loadu_si256((const __m256i *)(xk + 32));
            __m256i x2 = _mm256_loadu_si256((const __m256i *)(xk + 64)), x3 = _mm256_loadu_si256((const __m256i *)(xk + 96));
            __m256i pa = _mm256_loadu_si256((const __m256i *)(a + k * 32));
            __m256i pb = _mm256_loadu_si256((const __m256i *)(b + k * 32));
            __m256i pc = _mm256_loadu_si256((const __m256i *)(c + k * 32));
            __m256i pd = _mm256_loadu_si256((const __m256i *)(d + k * 32));
            T2_VNNI_ROW(pa, a0, a1, a2, a3);
            T2_VNNI_ROW(pb, b0, b1, b2, b3);
            T2_VNNI_ROW(pc, c0, c1, c2, c3);
            T2_VNNI_ROW(pd, d0, d1, d2, d3);
        }
        y[r] = T2_SUM4(a0, a1, a2, a3) - sx;
        y[r + 1] = T2_SUM4(b0, b1, b2, b3) - sx;
        y[r + 2] = T2_SUM4(c0, c1, c2, c3) - sx;
        y[r + 3] = T2_SUM4(d0, d1, d2, d3) - sx;
    }
    for (; r + 2 <= r1; r += 2) {
        const uint8_t *a = w + r * row_stride, *b = a + row_stride;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (size_t k = 0; k < nblk; k++) {
            if (!(k & 1)) { T2_PF(a, k * 32); T2_PF(b, k * 32); }
            const int8_t *xk = k < nfull ? x + k * 128 : xt;
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(xk)), x1 = _mm256_loadu_si256((const __m256i *)(xk + 32));
            __m256i x2 = _mm256_loadu_si256((const __m256i *)(xk + 64)), x3 = _mm256_loadu_si256((const __m256i *)(xk + 96));
            __m256i pa = _mm256_loadu_si256((const __m256i *)(a + k * 32));
            __m256i pb = _mm256_loadu_si256((const __m256i *)(b + k * 32));
            T2_VNNI_ROW(pa, a0, a1, a2, a3);
            T2_VNNI_ROW(pb, b0, b1, b2, b3);
        }
        y[r] = T2_SUM4(a0, a1, a2, a3) - sx;
        y[r + 1] = T2_SUM4(b0, b1, b2, b3) - sx;
    }
    if (r < r1) bitnet_t2_gemv_avx2(w, row_stride, cols, x, y, r, r1, p);
}

// 512-bit GEMV: one 64-byte load holds two consecutive blocks (256 weights), so every shift/mask/vpdpbusd does
// twice the work of the 256-bit kernel; the activations are first copied into the matching order (per block pair m:
// xp[256 m + 64 seg + 32 h + j] = x[128 (2m + h) + 32 seg + j]). Rows whose block count is odd, or with a tail,
// finish their last columns with t2_gemv_vnni; rows longer than T2_ZMM_MAX_COLS use it for everything.
// Shift-free unpacking: field f of each byte is masked in place (p & (3 << 2f)), so the products come out
// 4^f times too large and land in accumulator S_f of their own; the sums are scaled back exactly at the end
// (every lane of S_f is a multiple of 4^f). Masks run on two ports, shifts on one shared with vpdpbusd.
#define T2_ZMM_ROW(P, S0, S1, S2, S3)                                                          \
    do {                                                                                       \
        const __m512i p = _mm512_loadu_si512((P) + m * 64);                                    \
        S0 = _mm512_dpbusd_epi32(S0, _mm512_and_si512(p, mc0), x0);                            \
        S1 = _mm512_dpbusd_epi32(S1, _mm512_and_si512(p, mc1), x1);                            \
        S2 = _mm512_dpbusd_epi32(S2, _mm512_and_si512(p, mc2), x2);                            \
        S3 = _mm512_dpbusd_epi32(S3, _mm512_and_si512(p, mc3), x3);                            \
    } while (0)
#define T2_ZMM_SUM(S0, S1, S2, S3)                                                             \
    _mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_add_epi32(_mm512_srai_epi32(S0, 6), _mm512_srai_epi32(S1, 4)), \
                                             _mm512_add_epi32(_mm512_srai_epi32(S2, 2), S3)))
#define T2_ZMM_X                                                                                \
    const int8_t *xm = xp + m * 256;                                                           \
    const __m512i x0 = _mm512_load_si512(xm), x1 = _mm512_load_si512(xm + 64);                 \
    const __m512i x2 = _mm512_load_si512(xm + 128), x3 = _mm512_load_si512(xm + 192)


__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))
void bitnet_t2_zmm_reorder(const int8_t *x, size_t np, int8_t *xp) {
    for (size_t m = 0; m < np; m++)
        for (size_t seg = 0; seg < 4; seg++) {
            memcpy(xp + m * 256 + seg * 64, x + 2 * m * 128 + seg * 32, 32);
            memcpy(xp + m * 256 + seg * 64 + 32, x + (2 * m + 1) * 128 + seg * 32, 32);
        }
}

__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))
void bitnet_t2_gemv_zmm(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                        size_t r0, size_t r1, const bitnet_gemv_prepared *prep) {
    const size_t np = cols / 256, rest = cols - np * 256;
    if (np == 0 || cols > T2_ZMM_MAX_COLS) { t2_gemv_vnni(w, row_stride, cols, x, y, r0, r1, prep); return; }
    // The 256-column blocks in the kernel's order: the prepared copy, or this range's own.
    int8_t own[T2_ZMM_MAX_COLS] __attribute__((aligned(64)));
    const int8_t *xp = prep && prep->xr ? prep->xr : own;
    if (xp == own) bitnet_t2_zmm_reorder(x, np, own);
    const int32_t sx = prep ? prep->xsum - (rest ? sum_i8(x + np * 256, rest) : 0) : sum_i8(x, np * 256);
    const t2_prefetch pf = t2_pf_offsets(row_stride);
    const __m512i mc0 = _mm512_set1_epi8((char)0xc0), mc1 = _mm512_set1_epi8(0x30);
    const __m512i mc2 = _mm512_set1_epi8(0x0c), mc3 = _mm512_set1_epi8(0x03);
    int32_t part[4];
    size_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const uint8_t *a = w + r * row_stride, *b = a + row_stride, *c = b + row_stride, *d = c + row_stride;
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        __m512i c0 = a0, c1 = a0, c2 = a0, c3 = a0, d0 = a0, d1 = a0, d2 = a0, d3 = a0;
        for (size_t m = 0; m < np; m++) {
            T2_PF(a, m * 64); T2_PF(b, m * 64); T2_PF(c, m * 64); T2_PF(d, m * 64);
            T2_ZMM_X;
            T2_ZMM_ROW(a, a0, a1, a2, a3); T2_ZMM_ROW(b, b0, b1, b2, b3);
            T2_ZMM_ROW(c, c0, c1, c2, c3); T2_ZMM_ROW(d, d0, d1, d2, d3);
        }
        y[r] = T2_ZMM_SUM(a0, a1, a2, a3) - sx;
        y[r + 1] = T2_ZMM_SUM(b0, b1, b2, b3) - sx;
        y[r + 2] = T2_ZMM_SUM(c0, c1, c2, c3) - sx;
        y[r + 3] = T2_ZMM_SUM(d0, d1, d2, d3) - sx;
        if (rest) {   // the last columns as a matrix of their own (part is indexed by absolute row)
            t2_gemv_vnni(w + np * 64, row_stride, rest, x + np * 256, part - r, r, r + 4, NULL);
            for (int i = 0; i < 4; i++) y[r + i] += part[i];
        }
    }
    for (; r < r1; r++) {
        const uint8_t *a = w + r * row_stride;
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t m = 0; m < np; m++) {
            T2_ZMM_X;
            T2_ZMM_ROW(a, a0, a1, a2, a3);
        }
        y[r] = T2_ZMM_SUM(a0, a1, a2, a3) - sx;
        if (rest) {
            t2_gemv_vnni(w + np * 64, row_stride, rest, x + np * 256, part - r, r, r + 1, NULL);
            y[r] += part[0];
        }
    }
}

// Register block: R rows (R <= 4) x 4 tokens of int32 accumulators over whole rows, one horizontal sum per
// output. Each 32-byte block of a row is loaded and unpacked once per segment and fed to all 4 tokens; each
// activation segment is loaded once and fed to all R rows. Missing tokens of a partial tile alias token 0.
// The general version serves the last R < 4 rows of a range; the 4-row version is written out so that all 16
// accumulators stay in registers (clang does not fully unroll the general loops).
#define T2_GEMM_TOKENS 4
__attribute__((target("avx2,fma,avx512f,avx512vl,avx512vnni")))
static void t2_gemm_vnni_rows(const uint8_t *const *rows, size_t R, const int8_t *const *xs, size_t nblk,
                              __m256i acc[4][T2_GEMM_TOKENS]) {
    const __m256i m3 = _mm256_set1_epi8(3);
    for (size_t r = 0; r < 4; r++)
        for (size_t i = 0; i < T2_GEMM_TOKENS; i++) acc[r][i] = _mm256_setzero_si256();
    for (size_t k = 0; k < nblk; k++) {
        for (unsigned seg = 0; seg < 4; seg++) {
            for (size_t r = 0; r < R; r++) {
                const __m256i u = _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(rows[r] + k * 32)),
                                                                     6 - 2 * (int)seg), m3);
                for (size_t i = 0; i < T2_GEMM_TOKENS; i++)
                    acc[r][i] = _mm256_dpbusd_epi32(acc[r][i], u, _mm256_loadu_si256((const __m256i *)(xs[i] + k * 128 + seg * 32)));
            }
        }
    }
}

#define T2_DP4(x, off)                                                              \
    do {                                                                           \
        const __m256i xv = _mm256_loadu_si256((const __m256i *)((x) + (off)));     \
        a0 = _mm256_dpbusd_epi32(a0, u0, xv); a1 = _mm256_dpbusd_epi32(a1, u1, xv); \
        a2 = _mm256_dpbusd_epi32(a2, u2, xv); a3 = _mm256_dpbusd_epi32(a3, u3, xv); \
    } while (0)
#define T2_SEG(shift, off)                                                                              \
    do {                                                                                               \
        const __m256i u0 = _mm256_and_si256(_mm256_srli_epi16(p0, shift), m3);                         \
        const __m256i u1 = _mm256_and_si256(_mm256_srli_epi16(p1, shift), m3);                         \
        const __m256i u2 = _mm256_and_si256(_mm256_srli_epi16(p2, shift), m3);                         \
        const __m256i u3 = _mm256_and_si256(_mm256_srli_epi16(p3, shift), m3);                         \
        { __m256i a0 = c00, a1 = c10, a2 = c20, a3 = c30; T2_DP4(x0k, off); c00 = a0; c10 = a1; c20 = a2; c30 = a3; } \
        { __m256i a0 = c01, a1 = c11, a2 = c21, a3 = c31; T2_DP4(x1k, off); c01 = a0; c11 = a1; c21 = a2; c31 = a3; } \
        { __m256i a0 = c02, a1 = c12, a2 = c22, a3 = c32; T2_DP4(x2k, off); c02 = a0; c12 = a1; c22 = a2; c32 = a3; } \
        { __m256i a0 = c03, a1 = c13, a2 = c23, a3 = c33; T2_DP4(x3k, off); c03 = a0; c13 = a1; c23 = a2; c33 = a3; } \
    } while (0)

__attribute__((target("avx2,fma,avx512f,avx512vl,avx512vnni")))
static void t2_gemm_vnni_4x4(const uint8_t *const *rows, const int8_t *const *xs, size_t nblk, __m256i acc[4][T2_GEMM_TOKENS]) {
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m256i c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
    for (size_t k = 0; k < nblk; k++) {
        const __m256i p0 = _mm256_loadu_si256((const __m256i *)(rows[0] + k * 32));
        const __m256i p1 = _mm256_loadu_si256((const __m256i *)(rows[1] + k * 32));
        const __m256i p2 = _mm256_loadu_si256((const __m256i *)(rows[2] + k * 32));
        const __m256i p3 = _mm256_loadu_si256((const __m256i *)(rows[3] + k * 32));
        const int8_t *x0k = xs[0] + k * 128, *x1k = xs[1] + k * 128, *x2k = xs[2] + k * 128, *x3k = xs[3] + k * 128;
        T2_SEG(6, 0);
        T2_SEG(4, 32);
        T2_SEG(2, 64);
        T2_SEG(0, 96);
    }
    acc[0][0] = c00; acc[0][1] = c01; acc[0][2] = c02; acc[0][3] = c03;
    acc[1][0] = c10; acc[1][1] = c11; acc[1][2] = c12; acc[1][3] = c13;
    acc[2][0] = c20; acc[2][1] = c21; acc[2][2] = c22; acc[2][3] = c23;
    acc[3][0] = c30; acc[3][1] = c31; acc[3][2] = c32; acc[3][3] = c33;
}

// Rows in blocks that stay in L2 (~192 KB of packed weights) while every tile of 4 tokens streams past them,
// so weights come from memory once per call and activations from L1/L2.
__attribute__((target("avx2,fma,avx512f,avx512vl,avx512vnni")))
static void t2_gemm_vnni(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                         size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1) {
    const size_t nblk = (cols + 127) / 128;
    if (nblk == 0) {
        for (size_t t = 0; t < tokens; t++) memset(y + t * ldy + r0, 0, (r1 - r0) * sizeof(int32_t));
        return;
    }
    t2_padded xp;
    if (!t2_pad_tokens(x, ldx, cols, tokens, nblk, 128, &xp)) { bitnet_t2_gemm_ref(w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1); return; }
    size_t rb = (192 * 1024 / (row_stride ? row_stride : 1)) & ~(size_t)3;
    if (rb < 4) rb = 4;
    // Long prompts: tokens in blocks whose activations (~512 KB) stay in L2 beside the weight block.
    size_t tb = (512 * 1024 / xp.ld) & ~(size_t)(T2_GEMM_TOKENS - 1);
    if (tb < T2_GEMM_TOKENS) tb = T2_GEMM_TOKENS;
    for (size_t tb0 = 0; tb0 < tokens; tb0 += tb) {
    const size_t tb1 = tb0 + tb < tokens ? tb0 + tb : tokens;
    for (size_t b0 = r0; b0 < r1; b0 += rb) {
        const size_t b1 = b0 + rb < r1 ? b0 + rb : r1;
        for (size_t t0 = tb0; t0 < tb1; t0 += T2_GEMM_TOKENS) {
            const size_t nt = tb1 - t0 < T2_GEMM_TOKENS ? tb1 - t0 : T2_GEMM_TOKENS;
            const int8_t *xs[T2_GEMM_TOKENS];
            for (size_t i = 0; i < T2_GEMM_TOKENS; i++) xs[i] = xp.x + (t0 + (i < nt ? i : 0)) * xp.ld;
            for (size_t r = b0; r < b1; r += 4) {
                const size_t R = b1 - r < 4 ? b1 - r : 4;
                const uint8_t *rows[4];
                for (size_t j = 0; j < 4; j++) rows[j] = w + (r + (j < R ? j : 0)) * row_stride;
                __m256i acc[4][T2_GEMM_TOKENS];
                if (R == 4) t2_gemm_vnni_4x4(rows, xs, nblk, acc);
                else t2_gemm_vnni_rows(rows, R, xs, nblk, acc);
                for (size_t j = 0; j < R; j++)
                    for (size_t i = 0; i < nt; i++) y[(t0 + i) * ldy + r + j] = hsum_epi32(acc[j][i]) - xp.sx[t0 + i];
            }
        }
    }
    }
    free(xp.sx);
}

TERNARY_GEMM_ENTRY(bitnet_t2_gemm_vnni, t2_gemm_vnni)

// MARK: AVX512-VBMI + VNNI, 320 weights per 64-byte load. Every digit is one 64-entry byte table lookup (vpermb,
// which reads the low 6 bits of each index byte): u_3, u_4 and 28 u_3 + 84 u_4 by i = b >> 2, then u_0..u_2 by
// s = b - 28 u_3 - 84 u_4 (< 32 for every byte). vpdpbusd sums u8 digit x s8 activation into int32 lanes. Per 64
// bytes: a shift, a subtraction, six lookups, five products. (Places 27 and 81 would need b mod 81 and a 128-entry
// table: 17 vector uops against 13 here.)

static uint8_t t3_tables[6][64] __attribute__((aligned(64)));   // by i: 28 u_3 + 84 u_4, u_3, u_4; by s: u_0, u_1, u_2
static pthread_once_t t3_tables_once = PTHREAD_ONCE_INIT;
static void t3_tables_init(void) {
    for (unsigned i = 0; i < 64; i++) {
        unsigned u[5];
        t3_digits(4 * i, u);   // every byte of 4 i .. 4 i + 3 has these u_3, u_4 (28 is a multiple of 4)
        t3_tables[0][i] = (uint8_t)(28 * u[3] + 84 * u[4]);
        t3_tables[1][i] = (uint8_t)u[3];
        t3_tables[2][i] = (uint8_t)u[4];
        t3_digits_n(i, 3, u);
        for (unsigned d = 0; d < 3; d++) t3_tables[3 + d][i] = (uint8_t)u[d];
    }
}

#define T3_VBMI_TARGET "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi"

// The six tables, loaded once per call.
typedef struct { __m512i high, u3, u4, u0, u1, u2; } t3_consts;

__attribute__((target(T3_VBMI_TARGET), always_inline))
static inline void t3_consts_init(t3_consts *c) {
    pthread_once(&t3_tables_once, t3_tables_init);
    c->high = _mm512_load_si512((const void *)t3_tables[0]);
    c->u3 = _mm512_load_si512((const void *)t3_tables[1]);
    c->u4 = _mm512_load_si512((const void *)t3_tables[2]);
    c->u0 = _mm512_load_si512((const void *)t3_tables[3]);
    c->u1 = _mm512_load_si512((const void *)t3_tables[4]);
    c->u2 = _mm512_load_si512((const void *)t3_tables[5]);
}

// The five digit vectors of 64 bytes b: u[d] = digits of elements 64 * d + byte. The table indexes are i = b >> 2
// (vpsrlw moves a neighbour's bits into bits 6-7 only, which vpermb ignores) and s = b - 28 u_3 - 84 u_4.
__attribute__((target(T3_VBMI_TARGET), always_inline))
static inline void t3_digits_vbmi(__m512i b, const t3_consts *c, __m512i u[5]) {
    const __m512i i = _mm512_srli_epi16(b, 2), s = _mm512_sub_epi8(b, _mm512_permutexvar_epi8(i, c->high));
    u[0] = _mm512_permutexvar_epi8(s, c->u0);
    u[1] = _mm512_permutexvar_epi8(s, c->u1);
    u[2] = _mm512_permutexvar_epi8(s, c->u2);
    u[3] = _mm512_permutexvar_epi8(i, c->u3);
    u[4] = _mm512_permutexvar_epi8(i, c->u4);
}

// Rows per pass of the GEMV. Three: in the model, two rows and four rows per pass both decoded slower.
#define T3_ROWS 3
#define T3_LOAD(p, k) _mm512_loadu_si512((const void *)((p) + (k) * 64))

// R rows at once (R <= T3_ROWS: one accumulator per digit and row, R prefetch streams; one prefetch pair per row per
// 64 bytes). Per lane and block at most 4 * 2 * 128 per digit, so int32 holds rows of over a million weights.
__attribute__((target(T3_VBMI_TARGET), always_inline))
static inline void t3_rows_vbmi(const uint8_t *w, size_t row_stride, const t3_acts *xa, t2_prefetch pf, const t3_consts *c,
                                int32_t *y, size_t R) {
    __m512i a0[T3_ROWS], a1[T3_ROWS], a2[T3_ROWS], a3[T3_ROWS], a4[T3_ROWS];
    for (size_t r = 0; r < R; r++) a0[r] = a1[r] = a2[r] = a3[r] = a4[r] = _mm512_setzero_si512();
    for (size_t k = 0; k < xa->nblk; k++) {
        const int8_t *xk = t3_acts_block(xa, k);
        for (size_t r = 0; r < R; r++) {
            T2_PF(w + r * row_stride, k * 64);
            __m512i u[5];
            t3_digits_vbmi(T3_LOAD(w + r * row_stride, k), c, u);
            a0[r] = _mm512_dpbusd_epi32(a0[r], u[0], _mm512_loadu_si512((const void *)xk));
            a1[r] = _mm512_dpbusd_epi32(a1[r], u[1], _mm512_loadu_si512((const void *)(xk + 64)));
            a2[r] = _mm512_dpbusd_epi32(a2[r], u[2], _mm512_loadu_si512((const void *)(xk + 128)));
            a3[r] = _mm512_dpbusd_epi32(a3[r], u[3], _mm512_loadu_si512((const void *)(xk + 192)));
            a4[r] = _mm512_dpbusd_epi32(a4[r], u[4], _mm512_loadu_si512((const void *)(xk + 256)));
        }
    }
    for (size_t r = 0; r < R; r++) {
        const __m512i s = _mm512_add_epi32(_mm512_add_epi32(a0[r], a1[r]), _mm512_add_epi32(_mm512_add_epi32(a2[r], a3[r]), a4[r]));
        y[r] = _mm512_reduce_add_epi32(s) - xa->sx;
    }
}

__attribute__((target(T3_VBMI_TARGET)))
void bitnet_t3_gemv_vbmi(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                         size_t r0, size_t r1, const bitnet_gemv_prepared *p) {
    t3_consts c;
    t3_consts_init(&c);
    t3_acts xa;
    t3_acts_init(&xa, x, cols, p);
    const t2_prefetch pf = t2_pf_offsets(row_stride);
    size_t r = r0;
    for (; r + T3_ROWS <= r1; r += T3_ROWS) t3_rows_vbmi(w + r * row_stride, row_stride, &xa, pf, &c, y + r, T3_ROWS);
    if (r + 2 == r1) { t3_rows_vbmi(w + r * row_stride, row_stride, &xa, pf, &c, y + r, 2); r += 2; }
    for (; r < r1; r++) t3_rows_vbmi(w + r * row_stride, row_stride, &xa, pf, &c, y + r, 1);
}

__attribute__((target(T3_VBMI_TARGET)))
static void t3_decode_row_vbmi(const uint8_t *row, size_t nblk, uint8_t *u) {
    t3_consts c;
    t3_consts_init(&c);
    for (size_t k = 0; k < nblk; k++) {
        __m512i d[5];
        t3_digits_vbmi(T3_LOAD(row, k), &c, d);
        for (size_t i = 0; i < 5; i++) _mm512_storeu_si512((void *)(u + k * BITNET_T3_BLOCK + 64 * i), d[i]);
    }
}

// 4 rows x 4 tokens of accumulators: each digit vector and each activation vector loaded once feeds 4 products.
#define T3_DP4(a0, a1, a2, a3, xv) \
    do { a0 = _mm512_dpbusd_epi32(a0, u0, xv); a1 = _mm512_dpbusd_epi32(a1, u1, xv); \
         a2 = _mm512_dpbusd_epi32(a2, u2, xv); a3 = _mm512_dpbusd_epi32(a3, u3, xv); } while (0)
__attribute__((target(T3_VBMI_TARGET)))
static void t3_dot4x4_vnni(const uint8_t *u, size_t n, const int8_t *const *xs, int32_t out[4][4]) {
    __m512i c00 = _mm512_setzero_si512(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m512i c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
    for (size_t j = 0; j < n; j += 64) {
        const __m512i u0 = _mm512_loadu_si512((const void *)(u + j)), u1 = _mm512_loadu_si512((const void *)(u + n + j));
        const __m512i u2 = _mm512_loadu_si512((const void *)(u + 2 * n + j)), u3 = _mm512_loadu_si512((const void *)(u + 3 * n + j));
        T3_DP4(c00, c10, c20, c30, _mm512_loadu_si512((const void *)(xs[0] + j)));
        T3_DP4(c01, c11, c21, c31, _mm512_loadu_si512((const void *)(xs[1] + j)));
        T3_DP4(c02, c12, c22, c32, _mm512_loadu_si512((const void *)(xs[2] + j)));
        T3_DP4(c03, c13, c23, c33, _mm512_loadu_si512((const void *)(xs[3] + j)));
    }
    const __m512i c[4][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23}, {c30, c31, c32, c33}};
    for (size_t r = 0; r < 4; r++)
        for (size_t i = 0; i < 4; i++) out[r][i] = _mm512_reduce_add_epi32(c[r][i]);
}

static void t3_gemm_vbmi(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                         size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1) {
    digits_gemm_simd(t3_decode_row_vbmi, t3_dot4x4_vnni, BITNET_T3_BLOCK, bitnet_t3_gemm_ref, w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1);
}
TERNARY_GEMM_ENTRY(bitnet_t3_gemm_vbmi, t3_gemm_vbmi)
#endif
