import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

/// Every model format against transformers' float32 logits (scripts/make_format_fixtures.py): the same random
/// BitNet b1.58 model written as HF packed, HF bf16 master weights, and GGUF TQ1_0/TQ2_0/I2_S/F16/Q8_0 by the
/// reference tools. Per position: KL(reference ‖ ours) ≤ 2e-3 and the same argmax.
final class FormatLogitTests: XCTestCase {
    static let dir = TestPaths.fixtures.appendingPathComponent("formats")

    struct Reference { let tokens: [Int]; let vocab: Int; let files: [String: String] }

    static func reference() throws -> Reference {
        let j = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("reference.json"))) as! [String: Any]
        return Reference(tokens: (j["tokens"] as! [NSNumber]).map(\.intValue), vocab: (j["vocab_size"] as! NSNumber).intValue,
                         files: j["files"] as! [String: String])
    }

    static func floats(_ file: String) throws -> [Float] {
        let d = try Data(contentsOf: dir.appendingPathComponent(file))
        return d.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    /// Logits of our inference path for the reference tokens, [T, vocab].
    static func ourLogits(_ w: ModelWeights, _ tokens: [Int]) throws -> [Float] {
        let s = InferenceSession(model: InferenceModel(weights: w))
        var out: [Float] = []
        for t in tokens { out += Array(try s.step(token: t)) }
        return out
    }

    /// KL(p ‖ q) of softmax(a) and softmax(b).
    static func kl(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Double {
        func logSoftmax(_ x: ArraySlice<Float>) -> [Double] {
            let m = Double(x.max()!)
            let lse = log(x.reduce(0.0) { $0 + exp(Double($1) - m) }) + m
            return x.map { Double($0) - lse }
        }
        let lp = logSoftmax(a), lq = logSoftmax(b)
        return zip(lp, lq).reduce(0) { $0 + exp($1.0) * ($1.0 - $1.1) }
    }

    /// Checks one model against one reference logits file; returns the worst KL for the report.
    @discardableResult
    func check(_ model: String, against refName: String, file: StaticString = #filePath, line: UInt = #line) throws -> Double {
        let ref = try Self.reference()
        let loaded = try ModelFile.load(path: Self.dir.appendingPathComponent(model).path)
        XCTAssertEqual(loaded.weights.config.vocabSize, ref.vocab, file: file, line: line)
        let ours = try Self.ourLogits(loaded.weights, ref.tokens)
        let theirs = try Self.floats(ref.files[refName]!)
        XCTAssertEqual(ours.count, theirs.count, file: file, line: line)
        var worst = 0.0
        let v = ref.vocab
        for t in 0..<ref.tokens.count {
            let a = theirs[(t * v)..<((t + 1) * v)], b = ours[(t * v)..<((t + 1) * v)]
            let k = Self.kl(a, b)
            worst = max(worst, k)
            XCTAssertLessThanOrEqual(k, 2e-3, "\(model) position \(t) KL", file: file, line: line)
            XCTAssertEqual(a.firstIndex(of: a.max()!), b.firstIndex(of: b.max()!), "\(model) position \(t) argmax", file: file, line: line)
        }
        print(String(format: "%@ vs transformers (%@): max KL per position %.3e", model, refName, worst))
        return worst
    }

    func testHFPackedMatchesTransformers() throws { try check("hf-packed", against: "hf-packed") }
    func testHFMasterBF16MatchesTransformers() throws { try check("hf-bf16", against: "hf-bf16") }
    func testGGUFTQ1MatchesTransformers() throws { try check("model-tq1_0.gguf", against: "hf-packed") }
    func testGGUFTQ2MatchesTransformers() throws { try check("model-tq2_0.gguf", against: "hf-packed") }
    func testGGUFI2SMatchesTransformers() throws { try check("model-i2_s.gguf", against: "hf-packed") }
    func testGGUFF16MatchesTransformers() throws { try check("model-f16.gguf", against: "hf-packed") }
    func testGGUFQ8MatchesTransformers() throws { try check("model-q8_0.gguf", against: "hf-packed") }

    /// The reference files load into one model: same config, and the ternary codes of every linear agree.
    func testAllFormatsDescribeTheSameModel() throws {
        let base = try ModelFile.load(path: Self.dir.appendingPathComponent("hf-packed").path).weights
        XCTAssertEqual(base.config.ffn, .relu2)
        XCTAssertTrue(base.config.tieEmbeddings && base.config.subNorm)
        XCTAssertEqual(base.config.ropeTheta, 500000)
        XCTAssertEqual(base.config.nKVHeads, 2)
        for f in ["model-tq1_0.gguf", "model-tq2_0.gguf", "model-i2_s.gguf", "model-f16.gguf", "model-q8_0.gguf"] {
            let w = try ModelFile.load(path: Self.dir.appendingPathComponent(f).path).weights
            XCTAssertEqual(w.config.ffn, .relu2, f)
            for s in w.layout.slots where s.shape.count == 2 && s.offset != w.layout.embedding {
                let a = TernaryWeights.quantize(base.ptr + s.offset, rows: s.shape[0], cols: s.shape[1], arch: .b158, groups: 1)
                let b = TernaryWeights.quantize(w.ptr + s.offset, rows: s.shape[0], cols: s.shape[1], arch: .b158, groups: 1)
                XCTAssertEqual(a.codes, b.codes, "\(f) \(s.name) codes")
                XCTAssertEqual(a.scales[0], b.scales[0], accuracy: a.scales[0] * 2e-3, "\(f) \(s.name) scale")
            }
        }
    }
}
