import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

/// The whole network against PyTorch autograd (scripts/torch_reference.py fixtures): logits, loss and the gradient of
/// every parameter, including the straight-through estimator of the two BitNet variants.
final class TorchOracleTests: XCTestCase {
    func compare(arch: String, gradTolerance: Float) throws {
        let dir = TestPaths.fixtures.appendingPathComponent("torch")
        let loaded = try ModelFile.load(path: dir.appendingPathComponent("\(arch).safetensors").path)
        let expected = try Safetensors.read(path: dir.appendingPathComponent("\(arch).expected.safetensors").path)
        let tokens = try expected.ints("tokens").map(Int.init)
        let shape = expected.entries["tokens"]!.shape
        let (b, t1) = (shape[0], shape[1]), t = t1 - 1
        var inputs: [Int] = [], targets: [Int] = []
        for r in 0..<b { for j in 0..<t { inputs.append(tokens[r * t1 + j]); targets.append(tokens[r * t1 + j + 1]) } }
        let w = loaded.weights
        let graph = TrainingGraph(weights: w, batch: b, seqLen: t)
        graph.forward(inputs: inputs, training: true)
        let logits = graph.logits.array
        let refLogits = try expected.floats("logits")
        XCTAssertLessThan(maxAbsDiff(logits, refLogits), 1e-4, "\(arch) logits")
        let grads = FloatBuffer(w.layout.totalCount)
        let loss = graph.lossAndGradients(inputs: inputs, targets: targets, gradients: grads.ptr)
        XCTAssertEqual(loss, try expected.floats("loss")[0], accuracy: 1e-5, "\(arch) loss")
        for s in w.layout.slots {
            let ref = try expected.floats("grad." + s.name)
            let ours = Array(UnsafeBufferPointer(start: grads.ptr + s.offset, count: s.count))
            let scale = max(ref.map(abs).max() ?? 0, 1e-6)
            XCTAssertLessThan(maxAbsDiff(ours, ref) / scale, gradTolerance, "\(arch) grad.\(s.name)")
        }
    }

    func testFullPrecisionMatchesTorch() throws { try compare(arch: "fp", gradTolerance: 1e-3) }
    // Quantized variants: a rounding decision that flips between implementations would move a gradient by a
    // quantization step, so the tolerance is looser; logits must still agree tightly.
    func testB158MatchesTorch() throws { try compare(arch: "bitnet-b1.58", gradTolerance: 5e-3) }
    func testB1MatchesTorch() throws { try compare(arch: "bitnet-b1", gradTolerance: 5e-3) }
}
