import Foundation
import BitNetKernels

/// Saved activations of one layer for a batch (N = B·T rows).
final class LayerActivations {
    /// qkv: [N, qD + 2·kvD] (q | k | v per row, one fused product); gu: [N, 2F] (gate | up).
    let x, a, qkv, probs, o, h, f, gu, hAct: FloatBuffer
    let aq, oN, oq, fq, hN, hq: FloatBuffer?   // nil when the layer does not need them (fp, no sub-norm)
    let rstdA, rstdO, rstdF, rstdH: FloatBuffer

    init(_ c: ModelConfig, batch: Int, seqLen t: Int, quantizeInputs quant: Bool) {
        let n = batch * t, d = c.dim, qD = c.nHeads * c.headDim, kvD = c.kvDim, f = c.ffnDim, g = c.normGroups
        x = FloatBuffer(n * d); a = FloatBuffer(n * d)
        qkv = FloatBuffer(n * (qD + 2 * kvD))
        probs = FloatBuffer(batch * c.nHeads * t * t); o = FloatBuffer(n * qD)
        h = FloatBuffer(n * d); self.f = FloatBuffer(n * d)
        gu = FloatBuffer(n * 2 * f); hAct = FloatBuffer(n * f)
        aq = quant ? FloatBuffer(n * d) : nil
        oN = c.subNorm ? FloatBuffer(n * qD) : nil
        oq = quant ? FloatBuffer(n * qD) : nil
        fq = quant ? FloatBuffer(n * d) : nil
        hN = c.subNorm ? FloatBuffer(n * f) : nil
        hq = quant ? FloatBuffer(n * f) : nil
        rstdA = FloatBuffer(n * g); rstdO = FloatBuffer(n * g); rstdF = FloatBuffer(n * g); rstdH = FloatBuffer(n * g)
    }
}

