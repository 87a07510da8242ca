// Packed ternary weights and exact int8 x ternary GEMV/GEMM (see bitnet_ternary.h for the layouts).
//
// AVX2 trick: weights are stored as u = w + 1 in {0, 1, 2}, which is exactly the unsigned operand that
// _mm256_maddubs_epi16 wants. sum_j u_j x_j - sum_j x_j = sum_j w_j x_j. Each int16 lane of maddubs holds
// two products of magnitude <= 2 * 128, so no saturation; four segments per block sum to <= 2048 per lane,
// then _mm256_madd_epi16 with ones widens to int32. Padded weights (u = 1) meet zero-padded activations.
// Where AVX512-VNNI (with VL) is present, vpdpbusd on 256-bit vectors does the u8 x s8 dot straight into int32.
#include "isa_env.h"
#include "bitnet_ternary.h"
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BITNET_X86 1
#endif

static int cpu_ternary_isa(void) {
#ifdef BITNET_X86
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return BITNET_TERNARY_PORTABLE;
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl")) return BITNET_TERNARY_AVX512VNNI;
    return BITNET_TERNARY_AVX2;
#else
    return BITNET_TERNARY_PORTABLE;
#endif
}

static int ternary_isa_cached = -1;

int bitnet_ternary_isa(void) {
    int isa = __atomic_load_n(&ternary_isa_cached, __ATOMIC_RELAXED);
    if (isa < 0) {
        isa = bitnet_isa_env_cap(cpu_ternary_isa(), BITNET_TERNARY_AVX2);
        __atomic_store_n(&ternary_isa_cached, isa, __ATOMIC_RELAXED);
    }
    return isa;
}

int bitnet_ternary_set_isa(int isa) {
    int cpu = cpu_ternary_isa();
    if (isa > cpu) isa = cpu;
    if (isa < BITNET_TERNARY_PORTABLE) isa = BITNET_TERNARY_PORTABLE;
    __atomic_store_n(&ternary_isa_cached, isa, __ATOMIC_RELAXED);
    return isa;
}

const char *bitnet_ternary_isa_name(void) {
    switch (bitnet_ternary_isa()) {
    case BITNET_TERNARY_AVX512VNNI: return "avx512vnni";
    case BITNET_TERNARY_AVX2: return "avx2";
    default: return "portable";
    }
}

// MARK: 2-bit packing

size_t bitnet_t2_row_stride(size_t cols) { return (cols + BITNET_T2_BLOCK - 1) / BITNET_T2_BLOCK * 32; }

// Byte offset and shift of element j inside a packed row.
static inline size_t t2_byte(size_t j) { return (j / 128) * 32 + (j % 32); }
static inline unsigned t2_shift(size_t j) { return 6 - 2 * (unsigned)((j % 128) / 32); }

/// Field value u = code + 1 of one code; codes outside {-1, 0, 1} count as bad and are stored as 0 (u = 1).
static inline unsigned t2_field(int v, size_t *bad) {
    if (v < -1 || v > 1) { (*bad)++; return 1; }
    return (unsigned)(v + 1);
}

size_t bitnet_t2_pack(const int8_t *codes, size_t rows, size_t cols, uint8_t *dst) {
    size_t stride = bitnet_t2_row_stride(cols), bad = 0, full = cols / 128;
    for (size_t r = 0; r < rows; r++) {
        const int8_t *c = codes + r * cols;
        uint8_t *d = dst + r * stride;
        for (size_t k = 0; k < full; k++, c += 128, d += 32)   // whole blocks: each byte written once
            for (size_t j = 0; j < 32; j++)
                d[j] = (uint8_t)(t2_field(c[j], &bad) << 6 | t2_field(c[j + 32], &bad) << 4 |
                                 t2_field(c[j + 64], &bad) << 2 | t2_field(c[j + 96], &bad));
        if (cols % 128) {   // the tail block: padding fields = 1, i.e. code 0
            memset(d, 0x55, 32);
            for (size_t j = 0; j < cols % 128; j++) {
                unsigned s = t2_shift(j);
                d[j % 32] = (uint8_t)((d[j % 32] & ~(3u << s)) | t2_field(c[j], &bad) << s);
            }
        }
    }
    return bad;
}

