// Packed ternary layouts (see bitnet_ternary.h): 2-bit (t2) and base-3 (t3) packing and unpacking, the t2 -> t3
// conversion, and what a t3 byte holds.
#include "ternary_internal.h"

// MARK: 2-bit packing

size_t bitnet_t2_row_stride(size_t cols) { return (cols + BITNET_T2_BLOCK - 1) / BITNET_T2_BLOCK * 32; }

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
