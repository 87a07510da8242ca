// Memory for weights that are streamed every token: anonymous mappings aligned to 2 MiB and advised for
// transparent huge pages (Linux MADV_HUGEPAGE), so a 700 MB model needs ~350 TLB entries instead of ~175,000 and
// the GEMVs stop paying for page walks; and how many of such a mapping's bytes the kernel did back with huge pages.
#ifndef BITNET_MEMORY_H
#define BITNET_MEMORY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Alignment of the regions bitnet_region_map returns, and the huge page size: 2 MiB.
#define BITNET_REGION_ALIGN ((size_t)2 << 20)

/// A zero-filled, read-write anonymous region of `bytes` at a 2 MiB-aligned address; with `huge` != 0 its 2 MiB
/// pages are advised for transparent huge pages (a no-op where the system has none). A tail past the last whole
/// 2 MiB gets a huge page of its own only when it fills at least half of it (the region is then rounded up to 2 MiB);
/// otherwise it stays on 4 KiB pages, as does a region under 2 MiB. NULL on failure or for bytes == 0. Free with
/// bitnet_region_unmap(p, bytes).
void *bitnet_region_map(size_t bytes, int huge);

/// Unmaps a region from bitnet_region_map (the same `bytes`).
void bitnet_region_unmap(void *p, size_t bytes);

/// Bytes of [p, p + bytes) backed by huge pages: the AnonHugePages of the mappings of /proc/self/smaps that hold
/// the range, capped at `bytes` (a mapping the kernel merged with a neighbour counts whole); 0 where smaps is
/// unavailable.
size_t bitnet_region_huge_bytes(const void *p, size_t bytes);

/// Resident bytes (Rss of /proc/self/smaps) of the whole mappings that overlap [p, p + bytes); 0 where smaps is
/// unavailable.
size_t bitnet_mapping_resident_bytes(const void *p, size_t bytes);

/// Drops this process's pages of the whole 4 KiB pages inside [p, p + bytes) of a read-only file mapping
/// (madvise MADV_DONTNEED): they leave the resident set, and a later read faults them back in from the file, so the
/// contents never change. Returns the bytes advised (0 for an empty or sub-page range, or where madvise fails).
size_t bitnet_file_pages_release(const void *p, size_t bytes);

#ifdef __cplusplus
}
#endif

#endif
