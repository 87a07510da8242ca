import Foundation
import CBitNetKernels
import BitNetKernels

/// The gated activations of the FFN: SwiGLU h = silu(g)·u, or ReLU² h = relu(g)²·u (BitNet b1.58 2B4T).
package enum GatedActivation {
    /// h[i] = act(g[i]) · u[i] over `count` elements.
    package static func forward(h: UnsafeMutablePointer<Float>, gate g: UnsafePointer<Float>, up u: UnsafePointer<Float>,
                               count: Int, kind: FFNKind) {
        parallelRows(count, minRowsPerTask: 4096) { range in
            let o = range.lowerBound
            forwardSerial(h: h + o, gate: g + o, up: u + o, count: range.count, kind: kind)
        }
    }

    @inline(__always)
    static func forwardSerial(h: UnsafeMutablePointer<Float>, gate g: UnsafePointer<Float>, up u: UnsafePointer<Float>, count: Int, kind: FFNKind) {
        switch kind {
        case .swiglu: bitnet_swiglu_forward(h, g, u, count)
        case .relu2: for i in 0..<count { let r = max(g[i], 0); h[i] = r * r * u[i] }
        }
    }

    /// dg = dh·u·act'(g), du = dh·act(g) (overwrites both).
    package static func backward(dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, dh: UnsafePointer<Float>,
                                gate g: UnsafePointer<Float>, up u: UnsafePointer<Float>, count: Int, kind: FFNKind) {
        parallelRows(count, minRowsPerTask: 4096) { range in
            let o = range.lowerBound
            backwardSerial(dgate: dgate + o, dup: dup + o, dh: dh + o, gate: g + o, up: u + o, count: range.count, kind: kind)
        }
    }

    @inline(__always)
    static func backwardSerial(dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, dh: UnsafePointer<Float>,
                               gate g: UnsafePointer<Float>, up u: UnsafePointer<Float>, count: Int, kind: FFNKind) {
        switch kind {
        case .swiglu: bitnet_swiglu_backward(dgate, dup, dh, g, u, count)
        case .relu2:
            for i in 0..<count {
                let r = max(g[i], 0)
                dup[i] = dh[i] * r * r
                dgate[i] = dh[i] * u[i] * 2 * r
            }
        }
    }
}

extension GatedActivation {
    /// Row-wise form over a fused [rows, 2F] buffer holding gate | up: h[r] = act(gate[r])·up[r], h is [rows, F].
    package static func forward(h: UnsafeMutablePointer<Float>, gateUp gu: UnsafePointer<Float>, rows: Int, ffn f: Int, kind: FFNKind) {
        parallelRows(rows, minRowsPerTask: 4) { range in
            for r in range {
                let src = gu + r * 2 * f
                forwardSerial(h: h + r * f, gate: src, up: src + f, count: f, kind: kind)
            }
        }
    }

    /// Row-wise backward into a fused [rows, 2F] gradient dgate | dup.
    package static func backward(dGateUp dgu: UnsafeMutablePointer<Float>, dh: UnsafePointer<Float>, gateUp gu: UnsafePointer<Float>,
                                rows: Int, ffn f: Int, kind: FFNKind) {
        parallelRows(rows, minRowsPerTask: 4) { range in
            for r in range {
                let src = gu + r * 2 * f, dst = dgu + r * 2 * f
                backwardSerial(dgate: dst, dup: dst + f, dh: dh + r * f, gate: src, up: src + f, count: f, kind: kind)
            }
        }
    }
}

/// Token embedding lookup (full precision, Sec. 2).
package enum Embedding {
    /// out[n, d] = table[tokens[n]].
    package static func forward(out: UnsafeMutablePointer<Float>, table: UnsafePointer<Float>, tokens: [Int], dim: Int) {
        for (n, t) in tokens.enumerated() { (out + n * dim).update(from: table + t * dim, count: dim) }
    }

    /// dtable[tokens[n]] += dout[n] (sequential: repeated tokens accumulate in a fixed order).
    package static func backward(dtable: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, tokens: [Int], dim: Int) {
        for (n, t) in tokens.enumerated() {
            let d = dtable + t * dim, s = dout + n * dim
            for i in 0..<dim { d[i] += s[i] }
        }
    }
}

/// Softmax cross-entropy over the vocabulary.
package enum CrossEntropy {
    /// Mean loss of logits [n, V] against targets; replaces logits by ∂loss/∂logits = (softmax − onehot)/n when `gradient`.
    package static func forwardBackward(logits: UnsafeMutablePointer<Float>, targets: [Int], vocab v: Int, gradient: Bool) -> Float {
        let n = targets.count
        var losses = [Double](repeating: 0, count: n)
        losses.withUnsafeMutableBufferPointer { lp in
            let lb = lp.baseAddress!
            parallelRows(n, minRowsPerTask: 8) { range in
                for r in range {
                    let row = logits + r * v
                    var m = -Float.infinity
                    for j in 0..<v { m = max(m, row[j]) }
                    let target = row[targets[r]]
                    // With the gradient wanted, the exponentials are written in place and scaled below.
                    let sum = bitnet_exp_shifted_sum(row, gradient ? row : nil, v, m)
                    lb[r] = Double(m) + log(sum) - Double(target)
                    if gradient {
                        let inv = Float(1 / sum) / Float(n)
                        for j in 0..<v { row[j] *= inv }
                        row[targets[r]] -= 1 / Float(n)
                    }
                }
            }
        }
        return Float(losses.reduce(0, +) / Double(max(n, 1)))
    }
}
