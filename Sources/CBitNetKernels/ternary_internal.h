// Private interface of the ternary kernels, shared by the dispatch (ternary.c), the layouts (ternary_layout.c), the
// portable kernels (ternary_ref.c) and the SIMD paths (ternary_avx2.c: AVX2 + FMA; ternary_avx512.c: AVX512-VNNI on
// 256- and 512-bit vectors, and VBMI). Helpers that hot loops of several files call are static inline here, so each
// hot loop has its callees in its own translation unit and nothing it inlined before is lost.
//
// SIMD trick: weights are stored as u = w + 1 in {0, 1, 2}, which is exactly the unsigned operand that
// _mm256_maddubs_epi16 wants. sum_j u_j x_j - sum_j x_j = sum_j w_j x_j. Each int16 lane of maddubs holds
// two products of magnitude <= 2 * 128, so no saturation; four segments per block sum to <= 2048 per lane,
// then _mm256_madd_epi16 with ones widens to int32. Padded weights (u = 1) meet zero-padded activations.
// Where AVX512-VNNI (with VL) is present, vpdpbusd on 256-bit vectors does the u8 x s8 dot straight into int32.
#ifndef BITNET_TERNARY_INTERNAL_H
#define BITNET_TERNARY_INTERNAL_H

#include "bitnet_ternary.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BITNET_X86 1
#endif

/// Functions one ternary file defines for another: not exported from the library.
#define TERNARY_INTERNAL __attribute__((visibility("hidden")))

/// The GEMM entry points run their static kernel only with rows and tokens to do (as the dispatch already checked):
/// with that fact from the call site the kernel compiles to the code it had as a static function beside the dispatch.
#define TERNARY_GEMM_ENTRY(name, kernel)                                                                           \
    void name(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx, size_t tokens,       \
              int32_t *y, size_t ldy, size_t r0, size_t r1) {                                                     \
        if (r0 < r1 && tokens > 0) kernel(w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1);                   \
    }

// MARK: layouts

// Byte offset and shift of element j inside a packed row.
static inline size_t t2_byte(size_t j) { return (j / 128) * 32 + (j % 32); }
static inline unsigned t2_shift(size_t j) { return 6 - 2 * (unsigned)((j % 128) / 32); }

// Place values of the five digits in a byte: b = u_0 + 3 u_1 + 9 u_2 + 28 u_3 + 84 u_4. Base 3 but for the top two
// places (28 and 84 instead of 27 and 81): then b >> 2 alone tells u_3 and u_4 (each of the nine (u_3, u_4) pairs owns
// 28 consecutive bytes, 7 whole groups of 4), and b - 28 u_3 - 84 u_4 < 64 tells u_0..u_2, so the AVX-512 GEMV takes
// every digit with one 64-entry byte table lookup (vpermb).
static const unsigned t3_place[5] = {1, 3, 9, 28, 84};

// Digits of any byte b, greedily from the most significant: u_4 = [b >= 84] + [b >= 168], then the same with 28, 9,
// 3 and 1 on the remainder. For the 243 bytes a packer writes (b = sum_i u_i * place_i) these are the digits; the 13
// others (28 g + 27 for g = 0..8, and 252..255) get the same greedy digits on every kernel path. n = 5 digits, or
// the low n digits of a remainder below place n.
static inline void t3_digits_n(unsigned b, unsigned n, unsigned u[5]) {
    for (unsigned i = n; i-- > 0;) {
        u[i] = (b >= t3_place[i]) + (b >= 2 * t3_place[i]);
        b -= u[i] * t3_place[i];
    }
}
static inline void t3_digits(unsigned b, unsigned u[5]) { t3_digits_n(b, 5, u); }

// MARK: activations

#ifdef BITNET_X86
// sum of x by vpsadbw: x ^ 0x80 = x + 128 as an unsigned byte, summed 8 bytes at a time into 64-bit lanes.
__attribute__((target("avx2")))
static inline int32_t sum_i8_avx2(const int8_t *x, size_t n) {
    const __m256i bias = _mm256_set1_epi8((char)0x80), zero = _mm256_setzero_si256();
    __m256i acc = zero;
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(x + i)), bias), zero));
    int64_t s = _mm256_extract_epi64(acc, 0) + _mm256_extract_epi64(acc, 1) + _mm256_extract_epi64(acc, 2)
              + _mm256_extract_epi64(acc, 3) - 128 * (int64_t)i;
    for (; i < n; i++) s += x[i];
    return (int32_t)s;
}
#endif

static inline int32_t sum_i8(const int8_t *x, size_t n) {
#ifdef BITNET_X86
    if (bitnet_ternary_isa() != BITNET_TERNARY_PORTABLE) return sum_i8_avx2(x, n);
#endif
    int32_t s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s;
}

