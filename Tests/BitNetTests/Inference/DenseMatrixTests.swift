import XCTest
@testable import BitNetCore
@testable import BitNetKernels
@testable import BitNetInference

/// A matrix built row block by row block (never whole in f32) equals, bit for bit, the one built from all its values.
final class DenseMatrixTests: XCTestCase {
    func testBlockwiseConstructionEqualsWholeConstruction() {
        let rows = 37, cols = 64
        let values = randomArray(rows * cols, seed: 11, scale: 0.5)
        for format in [HeadFormat.f32, .f16, .q8, .q6, .q4] {
            let whole = DenseMatrix(values, rows: rows, cols: cols, format: format)
            var calls = 0
            let blockwise = DenseMatrix(rows: rows, cols: cols, format: format, rowsPerBlock: 8) { r0, r1, out in
                calls += 1
                for i in 0..<((r1 - r0) * cols) { out[i] = values[r0 * cols + i] }
            }
            XCTAssertEqual(calls, 5, "\(format): 37 rows in blocks of 8")
            XCTAssertEqual(blockwise.values(), whole.values(), "\(format)")
            XCTAssertEqual(blockwise.format, whole.format)
            XCTAssertEqual(blockwise.bytes, whole.bytes)
            // Written straight into an arena of its own: the same values, and the weights live in the arena.
            let inArena = DenseMatrix(rows: rows, cols: cols, format: format, rowsPerBlock: 8, arenaHugePages: false) { r0, r1, out in
                for i in 0..<((r1 - r0) * cols) { out[i] = values[r0 * cols + i] }
            }
            XCTAssertEqual(inArena.values(), whole.values(), "\(format) in an arena")
            XCTAssertEqual(inArena.arena != nil, format != .f32, "\(format)")
        }
    }
}
