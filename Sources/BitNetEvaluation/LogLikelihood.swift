import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference
import BitNetTraining
import BitNetKernels

/// One log-likelihood request in the way of lm-evaluation-harness: score `continuation` given `context` (token ids).
package struct LogLikelihoodRequest: Sendable, Equatable {
    package var context: [Int]
    package var continuation: [Int]
    package init(context: [Int], continuation: [Int]) { self.context = context; self.continuation = continuation }
}

/// The answer to a request: Σ log p(continuation token | everything before it), and whether greedy decoding
/// would have produced the continuation (every target is the argmax; LAMBADA's accuracy).
package struct LogLikelihoodResult: Sendable, Equatable {
    package var logLikelihood: Double
    package var isGreedy: Bool
    package init(logLikelihood: Double, isGreedy: Bool) { self.logLikelihood = logLikelihood; self.isGreedy = isGreedy }
}

/// Anything that scores requests: a model through the batched training graph, through an inference session, or a
/// stub with known log-likelihoods in tests.
package protocol LogLikelihoodScorer {
    /// Longest token sequence (context + continuation − 1 inputs) the model sees; longer contexts are cut on the left.
    var maxContext: Int { get }
    /// Scores every request, in order.
    func score(_ requests: [LogLikelihoodRequest]) throws -> [LogLikelihoodResult]
}

extension LogLikelihoodScorer {
    /// The model's input for a request, as the harness builds it: the last `maxContext + 1` tokens of context +
    /// continuation, of which the last `continuation.count` (at most `maxContext`) are targets. Returns (tokens, index of the first target).
    func window(_ r: LogLikelihoodRequest) throws -> (tokens: [Int], firstTarget: Int) {
        guard !r.continuation.isEmpty else { throw BitNetError.invalidArgument("empty continuation in a log-likelihood request") }
        guard !r.context.isEmpty else { throw BitNetError.invalidArgument("empty context in a log-likelihood request (the model has no BOS to start from)") }
        let all = r.context + r.continuation
        let keep = min(all.count, maxContext + 1)
        let tokens = Array(all.suffix(keep))
        // A continuation longer than the window keeps its last maxContext tokens as targets (its head becomes context).
        return (tokens, max(1, tokens.count - r.continuation.count))
    }
}

/// Σ log-softmax(row)[target] terms for one position: (log p(target), target is the argmax).
@inline(__always)
func logProbability(row: UnsafePointer<Float>, vocab v: Int, target: Int) -> (Double, Bool) {
    var m = -Float.infinity, arg = 0
    for k in 0..<v where row[k] > m { m = row[k]; arg = k }
    var sum = 0.0
    for k in 0..<v { sum += Double(expf(row[k] - m)) }
    // Ties count as greedy only when the target is the first maximum, as torch.argmax does.
    return (Double(row[target] - m) - log(sum), arg == target)
}

/// Scores requests with the batched training-graph forward (exact model semantics, fake-quantized weights and
/// activations, per-token activation scale as at inference). Sequences are grouped by length into graphs of
/// 16, 32, 64, ... positions so short items do not pay for the full context.
package final class GraphScorer: LogLikelihoodScorer {
    package let weights: ModelWeights
    package let batch: Int
    package let maxContext: Int
    /// PTQ activation bits for an fp model (see TrainingGraph.activationBits).
    package let activationBits: Int?
    private var graphs: [Int: TrainingGraph] = [:]

    package init(weights: ModelWeights, batch: Int = 16, maxContext: Int? = nil, activationBits: Int? = nil) {
        self.weights = weights; self.batch = max(1, batch); self.activationBits = activationBits
        self.maxContext = min(maxContext ?? weights.config.maxSeqLen, weights.config.maxSeqLen)
    }

    func graph(length: Int) -> TrainingGraph {
        var t = 16
        while t < length { t *= 2 }
        t = min(t, maxContext)
        if let g = graphs[t] { return g }
        let g = TrainingGraph(weights: weights, batch: batch, seqLen: t, activationBits: activationBits)
        graphs[t] = g
        return g
    }

    package func score(_ requests: [LogLikelihoodRequest]) throws -> [LogLikelihoodResult] {
        let windows = try requests.map { try window($0) }
        let v = weights.config.vocabSize
        for w in windows { for t in w.tokens where t < 0 || t >= v { throw BitNetError.invalidArgument("token id \(t) outside vocabulary 0..<\(v)") } }
        // Longest first, so each chunk's graph fits its longest member.
        let order = windows.indices.sorted { windows[$0].tokens.count > windows[$1].tokens.count }
        var results = [LogLikelihoodResult](repeating: LogLikelihoodResult(logLikelihood: 0, isGreedy: false), count: requests.count)
        var i = 0
        while i < order.count {
            let chunk = Array(order[i..<min(i + batch, order.count)])
            let g = graph(length: windows[chunk[0]].tokens.count - 1)
            let t = g.seqLen
            var inputs = [Int](repeating: 0, count: batch * t)
            for (r, idx) in chunk.enumerated() {
                let toks = windows[idx].tokens
                for j in 0..<(toks.count - 1) { inputs[r * t + j] = toks[j] }
            }
            g.forward(inputs: inputs, training: false)
            for (r, idx) in chunk.enumerated() {
                let (toks, first) = windows[idx]
                var ll = 0.0, greedy = true
                // Target toks[j] is predicted at position j − 1.
                for j in first..<toks.count {
                    let (lp, top) = logProbability(row: g.logits.ptr + (r * t + j - 1) * v, vocab: v, target: toks[j])
                    ll += lp; greedy = greedy && top
                }
                results[idx] = LogLikelihoodResult(logLikelihood: ll, isGreedy: greedy)
            }
            i += batch
        }
        return results
    }
}
