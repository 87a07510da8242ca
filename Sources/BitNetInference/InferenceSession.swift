import Foundation
import BitNetKernels
import CBitNetKernels
import BitNetCore
import BitNetTokenizers
import BitNetFormats

/// Activation buffers for a forward pass over `rows` tokens (decoding: 1 row; prompts and batched decoding: many).
final class ForwardScratch: @unchecked Sendable {
    let rows: Int
    /// Residual stream [rows, dim]; A/B: normed input and attention output [rows, max(dim, qDim)]; Q [rows, qDim];
    /// K/V [rows, kvDim]; G/U: FFN gate and up [rows, ffnDim].
    let x, a, b, q, k, v, g, u: FloatBuffer
    /// Activation codes [rows, widest input] with per-row scales, int32 sums [rows, widest output], and
    /// dequantized activations of one row (the unsigned-activation path).
    let codes: UnsafeMutablePointer<Int8>, scales: UnsafeMutablePointer<Float>, acc: UnsafeMutablePointer<Int32>, deq: FloatBuffer

    init(config c: ModelConfig, rows n: Int) {
        rows = n
        let qD = c.nHeads * c.headDim, wide = max(c.dim, qD)
        x = FloatBuffer(n * c.dim); a = FloatBuffer(n * wide); b = FloatBuffer(n * wide); q = FloatBuffer(n * qD)
        k = FloatBuffer(n * c.kvDim); v = FloatBuffer(n * c.kvDim); g = FloatBuffer(n * c.ffnDim); u = FloatBuffer(n * c.ffnDim)
        let widest = max(c.dim, c.ffnDim, qD)
        // acc also holds the fused Wq/Wk/Wv or W1/W3 sums of one token.
        codes = .allocate(capacity: n * widest); scales = .allocate(capacity: n)
        acc = .allocate(capacity: max(n * widest, qD + 2 * c.kvDim, 2 * c.ffnDim))
        deq = FloatBuffer(widest)
    }

    deinit { codes.deallocate(); scales.deallocate(); acc.deallocate() }
}

/// The GEMVs of a decoder layer, in the order a decode step runs them.
private enum LayerGemv { case qkv, wo, ffnUp, ffnDown }

