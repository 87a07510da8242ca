// Thread pool: N-1 pthread workers plus the caller, lock-free task claiming, spin-then-sleep waits.
//
// A job is published by bumping a 64-bit "ticket" word: generation in the high 32 bits, next task
// index in the low 32. Workers claim indices with a CAS that also checks the generation, so a worker
// that read a stale job can never run a task of a newer one. Job descriptors live in two slots
// (generation & 1): a slot is rewritten only two generations later, i.e. after its generation's
// ticket is dead, which makes the (slot read, CAS) pair safe without locks.
#define _GNU_SOURCE
#include "bitnet_kernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

#define PF_MAX 16      // pieces of one prefetch hint
#define PF_SLICE 2048  // bytes a waiting worker prefetches between two looks at the ticket

typedef struct {
    _Atomic(bitnet_task_fn) fn;
    _Atomic(void *) ctx;
    _Atomic(uint64_t) n;
    _Atomic(uint64_t) done;  // tasks finished
} job_slot;

struct bitnet_pool {
    int thread_count;
    int worker_count;
    _Atomic long spin_ns;                   // busy-wait this long before blocking on a condvar
    pthread_t *threads;

    // Cache-line separated hot words.
    _Alignas(64) _Atomic(uint64_t) ticket;  // gen << 32 | next index
    _Alignas(64) job_slot slots[2];
    _Alignas(64) _Atomic int sleepers;      // workers blocked (or about to block) on work_cv
    _Atomic int caller_sleeping;            // caller blocked on done_cv
    _Atomic int shutdown;

    pthread_mutex_t mutex;                  // guards the condvars
    pthread_cond_t work_cv;
    pthread_cond_t done_cv;
    pthread_mutex_t call_mutex;             // serializes parallel_for calls from different threads

    // Oversubscription guard (touched only under call_mutex): when two parallel calls in a row took longer than the
    // caller alone would have (a worker was descheduled holding a task), the next `serial_left` calls run on the
    // caller only; the window doubles on each repeated failure (up to 4096 calls) and the pool then probes again.
    int guard_enabled;
    int serial_left;
    int strikes;                            // consecutive slow parallel calls
    int backoff;
    long serial_calls, parallel_calls, fallbacks;
    long wakeups;                           // parallel calls that found a worker asleep and had to wake it
    long wait_ns;                           // time callers waited for other threads' last tasks

    // Idle-time prefetch hint (bitnet_pool_prefetch_rows), a seqlock: odd pf_seq while a caller rewrites it.
    _Alignas(64) _Atomic(uint64_t) pf_seq;
    _Atomic int pf_count;
    _Atomic(uintptr_t) pf_addr[PF_MAX];
    _Atomic(size_t) pf_len[PF_MAX];
    _Atomic(size_t) pf_bytes;               // bytes per thread a hint asks for (0: off)
    _Atomic long pf_done;                   // bytes prefetched by idle workers
    _Atomic long pf_hints;                  // hints published
    pthread_mutex_t pf_mutex;               // one hint writer at a time
};

// Set on worker threads for their lifetime and on a caller while it runs a job: nested calls go serial.
static _Thread_local int tls_in_pool = 0;

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

// After this long a spinning thread also yields at each clock check: a thread of another process that
// wants the core gets it (an oversubscribed machine), while on an idle core sched_yield returns at once.
#define SPIN_YIELD_AFTER_NS 50000

// Busy-waits (with pause) for ready(arg) up to spin_ns; returns 0 if the caller should block instead.
// Long spins pay off on a VM: waking a blocked thread took 0.25-1 ms on the 2-vCPU test machine (its vCPU
// halts), longer than the serial work between two GEMVs of a decode step (norm, RoPE, attention). The eventual block
// (not endless sched_yield spinning) is what lets the scheduler put a woken thread on an idle core.
// `idle` (may be NULL) runs between the checks: a worker's prefetch of the next GEMV's weights.
static int spin_wait(const bitnet_pool *p, int (*ready)(const void *), const void *arg, void (*idle)(void *), void *idle_arg) {
    long spin = atomic_load_explicit(&p->spin_ns, memory_order_relaxed);
    uint64_t start = 0;
    for (unsigned it = 0;; ++it) {
        if (ready(arg)) return 1;
        if (idle) idle(idle_arg);
        CPU_RELAX();
        if ((it & 15) == 15) {
            uint64_t t = now_ns();
            if (start == 0) start = t;
            else if ((long)(t - start) > spin) return 0;
            else if (t - start > SPIN_YIELD_AFTER_NS) sched_yield();
        }
    }
}

