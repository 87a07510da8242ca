// f32 GEMM driver (cache blocking, packing, threading, ISA dispatch), portable kernels, reference.
//
// Reproducibility: the procedure computing an element of C depends on the shape alone, never on
// the thread count. Blocked path: the sum over K blocks (boundaries depend on k only), each block
// accumulated sequentially in p by one register lane; edge tiles run the same micro-kernel on a
// padded copy (AVX-512: in place, with masked loads and stores of C), and packed or in-place
// operands feed it the same values. Dot path (few rows, B transposed): one fixed-order dot product
// per element. Threads only split output blocks, never K, so the bits of C are the same for any
// pool size (for a given ISA path; different paths round differently).
#include "cpu_features.h"
#include "bitnet_kernels.h"
#include "sgemm_internal.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// MARK: - ISA selection

// The best path a CPU with `features` runs; the AVX-512 kernels are compiled for F/VL/BW/DQ + FMA.
static int sgemm_level(unsigned features) {
    if (!bitnet_cpu_has(features, BITNET_CPU_AVX2 | BITNET_CPU_FMA)) return BITNET_ISA_PORTABLE;
    if (bitnet_cpu_has(features, BITNET_CPU_AVX512F | BITNET_CPU_AVX512VL | BITNET_CPU_AVX512BW | BITNET_CPU_AVX512DQ))
        return BITNET_ISA_AVX512;
    return BITNET_ISA_AVX2_FMA;
}

static int sgemm_isa_selected = -1;

bitnet_isa bitnet_sgemm_isa(void) { return (bitnet_isa)bitnet_isa_selected(&sgemm_isa_selected, sgemm_level); }

const char *bitnet_sgemm_isa_name(void) {
    switch (bitnet_sgemm_isa()) {
    case BITNET_ISA_AVX512: return "avx512";
    case BITNET_ISA_AVX2_FMA: return "avx2+fma";
    default: return "portable";
    }
}

int bitnet_sgemm_isa_supported(bitnet_isa isa) {
    return (int)isa >= BITNET_ISA_PORTABLE && (int)isa <= sgemm_level(bitnet_cpu()->cpu);
}

bitnet_isa bitnet_sgemm_set_isa(bitnet_isa isa) { return (bitnet_isa)bitnet_isa_select(&sgemm_isa_selected, sgemm_level, (int)isa); }

static const bitnet_gemm_ops *active_ops(void) {
#if defined(__x86_64__) || defined(__i386__)
    switch (bitnet_sgemm_isa()) {
    case BITNET_ISA_AVX512: return &bitnet_gemm_ops_avx512;
    case BITNET_ISA_AVX2_FMA: return &bitnet_gemm_ops_avx2;
    default: break;
    }
#endif
    return &bitnet_gemm_ops_portable;
}

// MARK: - Portable kernels (plain C; the compiler vectorizes the fixed-size loops)

enum { P_MR = 4, P_NR = 8 };

static void p_pack_a(int trans, size_t mc, size_t kc, const float *a, size_t lda, float *dst) {
    for (size_t i0 = 0; i0 < mc; i0 += P_MR) {
        size_t mr = mc - i0 < P_MR ? mc - i0 : P_MR;
        for (size_t p = 0; p < kc; ++p) {
            for (size_t i = 0; i < P_MR; ++i)
                dst[p * P_MR + i] = i < mr ? (trans ? a[p * lda + i0 + i] : a[(i0 + i) * lda + p]) : 0.0f;
        }
        dst += kc * P_MR;
    }
}

static void p_pack_b(int trans, size_t kc, size_t nc, const float *b, size_t ldb, float *dst) {
    for (size_t j0 = 0; j0 < nc; j0 += P_NR) {
        size_t nr = nc - j0 < P_NR ? nc - j0 : P_NR;
        for (size_t p = 0; p < kc; ++p) {
            for (size_t j = 0; j < P_NR; ++j)
                dst[p * P_NR + j] = j < nr ? (trans ? b[(j0 + j) * ldb + p] : b[p * ldb + j0 + j]) : 0.0f;
        }
        dst += kc * P_NR;
    }
}

