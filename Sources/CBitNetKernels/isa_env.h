// Shared by the kernel files: how the BITNET_ISA environment variable caps a detected instruction-set level.
#ifndef BITNET_ISA_ENV_H
#define BITNET_ISA_ENV_H

#include <stdlib.h>
#include <string.h>

/// `level` is what the CPU supports (0 = portable); "portable"/"scalar" force 0, "avx2"/"avx2+fma" cap it at
/// `avx2_level`; anything else leaves it unchanged.
static inline int bitnet_isa_env_cap(int level, int avx2_level) {
    const char *env = getenv("BITNET_ISA");
    if (!env) return level;
    if (strcmp(env, "portable") == 0 || strcmp(env, "scalar") == 0) return 0;
    if ((strcmp(env, "avx2") == 0 || strcmp(env, "avx2+fma") == 0) && level > avx2_level) return avx2_level;
    return level;
}

#endif
