import Foundation
import BitNetCore

/// A GPT-2 style byte-level BPE tokenizer: the 256 bytes are the base vocabulary, text is split into
/// pre-token words with the GPT-2 pattern, and learned merges are applied inside each word by rank.
///
/// Layout of a freshly trained tokenizer: ids 0...255 are the single bytes (id == byte value), then the
/// learned tokens in the order they were created, then the special tokens (`specialTokens[0]` is BOS,
/// `specialTokens[1]` is EOS). Special-token strings in the input of `encode` are ordinary text.
/// Serializes to and from the Hugging Face `tokenizer.json` format.
package struct ByteLevelBPE: Tokenizer {
    /// The special tokens used when none are given: BOS then EOS, as in LLaMA 3.
    package static let defaultSpecialTokens = ["<|begin_of_text|>", "<|end_of_text|>"]

    /// One merge rule: tokens `left` and `right`, adjacent in a word, become `result`.
    package struct Merge: Sendable, Hashable {
        /// Id of the left token.
        package let left: Int
        /// Id of the right token.
        package let right: Int
        /// Id of the merged token.
        package let result: Int
    }

    /// Number of token ids, specials included.
    package let vocabSize: Int
    /// Id of the beginning-of-text token: the first special token unless the file names one.
    package private(set) var bosID: Int?
    /// Id of the end-of-text token: the second special token unless the file names one.
    package private(set) var eosID: Int?
    /// Which pattern splits text into words before the merges.
    package private(set) var preTokenizer: PreTokenizer = .gpt2
    /// Emit a word that is itself in the vocabulary as one token without merging (LLaMA 3's `ignore_merges`).
    package private(set) var ignoreMerges = false
    /// Whether `encode` adds the BOS token in front (a `TemplateProcessing` post-processor that starts with it).
    package private(set) var addsBOS = false

    /// The special token strings, in id order.
    package let specialTokens: [String]
    /// The ids of `specialTokens`, in the same order.
    package let specialTokenIDs: [Int]
    /// The merge rules in rank order (rank 0 first).
    package let merges: [Merge]

    /// Bytes of every token; for added tokens, the UTF-8 of their content.
    let tokens: [[UInt8]]
    /// Tokens declared in `added_tokens` (specials and others), by id.
    let added: [AddedToken]
    /// Whether an id is a special token (decodes to nothing).
    private let isSpecial: [Bool]
    /// Id of the single-byte token of each byte value.
    private let byteToID: [Int32]
    /// Merge rules keyed by `pairKey(left, right)`.
    private let mergeTable: [UInt64: MergeRule]
    /// Id of every non-added token by its bytes (for `ignoreMerges`).
    private let idOfBytes: [[UInt8]: Int32]

    private struct MergeRule: Sendable {
        var rank: Int32
        var result: Int32
    }

    // MARK: - Construction

    /// Builds the lookup tables; the arguments must already be consistent (callers validate).
    /// `bosID` and `eosID` replace the first and second special tokens when given; the settings come in here
    /// rather than through setters so that they stay private to this file.
    init(tokens: [[UInt8]], added: [AddedToken], merges: [Merge], byteToID: [Int32],
         preTokenizer: PreTokenizer = .gpt2, ignoreMerges: Bool = false, bosID: Int? = nil, eosID: Int? = nil,
         addsBOS: Bool = false) {
        self.tokens = tokens
        self.added = added.sorted { $0.id < $1.id }
        self.vocabSize = tokens.count
        self.merges = merges
        self.byteToID = byteToID
        var special = [Bool](repeating: false, count: tokens.count)
        var specialIDs: [Int] = []
        var specialStrings: [String] = []
        for token in self.added where token.special {
            special[token.id] = true
            specialIDs.append(token.id)
            specialStrings.append(token.content)
        }
        self.isSpecial = special
        self.specialTokenIDs = specialIDs
        self.specialTokens = specialStrings
        self.bosID = bosID ?? (specialIDs.count > 0 ? specialIDs[0] : nil)
        self.eosID = eosID ?? (specialIDs.count > 1 ? specialIDs[1] : nil)
        self.preTokenizer = preTokenizer
        self.ignoreMerges = ignoreMerges
        self.addsBOS = addsBOS
        var table: [UInt64: MergeRule] = [:]
        table.reserveCapacity(merges.count)
        for (rank, m) in merges.enumerated() {
            // A repeated pair keeps its last rank, as the Hugging Face library does.
            table[Self.pairKey(Int32(m.left), Int32(m.right))] = MergeRule(rank: Int32(rank), result: Int32(m.result))
        }
        self.mergeTable = table
        var lookup: [[UInt8]: Int32] = [:]
        let addedIDs = Set(added.map(\.id))
        for (id, t) in tokens.enumerated() where !addedIDs.contains(id) && lookup[t] == nil { lookup[t] = Int32(id) }
        self.idOfBytes = lookup
    }

    @inline(__always)
    static func pairKey(_ a: Int32, _ b: Int32) -> UInt64 {
        (UInt64(UInt32(bitPattern: a)) << 32) | UInt64(UInt32(bitPattern: b))
    }

    // MARK: - Tokenizer

    /// Raw bytes of one token (empty for special tokens and out-of-range ids).
    package func tokenBytes(_ id: Int) -> [UInt8] {
        guard id >= 0 && id < tokens.count && !isSpecial[id] else { return [] }
        return tokens[id]
    }

    /// Decodes ids to text; special tokens and out-of-range ids produce nothing.
    package func decode(_ ids: [Int]) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        for id in ids where id >= 0 && id < tokens.count && !isSpecial[id] {
            bytes.append(contentsOf: tokens[id])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The token's string as written in `tokenizer.json` (GPT-2 byte-to-unicode form; specials verbatim).
    package func tokenString(_ id: Int) -> String? {
        guard id >= 0 && id < tokens.count else { return nil }
        if let a = added.first(where: { $0.id == id }) { return a.content }
        return Self.byteLevelString(tokens[id])
    }

    /// Encodes text: pre-token words with the GPT-2 pattern, then merges by rank inside each word.
    /// No BOS/EOS is added, and special-token strings are encoded as plain text.
    package func encode(_ text: String) -> [Int] {
        var text = text
        var out: [Int] = []
        text.withUTF8 { p in
            out.reserveCapacity(p.count / 3 + 1)
            var cache: [WordKey: [Int32]] = [:]
            Self.forEachWord(p, preTokenizer) { start, end in
                if end - start == 1 {
                    out.append(Int(byteToID[Int(p[start])]))
                    return
                }
                let key = WordKey(base: p.baseAddress! + start, count: end - start)
                if let ids = cache[key] {
                    for id in ids { out.append(Int(id)) }
                } else {
                    let ids = encodeWord(UnsafeBufferPointer(rebasing: p[start..<end]))
                    cache[key] = ids
                    for id in ids { out.append(Int(id)) }
                }
            }
        }
        return out
    }

    /// Applies the merges to one pre-token word, lowest rank first (leftmost first among equal ranks).
    private func encodeWord(_ word: UnsafeBufferPointer<UInt8>) -> [Int32] {
        if ignoreMerges, let id = idOfBytes[Array(word)] { return [id] }
        var sym = word.map { byteToID[Int($0)] }
        if sym.count > 48 { return mergeLongWord(sym) }
        while sym.count > 1 {
            var bestRank = Int32.max
            var bestIndex = -1
            var bestResult: Int32 = 0
            for j in 0..<(sym.count - 1) {
                if let rule = mergeTable[Self.pairKey(sym[j], sym[j + 1])], rule.rank < bestRank {
                    bestRank = rule.rank
                    bestIndex = j
                    bestResult = rule.result
                }
            }
            if bestIndex < 0 { break }
            let a = sym[bestIndex], b = sym[bestIndex + 1]
            var r = bestIndex, w = bestIndex
            while r < sym.count {
                if r + 1 < sym.count && sym[r] == a && sym[r + 1] == b {
                    sym[w] = bestResult
                    r += 2
                } else {
                    sym[w] = sym[r]
                    r += 1
                }
                w += 1
            }
            sym.removeLast(sym.count - w)
        }
        return sym
    }

    /// Same result as the loop in `encodeWord`, in O(n log n): a linked list of symbols and a heap of
    /// candidate merges ordered by (rank, position).
    private func mergeLongWord(_ initial: [Int32]) -> [Int32] {
        var sym = initial
        let n = sym.count
        var next = [Int32](repeating: -1, count: n)
        var prev = [Int32](repeating: -1, count: n)
        for i in 0..<n {
            next[i] = i + 1 < n ? Int32(i + 1) : -1
            prev[i] = Int32(i - 1)
        }
        var heap = TokenizerHeap<RankedPosition>()
        for i in 0..<(n - 1) {
            if let rule = mergeTable[Self.pairKey(sym[i], sym[i + 1])] {
                heap.push(RankedPosition(rank: rule.rank, position: Int32(i)))
            }
        }
        var alive = [Bool](repeating: true, count: n)
        while let top = heap.pop() {
            let i = Int(top.position)
            guard alive[i], next[i] >= 0 else { continue }
            let j = Int(next[i])
            guard let rule = mergeTable[Self.pairKey(sym[i], sym[j])], rule.rank == top.rank else { continue }
            sym[i] = rule.result
            alive[j] = false
            next[i] = next[j]
            if next[j] >= 0 { prev[Int(next[j])] = Int32(i) }
            if prev[i] >= 0 {
                let p = Int(prev[i])
                if let r = mergeTable[Self.pairKey(sym[p], sym[i])] {
                    heap.push(RankedPosition(rank: r.rank, position: Int32(p)))
                }
            }
            if next[i] >= 0, let r = mergeTable[Self.pairKey(sym[i], sym[Int(next[i])])] {
                heap.push(RankedPosition(rank: r.rank, position: Int32(i)))
            }
        }
        var out: [Int32] = []
        var i: Int32 = 0
        while i >= 0 {
            out.append(sym[Int(i)])
            i = next[Int(i)]
        }
        return out
    }
}

extension ByteLevelBPE {
    /// Sets BOS/EOS from a model's config (nil leaves the current one); ids outside the vocabulary are ignored.
    package mutating func setSpecialIDs(bos: Int?, eos: Int?) {
        if let bos, bos >= 0, bos < vocabSize { bosID = bos }
        if let eos, eos >= 0, eos < vocabSize { eosID = eos }
    }

    /// Sets whether prompts start with BOS (GGUF `tokenizer.ggml.add_bos_token`).
    package mutating func setAddsBOS(_ on: Bool) { addsBOS = on && bosID != nil }
}

// MARK: - Helpers

/// A word of the input, hashed and compared by its bytes; valid only while the input buffer lives.
struct WordKey: Hashable {
    let base: UnsafePointer<UInt8>
    let count: Int

    func hash(into hasher: inout Hasher) {
        hasher.combine(bytes: UnsafeRawBufferPointer(start: base, count: count))
    }

    static func == (a: WordKey, b: WordKey) -> Bool {
        a.count == b.count && memcmp(a.base, b.base, a.count) == 0
    }
}

/// Encoding heap entry: lower rank first, then leftmost.
private struct RankedPosition: Comparable {
    let rank: Int32
    let position: Int32
    static func < (a: RankedPosition, b: RankedPosition) -> Bool {
        a.rank != b.rank ? a.rank < b.rank : a.position < b.position
    }
}
