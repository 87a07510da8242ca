// Weight regions on 2 MiB pages (see bitnet_memory.h).
#if !defined(_GNU_SOURCE) && !defined(__APPLE__)
#define _GNU_SOURCE   /* MAP_ANONYMOUS, MADV_HUGEPAGE */
#endif
#include "bitnet_memory.h"
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

// The mapped size: whole 2 MiB pages where the tail past the last one fills at least half a huge page (and the region
// has a whole one), whole 4 KiB pages otherwise. Only whole 2 MiB pages of it are advised, so a region never pins a
// huge page it uses less than half of, and one under 2 MiB stays on small pages.
static size_t region_size(size_t bytes) {
    const size_t whole = bytes / BITNET_REGION_ALIGN * BITNET_REGION_ALIGN, tail = bytes - whole;
    if (whole && tail >= BITNET_REGION_ALIGN / 2) return whole + BITNET_REGION_ALIGN;
    return (bytes + 4095) / 4096 * 4096;
}

void *bitnet_region_map(size_t bytes, int huge) {
    if (bytes == 0 || bytes > SIZE_MAX - 2 * BITNET_REGION_ALIGN) return NULL;
    const size_t size = region_size(bytes), span = size + BITNET_REGION_ALIGN;
    // Over-map by 2 MiB, then give back the unaligned head and the tail.
    uint8_t *raw = (uint8_t *)mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == (uint8_t *)MAP_FAILED) return NULL;
    const uintptr_t start = ((uintptr_t)raw + BITNET_REGION_ALIGN - 1) & ~(uintptr_t)(BITNET_REGION_ALIGN - 1);
    uint8_t *p = (uint8_t *)start;
    if (p > raw) munmap(raw, (size_t)(p - raw));
    if (raw + span > p + size) munmap(p + size, (size_t)(raw + span - (p + size)));
#ifdef MADV_HUGEPAGE
    const size_t whole = size / BITNET_REGION_ALIGN * BITNET_REGION_ALIGN;
    if (huge && whole) madvise(p, whole, MADV_HUGEPAGE);   // advice only: without THP the region stays on 4 KiB pages
#else
    (void)huge;
#endif
    return p;
}

void bitnet_region_unmap(void *p, size_t bytes) {
    if (p && bytes) munmap(p, region_size(bytes));
}

// Sum of one "<field>: N kB" line over the mappings of /proc/self/smaps that overlap [p, p + bytes); 0 where smaps
// is unavailable.
static size_t smaps_sum(const void *p, size_t bytes, const char *field) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f || bytes == 0) { if (f) fclose(f); return 0; }
    const uintptr_t lo = (uintptr_t)p, hi = lo + bytes;
    const size_t flen = strlen(field);
    char line[512];
    int inside = 0;
    size_t total = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long a, b, kb;
        char dash;
        // A mapping header: "start-end perms offset dev inode [path]".
        if (sscanf(line, "%llx%c%llx", &a, &dash, &b) == 3 && dash == '-' && strchr(line, ' ')) {
            inside = (uintptr_t)a < hi && (uintptr_t)b > lo;
            continue;
        }
        if (inside && strncmp(line, field, flen) == 0 && line[flen] == ':' && sscanf(line + flen + 1, " %llu kB", &kb) == 1)
            total += (size_t)kb * 1024;
    }
    fclose(f);
    return total;
}

size_t bitnet_region_huge_bytes(const void *p, size_t bytes) {
    const size_t total = smaps_sum(p, bytes, "AnonHugePages");
    return total < bytes ? total : bytes;
}

size_t bitnet_mapping_resident_bytes(const void *p, size_t bytes) { return smaps_sum(p, bytes, "Rss"); }

size_t bitnet_file_pages_release(const void *p, size_t bytes) {
    const uintptr_t lo = ((uintptr_t)p + 4095) & ~(uintptr_t)4095, hi = ((uintptr_t)p + bytes) & ~(uintptr_t)4095;
    if (bytes == 0 || hi <= lo) return 0;
    return madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0 ? hi - lo : 0;
}