size_t bitnet_t2_unpack(const uint8_t *src, size_t rows, size_t cols, int8_t *codes) {
    size_t stride = bitnet_t2_row_stride(cols), bad = 0;
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *s = src + r * stride;
        int8_t *c = codes + r * cols;
        for (size_t j = 0; j < cols; j++) {
            unsigned u = (s[t2_byte(j)] >> t2_shift(j)) & 3u;
            if (u == 3) { bad++; u = 1; }
            c[j] = (int8_t)((int)u - 1);
        }
    }
    return bad;
}

// MARK: base-3 packing

size_t bitnet_t3_row_stride(size_t cols) { return (cols + BITNET_T3_BLOCK - 1) / BITNET_T3_BLOCK * 64; }

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

// Whether a packer writes byte b (its greedy digits give it back).
static inline int t3_is_packed(unsigned b) {
    unsigned u[5];
    t3_digits(b, u);
    unsigned v = 0;
    for (unsigned i = 0; i < 5; i++) v += u[i] * t3_place[i];
    return v == b;
}

// Element e (0..319) of a block: byte e % 64, digit e / 64.
size_t bitnet_t3_pack(const int8_t *codes, size_t rows, size_t cols, uint8_t *dst) {
    size_t stride = bitnet_t3_row_stride(cols), bad = 0;
    for (size_t r = 0; r < rows; r++) {
        const int8_t *c = codes + r * cols;
        uint8_t *d = dst + r * stride;
        for (size_t b = 0; b < stride; b++) {
            unsigned v = 0;
            for (size_t i = 0; i < 5; i++) {
                size_t j = (b / 64) * BITNET_T3_BLOCK + i * 64 + b % 64;
                int t = j < cols ? c[j] : 0;
                if (t < -1 || t > 1) { bad++; t = 0; }
                v += (unsigned)(t + 1) * t3_place[i];
            }
            d[b] = (uint8_t)v;
        }
    }
    return bad;
}

// Invalid fields (value 3) of a 128-weight t2 block at element `from` and after.
static size_t t2_invalid_fields_from(const uint8_t *block, size_t from) {
    size_t bad = 0;
    for (size_t e = from; e < 128; e++) bad += (block[e % 32] >> (6 - 2 * (e / 32)) & 3u) == 3;
    return bad;
}

// The digit u + 1 of each code of a 640-weight segment (u = 3, invalid, counted and taken as code 0), then the t3
// bytes. Branch-free loops over whole t2 blocks, which the compiler vectorizes (as a clone per ISA below); columns
// past the row's end are code 0.
static inline __attribute__((always_inline)) size_t t2_to_t3_body(const uint8_t *src, size_t cols, uint8_t *dst, size_t r0, size_t r1) {
    enum { SEG = 640 };   // lcm of the t2 block (128) and the t3 block (320)
    const size_t s2 = bitnet_t2_row_stride(cols), s3 = bitnet_t3_row_stride(cols), end = s3 / 64 * BITNET_T3_BLOCK;
    size_t bad = 0;
    uint8_t u[SEG];
    for (size_t r = r0; r < r1; r++) {
        const uint8_t *s = src + r * s2;
        uint8_t *d = dst + r * s3;
        for (size_t j0 = 0; j0 < end; j0 += SEG) {
            const size_t n = cols - j0 < SEG ? cols - j0 : SEG, blocks = (n + 127) / 128;
            for (size_t b = 0; b < blocks; b++) {
                const uint8_t *sb = s + (j0 / 128 + b) * 32;
                uint8_t *ub = u + b * 128;
                for (size_t f = 0; f < 4; f++)
                    for (size_t j = 0; j < 32; j++) {
                        const uint8_t v = (uint8_t)((sb[j] >> (6 - 2 * f)) & 3u);
                        bad += v == 3;
                        ub[f * 32 + j] = v == 3 ? 1 : v;
                    }
            }
            // Fields past the row's end are padding: not counted, code 0.
            if (n % 128) bad -= t2_invalid_fields_from(s + (j0 / 128 + blocks - 1) * 32, n % 128);
            memset(u + n, 1, SEG - n);
            // Byte p of a block = sum_i (code(64 i + p) + 1) * place_i, as bitnet_t3_pack.
            for (size_t k = 0; k < SEG / BITNET_T3_BLOCK && j0 + k * BITNET_T3_BLOCK < end; k++) {
                const uint8_t *uk = u + k * BITNET_T3_BLOCK;
                uint8_t *dk = d + (j0 / BITNET_T3_BLOCK + k) * 64;
                for (size_t p = 0; p < 64; p++)
                    dk[p] = (uint8_t)(uk[p] + 3 * uk[64 + p] + 9 * uk[128 + p] + 28 * uk[192 + p] + 84 * uk[256 + p]);
            }
        }
    }
    return bad;
}

