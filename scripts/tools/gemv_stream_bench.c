// Microbench: t2 vs t3 ternary GEMV on every BitNet b1.58 2B4T decode matrix (30 layers x q,k,v,o,gate,up,down),
// against a pure read of the same number of bytes, each on 4 KiB pages (malloc) and on 2 MiB transparent huge pages
// (an madvise(MADV_HUGEPAGE) arena, as WeightArena does; modes readH, t2H, t3H), with 1 and 2 threads (a spin barrier after each matrix, rows
// split like the inference pool). Variants run interleaved, round after round, and medians are reported, since
// the machine is shared and noisy. Then the single-thread in-cache rate (Gweights/s) of each kernel on a matrix
// that fits in L2, which tells whether a kernel is compute- or memory-bound.
//
// Build (from the repository root):
//   clang -O3 -march=native -o /tmp/gemv_stream_bench scripts/tools/gemv_stream_bench.c \
//       -ISources/CBitNetKernels -ISources/CBitNetKernels/include -lpthread
// Run: /tmp/gemv_stream_bench [rounds=7]  (rounds 0: only the in-cache rates)     (BITNET_ISA=avx2 / portable caps the kernels' path as usual)
#define _GNU_SOURCE
// The ternary kernels as one translation unit with this file.
#include "../../Sources/CBitNetKernels/cpu_features.c"
#include "../../Sources/CBitNetKernels/ternary.c"
#include "../../Sources/CBitNetKernels/ternary_layout.c"
#include "../../Sources/CBitNetKernels/ternary_ref.c"
#include "../../Sources/CBitNetKernels/ternary_avx2.c"
#include "../../Sources/CBitNetKernels/ternary_avx512.c"
#include <sys/mman.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#define LAYERS 30
#define MAX_THREADS 2
enum { MODE_READ, MODE_T2, MODE_T3, MODE_READH, MODE_T2H, MODE_T3H, NMODES };   // H: the same on huge pages
static const char *mode_names[NMODES] = {"read", "t2", "t3", "readH", "t2H", "t3H"};

typedef struct { size_t rows, cols; uint8_t *w2, *w3; int32_t *y; } mat;
static mat mats[LAYERS * 7], matsH[LAYERS * 7];   // matsH: copies in the huge-page arena
static int nmats;
static int8_t xact[8192];
static uint8_t *rbuf, *rbufH;
static size_t rbytes;
static volatile uint64_t sink;
// The huge-page arena: one 2 MiB-aligned allocation advised before it is touched, handed out in 4 KiB-aligned pieces.
#define ARENA_BYTES ((size_t)1100 << 20)
static uint8_t *arena;
static size_t arena_used;
static void *arena_alloc(size_t n) {
    if (!arena) { arena = aligned_alloc((size_t)2 << 20, ARENA_BYTES); madvise(arena, ARENA_BYTES, MADV_HUGEPAGE); }
    n = (n + 4095) & ~(size_t)4095;
    if (arena_used + n > ARENA_BYTES) { fprintf(stderr, "arena full\n"); exit(1); }
    void *p = arena + arena_used;
    arena_used += n;
    return p;
}

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

__attribute__((target("avx512f")))
static uint64_t readsum(const uint8_t *p, size_t n) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 256 <= n; i += 256) {
        a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(p + i)); a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(p + i + 64));
        a2 = _mm512_add_epi64(a2, _mm512_loadu_si512(p + i + 128)); a3 = _mm512_add_epi64(a3, _mm512_loadu_si512(p + i + 192));
    }
    return _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
}

// Passes are posted to the helper thread through blocking pthread barriers (an idle thread must not spin on a
// 2-core machine); inside a pass the working threads meet a spin barrier after each matrix.
static pthread_barrier_t start_bar, end_bar;
static volatile int arrived;
static void spin_barrier(int *phase, int T) {
    (*phase)++;
    __atomic_add_fetch(&arrived, 1, __ATOMIC_ACQ_REL);
    while (__atomic_load_n(&arrived, __ATOMIC_ACQUIRE) < *phase * T) _mm_pause();
}

// The job of a pass: `mode` with `threads` working threads.
static volatile int job_mode, job_threads, job_quit;
static double job_seconds;

