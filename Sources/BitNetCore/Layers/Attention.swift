import Foundation
import BitNetKernels

/// Causal multi-head attention with grouped-query heads, for training over B sequences of T tokens.
/// q: [B·T, H·hd], k, v: [B·T, KV·hd]; head h reads kv head h / (H/KV).
package struct CausalAttention: Sendable {
    package let nHeads: Int, nKVHeads: Int, headDim: Int
    package init(nHeads: Int, nKVHeads: Int, headDim: Int) {
        self.nHeads = nHeads; self.nKVHeads = nKVHeads; self.headDim = headDim
    }
    var qDim: Int { nHeads * headDim }
    var kvDim: Int { nKVHeads * headDim }
    var scale: Float { 1 / Float(headDim).squareRoot() }

    /// out = softmax(q kᵀ/√hd + causal mask) v; saves probabilities P [B, H, T, T] for backward.
    /// q rows are `qStride` floats apart and k/v rows `kvStride` apart (a fused qkv buffer); out is dense [B·T, H·hd].
    package func forward(out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
                        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, batch: Int, seqLen t: Int,
                        qStride: Int? = nil, kvStride: Int? = nil) {
        let group = nHeads / nKVHeads
        let (qD, kvD, hd, sc) = (qStride ?? qDim, kvStride ?? kvDim, headDim, scale)
        let oD = qDim
        ThreadPool.shared.parallelFor(batch * nKVHeads) { task in
            let b = task / nKVHeads, kvh = task % nKVHeads
            for h in kvh * group..<(kvh + 1) * group {
                let p = probs + (b * nHeads + h) * t * t
                let qp = q + b * t * qD + h * hd
                let kp = k + b * t * kvD + kvh * hd, vp = v + b * t * kvD + kvh * hd
                GEMM.sgemm(transA: false, transB: true, m: t, n: t, k: hd, alpha: sc,
                           a: qp, lda: qD, b: kp, ldb: kvD, beta: 0, c: p, ldc: t, pool: nil)
                for i in 0..<t { Self.causalSoftmaxRow(p + i * t, valid: i + 1, width: t) }
                GEMM.sgemm(transA: false, transB: false, m: t, n: hd, k: t,
                           a: p, lda: t, b: vp, ldb: kvD, beta: 0, c: out + b * t * oD + h * hd, ldc: oD, pool: nil)
            }
        }
    }

    /// Softmax over the first `valid` entries of a row; the masked tail becomes 0.
    @inline(__always)
    package static func causalSoftmaxRow(_ row: UnsafeMutablePointer<Float>, valid: Int, width: Int) {
        var m = -Float.infinity
        for j in 0..<valid { m = max(m, row[j]) }
        var sum: Float = 0
        for j in 0..<valid { let e = expf(row[j] - m); row[j] = e; sum += e }
        let inv = 1 / sum
        for j in 0..<valid { row[j] *= inv }
        for j in valid..<width { row[j] = 0 }
    }

    /// Backward: given dout (dense), writes dq and accumulates dk, dv (zero them first); dq, q share `qStride`,
    /// dk, dv, k, v share `kvStride`.
    /// dP = dout vᵀ, dv += Pᵀ dout, dS = P ⊙ (dP − rowsum(dP ⊙ P)) / √hd, dq = dS k, dk += dSᵀ q.
    package func backward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
                         dout: UnsafePointer<Float>, probs: UnsafePointer<Float>,
                         q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, batch: Int, seqLen t: Int,
                         qStride: Int? = nil, kvStride: Int? = nil) {
        let group = nHeads / nKVHeads
        let (qD, kvD, hd, sc) = (qStride ?? qDim, kvStride ?? kvDim, headDim, scale)
        let oD = qDim
        // Tasks own one (sequence, kv head): the heads sharing it accumulate dk/dv in a fixed order, race-free.
        ThreadPool.shared.parallelFor(batch * nKVHeads) { task in
            let b = task / nKVHeads, kvh = task % nKVHeads
            let ds = UnsafeMutablePointer<Float>.allocate(capacity: t * t)
            defer { ds.deallocate() }
            for h in kvh * group..<(kvh + 1) * group {
                let p = probs + (b * nHeads + h) * t * t
                let qp = q + b * t * qD + h * hd, dop = dout + b * t * oD + h * hd
                let kp = k + b * t * kvD + kvh * hd, vp = v + b * t * kvD + kvh * hd
                GEMM.sgemm(transA: false, transB: true, m: t, n: t, k: hd,
                           a: dop, lda: oD, b: vp, ldb: kvD, beta: 0, c: ds, ldc: t, pool: nil)
                GEMM.sgemm(transA: true, transB: false, m: t, n: hd, k: t,
                           a: p, lda: t, b: dop, ldb: oD, beta: 1, c: dv + b * t * kvD + kvh * hd, ldc: kvD, pool: nil)
                for i in 0..<t {
                    let pr = p + i * t, dr = ds + i * t
                    var dot: Float = 0
                    for j in 0...i { dot += pr[j] * dr[j] }
                    for j in 0...i { dr[j] = pr[j] * (dr[j] - dot) * sc }
                    for j in (i + 1)..<t { dr[j] = 0 }
                }
                GEMM.sgemm(transA: false, transB: false, m: t, n: hd, k: t,
                           a: ds, lda: t, b: kp, ldb: kvD, beta: 0, c: dq + b * t * qD + h * hd, ldc: qD, pool: nil)
                GEMM.sgemm(transA: true, transB: false, m: t, n: hd, k: t,
                           a: ds, lda: t, b: qp, ldb: qD, beta: 1, c: dk + b * t * kvD + kvh * hd, ldc: kvD, pool: nil)
            }
        }
    }
}