#if defined(__GNUC__) || defined(__clang__)
// 4-lane vectors (SSE2 / NEON) via compiler vector extensions: good code even without -O3's unrolling.
typedef float p_vec4 __attribute__((vector_size(16)));

static inline p_vec4 p_load4(const float *x) {
    p_vec4 v;
    memcpy(&v, x, sizeof v);
    return v;
}

static void p_kernel(size_t kc, const float *restrict a, const float *restrict b, float *restrict c,
                     size_t ldc, float alpha, float beta, int mode) {
    p_vec4 acc[P_MR][2];
    for (int i = 0; i < P_MR; ++i) acc[i][0] = acc[i][1] = (p_vec4){0, 0, 0, 0};
    for (size_t p = 0; p < kc; ++p) {
        p_vec4 b0 = p_load4(b + p * P_NR), b1 = p_load4(b + p * P_NR + 4);
        for (int i = 0; i < P_MR; ++i) {
            float ai = a[p * P_MR + i];
            acc[i][0] += ai * b0;
            acc[i][1] += ai * b1;
        }
    }
    for (int i = 0; i < P_MR; ++i) {
        float *ci = c + (size_t)i * ldc;
        for (int h = 0; h < 2; ++h) {
            p_vec4 t = alpha * acc[i][h];
            if (mode == GEMM_STORE_BETA) t = beta * p_load4(ci + 4 * h) + t;
            else if (mode == GEMM_STORE_ADD) t = p_load4(ci + 4 * h) + t;
            memcpy(ci + 4 * h, &t, sizeof t);
        }
    }
}
#else
static void p_kernel(size_t kc, const float *restrict a, const float *restrict b, float *restrict c,
                     size_t ldc, float alpha, float beta, int mode) {
    float acc[P_MR][P_NR];
    for (int i = 0; i < P_MR; ++i)
        for (int j = 0; j < P_NR; ++j) acc[i][j] = 0.0f;
    for (size_t p = 0; p < kc; ++p) {
        for (int i = 0; i < P_MR; ++i) {
            float ai = a[p * P_MR + i];
            for (int j = 0; j < P_NR; ++j) acc[i][j] += ai * b[p * P_NR + j];
        }
    }
    for (int i = 0; i < P_MR; ++i) {
        float *ci = c + (size_t)i * ldc;
        for (int j = 0; j < P_NR; ++j) {
            float t = alpha * acc[i][j];
            if (mode == GEMM_STORE_SET) ci[j] = t;
            else if (mode == GEMM_STORE_BETA) ci[j] = beta * ci[j] + t;
            else ci[j] = ci[j] + t;
        }
    }
}
#endif

static void p_macro(size_t mc, size_t nc, size_t kc, const float *pa, const float *pb, float *c,
                    size_t ldc, float alpha, float beta, int mode) {
    for (size_t j0 = 0; j0 < nc; j0 += P_NR) {
        size_t nr = nc - j0 < P_NR ? nc - j0 : P_NR;
        const float *bp = pb + j0 * kc;
        for (size_t i0 = 0; i0 < mc; i0 += P_MR) {
            size_t mr = mc - i0 < P_MR ? mc - i0 : P_MR;
            const float *ap = pa + i0 * kc;
            float *cij = c + i0 * ldc + j0;
            if (mr == P_MR && nr == P_NR) {
                p_kernel(kc, ap, bp, cij, ldc, alpha, beta, mode);
            } else {
                // Edge tile: same kernel on a padded copy, so the arithmetic matches full tiles.
                float tmp[P_MR * P_NR] = {0};
                if (mode != GEMM_STORE_SET)
                    for (size_t i = 0; i < mr; ++i)
                        for (size_t j = 0; j < nr; ++j) tmp[i * P_NR + j] = cij[i * ldc + j];
                p_kernel(kc, ap, bp, tmp, P_NR, alpha, beta, mode);
                for (size_t i = 0; i < mr; ++i)
                    for (size_t j = 0; j < nr; ++j) cij[i * ldc + j] = tmp[i * P_NR + j];
            }
        }
    }
}

