import Foundation
import BitNetKernels

/// Activation buffers for a forward pass over `rows` tokens (decoding: 1 row; prompts and batched decoding: many).
final class ForwardScratch: @unchecked Sendable {
    let rows: Int
    /// Residual stream [rows, dim]; A/B: normed input and attention output [rows, max(dim, qDim)]; Q [rows, qDim];
    /// K/V [rows, kvDim]; G/U: FFN gate and up [rows, ffnDim].
    let x, a, b, q, k, v, g, u: FloatBuffer
    /// Single-row GEMV scratch: activation codes, dequantized activations and int32 sums for the widest layer.
    let codes: UnsafeMutablePointer<Int8>, deq: FloatBuffer, acc: UnsafeMutablePointer<Int32>

    init(config c: ModelConfig, rows n: Int) {
        rows = n
        let qD = c.nHeads * c.headDim, wide = max(c.dim, qD)
        x = FloatBuffer(n * c.dim); a = FloatBuffer(n * wide); b = FloatBuffer(n * wide); q = FloatBuffer(n * qD)
        k = FloatBuffer(n * c.kvDim); v = FloatBuffer(n * c.kvDim); g = FloatBuffer(n * c.ffnDim); u = FloatBuffer(n * c.ffnDim)
        let widest = max(c.dim, c.ffnDim, qD)
        codes = .allocate(capacity: widest); deq = FloatBuffer(widest); acc = .allocate(capacity: widest)
    }

    deinit { codes.deallocate(); acc.deallocate() }
}

/// Per-sequence decoding state: the KV cache, attention scratch and logits. A single-token step allocates nothing.
public final class InferenceSession: @unchecked Sendable {
    public let model: InferenceModel
    public let maxSeqLen: Int
    /// Number of positions already in the cache.
    public private(set) var position = 0
    /// Keys and values of every layer and position so far.
    public let cache: KVCache
    /// Attention probabilities [nHeads, maxSeqLen] and the last logits [vocab].
    let att: FloatBuffer, logitsBuf: FloatBuffer
    let single: ForwardScratch
    private var wide: ForwardScratch?

    /// A session with a KV cache in `kvCache` format (f32, f16, 8-bit or 4-bit per-head absmax).
    public init(model: InferenceModel, maxSeqLen: Int? = nil, kvCache: KVCacheFormat) throws {
        let c = model.config
        self.model = model
        self.maxSeqLen = min(maxSeqLen ?? c.maxSeqLen, c.maxSeqLen)
        cache = try KVCache(format: kvCache, layers: c.nLayers, maxSeqLen: self.maxSeqLen, kvHeads: c.nKVHeads, headDim: c.headDim)
        att = FloatBuffer(c.nHeads * self.maxSeqLen)
        logitsBuf = FloatBuffer(c.vocabSize)
        single = ForwardScratch(config: c, rows: 1)
    }

    /// A session with an f32 KV cache.
    public convenience init(model: InferenceModel, maxSeqLen: Int? = nil) {
        // An f32 cache has no shape restriction, so this cannot throw.
        try! self.init(model: model, maxSeqLen: maxSeqLen, kvCache: .f32)
    }

    /// Forgets the cached sequence.
    public func reset() { position = 0 }

    /// Runs one token at the next position and returns the logits [vocab] (valid until the next call).
    public func step(token: Int) throws -> UnsafeBufferPointer<Float> {
        try checkTokens([token], fitting: 1)
        let out = logitsBuf.ptr
        Self.forward(tokens: [token], sessions: [self], positions: [position], scratch: single) { _ in out }
        position += 1
        return UnsafeBufferPointer(start: logitsBuf.ptr, count: model.config.vocabSize)
    }

