import CBitNetKernels

/// One region of memory holding a model's weights back to back, on 2 MiB transparent huge pages where the system
/// grants them (`bitnet_memory.h`). Decoding streams every weight once per token; on 4 KiB pages that is a TLB miss
/// and a page walk every 4 KiB, which the compute-bound ternary GEMVs cannot hide (measured 4-10 % of their time
/// on the 2B4T set). Buffers placed here borrow the arena, which lives as long as any of them.
package final class WeightArena: @unchecked Sendable {
    /// Start of the region (2 MiB-aligned).
    package let base: UnsafeMutableRawPointer
    /// Bytes the region can hold.
    package let capacity: Int
    /// Whether the region was advised for huge pages.
    package let hugePages: Bool
    /// Bytes placed so far (each buffer starts on a 64-byte line).
    package private(set) var used = 0

    /// Maps a region of `capacity` bytes; nil when the system refuses the mapping (or capacity is 0).
    package init?(capacity: Int, hugePages: Bool = true) {
        guard capacity > 0, let p = bitnet_region_map(capacity, hugePages ? 1 : 0) else { return nil }
        base = p; self.capacity = capacity; self.hugePages = hugePages
    }

    deinit { bitnet_region_unmap(base, capacity) }

    /// Bytes `buffers` of these sizes take in an arena (64-byte aligned starts).
    package static func bytesNeeded(_ sizes: [Int]) -> Int { sizes.reduce(0) { $0 + aligned($1) } }

    private static func aligned(_ n: Int) -> Int { (n + 63) & ~63 }

    /// A copy of `buffer` in the arena (the arena must have room: see `bytesNeeded`).
    package func place<E>(_ buffer: KernelBuffer<E>) -> KernelBuffer<E> {
        make(count: buffer.count) { dst in
            buffer.withUnsafeBufferPointer { src in
                if !src.isEmpty { UnsafeMutableRawPointer(dst).copyMemory(from: UnsafeRawPointer(src.baseAddress!), byteCount: src.count * MemoryLayout<E>.stride) }
            }
        }
    }

    /// `count` elements of the arena, written by `fill` (every element, before anything reads them), with no array
    /// in between: a layout conversion writes straight into the memory it will be streamed from.
    package func make<E>(count: Int, _ fill: (UnsafeMutablePointer<E>) -> Void) -> KernelBuffer<E> {
        let bytes = count * MemoryLayout<E>.stride
        precondition(used + Self.aligned(bytes) <= capacity, "WeightArena: \(bytes) bytes do not fit (\(used) of \(capacity) used)")
        let dst = (base + used).bindMemory(to: E.self, capacity: count)
        if count > 0 { fill(dst) }
        used += Self.aligned(bytes)
        return KernelBuffer(borrowing: UnsafePointer(dst), count: count, owner: self)
    }

    /// Bytes of the placed weights that sit on huge pages (from /proc/self/smaps; 0 where it cannot be read).
    package var hugePageBytes: Int { used == 0 ? 0 : bitnet_region_huge_bytes(base, used) }
}