typedef struct {
    bitnet_pool *p;
    uint32_t seen;
} worker_wait;

static int worker_ready(const void *arg) {
    const worker_wait *w = (const worker_wait *)arg;
    uint32_t gen = (uint32_t)(atomic_load_explicit(&w->p->ticket, memory_order_acquire) >> 32);
    return gen != w->seen || atomic_load_explicit(&w->p->shutdown, memory_order_relaxed);
}

typedef struct {
    job_slot *s;
    uint64_t n;
} caller_wait;

static int caller_ready(const void *arg) {
    const caller_wait *w = (const caller_wait *)arg;
    return atomic_load_explicit(&w->s->done, memory_order_acquire) == w->n;
}

// Claims and runs tasks of generation `gen` until none is left. Returns when the ticket is exhausted
// or has moved on to another generation; returns the number of tasks this thread ran.
static uint64_t run_tasks(bitnet_pool *p, uint32_t gen) {
    job_slot *s = &p->slots[gen & 1];
    // Read the descriptor once; it stays valid as long as the ticket shows `gen` (see file comment).
    uint64_t t = atomic_load_explicit(&p->ticket, memory_order_acquire), ran = 0;
    if ((uint32_t)(t >> 32) != gen) return 0;
    bitnet_task_fn fn = atomic_load_explicit(&s->fn, memory_order_relaxed);
    void *ctx = atomic_load_explicit(&s->ctx, memory_order_relaxed);
    uint64_t n = atomic_load_explicit(&s->n, memory_order_relaxed);
    for (;;) {
        if ((uint32_t)(t >> 32) != gen) return ran;
        uint64_t idx = t & 0xffffffffu;
        if (idx >= n) return ran;
        if (atomic_compare_exchange_weak_explicit(&p->ticket, &t, t + 1, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            fn(ctx, (size_t)idx);
            ran++;
            uint64_t d = atomic_fetch_add_explicit(&s->done, 1, memory_order_seq_cst) + 1;
            if (d == n && atomic_load_explicit(&p->caller_sleeping, memory_order_seq_cst)) {
                pthread_mutex_lock(&p->mutex);
                pthread_cond_signal(&p->done_cv);
                pthread_mutex_unlock(&p->mutex);
            }
            t = atomic_load_explicit(&p->ticket, memory_order_acquire);
        }
    }
}

// A worker's progress through the current prefetch hint (its own copy, taken under the seqlock).
typedef struct {
    bitnet_pool *p;
    uint64_t seq;
    int count, idx;
    size_t off;
    uintptr_t addr[PF_MAX];
    size_t len[PF_MAX];
} idle_prefetch;

// Prefetches the next PF_SLICE bytes of the hint into L2 (T1: the worker's own first rows land where it will read
// them; the caller's are fetched from this core's L2, on chip, instead of DRAM). Cheap when there is nothing to do.
static void idle_prefetch_step(void *arg) {
    idle_prefetch *st = (idle_prefetch *)arg;
    bitnet_pool *p = st->p;
    uint64_t s = atomic_load_explicit(&p->pf_seq, memory_order_acquire);
    if (s != st->seq) {
        if (s & 1) return;  // being rewritten
        int c = atomic_load_explicit(&p->pf_count, memory_order_relaxed);
        if (c > PF_MAX) c = PF_MAX;
        for (int i = 0; i < c; i++) {
            st->addr[i] = atomic_load_explicit(&p->pf_addr[i], memory_order_relaxed);
            st->len[i] = atomic_load_explicit(&p->pf_len[i], memory_order_relaxed);
        }
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&p->pf_seq, memory_order_relaxed) != s) return;  // torn: retry at the next step
        st->seq = s;
        st->count = c;
        st->idx = 0;
        st->off = 0;
    }
    if (st->idx >= st->count) return;
    const char *a = (const char *)st->addr[st->idx] + st->off;
    size_t n = st->len[st->idx] - st->off;
    if (n > PF_SLICE) n = PF_SLICE;
