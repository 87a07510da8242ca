import XCTest
import BitNetKernels
@testable import BitNetTools

final class HeadBenchTests: XCTestCase {
    /// The benchmark runs every format on a small matrix and reports the bytes it streamed (no timing asserted).
    func testHeadBenchSmallRun() {
        var lines: [String] = []
        let (bw, rows) = HeadBench.run(rows: 64, cols: 100, tokens: 3, repetitions: 1, bandwidthBytes: 1 << 20, pool: ThreadPool(threadCount: 2)) { lines.append($0) }
        XCTAssertTrue(bw > 0 && bw.isFinite)
        XCTAssertEqual(rows.map(\.format), ["f16", "q8", "q6", "q4"])
        XCTAssertEqual(rows.map(\.bytes), [64 * 200, 64 * 4 * 36, 64 * 104, 64 * 72])
        XCTAssertTrue(rows.allSatisfy { $0.gemvSeconds > 0 && $0.gemmSeconds > 0 && $0.gemvLoopSeconds > 0 })
        XCTAssertEqual(lines.count, 5)
    }
}