static void run_pass(int tid) {
    const int T = job_threads, huge = job_mode >= MODE_READH, mode = huge ? job_mode - MODE_READH : job_mode;
    const mat *set = huge ? matsH : mats;
    const uint8_t *rb = huge ? rbufH : rbuf;
    if (tid >= T) return;
    int phase = 0;
    const double t0 = now();
    if (mode == MODE_READ) {
        size_t ch = (rbytes / T) & ~(size_t)255;
        sink += readsum(rb + tid * ch, ch);
    } else {
        for (int m = 0; m < nmats; m++) {
            const mat *M = &set[m];
            size_t per = (M->rows / T + 3) & ~(size_t)3, r0 = tid * per, r1 = r0 + per < M->rows ? r0 + per : M->rows;
            if (r0 > r1) r0 = r1;
            if (mode == MODE_T2) bitnet_t2_gemv(M->w2, bitnet_t2_row_stride(M->cols), M->cols, xact, M->y, r0, r1);
            else bitnet_t3_gemv(M->w3, bitnet_t3_row_stride(M->cols), M->cols, xact, M->y, r0, r1);
            if (T > 1) spin_barrier(&phase, T);
        }
    }
    if (T > 1) spin_barrier(&phase, T);
    if (tid == 0) job_seconds = now() - t0;
}

static void *helper(void *arg) {
    for (;;) {
        pthread_barrier_wait(&start_bar);
        if (job_quit) return NULL;
        run_pass((int)(intptr_t)arg);
        pthread_barrier_wait(&end_bar);
    }
}

static double pass(int mode, int threads) {
    job_mode = mode; job_threads = threads;
    __atomic_store_n(&arrived, 0, __ATOMIC_RELEASE);
    pthread_barrier_wait(&start_bar);
    run_pass(0);
    pthread_barrier_wait(&end_bar);
    return job_seconds;
}

