import Foundation
import XCTest
import BitNet   // the public API only: this file compiles against what a user sees

/// The README's library example, compiled and run as written (the test checks that README.md holds this code).
final class READMEExampleTests: XCTestCase {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let output = "runs/readme-example"

    func testREADMEShowsThisExample() throws {
        func example(_ text: String, from start: String, to end: String) throws -> String {
            let a = try XCTUnwrap(text.range(of: start)), b = try XCTUnwrap(text.range(of: end, range: a.upperBound..<text.endIndex))
            return text[a.upperBound..<b.lowerBound].split(separator: "\n", omittingEmptySubsequences: false)
                .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: "\n")
        }
        let readme = try String(contentsOf: Self.repoRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let source = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        XCTAssertEqual(try example(readme, from: "```swift\nimport BitNet\n", to: "```"),
                       try example(source, from: "// README example begins\n", to: "// README example ends"))
    }

    func testREADMEExampleRuns() async throws {
        let fm = FileManager.default
        let previous = fm.currentDirectoryPath
        fm.changeCurrentDirectoryPath(Self.repoRoot.path)
        defer { fm.changeCurrentDirectoryPath(previous) }
        guard fm.fileExists(atPath: "../shared/data/tinyshakespeare.txt") else { throw XCTSkip("../shared/data not present") }
        // Never touch a folder a user made: run only where the example's output does not exist yet.
        guard !fm.fileExists(atPath: Self.output) else { throw XCTSkip("\(Self.output) exists; remove it to run this test") }
        defer { for p in [Self.output, Self.output + ".gguf", Self.output + "-f32.gguf"] { try? fm.removeItem(atPath: p) } }

        // README example begins
        // Train a BitNet b1.58 model from scratch on a text file (re-running resumes from its checkpoint).
        var run = try TrainingRun(data: ["../shared/data/tinyshakespeare.txt"], output: "runs/readme-example", size: "tiny")
        run.options.steps = 60
        let result = try run.run()
        print("held-out loss \(result.finalValLoss)")

        // Load it (or a GGUF, Hugging Face or llama2.c model) and stream a generation.
        let model = try LanguageModel(path: "runs/readme-example")
        var story = ""
        for try await piece in model.generate("ROMEO:", options: GenerationOptions(maxTokens: 32, temperature: 0)) {
            print(piece, terminator: "")
            story += piece
        }

        // Chat, evaluate, convert for bitnet.cpp (GGUF I2_S) or llama.cpp (tq2_0, tq1_0).
        let chat = try model.chat(system: "You are a poet.")
        var reply = ""
        for try await piece in chat.send("Speak of the moon.", options: GenerationOptions(maxTokens: 16)) { reply += piece }
        let ppl = try perplexity(ofModelAt: "runs/readme-example", on: "ROMEO: But soft, what light through yonder window breaks?")
        print("perplexity \(ppl.perplexity), \(ppl.bitsPerByte) bits per byte")
        try convertModel(at: "runs/readme-example", to: .gguf(weights: "i2_s"), output: "runs/readme-example.gguf")
        // README example ends

        // What the example did, checked against other ways to the same numbers.
        XCTAssertEqual(result.log.last?.step, 60)
        XCTAssertTrue(result.finalValLoss.isFinite && result.finalValLoss < log(Double(model.config.vocabSize)))
        XCTAssertEqual(story, try model.complete("ROMEO:", options: GenerationOptions(maxTokens: 32, temperature: 0)))
        XCTAssertEqual(chat.messages.map(\.role), [.system, .user, .assistant])
        XCTAssertEqual(chat.messages.last?.content, reply)
        XCTAssertEqual(ppl.bitsPerByte, ppl.meanNLL * Double(ppl.tokens) / log(2) / Double(ppl.bytes), accuracy: 1e-12)
        // Exported with an f32 embedding (lossless), the GGUF generates the checkpoint's greedy text exactly.
        try convertModel(at: Self.output, to: .gguf(weights: "i2_s", embedding: "f32"), output: Self.output + "-f32.gguf")
        let exported = try LanguageModel(path: Self.output + "-f32.gguf")
        XCTAssertEqual(try exported.complete("ROMEO:", options: GenerationOptions(maxTokens: 32, temperature: 0)), story)
    }

    /// Streaming from the bundled llama2.c model reproduces llama2.c's own greedy output, and stopping the iteration
    /// early ends the generation.
    func testStreamingMatchesLlama2c() async throws {
        let dir = Self.repoRoot.deletingLastPathComponent().appendingPathComponent("shared/data/stories260K")
        guard FileManager.default.fileExists(atPath: dir.path) else { throw XCTSkip("stories260K not present") }
        let model = try LanguageModel(path: dir.appendingPathComponent("stories260K.bin").path,
                                      tokenizer: dir.appendingPathComponent("tok512.bin").path)
        var text = ""
        for try await piece in model.generate("", options: GenerationOptions(maxTokens: 40, temperature: 0)) { text += piece }
        XCTAssertTrue(text.hasPrefix("Once upon a time, there was a little girl named Lily. She loved to play outside in the park."), text)
        var pieces = 0
        for try await _ in model.generate("", options: GenerationOptions(maxTokens: 200, temperature: 0)) {
            pieces += 1
            if pieces == 3 { break }
        }
        XCTAssertEqual(pieces, 3)
        // The model is free again: the cancelled generation released it.
        XCTAssertEqual(try model.complete("", options: GenerationOptions(maxTokens: 40, temperature: 0)), text)
    }
}
