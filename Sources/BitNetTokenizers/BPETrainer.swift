import Foundation
import BitNetCore

extension ByteLevelBPE {
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
}

/// Training heap entry: higher count first, then smaller (left, right).
private struct CountedPair: Comparable {
    let count: Int
    let key: UInt64
    static func < (a: CountedPair, b: CountedPair) -> Bool {
        a.count != b.count ? a.count > b.count : a.key < b.key
    }
}
