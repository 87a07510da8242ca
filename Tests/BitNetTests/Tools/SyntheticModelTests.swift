import XCTest
@testable import BitNetCore
@testable import BitNetKernels
@testable import BitNetInference
@testable import BitNetTools

/// A synthetic model drawn straight into `auto`'s layout (each layer converted as it is made) is the model drawn in t2
/// and converted afterwards: the same logits, bit for bit.
final class SyntheticModelTests: XCTestCase {
    func testDrawingInT3EqualsConvertingAfterwards() throws {
        guard TernaryKernels.base3IsFast else { throw XCTSkip("t3 is not auto's layout on this CPU") }
        // 640 columns: 128 bytes per row in t3 against 160 in t2, so auto picks t3.
        var c = ModelConfig(arch: .b158, vocabSize: 300, dim: 640, nLayers: 2, nHeads: 5, nKVHeads: 5, ffnDim: 640, maxSeqLen: 16, ffn: .swiglu,
                            tieEmbeddings: true)
        c.subNorm = true
        let direct = try InferenceModel(synthetic: c, seed: 3, headFormat: .q6, preferBase3: true)
        let later = try InferenceModel(synthetic: c, seed: 3, headFormat: .q6)
        XCTAssertEqual(later.ternaryLayout, .t2)
        later.setTernaryLayout(.t3)
        XCTAssertEqual(direct.ternaryLayout, .t3)
        XCTAssertEqual(direct.inferenceBytes, later.inferenceBytes)
        let a = try InferenceSession(model: direct, maxSeqLen: 8, kvCache: .f32), b = try InferenceSession(model: later, maxSeqLen: 8, kvCache: .f32)
        for t in [1, 7, 42, 299] { XCTAssertEqual(Array(try a.step(token: t)), Array(try b.step(token: t)), "token \(t)") }
    }
}
