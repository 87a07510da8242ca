// AVX2 + FMA ternary kernels: vpmaddubsw on the digits u = w + 1 (see ternary_internal.h). t2 GEMV by 128-weight
// blocks, t3 GEMV by 32-byte halves of 64-byte blocks, and the GEMM of both layouts, which decodes rows into digit
// bytes and meets 4 tokens per pass (digits_gemm_simd). The t3 paths here also serve AVX-512 CPUs without VBMI.
#include "ternary_internal.h"

#ifdef BITNET_X86
// The four fields of 32 packed bytes (one 128-weight block): u[f] = bits 7-6, 5-4, 3-2, 1-0, elements 32 f + byte.
__attribute__((target("avx2,fma"), always_inline))
static inline void t2_fields_avx2(__m256i packed, __m256i u[4]) {
    const __m256i m3 = _mm256_set1_epi8(3);
    u[0] = _mm256_and_si256(_mm256_srli_epi16(packed, 6), m3);
    u[1] = _mm256_and_si256(_mm256_srli_epi16(packed, 4), m3);
    u[2] = _mm256_and_si256(_mm256_srli_epi16(packed, 2), m3);
    u[3] = _mm256_and_si256(packed, m3);
}

// sum over one 128-weight block of u * x as 8 int32 lanes (x: 128 readable bytes).
__attribute__((target("avx2,fma")))
static inline __m256i t2_block_dot(__m256i packed, const int8_t *x) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i u[4];
    t2_fields_avx2(packed, u);
    __m256i p0 = _mm256_maddubs_epi16(u[0], _mm256_loadu_si256((const __m256i *)(x)));
    __m256i p1 = _mm256_maddubs_epi16(u[1], _mm256_loadu_si256((const __m256i *)(x + 32)));
    __m256i p2 = _mm256_maddubs_epi16(u[2], _mm256_loadu_si256((const __m256i *)(x + 64)));
    __m256i p3 = _mm256_maddubs_epi16(u[3], _mm256_loadu_si256((const __m256i *)(x + 96)));
    __m256i s = _mm256_add_epi16(_mm256_add_epi16(p0, p1), _mm256_add_epi16(p2, p3));
    return _mm256_madd_epi16(s, ones);
}

// Four rows at once sharing the activation loads (then two, then one); one prefetch per row per 64 bytes.
__attribute__((target("avx2,fma")))
void bitnet_t2_gemv_avx2(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                         size_t r0, size_t r1, const bitnet_gemv_prepared *p) {
    const size_t nfull = cols / 128, tail = cols % 128;
    int8_t xt[128] __attribute__((aligned(32)));
    memset(xt, 0, sizeof xt);
    if (tail) memcpy(xt, x + nfull * 128, tail);
    const int32_t sx = p ? p->xsum : sum_i8(x, cols);
    const t2_prefetch pf = t2_pf_offsets(row_stride);
    size_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const uint8_t *a = w + r * row_stride, *b = a + row_stride, *c = b + row_stride, *d = c + row_stride;
        __m256i acc_a = _mm256_setzero_si256(), acc_b = acc_a, acc_c = acc_a, acc_d = acc_a;
        for (size_t k = 0; k < nfull; k++) {
            if (!(k & 1)) {
                T2_PF(a, k * 32); T2_PF(b, k * 32); T2_PF(c, k * 32); T2_PF(d, k * 32);
            }
            const int8_t *xk = x + k * 128;
            acc_a = _mm256_add_epi32(acc_a, t2_block_dot(_mm256_loadu_si256((const __m256i *)(a + k * 32)), xk));
            acc_b = _mm256_add_epi32(acc_b, t2_block_dot(_mm256_loadu_si256((const __m256i *)(b + k * 32)), xk));
            acc_c = _mm256_add_epi32(acc_c, t2_block_dot(_mm256_loadu_si256((const __m256i *)(c + k * 32)), xk));
            acc_d = _mm256_add_epi32(acc_d, t2_block_dot(_mm256_loadu_si256((const __m256i *)(d + k * 32)), xk));
        }
        if (tail) {
            acc_a = _mm256_add_epi32(acc_a, t2_block_dot(_mm256_loadu_si256((const __m256i *)(a + nfull * 32)), xt));
            acc_b = _mm256_add_epi32(acc_b, t2_block_dot(_mm256_loadu_si256((const __m256i *)(b + nfull * 32)), xt));
            acc_c = _mm256_add_epi32(acc_c, t2_block_dot(_mm256_loadu_si256((const __m256i *)(c + nfull * 32)), xt));
            acc_d = _mm256_add_epi32(acc_d, t2_block_dot(_mm256_loadu_si256((const __m256i *)(d + nfull * 32)), xt));
        }
        y[r] = hsum_epi32(acc_a) - sx;
        y[r + 1] = hsum_epi32(acc_b) - sx;
        y[r + 2] = hsum_epi32(acc_c) - sx;
        y[r + 3] = hsum_epi32(acc_d) - sx;
    }
    for (; r + 2 <= r1; r += 2) {
        const uint8_t *a = w + r * row_stride, *b = a + row_stride;
        __m256i acc_a = _mm256_setzero_si256(), acc_b = _mm256_setzero_si256();
        for (size_t k = 0; k < nfull; k++) {
            if (!(k & 1)) { T2_PF(a, k * 32); T2_PF(b, k * 32); }
            const int8_t *xk = x + k * 128;
            acc_a = _mm256_add_epi32(acc_a, t2_block_dot(_mm256_loadu_si256((const __m256i *)(a + k * 32)), xk));
            acc_b = _mm256_add_epi32(acc_b, t2_block_dot(_mm256_loadu_si256((const __m256i *)(b + k * 32)), xk));
        }
        if (tail) {
            acc_a = _mm256_add_epi32(acc_a, t2_block_dot(_mm256_loadu_si256((const __m256i *)(a + nfull * 32)), xt));
            acc_b = _mm256_add_epi32(acc_b, t2_block_dot(_mm256_loadu_si256((const __m256i *)(b + nfull * 32)), xt));
        }
        y[r] = hsum_epi32(acc_a) - sx;
        y[r + 1] = hsum_epi32(acc_b) - sx;
    }
    for (; r < r1; r++) {
        const uint8_t *a = w + r * row_stride;
        __m256i acc = _mm256_setzero_si256();
        for (size_t k = 0; k < nfull; k++) {
            if (!(k & 1)) T2_PF(a, k * 32);
            acc = _mm256_add_epi32(acc, t2_block_dot(_mm256_loadu_si256((const __m256i *)(a + k * 32)), x + k * 128));
        }
        if (tail) acc = _mm256_add_epi32(acc, t2_block_dot(_mm256_loadu_si256((const __m256i *)(a + nfull * 32)), xt));
        y[r] = hsum_epi32(acc) - sx;
    }
}

