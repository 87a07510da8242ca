import Foundation
import BitNetKernels

/// Rotary position embedding over consecutive pairs (2i, 2i+1) of each head, as llama2.c and GGUF order them.
package struct Rope: Sendable {
    package let headDim: Int
    package let maxSeqLen: Int
    /// cos/sin tables [maxSeqLen, headDim/2], computed in f32 as llama2.c does so outputs match it bit for bit.
    let cosTable: [Float]
    let sinTable: [Float]

    package init(headDim: Int, maxSeqLen: Int, theta: Float) {
        self.headDim = headDim
        self.maxSeqLen = maxSeqLen
        let half = headDim / 2
        var c = [Float](repeating: 0, count: maxSeqLen * half), s = c
        for p in 0..<maxSeqLen {
            for i in 0..<half {
                let freq: Float = 1 / powf(theta, Float(2 * i) / Float(headDim))
                let angle = Float(p) * freq
                c[p * half + i] = cosf(angle)
                s[p * half + i] = sinf(angle)
            }
        }
        cosTable = c; sinTable = s
    }

    /// Rotates every head of one token's vector `x` [nHeads·headDim] in place for position `pos`; `inverse` undoes it (backward).
    @inline(__always)
    package func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, pos: Int, inverse: Bool = false) {
        let half = headDim / 2
        cosTable.withUnsafeBufferPointer { cp in
            sinTable.withUnsafeBufferPointer { sp in
                let cb = cp.baseAddress! + pos * half, sb = sp.baseAddress! + pos * half
                for h in 0..<heads {
                    let v = x + h * headDim
                    for i in 0..<half {
                        let c = cb[i], s = inverse ? -sb[i] : sb[i]
                        let a = v[2 * i], b = v[2 * i + 1]
                        v[2 * i] = a * c - b * s
                        v[2 * i + 1] = a * s + b * c
                    }
                }
            }
        }
    }

    /// Forward over a batch [B·T, heads·headDim] (rows `rowStride` floats apart) whose row r holds position r % T.
    package func forward(_ x: UnsafeMutablePointer<Float>, rows: Int, seqLen: Int, heads: Int, rowStride: Int? = nil) {
        let stride = rowStride ?? heads * headDim
        parallelRows(rows) { range in
            for r in range { apply(x + r * stride, heads: heads, pos: r % seqLen) }
        }
    }

    /// Backward: the gradient of a rotation is the inverse rotation of the incoming gradient.
    package func backward(_ dx: UnsafeMutablePointer<Float>, rows: Int, seqLen: Int, heads: Int, rowStride: Int? = nil) {
        let stride = rowStride ?? heads * headDim
        parallelRows(rows) { range in
            for r in range { apply(dx + r * stride, heads: heads, pos: r % seqLen, inverse: true) }
        }
    }
}