static int cmp_double(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

static size_t bytes_of(int mode) {
    size_t b = 0;
    for (int m = 0; m < nmats; m++)
        b += mats[m].rows * (mode % MODE_READH == MODE_T3 ? bitnet_t3_row_stride(mats[m].cols) : bitnet_t2_row_stride(mats[m].cols));
    return b;
}

// Single-thread in-cache rate: one matrix of `rows` x `cols` (fits in L2) multiplied `reps` times.
static double in_cache_gweights(int mode, size_t rows, size_t cols, int reps) {
    static uint8_t *w2, *w3; static int32_t *y;
    if (!w2) {
        int8_t *codes = malloc(rows * cols);
        for (size_t i = 0; i < rows * cols; i++) codes[i] = (int8_t)(rand() % 3 - 1);
        w2 = aligned_alloc(64, rows * bitnet_t2_row_stride(cols)); bitnet_t2_pack(codes, rows, cols, w2);
        w3 = aligned_alloc(64, rows * bitnet_t3_row_stride(cols)); bitnet_t3_pack(codes, rows, cols, w3);
        y = malloc(rows * sizeof(int32_t)); free(codes);
    }
    double t0 = now();
    for (int i = 0; i < reps; i++) {
        if (mode == MODE_T2) bitnet_t2_gemv(w2, bitnet_t2_row_stride(cols), cols, xact, y, 0, rows);
        else bitnet_t3_gemv(w3, bitnet_t3_row_stride(cols), cols, xact, y, 0, rows);
    }
    return (double)rows * cols * reps / (now() - t0) / 1e9;
}

int main(int argc, char **argv) {
    const int rounds = argc > 1 ? atoi(argv[1]) : 7;
    srand(1);
    for (int i = 0; i < 8192; i++) xact[i] = (int8_t)(rand() % 255 - 127);
    const size_t shapes[7][2] = {{2560, 2560}, {640, 2560}, {640, 2560}, {2560, 2560}, {6912, 2560}, {6912, 2560}, {2560, 6912}};
    for (int l = 0; l < (rounds > 0 ? LAYERS : 0); l++)
        for (int s = 0; s < 7; s++) {
            mat *M = &mats[nmats++];
            M->rows = shapes[s][0]; M->cols = shapes[s][1];
            int8_t *codes = malloc(M->rows * M->cols);
            for (size_t i = 0; i < M->rows * M->cols; i++) codes[i] = (int8_t)(rand() % 3 - 1);
            M->w2 = aligned_alloc(64, M->rows * bitnet_t2_row_stride(M->cols)); bitnet_t2_pack(codes, M->rows, M->cols, M->w2);
            M->w3 = aligned_alloc(64, M->rows * bitnet_t3_row_stride(M->cols)); bitnet_t3_pack(codes, M->rows, M->cols, M->w3);
            M->y = aligned_alloc(64, M->rows * sizeof(int32_t));
            mat *H = &matsH[nmats - 1];
            *H = *M;
            const size_t b2 = M->rows * bitnet_t2_row_stride(M->cols), b3 = M->rows * bitnet_t3_row_stride(M->cols);
            H->w2 = arena_alloc(b2); memcpy(H->w2, M->w2, b2);
            H->w3 = arena_alloc(b3); memcpy(H->w3, M->w3, b3);
            H->y = aligned_alloc(64, M->rows * sizeof(int32_t));
            free(codes);
        }
    rbytes = bytes_of(MODE_T2) & ~(size_t)4095;
    rbuf = aligned_alloc(4096, rbytes + 4096); memset(rbuf, 1, rbytes);
    rbufH = aligned_alloc((size_t)2 << 20, rbytes + ((size_t)2 << 20));
    madvise(rbufH, rbytes + ((size_t)2 << 20), MADV_HUGEPAGE);
    memset(rbufH, 1, rbytes);
    printf("isa %s, t3 path %s; bytes per token: t2 %.1f MB, t3 %.1f MB (read pass: %.1f MB)\n", bitnet_ternary_isa_name(),
           bitnet_t3_is_fast() ? "avx512vbmi" : bitnet_ternary_isa_name(),
           bytes_of(MODE_T2) / 1e6, bytes_of(MODE_T3) / 1e6, rbytes / 1e6);
    pthread_t th[MAX_THREADS];
    pthread_barrier_init(&start_bar, NULL, MAX_THREADS);
    pthread_barrier_init(&end_bar, NULL, MAX_THREADS);
    for (int i = 1; i < MAX_THREADS; i++) pthread_create(&th[i], 0, helper, (void *)(intptr_t)i);

    double sec[MAX_THREADS + 1][NMODES][64];
    if (rounds > 0) {
    for (int round = 0; round <= rounds && round < 64; round++)   // round 0 warms up (page faults, caches)
        for (int T = 1; T <= MAX_THREADS; T++)
            for (int mode = 0; mode < NMODES; mode++) sec[T][mode][round] = pass(mode, T);
    printf("full 2B4T decode set, median of %d interleaved rounds:\n", rounds);
    for (int T = 1; T <= MAX_THREADS; T++) {
        double med[NMODES];
        for (int mode = 0; mode < NMODES; mode++) {
            qsort(sec[T][mode] + 1, rounds, sizeof(double), cmp_double);
            med[mode] = sec[T][mode][1 + rounds / 2];
            const size_t b = mode % MODE_READH == MODE_READ ? rbytes : bytes_of(mode);
            printf("  T=%d %-4s %7.2f ms/token  %6.2f GB/s  (min %.2f max %.2f ms)\n", T, mode_names[mode], med[mode] * 1e3,
                   b / med[mode] / 1e9, sec[T][mode][1] * 1e3, sec[T][mode][rounds] * 1e3);
        }
        printf("  T=%d 2 MiB / 4 KiB pages, time: read %.3f, t2 %.3f, t3 %.3f\n", T, med[MODE_READH] / med[MODE_READ],
               med[MODE_T2H] / med[MODE_T2], med[MODE_T3H] / med[MODE_T3]);
        printf("  T=%d t3/t2 time ratio %.3f (t2 %.1f tok/s of GEMVs, t3 %.1f)\n", T, med[MODE_T3] / med[MODE_T2],
               1 / med[MODE_T2], 1 / med[MODE_T3]);
    }
    }
    job_quit = 1;
    pthread_barrier_wait(&start_bar);
    for (int i = 1; i < MAX_THREADS; i++) pthread_join(th[i], 0);

    // 640 x 2560: 410 KB in t2, 328 KB in t3; 5 interleaved trials, best of each.
    double best[NMODES] = {0};
    for (int trial = 0; trial < 5; trial++)
        for (int mode = MODE_T2; mode <= MODE_T3; mode++) {
            double g = in_cache_gweights(mode, 640, 2560, 200);
            if (g > best[mode]) best[mode] = g;
        }
    printf("in-cache (L2) single thread, 640x2560: t2 %.1f Gweights/s (%.1f GB/s), t3 %.1f Gweights/s (%.1f GB/s)\n",
           best[MODE_T2], best[MODE_T2] / 4, best[MODE_T3], best[MODE_T3] / 5);
    return 0;
}