/// Per-sequence decoding state: the KV cache, attention scratch and logits. A single-token step allocates nothing.
package final class InferenceSession: @unchecked Sendable {
    package let model: InferenceModel
    package let maxSeqLen: Int
    /// Number of positions already in the cache.
    package private(set) var position = 0
    /// Keys and values of every layer and position so far.
    package let cache: KVCache
    /// The last logits [vocab].
    let logitsBuf: FloatBuffer
    let single: ForwardScratch
    private var wide: ForwardScratch?
    /// Told the phases of each one-token step (`bench --profile`); nil: nothing is measured.
    package var phaseObserver: (any DecodePhaseObserver)?

    /// A session for one generation: its cache holds the `promptTokens` and up to `maxNewTokens` more, within the
    /// model's context, not the whole context the model allows (a config may claim millions of positions).
    package convenience init(model: InferenceModel, promptTokens: Int, maxNewTokens: Int, kvCache: KVCacheFormat) throws {
        let context = model.config.maxSeqLen
        try self.init(model: model, maxSeqLen: min(context, max(promptTokens + min(max(maxNewTokens, 0), context), 1)), kvCache: kvCache)
    }

    /// A session with a KV cache in `kvCache` format (f32, f16, 8-bit or 4-bit per-head absmax).
    package init(model: InferenceModel, maxSeqLen: Int? = nil, kvCache: KVCacheFormat) throws {
        let c = model.config
        self.model = model
        self.maxSeqLen = min(maxSeqLen ?? c.maxSeqLen, c.maxSeqLen)
        cache = try KVCache(format: kvCache, layers: c.nLayers, maxSeqLen: self.maxSeqLen, kvHeads: c.nKVHeads, headDim: c.headDim)
        logitsBuf = FloatBuffer(c.vocabSize)
        single = ForwardScratch(config: c, rows: 1)
    }

    /// A session with an f32 KV cache.
    package convenience init(model: InferenceModel, maxSeqLen: Int? = nil) {
        // An f32 cache has no shape restriction, so this cannot throw.
        try! self.init(model: model, maxSeqLen: maxSeqLen, kvCache: .f32)
    }

    /// Forgets the cached sequence.
    package func reset() { position = 0 }

    /// Runs one token at the next position and returns the logits [vocab] (valid until the next call).
    package func step(token: Int) throws -> UnsafeBufferPointer<Float> {
        try checkTokens(count: 1, fitting: 1) { _ in token }
        let out = logitsBuf.ptr, pos = position
        // Closures rather than one-element arrays: the decode step allocates nothing.
        Self.forward(rows: 1, token: { _ in token }, session: { _ in self }, position: { _ in pos }, scratch: single) { _ in out }
        position += 1
        return UnsafeBufferPointer(start: logitsBuf.ptr, count: model.config.vocabSize)
    }

    /// Processes a whole prompt at the next positions (linear layers batched over its tokens) and returns the logits of
    /// its last token; equal to calling `step` for each token, faster for prompts.
    package func prefill(tokens: [Int]) throws -> UnsafeBufferPointer<Float> {
        let n = tokens.count
        try checkTokens(count: n, fitting: n) { tokens[$0] }
        let out = logitsBuf.ptr, pos0 = position
        Self.forward(rows: n, token: { tokens[$0] }, session: { _ in self }, position: { pos0 + $0 }, promptStart: pos0,
                     scratch: scratch(rows: n)) { $0 == n - 1 ? out : nil }
        position += n
        return UnsafeBufferPointer(start: logitsBuf.ptr, count: model.config.vocabSize)
    }

    /// Like `prefill`, but returns the logits of every token, [tokens.count, vocab] row-major (for scoring text).
    package func prefillLogits(tokens: [Int]) throws -> [Float] {
        let n = tokens.count, v = model.config.vocabSize
        try checkTokens(count: n, fitting: n) { tokens[$0] }
        var logits = [Float](repeating: 0, count: n * v)
        let pos0 = position
        logits.withUnsafeMutableBufferPointer { lp in
            let base = lp.baseAddress!
            Self.forward(rows: n, token: { tokens[$0] }, session: { _ in self }, position: { pos0 + $0 }, promptStart: pos0,
                         scratch: scratch(rows: n)) { base + $0 * v }
        }
        position += n
        return logits
    }

    /// One decoding step of several sequences at once: `tokens[i]` goes to `sessions[i]` at its next position.
    /// The linear layers run as one batched product over the sessions (the weights stream once for all of them);
    /// each session attends over its own cache. Returns each session's logits, equal to its own `step`.
    package static func stepBatch(_ sessions: [InferenceSession], tokens: [Int]) throws -> [UnsafeBufferPointer<Float>] {
        guard !sessions.isEmpty else { throw BitNetError.invalidArgument("stepBatch needs at least one session") }
        guard sessions.count == tokens.count else {
            throw BitNetError.invalidArgument("stepBatch got \(sessions.count) sessions but \(tokens.count) tokens")
        }
        let model = sessions[0].model
        guard sessions.allSatisfy({ $0.model === model }) else { throw BitNetError.invalidArgument("stepBatch sessions must share one model") }
        guard Set(sessions.map { ObjectIdentifier($0) }).count == sessions.count else {
            throw BitNetError.invalidArgument("stepBatch got the same session twice")
        }
        for (s, t) in zip(sessions, tokens) { try s.checkTokens(count: 1, fitting: 1) { _ in t } }
        let outs = sessions.map { $0.logitsBuf.ptr }, positions = sessions.map(\.position)
        forward(rows: sessions.count, token: { tokens[$0] }, session: { sessions[$0] }, position: { positions[$0] },
                scratch: sessions[0].scratch(rows: sessions.count)) { outs[$0] }
        for s in sessions { s.position += 1 }
        return sessions.map { UnsafeBufferPointer(start: $0.logitsBuf.ptr, count: model.config.vocabSize) }
    }

    private func checkTokens(count: Int, fitting n: Int, _ token: (Int) -> Int) throws {
        let v = model.config.vocabSize
        guard count > 0 else { throw BitNetError.invalidArgument("empty prompt") }
        for i in 0..<count {
            let t = token(i)
            if t < 0 || t >= v { throw BitNetError.invalidArgument("token id \(t) outside vocabulary 0..<\(v)") }
        }
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

    /// Attention of every row's query [rows, qDim] over its own session's cache into `out` [rows, qDim]. One row
    /// (decoding): `KVCache.attendDecode`, tasks per (KV head, part of the context). Several rows (batched decoding):
    /// one job per (row, KV head), covering the query heads that share that KV head (each cached row is read once for
    /// them), spread over the pool once the total work pays for it.
    private static func attendRows(layer l: Int, rows n: Int, session: (Int) -> InferenceSession, position: (Int) -> Int,
                                   q: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) {
        let c = session(0).model.config, kvHeads = c.nKVHeads, hd = c.headDim, qD = c.nHeads * hd, group = c.nHeads / kvHeads
        if n == 1 {
            session(0).cache.attendDecode(layer: l, pos: position(0), queries: q, group: group, out: out)
            return
        }
        let jobs = n * kvHeads
        var contexts = 0
        for i in 0..<n { contexts += position(i) + 1 }
        let work = contexts * c.nHeads * hd
        let tasks = work >= 4096 ? min(jobs, 8 * ThreadPool.shared.threadCount) : 1
        ThreadPool.shared.parallelFor(tasks) { task in
            for job in stride(from: task, to: jobs, by: tasks) {
                let i = job / kvHeads, kvh = job % kvHeads, offset = i * qD + kvh * group * hd
                session(i).cache.attendGroup(layer: l, pos: position(i), queries: q + offset, group: group, kvHead: kvh, out: out + offset)
            }
        }
    }

    /// ys = W·RMSNorm(x) for up to three linears reading the same input x [n, cols] (`norm` < 0: no norm). When all
    /// take int8 codes, one fused norm + quantization feeds them all; otherwise the normalized floats go to `normed`
    /// (which may be x itself) and each linear quantizes for itself.
    private static func project(_ model: InferenceModel, x: UnsafeMutablePointer<Float>, normed: UnsafeMutablePointer<Float>, norm: Int,
                                rows n: Int, cols: Int, _ s: ForwardScratch,
                                _ a: (InferenceLinear, UnsafeMutablePointer<Float>),
                                _ b: (InferenceLinear, UnsafeMutablePointer<Float>)? = nil,
                                _ c: (InferenceLinear, UnsafeMutablePointer<Float>)? = nil, then announceNext: () -> Void = {}) {
        let cfg = model.config, bits = a.0.quant.bits
        let shared = a.0.takesCodes && (b.map { $0.0.takesCodes && $0.0.quant.bits == bits } ?? true)
            && (c.map { $0.0.takesCodes && $0.0.quant.bits == bits } ?? true)
        if shared {
            if norm >= 0 {
                ActivationQuantizer.normQuantize(x, weight: model.norm(norm), rows: n, dim: cols, groups: cfg.normGroups, eps: cfg.normEps,
                                                 bits: bits, codes: s.codes, scales: s.scales)
            } else {
                ActivationQuantizer.quantize(x, rows: n, cols: cols, bits: bits, codes: s.codes, scales: s.scales)
            }
            // One token: the 2-3 GEMVs run as one split over the pool (one meeting of the threads, not three).
            if n == 1, let b, InferenceLinear.fusedGemv(a.0, b.0, c?.0, codes: s.codes, acc: s.acc) {
                announceNext()
                let ra = a.0.rows, rb = b.0.rows
                a.0.scaleOutputs(acc: s.acc, scales: s.scales, tokens: 1, y: a.1)
                b.0.scaleOutputs(acc: s.acc + ra, scales: s.scales, tokens: 1, y: b.1)
                if let c { c.0.scaleOutputs(acc: s.acc + ra + rb, scales: s.scales, tokens: 1, y: c.1) }
                return
            }
            if n == 1 && b == nil {
                // One GEMV: announce the next one before scaling (the scaling pass is serial work too).
                a.0.gemvPacked(codes: s.codes, acc: s.acc)
                announceNext()
                a.0.scaleOutputs(acc: s.acc, scales: s.scales, tokens: 1, y: a.1)
                return
            }
            a.0.applyPacked(codes: s.codes, scales: s.scales, tokens: n, y: a.1, acc: s.acc)
            if let b { b.0.applyPacked(codes: s.codes, scales: s.scales, tokens: n, y: b.1, acc: s.acc) }
            if let c { c.0.applyPacked(codes: s.codes, scales: s.scales, tokens: n, y: c.1, acc: s.acc) }
            announceNext()
            return
        }
        var input = x
        if norm >= 0 {
            RMSNorm.forward(out: normed, rstd: nil, x: x, weight: model.norm(norm), rows: n, dim: cols, groups: cfg.normGroups, eps: cfg.normEps)
            input = normed
        }
        linear(a.0, input, a.1, rows: n, s)
        if let b { linear(b.0, input, b.1, rows: n, s) }
        if let c { linear(c.0, input, c.1, rows: n, s) }
        announceNext()
    }

    /// The forward pass over `n` rows: row i is token `token(i)` of `session(i)` at `position(i)` (one session for a
    /// prompt, distinct sessions for batched decoding). Keys/values go to each row's session cache before any row
    /// attends, so prompt rows see the earlier prompt rows. Rows for which `logits(i)` gives a pointer get logits there.
    /// `promptStart`: set when the rows are one session's consecutive positions from there (a prompt), whose attention
    /// then runs as matrix products.
    static func forward(rows n: Int, token: (Int) -> Int, session: (Int) -> InferenceSession, position: (Int) -> Int,
                        promptStart: Int? = nil, scratch s: ForwardScratch, logits: (Int) -> UnsafeMutablePointer<Float>?) {
        let model = session(0).model, c = model.config
        let d = c.dim, qD = c.nHeads * c.headDim, kvD = c.kvDim, f = c.ffnDim, eps = c.normEps, ng = c.normGroups
        let X = s.x.ptr, A = s.a.ptr, B = s.b.ptr, Q = s.q.ptr, K = s.k.ptr, V = s.v.ptr, G = s.g.ptr, U = s.u.ptr
        let profile = n == 1 ? session(0).phaseObserver : nil
        profile?.begin()
        // Decoding: each GEMV announces the next one to the pool's idle workers, which pull its first weights into
        // cache while this thread does the serial work in between (ThreadPool.idlePrefetchBytes).
        let decoding = n == 1, layerCount = model.layers.count
        func announce(_ l: Int, _ gemv: LayerGemv) {
            guard decoding else { return }
            if l == layerCount { model.head.announceGemv(); return }   // after the last layer: the head
            let L = model.layers[l]
            switch gemv {
            case .qkv: InferenceLinear.announceGemv(L.wq, L.wk, L.wv)
            case .wo: InferenceLinear.announceGemv(L.wo)
            case .ffnUp: InferenceLinear.announceGemv(L.w1, L.w3)
            case .ffnDown: InferenceLinear.announceGemv(L.w2)
            }
        }
        announce(0, .qkv)
        for i in 0..<n { model.embedding.row(token(i), into: X + i * d) }
        profile?.end(.embedding)
        for l in 0..<layerCount {
            let L = model.layers[l]
            // Attention block: x += Wo·SubLN(Attention(RoPE(Wq·h), RoPE(Wk·h), Wv·h)), h = RMSNorm(x).
            project(model, x: X, normed: A, norm: L.attnNorm, rows: n, cols: d, s, (L.wq, Q), (L.wk, K), (L.wv, V)) {
                if decoding { session(0).cache.announceRows(layer: l, count: position(0)) }
            }
            profile?.end(.qkv)
            for i in 0..<n {
                let pos = position(i)
                model.rope.apply(Q + i * qD, heads: c.nHeads, pos: pos)
                model.rope.apply(K + i * kvD, heads: c.nKVHeads, pos: pos)
                session(i).cache.store(layer: l, pos: pos, key: K + i * kvD, value: V + i * kvD)
            }
            profile?.end(.ropeAndCache)
            if let pos0 = promptStart, n >= 8 {
                session(0).cache.attendPrompt(layer: l, pos0: pos0, rows: n, query: Q, heads: c.nHeads, out: B)
            } else {
                attendRows(layer: l, rows: n, session: session, position: position, q: Q, out: B)
            }
            announce(l, .wo)
            profile?.end(.attention)
            project(model, x: B, normed: B, norm: L.attnSubNorm, rows: n, cols: qD, s, (L.wo, A)) { announce(l, .ffnUp) }
            profile?.end(.wo)
            addInPlace(X, A, n * d)
            profile?.end(.residual)
            // FFN block: x += W2·SubLN(act(W1·h) ⊙ W3·h), h = RMSNorm(x) (SwiGLU, or ReLU² for 2B4T).
            project(model, x: X, normed: A, norm: L.ffnNorm, rows: n, cols: d, s, (L.w1, G), (L.w3, U)) { announce(l, .ffnDown) }
            profile?.end(.ffnUp)
            GatedActivation.forward(h: G, gate: G, up: U, count: n * f, kind: c.ffn)
            profile?.end(.activation)
            project(model, x: G, normed: G, norm: L.ffnSubNorm, rows: n, cols: f, s, (L.w2, A)) { announce(l + 1, .qkv) }
            profile?.end(.ffnDown)
            addInPlace(X, A, n * d)
            profile?.end(.residual)
        }
        if n == 1 {
            // Decoding: one row, no allocation.
            if let out = logits(0) {
                RMSNorm.forward(out: A, rstd: nil, x: X, weight: model.norm(model.finalNorm), rows: 1, dim: d, groups: ng, eps: eps)
                model.applyHead(x: A, logits: out)
            }
            profile?.end(.head)
            return
        }
        // Several rows: normalize the wanted ones side by side in A and read the head once for all of them.
        let wanted = (0..<n).filter { logits($0) != nil }
        guard !wanted.isEmpty else { return }
        for (j, i) in wanted.enumerated() {
            RMSNorm.forward(out: A + j * d, rstd: nil, x: X + i * d, weight: model.norm(model.finalNorm), rows: 1, dim: d, groups: ng, eps: eps)
        }
        let v = c.vocabSize, m = wanted.count, first = logits(wanted[0])!
        if wanted.enumerated().allSatisfy({ logits($0.element) == first + $0.offset * v }) {
            model.applyHead(x: A, tokens: m, logits: first)
        } else {
            let tmp = FloatBuffer(m * v)
            model.applyHead(x: A, tokens: m, logits: tmp.ptr)
            for (j, i) in wanted.enumerated() { logits(i)!.update(from: tmp.ptr + j * v, count: v) }
        }
    }
}
