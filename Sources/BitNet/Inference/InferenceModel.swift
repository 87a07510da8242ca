import Foundation
import BitNetKernels

/// A linear layer prepared for inference: ternary/binary codes with one β per row group (Eq. 9), or f32 weights.
public struct InferenceLinear: @unchecked Sendable {
    public let rows: Int, cols: Int
    /// Codes in {-1, 0, +1} (b1: {-1, +1}), row-major [rows, cols]; kept only for the grouped-activation path.
    let codes: [Int8]
    /// The codes packed 2 bits each for the integer AVX2/VNNI kernel (one activation scale per token).
    let packed: PackedTernary?
    /// β per group of rows/G rows.
    let betas: [Float]
    /// Full-precision weight (fp) or dequantized weight (used by the unsigned-activation path).
    let dense: [Float]
    let quant: LinearQuantization

    init(weight w: UnsafePointer<Float>, rows: Int, cols: Int, quant: LinearQuantization) {
        self.rows = rows; self.cols = cols; self.quant = quant
        if quant.arch.isQuantized {
            var c = [Int8](repeating: 0, count: rows * cols)
            var deq = [Float](repeating: 0, count: quant.unsigned ? rows * cols : 0)
            betas = c.withUnsafeMutableBufferPointer { cp in
                deq.withUnsafeMutableBufferPointer { dp in
                    Quantizer.quantizeWeight(w, rows: rows, cols: cols, arch: quant.arch, groups: quant.groups,
                                             codes: cp.baseAddress, dequant: quant.unsigned ? dp.baseAddress : nil)
                }
            }
            // One activation group and signed absmax: the packed integer kernel computes Σ W̃·x̃ exactly.
            if quant.groups == 1 && !quant.unsigned {
                packed = TernaryKernels.pack2bit(codes: c, rows: rows, cols: cols)
                codes = []
            } else {
                packed = nil
                codes = c
            }
            dense = deq
        } else {
            codes = []; betas = []; packed = nil
            dense = Array(UnsafeBufferPointer(start: w, count: rows * cols))
        }
    }

    /// Bytes this layer takes at 2 bits per ternary weight (1 for b1) plus scales, or 4 bytes per f32 weight.
    public var packedBytes: Int {
        quant.arch == .fp ? rows * cols * 4 : (rows * cols * (quant.arch == .b1 ? 1 : 2) + 7) / 8 + betas.count * 4
    }