static size_t t2_to_t3_portable(const uint8_t *src, size_t cols, uint8_t *dst, size_t r0, size_t r1) {
    return t2_to_t3_body(src, cols, dst, r0, r1);
}

#ifdef BITNET_X86
__attribute__((target("avx2,fma")))
static size_t t2_to_t3_avx2(const uint8_t *src, size_t cols, uint8_t *dst, size_t r0, size_t r1) {
    return t2_to_t3_body(src, cols, dst, r0, r1);
}
#endif

size_t bitnet_t2_to_t3(const uint8_t *src, size_t cols, uint8_t *dst, size_t r0, size_t r1) {
#ifdef BITNET_X86
    if (bitnet_ternary_isa() != BITNET_TERNARY_PORTABLE) return t2_to_t3_avx2(src, cols, dst, r0, r1);
#endif
    return t2_to_t3_portable(src, cols, dst, r0, r1);
}

void bitnet_t2_to_t3_rows(const void *args, size_t r0, size_t r1) {
    const bitnet_t2_to_t3_args *a = (const bitnet_t2_to_t3_args *)args;
    const size_t bad = bitnet_t2_to_t3(a->src, a->cols, a->dst, r0, r1);
    if (bad) __atomic_fetch_add(a->bad, bad, __ATOMIC_RELAXED);
}

size_t bitnet_t3_unpack(const uint8_t *src, size_t rows, size_t cols, int8_t *codes) {
    size_t stride = bitnet_t3_row_stride(cols), bad = 0;
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *s = src + r * stride;
        int8_t *c = codes + r * cols;
        for (size_t b = 0; b < stride; b++) {
            unsigned u[5];
            t3_digits(s[b], u);
            if (!t3_is_packed(s[b])) {
                bad++;
                for (unsigned i = 0; i < 5; i++) u[i] = 1;
            }
            for (size_t i = 0; i < 5; i++) {
                size_t j = (b / 64) * BITNET_T3_BLOCK + i * 64 + b % 64;
                if (j < cols) c[j] = (int8_t)((int)u[i] - 1);
            }
        }
    }
    return bad;
}

// MARK: portable kernels

static int32_t t2_dot_ref(const uint8_t *row, size_t cols, const int8_t *x) {
    int32_t acc = 0;
    size_t j0 = 0;
    for (; j0 + 128 <= cols; j0 += 128, row += 32) {   // full blocks: byte j feeds elements j, j+32, j+64, j+96
        for (size_t j = 0; j < 32; j++) {
            unsigned b = row[j];
            acc += ((int32_t)(b >> 6) - 1) * x[j0 + j] + ((int32_t)((b >> 4) & 3u) - 1) * x[j0 + j + 32]
                 + ((int32_t)((b >> 2) & 3u) - 1) * x[j0 + j + 64] + ((int32_t)(b & 3u) - 1) * x[j0 + j + 96];
        }
    }
    for (size_t j = 0; j0 + j < cols; j++) {
        int w = (int)((row[t2_byte(j)] >> t2_shift(j)) & 3u) - 1;
        acc += w * (int32_t)x[j0 + j];
    }
    return acc;
}

