import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

/// The Transformer core against a real model no one here wrote: stories260K from llama2.c.
final class Llama2cTests: XCTestCase {
    func testStories260KGreedyMatchesLlama2c() throws {
        let model = try TestPaths.sharedFile("stories260K/stories260K.bin")
        let tok = try TestPaths.sharedFile("stories260K/tok512.bin")
        let loaded = try ModelFile.load(path: model, tokenizerPath: tok)
        let c = loaded.weights.config
        XCTAssertEqual([c.dim, c.ffnDim, c.nLayers, c.nHeads, c.nKVHeads, c.vocabSize, c.maxSeqLen], [64, 172, 5, 8, 4, 512, 512])
        var o = GenerationOptions()
        o.temperature = 0; o.maxTokens = 200
        var text = ""
        try Generator(model: InferenceModel(weights: loaded.weights), tokenizer: loaded.tokenizer!).generate(promptTokens: [1], options: o) { text += $0 }
        // Greedy output of llama2.c for stories260K (its sample.py at temperature 0, as published with the model).
        let expected = """
            Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.
            Lily's mom said, "Lily, let's go to the park." Lily was sad and didn't know what to do. She said, "I want to play with your ball, but I can't find it."
            Lily was sad and didn't know what to do. She said, "I'm sorry, Lily. I didn't know what to do."
            Lily didn't want to help her mom, so sh
            """
        XCTAssertTrue(text.hasPrefix(expected), "got: \(text)")
    }

    func testTruncatedLlama2cFileIsANamedError() throws {
        let model = try TestPaths.sharedFile("stories260K/stories260K.bin")
        let data = try Data(contentsOf: URL(fileURLWithPath: model))
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bad = dir.appendingPathComponent("cut.bin")
        try data.prefix(data.count / 3).write(to: bad)
        XCTAssertThrowsError(try ModelFile.load(path: bad.path)) { XCTAssertTrue("\($0)".contains("truncated"), "\($0)") }
        var hostile = data
        hostile.replaceSubrange(0..<4, with: withUnsafeBytes(of: Int32(-5).littleEndian) { Data($0) })
        try hostile.write(to: bad)
        XCTAssertThrowsError(try ModelFile.load(path: bad.path)) { XCTAssertTrue("\($0)".contains("dim"), "\($0)") }
    }

    /// A NaN or infinity among the weights is refused, naming the tensor (it made every logit NaN: `<unk>`, exit 0).
    func testNonFiniteWeightsAreRefused() throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: try TestPaths.sharedFile("stories260K/stories260K.bin")))
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bad = dir.appendingPathComponent("nan.bin")
        // The header is 28 bytes; the embedding (512 x 64) comes first, then the attention norms.
        for (at, value, tensor) in [(28 + 4 * 7, Float.nan, "tok_embeddings"), (28 + 4 * (512 * 64 + 3), Float.infinity, "attention_norm")] {
            var hostile = data
            hostile.replaceSubrange(at..<(at + 4), with: withUnsafeBytes(of: value.bitPattern.littleEndian) { Data($0) })
            try hostile.write(to: bad)
            XCTAssertThrowsError(try ModelFile.load(path: bad.path)) { error in
                XCTAssertTrue("\(error)".contains("non-finite value \(value) at index"), "\(error)")
                XCTAssertTrue("\(error)".contains(tensor), "\(tensor): \(error)")
            }
        }
        data.removeAll()
    }
}
