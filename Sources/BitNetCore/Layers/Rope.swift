import Foundation
import BitNetKernels

/// Rotary position embedding over consecutive pairs (2i, 2i+1) of each head, as llama2.c and GGUF order them.
package struct Rope: Sendable {
    package let headDim: Int
    package let maxSeqLen: Int
    let theta: Float
    /// cos/sin tables [tabled, headDim/2], computed in f32 as llama2.c does so outputs match it bit for bit. They
    /// cover the first `tableLimit` positions; later ones are computed when used (the same f32 formula), so a config
    /// claiming millions of positions costs no memory until they are reached.
    let cosTable: [Float]
    let sinTable: [Float]
    let tabled: Int
    package static let tableLimit = 1 << 15

    package init(headDim: Int, maxSeqLen: Int, theta: Float) {
        self.headDim = headDim
        self.maxSeqLen = maxSeqLen
        self.theta = theta
        let half = headDim / 2
        tabled = min(maxSeqLen, Self.tableLimit)
        var c = [Float](repeating: 0, count: tabled * half), s = c
        for p in 0..<tabled {
            for i in 0..<half { (c[p * half + i], s[p * half + i]) = Self.cosSin(pos: p, pair: i, headDim: headDim, theta: theta) }
        }
        cosTable = c; sinTable = s
    }

    @inline(__always)
    static func cosSin(pos: Int, pair i: Int, headDim: Int, theta: Float) -> (Float, Float) {
        let freq: Float = 1 / powf(theta, Float(2 * i) / Float(headDim))
        let angle = Float(pos) * freq
        return (cosf(angle), sinf(angle))
    }

    /// Rotates every head of one token's vector `x` [nHeads·headDim] in place for position `pos`; `inverse` undoes it (backward).
    @inline(__always)
    package func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, pos: Int, inverse: Bool = false) {
        let half = headDim / 2
        guard pos < tabled else {
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * half) { t in
                for i in 0..<half { (t[i], t[half + i]) = Self.cosSin(pos: pos, pair: i, headDim: headDim, theta: theta) }
                rotate(x, heads: heads, cos: t.baseAddress!, sin: t.baseAddress! + half, inverse: inverse)
            }
            return
        }
        cosTable.withUnsafeBufferPointer { cp in
            sinTable.withUnsafeBufferPointer { sp in
                rotate(x, heads: heads, cos: cp.baseAddress! + pos * half, sin: sp.baseAddress! + pos * half, inverse: inverse)
            }
        }
    }

    @inline(__always)
    func rotate(_ x: UnsafeMutablePointer<Float>, heads: Int, cos cb: UnsafePointer<Float>, sin sb: UnsafePointer<Float>, inverse: Bool) {
        let half = headDim / 2
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