    /// Processes a whole prompt at the next positions (linear layers batched over its tokens) and returns the logits of
    /// its last token; equal to calling `step` for each token, faster for prompts.
    public func prefill(tokens: [Int]) throws -> UnsafeBufferPointer<Float> {
        let n = tokens.count
        try checkTokens(tokens, fitting: n)
        let out = logitsBuf.ptr
        Self.forward(tokens: tokens, sessions: Array(repeating: self, count: n), positions: Array(position..<(position + n)),
                     scratch: scratch(rows: n)) { $0 == n - 1 ? out : nil }
        position += n
        return UnsafeBufferPointer(start: logitsBuf.ptr, count: model.config.vocabSize)
    }

    /// Like `prefill`, but returns the logits of every token, [tokens.count, vocab] row-major (for scoring text).
    public func prefillLogits(tokens: [Int]) throws -> [Float] {
        let n = tokens.count, v = model.config.vocabSize
        try checkTokens(tokens, fitting: n)
        var logits = [Float](repeating: 0, count: n * v)
        logits.withUnsafeMutableBufferPointer { lp in
            let base = lp.baseAddress!
            Self.forward(tokens: tokens, sessions: Array(repeating: self, count: n), positions: Array(position..<(position + n)),
                         scratch: scratch(rows: n)) { base + $0 * v }
        }
        position += n
        return logits
    }

    /// One decoding step of several sequences at once: `tokens[i]` goes to `sessions[i]` at its next position.
    /// The linear layers run as one batched product over the sessions (the weights stream once for all of them);
    /// each session attends over its own cache. Returns each session's logits, equal to its own `step`.
    public static func stepBatch(_ sessions: [InferenceSession], tokens: [Int]) throws -> [UnsafeBufferPointer<Float>] {
        guard !sessions.isEmpty else { throw BitNetError.invalidArgument("stepBatch needs at least one session") }
        guard sessions.count == tokens.count else {
            throw BitNetError.invalidArgument("stepBatch got \(sessions.count) sessions but \(tokens.count) tokens")
        }
        let model = sessions[0].model
        guard sessions.allSatisfy({ $0.model === model }) else { throw BitNetError.invalidArgument("stepBatch sessions must share one model") }
        guard Set(sessions.map { ObjectIdentifier($0) }).count == sessions.count else {
            throw BitNetError.invalidArgument("stepBatch got the same session twice")
        }
        for (s, t) in zip(sessions, tokens) { try s.checkTokens([t], fitting: 1) }
        let outs = sessions.map { $0.logitsBuf.ptr }
        forward(tokens: tokens, sessions: sessions, positions: sessions.map(\.position),
                scratch: sessions[0].scratch(rows: sessions.count)) { outs[$0] }
        for s in sessions { s.position += 1 }
        return sessions.map { UnsafeBufferPointer(start: $0.logitsBuf.ptr, count: model.config.vocabSize) }
    }

    private func checkTokens(_ tokens: [Int], fitting n: Int) throws {
        let v = model.config.vocabSize
        guard !tokens.isEmpty else { throw BitNetError.invalidArgument("empty prompt") }
        for t in tokens where t < 0 || t >= v { throw BitNetError.invalidArgument("token id \(t) outside vocabulary 0..<\(v)") }
        guard position + n <= maxSeqLen else {
            throw BitNetError.invalidArgument(position == maxSeqLen ? "context full: \(maxSeqLen) positions"
                                              : "\(n) tokens do not fit: \(maxSeqLen - position) of \(maxSeqLen) positions left")
        }
    }

    /// Scratch for `rows` tokens: the session's own single row, or a grow-only wider one.
    private func scratch(rows: Int) -> ForwardScratch {
        if rows == 1 { return single }
        if let w = wide, w.rows >= rows { return w }
        let w = ForwardScratch(config: model.config, rows: rows)
        wide = w
        return w
    }

