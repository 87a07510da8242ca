import BitNetKernels

/// Settings that decide how a linear layer quantizes (the variant and the options of Sec. 3.1.1 / A.1).
package struct LinearQuantization: Sendable, Equatable {
    package var arch: Architecture
    package var groups: Int
    package var bits: Int
    package var scope: ActivationScope
    package var unsigned: Bool

    package init(arch: Architecture, groups: Int = 1, bits: Int = 8, scope: ActivationScope = .perToken, unsigned: Bool = false) {
        self.arch = arch; self.groups = groups; self.bits = bits; self.scope = scope; self.unsigned = unsigned
    }

    /// The `fp` layer: y = x Wᵀ, no quantization.
    package static let none = LinearQuantization(arch: .fp)
}

/// BitLinear (Eq. 9): y = W̃·Quant(LN(x))·βγ/Q_p, trained with the straight-through estimator (Sec. 2.2.1).
/// The LN is the RMSNorm the model puts in front of every BitLinear (SubLN); these functions take its output.
package enum BitLinear {
    /// Quantizes the latent weight [out, in] into its dequantized form W̃·β (once per step; the fp variant copies).
    package static func quantizeWeight(_ w: UnsafePointer<Float>, out: Int, in inDim: Int, q: LinearQuantization,
                                      into wq: UnsafeMutablePointer<Float>) {
        Quantizer.quantizeWeight(w, rows: out, cols: inDim, arch: q.arch, groups: q.groups, dequant: wq)
    }

    /// Quantizes activations x [n, in] into xq (Eq. 6-7); the fp variant copies.
    package static func quantizeInput(_ x: UnsafePointer<Float>, rows n: Int, in inDim: Int, q: LinearQuantization,
                                     training: Bool, into xq: UnsafeMutablePointer<Float>) {
        guard q.arch.isQuantized else { xq.update(from: x, count: n * inDim); return }
        // Inference is always per token (Sec. 3.1.1); per tensor is a training-time option.
        let scope: ActivationScope = training ? q.scope : .perToken
        if scope == .perTensor || q.unsigned {
            Quantizer.quantizeActivations(x, rows: n, cols: inDim, bits: q.bits, scope: scope, groups: q.groups,
                                          unsigned: q.unsigned, out: xq)
        } else {
            parallelRows(n) { range in
                Quantizer.quantizeActivations(x + range.lowerBound * inDim, rows: range.count, cols: inDim, bits: q.bits,
                                              scope: .perToken, groups: q.groups, out: xq + range.lowerBound * inDim)
            }
        }
    }

    /// y[n, out] = xq[n, in] · wqᵀ (the matrix product of Eq. 9 on dequantized operands).
    package static func forward(y: UnsafeMutablePointer<Float>, xq: UnsafePointer<Float>, wq: UnsafePointer<Float>,
                               rows n: Int, in inDim: Int, out outDim: Int) {
        GEMM.sgemm(transA: false, transB: true, m: n, n: outDim, k: inDim,
                   a: xq, lda: inDim, b: wq, ldb: inDim, beta: 0, c: y, ldc: outDim)
    }

    /// Straight-through backward: dx (+)= dy · wq, dW += dyᵀ · xq. `accumulateDx` adds into dx instead of overwriting.
    package static func backward(dx: UnsafeMutablePointer<Float>?, dw: UnsafeMutablePointer<Float>,
                                dy: UnsafePointer<Float>, xq: UnsafePointer<Float>, wq: UnsafePointer<Float>,
                                rows n: Int, in inDim: Int, out outDim: Int, accumulateDx: Bool) {
        if let dx {
            GEMM.sgemm(transA: false, transB: false, m: n, n: inDim, k: outDim,
                       a: dy, lda: outDim, b: wq, ldb: inDim, beta: accumulateDx ? 1 : 0, c: dx, ldc: inDim)
        }
        GEMM.sgemm(transA: true, transB: false, m: outDim, n: inDim, k: n,
                   a: dy, lda: outDim, b: xq, ldb: inDim, beta: 1, c: dw, ldc: inDim)
    }
}
