// Portable ternary kernels (the _ref entry points of bitnet_ternary.h): plain C, element by element from the packed
// bytes. The SIMD paths give identical results; these are their reference and the path of CPUs without AVX2.
#include "ternary_internal.h"

// MARK: 2-bit

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

// MARK: base-3

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