const bitnet_gemm_ops bitnet_gemm_ops_portable = {
    .mr = P_MR, .nr = P_NR, .mc = 128, .kc = 256, .nc = 2048,
    .pack_a = p_pack_a, .pack_b = p_pack_b, .macro = p_macro, .macro_rows = NULL, .dots = NULL,
};

// MARK: - Per-thread packing buffers (kept between calls; freed when the thread exits)

typedef struct {
    float *ptr;
    size_t cap;  // floats
} pack_buffer;

static pthread_key_t g_buf_key;
static pthread_once_t g_buf_once = PTHREAD_ONCE_INIT;

static void buf_free(void *p) {
    pack_buffer *b = (pack_buffer *)p;
    if (b) free(b->ptr);
    free(b);
}

static void buf_key_init(void) { pthread_key_create(&g_buf_key, buf_free); }

static float *thread_buffer(size_t floats) {
    pthread_once(&g_buf_once, buf_key_init);
    pack_buffer *b = (pack_buffer *)pthread_getspecific(g_buf_key);
    if (!b) {
        b = (pack_buffer *)calloc(1, sizeof(pack_buffer));
        if (!b) return NULL;
        pthread_setspecific(g_buf_key, b);
    }
    if (b->cap < floats) {
        free(b->ptr);
        b->ptr = NULL;
        b->cap = 0;
        size_t bytes = (floats * sizeof(float) + 4095) & ~(size_t)4095;
        void *p = NULL;
        if (posix_memalign(&p, 4096, bytes) != 0) return NULL;
        b->ptr = (float *)p;
        b->cap = bytes / sizeof(float);
    }
    return b->ptr;
}

// MARK: - Driver

typedef struct {
    const bitnet_gemm_ops *ops;
    int trans_a, trans_b;
    size_t m, n, k;
    float alpha, beta;
    const float *a;
    size_t lda;
    const float *b;
    size_t ldb;
    float *c;
    size_t ldc;
    size_t kc;             // K block length (a function of k only: keeps summation order fixed)
    int split_m;           // tasks split rows (else columns)
    size_t chunk;          // rows or columns per task
    // Operand packed once for all tasks (B~ when split_m, else A~), or NULL: K block kb starts at
    // shared + kb * shared_block and holds the panels of all n columns (or m rows).
    float *shared;
    size_t shared_block;
    size_t group;          // columns (rows) per pre-packing task, a multiple of nr (mr)
    size_t groups;
} gemm_job;

// Widest column range (per task) for which A is read in place rather than packed, unless the
// kernel set (ops->direct_a_max_n) says otherwise.
#ifndef BITNET_DIRECT_A_MAX_N
#define BITNET_DIRECT_A_MAX_N 256
#endif

static inline size_t round_up(size_t x, size_t r) { return (x + r - 1) / r * r; }
static inline size_t min_sz(size_t x, size_t y) { return x < y ? x : y; }

// With few output columns each packed A element would be used only a few times, so packing A
// costs 10-20%: read A in place instead (same arithmetic, same bits).
static inline int use_direct_a(const gemm_job *job, size_t cols) {
    size_t max_n = job->ops->direct_a_max_n ? job->ops->direct_a_max_n : BITNET_DIRECT_A_MAX_N;
    return !job->trans_a && job->ops->macro_rows && cols <= max_n;
}

