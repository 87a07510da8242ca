// Private interface between the GEMM driver (sgemm.c) and its per-ISA kernels.
#ifndef BITNET_SGEMM_INTERNAL_H
#define BITNET_SGEMM_INTERNAL_H

#include <stddef.h>

// How a micro-tile is written back, applied after the kc-long register accumulation `acc`:
//   GEMM_STORE_SET:  C = alpha*acc            (first K block, beta == 0: C is never read)
//   GEMM_STORE_BETA: C = beta*C + alpha*acc   (first K block, beta != 0)
//   GEMM_STORE_ADD:  C = C + alpha*acc        (later K blocks)
enum { GEMM_STORE_SET = 0, GEMM_STORE_BETA = 1, GEMM_STORE_ADD = 2 };

// One instruction-set implementation. Packed layouts (BLIS style):
//   A~: ceil(mc/mr) panels, each kc x mr (element (i, p) at p*mr + i), rows past mc zero-filled;
//   B~: ceil(nc/nr) panels, each kc x nr (element (p, j) at p*nr + j), columns past nc zero-filled.
// Packing writes exactly these panels and nothing else, so threads may fill disjoint panel ranges
// of one shared buffer.
typedef struct {
    int mr, nr;
    size_t mc, kc, nc;  // cache-block maxima (mc a multiple of mr, nc of nr)
    // Packs op(A)[0:mc, 0:kc] where op(A)[i][p] = trans ? a[p*lda + i] : a[i*lda + p].
    void (*pack_a)(int trans, size_t mc, size_t kc, const float *a, size_t lda, float *dst);
    // Packs op(B)[0:kc, 0:nc] where op(B)[p][j] = trans ? b[j*ldb + p] : b[p*ldb + j].
    void (*pack_b)(int trans, size_t kc, size_t nc, const float *b, size_t ldb, float *dst);
    // C[0:mc, 0:nc] <- store(mode) of A~ * B~ over kc.
    void (*macro)(size_t mc, size_t nc, size_t kc, const float *pa, const float *pb, float *c,
                  size_t ldc, float alpha, float beta, int mode);
    // Optional (may be NULL): like macro, but reads a non-transposed A[0:mc, 0:kc] in place (row
    // stride lda) instead of a packed A~; `scratch` holds mr*kc floats for a tail panel.
    void (*macro_rows)(size_t mc, size_t nc, size_t kc, const float *a, size_t lda, const float *pb,
                       float *c, size_t ldc, float alpha, float beta, int mode, float *scratch);
    // Optional (may be NULL): C[0:m, n0:n1] <- alpha*dot(A row i, b row j) (+ beta*C) for op(B) = b^T
    // (b is n x k) and A's m rows contiguous (stride lda): one dot product per element, for small m,
    // where packing B would cost as much as the arithmetic.
    void (*dots)(size_t m, size_t n0, size_t n1, size_t k, float alpha, const float *a, size_t lda,
                 const float *b, size_t ldb, float beta, float *c, size_t ldc);
    // Widest column range (per task) for which macro_rows is used; 0 means the driver's default.
    size_t direct_a_max_n;
} bitnet_gemm_ops;

extern const bitnet_gemm_ops bitnet_gemm_ops_portable;
#if defined(__x86_64__) || defined(__i386__)
extern const bitnet_gemm_ops bitnet_gemm_ops_avx2;
extern const bitnet_gemm_ops bitnet_gemm_ops_avx512;
#endif

#endif