    /// y[rows] = W̃ · Quant(x) · βγ/Q_p for one token x[cols] (Eq. 9): integer products, one float scale per output and group.
    /// `xCodes` is scratch of `cols` Int8, `acc` of `rows` Int32.
    func apply(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, xCodes: UnsafeMutablePointer<Int8>, xDequant: UnsafeMutablePointer<Float>,
               acc: UnsafeMutablePointer<Int32>) {
        let (rows, cols) = (self.rows, self.cols)
        if let packed {
            // Eq. 9 with integers: acc = W̃·x̃ (int32, exact), y = acc / s · β with s = Q_p/(γ+ε).
            let gamma = Quantizer.absmax(x, count: cols)
            Quantizer.absmaxQuantize(x, count: cols, gamma: gamma, bits: quant.bits, codes: xCodes)
            let scale = Quantizer.signedRange(bits: quant.bits).qp / (gamma + Quantizer.epsilon)
            TernaryKernels.gemv(packed, x: xCodes, y: acc)
            let beta = betas[0]
            for r in 0..<rows { y[r] = Float(acc[r]) / scale * beta }
            return
        }
        if !quant.arch.isQuantized {
            dense.withUnsafeBufferPointer { wp in
                GEMM.sgemm(transA: false, transB: true, m: 1, n: rows, k: cols, a: x, lda: cols, b: wp.baseAddress!, ldb: cols,
                           beta: 0, c: y, ldc: rows)
            }
            return
        }
        if quant.unsigned {
            // Zero-point activations do not fit the signed integer product; use the dequantized operands.
            Quantizer.quantizeActivations(x, rows: 1, cols: cols, bits: quant.bits, scope: .perToken, groups: quant.groups,
                                          unsigned: true, out: xDequant)
            dense.withUnsafeBufferPointer { wp in
                GEMM.sgemm(transA: false, transB: true, m: 1, n: rows, k: cols, a: xDequant, lda: cols, b: wp.baseAddress!, ldb: cols,
                           beta: 0, c: y, ldc: rows)
            }
            return
        }
        let groups = quant.groups, gs = cols / groups
        let qp = Quantizer.signedRange(bits: quant.bits).qp
        let rowsPerGroup = rows / betas.count
        let betas = self.betas
        // One activation scale s_g = Q_p/(γ_g+ε) per group; stack storage keeps the decode loop allocation-free.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: groups) { scales in
        for g in 0..<groups {
            let p = x + g * gs
            let gamma = Quantizer.absmax(p, count: gs)
            Quantizer.absmaxQuantize(p, count: gs, gamma: gamma, bits: quant.bits, codes: xCodes + g * gs)
            scales[g] = qp / (gamma + Quantizer.epsilon)
        }
        codes.withUnsafeBufferPointer { cp in
            let wBase = cp.baseAddress!
            parallelRows(rows, minRowsPerTask: 64) { range in
                for r in range {
                    let wr = wBase + r * cols
                    let beta = betas[r / rowsPerGroup]
                    var out: Float = 0
                    for g in 0..<groups {
                        out += Float(Self.dot(wr + g * gs, xCodes + g * gs, gs)) / scales[g]
                    }
                    y[r] = out * beta
                }
            }
        }
        }
    }

    /// Σ a[i]·b[i] in exact integer arithmetic.
    @inline(__always)
    static func dot(_ a: UnsafePointer<Int8>, _ b: UnsafePointer<Int8>, _ n: Int) -> Int32 {
        var acc: Int32 = 0
        for i in 0..<n { acc &+= Int32(a[i]) &* Int32(b[i]) }
        return acc
    }
}

/// A model ready for decoding: quantized linears, full-precision embedding, head and norms.
public final class InferenceModel: @unchecked Sendable {
    public let config: ModelConfig
    public let weights: ModelWeights
    struct Layer { let wq, wk, wv, wo, w1, w3, w2: InferenceLinear }
    let layers: [Layer]
    let rope: Rope

    /// Quantizes every BitLinear once (offline, as Appendix D's inference notes say).
    public init(weights: ModelWeights) {
        let c = weights.config
        self.config = c
        self.weights = weights
        rope = Rope(headDim: c.headDim, maxSeqLen: c.maxSeqLen, theta: c.ropeTheta)
        let q = LinearQuantization(arch: c.arch, groups: c.quantGroups, bits: c.actBits, scope: .perToken)
        var qDown = q
        qDown.unsigned = c.unsignedAfterNonlinearity && c.arch.isQuantized
        let w = weights.ptr, qD = c.nHeads * c.headDim
        layers = weights.layout.layers.map { s in
            Layer(wq: InferenceLinear(weight: w + s.wq, rows: qD, cols: c.dim, quant: q),
                  wk: InferenceLinear(weight: w + s.wk, rows: c.kvDim, cols: c.dim, quant: q),
                  wv: InferenceLinear(weight: w + s.wv, rows: c.kvDim, cols: c.dim, quant: q),
                  wo: InferenceLinear(weight: w + s.wo, rows: c.dim, cols: qD, quant: q),
                  w1: InferenceLinear(weight: w + s.w1, rows: c.ffnDim, cols: c.dim, quant: q),
                  w3: InferenceLinear(weight: w + s.w3, rows: c.ffnDim, cols: c.dim, quant: q),
                  w2: InferenceLinear(weight: w + s.w2, rows: c.dim, cols: c.ffnDim, quant: qDown))
        }
    }