// Computes C[m0:m1, n0:n1] entirely (all of K) with this thread's packing buffers (and the shared
// pre-packed operand, if any).
static void gemm_block(const gemm_job *job, size_t m0, size_t m1, size_t n0, size_t n1) {
    const bitnet_gemm_ops *ops = job->ops;
    const size_t mr = (size_t)ops->mr, nr = (size_t)ops->nr;
    const size_t kc_max = job->kc;
    const size_t mc_max = min_sz(ops->mc, round_up(m1 - m0, mr));
    const size_t nc_max = min_sz(ops->nc, round_up(n1 - n0, nr));
    const float *shared_a = job->shared && !job->split_m ? job->shared : NULL;
    const float *shared_b = job->shared && job->split_m ? job->shared : NULL;
    const size_t a_size = round_up(mc_max, mr) * kc_max;
    const size_t b_size = shared_b ? 0 : round_up(nc_max, nr) * kc_max;
    float *buf = thread_buffer(a_size + b_size + 16);
    if (!buf) abort();  // out of memory for a few MB: nothing sensible to fall back to
    float *pa = buf;
    float *pb = buf + round_up(a_size, 16);
    const int direct_a = !shared_a && use_direct_a(job, nc_max);

    for (size_t jc = n0; jc < n1; jc += ops->nc) {
        size_t nc = min_sz(ops->nc, n1 - jc);
        for (size_t pc = 0; pc < job->k; pc += kc_max) {
            size_t kc = min_sz(kc_max, job->k - pc);
            const float *bp;
            if (shared_b) {
                bp = shared_b + (pc / kc_max) * job->shared_block + jc * kc;  // jc is a multiple of nr
            } else {
                const float *bsrc = job->trans_b ? job->b + jc * job->ldb + pc : job->b + pc * job->ldb + jc;
                ops->pack_b(job->trans_b, kc, nc, bsrc, job->ldb, pb);
                bp = pb;
            }
            int mode = pc > 0 ? GEMM_STORE_ADD : (job->beta == 0.0f ? GEMM_STORE_SET : GEMM_STORE_BETA);
            for (size_t ic = m0; ic < m1; ic += ops->mc) {
                size_t mc = min_sz(ops->mc, m1 - ic);
                const float *asrc = job->trans_a ? job->a + pc * job->lda + ic : job->a + ic * job->lda + pc;
                float *cblk = job->c + ic * job->ldc + jc;
                if (shared_a) {  // ic is a multiple of mr (tasks split columns here)
                    const float *ap = shared_a + (pc / kc_max) * job->shared_block + ic * kc;
                    ops->macro(mc, nc, kc, ap, bp, cblk, job->ldc, job->alpha, job->beta, mode);
                } else if (direct_a) {
                    ops->macro_rows(mc, nc, kc, asrc, job->lda, bp, cblk, job->ldc, job->alpha, job->beta,
                                    mode, pa);
                } else {
                    ops->pack_a(job->trans_a, mc, kc, asrc, job->lda, pa);
                    ops->macro(mc, nc, kc, pa, bp, cblk, job->ldc, job->alpha, job->beta, mode);
                }
            }
        }
    }
}

static void gemm_task(void *ctx, size_t t) {
    const gemm_job *job = (const gemm_job *)ctx;
    if (job->split_m) {
        size_t m0 = t * job->chunk, m1 = min_sz(job->m, m0 + job->chunk);
        if (m0 < m1) gemm_block(job, m0, m1, 0, job->n);
    } else {
        size_t n0 = t * job->chunk, n1 = min_sz(job->n, n0 + job->chunk);
        if (n0 < n1) gemm_block(job, 0, job->m, n0, n1);
    }
}

// Packs one (K block, column or row group) piece of the shared operand.
static void prepack_task(void *ctx, size_t t) {
    const gemm_job *job = (const gemm_job *)ctx;
    const bitnet_gemm_ops *ops = job->ops;
    size_t kb = t / job->groups, g = t % job->groups;
    size_t pc = kb * job->kc, kc = min_sz(job->kc, job->k - pc);
    float *block = job->shared + kb * job->shared_block;
    size_t x0 = g * job->group;
    if (job->split_m) {  // B~: columns [x0, x1)
        size_t x1 = min_sz(job->n, x0 + job->group);
        const float *src = job->trans_b ? job->b + x0 * job->ldb + pc : job->b + pc * job->ldb + x0;
        ops->pack_b(job->trans_b, kc, x1 - x0, src, job->ldb, block + x0 * kc);
    } else {  // A~: rows [x0, x1)
        size_t x1 = min_sz(job->m, x0 + job->group);
        const float *src = job->trans_a ? job->a + pc * job->lda + x0 : job->a + x0 * job->lda + pc;
        ops->pack_a(job->trans_a, x1 - x0, kc, src, job->lda, block + x0 * kc);
    }
}

