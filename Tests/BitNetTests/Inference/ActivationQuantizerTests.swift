import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

final class ActivationQuantizerTests: XCTestCase {
    /// The fused RMSNorm + quantization gives exactly the codes and scales of RMSNorm followed by absmax quantization.
    func testFusedNormQuantizeEqualsNormThenQuantize() {
        for (rows, dim, groups, bits) in [(1, 64, 1, 8), (5, 96, 2, 8), (3, 40, 1, 4)] {
            var x = randomArray(rows * dim, seed: UInt64(dim), scale: 3)
            x[0] = 80   // an outlier sets γ of row 0
            let w = randomArray(dim, seed: 99).map { 1 + $0 / 2 }
            var normed = [Float](repeating: 0, count: rows * dim)
            RMSNorm.forward(out: &normed, rstd: nil, x: x, weight: w, rows: rows, dim: dim, groups: groups, eps: 1e-5)
            var refCodes = [Int8](repeating: 0, count: rows * dim), refScales = [Float](repeating: 0, count: rows)
            ActivationQuantizer.quantize(normed, rows: rows, cols: dim, bits: bits, codes: &refCodes, scales: &refScales)
            var codes = [Int8](repeating: 0, count: rows * dim), scales = [Float](repeating: 0, count: rows)
            ActivationQuantizer.normQuantize(x, weight: w, rows: rows, dim: dim, groups: groups, eps: 1e-5, bits: bits,
                                             codes: &codes, scales: &scales)
            XCTAssertEqual(codes, refCodes)
            XCTAssertEqual(scales, refScales)
            // And the codes follow Eq. 6 by hand: round(x·Q_p/(γ+ε)), clipped.
            let qp = Float((1 << (bits - 1)) - 1)
            for t in 0..<rows {
                let row = normed[(t * dim)..<((t + 1) * dim)], gamma = row.map(abs).max()!
                XCTAssertEqual(scales[t], qp / (gamma + 1e-5))
                for (j, v) in row.enumerated() {
                    XCTAssertEqual(Float(codes[t * dim + j]), min(qp, max(-qp - 1, (v * scales[t]).rounded(.toNearestOrEven))))
                }
            }
        }
    }
}
