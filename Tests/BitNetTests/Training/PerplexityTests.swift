import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

final class PerplexityTests: XCTestCase {
    /// A model with all-zero linear weights and embedding predicts the uniform distribution: loss ln V, perplexity V,
    /// bits per byte = scored tokens · log2 V / bytes.
    func testUniformModelHasPerplexityV() throws {
        let text = String(repeating: "to be or not to be, that is the question. ", count: 20)
        let tok = try ByteLevelBPE.train(text: text, vocabSize: 300)
        // Zero weights (norm weights too): every activation is 0, so are the logits.
        let model = ModelWeights(config: ModelConfig(arch: .fp, vocabSize: tok.vocabSize, dim: 16, nLayers: 2, nHeads: 4,
                                                     nKVHeads: 2, ffnDim: 24, maxSeqLen: 16))
        for stride in [16, 5] {
            let r = try perplexity(weights: model, tokenizer: tok, text: text, context: 16, stride: stride)
            let n = tok.encode(text).count
            XCTAssertEqual(r.tokens, n - 1, "every token but the first is scored exactly once (stride \(stride))")
            XCTAssertEqual(r.meanNLL, log(Double(tok.vocabSize)), accuracy: 1e-5)
            XCTAssertEqual(r.perplexity, Double(tok.vocabSize), accuracy: 1e-2)
            XCTAssertEqual(r.bitsPerByte, Double(n - 1) * log2(Double(tok.vocabSize)) / Double(text.utf8.count), accuracy: 1e-6)
        }
    }

    /// Non-overlapping windows equal the mean cross-entropy computed window by window with the training loss.
    func testWindowedLossMatchesDirectCrossEntropy() {
        let c = tinyConfig(.b158, vocab: 37, seq: 8)
        let w = ModelWeights(config: c, seed: 4)
        var rng = SeededRNG(seed: 8)
        let tokens = (0..<33).map { _ in Int32(rng.nextInt(below: 37)) }   // 32 targets = 4 windows of 8
        let g = TrainingGraph(weights: w, batch: 2, seqLen: 8)
        let r = evaluateLoss(graph: g, tokens: tokens)
        XCTAssertEqual(r.count, 32)
        var total = 0.0
        let one = TrainingGraph(weights: w, batch: 1, seqLen: 8)
        for k in 0..<4 {
            let inp = (0..<8).map { Int(tokens[k * 8 + $0]) }, tgt = (0..<8).map { Int(tokens[k * 8 + $0 + 1]) }
            one.forward(inputs: inp, training: false)
            total += Double(CrossEntropy.forwardBackward(logits: one.logits.ptr, targets: tgt, vocab: 37, gradient: false)) * 8
        }
        XCTAssertEqual(r.loss, total / 32, accuracy: 1e-5)
    }
}
