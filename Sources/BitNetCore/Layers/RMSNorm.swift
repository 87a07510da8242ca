import Foundation
import BitNetKernels

/// RMSNorm (LLaMA) with optional group normalization over G groups of features (Appendix A.1).
package enum RMSNorm {
    /// out[n, d] = x / sqrt(mean(x²) + eps) · w, statistics per group of d/G features; saves rstd[n, G] for backward.
    package static func forward(out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>?,
                               x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                               rows n: Int, dim d: Int, groups: Int = 1, eps: Float) {
        parallelRows(n) { range in
            for r in range {
                forwardRow(out: out + r * d, rstd: rstd.map { $0 + r * groups }, x: x + r * d, weight: weight, dim: d, groups: groups, eps: eps)
            }
        }
    }

    /// One row of `forward`: out[d] = x[d] / sqrt(mean(x²) + eps) · w per group, rstd[G] when given.
    @inline(__always)
    package static func forwardRow(out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>?, x: UnsafePointer<Float>,
                           weight: UnsafePointer<Float>, dim d: Int, groups: Int, eps: Float) {
        let gs = d / groups
        for g in 0..<groups {
            let xp = x + g * gs, op = out + g * gs, wp = weight + g * gs
            // 16 partial sums, not one dependent add per value: this norm is serial work before every decode GEMV.
            let ss = simdDot(xp, xp, gs)
            let rs = 1 / (ss / Float(gs) + eps).squareRoot()
            rstd?[g] = rs
            for i in 0..<gs { op[i] = xp[i] * rs * wp[i] }
        }
    }

    /// Backward of `forward`: dx += ∂L/∂x and dweight += ∂L/∂w, given dout and the saved rstd.
    /// With x̂ = x·r: dx = r·(dx̂ − x̂·mean(dx̂·x̂)), dx̂ = dout·w, dw = Σ_rows dout·x̂.
    package static func backward(dx: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>,
                                dout: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                rstd: UnsafePointer<Float>, rows n: Int, dim d: Int, groups: Int = 1) {
        let gs = d / groups
        parallelRows(n) { range in
            for r in range {
                for g in 0..<groups {
                    let xp = x + r * d + g * gs, dop = dout + r * d + g * gs, wp = weight + g * gs
                    let dxp = dx + r * d + g * gs
                    let rs = rstd[r * groups + g]
                    var dot: Float = 0
                    for i in 0..<gs { dot += dop[i] * wp[i] * xp[i] * rs }
                    let m = dot / Float(gs)
                    for i in 0..<gs {
                        let xhat = xp[i] * rs
                        dxp[i] += rs * (dop[i] * wp[i] - xhat * m)
                    }
                }
            }
        }
        // Weight gradient: partial sums over a fixed number of row chunks (not one per thread), added in chunk
        // order, so results are identical for any thread count.
        let chunks = min(8, max(1, n / 64))
        let partial = UnsafeMutablePointer<Float>.allocate(capacity: chunks * d)
        defer { partial.deallocate() }
        partial.initialize(repeating: 0, count: chunks * d)
        ThreadPool.shared.parallelFor(chunks) { c in
            let acc = partial + c * d
            for r in (n * c / chunks)..<(n * (c + 1) / chunks) {
                for g in 0..<groups {
                    let rs = rstd[r * groups + g]
                    let xp = x + r * d + g * gs, dop = dout + r * d + g * gs, ap = acc + g * gs
                    for i in 0..<gs { ap[i] += dop[i] * xp[i] * rs }
                }
            }
        }
        for c in 0..<chunks {
            let acc = partial + c * d
            for i in 0..<d { dweight[i] += acc[i] }
        }
    }
}
