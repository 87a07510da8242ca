import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

/// llama.cpp's golden tokenizer vectors (models/ggml-vocab-*.gguf.inp/.out of llama-cpp-python 0.3.36) through the
/// GGUF-embedded vocabularies, pruned to the tokens the inputs can produce by scripts/make_vocab_fixtures.py.
final class GGUFVocabularyTests: XCTestCase {
    static let dir = TestPaths.fixtures.appendingPathComponent("formats/vocab")

    func golden(_ name: String) throws -> (tokenizer: any Tokenizer, cases: [(String, [Int])]) {
        let path = Self.dir.appendingPathComponent("\(name).gguf").path
        let f = try GGUFFile.read(path: path)
        let tok = try XCTUnwrap(try GGUFVocabulary.tokenizer(from: f))
        let original = try XCTUnwrap(f["test.original_ids"]?.array?.compactMap(\.int))
        var inp = try String(contentsOfFile: path + ".inp", encoding: .utf8).components(separatedBy: "\n__ggml_vocab_test__\n")
        if inp.last == "" { inp.removeLast() }  // the file ends with a separator
        var out = try String(contentsOfFile: path + ".out", encoding: .utf8).components(separatedBy: "\n")
        if out.last == "" { out.removeLast() }
        XCTAssertEqual(inp.count, out.count, name)
        XCTAssertGreaterThan(inp.count, 40, name)
        let cases = zip(inp, out).map { (text, line) in (text, line.split(separator: " ").map { Int($0)! }) }
        // Map our (pruned) ids back to llama.cpp's.
        struct Remapped: Tokenizer {
            let inner: any Tokenizer, ids: [Int]
            var vocabSize: Int { inner.vocabSize }
            var bosID: Int? { inner.bosID }
            var eosID: Int? { inner.eosID }
            func encode(_ text: String) -> [Int] { inner.encode(text).map { ids[$0] } }
            func decode(_ t: [Int]) -> String { inner.decode(t.map { id in ids.firstIndex(of: id) ?? -1 }) }
            func tokenBytes(_ id: Int) -> [UInt8] { inner.tokenBytes(id) }
        }
        return (Remapped(inner: tok, ids: original), cases)
    }

    func check(_ name: String, roundTrip: Bool) throws {
        let (tok, cases) = try golden(name)
        var failures = 0
        for (text, expected) in cases {
            let got = tok.encode(text)
            if got != expected { failures += 1 }
            XCTAssertEqual(got, expected, "\(name): \(text.debugDescription)")
            if roundTrip { XCTAssertEqual(tok.decode(got), text, "\(name) decode: \(text.debugDescription)") }
        }
        print("\(name): \(cases.count - failures)/\(cases.count) golden vectors match")
    }

    func testLlamaBPEGoldenVectors() throws { try check("llama-bpe", roundTrip: true) }
    func testGPT2GoldenVectors() throws { try check("gpt-2", roundTrip: true) }
    func testLlamaSPMGoldenVectors() throws { try check("llama-spm", roundTrip: false) }
}

extension GGUFVocabularyTests {
    /// LLaMA 3 GGUF vocabularies start prompts with BOS (as llama.cpp does); the pre-tokenizer name picks the regex.
    func testLlamaBPEVocabularyAddsBOSAndUsesLlama3Splitting() throws {
        let f = try GGUFFile.read(path: Self.dir.appendingPathComponent("llama-bpe.gguf").path)
        let tok = try XCTUnwrap(try GGUFVocabulary.tokenizer(from: f) as? ByteLevelBPE)
        XCTAssertEqual(tok.preTokenizer, .llama3)
        XCTAssertTrue(tok.addsBOS)
        let gpt2 = try XCTUnwrap(try GGUFVocabulary.tokenizer(from: GGUFFile.read(path: Self.dir.appendingPathComponent("gpt-2.gguf").path)) as? ByteLevelBPE)
        XCTAssertEqual(gpt2.preTokenizer, .gpt2)
    }
}
