// Decode attention over a KV cache: the query heads that share one KV head attend over that head's cached rows,
// stored contiguously per (layer, KV head) in f32, f16, or int8/int4 codes with one scale per position. Positions
// can be split into parts (flash-decoding): each part keeps an online softmax (running max m, sum l, unnormalized
// output o), and a merge rescales the parts into the result. An AVX-512 or AVX2/FMA/F16C path is picked at run time;
// the portable path computes the same formula (results agree within float rounding).
#ifndef BITNET_ATTENTION_H
#define BITNET_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Storage of cached rows: f32, f16 (IEEE half), q8 (int8 codes), q4 (two's-complement nibbles, element 2i in the
/// low 4 bits of byte i). q8/q4 rows are dequantized as code * scale[position].
typedef enum { BITNET_KV_F32 = 0, BITNET_KV_F16 = 1, BITNET_KV_Q8 = 2, BITNET_KV_Q4 = 3 } bitnet_kv_format;

/// One KV head's attention problem: `group` queries q [group, head_dim] over rows at keys/values + t * row_bytes.
typedef struct {
    int format;                     // bitnet_kv_format
    size_t group, head_dim, row_bytes;
    float scale;                    // score scale, 1/sqrt(head_dim)
    const float *q;
    const void *keys, *values;
    const float *key_scales, *value_scales;   // per position (q8, q4); NULL otherwise
} bitnet_attend_args;

/// Online softmax over positions [t0, t1) (t1 > t0): for each query j, m[j] = max score, l[j] = sum exp(s - m),
/// o[j * head_dim ...] = sum exp(s - m) * v (not yet divided by l).
void bitnet_attend_part(const bitnet_attend_args *a, size_t t0, size_t t1, float *m, float *l, float *o);

/// Merges `parts` results of bitnet_attend_part (part p at m + p * group, l + p * group, o + p * group * head_dim)
/// into out [group, head_dim]: out = sum_p e^(m_p - M) o_p / sum_p e^(m_p - M) l_p. `out` may equal `o` when parts is 1.
void bitnet_attend_merge(size_t parts, size_t group, size_t head_dim, const float *m, const float *l, const float *o, float *out);

/// Name of the path bitnet_attend_part takes: "avx512" (AVX-512 F/BW/VL, head_dim a multiple of 16; other head sizes
/// take the AVX2 path), "avx2" (AVX2 + FMA + F16C) or "portable". BITNET_ISA=avx2 / portable caps it.
const char *bitnet_attention_isa_name(void);

/// Selects the path for tests: 2 = AVX-512, 1 = AVX2, 0 = portable, capped at what the CPU has. Returns the path set.
int bitnet_attention_set_isa(int level);

#ifdef __cplusplus
}
#endif
#endif