// MARK: - Few rows with B transposed: dot products, split over columns

// Up to this many rows of C (and op(B) = B^T), sgemm computes plain dot products (GEMV-like decode).
#ifndef BITNET_DOTS_MAX_M
#define BITNET_DOTS_MAX_M 8
#endif

typedef struct {
    const bitnet_gemm_ops *ops;
    size_t m, n, k, chunk;
    float alpha, beta;
    const float *a;
    size_t lda;
    const float *b;
    size_t ldb;
    float *c;
    size_t ldc;
} dots_job;

static void dots_task(void *ctx, size_t t) {
    const dots_job *j = (const dots_job *)ctx;
    size_t n0 = t * j->chunk, n1 = min_sz(j->n, n0 + j->chunk);
    if (n0 < n1) j->ops->dots(j->m, n0, n1, j->k, j->alpha, j->a, j->lda, j->b, j->ldb, j->beta, j->c, j->ldc);
}

static void gemm_dots(const bitnet_gemm_ops *ops, int trans_a, size_t m, size_t n, size_t k, float alpha,
                      const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                      size_t ldc, bitnet_pool *pool) {
    float *rows = NULL;
    if (trans_a) {  // gather the m columns of A into contiguous rows (m*k floats: small)
        rows = (float *)malloc(m * k * sizeof(float));
        if (!rows) abort();
        for (size_t p = 0; p < k; ++p)
            for (size_t i = 0; i < m; ++i) rows[i * k + p] = a[p * lda + i];
        a = rows;
        lda = k;
    }
    dots_job job = {.ops = ops, .m = m, .n = n, .k = k, .alpha = alpha, .beta = beta, .a = a, .lda = lda,
                    .b = b, .ldb = ldb, .c = c, .ldc = ldc};
    int threads = bitnet_pool_in_task() ? 1 : bitnet_pool_thread_count(pool);
    // ~4 tasks per thread (dynamic claiming absorbs a preempted thread), at least 64 columns each.
    size_t tasks = threads > 1 && 2.0 * (double)m * (double)n * (double)k >= 1.0e6 ? (size_t)threads * 4 : 1;
    job.chunk = round_up((n + tasks - 1) / tasks, 16);
    if (job.chunk < 64) job.chunk = 64;
    tasks = (n + job.chunk - 1) / job.chunk;
    if (tasks <= 1) dots_task(&job, 0);
    else bitnet_pool_parallel_for(pool, tasks, dots_task, &job);
    free(rows);
}

// C = beta*C (beta == 0 writes zeros), for k == 0 or alpha == 0.
static void scale_c(size_t m, size_t n, float beta, float *c, size_t ldc) {
    for (size_t i = 0; i < m; ++i) {
        float *ci = c + i * ldc;
        if (beta == 0.0f) memset(ci, 0, n * sizeof(float));
        else if (beta != 1.0f)
            for (size_t j = 0; j < n; ++j) ci[j] *= beta;
    }
}