#if defined(__x86_64__) || defined(__i386__)
    for (size_t i = 0; i < n; i += 64) _mm_prefetch(a + i, _MM_HINT_T1);
#else
    for (size_t i = 0; i < n; i += 64) __builtin_prefetch(a + i, 0, 2);
#endif
    atomic_fetch_add_explicit(&p->pf_done, (long)n, memory_order_relaxed);
    st->off += n;
    if (st->off >= st->len[st->idx]) { st->idx++; st->off = 0; }
}

// Publishes a hint of `count` pieces (0 clears it).
static void pf_publish(bitnet_pool *p, const uintptr_t *addr, const size_t *len, int count) {
    pthread_mutex_lock(&p->pf_mutex);
    uint64_t s = atomic_load_explicit(&p->pf_seq, memory_order_relaxed);
    atomic_store_explicit(&p->pf_seq, s + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    for (int i = 0; i < count; i++) {
        atomic_store_explicit(&p->pf_addr[i], addr[i], memory_order_relaxed);
        atomic_store_explicit(&p->pf_len[i], len[i], memory_order_relaxed);
    }
    atomic_store_explicit(&p->pf_count, count, memory_order_relaxed);
    atomic_store_explicit(&p->pf_seq, s + 2, memory_order_release);
    if (count > 0) atomic_fetch_add_explicit(&p->pf_hints, 1, memory_order_relaxed);
    pthread_mutex_unlock(&p->pf_mutex);
}

static void *worker_main(void *arg) {
    bitnet_pool *p = (bitnet_pool *)arg;
    tls_in_pool = 1;
    // Generation 0 is the pool's initial state, never a job: a worker that starts after the first job was published
    // must still see that job as new (reading the ticket here would make it skip the job).
    uint32_t seen = 0;
    idle_prefetch pf = {.p = p};
    for (;;) {
        // Spin briefly for the next job: back-to-back jobs then start without a wake-up syscall. Meanwhile pull
        // in the weights the caller said the next GEMV starts with.
        worker_wait w = {p, seen};
        spin_wait(p, worker_ready, &w, idle_prefetch_step, &pf);
        uint32_t gen = (uint32_t)(atomic_load_explicit(&p->ticket, memory_order_acquire) >> 32);
        if (gen == seen) {
            // Sleep; an oversubscribed machine then loses nothing to idle spinning.
            pthread_mutex_lock(&p->mutex);
            atomic_fetch_add_explicit(&p->sleepers, 1, memory_order_seq_cst);
            for (;;) {
                gen = (uint32_t)(atomic_load_explicit(&p->ticket, memory_order_seq_cst) >> 32);
                if (gen != seen || atomic_load_explicit(&p->shutdown, memory_order_relaxed)) break;
                pthread_cond_wait(&p->work_cv, &p->mutex);
            }
            atomic_fetch_sub_explicit(&p->sleepers, 1, memory_order_relaxed);
            pthread_mutex_unlock(&p->mutex);
        }
        if (atomic_load_explicit(&p->shutdown, memory_order_acquire)) break;
        seen = gen;
        run_tasks(p, gen);
    }
    return NULL;
}

bitnet_pool *bitnet_pool_create(int thread_count) {
    if (thread_count < 1) thread_count = 1;
    if (thread_count > 1024) thread_count = 1024;
    bitnet_pool *p = NULL;
    if (posix_memalign((void **)&p, 64, sizeof(bitnet_pool)) != 0) return NULL;
    p->thread_count = 1;
    p->worker_count = 0;
    atomic_init(&p->spin_ns, 2000000);
    atomic_init(&p->ticket, 0);
    for (int i = 0; i < 2; ++i) {
        atomic_init(&p->slots[i].fn, NULL);
        atomic_init(&p->slots[i].ctx, NULL);
        atomic_init(&p->slots[i].n, 0);
        atomic_init(&p->slots[i].done, 0);
    }
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->caller_sleeping, 0);
    atomic_init(&p->shutdown, 0);
    pthread_mutex_init(&p->mutex, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    pthread_mutex_init(&p->call_mutex, NULL);
    atomic_init(&p->pf_seq, 0);
    atomic_init(&p->pf_count, 0);
    for (int i = 0; i < PF_MAX; i++) {
        atomic_init(&p->pf_addr[i], 0);
        atomic_init(&p->pf_len[i], 0);
    }
    atomic_init(&p->pf_bytes, 262144);
    atomic_init(&p->pf_done, 0);
    atomic_init(&p->pf_hints, 0);
    pthread_mutex_init(&p->pf_mutex, NULL);
    p->threads = NULL;
    p->guard_enabled = 1;
    p->serial_left = 0;
    p->strikes = 0;
    p->backoff = 16;
    p->serial_calls = p->parallel_calls = p->fallbacks = p->wakeups = p->wait_ns = 0;
    if (thread_count > 1) {
        p->threads = (pthread_t *)calloc((size_t)thread_count - 1, sizeof(pthread_t));
        if (p->threads) {
            for (int i = 0; i < thread_count - 1; ++i) {
                if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) break;
                p->worker_count++;
            }
        }
    }
    p->thread_count = p->worker_count + 1;
    return p;
}

