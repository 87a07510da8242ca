// C kernels behind BitNetKernels: a pthread pool and an f32 GEMM (AVX-512F or AVX2+FMA, picked at run
// time, with a portable fallback).
#ifndef BITNET_KERNELS_H
#define BITNET_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - Thread pool

/// One task of a parallel_for: called once per index in [0, n_tasks).
typedef void (*bitnet_task_fn)(void *ctx, size_t index);

/// Opaque pool: thread_count - 1 worker threads plus the calling thread.
typedef struct bitnet_pool bitnet_pool;

/// Creates a pool that runs tasks on `thread_count` threads (the caller included); values < 1 mean 1.
/// Returns NULL only if allocation fails (a worker that cannot be spawned just shrinks the pool).
bitnet_pool *bitnet_pool_create(int thread_count);

/// Stops and joins the workers; the pool must not be in use.
void bitnet_pool_destroy(bitnet_pool *pool);

/// Threads that run tasks, the caller included.
int bitnet_pool_thread_count(const bitnet_pool *pool);

/// Runs fn(ctx, i) for every i in [0, n_tasks) exactly once, on the workers and the caller, and returns
/// when all have finished. Tasks are claimed dynamically (any task may run on any thread).
/// A call made from inside a task (of any pool) runs all its tasks serially on the calling thread;
/// calls from different threads are serialized. pool == NULL runs serially.
void bitnet_pool_parallel_for(bitnet_pool *pool, size_t n_tasks, bitnet_task_fn fn, void *ctx);

/// A kernel over rows [r0, r1) with its arguments in a struct (see bitnet_pool_split_rows).
typedef void (*bitnet_rows_fn)(const void *args, size_t r0, size_t r1);

/// Runs fn(args, r0, r1) over [begin, end) on the pool, every row exactly once, in pieces of whole `chunk`s from
/// `begin` (the last one shorter), cut by the split mode: lanes (default: thread t owns the t-th of `threads` equal
/// runs of chunks and claims them front to back, then takes chunks from the back of the other lanes), guided (one
/// big chunk per thread, ~3/4 of the rows in all, then chunks claimed dynamically) or uniform (chunks only).
/// chunk 0 or >= the range runs once on the caller. Unlike a Swift closure per call, this allocates nothing.
void bitnet_pool_split_rows(bitnet_pool *pool, size_t begin, size_t end, size_t chunk, bitnet_rows_fn fn, const void *args);

#define BITNET_SPLIT_UNIFORM 0
#define BITNET_SPLIT_GUIDED 1
#define BITNET_SPLIT_LANES 2

/// Sets the split mode of bitnet_pool_split_rows process-wide (an unknown mode means lanes), for A/B measurements;
/// set it between, not during, parallel calls.
void bitnet_set_split_mode(int mode);
int bitnet_split_mode(void);

/// Up to 4 row kernels over one concatenated row space (rows[0] rows of fn[0], then rows[1] of fn[1], ...), so
/// that several independent GEMVs sharing an input (Wq/Wk/Wv, W1/W3) are split over the pool in one call.
typedef struct {
    size_t count;
    bitnet_rows_fn fn[4];
    const void *args[4];
    size_t rows[4];
} bitnet_rows_concat;

/// bitnet_rows_fn over a bitnet_rows_concat: runs each part's kernel on its share of [r0, r1) (part-local rows).
void bitnet_rows_concat_run(const void *concat, size_t r0, size_t r1);

/// One matrix of a row split's weights in memory: row r of it at base + r * row_stride (a GEMV's packed rows).
typedef struct {
    const void *base;
    size_t row_stride;
    size_t rows;
} bitnet_rows_span;

/// Idle-time prefetch: asks the pool's idle workers to pull into their cache (L2) the first bytes (see
/// bitnet_pool_set_idle_prefetch) of each thread's first chunk of the split that bitnet_pool_split_rows(pool, 0, rows,
/// chunk, ...) will make over these matrices' concatenated rows (the worker's own chunk first, then the caller's).
/// Returns at once. Call it right after the previous GEMV: the serial work in between (norms, quantization,
/// scaling, RoPE) otherwise leaves the memory bus idle. The hint holds until the next bitnet_pool_split_rows or
/// hint; a worker stops prefetching the moment a job arrives. At most 16 pieces are kept.
void bitnet_pool_prefetch_rows(bitnet_pool *pool, const bitnet_rows_span *spans, size_t count, size_t chunk);

