import Foundation
import BitNetKernels
import BitNetCore
import BitNetTokenizers
import BitNetFormats

/// Per-token absmax int8 codes of activations for the integer kernels (Eq. 6-7 at inference, scope per token),
/// optionally fused with the RMSNorm before every BitLinear (SubLN): the normalized floats are never written back,
/// and one set of codes feeds every linear that reads the same input (Wq/Wk/Wv, W1/W3).
enum ActivationQuantizer {
    /// codes[t, :] = Clip(round(x[t, :]·s_t), Q_n, Q_p), s_t = Q_p/(γ_t + ε), γ_t = max|x[t, :]|.
    static func quantize(_ x: UnsafePointer<Float>, rows n: Int, cols: Int, bits: Int, codes: UnsafeMutablePointer<Int8>,
                         scales: UnsafeMutablePointer<Float>) {
        let qp = Quantizer.signedRange(bits: bits).qp
        parallelRows(n, minRowsPerTask: 8) { range in
            for t in range {
                let xt = x + t * cols
                let gamma = Quantizer.absmax(xt, count: cols)
                Quantizer.absmaxQuantize(xt, count: cols, gamma: gamma, bits: bits, codes: codes + t * cols)
                scales[t] = qp / (gamma + Quantizer.epsilon)
            }
        }
    }

    /// The codes of RMSNorm(x)·w (same float operations as `RMSNorm.forward`, then `quantize`), row by row in
    /// stack scratch: x [n, d] → codes [n, d], scales [n].
    static func normQuantize(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, rows n: Int, dim d: Int, groups: Int,
                             eps: Float, bits: Int, codes: UnsafeMutablePointer<Int8>, scales: UnsafeMutablePointer<Float>) {
        let qp = Quantizer.signedRange(bits: bits).qp
        parallelRows(n, minRowsPerTask: 8) { range in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: d) { buf in
                let y = buf.baseAddress!
                for t in range {
                    RMSNorm.forwardRow(out: y, rstd: nil, x: x + t * d, weight: weight, dim: d, groups: groups, eps: eps)
                    let gamma = Quantizer.absmax(y, count: d)
                    Quantizer.absmaxQuantize(y, count: d, gamma: gamma, bits: bits, codes: codes + t * d)
                    scales[t] = qp / (gamma + Quantizer.epsilon)
                }
            }
        }
    }
}