void bitnet_t2_gemv_ref(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                        size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) y[r] = t2_dot_ref(w + r * row_stride, cols, x);
}

void bitnet_t2_gemm_ref(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                        size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1) {
    for (size_t t = 0; t < tokens; t++)
        for (size_t r = r0; r < r1; r++) y[t * ldy + r] = t2_dot_ref(w + r * row_stride, cols, x + t * ldx);
}

#ifdef BITNET_X86
// sum of x by vpsadbw: x ^ 0x80 = x + 128 as an unsigned byte, summed 8 bytes at a time into 64-bit lanes.
__attribute__((target("avx2")))
static int32_t sum_i8_avx2(const int8_t *x, size_t n) {
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

static int32_t sum_i8(const int8_t *x, size_t n) {
#ifdef BITNET_X86
    if (bitnet_ternary_isa() != BITNET_TERNARY_PORTABLE) return sum_i8_avx2(x, n);
#endif
    int32_t s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s;
}

// The prepared activations of one GEMV (bitnet_gemv_prepared) live in the preparing thread's storage: the 16 KiB
// holds the widest reordered t2 row the AVX-512 kernel takes, and a t3 tail block.
#define PREP_MAX_COLS 16384
static _Thread_local struct { bitnet_gemv_prepared p; int8_t buf[PREP_MAX_COLS] __attribute__((aligned(64))); } prep_tls;

// p when it was prepared for this x and cols, else NULL (the kernel then prepares for itself).
static inline const bitnet_gemv_prepared *prepared_for(const bitnet_gemv_prepared *p, const int8_t *x, size_t cols) {
    return p && p->x == x && p->cols == cols ? p : NULL;
}

static bitnet_gemv_prepared *prep_begin(const int8_t *x, size_t cols) {
    bitnet_gemv_prepared *p = &prep_tls.p;
    p->x = x;
    p->cols = cols;
    p->xsum = sum_i8(x, cols);
    p->xr = NULL;
    return p;
}

#ifdef BITNET_X86
// MARK: AVX2 kernels

__attribute__((target("avx2,fma")))
static inline int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

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

// Software prefetch for the GEMV weight streams, at two distances. Decoding reads every packed row exactly once
// from DRAM, and with the products interleaved the hardware prefetchers keep too few lines in flight: on the
// 2-core Xeon VM, loads alone in this access pattern stream 27 GB/s, the same loads with 4 vpdpbusd per 64 bytes
// 22 GB/s with one T0 prefetch 4 KB ahead, and 26 GB/s with a T0 prefetch ~2 KB ahead (the lines the loop will
// load next, into L1) plus a T2 prefetch ~32 KB ahead (early DRAM requests into the outer caches, which do not
// hold a fill buffer for long). Each is a whole number of 4-row groups ahead, at the same column: the rows of a
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

// Four rows at once sharing the activation loads (then two, then one); one prefetch per row per 64 bytes.
__attribute__((target("avx2,fma")))
static void t2_gemv_avx2(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
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

// The AVX2 GEMM decodes rows into digit bytes and meets 4 tokens per pass: digits_gemm_simd (with the t3 kernels
// below). The row-by-row GEMM of 2-bit blocks in k-chunks it replaced re-read its partial outputs every 256 columns:
// 2B4T's 128-token prompt went from 31.5 to 57.2 tok/s (BITNET_ISA=avx2, in one process against t3 each time).
static void t2_gemm_digits_avx2(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                                size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1);

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
    if (r < r1) t2_gemv_avx2(w, row_stride, cols, x, y, r, r1, p);
}

// 512-bit GEMV: one 64-byte load holds two consecutive blocks (256 weights), so every shift/mask/vpdpbusd does
// twice the work of the 256-bit kernel; the activations are first copied into the matching order (per block pair m:
// xp[256 m + 64 seg + 32 h + j] = x[128 (2m + h) + 32 seg + j]). In L2 on the AVX-512 Xeon VM: 31 GB/s against 25
// for t2_gemv_vnni on 2560x2560 (one thread, one run). Rows whose block count is odd, or with a tail, finish their
// last columns with t2_gemv_vnni; rows longer than T2_ZMM_MAX_COLS use it for everything.
#define T2_ZMM_MAX_COLS 16384
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
static void t2_zmm_reorder(const int8_t *x, size_t np, int8_t *xp) {
    for (size_t m = 0; m < np; m++)
        for (size_t seg = 0; seg < 4; seg++) {
            memcpy(xp + m * 256 + seg * 64, x + 2 * m * 128 + seg * 32, 32);
            memcpy(xp + m * 256 + seg * 64 + 32, x + (2 * m + 1) * 128 + seg * 32, 32);
        }
}

__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))
static void t2_gemv_zmm(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                        size_t r0, size_t r1, const bitnet_gemv_prepared *prep) {
    const size_t np = cols / 256, rest = cols - np * 256;
    if (np == 0 || cols > T2_ZMM_MAX_COLS) { t2_gemv_vnni(w, row_stride, cols, x, y, r0, r1, prep); return; }
    // The 256-column blocks in the kernel's order: the prepared copy, or this range's own.
    int8_t own[T2_ZMM_MAX_COLS] __attribute__((aligned(64)));
    const int8_t *xp = prep && prep->xr ? prep->xr : own;
    if (xp == own) t2_zmm_reorder(x, np, own);
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

// Activations of every token in rows of whole blocks (`block` weights, zero tail), with their sums: the GEMMs then
// read full blocks only, and sum_j (code_j) * x_j - sum_j x_j = sum_j w_j * x_j.
typedef struct { const int8_t *x; int32_t *sx; size_t ld; } t2_padded;

// When cols is a whole number of blocks (every layer of 2B4T) the activations are used in place: only the sums
// are computed, with no copy (a copy per call and thread chunk would page-fault a fresh buffer each time).
static int t2_pad_tokens(const int8_t *x, size_t ldx, size_t cols, size_t tokens, size_t nblk, size_t block,
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
#endif

// MARK: dispatch

static void t2_gemv(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                    size_t r0, size_t r1, const bitnet_gemv_prepared *p) {
    if (r0 >= r1) return;
#ifdef BITNET_X86
    switch (bitnet_ternary_isa()) {
    case BITNET_TERNARY_AVX512VNNI: t2_gemv_zmm(w, row_stride, cols, x, y, r0, r1, p); return;
    case BITNET_TERNARY_AVX2: t2_gemv_avx2(w, row_stride, cols, x, y, r0, r1, p); return;
    default: break;
    }
#endif
    bitnet_t2_gemv_ref(w, row_stride, cols, x, y, r0, r1);
}

void bitnet_t2_gemv(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                    size_t r0, size_t r1) {
    t2_gemv(w, row_stride, cols, x, y, r0, r1, NULL);
}

const bitnet_gemv_prepared *bitnet_t2_gemv_prepare(const int8_t *x, size_t cols) {
    bitnet_gemv_prepared *p = prep_begin(x, cols);
#ifdef BITNET_X86
    _Static_assert(PREP_MAX_COLS >= T2_ZMM_MAX_COLS, "the prepared buffer holds a reordered row of the widest AVX-512 t2 GEMV");
    if (bitnet_ternary_isa() == BITNET_TERNARY_AVX512VNNI && cols >= 256 && cols <= T2_ZMM_MAX_COLS) {
        t2_zmm_reorder(x, cols / 256, prep_tls.buf);
        p->xr = prep_tls.buf;
    }
#endif
    return p;
}

void bitnet_t2_gemm(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                    size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1) {
    if (r0 >= r1 || tokens == 0) return;
#ifdef BITNET_X86
    switch (bitnet_ternary_isa()) {
    case BITNET_TERNARY_AVX512VNNI: t2_gemm_vnni(w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1); return;
    case BITNET_TERNARY_AVX2: t2_gemm_digits_avx2(w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1); return;
    default: break;
    }
#endif
    bitnet_t2_gemm_ref(w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1);
}

void bitnet_t2_gemv_rows(const void *args, size_t r0, size_t r1) {
    const bitnet_t2_gemv_args *a = (const bitnet_t2_gemv_args *)args;
    t2_gemv(a->w, a->row_stride, a->cols, a->x, a->y, r0, r1, prepared_for(a->prepared, a->x, a->cols));
}

// MARK: base-3 kernels

static int32_t t3_dot_ref(const uint8_t *row, size_t cols, const int8_t *x) {
    int32_t acc = 0;
    for (size_t j0 = 0; j0 < cols; j0 += BITNET_T3_BLOCK, row += 64)
        for (size_t p = 0; p < 64; p++) {
            unsigned u[5];
            t3_digits(row[p], u);
            for (size_t i = 0; i < 5 && j0 + i * 64 + p < cols; i++) acc += ((int32_t)u[i] - 1) * x[j0 + i * 64 + p];
        }
    return acc;
}

void bitnet_t3_gemv_ref(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                        size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) y[r] = t3_dot_ref(w + r * row_stride, cols, x);
}

void bitnet_t3_gemm_ref(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                        size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1) {
    for (size_t t = 0; t < tokens; t++)
        for (size_t r = r0; r < r1; r++) y[t * ldy + r] = t3_dot_ref(w + r * row_stride, cols, x + t * ldx);
}

#ifdef BITNET_X86
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

// Activations of a row: whole blocks in place, the tail block from a zero-padded copy (padding weights are code 0
// meeting zero activations).
// The sum and the padded tail come prepared (bitnet_t3_gemv_prepare) or are made here, in `own`.
typedef struct {
    const int8_t *x, *tail;
    size_t nfull, nblk;
    int32_t sx;
    int8_t own[BITNET_T3_BLOCK] __attribute__((aligned(64)));
} t3_acts;
#endif

static void t3_pad_tail(const int8_t *x, size_t cols, int8_t *tail) {
    const size_t nfull = cols / BITNET_T3_BLOCK;
    memset(tail, 0, BITNET_T3_BLOCK);
    memcpy(tail, x + nfull * BITNET_T3_BLOCK, cols - nfull * BITNET_T3_BLOCK);
}

#ifdef BITNET_X86
static void t3_acts_init(t3_acts *a, const int8_t *x, size_t cols, const bitnet_gemv_prepared *p) {
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

// One row at a time (the fallback for CPUs without AVX512-VBMI); one prefetch per 64 bytes.
__attribute__((target("avx2,fma")))
static void t3_gemv_avx2(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
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

// MARK: AVX512-VBMI + VNNI, 320 weights per 64-byte load. Every digit is one 64-entry byte table lookup (vpermb,
// which reads the low 6 bits of each index byte): u_3, u_4 and 28 u_3 + 84 u_4 by i = b >> 2, then u_0..u_2 by
// s = b - 28 u_3 - 84 u_4 (< 32 for every byte). vpdpbusd sums u8 digit x s8 activation into int32 lanes. Per 64
// bytes: a shift, a subtraction, six lookups, five products. (The layout with places 27 and 81 needed b mod 81 and a
// 128-entry table: 17 vector uops against 13 here, 1.36x slower in L2.)

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

static int t3_cpu_vbmi(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bw");
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

// Rows per pass of the GEMV. Three: in the model, in one process (160 interleaved decode steps each), two rows decoded
// 0.99x and four 0.97x as fast; with the earlier layout four rows were also slower (0.99x, 4 of 4 A/B runs).
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
static void t3_gemv_vbmi(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
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

// GEMM of either layout (t3 on every SIMD path, t2 on AVX2): rows are decoded 4 at a time, once per block of tokens,
// into their digit bytes in column order (in L1), which then meet 4 tokens per pass (4 x 4 register block). Token
// blocks keep their activations (~512 KB) in L2. Missing rows of a partial group alias its first row.
typedef void (*digits_decode_fn)(const uint8_t *row, size_t nblk, uint8_t *u);
typedef void (*digits_dot4_fn)(const uint8_t *u, size_t n, const int8_t *const *xs, int32_t out[4][4]);

typedef void (*ternary_gemm_fn)(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                                size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1);
// `block` weights per packed block (t3: 320, t2: 128); `ref` serves a call whose buffers cannot be allocated.
static void digits_gemm_simd(digits_decode_fn decode, digits_dot4_fn dot4, size_t block, ternary_gemm_fn ref, const uint8_t *w,
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

static void t2_gemm_digits_avx2(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                                size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1) {
    digits_gemm_simd(t2_decode_row_avx2, t3_dot4x4_avx2, 128, bitnet_t2_gemm_ref, w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1);
}
#endif

int bitnet_t3_is_fast(void) {
#ifdef BITNET_X86
    return bitnet_ternary_isa() == BITNET_TERNARY_AVX512VNNI && t3_cpu_vbmi();
#else
    return 0;
#endif
}

static void t3_gemv(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                    size_t r0, size_t r1, const bitnet_gemv_prepared *p) {
    if (r0 >= r1) return;
#ifdef BITNET_X86
    switch (bitnet_ternary_isa()) {
    case BITNET_TERNARY_AVX512VNNI:
        if (t3_cpu_vbmi()) { t3_gemv_vbmi(w, row_stride, cols, x, y, r0, r1, p); return; }
        t3_gemv_avx2(w, row_stride, cols, x, y, r0, r1, p);
        return;
    case BITNET_TERNARY_AVX2: t3_gemv_avx2(w, row_stride, cols, x, y, r0, r1, p); return;
    default: break;
    }
#endif
    bitnet_t3_gemv_ref(w, row_stride, cols, x, y, r0, r1);
}

void bitnet_t3_gemv(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                    size_t r0, size_t r1) {
    t3_gemv(w, row_stride, cols, x, y, r0, r1, NULL);
}

const bitnet_gemv_prepared *bitnet_t3_gemv_prepare(const int8_t *x, size_t cols) {
    bitnet_gemv_prepared *p = prep_begin(x, cols);
    t3_pad_tail(x, cols, prep_tls.buf);
    p->xr = prep_tls.buf;
    return p;
}

void bitnet_t3_gemm(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, size_t ldx,
                    size_t tokens, int32_t *y, size_t ldy, size_t r0, size_t r1) {
    if (r0 >= r1 || tokens == 0) return;
#ifdef BITNET_X86
    switch (bitnet_ternary_isa()) {
    case BITNET_TERNARY_AVX512VNNI:
        if (t3_cpu_vbmi()) { digits_gemm_simd(t3_decode_row_vbmi, t3_dot4x4_vnni, BITNET_T3_BLOCK, bitnet_t3_gemm_ref, w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1); return; }
        digits_gemm_simd(t3_decode_row_avx2, t3_dot4x4_avx2, BITNET_T3_BLOCK, bitnet_t3_gemm_ref, w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1);
        return;
    case BITNET_TERNARY_AVX2:
        digits_gemm_simd(t3_decode_row_avx2, t3_dot4x4_avx2, BITNET_T3_BLOCK, bitnet_t3_gemm_ref, w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1);
        return;
    default: break;
    }
#endif
    bitnet_t3_gemm_ref(w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1);
}

void bitnet_t3_gemv_rows(const void *args, size_t r0, size_t r1) {
    const bitnet_t2_gemv_args *a = (const bitnet_t2_gemv_args *)args;
    t3_gemv(a->w, a->row_stride, a->cols, a->x, a->y, r0, r1, prepared_for(a->prepared, a->x, a->cols));
}