/// Idle-time prefetch of `count` (at most 16) whole byte ranges, in order (e.g. the KV cache rows the next
/// attention reads); same lifetime rules as bitnet_pool_prefetch_rows. Off when the idle prefetch is set to 0.
void bitnet_pool_prefetch_ranges(bitnet_pool *pool, const void *const *addr, const size_t *len, size_t count);

/// Bytes per thread that bitnet_pool_prefetch_rows asks for (0 turns idle-time prefetch off); default 262144.
void bitnet_pool_set_idle_prefetch(bitnet_pool *pool, size_t bytes);

/// The pending hint's pieces (at most `max` written to addr/len); returns their count (0: none pending). For tests.
int bitnet_pool_pending_prefetch(bitnet_pool *pool, uintptr_t *addr, size_t *len, int max);

/// Hint bytes that idle workers have prefetched so far (the counter behind `bench`'s pool line).
long bitnet_pool_prefetched_bytes(bitnet_pool *pool);

/// Hints published so far (cleared ones not counted).
long bitnet_pool_prefetch_hints(bitnet_pool *pool);

/// Nonzero on a thread that is running parallel_for tasks (a worker, or a caller inside its call):
/// a parallel_for made there would run serially.
int bitnet_pool_in_task(void);

/// Nanoseconds an idle thread (a worker awaiting work, the caller awaiting the last task) spins with
/// pause (yielding after the first 50 us) before it blocks on a condvar; default 2000000 (2 ms). Blocked threads
/// took 0.25-1 ms to wake on the 2-vCPU test VM, so a worker must not block between the calls of a decode step.
void bitnet_pool_set_spin_ns(bitnet_pool *pool, long spin_ns);

/// Counters: calls run in parallel, calls run serially while backing off, parallel calls that took longer than the
/// caller alone would have (two in a row start a serial back-off window), parallel calls that had to wake a blocked worker, and
/// the nanoseconds callers spent waiting for the last task of other threads (the imbalance at the end of the calls).
void bitnet_pool_stats(bitnet_pool *pool, long *parallel_calls, long *serial_calls, long *fallbacks, long *wakeups, long *wait_ns);

/// Turns the oversubscription guard on (the default) or off (every call parallel; for benchmarks).
void bitnet_pool_set_guard(bitnet_pool *pool, int enabled);

// MARK: - f32 GEMM

/// Instruction-set paths of bitnet_sgemm.
typedef enum {
    BITNET_ISA_PORTABLE = 0,  ///< plain C micro-kernel (auto-vectorized by the compiler)
    BITNET_ISA_AVX2_FMA = 1,  ///< x86-64 AVX2 + FMA intrinsics
    BITNET_ISA_AVX512 = 2,    ///< x86-64 AVX-512 (F, VL, BW, DQ) + FMA intrinsics
} bitnet_isa;

/// The path bitnet_sgemm takes: the best the CPU supports, unless the environment (read once) caps it
/// (BITNET_ISA=avx2 at AVX2+FMA, BITNET_ISA=portable at portable) or bitnet_sgemm_set_isa overrode it.
bitnet_isa bitnet_sgemm_isa(void);

/// "avx512", "avx2+fma" or "portable".
const char *bitnet_sgemm_isa_name(void);

/// Nonzero when this CPU (and OS) can run the path.
int bitnet_sgemm_isa_supported(bitnet_isa isa);

/// Forces a path (for tests/benchmarks); asking for an unsupported one falls back to the best supported
/// path below it (AVX-512 -> AVX2+FMA -> portable). Returns the path now in effect. Not meant to be
/// changed while GEMMs run on other threads. Each path is deterministic on its own (bits independent
/// of the thread count), but different paths round differently.
bitnet_isa bitnet_sgemm_set_isa(bitnet_isa isa);

/// C = alpha*op(A)*op(B) + beta*C, row-major. op(A) is m x k (A is m x k with lda >= k, or, when
/// trans_a, k x m with lda >= m); op(B) is k x n (ldb >= n, or, when trans_b, n x k with ldb >= k);
/// ldc >= n. beta == 0 overwrites C (NaNs in C are not propagated). Work is split over output blocks
/// only, so the result is bitwise identical for any pool size. pool == NULL runs single-threaded.
/// Arguments are not validated here (the Swift wrapper does it).
void bitnet_sgemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                  const float *a, size_t lda, const float *b, size_t ldb, float beta,
                  float *c, size_t ldc, bitnet_pool *pool);

/// Scalar reference with the same contract: a plain triple loop accumulating in double, one thread.
void bitnet_sgemm_ref(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                      const float *a, size_t lda, const float *b, size_t ldb, float beta,
                      float *c, size_t ldc);

#ifdef __cplusplus
}
#endif

#endif
