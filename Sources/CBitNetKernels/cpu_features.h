// The one place that asks the CPU what it can run, and applies the BITNET_ISA cap, for every kernel family
// (sgemm, ternary, dense/block-quant, attention, elementwise). Each family maps these feature bits to its own
// path levels; its "set_isa" override caps at what the CPU has (`cpu`), its default is what `usable` allows.
#ifndef BITNET_CPU_FEATURES_H
#define BITNET_CPU_FEATURES_H

enum {
    BITNET_CPU_AVX2 = 1u << 0,
    BITNET_CPU_FMA = 1u << 1,
    BITNET_CPU_F16C = 1u << 2,
    BITNET_CPU_AVX512F = 1u << 3,
    BITNET_CPU_AVX512BW = 1u << 4,
    BITNET_CPU_AVX512VL = 1u << 5,
    BITNET_CPU_AVX512DQ = 1u << 6,
    BITNET_CPU_AVX512VNNI = 1u << 7,
    BITNET_CPU_AVX512VBMI = 1u << 8,
};
/// Every AVX-512 bit: what BITNET_ISA=avx2 takes away.
#define BITNET_CPU_AVX512_ALL                                                                                     \
    (BITNET_CPU_AVX512F | BITNET_CPU_AVX512BW | BITNET_CPU_AVX512VL | BITNET_CPU_AVX512DQ | BITNET_CPU_AVX512VNNI | \
     BITNET_CPU_AVX512VBMI)

typedef struct {
    /// What the CPU (and the OS, which must save the ymm/zmm state) supports: __builtin_cpu_supports.
    unsigned cpu;
    /// `cpu` less what the BITNET_ISA environment variable rules out: "portable" or "scalar" leave nothing,
    /// "avx2" or "avx2+fma" drop every AVX-512 bit, anything else (or unset) leaves `cpu` as it is.
    unsigned usable;
} bitnet_cpu_info;

/// Detected and BITNET_ISA read on the first call (thread-safe), then cached.
__attribute__((visibility("hidden"))) const bitnet_cpu_info *bitnet_cpu(void);

/// Whether `features` holds every bit of `want`.
static inline int bitnet_cpu_has(unsigned features, unsigned want) { return (features & want) == want; }

/// A family's path levels (0 = portable, higher = wider): `level(features)` is the best level those features run.
typedef int (*bitnet_isa_level_fn)(unsigned features);

/// The family's path in effect, kept in `*selected` (-1 until the first call): by default the best level BITNET_ISA
/// allows (`usable`).
static inline int bitnet_isa_selected(int *selected, bitnet_isa_level_fn level) {
    int isa = __atomic_load_n(selected, __ATOMIC_RELAXED);
    if (isa < 0) {
        isa = level(bitnet_cpu()->usable);
        __atomic_store_n(selected, isa, __ATOMIC_RELAXED);
    }
    return isa;
}

/// The family's override (tests, benchmarks): `isa` capped at what the CPU runs (not what BITNET_ISA allows) and
/// at least portable; returns the path now in effect.
static inline int bitnet_isa_select(int *selected, bitnet_isa_level_fn level, int isa) {
    const int cpu = level(bitnet_cpu()->cpu);
    isa = isa > cpu ? cpu : (isa < 0 ? 0 : isa);
    __atomic_store_n(selected, isa, __ATOMIC_RELAXED);
    return isa;
}

#endif
