@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools
import Foundation
import XCTest

/// A tokenizer whose token `i` is an arbitrary byte string, to drive the streaming decoder directly.
private struct ByteTableTokenizer: Tokenizer {
    let table: [[UInt8]]
    var vocabSize: Int { table.count }
    var bosID: Int? { nil }
    var eosID: Int? { nil }
    func encode(_ text: String) -> [Int] { [] }
    func decode(_ ids: [Int]) -> String { String(decoding: ids.flatMap { tokenBytes($0) }, as: UTF8.self) }
    func tokenBytes(_ id: Int) -> [UInt8] { id >= 0 && id < table.count ? table[id] : [] }
}

final class StreamingDecoderTests: XCTestCase {
    func testHoldsBackSplitCharacters() {
        // One token per byte of "a😀é".
        let bytes = Array("a😀é".utf8)
        let tok = ByteTableTokenizer(table: bytes.map { [$0] })
        var decoder = StreamingDecoder(tokenizer: tok)
        let pieces = (0..<bytes.count).map { decoder.push($0) }
        XCTAssertEqual(pieces, ["a", "", "", "", "😀", "", "é"])
        XCTAssertEqual(decoder.finish(), "")
    }

    func testInvalidBytesBecomeReplacementCharacters() {
        let tok = ByteTableTokenizer(table: [[0xFF], [0x80], [0xE2, 0x82], [0x41], [0xE0, 0x80], [0xF0, 0x9F]])
        var d = StreamingDecoder(tokenizer: tok)
        XCTAssertEqual(d.push(0), "\u{FFFD}")       // never valid: not held
        XCTAssertEqual(d.push(1), "\u{FFFD}")       // stray continuation
        XCTAssertEqual(d.push(2), "")               // a valid prefix of a 3-byte sequence: held
        XCTAssertEqual(d.push(3), "\u{FFFD}A")      // ...that never completes
        XCTAssertEqual(d.push(4), "\u{FFFD}\u{FFFD}")  // E0 80 is not a valid prefix
        XCTAssertEqual(d.push(5), "")
        XCTAssertEqual(d.finish(), "\u{FFFD}")      // unfinished at the end
    }

    func testConcatenationEqualsWholeDecode() {
        // Random byte tokens, biased towards UTF-8 lead and continuation bytes.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        let interesting: [UInt8] = [0x41, 0x20, 0x80, 0x9F, 0xA0, 0xBF, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF]
        var table: [[UInt8]] = []
        for _ in 0..<64 {
            let n = Int(next() % 4)
            table.append((0..<n).map { _ in interesting[Int(next() % UInt64(interesting.count))] })
        }
        let tok = ByteTableTokenizer(table: table)
        for _ in 0..<300 {
            let ids = (0..<Int(next() % 20)).map { _ in Int(next() % 64) }
            var d = StreamingDecoder(tokenizer: tok)
            let streamed = ids.map { d.push($0) }.joined() + d.finish()
            XCTAssertEqual(streamed, tok.decode(ids), "\(ids.map { table[$0] })")
        }
    }

    func testByteLevelBPEStreaming() throws {
        // Trained on ASCII only, so emoji and CJK stay split into single-byte tokens.
        let bpe = try ByteLevelBPE.train(text: String(repeating: "the cat sat on the mat. ", count: 50), vocabSize: 300)
        let text = "the cat 😺 sat on 漢字 the mat"
        var d = StreamingDecoder(tokenizer: bpe)
        var out = ""
        for id in [bpe.bosID!] + bpe.encode(text) + [bpe.eosID!] {
            let piece = d.push(id)
            XCTAssertFalse(piece.contains("\u{FFFD}"))
            out += piece
        }
        out += d.finish()
        XCTAssertEqual(out, text)
    }
}