    /// Size of the inference weights: packed linears plus f32 embedding/head and norms.
    public var inferenceBytes: Int {
        let c = config
        let linear = layers.reduce(0) { $0 + [$1.wq, $1.wk, $1.wv, $1.wo, $1.w1, $1.w3, $1.w2].reduce(0) { $0 + $1.packedBytes } }
        let rest = c.parameterCount - c.linearParameterCount
        return linear + rest * 4
    }
}

/// Per-sequence decoding state: the KV cache [layers, positions, kv_dim] and scratch buffers (no allocation per token).
public final class InferenceSession: @unchecked Sendable {
    public let model: InferenceModel
    public let maxSeqLen: Int
    /// Number of positions already in the cache.
    public private(set) var position = 0
    let keyCache: FloatBuffer, valueCache: FloatBuffer
    let x, xb, xb2, q, att, hb, hb2, logitsBuf, deq: FloatBuffer
    let xCodes: UnsafeMutablePointer<Int8>
    let acc: UnsafeMutablePointer<Int32>

    public init(model: InferenceModel, maxSeqLen: Int? = nil) {
        let c = model.config
        self.model = model
        self.maxSeqLen = min(maxSeqLen ?? c.maxSeqLen, c.maxSeqLen)
        keyCache = FloatBuffer(c.nLayers * self.maxSeqLen * c.kvDim)
        valueCache = FloatBuffer(c.nLayers * self.maxSeqLen * c.kvDim)
        let qD = c.nHeads * c.headDim
        x = FloatBuffer(c.dim); xb = FloatBuffer(max(c.dim, qD)); xb2 = FloatBuffer(max(c.dim, qD)); q = FloatBuffer(qD)
        att = FloatBuffer(c.nHeads * self.maxSeqLen)
        hb = FloatBuffer(c.ffnDim); hb2 = FloatBuffer(c.ffnDim)
        logitsBuf = FloatBuffer(c.vocabSize)
        deq = FloatBuffer(max(c.dim, c.ffnDim, qD))
        xCodes = .allocate(capacity: max(c.dim, c.ffnDim, qD))
        acc = .allocate(capacity: max(c.dim, c.ffnDim, qD + 2 * c.kvDim))
    }

    deinit { xCodes.deallocate(); acc.deallocate() }

    /// Forgets the cached sequence.
    public func reset() { position = 0 }

