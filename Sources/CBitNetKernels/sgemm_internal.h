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
//       the buffer has `pack_slack` floats of room after the last panel for wide overlapping stores.
//   B~: ceil(nc/nr) panels, each kc x nr (element (p, j) at p*nr + j), columns past nc zero-filled.
typedef struct {
    int mr, nr;
    size_t mc, kc, nc;  // cache-block maxima (mc a multiple of mr, nc of nr)
    size_t pack_slack;
    // Packs op(A)[0:mc, 0:kc] where op(A)[i][p] = trans ? a[p*lda + i] : a[i*lda + p].
    void (*pack_a)(int trans, size_t mc, size_t kc, const float *a, size_t lda, float *dst);
    // Packs op(B)[0:kc, 0:nc] where op(B)[p][j] = trans ? b[j*ldb + p] : b[p*ldb + j].
    void (*pack_b)(int trans, size_t kc, size_t nc, const float *b, size_t ldb, float *dst);
    // C[0:mc, 0:nc] <- store(mode) of A~ * B~ over kc.
    void (*macro)(size_t mc, size_t nc, size_t kc, const float *pa, const float *pb, float *c,
                  size_t ldc, float alpha, float beta, int mode);
} bitnet_gemm_ops;

extern const bitnet_gemm_ops bitnet_gemm_ops_portable;
#if defined(__x86_64__) || defined(__i386__)
extern const bitnet_gemm_ops bitnet_gemm_ops_avx2;
#endif

#endif
