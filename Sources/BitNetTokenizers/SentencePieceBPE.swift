import Foundation
import BitNetCore

/// A SentencePiece-style BPE vocabulary as GGUF's `llama` tokenizer stores it: pieces with `▁` for spaces,
/// merge scores, `<0xAB>` byte-fallback pieces and llama.cpp token types. Encoding is llama.cpp's SPM algorithm
/// (a leading space, then the adjacent pair with the highest-scoring concatenation is merged, leftmost first),
/// which is llama2.c's; it runs on a `Llama2cTokenizer` built from the pieces.
package struct SentencePieceBPE: Tokenizer {
    package let pieces: [String]
    package let scores: [Float]
    /// llama.cpp token types as the file stores them (`GGUFTokenType` raw values), one per piece.
    package let types: [Int]
    package let bosID: Int?
    package let eosID: Int?
    private let inner: Llama2cTokenizer

    package var vocabSize: Int { pieces.count }

    /// Builds the tokenizer; `source` names the file in errors.
    package init(pieces: [String], scores: [Float], types: [Int], bos: Int?, eos: Int?, source: String) throws {
        guard pieces.count >= 3, scores.count == pieces.count, types.count == pieces.count else {
            throw TokenizerError.malformed(file: source, reason: "needs at least 3 pieces with one score and type each")
        }
        self.pieces = pieces; self.scores = scores; self.types = types
        bosID = bos; eosID = eos
        // llama2.c's tokenizer.bin: u32 max length, then per piece f32 score, i32 length, bytes (▁ written as a space).
        var data = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
        let bytes = pieces.enumerated().map { (i, p) -> [UInt8] in
            // Control and unused pieces (<s>, </s>, <unk>, <pad>) never match text.
            switch GGUFTokenType(types[i]) {
            case .control?, .unused?, .unknown?: return []
            default: return Array(p.replacingOccurrences(of: "\u{2581}", with: " ").utf8)
            }
        }
        u32(UInt32(bytes.map(\.count).max() ?? 0))
        for (b, s) in zip(bytes, scores) { u32(s.bitPattern); u32(UInt32(b.count)); data.append(contentsOf: b) }
        inner = try Llama2cTokenizer(data: data, vocabSize: pieces.count, source: source)
    }

    package func encode(_ text: String) -> [Int] { inner.encode(text) }
    package func decode(_ ids: [Int]) -> String { inner.decode(ids.filter { $0 != bosID && $0 != eosID }) }
    package func tokenBytes(_ id: Int) -> [UInt8] { id == bosID || id == eosID ? [] : inner.tokenBytes(id) }
    package func tokenBytes(_ id: Int, after previousID: Int?) -> [UInt8] {
        id == bosID || id == eosID ? [] : inner.tokenBytes(id, after: previousID == bosID ? 1 : previousID)
    }
}
