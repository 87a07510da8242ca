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

    /// The pre-tokenizer patterns: GPT-2's and LLaMA 3's (which also keeps numbers to 3 digits and newlines apart).
    package enum PreTokenizer: String, Sendable {
        case gpt2, llama3
    }
    /// The special token strings, in id order.
    package let specialTokens: [String]
    /// The ids of `specialTokens`, in the same order.
    package let specialTokenIDs: [Int]
    /// The merge rules in rank order (rank 0 first).
    package let merges: [Merge]

    /// Bytes of every token; for added tokens, the UTF-8 of their content.
    private let tokens: [[UInt8]]
    /// Tokens declared in `added_tokens` (specials and others), by id.
    private let added: [AddedToken]
    /// Whether an id is a special token (decodes to nothing).
    private let isSpecial: [Bool]
    /// Id of the single-byte token of each byte value.
    private let byteToID: [Int32]
    /// Merge rules keyed by `pairKey(left, right)`.
    private let mergeTable: [UInt64: MergeRule]
    /// Id of every non-added token by its bytes (for `ignoreMerges`).
    private let idOfBytes: [[UInt8]: Int32]

    fileprivate struct MergeRule: Sendable {
        var rank: Int32
        var result: Int32
    }

    fileprivate struct AddedToken: Sendable {
        var id: Int
        var content: String
        var special: Bool
    }

    // MARK: - Construction

    /// Builds the lookup tables; the arguments must already be consistent (callers validate).
    private init(tokens: [[UInt8]], added: [AddedToken], merges: [Merge], byteToID: [Int32]) {
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
        self.bosID = specialIDs.count > 0 ? specialIDs[0] : nil
        self.eosID = specialIDs.count > 1 ? specialIDs[1] : nil
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
    fileprivate static func pairKey(_ a: Int32, _ b: Int32) -> UInt64 {
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

    /// Splits text into pre-token words with the GPT-2 pattern (exposed for inspection and tests).
    package static func preTokenize(_ text: String, kind: PreTokenizer = .gpt2) -> [String] {
        var text = text
        var words: [String] = []
        text.withUTF8 { p in
            forEachWord(p, kind) { s, e in
                words.append(String(decoding: UnsafeBufferPointer(rebasing: p[s..<e]), as: UTF8.self))
            }
        }
        return words
    }

    // MARK: - Training

    /// Learns a byte-level BPE from `text` until the vocabulary (256 bytes + learned tokens + specials)
    /// has `vocabSize` entries, or no pair of adjacent tokens is left to merge (then it is smaller).
    /// Deterministic: the most frequent pair wins, ties go to the smallest (left id, right id).
    /// `progress(done, total)` is called after each learned token.
    package static func train(
        text: String,
        vocabSize: Int,
        specialTokens: [String] = defaultSpecialTokens,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> ByteLevelBPE {
        guard !text.isEmpty else { throw TokenizerError.invalidArgument("training text is empty") }
        guard vocabSize >= 256 + specialTokens.count else {
            throw TokenizerError.invalidArgument(
                "vocabSize \(vocabSize) is smaller than 256 byte tokens + \(specialTokens.count) special tokens")
        }
        guard !specialTokens.contains("") else {
            throw TokenizerError.invalidArgument("a special token is the empty string")
        }
        guard Set(specialTokens).count == specialTokens.count else {
            throw TokenizerError.invalidArgument("special tokens are not distinct: \(specialTokens)")
        }
        let target = vocabSize - 256 - specialTokens.count

        // Unique pre-token words with their counts, in order of first appearance.
        var words: [[Int32]] = []
        var counts: [Int] = []
        var text = text
        text.withUTF8 { p in
            var index: [WordKey: Int32] = [:]
            forEachPreToken(p) { s, e in
                let key = WordKey(base: p.baseAddress! + s, count: e - s)
                if let w = index[key] {
                    counts[Int(w)] += 1
                } else {
                    index[key] = Int32(words.count)
                    words.append((s..<e).map { Int32(p[$0]) })
                    counts.append(1)
                }
            }
        }

        var tokenBytes: [[UInt8]] = (0..<256).map { [UInt8($0)] }
        var idOfBytes: [[UInt8]: Int32] = [:]
        for (i, b) in tokenBytes.enumerated() { idOfBytes[b] = Int32(i) }
        let specialBytes = Set(specialTokens.map { Array($0.utf8) })

        // Pair counts, the words each pair may occur in, and a max-heap with lazy invalidation.
        var pairCount: [UInt64: Int] = [:]
        var occurrences: [UInt64: [Int32]] = [:]
        for (w, sym) in words.enumerated() where sym.count > 1 {
            for j in 0..<(sym.count - 1) {
                let k = pairKey(sym[j], sym[j + 1])
                pairCount[k, default: 0] += counts[w]
                if occurrences[k]?.last != Int32(w) { occurrences[k, default: []].append(Int32(w)) }
            }
        }
        var heap = TokenizerHeap<CountedPair>()
        for (k, c) in pairCount { heap.push(CountedPair(count: c, key: k)) }

        var merges: [Merge] = []
        var merged = Set<UInt64>()
        var banned = Set<UInt64>()
        var visited = [Int32](repeating: -1, count: words.count)
        var learned = 0
        var step: Int32 = 0
        while learned < target, let top = heap.pop() {
            guard let current = pairCount[top.key], current == top.count, !banned.contains(top.key) else { continue }
            let a = Int32(truncatingIfNeeded: top.key >> 32)
            let b = Int32(truncatingIfNeeded: top.key & 0xFFFF_FFFF)
            let joined = tokenBytes[Int(a)] + tokenBytes[Int(b)]
            if specialBytes.contains(joined) {
                banned.insert(top.key)  // would duplicate a special token's string
                continue
            }
            let c: Int32
            if let existing = idOfBytes[joined] {
                c = existing  // same bytes reached through another split: reuse the token
            } else {
                c = Int32(tokenBytes.count)
                tokenBytes.append(joined)
                idOfBytes[joined] = c
                learned += 1
                progress?(learned, target)
            }
            if merged.insert(top.key).inserted {
                merges.append(Merge(left: Int(a), right: Int(b), result: Int(c)))
            }

            // Rewrite every word that contains the pair, collecting the change of each pair's count.
            step += 1
            var delta: [UInt64: Int] = [:]
            for w32 in occurrences.removeValue(forKey: top.key) ?? [] {
                let w = Int(w32)
                if visited[w] == step { continue }
                visited[w] = step
                let old = words[w]
                var new: [Int32] = []
                new.reserveCapacity(old.count)
                var i = 0
                var changed = false
                while i < old.count {
                    if i + 1 < old.count && old[i] == a && old[i + 1] == b {
                        new.append(c)
                        i += 2
                        changed = true
                    } else {
                        new.append(old[i])
                        i += 1
                    }
                }
                if !changed { continue }
                let n = counts[w]
                for j in 0..<(old.count - 1) { delta[pairKey(old[j], old[j + 1]), default: 0] -= n }
                if new.count > 1 {
                    for j in 0..<(new.count - 1) {
                        let k = pairKey(new[j], new[j + 1])
                        delta[k, default: 0] += n
                        if (new[j] == c || new[j + 1] == c) && occurrences[k]?.last != w32 {
                            occurrences[k, default: []].append(w32)
                        }
                    }
                }
                words[w] = new
            }
            for (k, d) in delta where d != 0 {
                let updated = (pairCount[k] ?? 0) + d
                if updated <= 0 {
                    pairCount.removeValue(forKey: k)
                } else {
                    pairCount[k] = updated
                    heap.push(CountedPair(count: updated, key: k))
                }
            }
        }

        var added: [AddedToken] = []
        for s in specialTokens {
            added.append(AddedToken(id: tokenBytes.count, content: s, special: true))
            tokenBytes.append(Array(s.utf8))
        }
        return ByteLevelBPE(tokens: tokenBytes, added: added, merges: merges,
                            byteToID: (0..<256).map { Int32($0) })
    }

    // MARK: - tokenizer.json

    /// Serializes to the Hugging Face `tokenizer.json` format (loadable by the Python `tokenizers` library).
    package func jsonData() throws -> Data {
        var s = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": ["
        for (i, t) in added.enumerated() {
            s += i == 0 ? "\n" : ",\n"
            s += "    {\"id\": \(t.id), \"content\": \(Self.jsonQuote(t.content)), \"single_word\": false, "
            s += "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": \(t.special)}"
        }
        s += added.isEmpty ? "],\n" : "\n  ],\n"
        s += "  \"normalizer\": null,\n"
        switch preTokenizer {
        case .gpt2:
            s += "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true},\n"
        case .llama3:
            s += "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
            s += Self.jsonQuote(Self.llama3Pattern) + "}, \"behavior\": \"Isolated\", \"invert\": false}, "
            s += "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]},\n"
        }
        if addsBOS, let b = bosID, let name = tokenString(b) {
            let q = Self.jsonQuote(name)
            s += "  \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \(q), \"type_id\": 0}}, "
            s += "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": [], \"special_tokens\": {\(q): {\"id\": \(q), \"ids\": [\(b)], \"tokens\": [\(q)]}}},\n"
        } else {
            s += "  \"post_processor\": null,\n"
        }
        s += "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n"
        s += "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
        s += "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
        s += "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": \(ignoreMerges),\n"
        s += "    \"vocab\": {"
        let addedIDs = Set(added.map(\.id))
        var first = true
        for id in 0..<tokens.count where !addedIDs.contains(id) {
            s += first ? "\n" : ",\n"
            first = false
            s += "      \(Self.jsonQuote(Self.byteLevelString(tokens[id]))): \(id)"
        }
        s += first ? "},\n" : "\n    },\n"
        s += "    \"merges\": ["
        for (i, m) in merges.enumerated() {
            s += i == 0 ? "\n" : ",\n"
            let text = Self.byteLevelString(tokens[m.left]) + " " + Self.byteLevelString(tokens[m.right])
            s += "      " + Self.jsonQuote(text)
        }
        s += merges.isEmpty ? "]\n" : "\n    ]\n"
        s += "  }\n}\n"
        return Data(s.utf8)
    }

    /// Writes `tokenizer.json` atomically (a temporary file in the same folder, then a rename).
    package func save(to url: URL) throws {
        let data = try jsonData()
        do {
            try data.write(to: url, options: .atomic)
        } catch {
            throw TokenizerError.unwritable(file: url.path, reason: error.localizedDescription)
        }
    }

    /// Loads a `tokenizer.json` file (byte-level BPE only).
    package init(contentsOf url: URL) throws {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw TokenizerError.unreadable(file: url.path, reason: error.localizedDescription)
        }
        try self.init(jsonData: data, source: url.path)
    }

    /// Parses `tokenizer.json` content (byte-level BPE only), validating ids and merges.
    package init(jsonData: Data) throws {
        try self.init(jsonData: jsonData, source: "tokenizer.json data")
    }

    private init(jsonData: Data, source: String) throws {
        func malformed(_ reason: String) -> TokenizerError { .malformed(file: source, reason: reason) }
        func unsupported(_ reason: String) -> TokenizerError { .unsupported(file: source, reason: reason) }

        let file: HFFile
        do {
            file = try JSONDecoder().decode(HFFile.self, from: jsonData)
        } catch let error as DecodingError {
            throw malformed(Self.describe(error))
        } catch {
            throw malformed("\(error)")
        }
        if let n = file.normalizer {
            throw unsupported("normalizer \(n.type ?? "?") (only none is supported)")
        }
        guard let pre = file.preTokenizer else {
            throw unsupported("no pre_tokenizer (ByteLevel with use_regex is required)")
        }
        var kind = PreTokenizer.gpt2
        if pre.type == "Sequence" {
            // LLaMA 3: Split on its regex (isolated), then ByteLevel without its own regex.
            let parts = pre.pretokenizers ?? []
            guard parts.count == 2, parts[0].type == "Split", parts[0].pattern?.regex == Self.llama3Pattern,
                  parts[0].behavior == "Isolated", parts[0].invert != true,
                  parts[1].type == "ByteLevel", parts[1].useRegex == false, parts[1].addPrefixSpace != true else {
                throw unsupported("pre_tokenizer Sequence other than LLaMA 3's (Split on its regex, then ByteLevel)")
            }
            kind = .llama3
        } else {
            guard pre.type == "ByteLevel" else {
                throw unsupported("pre_tokenizer \(pre.type) (only ByteLevel and LLaMA 3's Sequence are supported)")
            }
            if pre.addPrefixSpace == true { throw unsupported("pre_tokenizer ByteLevel with add_prefix_space true") }
            if pre.useRegex == false { throw unsupported("pre_tokenizer ByteLevel with use_regex false") }
        }
        let model = file.model
        if let t = model.type, t != "BPE" { throw unsupported("model type \(t) (only BPE is supported)") }
        if let p = model.continuingSubwordPrefix, !p.isEmpty { throw unsupported("continuing_subword_prefix \(p)") }
        if let p = model.endOfWordSuffix, !p.isEmpty { throw unsupported("end_of_word_suffix \(p)") }
        guard let rawMerges = model.merges else { throw malformed("model has no merges") }

        // Ids: the vocab and the added tokens together must cover 0..<count exactly.
        var stringOfID: [Int: String] = [:]
        for (token, id) in model.vocab {
            guard id >= 0 else { throw malformed("vocab token \(Self.jsonQuote(token)) has negative id \(id)") }
            if let other = stringOfID[id] {
                let pair = [other, token].sorted().map { Self.jsonQuote($0) }.joined(separator: " and ")
                throw malformed("vocab tokens \(pair) share id \(id)")
            }
            stringOfID[id] = token
        }
        var addedTokens: [AddedToken] = []
        var addedIDs = Set<Int>()
        for a in file.addedTokens ?? [] {
            guard a.id >= 0 else { throw malformed("added token \(Self.jsonQuote(a.content)) has negative id \(a.id)") }
            guard !a.content.isEmpty else { throw malformed("added token \(a.id) has empty content") }
            guard addedIDs.insert(a.id).inserted else { throw malformed("two added tokens have id \(a.id)") }
            if let inVocab = stringOfID[a.id], inVocab != a.content {
                throw malformed("added token \(Self.jsonQuote(a.content)) has id \(a.id), which the vocab gives to \(Self.jsonQuote(inVocab))")
            }
            addedTokens.append(AddedToken(id: a.id, content: a.content, special: a.special ?? false))
        }
        let count = Set(stringOfID.keys).union(addedIDs).count
        guard count > 0 else { throw malformed("empty vocabulary") }
        for id in stringOfID.keys where id >= count {
            throw malformed("vocab id \(id) is out of range 0..<\(count) (ids must be contiguous)")
        }
        for id in addedIDs where id >= count {
            throw malformed("added token id \(id) is out of range 0..<\(count) (ids must be contiguous)")
        }

        var tokens = [[UInt8]](repeating: [], count: count)
        var byteToID = [Int32](repeating: -1, count: 256)
        let addedByID = Dictionary(uniqueKeysWithValues: addedTokens.map { ($0.id, $0) })
        for id in 0..<count {
            if let a = addedByID[id] {
                tokens[id] = Array(a.content.utf8)
                continue
            }
            let token = stringOfID[id]!
            guard let bytes = Self.bytes(ofByteLevelString: token) else {
                throw malformed("vocab token \(Self.jsonQuote(token)) (id \(id)) has a character outside the byte-level alphabet")
            }
            guard !bytes.isEmpty else { throw malformed("vocab token id \(id) is the empty string") }
            tokens[id] = bytes
            if bytes.count == 1 && byteToID[Int(bytes[0])] < 0 { byteToID[Int(bytes[0])] = Int32(id) }
        }
        if let missing = byteToID.firstIndex(of: -1) {
            throw malformed("no vocab token for byte 0x\(String(missing, radix: 16, uppercase: true)) (a byte-level vocab needs all 256)")
        }

        var idOfString: [String: Int] = [:]
        for (token, id) in model.vocab where addedByID[id] == nil { idOfString[token] = id }
        var merges: [Merge] = []
        merges.reserveCapacity(rawMerges.count)
        for (rank, raw) in rawMerges.enumerated() {
            let parts: [String]
            switch raw {
            case .joined(let s): parts = s.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            case .pair(let p): parts = p
            }
            guard parts.count == 2 else {
                throw malformed("merge #\(rank) \(Self.jsonQuote(parts.joined(separator: " "))) is not two tokens")
            }
            guard let l = idOfString[parts[0]] else {
                throw malformed("merge #\(rank) refers to unknown token \(Self.jsonQuote(parts[0]))")
            }
            guard let r = idOfString[parts[1]] else {
                throw malformed("merge #\(rank) refers to unknown token \(Self.jsonQuote(parts[1]))")
            }
            guard let result = idOfString[parts[0] + parts[1]] else {
                throw malformed("merge #\(rank) produces \(Self.jsonQuote(parts[0] + parts[1])), which is not in the vocab")
            }
            merges.append(Merge(left: l, right: r, result: result))
        }
        self.init(tokens: tokens, added: addedTokens, merges: merges, byteToID: byteToID)
        preTokenizer = kind
        ignoreMerges = model.ignoreMerges ?? false
        // A TemplateProcessing that opens with a special token adds it (LLaMA 3: <|begin_of_text|>).
        let post = file.postProcessor
        let template = post?.type == "TemplateProcessing" ? post?.single
            : post?.processors?.first(where: { $0.type == "TemplateProcessing" })?.single
        if let first = template?.first?.specialToken?.id {
            guard let a = addedTokens.first(where: { $0.content == first }) else {
                throw malformed("post_processor adds \(Self.jsonQuote(first)), which is not an added token")
            }
            bosID = a.id
            addsBOS = true
        }
    }
}

