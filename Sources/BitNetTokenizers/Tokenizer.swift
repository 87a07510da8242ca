import Foundation
import BitNetCore

/// A text tokenizer: maps strings to token ids and back, byte-exactly.
package protocol Tokenizer: Sendable {
    /// Number of token ids (valid ids are `0..<vocabSize`).
    var vocabSize: Int { get }
    /// Id of the beginning-of-sequence token, if the vocabulary has one.
    var bosID: Int? { get }
    /// Id of the end-of-sequence token, if the vocabulary has one.
    var eosID: Int? { get }
    /// Whether a prompt starts with BOS: llama2.c and SentencePiece models are trained with it; a byte-level BPE says
    /// so in its file (LLaMA 3, 2B4T), and those trained here on raw text do not.
    var addsBOS: Bool { get }
    /// Encodes text to ids; no BOS/EOS is added.
    func encode(_ text: String) -> [Int]
    /// Decodes a sequence of ids to text (special tokens produce nothing; invalid UTF-8 becomes U+FFFD).
    func decode(_ ids: [Int]) -> String
    /// Raw bytes of one token (empty for special tokens and out-of-range ids), for streaming output.
    func tokenBytes(_ id: Int) -> [UInt8]
    /// Raw bytes of a token given the id that precedes it in the sequence (nil at the start); tokenizers
    /// whose output depends on context (llama2.c drops a leading space after BOS) override this.
    func tokenBytes(_ id: Int, after previousID: Int?) -> [UInt8]
}

extension Tokenizer {
    /// Default: prompts start with BOS when the vocabulary has one.
    package var addsBOS: Bool { bosID != nil }

    /// Default: a token's bytes do not depend on the token before it.
    package func tokenBytes(_ id: Int, after previousID: Int?) -> [UInt8] {
        tokenBytes(id)
    }
}

/// Turns a stream of token ids into text pieces, holding back incomplete UTF-8 sequences.
///
/// The concatenation of every `push` result followed by `finish()` equals `tokenizer.decode(ids)`
/// for the pushed ids (context rules such as llama2.c's space-after-BOS included).
package struct StreamingDecoder: Sendable {
    /// The tokenizer whose token bytes are decoded.
    package let tokenizer: any Tokenizer
    private var previousID: Int?
    private var pending: [UInt8] = []

    /// Creates a decoder at the start of a sequence.
    package init(tokenizer: any Tokenizer) {
        self.tokenizer = tokenizer
    }

    /// Starts a decoder as if `previousID` had already been pushed (e.g. the BOS of a prompt not echoed).
    package init(tokenizer: any Tokenizer, previousID: Int?) {
        self.tokenizer = tokenizer
        self.previousID = previousID
    }

    /// Adds one token and returns the text that is now complete (possibly empty).
    package mutating func push(_ id: Int) -> String {
        pending.append(contentsOf: tokenizer.tokenBytes(id, after: previousID))
        previousID = id
        let cut = Self.completePrefixLength(pending)
        if cut == 0 { return "" }
        let text = String(decoding: pending[0..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return text
    }

    /// Flushes whatever is held back (an unfinished sequence becomes U+FFFD) and resets the decoder.
    package mutating func finish() -> String {
        let text = String(decoding: pending, as: UTF8.self)
        pending.removeAll()
        previousID = nil
        return text
    }

    /// Length of the prefix of `bytes` that can be decoded now: everything except a trailing
    /// sequence that is a valid but unfinished UTF-8 prefix.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        let n = bytes.count
        if n == 0 { return 0 }
        // Find the last byte that is not a continuation byte, looking back at most 4 bytes.
        var j = n - 1
        while j > 0 && n - j < 4 && bytes[j] & 0xC0 == 0x80 { j -= 1 }
        let lead = bytes[j]
        let need: Int
        switch lead {
        case 0x00...0x7F: need = 1
        case 0xC2...0xDF: need = 2
        case 0xE0...0xEF: need = 3
        case 0xF0...0xF4: need = 4
        default: return n  // stray continuation or invalid lead: nothing to wait for
        }
        let have = n - j
        if have >= need { return n }
        if have >= 2 {
            let second = bytes[j + 1]
            let ok: Bool
            switch lead {
            case 0xE0: ok = (0xA0...0xBF).contains(second)
            case 0xED: ok = (0x80...0x9F).contains(second)
            case 0xF0: ok = (0x90...0xBF).contains(second)
            case 0xF4: ok = (0x80...0x8F).contains(second)
            default: ok = true
            }
            if !ok { return n }
        }
        return j
    }
}

/// Errors of tokenizer training, loading and saving; each names the file (or input) and the problem.
package enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// Training or construction was given unusable arguments.
    case invalidArgument(String)
    /// A file could not be read.
    case unreadable(file: String, reason: String)
    /// A file could not be written.
    /// A file's content is not a valid tokenizer.
    case malformed(file: String, reason: String)
    /// A file ended before the data it announces.
    case truncated(file: String, reason: String)
    /// A file is valid but uses a feature this library does not implement.
    case unsupported(file: String, reason: String)

    /// A one-line human-readable message.
    package var description: String {
        switch self {
        case .invalidArgument(let s): return "tokenizer: invalid argument: \(s)"
        case .unreadable(let f, let r): return "\(f): cannot read tokenizer: \(r)"
        case .malformed(let f, let r): return "\(f): malformed tokenizer: \(r)"
        case .truncated(let f, let r): return "\(f): truncated tokenizer file: \(r)"
        case .unsupported(let f, let r): return "\(f): unsupported tokenizer: \(r)"
        }
    }
}
