// CPU feature detection and the BITNET_ISA cap, shared by every kernel family (see cpu_features.h).
#include "cpu_features.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static bitnet_cpu_info cpu_info;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

static unsigned detect(void) {
    unsigned f = 0;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) f |= BITNET_CPU_AVX2;
    if (__builtin_cpu_supports("fma")) f |= BITNET_CPU_FMA;
    if (__builtin_cpu_supports("f16c")) f |= BITNET_CPU_F16C;
    if (__builtin_cpu_supports("avx512f")) f |= BITNET_CPU_AVX512F;
    if (__builtin_cpu_supports("avx512bw")) f |= BITNET_CPU_AVX512BW;
    if (__builtin_cpu_supports("avx512vl")) f |= BITNET_CPU_AVX512VL;
    if (__builtin_cpu_supports("avx512dq")) f |= BITNET_CPU_AVX512DQ;
    if (__builtin_cpu_supports("avx512vnni")) f |= BITNET_CPU_AVX512VNNI;
    if (__builtin_cpu_supports("avx512vbmi")) f |= BITNET_CPU_AVX512VBMI;
#endif
    return f;
}

static unsigned env_cap(unsigned f) {
    const char *env = getenv("BITNET_ISA");
    if (!env) return f;
    if (strcmp(env, "portable") == 0 || strcmp(env, "scalar") == 0) return 0;
    if (strcmp(env, "avx2") == 0 || strcmp(env, "avx2+fma") == 0) return f & ~(unsigned)BITNET_CPU_AVX512_ALL;
    return f;
}

static void cpu_init(void) {
    cpu_info.cpu = detect();
    cpu_info.usable = env_cap(cpu_info.cpu);
}

const bitnet_cpu_info *bitnet_cpu(void) {
    pthread_once(&cpu_once, cpu_init);
    return &cpu_info;
}