    /// y = W·x for `n` rows: the GEMV (allocation-free) for one row, the batched integer GEMM for several.
    @inline(__always)
    private static func linear(_ w: InferenceLinear, _ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows n: Int,
                               _ s: ForwardScratch) {
        if n == 1 { w.apply(x: x, y: y, xCodes: s.codes, xDequant: s.deq.ptr, acc: s.acc) } else { w.applyBatch(x: x, y: y, tokens: n) }
    }

    /// The forward pass over rows: row i is token `tokens[i]` of `sessions[i]` at `positions[i]` (one session repeated
    /// for a prompt, distinct sessions for batched decoding). Keys/values go to each row's session cache before any row
    /// attends, so prompt rows see the earlier prompt rows. Rows for which `logits(i)` gives a pointer get logits there.
    static func forward(tokens: [Int], sessions: [InferenceSession], positions: [Int], scratch s: ForwardScratch,
                        logits: (Int) -> UnsafeMutablePointer<Float>?) {
        let model = sessions[0].model, c = model.config, n = tokens.count
        let d = c.dim, qD = c.nHeads * c.headDim, kvD = c.kvDim, f = c.ffnDim, eps = c.normEps, ng = c.normGroups
        let X = s.x.ptr, A = s.a.ptr, B = s.b.ptr, Q = s.q.ptr, K = s.k.ptr, V = s.v.ptr, G = s.g.ptr, U = s.u.ptr
        for (i, t) in tokens.enumerated() { model.embedding.row(t, into: X + i * d) }
        for (l, L) in model.layers.enumerated() {
            // Attention block: x += Wo·SubLN(Attention(RoPE(Wq·h), RoPE(Wk·h), Wv·h)), h = RMSNorm(x).
            RMSNorm.forward(out: A, rstd: nil, x: X, weight: model.norm(L.attnNorm), rows: n, dim: d, groups: ng, eps: eps)
            linear(L.wq, A, Q, rows: n, s)
            linear(L.wk, A, K, rows: n, s)
            linear(L.wv, A, V, rows: n, s)
            for i in 0..<n {
                model.rope.apply(Q + i * qD, heads: c.nHeads, pos: positions[i])
                model.rope.apply(K + i * kvD, heads: c.nKVHeads, pos: positions[i])
                sessions[i].cache.store(layer: l, pos: positions[i], key: K + i * kvD, value: V + i * kvD)
            }
            for i in 0..<n {
                sessions[i].cache.attend(layer: l, pos: positions[i], query: Q + i * qD, heads: c.nHeads, out: B + i * qD,
                                         att: sessions[i].att.ptr)
            }
            if L.attnSubNorm >= 0 {
                RMSNorm.forward(out: B, rstd: nil, x: B, weight: model.norm(L.attnSubNorm), rows: n, dim: qD, groups: ng, eps: eps)
            }
            linear(L.wo, B, A, rows: n, s)
            addInPlace(X, A, n * d)
            // FFN block: x += W2·SubLN(act(W1·h) ⊙ W3·h), h = RMSNorm(x) (SwiGLU, or ReLU² for 2B4T).
            RMSNorm.forward(out: A, rstd: nil, x: X, weight: model.norm(L.ffnNorm), rows: n, dim: d, groups: ng, eps: eps)
            linear(L.w1, A, G, rows: n, s)
            linear(L.w3, A, U, rows: n, s)
            GatedActivation.forward(h: G, gate: G, up: U, count: n * f, kind: c.ffn)
            if L.ffnSubNorm >= 0 {
                RMSNorm.forward(out: G, rstd: nil, x: G, weight: model.norm(L.ffnSubNorm), rows: n, dim: f, groups: ng, eps: eps)
            }
            linear(L.w2, G, A, rows: n, s)
            addInPlace(X, A, n * d)
        }
        for i in 0..<n {
            guard let out = logits(i) else { continue }
            RMSNorm.forward(out: A, rstd: nil, x: X + i * d, weight: model.norm(model.finalNorm), rows: 1, dim: d, groups: ng, eps: eps)
            model.applyHead(x: A, logits: out)
        }
    }
}