// MARK: - JSON schema (the subset of tokenizer.json that is read)

extension ByteLevelBPE {
    fileprivate struct HFFile: Decodable {
        var addedTokens: [HFAdded]?
        var normalizer: HFTyped?
        var preTokenizer: HFPreTokenizer?
        var postProcessor: HFPostProcessor?
        var model: HFModel
        enum CodingKeys: String, CodingKey {
            case addedTokens = "added_tokens", normalizer, preTokenizer = "pre_tokenizer", postProcessor = "post_processor", model
        }
    }

    fileprivate struct HFTyped: Decodable {
        var type: String?
    }

    fileprivate struct HFPreTokenizer: Decodable {
        var type: String
        var addPrefixSpace: Bool?
        var useRegex: Bool?
        var pretokenizers: [HFPreTokenizer]?
        var pattern: HFPattern?
        var behavior: String?
        var invert: Bool?
        enum CodingKeys: String, CodingKey {
            case type, addPrefixSpace = "add_prefix_space", useRegex = "use_regex", pretokenizers, pattern, behavior, invert
        }
    }

    fileprivate struct HFPattern: Decodable {
        var regex: String?
        enum CodingKeys: String, CodingKey { case regex = "Regex" }
    }

    /// The post-processor: only a `TemplateProcessing` whose single template may start with BOS is read.
    fileprivate struct HFPostProcessor: Decodable {
        var type: String?
        var single: [HFTemplatePiece]?
        var processors: [HFPostProcessor]?
    }

