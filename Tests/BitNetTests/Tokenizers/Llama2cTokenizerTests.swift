@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools
import Foundation
import XCTest

final class Llama2cTokenizerTests: XCTestCase {
    private typealias Support = TokenizerTestSupport

    private func tok512() throws -> Llama2cTokenizer {
        try Llama2cTokenizer(contentsOf: try Support.sharedData("stories260K/tok512.bin"), vocabSize: 512)
    }

    private func temporaryFile(_ data: Data) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("tok-\(UUID().uuidString).bin")
        try data.write(to: url)
        return url
    }

    func testLoadsTok512() throws {
        let tok = try tok512()
        XCTAssertEqual(tok.vocabSize, 512)
        XCTAssertEqual(tok.bosID, 1)
        XCTAssertEqual(tok.eosID, 2)
        XCTAssertEqual(tok.maxTokenLength, 7)
        XCTAssertEqual(tok.piece(259), Array(" t".utf8))
        XCTAssertEqual(tok.piece(3), Array("<0x00>".utf8))
        XCTAssertEqual(tok.score(260), -1)
        XCTAssertEqual(tok.tokenBytes(13), [0x0A])  // <0x0A>
        XCTAssertEqual(tok.tokenBytes(1), [])
        XCTAssertEqual(tok.tokenBytes(2), [])
        XCTAssertEqual(tok.tokenBytes(512), [])
    }

    func testEncodeOnceUponATime() throws {
        let tok = try tok512()
        // Verified with the Python re-implementation of llama2.c's encode in scripts/make_tokenizer_golden.py.
        XCTAssertEqual(tok.encode("Once upon a time"), [403, 407, 261, 378])
        XCTAssertEqual(tok.decode([1, 403, 407, 261, 378]), "Once upon a time")
        XCTAssertEqual(tok.encode(""), [])
    }

    private struct Golden: Decodable {
        struct Case: Decodable {
            let text: String
            let ids: [Int]
        }
        struct Llama2c: Decodable {
            let cases: [Case]
        }
        let llama2c: Llama2c
    }

    func testMatchesPythonReimplementation() throws {
        let tok = try tok512()
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: Support.fixtures.appendingPathComponent("golden.json")))
        XCTAssertFalse(golden.llama2c.cases.isEmpty)
        for c in golden.llama2c.cases {
            XCTAssertEqual(tok.encode(c.text), c.ids, c.text.debugDescription)
        }
    }

    func testDecodeRoundTrips() throws {
        let tok = try tok512()
        let texts = [
            "Once upon a time, there was a little girl named Lily. She loved to play outside.",
            "Hello, World! 123 #$%^&*() {}[] ~`\\|",
            "line one\nline two\n\ttabbed  double  spaces ",
            "café 😀 漢字 Ünïcödé",  // byte fallback
        ]
        for text in texts {
            let ids = tok.encode(text)
            XCTAssertTrue(ids.allSatisfy { $0 > 2 && $0 < 512 })
            XCTAssertEqual(tok.decode([1] + ids), text)
            XCTAssertEqual(tok.decode(ids, after: 1), text)
            XCTAssertEqual(tok.decode(ids), " " + text, "without BOS the dummy-prefix space stays")
            XCTAssertEqual(tok.decode([1] + ids + [2]), text)
        }
    }

    func testStreamingAfterBOS() throws {
        let tok = try tok512()
        let text = "Lily saw a big café, and she said \"wow 😀\"."
        var decoder = StreamingDecoder(tokenizer: tok)
        var out = decoder.push(1)
        for id in tok.encode(text) {
            let piece = decoder.push(id)
            XCTAssertFalse(piece.contains("\u{FFFD}"))
            out += piece
        }
        out += decoder.finish()
        XCTAssertEqual(out, text)

        var resumed = StreamingDecoder(tokenizer: tok, previousID: 1)
        XCTAssertEqual(tok.encode(text).map { resumed.push($0) }.joined() + resumed.finish(), text)
    }

    func testLargeInputIsFast() throws {
        let tok = try tok512()
        let text = String(repeating: "Once upon a time, there was a little dog. ", count: 2_000)
        let start = Date()
        let ids = tok.encode(text)
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        XCTAssertEqual(tok.decode(ids, after: 1), text)
    }

    func testTruncatedAndInvalidFilesThrow() throws {
        let url = try Support.sharedData("stories260K/tok512.bin")
        let data = try Data(contentsOf: url)

        for cut in [0, 2, 4, 100, data.count - 1] {
            let file = try temporaryFile(data.prefix(cut))
            defer { try? FileManager.default.removeItem(at: file) }
            XCTAssertThrowsError(try Llama2cTokenizer(contentsOf: file, vocabSize: 512), "cut at \(cut)") { error in
                guard case TokenizerError.truncated = error else { return XCTFail("\(error)") }
                XCTAssertTrue("\(error)".contains(file.path), "\(error)")
            }
        }
        // More tokens than the file holds.
        XCTAssertThrowsError(try Llama2cTokenizer(data: data, vocabSize: 513)) { error in
            guard case TokenizerError.truncated = error else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("token 512"), "\(error)")
        }
        // A negative length.
        var negative = data
        negative.replaceSubrange(8..<12, with: [0xFF, 0xFF, 0xFF, 0xFF])
        XCTAssertThrowsError(try Llama2cTokenizer(data: negative, vocabSize: 512)) { error in
            guard case TokenizerError.malformed = error else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("negative length -1"), "\(error)")
        }
        XCTAssertThrowsError(try Llama2cTokenizer(data: data, vocabSize: 2))
        XCTAssertThrowsError(try Llama2cTokenizer(contentsOf: URL(fileURLWithPath: "/nonexistent/tok.bin"), vocabSize: 512)) { error in
            guard case TokenizerError.unreadable = error else { return XCTFail("\(error)") }
        }
        // Fewer tokens than the file holds is accepted (the model header decides).
        XCTAssertEqual(try Llama2cTokenizer(data: data, vocabSize: 300).vocabSize, 300)
    }
}