// Activations of every token in rows of whole blocks (`block` weights, zero tail), with their sums: the GEMMs then
// read full blocks only, and sum_j (code_j) * x_j - sum_j x_j = sum_j w_j * x_j.
typedef struct { const int8_t *x; int32_t *sx; size_t ld; } t2_padded;
// When cols is a whole number of blocks (every layer of 2B4T) the activations are used in place: only the sums
// are computed, with no copy (a copy per call and thread chunk would page-fault a fresh buffer each time).
static __attribute__((unused, noinline)) int t2_pad_tokens(const int8_t *x, size_t ldx, size_t cols, size_t tokens, size_t nblk, size_t block,
                                                        t2_padded *out) {
    const int copy = cols % block != 0;
    out->ld = copy ? nblk * block : ldx;
    out->sx = (int32_t *)malloc(tokens * sizeof(int32_t) + (copy ? tokens * out->ld + 64 : 0));
    if (!out->sx) return 0;
    int8_t *buf = copy ? (int8_t *)(((uintptr_t)(out->sx + tokens) + 63) & ~(uintptr_t)63) : NULL;
    out->x = copy ? buf : x;
    for (size_t t = 0; t < tokens; t++) {
        if (copy) {
            memcpy(buf + t * out->ld, x + t * ldx, cols);
            memset(buf + t * out->ld + cols, 0, out->ld - cols);
        }
        out->sx[t] = sum_i8(x + t * ldx, cols);
    }
    return 1;
}

static inline void t3_pad_tail(const int8_t *x, size_t cols, int8_t *tail) {
    const size_t nfull = cols / BITNET_T3_BLOCK;
    memset(tail, 0, BITNET_T3_BLOCK);
    memcpy(tail, x + nfull * BITNET_T3_BLOCK, cols - nfull * BITNET_T3_BLOCK);
}

// The widest row the 512-bit t2 GEMV takes (ternary_avx512.c); the prepared activations hold one reordered row.
#define T2_ZMM_MAX_COLS 16384

#ifdef BITNET_X86
__attribute__((target("avx2,fma")))
static inline int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

// Software prefetch for the GEMV weight streams, at two distances. Decoding reads every packed row exactly once
// from DRAM, and with the products interleaved the hardware prefetchers keep too few lines in flight. A T0 prefetch
// ~2 KB ahead (the lines the loop will load next, into L1) plus a T2 prefetch ~32 KB ahead (early DRAM requests into
// the outer caches, which do not hold a fill buffer for long) bring the stream close to what the loads alone reach;
// a single T0 prefetch 4 KB ahead falls well short. Each is a whole number of 4-row groups ahead, at the same column: the rows of a
// group to come, one line per row per 64 bytes read, so the start of every row is already in flight when it is
// reached. Prefetches past the matrix (or the caller's row range) are harmless: they never fault.
#ifndef T2_PF_BYTES
#define T2_PF_BYTES 2048
#endif
#ifndef T2_PF_FAR_BYTES
#define T2_PF_FAR_BYTES 32768
#endif
// Both prefetches of one line, `off` bytes into the row at `base` (the caller's `pf` holds the two distances).
// Address arithmetic in uintptr_t: the targets may lie past the end of the weights.
#define T2_PF(base, off)                                                                              \
    do {                                                                                             \
        _mm_prefetch((const char *)((uintptr_t)(base) + pf.near + (off)), _MM_HINT_T0);              \
        _mm_prefetch((const char *)((uintptr_t)(base) + pf.far + (off)), _MM_HINT_T2);               \
    } while (0)

typedef struct { size_t near, far; } t2_prefetch;

// Prefetch offsets: whole numbers of 4-row groups, at least T2_PF_BYTES and T2_PF_FAR_BYTES.
static inline t2_prefetch t2_pf_offsets(size_t row_stride) {
    const size_t group = 4 * row_stride;
    if (group == 0) return (t2_prefetch){0, 0};
    return (t2_prefetch){(T2_PF_BYTES + group - 1) / group * group, (T2_PF_FAR_BYTES + group - 1) / group * group};
}

// Activations of a row: whole blocks in place, the tail block from a zero-padded copy (padding weights are code 0
// meeting zero activations).
// The sum and the padded tail come prepared (bitnet_t3_gemv_prepare) or are made here, in `own`.
typedef struct {
    const int8_t *x, *tail;
    size_t nfull, nblk;
    int32_t sx;
    int8_t own[BITNET_T3_BLOCK] __attribute__((aligned(64)));
} t3_acts;

static inline void t3_acts_init(t3_acts *a, const int8_t *x, size_t cols, const bitnet_gemv_prepared *p) {
    a->x = x;
    a->nfull = cols / BITNET_T3_BLOCK;
    a->nblk = (cols + BITNET_T3_BLOCK - 1) / BITNET_T3_BLOCK;
    if (p) {
        a->tail = p->xr;
        a->sx = p->xsum;
        return;
    }
    t3_pad_tail(x, cols, a->own);
    a->tail = a->own;
    a->sx = sum_i8(x, cols);
}