    fileprivate struct HFTemplatePiece: Decodable {
        var specialToken: HFSpecialRef?
        enum CodingKeys: String, CodingKey { case specialToken = "SpecialToken" }
    }

    fileprivate struct HFSpecialRef: Decodable {
        var id: String
    }

    fileprivate struct HFAdded: Decodable {
        var id: Int
        var content: String
        var special: Bool?
    }

    fileprivate struct HFModel: Decodable {
        var type: String?
        var vocab: [String: Int]
        var merges: [HFMerge]?
        var continuingSubwordPrefix: String?
        var endOfWordSuffix: String?
        var ignoreMerges: Bool?
        enum CodingKeys: String, CodingKey {
            case type, vocab, merges, ignoreMerges = "ignore_merges"
            case continuingSubwordPrefix = "continuing_subword_prefix", endOfWordSuffix = "end_of_word_suffix"
        }
    }

    /// A merge is written either as "a b" or (newer files) as ["a", "b"].
    fileprivate enum HFMerge: Decodable {
        case joined(String)
        case pair([String])
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) {
                self = .joined(s)
            } else {
                self = .pair(try c.decode([String].self))
            }
        }
    }

    fileprivate static func describe(_ error: DecodingError) -> String {
        func path(_ p: [CodingKey]) -> String {
            p.isEmpty ? "top level" : p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .dataCorrupted(let ctx):
            if let u = ctx.underlyingError { return "not valid JSON (\(ctx.debugDescription): \(u.localizedDescription))" }
            return "bad value at \(path(ctx.codingPath)): \(ctx.debugDescription)"
        case .keyNotFound(let key, let ctx):
            return "missing key \"\(key.stringValue)\" at \(path(ctx.codingPath))"
        case .typeMismatch(let type, let ctx):
            return "wrong type at \(path(ctx.codingPath)) (expected \(type))"
        case .valueNotFound(let type, let ctx):
            return "null at \(path(ctx.codingPath)) (expected \(type))"
        @unknown default:
            return "\(error)"
        }
    }

    fileprivate static func jsonQuote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20 || u.value == 0x7F:
                let hex = String(u.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}

