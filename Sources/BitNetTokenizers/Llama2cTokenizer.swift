import Foundation
import BitNetCore

/// The tokenizer of llama2.c (`tokenizer.bin`, a SentencePiece vocabulary with scores).
///
/// File format, little-endian: int32 max_token_length, then for each of the `vocabSize` tokens a
/// float32 score, an int32 byte length and that many bytes. Id 0 is `<unk>`, 1 is BOS, 2 is EOS, and
/// pieces `<0x00>`...`<0xFF>` (ids 3...258) stand for raw bytes.
///
/// Decoding follows llama2.c: a piece that begins with a space loses it when the token before it is
/// BOS. `decode(_:)` applies this within the given sequence, so pass `[bosID] + ids` (or use
/// `decode(_:after:)`) to decode generated text as llama2.c prints it.
package struct Llama2cTokenizer: Tokenizer {
    /// Number of tokens (from the model header).
    package let vocabSize: Int
    /// Longest piece in bytes, as recorded in the file header.
    package let maxTokenLength: Int
    /// Always 1.
    package var bosID: Int? { 1 }
    /// Always 2.
    package var eosID: Int? { 2 }

    private let pieces: [[UInt8]]
    private let scores: [Float]
    /// Raw byte of each `<0xAB>` piece, or -1.
    private let byteValue: [Int16]
    /// Id of each piece (the lowest id when a piece repeats).
    private let idOfPiece: [[UInt8]: Int32]
    /// Id of the `<0xAB>` piece of each byte (llama2.c's vocabulary has it at byte + 3).
    private let idOfByte: [Int32]

    /// Loads `tokenizer.bin`; `vocabSize` comes from the model's header.
    package init(contentsOf url: URL, vocabSize: Int) throws {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw TokenizerError.unreadable(file: url.path, reason: error.localizedDescription)
        }
        try self.init(data: data, vocabSize: vocabSize, source: url.path)
    }

    /// Parses `tokenizer.bin` content; `source` names it in error messages.
    package init(data: Data, vocabSize: Int, source: String = "tokenizer.bin data") throws {
        guard vocabSize >= 3 else {
            throw TokenizerError.invalidArgument("\(source): vocabSize \(vocabSize) leaves no room for <unk>, BOS and EOS")
        }
        let bytes = [UInt8](data)
        let size = bytes.count
        func int32(at offset: Int) -> Int32 {
            Int32(bitPattern: UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8
                  | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24)
        }
        guard size >= 4 else {
            throw TokenizerError.truncated(file: source, reason: "\(size) bytes, too short for the max_token_length header")
        }
        let maxLength = int32(at: 0)
        guard maxLength >= 0 else {
            throw TokenizerError.malformed(file: source, reason: "negative max_token_length \(maxLength)")
        }
        var pieces: [[UInt8]] = []
        var scores: [Float] = []
        pieces.reserveCapacity(vocabSize)
        scores.reserveCapacity(vocabSize)
        var offset = 4
        for i in 0..<vocabSize {
            guard offset + 8 <= size else {
                throw TokenizerError.truncated(
                    file: source,
                    reason: "token \(i) of \(vocabSize): its score and length at byte \(offset) run past the end (\(size) bytes)")
            }
            let score = Float(bitPattern: UInt32(bitPattern: int32(at: offset)))
            let length = Int(int32(at: offset + 4))
            guard length >= 0 else {
                throw TokenizerError.malformed(file: source, reason: "token \(i) has negative length \(length)")
            }
            offset += 8
            guard length <= size - offset else {
                throw TokenizerError.truncated(
                    file: source,
                    reason: "token \(i) of \(vocabSize): \(length) bytes at byte \(offset) run past the end (\(size) bytes)")
            }
            pieces.append(Array(bytes[offset..<(offset + length)]))
            scores.append(score)
            offset += length
        }
        self.vocabSize = vocabSize
        self.maxTokenLength = Int(maxLength)
        self.pieces = pieces
        self.scores = scores
        self.byteValue = pieces.map(Self.rawByte)
        var lookup: [[UInt8]: Int32] = [:]
        lookup.reserveCapacity(vocabSize)
        for (i, p) in pieces.enumerated() where lookup[p] == nil { lookup[p] = Int32(i) }
        self.idOfPiece = lookup
        var byteIDs = (0..<256).map { Int32($0 + 3) }
        var seenByte = [Bool](repeating: false, count: 256)
        for (i, b) in byteValue.enumerated() where b >= 0 && !seenByte[Int(b)] { byteIDs[Int(b)] = Int32(i); seenByte[Int(b)] = true }
        self.idOfByte = byteIDs
    }

    /// The byte of a `<0xAB>` piece, or -1.
    private static func rawByte(_ p: [UInt8]) -> Int16 {
        guard p.count == 6, p[0] == 0x3C, p[1] == 0x30, p[2] == 0x78, p[5] == 0x3E,
              let hi = hexValue(p[3]), let lo = hexValue(p[4]) else { return -1 }
        return Int16(hi * 16 + lo)
    }

    private static func hexValue(_ c: UInt8) -> Int? {
        switch c {
        case 0x30...0x39: return Int(c - 0x30)
        case 0x41...0x46: return Int(c - 0x41 + 10)
        case 0x61...0x66: return Int(c - 0x61 + 10)
        default: return nil
        }
    }

    /// The stored bytes of a token's piece (e.g. `<0x0A>` or ` the`), or empty when out of range.
    package func piece(_ id: Int) -> [UInt8] {
        id >= 0 && id < vocabSize ? pieces[id] : []
    }

    /// The merge score of a token, or nil when out of range.
    package func score(_ id: Int) -> Float? {
        id >= 0 && id < vocabSize ? scores[id] : nil
    }

    // MARK: - Encoding

    /// Encodes as llama2.c's `encode` (no BOS/EOS): a dummy " " piece first when the text is not
    /// empty, one piece per UTF-8 character (raw-byte pieces when it is not in the vocab), then
    /// repeatedly the adjacent pair whose concatenation has the highest score is merged (leftmost on ties).
    package func encode(_ text: String) -> [Int] {
        if text.isEmpty { return [] }
        var sym: [Int32] = []
        let utf8 = Array(text.utf8)
        sym.reserveCapacity(utf8.count + 1)
        appendPiece([0x20], to: &sym)
        var i = 0
        while i < utf8.count {
            // A character: one byte plus the continuation bytes after it (at most 4 bytes in all).
            var j = i + 1
            while j < utf8.count && j - i < 4 && utf8[j] & 0xC0 == 0x80 { j += 1 }
            appendPiece(Array(utf8[i..<j]), to: &sym)
            i = j
        }
        return mergeByScore(sym).map(Int.init)
    }

    private func appendPiece(_ piece: [UInt8], to sym: inout [Int32]) {
        if let id = idOfPiece[piece] {
            sym.append(id)
            return
        }
        for b in piece {
            let id = Int(idOfByte[Int(b)])
            sym.append(id < vocabSize ? Int32(id) : 0)
        }
    }

    /// Highest-score-first merging with a heap keyed by (score, position); equivalent to llama2.c's
    /// quadratic loop, which takes the leftmost of equal best scores.
    private func mergeByScore(_ initial: [Int32]) -> [Int32] {
        var sym = initial
        let n = sym.count
        if n < 2 { return sym }
        var next = [Int32](repeating: -1, count: n)
        var prev = [Int32](repeating: -1, count: n)
        for k in 0..<n {
            next[k] = k + 1 < n ? Int32(k + 1) : -1
            prev[k] = Int32(k - 1)
        }
        var alive = [Bool](repeating: true, count: n)
        var pairCache: [UInt64: Int32] = [:]
        func merged(_ a: Int32, _ b: Int32) -> Int32 {
            let key = UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
            if let id = pairCache[key] { return id }
            var id = idOfPiece[pieces[Int(a)] + pieces[Int(b)]] ?? -1
            // llama2.c starts from a best score of -1e10 and needs a strictly better one.
            if id >= 0 && !(scores[Int(id)] > -1e10) { id = -1 }
            pairCache[key] = id
            return id
        }
        var heap = TokenizerHeap<ScoredPosition>()
        for k in 0..<(n - 1) {
            let id = merged(sym[k], sym[k + 1])
            if id >= 0 { heap.push(ScoredPosition(score: scores[Int(id)], position: Int32(k))) }
        }
        while let top = heap.pop() {
            let k = Int(top.position)
            guard alive[k], next[k] >= 0 else { continue }
            let r = Int(next[k])
            let id = merged(sym[k], sym[r])
            guard id >= 0, scores[Int(id)] == top.score else { continue }
            sym[k] = id
            alive[r] = false
            next[k] = next[r]
            if next[r] >= 0 { prev[Int(next[r])] = Int32(k) }
            if prev[k] >= 0 {
                let p = Int(prev[k])
                let left = merged(sym[p], sym[k])
                if left >= 0 { heap.push(ScoredPosition(score: scores[Int(left)], position: Int32(p))) }
            }
            if next[k] >= 0 {
                let right = merged(sym[k], sym[Int(next[k])])
                if right >= 0 { heap.push(ScoredPosition(score: scores[Int(right)], position: Int32(k))) }
            }
        }
        var out: [Int32] = []
        var k: Int32 = 0
        while k >= 0 {
            out.append(sym[Int(k)])
            k = next[Int(k)]
        }
        return out
    }

    // MARK: - Decoding

    /// Raw bytes of one token with no preceding token (empty for BOS, EOS and out-of-range ids).
    package func tokenBytes(_ id: Int) -> [UInt8] {
        tokenBytes(id, after: nil)
    }

    /// Raw bytes of one token: `<0xAB>` pieces give their byte; after BOS a leading space is dropped.
    package func tokenBytes(_ id: Int, after previousID: Int?) -> [UInt8] {
        guard id >= 0 && id < vocabSize && id != 1 && id != 2 else { return [] }
        let b = byteValue[id]
        if b >= 0 { return [UInt8(b)] }
        let p = pieces[id]
        if previousID == 1 && p.first == 0x20 { return Array(p.dropFirst()) }
        return p
    }

    /// Decodes a sequence; a token right after a BOS in `ids` loses its leading space.
    package func decode(_ ids: [Int]) -> String {
        decode(ids, after: nil)
    }

    /// Decodes a sequence that follows `previousID` (pass `bosID` to decode text generated after BOS).
    package func decode(_ ids: [Int], after previousID: Int?) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        var prev = previousID
        for id in ids {
            bytes.append(contentsOf: tokenBytes(id, after: prev))
            prev = id
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Heap entry of llama2.c merging: higher score first, then leftmost.
private struct ScoredPosition: Comparable {
    let score: Float
    let position: Int32
    static func < (a: ScoredPosition, b: ScoredPosition) -> Bool {
        a.score != b.score ? a.score > b.score : a.position < b.position
    }
}
