import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference
import BitNetTraining
import BitNetKernels

/// Scores requests through the inference path (integer BitLinear kernels, KV cache in a chosen format): one
/// `prefillLogits` per request, so the cache format (Table 6) affects every attention read.
package final class SessionScorer: LogLikelihoodScorer {
    package let model: InferenceModel
    package let kvCache: KVCacheFormat
    package let maxContext: Int
    private let session: InferenceSession

    package init(model: InferenceModel, kvCache: KVCacheFormat, maxContext: Int? = nil) throws {
        self.model = model; self.kvCache = kvCache
        self.maxContext = min(maxContext ?? model.config.maxSeqLen, model.config.maxSeqLen)
        session = try InferenceSession(model: model, maxSeqLen: self.maxContext, kvCache: kvCache)
    }

    package func score(_ requests: [LogLikelihoodRequest]) throws -> [LogLikelihoodResult] {
        let v = model.config.vocabSize
        return try requests.map { r in
            let (toks, first) = try window(r)
            session.reset()
            let logits = try session.prefillLogits(tokens: Array(toks.dropLast()))
            var ll = 0.0, greedy = true
            try logits.withUnsafeBufferPointer { lp in
                for j in first..<toks.count {
                    guard toks[j] >= 0 && toks[j] < v else { throw BitNetError.invalidArgument("token id \(toks[j]) outside vocabulary 0..<\(v)") }
                    let (p, top) = logProbability(row: lp.baseAddress! + (j - 1) * v, vocab: v, target: toks[j])
                    ll += p; greedy = greedy && top
                }
            }
            return LogLikelihoodResult(logLikelihood: ll, isGreedy: greedy)
        }
    }

    /// Mean NLL over a token stream in consecutive windows of `maxContext` + 1 tokens (each window starts a fresh cache),
    /// the inference-path twin of `evaluateLoss` with stride = window.
    package func heldOutLoss(_ tokens: [Int32]) throws -> (loss: Double, count: Int) {
        var total = 0.0, count = 0, start = 0
        while start + 1 < tokens.count {
            let end = min(start + maxContext + 1, tokens.count)
            let w = tokens[start..<end].map { Int($0) }
            let r = try score([LogLikelihoodRequest(context: [w[0]], continuation: Array(w.dropFirst()))])
            total -= r[0].logLikelihood; count += w.count - 1
            start = end - 1
        }
        return (count > 0 ? total / Double(count) : .nan, count)
    }
}