// MARK: - GPT-2 byte <-> unicode alphabet

extension ByteLevelBPE {
    /// GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes map to
    /// themselves, the others (in byte order) to U+0100, U+0101, ...
    fileprivate static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// Inverse of `byteToScalar`, indexed by scalar value (-1: not in the alphabet).
    fileprivate static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 512)
        for (b, s) in byteToScalar.enumerated() { table[Int(s.value)] = Int16(b) }
        return table
    }()

    fileprivate static func byteLevelString(_ bytes: [UInt8]) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(byteToScalar[Int(b)]) }
        return String(s)
    }

    fileprivate static func bytes(ofByteLevelString s: String) -> [UInt8]? {
        var out: [UInt8] = []
        for u in s.unicodeScalars {
            guard u.value < 512 else { return nil }
            let b = scalarToByte[Int(u.value)]
            guard b >= 0 else { return nil }
            out.append(UInt8(b))
        }
        return out
    }
}

// MARK: - GPT-2 pre-tokenizer

extension ByteLevelBPE {
    /// Character classes of the GPT-2 pattern.
    fileprivate enum CharClass: UInt8 {
        case letter, number, space, other
    }

    fileprivate static let asciiClass: [CharClass] = (0..<128).map { v -> CharClass in
        classifyNonASCII(UInt32(v))
    }

