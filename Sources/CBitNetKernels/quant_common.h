// Shared by the dense (dense.c) and block-quantized (blockquant.c) kernels, below both: the path they take and the
// f16 <-> f32 conversions (quant_common.c). Neither of the two files calls the other.
#ifndef BITNET_QUANT_COMMON_H
#define BITNET_QUANT_COMMON_H

#include "bitnet_dense.h"
#include <math.h>
#include <string.h>

// The scalar conversions (bitnet_f16_to_f32_scalar, bitnet_f32_to_f16_scalar), inline for the loops that convert
// one value at a time.
static inline float f16_to_f32_inline(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
    if (e == 0x1f) {
        bits = sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0);   // NaNs come out quiet (as F16C does)
    } else if (e == 0) {
        float f = (float)m * 0x1p-24f;   // subnormal (or zero): exact
        return sign ? -f : f;
    } else {
        bits = sign | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t f32_to_f16_inline(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((ax >> 13) & 0x3ffu);   // NaN, quieted
    if (ax >= 0x477ff000u) return sign | 0x7c00u;                                      // >= 65520 (or inf) -> inf
    if (ax < 0x38800000u) {                                                             // below 2^-14: subnormal
        float a;
        memcpy(&a, &ax, 4);
        return sign | (uint16_t)nearbyintf(a * 0x1p24f);   // exact scaling, ties to even; 1024 encodes 2^-14
    }
    uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u);           // round to nearest even at bit 13
    return sign | (uint16_t)((r >> 13) - (112u << 10));
}

#endif
