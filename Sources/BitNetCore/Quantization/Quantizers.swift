import Foundation
import CBitNetKernels
import BitNetKernels

/// The quantization functions of Sec. 2.1 and Appendix A.1, each named after its equation.
/// Rounding is to nearest with ties to even, as `torch.round` does, so PyTorch references agree bit for bit.
package enum Quantizer {
    /// ε of Eq. 3 and Eq. 6: keeps the division finite for all-zero weights or activations.
    package static let epsilon: Float = 1e-5

    /// RoundClip(x, a, b) = max(a, min(b, round(x))) (Eq. 4).
    @inline(__always)
    package static func roundClip(_ x: Float, _ a: Float, _ b: Float) -> Float {
        max(a, min(b, x.rounded(.toNearestOrEven)))
    }

    /// β = mean|W| over `count` weights (Eq. 5).
    package static func absmean(_ w: UnsafePointer<Float>, count: Int) -> Float {
        var acc: Double = 0
        for i in 0..<count { acc += Double(abs(w[i])) }
        return Float(acc / Double(max(count, 1)))
    }

    /// α = mean(W) over `count` weights (Eq. 1).
    package static func mean(_ w: UnsafePointer<Float>, count: Int) -> Float {
        var acc: Double = 0
        for i in 0..<count { acc += Double(w[i]) }
        return Float(acc / Double(max(count, 1)))
    }

    /// b1.58 weights (Eq. 3-5): W̃ = RoundClip(W/(β+ε), -1, 1) in {-1,0,1}; returns β. `codes` and `dequant` (W̃·β) are optional outputs.
    @discardableResult
    package static func absmeanTernary(_ w: UnsafePointer<Float>, count: Int,
                                      codes: UnsafeMutablePointer<Int8>? = nil,
                                      dequant: UnsafeMutablePointer<Float>? = nil) -> Float {
        let beta = absmean(w, count: count)
        let denom = beta + epsilon
        for i in 0..<count {
            let q = roundClip(w[i] / denom, -1, 1)
            codes?[i] = Int8(q)
            dequant?[i] = q * beta
        }
        return beta
    }

    /// b1 weights (Eq. 1-2): W̃ = Sign(W − α) with Sign(0) = −1; returns (α, β = mean|W|, Eq. 9).
    @discardableResult
    package static func signBinary(_ w: UnsafePointer<Float>, count: Int,
                                  codes: UnsafeMutablePointer<Int8>? = nil,
                                  dequant: UnsafeMutablePointer<Float>? = nil) -> (alpha: Float, beta: Float) {
        let alpha = mean(w, count: count)
        let beta = absmean(w, count: count)
        for i in 0..<count {
            let s: Float = w[i] - alpha > 0 ? 1 : -1
            codes?[i] = Int8(s)
            dequant?[i] = s * beta
        }
        return (alpha, beta)
    }

    /// Quantizes a [rows, cols] weight for `arch` with G groups of rows (Eq. 14); writes W̃·β into `dequant`,
    /// the codes into `codes`, and returns one β per group. `fp` copies the weight.
    @discardableResult
    package static func quantizeWeight(_ w: UnsafePointer<Float>, rows: Int, cols: Int, arch: Architecture, groups: Int = 1,
                                      codes: UnsafeMutablePointer<Int8>? = nil,
                                      dequant: UnsafeMutablePointer<Float>? = nil) -> [Float] {
        precondition(groups > 0 && rows % groups == 0, "quant groups \(groups) must divide rows \(rows)")
        let per = rows / groups * cols
        var betas = [Float]()
        for g in 0..<groups {
            let off = g * per
            switch arch {
            case .b158: betas.append(absmeanTernary(w + off, count: per, codes: codes.map { $0 + off }, dequant: dequant.map { $0 + off }))
            case .b1: betas.append(signBinary(w + off, count: per, codes: codes.map { $0 + off }, dequant: dequant.map { $0 + off }).beta)
            case .fp:
                dequant?.advanced(by: off).update(from: w + off, count: per)
                betas.append(1)
            }
        }
        return betas
    }

    /// Q_p = 2^(b-1) − 1 and Q_n = −2^(b-1) of Eq. 6.
    @inline(__always)
    package static func signedRange(bits: Int) -> (qn: Float, qp: Float) {
        (-Float(1 << (bits - 1)), Float((1 << (bits - 1)) - 1))
    }

    /// γ = ‖x‖∞ (Eq. 7).
    @inline(__always)
    package static func absmax(_ x: UnsafePointer<Float>, count: Int) -> Float {
        bitnet_absmax(x, count)
    }

    /// Absmax activation quantization (Eq. 6-7) of `count` values with a given γ:
    /// x̃ = RoundClip(Q_p/(γ+ε)·x, Q_n, Q_p); writes codes and/or dequantized x̃·(γ+ε)/Q_p.
    @inline(__always)
    package static func absmaxQuantize(_ x: UnsafePointer<Float>, count: Int, gamma: Float, bits: Int,
                                      codes: UnsafeMutablePointer<Int8>? = nil,
                                      dequant: UnsafeMutablePointer<Float>? = nil) {
        let (qn, qp) = signedRange(bits: bits)
        // The C kernel does exactly q = RoundClip(x·s), x̃ = q/s with s = Q_p/(γ+ε), vectorized.
        bitnet_absmax_quantize(x, count, gamma, qn, qp, epsilon, dequant, codes)
    }

    /// Unsigned min/max quantization for activations after a non-linearity (Sec. 3.1.1, η of Eq. 15):
    /// x̃ = RoundClip((x − η)·(2^b − 1)/(max − η + ε), 0, 2^b − 1), dequantized as x̃·(max − η + ε)/(2^b − 1) + η.
    package static func unsignedQuantize(_ x: UnsafePointer<Float>, count: Int, bits: Int,
                                        dequant: UnsafeMutablePointer<Float>) {
        var lo = Float.infinity, hi = -Float.infinity
        for i in 0..<count { lo = min(lo, x[i]); hi = max(hi, x[i]) }
        if count == 0 { return }
        let qmax = Float((1 << bits) - 1)
        let scale = qmax / (hi - lo + epsilon)
        for i in 0..<count {
            dequant[i] = roundClip((x[i] - lo) * scale, 0, qmax) / scale + lo
        }
    }

    /// Fake-quantizes activations [rows, cols] in place into `out` for training and the reference path:
    /// per token (one γ per row and group of cols/G features) or per tensor (one γ for all), or unsigned.
    package static func quantizeActivations(_ x: UnsafePointer<Float>, rows: Int, cols: Int, bits: Int,
                                           scope: ActivationScope, groups: Int = 1, unsigned: Bool = false,
                                           out: UnsafeMutablePointer<Float>) {
        precondition(groups > 0 && cols % groups == 0, "quant groups \(groups) must divide \(cols)")
        let gs = cols / groups
        if unsigned {
            if scope == .perTensor { unsignedQuantize(x, count: rows * cols, bits: bits, dequant: out); return }
            for r in 0..<rows { for g in 0..<groups {
                unsignedQuantize(x + r * cols + g * gs, count: gs, bits: bits, dequant: out + r * cols + g * gs)
            } }
            return
        }
        if scope == .perTensor {
            for g in 0..<groups {
                var gamma: Float = 0
                for r in 0..<rows { gamma = max(gamma, absmax(x + r * cols + g * gs, count: gs)) }
                for r in 0..<rows {
                    absmaxQuantize(x + r * cols + g * gs, count: gs, gamma: gamma, bits: bits, dequant: out + r * cols + g * gs)
                }
            }
            return
        }
        for r in 0..<rows {
            for g in 0..<groups {
                let p = x + r * cols + g * gs
                absmaxQuantize(p, count: gs, gamma: absmax(p, count: gs), bits: bits, dequant: out + r * cols + g * gs)
            }
        }
    }
}