    @inline(__always)
    fileprivate static func classify(_ v: UInt32) -> CharClass {
        v < 128 ? asciiClass[Int(v)] : classifyNonASCII(v)
    }

    /// `\s` is the Unicode White_Space property, `\p{L}` and `\p{N}` the general categories L* and N*.
    fileprivate static func classifyNonASCII(_ v: UInt32) -> CharClass {
        guard let u = Unicode.Scalar(v) else { return .other }
        let props = u.properties
        if props.isWhitespace { return .space }
        switch props.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    /// Decodes the scalar starting at `i` of valid UTF-8; returns its value and byte length.
    @inline(__always)
    fileprivate static func scalar(_ p: UnsafeBufferPointer<UInt8>, _ i: Int) -> (UInt32, Int) {
        let b0 = UInt32(p[i])
        if b0 < 0x80 { return (b0, 1) }
        if b0 < 0xE0 { return (((b0 & 0x1F) << 6) | (UInt32(p[i + 1]) & 0x3F), 2) }
        if b0 < 0xF0 {
            return (((b0 & 0x0F) << 12) | ((UInt32(p[i + 1]) & 0x3F) << 6) | (UInt32(p[i + 2]) & 0x3F), 3)
        }
        return (((b0 & 0x07) << 18) | ((UInt32(p[i + 1]) & 0x3F) << 12)
                | ((UInt32(p[i + 2]) & 0x3F) << 6) | (UInt32(p[i + 3]) & 0x3F), 4)
    }

    /// Calls `body(start, end)` with the byte range of each match of
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` over valid UTF-8,
    /// with the regex's leftmost-first semantics. The ranges tile the input.
    fileprivate static func forEachPreToken(_ p: UnsafeBufferPointer<UInt8>, _ body: (Int, Int) -> Void) {
        let n = p.count
        var i = 0
        while i < n {
            let start = i
            // 's 't 're 've 'm 'll 'd
            if p[i] == 0x27 && i + 1 < n {
                let b1 = p[i + 1]
                if b1 == 0x73 || b1 == 0x74 || b1 == 0x6D || b1 == 0x64 {  // s t m d
                    body(i, i + 2)
                    i += 2
                    continue
                }
                if i + 2 < n {
                    let b2 = p[i + 2]
                    if (b1 == 0x72 && b2 == 0x65) || (b1 == 0x76 && b2 == 0x65) || (b1 == 0x6C && b2 == 0x6C) {  // re ve ll
                        body(i, i + 3)
                        i += 3
                        continue
                    }
                }
            }
            let (c0, l0) = scalar(p, i)
            var cls = classify(c0)
            var j = i + l0
            if c0 == 0x20 && j < n {
                // " ?X+": the optional space joins a following letter, number or other run.
                let (c1, l1) = scalar(p, j)
                let k1 = classify(c1)
                if k1 != .space {
                    cls = k1
                    j += l1
                }
            }
            if cls != .space {
                while j < n {
                    let (c, l) = scalar(p, j)
                    if classify(c) != cls { break }
                    j += l
                }
                body(start, j)
                i = j
                continue
            }
            // Whitespace run: `\s+(?!\S)` leaves its last character to the word that follows it;
            // a single whitespace character before a non-space falls to `\s+`.
            var lastStart = start
            while j < n {
                let (c, l) = scalar(p, j)
                if classify(c) != .space { break }
                lastStart = j
                j += l
            }
            if j < n && lastStart > start { j = lastStart }
            body(start, j)
            i = j
        }
    }
}

// MARK: - Helpers

/// A word of the input, hashed and compared by its bytes; valid only while the input buffer lives.
private struct WordKey: Hashable {
    let base: UnsafePointer<UInt8>
    let count: Int

    func hash(into hasher: inout Hasher) {
        hasher.combine(bytes: UnsafeRawBufferPointer(start: base, count: count))
    }

    static func == (a: WordKey, b: WordKey) -> Bool {
        a.count == b.count && memcmp(a.base, b.base, a.count) == 0
    }
}

/// Training heap entry: higher count first, then smaller (left, right).
private struct CountedPair: Comparable {
    let count: Int
    let key: UInt64
    static func < (a: CountedPair, b: CountedPair) -> Bool {
        a.count != b.count ? a.count > b.count : a.key < b.key
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

/// A binary min-heap (by `<`), shared by the tokenizers of this folder.
struct TokenizerHeap<Element: Comparable> {
    private var items: [Element] = []

    var isEmpty: Bool { items.isEmpty }

    mutating func push(_ x: Element) {
        items.append(x)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if !(items[i] < items[parent]) { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Element? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            let n = items.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && items[l] < items[m] { m = l }
                if r < n && items[r] < items[m] { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}

// MARK: - LLaMA 3 pre-tokenizer, GGUF vocabularies, added tokens

extension ByteLevelBPE {
    /// The Split regex of LLaMA 3's tokenizer.json (and llama.cpp's `llama-bpe` pre-tokenizer).
    static let llama3Pattern = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

    fileprivate static func forEachWord(_ p: UnsafeBufferPointer<UInt8>, _ kind: PreTokenizer, _ body: (Int, Int) -> Void) {
        switch kind {
        case .gpt2: forEachPreToken(p, body)
        case .llama3: forEachLlama3PreToken(p, body)
        }
    }

    /// Calls `body(start, end)` for each match of `llama3Pattern` over valid UTF-8 (leftmost-first alternation).
    fileprivate static func forEachLlama3PreToken(_ p: UnsafeBufferPointer<UInt8>, _ body: (Int, Int) -> Void) {
        let n = p.count
        @inline(__always) func isNewline(_ c: UInt32) -> Bool { c == 0x0A || c == 0x0D }
        var i = 0
        while i < n {
            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if p[i] == 0x27 && i + 1 < n {
                let b1 = p[i + 1] | 0x20
                if b1 == 0x73 || b1 == 0x74 || b1 == 0x6D || b1 == 0x64 { body(i, i + 2); i += 2; continue }
                if i + 2 < n {
                    let b2 = p[i + 2] | 0x20
                    if (b1 == 0x72 && b2 == 0x65) || (b1 == 0x76 && b2 == 0x65) || (b1 == 0x6C && b2 == 0x6C) { body(i, i + 3); i += 3; continue }
                }
            }
            let (c0, l0) = scalar(p, i)
            let k0 = classify(c0)
            // [^\r\n\p{L}\p{N}]?\p{L}+
            var j = i
            if k0 == .letter {
                j = i
            } else if k0 != .number && !isNewline(c0) && i + l0 < n && classify(scalar(p, i + l0).0) == .letter {
                j = i + l0
            }
            if j > i || k0 == .letter {
                while j < n { let (c, l) = scalar(p, j); if classify(c) != .letter { break }; j += l }
                body(i, j); i = j; continue
            }
            // \p{N}{1,3}
            if k0 == .number {
                j = i
                var digits = 0
                while j < n && digits < 3 { let (c, l) = scalar(p, j); if classify(c) != .number { break }; j += l; digits += 1 }
                body(i, j); i = j; continue
            }
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            var s = i
            if c0 == 0x20 && i + 1 < n && classify(scalar(p, i + 1).0) == .other { s = i + 1 }
            if classify(scalar(p, s).0) == .other {
                j = s
                while j < n { let (c, l) = scalar(p, j); if classify(c) != .other { break }; j += l }
                while j < n && (p[j] == 0x0A || p[j] == 0x0D) { j += 1 }
                body(i, j); i = j; continue
            }
            // Whitespace: \s*[\r\n]+ (up to the last newline of the run), then \s+(?!\S), then \s+.
            j = i
            var lastStart = i, afterNewline = -1
            while j < n {
                let (c, l) = scalar(p, j)
                if classify(c) != .space { break }
                lastStart = j
                j += l
                if isNewline(c) { afterNewline = j }
            }
            if afterNewline > 0 { body(i, afterNewline); i = afterNewline; continue }
            if j < n && lastStart > i { j = lastStart }
            body(i, j); i = j
        }
    }

    /// Builds a tokenizer from a GGUF `gpt2` vocabulary: token strings in byte-level form, llama.cpp token types
    /// (3 control → special, 4 user-defined → added), merges "a b" in rank order.
    package init(vocabulary: [String], types: [Int], merges rawMerges: [String], bos: Int?, eos: Int?,
                preTokenizer: PreTokenizer, source: String) throws {
        func malformed(_ reason: String) -> TokenizerError { .malformed(file: source, reason: reason) }
        guard !vocabulary.isEmpty, types.count == vocabulary.count else { throw malformed("empty vocabulary or token types of another length") }
        var tokens = [[UInt8]](repeating: [], count: vocabulary.count)
        var added: [AddedToken] = []
        var byteToID = [Int32](repeating: -1, count: 256)
        var idOfString: [String: Int] = [:]
        for (id, t) in vocabulary.enumerated() {
            if types[id] == 3 || types[id] == 4 {
                guard !t.isEmpty else { throw malformed("added token \(id) is empty") }
                added.append(AddedToken(id: id, content: t, special: types[id] == 3))
                tokens[id] = Array(t.utf8)
                continue
            }
            guard let bytes = Self.bytes(ofByteLevelString: t), !bytes.isEmpty else {
                throw malformed("token \(id) \(Self.jsonQuote(t)) is empty or outside the byte-level alphabet")
            }
            tokens[id] = bytes
            if idOfString[t] == nil { idOfString[t] = id }
            if bytes.count == 1 && byteToID[Int(bytes[0])] < 0 { byteToID[Int(bytes[0])] = Int32(id) }
        }
        if let missing = byteToID.firstIndex(of: -1) {
            throw malformed("no token for byte 0x\(String(missing, radix: 16, uppercase: true)) (a byte-level vocab needs all 256)")
        }
        var merges: [Merge] = []
        merges.reserveCapacity(rawMerges.count)
        for (rank, m) in rawMerges.enumerated() {
            let parts = m.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2, let l = idOfString[parts[0]], let r = idOfString[parts[1]], let res = idOfString[parts[0] + parts[1]] else {
                throw malformed("merge #\(rank) \(Self.jsonQuote(m)) is not two known tokens whose concatenation is a token")
            }
            merges.append(Merge(left: l, right: r, result: res))
        }
        self.init(tokens: tokens, added: added, merges: merges, byteToID: byteToID)
        self.preTokenizer = preTokenizer
        // llama.cpp's llama-bpe vocabularies emit whole-word tokens before merging, as LLaMA 3's ignore_merges.
        self.ignoreMerges = preTokenizer == .llama3
        if let bos { bosID = bos }
        if let eos { eosID = eos }
    }

    /// True when `id` is an added token (special or not).
    package func isAddedToken(_ id: Int) -> Bool { added.contains { $0.id == id } }

    /// Id of an added token by its content.
    package func addedTokenID(_ content: String) -> Int? { added.first { $0.content == content }?.id }

    /// Encodes text in which added tokens (e.g. `<|eot_id|>`) are recognized as such, as Hugging Face does;
    /// the text between them is encoded normally. Longest match wins at a position.
    package func encode(_ text: String, parseSpecial: Bool) -> [Int] {
        guard parseSpecial, !added.isEmpty else { return encode(text) }
        let bytes = Array(text.utf8)
        let contents = added.map { (Array($0.content.utf8), $0.id) }.sorted { $0.0.count > $1.0.count }
        var out: [Int] = []
        var segmentStart = 0, i = 0
        while i < bytes.count {
            var matched: (Int, Int)? = nil
            for (c, id) in contents where c.count <= bytes.count - i && bytes[i] == c[0] && Array(bytes[i..<(i + c.count)]) == c {
                matched = (id, c.count); break
            }
            if let (id, len) = matched {
                if segmentStart < i { out += encode(String(decoding: bytes[segmentStart..<i], as: UTF8.self)) }
                out.append(id)
                i += len
                segmentStart = i
            } else {
                i += 1
            }
        }
        if segmentStart < bytes.count { out += encode(String(decoding: bytes[segmentStart...], as: UTF8.self)) }
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