static inline const int8_t *t3_acts_block(const t3_acts *a, size_t k) {
    return k < a->nfull ? a->x + k * BITNET_T3_BLOCK : a->tail;
}

// GEMM of either layout (t3 on every SIMD path, t2 on AVX2): rows are decoded 4 at a time, once per block of tokens,
// into their digit bytes in column order (in L1), which then meet 4 tokens per pass (4 x 4 register block). Token
// blocks keep their activations (~512 KB) in L2. Missing rows of a partial group alias its first row.
typedef void (*digits_decode_fn)(const uint8_t *row, size_t nblk, uint8_t *u);
typedef void (*digits_dot4_fn)(const uint8_t *u, size_t n, const int8_t *const *xs, int32_t out[4][4]);

typedef void (*ternary_gemm_fn)(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                                size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1);
// `block` weights per packed block (t3: 320, t2: 128); `ref` serves a call whose buffers cannot be allocated.
static inline void digits_gemm_simd(digits_decode_fn decode, digits_dot4_fn dot4, size_t block, ternary_gemm_fn ref, const uint8_t *w,
                             size_t row_stride, size_t cols, const int8_t *x, size_t ldx, size_t tokens, int32_t *y,
                             size_t ldy, size_t r0, size_t r1) {
    const size_t nblk = (cols + block - 1) / block, n = nblk * block;
    if (nblk == 0) {
        for (size_t t = 0; t < tokens; t++) memset(y + t * ldy + r0, 0, (r1 - r0) * sizeof(int32_t));
        return;
    }
    t2_padded xp;
    uint8_t *u = (uint8_t *)aligned_alloc(64, 4 * n);
    if (!u || !t2_pad_tokens(x, ldx, cols, tokens, nblk, block, &xp)) {
        free(u);
        ref(w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1);
        return;
    }
    size_t tb = (512 * 1024 / xp.ld) & ~(size_t)3;
    if (tb < 4) tb = 4;
    for (size_t tb0 = 0; tb0 < tokens; tb0 += tb) {
        const size_t tb1 = tb0 + tb < tokens ? tb0 + tb : tokens;
        for (size_t r = r0; r < r1; r += 4) {
            const size_t R = r1 - r < 4 ? r1 - r : 4;
            for (size_t j = 0; j < 4; j++) decode(w + (r + (j < R ? j : 0)) * row_stride, nblk, u + j * n);
            for (size_t t0 = tb0; t0 < tb1; t0 += 4) {
                const size_t nt = tb1 - t0 < 4 ? tb1 - t0 : 4;
                const int8_t *xs[4];
                for (size_t i = 0; i < 4; i++) xs[i] = xp.x + (t0 + (i < nt ? i : 0)) * xp.ld;
                int32_t out[4][4];
                dot4(u, n, xs, out);
                for (size_t j = 0; j < R; j++)
                    for (size_t i = 0; i < nt; i++) y[(t0 + i) * ldy + r + j] = out[j][i] - xp.sx[t0 + i];
            }
        }
    }
    free(xp.sx);
    free(u);
}

// MARK: SIMD entry points (p: the prepared activations, or NULL)

// ternary_avx2.c
TERNARY_INTERNAL void bitnet_t2_gemv_avx2(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                                          size_t r0, size_t r1, const bitnet_gemv_prepared *p);
TERNARY_INTERNAL void bitnet_t2_gemm_avx2(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                                          size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1);
TERNARY_INTERNAL void bitnet_t3_gemv_avx2(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                                          size_t r0, size_t r1, const bitnet_gemv_prepared *p);
TERNARY_INTERNAL void bitnet_t3_gemm_avx2(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                                          size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1);

// ternary_avx512.c: t2 by AVX512-VNNI (512-bit GEMV, 256-bit GEMM), t3 by VBMI + VNNI (512-bit).
TERNARY_INTERNAL void bitnet_t2_gemv_zmm(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                                         size_t r0, size_t r1, const bitnet_gemv_prepared *p);
TERNARY_INTERNAL void bitnet_t2_gemm_vnni(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                                          size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1);
/// The activations of np whole 256-column block pairs in the 512-bit t2 GEMV's order.
TERNARY_INTERNAL void bitnet_t2_zmm_reorder(const int8_t *x, size_t np, int8_t *xp);
TERNARY_INTERNAL void bitnet_t3_gemv_vbmi(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                                          size_t r0, size_t r1, const bitnet_gemv_prepared *p);
TERNARY_INTERNAL void bitnet_t3_gemm_vbmi(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                                          size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1);
#endif

#endif