// MARK: base-3

// AVX2 digits, greedy as t3_digits: one step with divisor D takes u = [r >= D] + [r >= 2D] (signed byte compares
// once r < 128; the first step flips the sign bit of the byte instead) and r -= D * u. u_0 = min(r, 2).
// Returns the five digit vectors of 32 bytes b, u[i] = the digit of elements 64 * i + byte.
__attribute__((target("avx2,fma")))
static inline void t3_digits_avx2(__m256i b, __m256i u[5]) {
    const __m256i zero = _mm256_setzero_si256(), sign = _mm256_set1_epi8((char)0x80);
    __m256i c1 = _mm256_cmpgt_epi8(_mm256_xor_si256(b, sign), _mm256_set1_epi8(83 - 128));
    __m256i c2 = _mm256_cmpgt_epi8(_mm256_xor_si256(b, sign), _mm256_set1_epi8(167 - 128));
    __m256i r = b;
    for (int i = 4; i >= 1; i--) {
        const __m256i d = _mm256_set1_epi8((char)t3_place[i]);
        if (i < 4) {
            c1 = _mm256_cmpgt_epi8(r, _mm256_set1_epi8((char)(t3_place[i] - 1)));
            c2 = _mm256_cmpgt_epi8(r, _mm256_set1_epi8((char)(2 * t3_place[i] - 1)));
        }
        u[i] = _mm256_sub_epi8(_mm256_sub_epi8(zero, c1), c2);
        r = _mm256_sub_epi8(_mm256_sub_epi8(r, _mm256_and_si256(c1, d)), _mm256_and_si256(c2, d));
    }
    u[0] = _mm256_min_epu8(r, _mm256_set1_epi8(2));
}

// sum of u * x over one half of a block (32 bytes, 160 weights) as 8 int32 lanes; x = the block's activations
// + 32 * half. int16 lanes hold at most 5 * 2 * 2 * 128 = 2560.
__attribute__((target("avx2,fma")))
static inline __m256i t3_half_dot_avx2(__m256i b, const int8_t *x) {
    __m256i u[5], acc = _mm256_setzero_si256();
    t3_digits_avx2(b, u);
    for (int i = 0; i < 5; i++)
        acc = _mm256_add_epi16(acc, _mm256_maddubs_epi16(u[i], _mm256_loadu_si256((const __m256i *)(x + 64 * i))));
    return _mm256_madd_epi16(acc, _mm256_set1_epi16(1));
}

