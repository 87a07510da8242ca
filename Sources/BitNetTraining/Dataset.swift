import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetKernels

/// A tokenized corpus split into training tokens and held-out tokens (the last `valFraction` of the text).
package struct TokenDataset: Sendable {
    package let train: [Int32]
    package let val: [Int32]
    /// UTF-8 bytes of the held-out text (for bits per byte).
    package let valBytes: Int
    package let trainBytes: Int

    package init(train: [Int32], val: [Int32], trainBytes: Int, valBytes: Int) {
        self.train = train; self.val = val; self.trainBytes = trainBytes; self.valBytes = valBytes
    }

    /// FNV-1a over both token sequences: equal for the same corpus, split and tokenizer, and for nothing else in
    /// practice. A checkpoint records it so that a run resumes only on the data it was trained on.
    package var fingerprint: String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for part in [train, [-1], val] { for t in part { h = (h ^ UInt64(UInt32(bitPattern: t))) &* 0x100_0000_01b3 } }
        return String(h, radix: 16)
    }

    /// Splits the text at `1 − valFraction` of its bytes (on a character boundary) and returns (train, held-out).
    package static func split(_ text: String, valFraction: Double) -> (train: String, val: String) {
        let utf8 = Array(text.utf8)
        var cut = Int(Double(utf8.count) * (1 - valFraction))
        // Back up to the start of a UTF-8 character so neither half is corrupted.
        while cut > 0 && cut < utf8.count && (utf8[cut] & 0xC0) == 0x80 { cut -= 1 }
        return (String(decoding: utf8[..<cut], as: UTF8.self), String(decoding: utf8[cut...], as: UTF8.self))
    }

    /// Reads the corpus files (joined by a blank line), fails on missing or empty ones.
    package static func readCorpus(_ paths: [String]) throws -> String {
        guard !paths.isEmpty else { throw BitNetError.invalidArgument("no --data file given") }
        var parts: [String] = []
        for p in paths {
            let t = try FileIO.readText(p)
            if t.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { throw BitNetError.emptyCorpus("\(p) holds only whitespace") }
            parts.append(t)
        }
        return parts.joined(separator: "\n\n")
    }

    /// Tokenizes both halves of a split corpus.
    package static func tokenize(train: String, val: String, tokenizer: any Tokenizer) -> TokenDataset {
        TokenDataset(train: tokenizer.encode(train).map { Int32($0) }, val: tokenizer.encode(val).map { Int32($0) },
                     trainBytes: train.utf8.count, valBytes: val.utf8.count)
    }

    /// The batch of training step `step`: B random windows of T+1 tokens, drawn from a generator seeded by (seed, step)
    /// so a resumed run sees exactly the batches an uninterrupted one would.
    package func batch(step: Int, batchSize: Int, seqLen: Int, seed: UInt64) -> (inputs: [Int], targets: [Int]) {
        var rng = SeededRNG(seed: seed, stream: UInt64(step))
        var inputs = [Int](), targets = [Int]()
        inputs.reserveCapacity(batchSize * seqLen); targets.reserveCapacity(batchSize * seqLen)
        let span = train.count - seqLen - 1
        for _ in 0..<batchSize {
            let start = span > 0 ? rng.nextInt(below: span + 1) : 0
            for i in 0..<seqLen {
                inputs.append(Int(train[start + i]))
                targets.append(Int(train[start + i + 1]))
            }
        }
        return (inputs, targets)
    }
}

/// Mean cross-entropy of a model over consecutive windows of a token stream, plus the token count.
/// Windows of T+1 tokens step by `stride`; after the first window only the last `stride` predictions count,
/// so every token is scored once with as much context as the window allows.
package func evaluateLoss(graph: TrainingGraph, tokens: [Int32], stride: Int? = nil, maxWindows: Int? = nil,
                         showProgress: Bool = false) -> (loss: Double, count: Int) {
    let t = graph.seqLen, b = graph.batch, v = graph.config.vocabSize
    let stride = min(max(stride ?? t, 1), t)
    guard tokens.count >= 2 else { return (.nan, 0) }
    // (window start, first counted position): window k scores targets start+1 ... start+len, new ones from t − stride on.
    var windows: [(Int, Int)] = []
    var start = 0
    while true {
        let len = min(t, tokens.count - 1 - start)
        windows.append((start, windows.isEmpty ? 0 : t - stride))
        if start + len >= tokens.count - 1 { break }
        start += stride
    }
    if let maxWindows, windows.count > maxWindows { windows = Array(windows.prefix(maxWindows)) }
    var total = 0.0, count = 0
    var i = 0
    var progress = ProgressLine(total: windows.count, unit: "windows")
    while i < windows.count {
        let chunk = Array(windows[i..<min(i + b, windows.count)])
        var inputs = [Int](repeating: 0, count: b * t)
        var valid = [(Int, Int, Int)]()   // (row, first, length)
        for (r, (s, f)) in chunk.enumerated() {
            let len = min(t, tokens.count - 1 - s)
            for j in 0..<len { inputs[r * t + j] = Int(tokens[s + j]) }
            valid.append((r, f, len))
        }
        graph.forward(inputs: inputs, training: false)
        for (r, f, len) in valid {
            let s = chunk[r].0
            for j in f..<len {
                let row = graph.logits.ptr + (r * t + j) * v
                var m = -Float.infinity
                for k in 0..<v { m = max(m, row[k]) }
                var sum = 0.0
                for k in 0..<v { sum += Double(expf(row[k] - m)) }
                total += Double(m) + log(sum) - Double(row[Int(tokens[s + j + 1])])
                count += 1
            }
        }
        i += b
        if showProgress {
            progress.update(done: min(i, windows.count), rateItems: Double(count) / max(progress.elapsed, 1e-9), rateUnit: "tok",
                            extra: count > 0 ? String(format: "nll %.4f", total / Double(count)) : "")
        }
    }
    return (count > 0 ? total / Double(count) : .nan, count)
}
