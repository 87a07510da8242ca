// Ternary kernels: the path selection and the public GEMV/GEMM entry points that dispatch on it (see bitnet_ternary.h
// for the layouts). The kernels are in ternary_layout.c (packing, t2 -> t3), ternary_ref.c (portable), ternary_avx2.c
// and ternary_avx512.c; ternary_internal.h is what they share.
#include "cpu_features.h"
#include "ternary_internal.h"

// MARK: path

// The path a CPU with `features` takes.
static int ternary_level(unsigned features) {
    if (!bitnet_cpu_has(features, BITNET_CPU_AVX2 | BITNET_CPU_FMA)) return BITNET_TERNARY_PORTABLE;
    if (bitnet_cpu_has(features, BITNET_CPU_AVX512VNNI | BITNET_CPU_AVX512VL)) return BITNET_TERNARY_AVX512VNNI;
    return BITNET_TERNARY_AVX2;
}

static int ternary_isa_selected = -1;

int bitnet_ternary_isa(void) { return bitnet_isa_selected(&ternary_isa_selected, ternary_level); }

int bitnet_ternary_set_isa(int isa) { return bitnet_isa_select(&ternary_isa_selected, ternary_level, isa); }

const char *bitnet_ternary_isa_name(void) {
    switch (bitnet_ternary_isa()) {
    case BITNET_TERNARY_AVX512VNNI: return "avx512vnni";
    case BITNET_TERNARY_AVX2: return "avx2";
    default: return "portable";
    }
}

// The t3 kernels of the AVX512VNNI path need VBMI too (else they take the AVX2 ones).
static int t3_cpu_vbmi(void) { return bitnet_cpu_has(bitnet_cpu()->cpu, BITNET_CPU_AVX512VBMI | BITNET_CPU_AVX512BW); }

int bitnet_t3_is_fast(void) {
#ifdef BITNET_X86
    return bitnet_ternary_isa() == BITNET_TERNARY_AVX512VNNI && t3_cpu_vbmi();
#else
    return 0;
#endif
}

// MARK: activations

// The prepared activations of one GEMV (bitnet_gemv_prepared) live in the preparing thread's storage: the 16 KiB
// holds the widest reordered t2 row the AVX-512 kernel takes, and a t3 tail block.
#define PREP_MAX_COLS 16384
_Static_assert(PREP_MAX_COLS >= T2_ZMM_MAX_COLS, "the prepared buffer holds a reordered row of the widest AVX-512 t2 GEMV");
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

// MARK: 2-bit dispatch

static void t2_gemv(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                    size_t r0, size_t r1, const bitnet_gemv_prepared *p) {
    if (r0 >= r1) return;
#ifdef BITNET_X86
    switch (bitnet_ternary_isa()) {
    case BITNET_TERNARY_AVX512VNNI: bitnet_t2_gemv_zmm(w, row_stride, cols, x, y, r0, r1, p); return;
    case BITNET_TERNARY_AVX2: bitnet_t2_gemv_avx2(w, row_stride, cols, x, y, r0, r1, p); return;
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
    if (bitnet_ternary_isa() == BITNET_TERNARY_AVX512VNNI && cols >= 256 && cols <= T2_ZMM_MAX_COLS) {
        bitnet_t2_zmm_reorder(x, cols / 256, prep_tls.buf);
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
    case BITNET_TERNARY_AVX512VNNI: bitnet_t2_gemm_vnni(w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1); return;
    case BITNET_TERNARY_AVX2: bitnet_t2_gemm_avx2(w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1); return;
    default: break;
    }
#endif
    bitnet_t2_gemm_ref(w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1);
}

void bitnet_t2_gemv_rows(const void *args, size_t r0, size_t r1) {
    const bitnet_t2_gemv_args *a = (const bitnet_t2_gemv_args *)args;
    t2_gemv(a->w, a->row_stride, a->cols, a->x, a->y, r0, r1, prepared_for(a->prepared, a->x, a->cols));
}

// MARK: base-3 dispatch

static void t3_gemv(const uint8_t *w, size_t row_stride, size_t cols, const int8_t *x, int32_t *y,
                    size_t r0, size_t r1, const bitnet_gemv_prepared *p) {
    if (r0 >= r1) return;
#ifdef BITNET_X86
    switch (bitnet_ternary_isa()) {
    case BITNET_TERNARY_AVX512VNNI:
        if (t3_cpu_vbmi()) { bitnet_t3_gemv_vbmi(w, row_stride, cols, x, y, r0, r1, p); return; }
        bitnet_t3_gemv_avx2(w, row_stride, cols, x, y, r0, r1, p);
        return;
    case BITNET_TERNARY_AVX2: bitnet_t3_gemv_avx2(w, row_stride, cols, x, y, r0, r1, p); return;
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
        if (t3_cpu_vbmi()) { bitnet_t3_gemm_vbmi(w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1); return; }
        bitnet_t3_gemm_avx2(w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1);
        return;
    case BITNET_TERNARY_AVX2: bitnet_t3_gemm_avx2(w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1); return;
    default: break;
    }
#endif
    bitnet_t3_gemm_ref(w, row_stride, cols, x, ldx, tokens, y, ldy, r0, r1);
}

void bitnet_t3_gemv_rows(const void *args, size_t r0, size_t r1) {
    const bitnet_t2_gemv_args *a = (const bitnet_t2_gemv_args *)args;
    t3_gemv(a->w, a->row_stride, a->cols, a->x, a->y, r0, r1, prepared_for(a->prepared, a->x, a->cols));
}