    /// Runs one token at the next position and returns the logits [vocab] (valid until the next call).
    public func step(token: Int) throws -> UnsafeBufferPointer<Float> {
        let c = model.config
        guard token >= 0 && token < c.vocabSize else { throw BitNetError.invalidArgument("token id \(token) outside vocabulary 0..<\(c.vocabSize)") }
        guard position < maxSeqLen else { throw BitNetError.invalidArgument("context full: \(maxSeqLen) positions") }
        let pos = position
        let w = model.weights.ptr, layout = model.weights.layout
        let d = c.dim, qD = c.nHeads * c.headDim, kvD = c.kvDim, eps = c.normEps, ng = c.normGroups
        let scratch = deq.ptr
        x.ptr.update(from: w + layout.embedding + token * d, count: d)
        for (l, s) in layout.layers.enumerated() {
            let L = model.layers[l]
            RMSNorm.forward(out: xb.ptr, rstd: nil, x: x.ptr, weight: w + s.attnNorm, rows: 1, dim: d, groups: ng, eps: eps)
            let kRow = keyCache.ptr + (l * maxSeqLen + pos) * kvD, vRow = valueCache.ptr + (l * maxSeqLen + pos) * kvD
            L.wq.apply(x: xb.ptr, y: q.ptr, xCodes: xCodes, xDequant: scratch, acc: acc)
            L.wk.apply(x: xb.ptr, y: kRow, xCodes: xCodes, xDequant: scratch, acc: acc)
            L.wv.apply(x: xb.ptr, y: vRow, xCodes: xCodes, xDequant: scratch, acc: acc)
            model.rope.apply(q.ptr, heads: c.nHeads, pos: pos)
            model.rope.apply(kRow, heads: c.nKVHeads, pos: pos)
            attend(layer: l, pos: pos, out: xb.ptr)
            if s.attnSubNorm >= 0 {
                RMSNorm.forward(out: xb.ptr, rstd: nil, x: xb.ptr, weight: w + s.attnSubNorm, rows: 1, dim: qD, groups: ng, eps: eps)
            }
            L.wo.apply(x: xb.ptr, y: xb2.ptr, xCodes: xCodes, xDequant: scratch, acc: acc)
            addInPlace(x.ptr, xb2.ptr, d)
            RMSNorm.forward(out: xb.ptr, rstd: nil, x: x.ptr, weight: w + s.ffnNorm, rows: 1, dim: d, groups: ng, eps: eps)
            L.w1.apply(x: xb.ptr, y: hb.ptr, xCodes: xCodes, xDequant: scratch, acc: acc)
            L.w3.apply(x: xb.ptr, y: hb2.ptr, xCodes: xCodes, xDequant: scratch, acc: acc)
            GatedActivation.forward(h: hb.ptr, gate: hb.ptr, up: hb2.ptr, count: c.ffnDim, kind: c.ffn)
            if s.ffnSubNorm >= 0 {
                RMSNorm.forward(out: hb.ptr, rstd: nil, x: hb.ptr, weight: w + s.ffnSubNorm, rows: 1, dim: c.ffnDim, groups: ng, eps: eps)
            }
            L.w2.apply(x: hb.ptr, y: xb.ptr, xCodes: xCodes, xDequant: scratch, acc: acc)
            addInPlace(x.ptr, xb.ptr, d)
        }
        RMSNorm.forward(out: xb.ptr, rstd: nil, x: x.ptr, weight: w + layout.finalNorm, rows: 1, dim: d, groups: ng, eps: eps)
        GEMM.sgemm(transA: false, transB: true, m: 1, n: c.vocabSize, k: d, a: xb.ptr, lda: d, b: w + layout.output, ldb: d,
                   beta: 0, c: logitsBuf.ptr, ldc: c.vocabSize)
        position += 1
        return UnsafeBufferPointer(start: logitsBuf.ptr, count: c.vocabSize)
    }

    /// Causal attention of the current query over cached keys/values 0...pos, per head (GQA).
    func attend(layer l: Int, pos: Int, out: UnsafeMutablePointer<Float>) {
        let c = model.config, hd = c.headDim, kvD = c.kvDim, group = c.nHeads / c.nKVHeads
        let scale = 1 / Float(hd).squareRoot()
        let kBase = keyCache.ptr + l * maxSeqLen * kvD, vBase = valueCache.ptr + l * maxSeqLen * kvD
        let qp = q.ptr, attp = att.ptr, maxT = maxSeqLen
        let heads = c.nHeads
        ThreadPool.shared.parallelFor(pos >= 64 ? heads : 1) { task in
            let range = pos >= 64 ? task..<(task + 1) : 0..<heads
            for h in range {
                let qh = qp + h * hd, kvh = h / group
                let a = attp + h * maxT
                for t in 0...pos {
                    let kt = kBase + t * kvD + kvh * hd
                    var s: Float = 0
                    for i in 0..<hd { s += qh[i] * kt[i] }
                    a[t] = s * scale
                }
                CausalAttention.causalSoftmaxRow(a, valid: pos + 1, width: pos + 1)
                let o = out + h * hd
                for i in 0..<hd { o[i] = 0 }
                for t in 0...pos {
                    let vt = vBase + t * kvD + kvh * hd, p = a[t]
                    for i in 0..<hd { o[i] += p * vt[i] }
                }
            }
        }
    }
}
