import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

/// A tokenizer with one id per byte (ids 0..<256), so hand-made items tokenize predictably.
struct ByteTokenizer: Tokenizer {
    var vocabSize: Int { 256 }
    var bosID: Int? { nil }
    var eosID: Int? { nil }
    func encode(_ text: String) -> [Int] { text.utf8.map { Int($0) } }
    func decode(_ ids: [Int]) -> String { String(decoding: ids.map { UInt8($0) }, as: UTF8.self) }
    func tokenBytes(_ id: Int) -> [UInt8] { [UInt8(id)] }
    func tokenBytes(_ id: Int, after previousID: Int?) -> [UInt8] { [UInt8(id)] }
}

final class LogLikelihoodTests: XCTestCase {
    /// A model with all-zero weights predicts the uniform distribution: every continuation token costs ln V, and
    /// greedy decoding (first maximum) picks token 0.
    func testUniformModelLogLikelihoodIsMinusNLogV() throws {
        let v = 37
        let w = ModelWeights(config: tinyConfig(.fp, vocab: v, seq: 16))
        let scorer = GraphScorer(weights: w, batch: 3)
        let reqs = [LogLikelihoodRequest(context: [1, 2, 3], continuation: [4]),
                    LogLikelihoodRequest(context: [5], continuation: [6, 7, 8, 9]),
                    LogLikelihoodRequest(context: [1], continuation: [0, 0]),
                    LogLikelihoodRequest(context: Array(repeating: 3, count: 30), continuation: [2, 2, 2])]   // cut on the left
        let r = try scorer.score(reqs)
        for (req, res) in zip(reqs, r) {
            XCTAssertEqual(res.logLikelihood, -Double(req.continuation.count) * log(Double(v)), accuracy: 1e-4)
        }
        XCTAssertEqual(r.map(\.isGreedy), [false, false, true, false])
    }

    /// The batched, length-bucketed graph scorer equals a one-sequence-at-a-time log-softmax through the inference
    /// session (a different code path: KV cache, integer BitLinear), request by request, including left truncation.
    func testGraphScorerMatchesInferenceSession() throws {
        for arch in [Architecture.fp, .b158] {
            let c = tinyConfig(arch, vocab: 37, seq: 24)
            let w = ModelWeights(config: c, seed: 7)
            var rng = SeededRNG(seed: 3)
            let reqs = (0..<9).map { i in
                LogLikelihoodRequest(context: (0..<(3 + 4 * i)).map { _ in rng.nextInt(below: 37) },
                                     continuation: (0..<(1 + i % 4)).map { _ in rng.nextInt(below: 37) })
            }
            let got = try GraphScorer(weights: w, batch: 4).score(reqs)
            let model = InferenceModel(weights: w)
            for (req, res) in zip(reqs, got) {
                let all = Array((req.context + req.continuation).suffix(c.maxSeqLen + 1))
                let session = InferenceSession(model: model)
                var ll = 0.0
                for j in 0..<(all.count - 1) {
                    let logits = Array(try session.step(token: all[j]))
                    guard j + 1 >= all.count - req.continuation.count else { continue }
                    let m = logits.max()!
                    let lse = Double(m) + log(logits.reduce(0.0) { $0 + Double(expf($1 - m)) })
                    ll += Double(logits[all[j + 1]]) - lse
                }
                // b1.58 through the integer kernels differs from fake quantization by float rounding only.
                XCTAssertEqual(res.logLikelihood, ll, accuracy: arch == .fp ? 1e-3 : 2e-2, "\(arch)")
            }
            let viaSession = try SessionScorer(model: model, kvCache: .f32).score(reqs)
            for (a, b) in zip(got, viaSession) { XCTAssertEqual(a.logLikelihood, b.logLikelihood, accuracy: arch == .fp ? 1e-3 : 2e-2) }
        }
    }

    func testBadRequestsAreNamedErrors() {
        let w = ModelWeights(config: tinyConfig(.fp, vocab: 37, seq: 8))
        let s = GraphScorer(weights: w)
        XCTAssertThrowsError(try s.score([LogLikelihoodRequest(context: [], continuation: [1])]))
        XCTAssertThrowsError(try s.score([LogLikelihoodRequest(context: [1], continuation: [])]))
        // A continuation longer than the window: its last 8 tokens are scored (uniform model: −8 ln V).
        XCTAssertEqual(try s.score([LogLikelihoodRequest(context: [1], continuation: Array(repeating: 1, count: 12))])[0].logLikelihood,
                       -8 * log(37.0), accuracy: 1e-4)
        XCTAssertThrowsError(try s.score([LogLikelihoodRequest(context: [1], continuation: [99])]))
    }

    /// The session scorer's windowed held-out loss of a uniform model is ln V per token with every token but the first scored.
    func testSessionHeldOutLossOfUniformModel() throws {
        let w = ModelWeights(config: tinyConfig(.fp, vocab: 37, seq: 8))
        for format in KVCacheFormat.allCases {
            let s = try SessionScorer(model: InferenceModel(weights: w), kvCache: format)
            let r = try s.heldOutLoss((0..<30).map { Int32($0) })
            XCTAssertEqual(r.count, 29)
            XCTAssertEqual(r.loss, log(37.0), accuracy: 1e-4)
        }
    }
}