// One row at a time (the fallback for CPUs without AVX512-VBMI); one prefetch per 64 bytes.
__attribute__((target("avx2,fma")))
void bitnet_t3_gemv_avx2(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                         size_t r0, size_t r1, const bitnet_gemv_prepared *p) {
    t3_acts xa;
    t3_acts_init(&xa, x, cols, p);
    const t2_prefetch pf = t2_pf_offsets(row_stride);
    for (size_t r = r0; r < r1; r++) {
        const uint8_t *a = w + r * row_stride;
        __m256i acc = _mm256_setzero_si256();
        for (size_t k = 0; k < xa.nblk; k++) {
            T2_PF(a, k * 64);
            const int8_t *xk = t3_acts_block(&xa, k);
            acc = _mm256_add_epi32(acc, t3_half_dot_avx2(_mm256_loadu_si256((const __m256i *)(a + k * 64)), xk));
            acc = _mm256_add_epi32(acc, t3_half_dot_avx2(_mm256_loadu_si256((const __m256i *)(a + k * 64 + 32)), xk + 32));
        }
        y[r] = hsum_epi32(acc) - xa.sx;
    }
}

// Digits of one row in column order, u[k * 320 + 64 * i + p] = digit i of byte p of block k (nblk blocks).
__attribute__((target("avx2,fma")))
static void t3_decode_row_avx2(const uint8_t *row, size_t nblk, uint8_t *u) {
    for (size_t k = 0; k < nblk; k++)
        for (size_t h = 0; h < 2; h++) {
            __m256i d[5];
            t3_digits_avx2(_mm256_loadu_si256((const __m256i *)(row + k * 64 + 32 * h)), d);
            for (size_t i = 0; i < 5; i++) _mm256_storeu_si256((__m256i *)(u + k * BITNET_T3_BLOCK + 64 * i + 32 * h), d[i]);
        }
}

// out[r][i] = sum_j u[r * n + j] * xs[i][j] over n bytes (a multiple of 32), rows r < 4, tokens i < 4. The pair
// sums of vpmaddubsw (|u0 x0 + u1 x1| <= 2 * 2 * 128) add up in int16 over 16 segments of 32 bytes (at most 8192)
// before one vpmaddwd widens them: 2 instructions per 32 products instead of 3.
__attribute__((target("avx2,fma")))
static void t3_dot4x4_avx2(const uint8_t *u, size_t n, const int8_t *const *xs, int32_t out[4][4]) {
    enum { SEGMENTS = 16 };
    const __m256i ones = _mm256_set1_epi16(1);
    for (size_t r = 0; r < 4; r++) {
        __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
        for (size_t j = 0; j < n;) {
            const size_t end = n - j > 32 * SEGMENTS ? j + 32 * SEGMENTS : n;
            __m256i a16[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
            for (; j < end; j += 32) {
                const __m256i uv = _mm256_loadu_si256((const __m256i *)(u + r * n + j));
                for (size_t i = 0; i < 4; i++)
                    a16[i] = _mm256_add_epi16(a16[i], _mm256_maddubs_epi16(uv, _mm256_loadu_si256((const __m256i *)(xs[i] + j))));
            }
            for (size_t i = 0; i < 4; i++) acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(a16[i], ones));
        }
        for (size_t i = 0; i < 4; i++) out[r][i] = hsum_epi32(acc[i]);
    }
}

// MARK: GEMM of either layout (digits_gemm_simd)

// Digits of one 2-bit row in column order, u[k * 128 + 32 * i + p] = field i (bits 7-6, 5-4, 3-2, 1-0) of byte p
// of block k.
__attribute__((target("avx2,fma")))
static void t2_decode_row_avx2(const uint8_t *row, size_t nblk, uint8_t *u) {
    for (size_t k = 0; k < nblk; k++) {
        __m256i f[4];
        t2_fields_avx2(_mm256_loadu_si256((const __m256i *)(row + k * 32)), f);
        for (size_t i = 0; i < 4; i++) _mm256_storeu_si256((__m256i *)(u + k * 128 + 32 * i), f[i]);
    }
}

// Decoding whole rows into digit bytes first, the t2 GEMM shares the 4 x 4 digits kernel of t3 (and reads each output
// once, not once per k-chunk of 2-bit blocks).
static void t2_gemm_digits_avx2(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                                size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1) {
    digits_gemm_simd(t2_decode_row_avx2, t3_dot4x4_avx2, 128, bitnet_t2_gemm_ref, w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1);
}

static void t3_gemm_digits_avx2(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                                size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1) {
    digits_gemm_simd(t3_decode_row_avx2, t3_dot4x4_avx2, BITNET_T3_BLOCK, bitnet_t3_gemm_ref, w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1);
}
TERNARY_GEMM_ENTRY(bitnet_t2_gemm_avx2, t2_gemm_digits_avx2)
TERNARY_GEMM_ENTRY(bitnet_t3_gemm_avx2, t3_gemm_digits_avx2)
#endif