void bitnet_pool_destroy(bitnet_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mutex);
    atomic_store_explicit(&p->shutdown, 1, memory_order_seq_cst);
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mutex);
    for (int i = 0; i < p->worker_count; ++i) pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mutex);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    pthread_mutex_destroy(&p->call_mutex);
    pthread_mutex_destroy(&p->pf_mutex);
    free(p);
}

int bitnet_pool_thread_count(const bitnet_pool *p) { return p ? p->thread_count : 1; }

int bitnet_pool_in_task(void) { return tls_in_pool; }

void bitnet_pool_set_spin_ns(bitnet_pool *p, long spin_ns) {
    if (p) atomic_store_explicit(&p->spin_ns, spin_ns < 0 ? 0 : spin_ns, memory_order_relaxed);
}

void bitnet_pool_parallel_for(bitnet_pool *p, size_t n, bitnet_task_fn fn, void *ctx) {
    if (n == 0) return;
    if (!p || p->worker_count == 0 || n == 1 || tls_in_pool || n > 0xffffffffu) {
        for (size_t i = 0; i < n; ++i) fn(ctx, i);
        return;
    }
    pthread_mutex_lock(&p->call_mutex);
    tls_in_pool = 1;

    if (p->serial_left > 0) {
        // Backing off after a call the workers made slower than serial (see struct comment).
        p->serial_left--;
        p->serial_calls++;
        for (size_t i = 0; i < n; ++i) fn(ctx, i);
        tls_in_pool = 0;
        pthread_mutex_unlock(&p->call_mutex);
        return;
    }
    p->parallel_calls++;

    uint64_t t = atomic_load_explicit(&p->ticket, memory_order_relaxed);
    uint32_t gen = (uint32_t)(t >> 32) + 1;
    job_slot *s = &p->slots[gen & 1];
    atomic_store_explicit(&s->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&s->ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&s->n, (uint64_t)n, memory_order_relaxed);
    atomic_store_explicit(&s->done, 0, memory_order_relaxed);
    uint64_t t0 = now_ns();
    atomic_store_explicit(&p->ticket, (uint64_t)gen << 32, memory_order_seq_cst);  // publish
    if (atomic_load_explicit(&p->sleepers, memory_order_seq_cst) > 0) {
        p->wakeups++;
        pthread_mutex_lock(&p->mutex);
        pthread_cond_broadcast(&p->work_cv);
        pthread_mutex_unlock(&p->mutex);
    }

    uint64_t mine = run_tasks(p, gen);
    uint64_t t1 = now_ns();

    // Wait for tasks still running on workers: spin a little, then sleep until the last one signals.
    caller_wait w = {s, (uint64_t)n};
    if (!spin_wait(p, caller_ready, &w, NULL, NULL)) {
        pthread_mutex_lock(&p->mutex);
        atomic_store_explicit(&p->caller_sleeping, 1, memory_order_seq_cst);
        while (atomic_load_explicit(&s->done, memory_order_seq_cst) != n)
            pthread_cond_wait(&p->done_cv, &p->mutex);
        atomic_store_explicit(&p->caller_sleeping, 0, memory_order_relaxed);
        pthread_mutex_unlock(&p->mutex);
    }
    uint64_t t2 = now_ns();
    p->wait_ns += (long)(t2 - t1);

    // The caller's own rate estimates the serial time; a call 1.5x slower than that (plus 20 us) means
    // the workers hurt, typically because the machine is oversubscribed: fall back to serial for a while.
    if (mine > 0 && p->guard_enabled) {
        double serial_estimate = (double)(t1 - t0) * (double)n / (double)mine;
        if ((double)(t2 - t0) > 1.5 * serial_estimate + 20000.0) {
            // One slow call alone is a hiccup (the hypervisor took a vCPU away for a moment: 9-13 per 32-token
            // 2B4T decode on the idle test VM, each costing 16 serial GEMVs); two in a row mean oversubscription.
            p->fallbacks++;
            if (++p->strikes >= 2) {
                p->strikes = 0;
                p->serial_left = p->backoff;
                p->backoff = p->backoff < 4096 ? p->backoff * 2 : 4096;
            }
        } else {
            p->strikes = 0;
            if (p->backoff > 16) p->backoff /= 2;
        }
    }

    tls_in_pool = 0;
    pthread_mutex_unlock(&p->call_mutex);
}

