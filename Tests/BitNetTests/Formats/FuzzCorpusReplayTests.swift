import Foundation
import XCTest

/// Replays every libFuzzer harness's kept corpus, crashers and generated seeds (scripts/fuzz.sh,
/// Tests/BitNetTests/Fixtures/fuzz/<harness>/) through the same per-input function the harness runs
/// (`FuzzTargets`): each input must load or be refused with an error, never crash.
final class FuzzCorpusReplayTests: XCTestCase {
    static let dir = TestPaths.fixtures.appendingPathComponent("fuzz")

    /// The files of a folder (hidden ones such as .keep left out), sorted.
    static func files(_ d: URL) -> [URL] {
        ((try? FileManager.default.contentsOfDirectory(atPath: d.path)) ?? []).sorted().filter { !$0.hasPrefix(".") }
            .map { d.appendingPathComponent($0) }
            .filter { var isDir: ObjCBool = false; return FileManager.default.fileExists(atPath: $0.path, isDirectory: &isDir) && !isDir.boolValue }
    }

    func replay(_ name: String, minimum: Int) throws {
        let h = try XCTUnwrap(FuzzTargets.harness(name))
        let d = Self.dir.appendingPathComponent(name)
        let corpus = Self.files(d), crashers = Self.files(d.appendingPathComponent("crashers"))
        XCTAssertGreaterThanOrEqual(corpus.count, minimum, "the kept fuzz corpus of \(name) is missing (\(d.path))")
        for url in corpus + crashers { h.run(try Data(contentsOf: url)) }
        for seed in h.seeds() { h.run(seed.prefix(h.maxLen)) }
    }

    func testEveryHarnessHasACorpusFolder() {
        let folders = ((try? FileManager.default.contentsOfDirectory(atPath: Self.dir.path)) ?? []).filter { !$0.hasPrefix(".") }
        XCTAssertEqual(Set(FuzzTargets.harnesses.map(\.name)), Set(folders))
    }

    func testParsers() throws { try replay("parsers", minimum: 50) }
    func testTokenizerJSON() throws { try replay("tokenizer-json", minimum: 10) }
    func testHFModel() throws { try replay("hf-model", minimum: 10) }
    func testLlama2cModel() throws { try replay("llama2c-model", minimum: 10) }
    func testLlama2cTokenizer() throws { try replay("llama2c-tokenizer", minimum: 10) }
    func testModelFile() throws { try replay("model-file", minimum: 10) }
    func testCheckpoint() throws { try replay("checkpoint", minimum: 10) }
    func testGGUFVocab() throws { try replay("gguf-vocab", minimum: 10) }
    func testGGUFModel() throws { try replay("gguf-model", minimum: 10) }
    func testChatTemplate() throws { try replay("chat-template", minimum: 10) }
}
