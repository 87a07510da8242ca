@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools
import Foundation
import XCTest

final class ByteLevelBPETests: XCTestCase {
    private typealias Support = TokenizerTestSupport

    /// Trained once: vocab 512 on the first 200 KB of Tiny Shakespeare (nil when the data is absent).
    private static let shakespeare512: ByteLevelBPE? = {
        guard let text = try? Support.shakespeare() else { return nil }
        return try? ByteLevelBPE.train(text: Support.prefix(text, bytes: 200_000), vocabSize: 512)
    }()

    private func shakespeareTokenizer() throws -> ByteLevelBPE {
        _ = try Support.shakespeare()  // skips when the data is absent
        return try XCTUnwrap(Self.shakespeare512)
    }

    private func fixtureCorpus() throws -> String {
        try String(contentsOf: Support.fixtures.appendingPathComponent("corpus.txt"), encoding: .utf8)
    }

    // MARK: Round trips

    func testRoundTripTrickyStrings() throws {
        let bpe = try ByteLevelBPE.train(text: try fixtureCorpus(), vocabSize: 400)
        for text in Support.trickyStrings {
            let ids = bpe.encode(text)
            XCTAssertTrue(ids.allSatisfy { $0 >= 0 && $0 < bpe.vocabSize }, "ids out of range for \(text.debugDescription)")
            XCTAssertEqual(bpe.decode(ids), text, "round trip of \(text.debugDescription)")
            XCTAssertEqual(ids.flatMap { bpe.tokenBytes($0) }, Array(text.utf8))
            XCTAssertEqual(ByteLevelBPE.preTokenize(text).joined(), text)
        }
        XCTAssertEqual(bpe.encode(""), [])
    }

    func testRoundTripAllOfTinyShakespeare() throws {
        let text = try Support.shakespeare()
        let bpe = try shakespeareTokenizer()
        let ids = bpe.encode(text)
        XCTAssertEqual(bpe.decode(ids), text)
        XCTAssertTrue(ids.allSatisfy { $0 >= 0 && $0 < 510 }, "no special token in plain text")
        XCTAssertLessThan(ids.count, text.utf8.count)
    }

    func testSpecialTokenStringsArePlainText() throws {
        let bpe = try ByteLevelBPE.train(text: try fixtureCorpus(), vocabSize: 400)
        let text = "<|begin_of_text|>hi<|end_of_text|>"
        let ids = bpe.encode(text)
        XCTAssertFalse(ids.contains(try XCTUnwrap(bpe.bosID)))
        XCTAssertFalse(ids.contains(try XCTUnwrap(bpe.eosID)))
        XCTAssertEqual(bpe.decode(ids), text)
        // Specials decode to nothing.
        XCTAssertEqual(bpe.decode([bpe.bosID!] + bpe.encode("abc") + [bpe.eosID!]), "abc")
        XCTAssertEqual(bpe.tokenBytes(bpe.bosID!), [])
        XCTAssertEqual(bpe.tokenBytes(-1), [])
        XCTAssertEqual(bpe.tokenBytes(bpe.vocabSize), [])
    }

    // MARK: Training

    func testDeterministicTraining() throws {
        let text = Support.prefix(try Support.shakespeare(), bytes: 200_000)
        let a = try ByteLevelBPE.train(text: text, vocabSize: 512)
        let b = try ByteLevelBPE.train(text: text, vocabSize: 512)
        XCTAssertEqual(a.merges, b.merges)
        XCTAssertEqual(try a.jsonData(), try b.jsonData())
        XCTAssertEqual(a.merges, try shakespeareTokenizer().merges)
    }

    func testVocabSizeIsExact() throws {
        let bpe = try shakespeareTokenizer()
        XCTAssertEqual(bpe.vocabSize, 512)
        XCTAssertEqual(bpe.bosID, 510)
        XCTAssertEqual(bpe.eosID, 511)
        XCTAssertEqual(bpe.specialTokens, ByteLevelBPE.defaultSpecialTokens)
        XCTAssertEqual(bpe.specialTokenIDs, [510, 511])
        XCTAssertEqual(bpe.merges.count, 512 - 256 - 2)
        XCTAssertEqual(bpe.tokenString(510), "<|begin_of_text|>")
        XCTAssertEqual(bpe.tokenString(32), "Ġ")  // GPT-2's mapping of the space byte

        let custom = try ByteLevelBPE.train(text: try fixtureCorpus(), vocabSize: 300, specialTokens: ["<s>", "</s>", "<pad>"])
        XCTAssertEqual(custom.vocabSize, 300)
        XCTAssertEqual(custom.bosID, 297)
        XCTAssertEqual(custom.eosID, 298)
        XCTAssertEqual(custom.specialTokenIDs, [297, 298, 299])

        let bytesOnly = try ByteLevelBPE.train(text: "abc", vocabSize: 258)
        XCTAssertEqual(bytesOnly.vocabSize, 258)
        XCTAssertEqual(bytesOnly.merges, [])
        XCTAssertEqual(bytesOnly.encode("abc"), [97, 98, 99])
    }