void bitnet_pool_set_guard(bitnet_pool *p, int enabled) {
    if (!p) return;
    pthread_mutex_lock(&p->call_mutex);
    p->guard_enabled = enabled != 0;
    p->serial_left = 0;
    p->strikes = 0;
    p->backoff = 16;
    pthread_mutex_unlock(&p->call_mutex);
}

void bitnet_pool_stats(bitnet_pool *p, long *parallel_calls, long *serial_calls, long *fallbacks, long *wakeups, long *wait_ns) {
    if (!p) { *parallel_calls = *serial_calls = *fallbacks = *wakeups = *wait_ns = 0; return; }
    pthread_mutex_lock(&p->call_mutex);
    *parallel_calls = p->parallel_calls;
    *serial_calls = p->serial_calls;
    *fallbacks = p->fallbacks;
    *wakeups = p->wakeups;
    *wait_ns = p->wait_ns;
    pthread_mutex_unlock(&p->call_mutex);
}

typedef struct {
    bitnet_rows_fn fn;
    const void *args;
    size_t begin, end, chunk, big, nbig;
} split_ctx;

static void split_task(void *ctx, size_t i) {
    const split_ctx *s = (const split_ctx *)ctx;
    size_t r0, r1;
    if (i < s->nbig) {
        r0 = s->begin + i * s->big;
        r1 = r0 + s->big;
    } else {
        r0 = s->begin + s->nbig * s->big + (i - s->nbig) * s->chunk;
        r1 = r0 + s->chunk;
    }
    if (r1 > s->end) r1 = s->end;
    if (r0 < r1) s->fn(s->args, r0, r1);
}

// How bitnet_pool_split_rows cuts its rows (bitnet_kernels.h). Lanes (the default): thread t owns the t-th of
// `threads` equal runs of whole chunks and claims them front to back, so in the usual balanced case each thread
// streams one contiguous run and its prefetches run on across chunk boundaries; a thread done with its own lane takes
// chunks from the back of the others'. Guided: one big chunk per thread covering ~3/4 of the rows, then the rest in
// `chunk`-row pieces claimed dynamically, every one a new stream. Uniform: `chunk`-row pieces only. Guided and uniform
// stream less (each new chunk restarts the prefetch); docs/KERNELS.md has the measurements.
static _Atomic int split_mode = BITNET_SPLIT_LANES;

void bitnet_set_split_mode(int mode) {
    atomic_store_explicit(&split_mode, mode == BITNET_SPLIT_UNIFORM || mode == BITNET_SPLIT_GUIDED ? mode : BITNET_SPLIT_LANES,
                          memory_order_relaxed);
}
int bitnet_split_mode(void) { return atomic_load_explicit(&split_mode, memory_order_relaxed); }

// Rows of each thread's big first chunk of a guided split of `rows` (0: no big chunks).
static size_t split_big(size_t rows, size_t chunk, size_t threads) {
    if (threads < 2 || bitnet_split_mode() != BITNET_SPLIT_GUIDED) return 0;
    const size_t big = rows * 3 / (4 * threads) / chunk * chunk;
    return big > chunk ? big : 0;
}

#define LANES_MAX 64

