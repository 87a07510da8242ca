import XCTest
@testable import BitNetKernels
import CBitNetKernels
import Foundation

final class WeightArenaTests: XCTestCase {
    /// Placed buffers keep their contents, start on 64-byte lines inside one 2 MiB-aligned region, borrow the
    /// arena (which outlives the last of them) and do not count as file-backed; a full arena refuses nothing it sized.
    func testPlacedBuffersKeepContentsAndAlignment() throws {
        let a: [UInt8] = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        let b: [UInt16] = (0..<333).map { UInt16(truncatingIfNeeded: $0 &* 911) }
        let sizes = [a.count, b.count * 2]
        XCTAssertEqual(WeightArena.bytesNeeded(sizes), 1024 + 704)
        var placedA: KernelBuffer<UInt8>?
        var placedB: KernelBuffer<UInt16>?
        do {
            let arena = try XCTUnwrap(WeightArena(capacity: WeightArena.bytesNeeded(sizes), hugePages: false))
            XCTAssertEqual(Int(bitPattern: arena.base) % (2 << 20), 0)
            placedA = arena.place(KernelBuffer(a))
            placedB = arena.place(KernelBuffer(b))
            XCTAssertEqual(arena.used, 1024 + 704)
            XCTAssertEqual(arena.hugePageBytes, 0)   // not advised
        }
        // The arena is gone from this scope; the buffers keep it alive.
        let pa = try XCTUnwrap(placedA), pb = try XCTUnwrap(placedB)
        XCTAssertEqual(pa.array, a)
        XCTAssertEqual(pb.array, b)
        XCTAssertTrue(pa.isBorrowed && !pa.isFileBacked && pa.arena != nil)
        XCTAssertTrue(pa.arena === pb.arena)
        pa.withUnsafeBufferPointer { XCTAssertEqual(Int(bitPattern: $0.baseAddress!) % 64, 0) }
        pb.withUnsafeBufferPointer { p in
            pa.withUnsafeBufferPointer { XCTAssertEqual(UnsafeRawPointer(p.baseAddress!) - UnsafeRawPointer($0.baseAddress!), 1024) }
        }
        XCTAssertTrue(pa.isMovable(true) && !pa.isMovable(false))
        XCTAssertTrue(KernelBuffer(a).isMovable(false))
        XCTAssertNil(WeightArena(capacity: 0))
    }

    /// With THP in "madvise" mode (this project's machines), a region advised for huge pages and touched is backed by
    /// 2 MiB pages where the kernel has them free, and one not advised never is; the count comes from smaps and is a
    /// whole number of huge pages, at most the region.
    func testHugePageAdviceAndAccounting() throws {
        guard let mode = try? String(contentsOfFile: "/sys/kernel/mm/transparent_hugepage/enabled", encoding: .utf8) else {
            throw XCTSkip("no transparent huge pages on this system")
        }
        let bytes = 8 << 20
        let huge = try XCTUnwrap(WeightArena(capacity: bytes, hugePages: true))
        let plain = try XCTUnwrap(WeightArena(capacity: bytes, hugePages: false))
        let ones = KernelBuffer([UInt8](repeating: 1, count: bytes))
        _ = huge.place(ones); _ = plain.place(ones)
        XCTAssertEqual(huge.hugePageBytes % (2 << 20), 0)
        XCTAssertLessThanOrEqual(huge.hugePageBytes, bytes)
        if mode.contains("[madvise]") {
            XCTAssertEqual(plain.hugePageBytes, 0, mode)
            // A tail past the last whole 2 MiB gets a huge page only when it fills half of it: 2.5 MiB has at most
            // one huge page, 3 MiB at most two; an arena under 2 MiB none.
            for (mib, most) in [(5, 2), (6, 4)] {
                let odd = try XCTUnwrap(WeightArena(capacity: mib << 19, hugePages: true))
                _ = odd.place(KernelBuffer([UInt8](repeating: 2, count: mib << 19)))
                XCTAssertLessThanOrEqual(odd.hugePageBytes, most << 20, "\(mib) / 2 MiB")
            }
            let small = try XCTUnwrap(WeightArena(capacity: 1 << 20, hugePages: true))
            _ = small.place(KernelBuffer([UInt8](repeating: 3, count: 1 << 20)))
            XCTAssertEqual(small.hugePageBytes, 0)
        }
        if mode.contains("[never]") {
            XCTAssertEqual(huge.hugePageBytes, 0, mode)
        }
    }
}