    func testTrainingStopsWhenNothingIsLeftToMerge() throws {
        // "ab ab": words "ab", " ab" -> at most 2 merges ("a b", then " ab"...), far below the request.
        let bpe = try ByteLevelBPE.train(text: "ab ab", vocabSize: 1000)
        XCTAssertLessThan(bpe.vocabSize, 1000)
        XCTAssertEqual(bpe.vocabSize, 256 + bpe.merges.count + 2)
        XCTAssertEqual(bpe.encode("ab ab").count, 2)
        XCTAssertEqual(bpe.decode(bpe.encode("ab ab")), "ab ab")
    }

    func testTrainingProgressAndErrors() throws {
        var calls: [(Int, Int)] = []
        _ = try ByteLevelBPE.train(text: try fixtureCorpus(), vocabSize: 270) { calls.append(($0, $1)) }
        XCTAssertEqual(calls.map(\.0), Array(1...12))
        XCTAssertTrue(calls.allSatisfy { $0.1 == 12 })

        XCTAssertThrowsError(try ByteLevelBPE.train(text: "", vocabSize: 300)) { error in
            guard case TokenizerError.invalidArgument = error else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("empty"))
        }
        XCTAssertThrowsError(try ByteLevelBPE.train(text: "abc", vocabSize: 257)) { error in
            guard case TokenizerError.invalidArgument = error else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("257"))
        }
        XCTAssertThrowsError(try ByteLevelBPE.train(text: "abc", vocabSize: 300, specialTokens: ["<s>", "<s>"]))
    }

    func testCompressionOnEnglish() throws {
        let text = try Support.shakespeare()
        let bytes = Array(text.utf8)
        let train = String(decoding: bytes[0..<200_000], as: UTF8.self)
        let heldOut = String(decoding: bytes[200_000..<300_000], as: UTF8.self)
        let bpe = try ByteLevelBPE.train(text: train, vocabSize: 1024)
        let ids = bpe.encode(heldOut)
        XCTAssertLessThan(ids.count, heldOut.utf8.count / 2, "tokens \(ids.count) for \(heldOut.utf8.count) bytes")
        XCTAssertEqual(bpe.decode(ids), heldOut)
    }

    // MARK: Serialization

    func testSaveAndLoadGiveTheSameTokenizer() throws {
        let bpe = try shakespeareTokenizer()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bpe-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("tokenizer.json")
        try bpe.save(to: url)
        try bpe.save(to: url)  // overwriting works
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["tokenizer.json"])

        let loaded = try ByteLevelBPE(contentsOf: url)
        XCTAssertEqual(loaded.vocabSize, bpe.vocabSize)
        XCTAssertEqual(loaded.bosID, bpe.bosID)
        XCTAssertEqual(loaded.eosID, bpe.eosID)
        XCTAssertEqual(loaded.merges, bpe.merges)
        XCTAssertEqual(loaded.specialTokens, bpe.specialTokens)
        XCTAssertEqual(try loaded.jsonData(), try bpe.jsonData())
        let sample = Support.prefix(try Support.shakespeare(), bytes: 50_000) + Support.trickyStrings.joined(separator: "\n")
        XCTAssertEqual(loaded.encode(sample), bpe.encode(sample))
        for id in 0..<bpe.vocabSize { XCTAssertEqual(loaded.tokenBytes(id), bpe.tokenBytes(id)) }
    }

    func testMergesAsPairsAreAccepted() throws {
        // Newer `tokenizers` versions write merges as ["a", "b"] arrays.
        let bpe = try ByteLevelBPE.train(text: try fixtureCorpus(), vocabSize: 300)
        var json = try XCTUnwrap(try JSONSerialization.jsonObject(with: bpe.jsonData()) as? [String: Any])
        var model = try XCTUnwrap(json["model"] as? [String: Any])
        let merges = try XCTUnwrap(model["merges"] as? [String])
        model["merges"] = merges.map { $0.split(separator: " ").map(String.init) }
        json["model"] = model
        let loaded = try ByteLevelBPE(jsonData: try JSONSerialization.data(withJSONObject: json))
        XCTAssertEqual(loaded.merges, bpe.merges)
    }

    func testMalformedJSONThrows() throws {
        let good = String(decoding: try ByteLevelBPE.train(text: try fixtureCorpus(), vocabSize: 300).jsonData(), as: UTF8.self)
        func expectMalformed(_ text: String, mentioning fragment: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try ByteLevelBPE(jsonData: Data(text.utf8)), file: file, line: line) { error in
                guard case TokenizerError.malformed = error else {
                    return XCTFail("expected malformed, got \(error)", file: file, line: line)
                }
                XCTAssertTrue("\(error)".contains(fragment), "\(error)", file: file, line: line)
            }
        }
        expectMalformed("", mentioning: "JSON")
        expectMalformed("not json", mentioning: "JSON")
        expectMalformed(String(good.prefix(good.count / 2)), mentioning: "JSON")
        expectMalformed("{}", mentioning: "model")
        expectMalformed("[1, 2, 3]", mentioning: "malformed")
        expectMalformed(good.replacingOccurrences(of: "\"vocab\": {", with: "\"vocab\": 7, \"x\": {"), mentioning: "vocab")
        // A merge naming an unknown token.
        expectMalformed(good.replacingOccurrences(of: "\"merges\": [\n", with: "\"merges\": [\n      \"zz qq\",\n"),
                        mentioning: "unknown token")
        // A merge whose result is not in the vocab ("Ġ" + "Ġ" is not learned from this corpus at 300).
        expectMalformed(good.replacingOccurrences(of: "\"merges\": [\n", with: "\"merges\": [\n      \"ĠĠĠ Ġ\",\n"),
                        mentioning: "merge #0")
        // Ids out of range and duplicated.
        expectMalformed(good.replacingOccurrences(of: "\"id\": 299", with: "\"id\": 5000"), mentioning: "out of range")
        expectMalformed(good.replacingOccurrences(of: "\"A\": 65,", with: "\"A\": 66,"), mentioning: "share id 66")
        expectMalformed(good.replacingOccurrences(of: "\"A\": 65,", with: "\"A\": -65,"), mentioning: "negative")
        // A vocab token outside the byte-level alphabet, and a missing byte.
        expectMalformed(good.replacingOccurrences(of: "\"A\": 65,", with: "\"A€\": 65,"), mentioning: "byte-level alphabet")

        XCTAssertThrowsError(try ByteLevelBPE(jsonData: Data(good.replacingOccurrences(of: "\"type\": \"BPE\"", with: "\"type\": \"WordPiece\"").utf8))) { error in
            guard case TokenizerError.unsupported = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try ByteLevelBPE(jsonData: Data(good.replacingOccurrences(of: "\"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true},\n  \"post", with: "\"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n  \"post").utf8))) { error in
            guard case TokenizerError.unsupported = error else { return XCTFail("\(error)") }
        }
    }

    func testFileErrorsNameTheFile() throws {
        let missing = URL(fileURLWithPath: "/nonexistent-dir/tokenizer.json")
        XCTAssertThrowsError(try ByteLevelBPE(contentsOf: missing)) { error in
            guard case TokenizerError.unreadable = error else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("/nonexistent-dir/tokenizer.json"))
        }
        let bad = FileManager.default.temporaryDirectory.appendingPathComponent("bad-\(UUID().uuidString).json")
        try Data("{\"model\": {}}".utf8).write(to: bad)
        defer { try? FileManager.default.removeItem(at: bad) }
        XCTAssertThrowsError(try ByteLevelBPE(contentsOf: bad)) { error in
            guard case TokenizerError.malformed = error else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains(bad.path), "\(error)")
        }
        let bpe = try ByteLevelBPE.train(text: "abc", vocabSize: 258)
        let underAFile = bad.appendingPathComponent("tokenizer.json")   // a file where its folder would be
        XCTAssertThrowsError(try bpe.save(to: underAFile)) { error in
            guard case BitNetError.unwritable(let path, _) = error, path == bad.path else { return XCTFail("\(error)") }
        }
    }

    // MARK: Golden values from the Python `tokenizers` library

    private struct Golden: Decodable {
        struct Case: Decodable {
            let text: String
            let pretokens: [String]
            let ids: [Int]
        }
        let vocab_size: Int
        let cases: [Case]
    }

    func testFixtureTokenizerIsReproducible() throws {
        // tokenizer.json was written by this trainer; retraining must give the same bytes.
        let url = Support.fixtures.appendingPathComponent("tokenizer.json")
        let trained = try ByteLevelBPE.train(text: try fixtureCorpus(), vocabSize: 400)
        if ProcessInfo.processInfo.environment["BITNET_REGENERATE_TOKENIZER_FIXTURE"] == "1" {
            try trained.save(to: url)
        }
        XCTAssertEqual(try trained.jsonData(), try Data(contentsOf: url))
    }

    func testMatchesHuggingFaceTokenizers() throws {
        let bpe = try ByteLevelBPE(contentsOf: Support.fixtures.appendingPathComponent("tokenizer.json"))
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: Support.fixtures.appendingPathComponent("golden.json")))
        XCTAssertEqual(bpe.vocabSize, golden.vocab_size)
        XCTAssertGreaterThan(golden.cases.count, 30)
        for c in golden.cases {
            XCTAssertEqual(ByteLevelBPE.preTokenize(c.text), c.pretokens, "pre-tokens of \(c.text.debugDescription)")
            XCTAssertEqual(bpe.encode(c.text), c.ids, "ids of \(c.text.debugDescription)")
            XCTAssertEqual(bpe.decode(c.ids), c.text)
        }
    }
}