// Rows of each lane of a lanes split of `rows` (whole chunks; the last lane may be shorter), or 0 where the split
// is not by lanes (another mode, one thread, too many threads, or rows beyond the 32-bit claim words).
static size_t split_lane_rows(size_t rows, size_t chunk, size_t threads) {
    if (threads < 2 || threads > LANES_MAX || rows >= UINT32_MAX || bitnet_split_mode() != BITNET_SPLIT_LANES) return 0;
    return (rows + threads * chunk - 1) / (threads * chunk) * chunk;
}

typedef struct {
    bitnet_rows_fn fn;
    const void *args;
    size_t begin, chunk, lanes;
    // Per lane, the rows not yet claimed, relative to begin: lo << 32 | hi; a cache line each, so that one thread's
    // claims do not pull the line of the other's lane away from it.
    struct { _Atomic uint64_t v; char pad[64 - sizeof(uint64_t)]; } range[LANES_MAX] __attribute__((aligned(64)));
} lanes_ctx;

// Claims the next chunk of lane u from its front (own lane) or back (another's); false when the lane is empty.
static int lanes_claim(lanes_ctx *s, size_t u, int front, size_t *r0, size_t *r1) {
    uint64_t v = atomic_load_explicit(&s->range[u].v, memory_order_acquire);
    for (;;) {
        const size_t lo = (size_t)(v >> 32), hi = (size_t)(uint32_t)v;
        if (lo >= hi) return 0;
        // Chunks stay at whole multiples of `chunk` from the lane's start (lo only ever moves by whole chunks).
        const size_t a = front ? lo : (hi - 1 - lo) / s->chunk * s->chunk + lo, b = front ? (hi - lo < s->chunk ? hi : lo + s->chunk) : hi;
        const uint64_t next = front ? ((uint64_t)b << 32 | hi) : ((uint64_t)lo << 32 | a);
        if (atomic_compare_exchange_weak_explicit(&s->range[u].v, &v, next, memory_order_acq_rel, memory_order_acquire)) {
            *r0 = s->begin + a;
            *r1 = s->begin + b;
            return 1;
        }
    }
}

static void lanes_task(void *ctx, size_t t) {
    lanes_ctx *s = (lanes_ctx *)ctx;
    size_t r0, r1;
    while (lanes_claim(s, t, 1, &r0, &r1)) s->fn(s->args, r0, r1);
    for (size_t k = 1; k < s->lanes; k++)
        while (lanes_claim(s, (t + k) % s->lanes, 0, &r0, &r1)) s->fn(s->args, r0, r1);
}

void bitnet_pool_split_rows(bitnet_pool *p, size_t begin, size_t end, size_t chunk, bitnet_rows_fn fn, const void *args) {
    if (end <= begin) return;
    // This split is what a pending hint was about: workers must not prefetch it again after their tasks.
    if (p && atomic_load_explicit(&p->pf_count, memory_order_relaxed) != 0) pf_publish(p, NULL, NULL, 0);
    if (chunk == 0 || chunk >= end - begin) { fn(args, begin, end); return; }
    const size_t rows = end - begin, threads = (size_t)bitnet_pool_thread_count(p);
    const size_t lane = split_lane_rows(rows, chunk, threads);
    if (lane) {
        lanes_ctx s;
        s.fn = fn; s.args = args; s.begin = begin; s.chunk = chunk; s.lanes = threads;
        for (size_t t = 0; t < threads; t++) {
            const size_t lo = t * lane < rows ? t * lane : rows, hi = lo + lane < rows ? lo + lane : rows;
            atomic_init(&s.range[t].v, (uint64_t)lo << 32 | hi);
        }
        bitnet_pool_parallel_for(p, threads, lanes_task, &s);
        return;
    }
    split_ctx s = {fn, args, begin, end, chunk, 0, 0};
    s.big = split_big(rows, chunk, threads);
    s.nbig = s.big ? threads : 0;
    const size_t rest = rows - s.nbig * s.big;
    bitnet_pool_parallel_for(p, s.nbig + (rest + chunk - 1) / chunk, split_task, &s);
}