/// The whole network's forward and backward for training on B sequences of T tokens, with saved activations.
/// Forward and backward of each operation sit side by side in `Layers/`; this type wires them as docs/MODEL.md says.
package final class TrainingGraph: @unchecked Sendable {
    package let weights: ModelWeights
    package let batch: Int
    package let seqLen: Int
    /// Post-training activation quantization of an `fp` network: every linear's input is absmax-quantized per token
    /// to this many bits (Sec. 3.2's PTQ baselines); nil keeps the variant's own behaviour.
    package let activationBits: Int?
    package var config: ModelConfig { weights.config }
    /// Logits [B·T, vocab] after `forward`; ∂loss/∂logits after `backward` ran.
    package let logits: FloatBuffer

    let layout: ParameterLayout
    let rope: Rope
    let attention: CausalAttention
    let acts: [LayerActivations]
    let finalX, finalN, finalRstd: FloatBuffer
    /// Quantized weights W̃·β, in parameter layout (only BitLinear slots are filled).
    let wq: FloatBuffer?
    // Backward scratch.
    let dx, dfn, dA, dF, dO, dOq, dqkv, dHq, dHAct, dgu: FloatBuffer
    var tokens: [Int] = []

    /// Allocates every activation for a batch shape; reuse the graph for every step. `activationBits` applies to `fp` only.
    package init(weights: ModelWeights, batch: Int, seqLen: Int, activationBits: Int? = nil) {
        let c = weights.config
        precondition(activationBits.map { (2...8).contains($0) } ?? true, "activation bits must be in 2...8")
        self.weights = weights; self.batch = batch; self.seqLen = seqLen
        let actBits = c.arch == .fp ? activationBits : nil
        self.activationBits = actBits
        layout = weights.layout
        rope = Rope(headDim: c.headDim, maxSeqLen: max(seqLen, 1), theta: c.ropeTheta)
        attention = CausalAttention(nHeads: c.nHeads, nKVHeads: c.nKVHeads, headDim: c.headDim)
        acts = (0..<c.nLayers).map { _ in LayerActivations(c, batch: batch, seqLen: seqLen,
                                                                      quantizeInputs: c.arch.isQuantized || actBits != nil) }
        let n = batch * seqLen, d = c.dim, qD = c.nHeads * c.headDim
        finalX = FloatBuffer(n * d); finalN = FloatBuffer(n * d); finalRstd = FloatBuffer(n * c.normGroups)
        logits = FloatBuffer(n * c.vocabSize)
        wq = c.arch.isQuantized ? FloatBuffer(layout.totalCount) : nil
        dx = FloatBuffer(n * d); dfn = FloatBuffer(n * d); dA = FloatBuffer(n * d); dF = FloatBuffer(n * d)
        dO = FloatBuffer(n * qD); dOq = FloatBuffer(n * qD); dqkv = FloatBuffer(n * (qD + 2 * c.kvDim))
        dHq = FloatBuffer(n * c.ffnDim); dHAct = FloatBuffer(n * c.ffnDim); dgu = FloatBuffer(n * 2 * c.ffnDim)
    }

    // MARK: helpers

    func quantization(down: Bool) -> LinearQuantization {
        let c = config
        if let bits = activationBits {
            // Activations only (per token, signed absmax); `wq` is nil for fp, so the weights stay as given.
            return LinearQuantization(arch: .b158, groups: 1, bits: bits, scope: .perToken, unsigned: false)
        }
        return LinearQuantization(arch: c.arch, groups: c.quantGroups, bits: c.actBits, scope: c.actScopeTrain,
                                  unsigned: down && c.unsignedAfterNonlinearity && c.arch.isQuantized)
    }

    /// Pointer to the weight a linear multiplies with: W̃·β for BitNet, the latent weight for fp.
    func linearWeight(_ offset: Int) -> UnsafePointer<Float> {
        UnsafePointer((wq?.ptr ?? weights.ptr) + offset)
    }

    /// Quantizes every BitLinear weight once per step (Eq. 3 / Eq. 1).
    func quantizeWeights() {
        guard let wq else { return }
        let c = config
        var jobs: [(Int, Int, Int)] = []
        for s in layout.layers {
            jobs += [(s.wq, c.nHeads * c.headDim, c.dim), (s.wk, c.kvDim, c.dim), (s.wv, c.kvDim, c.dim),
                     (s.wo, c.dim, c.nHeads * c.headDim), (s.w1, c.ffnDim, c.dim), (s.w3, c.ffnDim, c.dim),
                     (s.w2, c.dim, c.ffnDim)]
        }
        let q = quantization(down: false)
        let base = weights.ptr
        ThreadPool.shared.parallelFor(jobs.count) { i in
            let (off, rows, cols) = jobs[i]
            BitLinear.quantizeWeight(base + off, out: rows, in: cols, q: q, into: wq.ptr + off)
        }
    }

    /// Quantizes a linear's input if the variant needs it; returns the pointer the product reads.
    func quantizedInput(_ x: FloatBuffer, _ xq: FloatBuffer?, cols: Int, q: LinearQuantization, training: Bool) -> UnsafePointer<Float> {
        guard let xq else { return UnsafePointer(x.ptr) }
        BitLinear.quantizeInput(x.ptr, rows: batch * seqLen, in: cols, q: q, training: training, into: xq.ptr)
        return UnsafePointer(xq.ptr)
    }

    // MARK: forward

    /// Runs the network on `inputs` (B·T token ids, row-major [B, T]); fills `logits`. `training` selects the
    /// training-time activation scope (per tensor for b1 when configured) instead of inference's per token.
    package func forward(inputs: [Int], training: Bool = true) {
        precondition(inputs.count == batch * seqLen, "expected \(batch * seqLen) tokens, got \(inputs.count)")
        precondition(inputs.allSatisfy { $0 >= 0 && $0 < config.vocabSize }, "token id outside the vocabulary 0..<\(config.vocabSize)")
        let c = config, n = batch * seqLen, d = c.dim, qD = c.nHeads * c.headDim, kvD = c.kvDim, f = c.ffnDim
        let w = weights.ptr, eps = c.normEps, ng = c.normGroups, qkvD = qD + 2 * kvD
        tokens = inputs
        quantizeWeights()
        let qIn = quantization(down: false), qDown = quantization(down: true)
        Embedding.forward(out: acts.first?.x.ptr ?? finalX.ptr, table: w + layout.embedding, tokens: inputs, dim: d)
        for (l, s) in layout.layers.enumerated() {
            let A = acts[l]
            // Attention block: a = RMSNorm(x); q,k,v = BitLinear(a); o = attention; x + BitLinear(SubLN(o)).
            RMSNorm.forward(out: A.a.ptr, rstd: A.rstdA.ptr, x: A.x.ptr, weight: w + s.attnNorm, rows: n, dim: d, groups: ng, eps: eps)
            let aIn = quantizedInput(A.a, A.aq, cols: d, q: qIn, training: training)
            // wq, wk, wv are consecutive rows of the parameter buffer: one product [N, qD + 2kvD] (β per tensor kept).
            BitLinear.forward(y: A.qkv.ptr, xq: aIn, wq: linearWeight(s.wq), rows: n, in: d, out: qkvD)
            rope.forward(A.qkv.ptr, rows: n, seqLen: seqLen, heads: c.nHeads, rowStride: qkvD)
            rope.forward(A.qkv.ptr + qD, rows: n, seqLen: seqLen, heads: c.nKVHeads, rowStride: qkvD)
            attention.forward(out: A.o.ptr, probs: A.probs.ptr, q: A.qkv.ptr, k: A.qkv.ptr + qD, v: A.qkv.ptr + qD + kvD,
                              batch: batch, seqLen: seqLen, qStride: qkvD, kvStride: qkvD)
            var oSrc = A.o
            if let oN = A.oN {
                RMSNorm.forward(out: oN.ptr, rstd: A.rstdO.ptr, x: A.o.ptr, weight: w + s.attnSubNorm, rows: n, dim: qD, groups: ng, eps: eps)
                oSrc = oN
            }
            let oIn = quantizedInput(oSrc, A.oq, cols: qD, q: qIn, training: training)
            BitLinear.forward(y: A.h.ptr, xq: oIn, wq: linearWeight(s.wo), rows: n, in: qD, out: d)
            addInPlace(A.h.ptr, A.x.ptr, n * d)
            // FFN block: f = RMSNorm(h); g,u = BitLinear(f); x' = h + BitLinear(SubLN(act(g)·u)).
            RMSNorm.forward(out: A.f.ptr, rstd: A.rstdF.ptr, x: A.h.ptr, weight: w + s.ffnNorm, rows: n, dim: d, groups: ng, eps: eps)
            let fIn = quantizedInput(A.f, A.fq, cols: d, q: qIn, training: training)
            // w1 and w3 are consecutive too: one product [N, 2F] = gate | up.
            BitLinear.forward(y: A.gu.ptr, xq: fIn, wq: linearWeight(s.w1), rows: n, in: d, out: 2 * f)
            GatedActivation.forward(h: A.hAct.ptr, gateUp: A.gu.ptr, rows: n, ffn: f, kind: c.ffn)
            var hSrc = A.hAct
            if let hN = A.hN {
                RMSNorm.forward(out: hN.ptr, rstd: A.rstdH.ptr, x: A.hAct.ptr, weight: w + s.ffnSubNorm, rows: n, dim: f, groups: ng, eps: eps)
                hSrc = hN
            }
            let hIn = quantizedInput(hSrc, A.hq, cols: f, q: qDown, training: training)
            let next = l + 1 < c.nLayers ? acts[l + 1].x : finalX
            BitLinear.forward(y: next.ptr, xq: hIn, wq: linearWeight(s.w2), rows: n, in: f, out: d)
            addInPlace(next.ptr, A.h.ptr, n * d)
        }
        RMSNorm.forward(out: finalN.ptr, rstd: finalRstd.ptr, x: finalX.ptr, weight: w + layout.finalNorm, rows: n, dim: d, groups: ng, eps: eps)
        GEMM.sgemm(transA: false, transB: true, m: n, n: c.vocabSize, k: d, a: finalN.ptr, lda: d,
                   b: w + layout.output, ldb: d, beta: 0, c: logits.ptr, ldc: c.vocabSize)
    }

    /// Forward, then the mean cross-entropy against `targets`; with `gradients` the full backward pass
    /// writes ∂loss/∂θ there (parameter layout, overwritten).
    package func lossAndGradients(inputs: [Int], targets: [Int], gradients: UnsafeMutablePointer<Float>?) -> Float {
        precondition(targets.count == inputs.count, "targets and inputs differ in length")
        forward(inputs: inputs, training: gradients != nil)
        let loss = CrossEntropy.forwardBackward(logits: logits.ptr, targets: targets, vocab: config.vocabSize, gradient: gradients != nil)
        if let gradients { backward(into: gradients) }
        return loss
    }

    // MARK: backward

    /// Backpropagates ∂loss/∂logits (already in `logits`) through the network into `grad` (overwritten).
    func backward(into grad: UnsafeMutablePointer<Float>) {
        let c = config, n = batch * seqLen, d = c.dim, qD = c.nHeads * c.headDim, kvD = c.kvDim, f = c.ffnDim, V = c.vocabSize
        let w = weights.ptr, ng = c.normGroups, qkvD = qD + 2 * kvD
        grad.update(repeating: 0, count: layout.totalCount)
        // Head: logits = fn · Eᵀ.
        GEMM.sgemm(transA: false, transB: false, m: n, n: d, k: V, a: logits.ptr, lda: V, b: w + layout.output, ldb: d,
                   beta: 0, c: dfn.ptr, ldc: d)
        GEMM.sgemm(transA: true, transB: false, m: V, n: d, k: n, a: logits.ptr, lda: V, b: finalN.ptr, ldb: d,
                   beta: 1, c: grad + layout.output, ldc: d)
        dx.zero()
        RMSNorm.backward(dx: dx.ptr, dweight: grad + layout.finalNorm, dout: dfn.ptr, x: finalX.ptr, weight: w + layout.finalNorm,
                         rstd: finalRstd.ptr, rows: n, dim: d, groups: ng)
        for l in stride(from: c.nLayers - 1, through: 0, by: -1) {
            let A = acts[l], s = layout.layers[l]
            // FFN block. dx holds ∂L/∂x_{l+1} = ∂L/∂(h + ffn_out).
            let hIn = UnsafePointer((A.hq ?? A.hN ?? A.hAct).ptr)
            BitLinear.backward(dx: dHq.ptr, dw: grad + s.w2, dy: dx.ptr, xq: hIn, wq: linearWeight(s.w2), rows: n, in: f, out: d, accumulateDx: false)
            if A.hN != nil {
                dHAct.zero()
                RMSNorm.backward(dx: dHAct.ptr, dweight: grad + s.ffnSubNorm, dout: dHq.ptr, x: A.hAct.ptr, weight: w + s.ffnSubNorm,
                                 rstd: A.rstdH.ptr, rows: n, dim: f, groups: ng)
            } else {
                dHAct.ptr.update(from: dHq.ptr, count: n * f)
            }
            GatedActivation.backward(dGateUp: dgu.ptr, dh: dHAct.ptr, gateUp: A.gu.ptr, rows: n, ffn: f, kind: c.ffn)
            let fIn = UnsafePointer((A.fq ?? A.f).ptr)
            BitLinear.backward(dx: dF.ptr, dw: grad + s.w1, dy: dgu.ptr, xq: fIn, wq: linearWeight(s.w1), rows: n, in: d, out: 2 * f, accumulateDx: false)
            RMSNorm.backward(dx: dx.ptr, dweight: grad + s.ffnNorm, dout: dF.ptr, x: A.h.ptr, weight: w + s.ffnNorm,
                             rstd: A.rstdF.ptr, rows: n, dim: d, groups: ng)
            // Attention block. dx now holds ∂L/∂h = ∂L/∂(x_l + attn_out).
            let oIn = UnsafePointer((A.oq ?? A.oN ?? A.o).ptr)
            BitLinear.backward(dx: dOq.ptr, dw: grad + s.wo, dy: dx.ptr, xq: oIn, wq: linearWeight(s.wo), rows: n, in: qD, out: d, accumulateDx: false)
            if A.oN != nil {
                dO.zero()
                RMSNorm.backward(dx: dO.ptr, dweight: grad + s.attnSubNorm, dout: dOq.ptr, x: A.o.ptr, weight: w + s.attnSubNorm,
                                 rstd: A.rstdO.ptr, rows: n, dim: qD, groups: ng)
            } else {
                dO.ptr.update(from: dOq.ptr, count: n * qD)
            }
            dqkv.zero()   // dk and dv accumulate over the heads that share them
            attention.backward(dq: dqkv.ptr, dk: dqkv.ptr + qD, dv: dqkv.ptr + qD + kvD, dout: dO.ptr, probs: A.probs.ptr,
                               q: A.qkv.ptr, k: A.qkv.ptr + qD, v: A.qkv.ptr + qD + kvD, batch: batch, seqLen: seqLen,
                               qStride: qkvD, kvStride: qkvD)
            rope.backward(dqkv.ptr, rows: n, seqLen: seqLen, heads: c.nHeads, rowStride: qkvD)
            rope.backward(dqkv.ptr + qD, rows: n, seqLen: seqLen, heads: c.nKVHeads, rowStride: qkvD)
            let aIn = UnsafePointer((A.aq ?? A.a).ptr)
            BitLinear.backward(dx: dA.ptr, dw: grad + s.wq, dy: dqkv.ptr, xq: aIn, wq: linearWeight(s.wq), rows: n, in: d, out: qkvD, accumulateDx: false)
            RMSNorm.backward(dx: dx.ptr, dweight: grad + s.attnNorm, dout: dA.ptr, x: A.x.ptr, weight: w + s.attnNorm,
                             rstd: A.rstdA.ptr, rows: n, dim: d, groups: ng)
        }
        Embedding.backward(dtable: grad + layout.embedding, dout: dx.ptr, tokens: tokens, dim: d)
    }
}