void bitnet_sgemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                  const float *a, size_t lda, const float *b, size_t ldb, float beta,
                  float *c, size_t ldc, bitnet_pool *pool) {
    if (m == 0 || n == 0) return;
    if (k == 0 || alpha == 0.0f) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    const bitnet_gemm_ops *ops = active_ops();
    if (trans_b && m <= BITNET_DOTS_MAX_M && ops->dots) {
        gemm_dots(ops, trans_a, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, pool);
        return;
    }
    gemm_job job = {
        .ops = ops, .trans_a = trans_a != 0, .trans_b = trans_b != 0, .m = m, .n = n, .k = k,
        .alpha = alpha, .beta = beta, .a = a, .lda = lda, .b = b, .ldb = ldb, .c = c, .ldc = ldc,
    };
    // Even K blocks no longer than ops->kc, rounded to 8 for aligned packing loops.
    size_t kblocks = (k + ops->kc - 1) / ops->kc;
    job.kc = min_sz(ops->kc, round_up((k + kblocks - 1) / kblocks, 8));

    const size_t mr = (size_t)ops->mr, nr = (size_t)ops->nr;
    int threads = bitnet_pool_in_task() ? 1 : bitnet_pool_thread_count(pool);  // nested calls run serially
    double flops = 2.0 * (double)m * (double)n * (double)k;
    if (threads <= 1 || flops < 2.0e6) {
        gemm_block(&job, 0, m, 0, n);
        return;
    }
    // Split the larger output dimension into up to 4 tasks per thread, claimed dynamically, so a
    // thread that loses its core to another process costs little; but keep >= 128K outputs per task,
    // as smaller blocks reuse each packed panel less (matters for small-output, long-K shapes).
    // The operand every task would otherwise pack again (B when splitting rows; A when splitting
    // columns, unless read in place) is packed once, in parallel, before the tasks run.
    job.split_m = m >= n;
    size_t unit = job.split_m ? mr : nr;
    size_t total = job.split_m ? m : n;
    size_t per_thread = 4;
    while (per_thread > 1 && (double)m * (double)n / (double)((size_t)threads * per_thread) < 131072.0)
        per_thread /= 2;
    size_t tasks = (size_t)threads * per_thread;
    job.chunk = round_up((total + tasks - 1) / tasks, unit);
    size_t min_chunk = job.split_m ? 4 * mr : 4 * nr;  // keep tasks large enough to amortize setup
    if (job.chunk < min_chunk) job.chunk = min_chunk;
    tasks = (total + job.chunk - 1) / job.chunk;
    if (tasks <= 1) {
        gemm_block(&job, 0, m, 0, n);
        return;
    }
    size_t span = job.split_m ? round_up(n, nr) : round_up(m, mr);
    size_t kblocks_total = (k + job.kc - 1) / job.kc;
    // Share unless A is read in place anyway, or the copy would be huge (then tasks pack their own).
    int share = (job.split_m || !use_direct_a(&job, job.chunk)) &&
                (double)kblocks_total * (double)job.kc * (double)span * sizeof(float) <= 1024.0 * 1024 * 1024;
    float *shared = NULL;
    if (share) {
        job.shared_block = job.kc * span;
        if (posix_memalign((void **)&shared, 64, kblocks_total * job.shared_block * sizeof(float)) != 0)
            shared = NULL;
        if (shared) {
            job.shared = shared;
            size_t panel = job.split_m ? nr : mr;  // the shared operand's panel width
            job.group = round_up((span + (size_t)threads * 2 - 1) / ((size_t)threads * 2), panel);
            job.groups = (span + job.group - 1) / job.group;
            bitnet_pool_parallel_for(pool, kblocks_total * job.groups, prepack_task, &job);
        }  // else (out of memory): every task packs for itself, still correct
    }
    bitnet_pool_parallel_for(pool, tasks, gemm_task, &job);
    free(shared);
}

// MARK: - Reference

void bitnet_sgemm_ref(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                      const float *a, size_t lda, const float *b, size_t ldb, float beta,
                      float *c, size_t ldc) {
    for (size_t i = 0; i < m; ++i) {
        for (size_t j = 0; j < n; ++j) {
            double s = 0.0;
            if (alpha != 0.0f) {  // alpha == 0: A and B are not read (BLAS convention, as bitnet_sgemm)
                for (size_t p = 0; p < k; ++p) {
                    double x = trans_a ? a[p * lda + i] : a[i * lda + p];
                    double y = trans_b ? b[j * ldb + p] : b[p * ldb + j];
                    s += x * y;
                }
            }
            float *cij = c + i * ldc + j;
            double r = (double)alpha * s;
            if (beta != 0.0f) r += (double)beta * (double)*cij;  // beta == 0: C is not read
            *cij = (float)r;
        }
    }
}