void bitnet_rows_concat_run(const void *concat, size_t r0, size_t r1) {
    const bitnet_rows_concat *c = (const bitnet_rows_concat *)concat;
    size_t base = 0;
    for (size_t i = 0; i < c->count && i < 4 && base < r1; base += c->rows[i], i++) {
        size_t lo = r0 > base ? r0 : base, hi = r1 < base + c->rows[i] ? r1 : base + c->rows[i];
        if (lo < hi) c->fn[i](c->args[i], lo - base, hi - base);
    }
}

void bitnet_pool_set_idle_prefetch(bitnet_pool *p, size_t bytes) {
    if (p) atomic_store_explicit(&p->pf_bytes, bytes, memory_order_relaxed);
}

long bitnet_pool_prefetched_bytes(bitnet_pool *p) { return p ? atomic_load_explicit(&p->pf_done, memory_order_relaxed) : 0; }

long bitnet_pool_prefetch_hints(bitnet_pool *p) { return p ? atomic_load_explicit(&p->pf_hints, memory_order_relaxed) : 0; }

// Appends the memory of concatenated rows [r0, r0 + rows) of `spans` to the hint, at most `budget` bytes.
static int pf_add_rows(const bitnet_rows_span *spans, size_t count, size_t r0, size_t rows, size_t budget,
                       uintptr_t *addr, size_t *len, int n) {
    size_t base = 0;
    for (size_t i = 0; i < count && rows > 0 && budget > 0 && n < PF_MAX; base += spans[i].rows, i++) {
        if (r0 >= base + spans[i].rows) continue;
        const size_t lo = r0 - base, take = spans[i].rows - lo < rows ? spans[i].rows - lo : rows;
        size_t bytes = take * spans[i].row_stride;
        if (bytes > budget) bytes = budget;
        if (bytes > 0) {
            addr[n] = (uintptr_t)spans[i].base + lo * spans[i].row_stride;
            len[n++] = bytes;
        }
        budget -= bytes;
        r0 += take;
        rows -= take;
    }
    return n;
}

void bitnet_pool_prefetch_rows(bitnet_pool *p, const bitnet_rows_span *spans, size_t count, size_t chunk) {
    if (!p || p->worker_count == 0 || !spans) return;
    const size_t budget = atomic_load_explicit(&p->pf_bytes, memory_order_relaxed);
    size_t rows = 0;
    for (size_t i = 0; i < count; i++) rows += spans[i].rows;
    if (budget == 0 || chunk == 0 || chunk >= rows) return;  // off, or the split runs on the caller alone
    const size_t threads = (size_t)p->thread_count, big = split_big(rows, chunk, threads), lane = split_lane_rows(rows, chunk, threads);
    // Rows of each thread's first run (thread t's starts at t * first): its lane, its big chunk, or one chunk.
    const size_t first = lane ? lane : big ? big : chunk;
    uintptr_t addr[PF_MAX];
    size_t len[PF_MAX];
    int n = 0;
    // The workers' own first chunks, then the caller's (the caller claims task 0 as it publishes the job).
    for (size_t t = 1; t <= threads; t++) {
        const size_t start = (t % threads) * first;
        if (start < rows) n = pf_add_rows(spans, count, start, first, budget, addr, len, n);
    }
    pf_publish(p, addr, len, n);
}

void bitnet_pool_prefetch_ranges(bitnet_pool *p, const void *const *addr, const size_t *len, size_t count) {
    if (!p || p->worker_count == 0 || !addr || !len || atomic_load_explicit(&p->pf_bytes, memory_order_relaxed) == 0) return;
    uintptr_t a[PF_MAX];
    size_t l[PF_MAX];
    int n = 0;
    for (size_t i = 0; i < count && n < PF_MAX; i++)
        if (len[i] > 0) { a[n] = (uintptr_t)addr[i]; l[n++] = len[i]; }
    pf_publish(p, a, l, n);
}

int bitnet_pool_pending_prefetch(bitnet_pool *p, uintptr_t *addr, size_t *len, int max) {
    if (!p) return 0;
    pthread_mutex_lock(&p->pf_mutex);
    int n = atomic_load_explicit(&p->pf_count, memory_order_relaxed);
    for (int i = 0; i < n && i < max; i++) {
        addr[i] = atomic_load_explicit(&p->pf_addr[i], memory_order_relaxed);
        len[i] = atomic_load_explicit(&p->pf_len[i], memory_order_relaxed);
    }
    pthread_mutex_unlock(&p->pf_mutex);
    return n;
}
