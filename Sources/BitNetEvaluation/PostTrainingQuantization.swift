import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference
import BitNetTraining
import BitNetKernels

/// Post-training quantization baselines of Sec. 3.2 / Table 3, applied to a trained `fp` model: every linear weight is
/// quantized once (per tensor), and every linear input is absmax-quantized per token at run time.
package enum PTQMethod: String, CaseIterable, Codable, Sendable {
    case absmaxW8A8 = "absmax-w8a8"
    case absmaxW4A4 = "absmax-w4a4"
    case absmaxW1A8 = "absmax-w1a8"
    /// BitNet b1.58's own quantizer (Eq. 3-5) with 8-bit activations, applied after training instead of during it.
    case absmeanTernaryA8 = "absmean-w1.58a8"

    /// Table label ("W8A8 absmax").
    package var label: String {
        switch self {
        case .absmaxW8A8: return "absmax W8A8"
        case .absmaxW4A4: return "absmax W4A4"
        case .absmaxW1A8: return "absmax W1A8"
        case .absmeanTernaryA8: return "absmean W1.58A8"
        }
    }

    /// Weight bits as Table 3's WBits column prints them.
    package var weightBits: String {
        switch self {
        case .absmaxW8A8: return "8"
        case .absmaxW4A4: return "4"
        case .absmaxW1A8: return "1"
        case .absmeanTernaryA8: return "1.58"
        }
    }

    package var activationBits: Int { self == .absmaxW4A4 ? 4 : 8 }

    /// Quantizes one weight tensor of `count` values into `out` (dequantized).
    /// Absmax b-bit (Eq. 6-7 applied to weights): RoundClip(W·Q_p/(γ+ε), Q_n, Q_p)·(γ+ε)/Q_p with γ = max|W|.
    /// 1 bit: absmax with one bit leaves only {−1, 0}·γ, so W1 uses the binarization of Eq. 1-2 (sign(W − α)·β).
    /// Ternary: absmean (Eq. 3-5).
    package func quantize(_ w: UnsafePointer<Float>, count: Int, into out: UnsafeMutablePointer<Float>) {
        switch self {
        case .absmaxW8A8, .absmaxW4A4:
            Quantizer.absmaxQuantize(w, count: count, gamma: Quantizer.absmax(w, count: count), bits: self == .absmaxW8A8 ? 8 : 4, dequant: out)
        case .absmaxW1A8:
            Quantizer.signBinary(w, count: count, dequant: out)
        case .absmeanTernaryA8:
            Quantizer.absmeanTernary(w, count: count, dequant: out)
        }
    }

    /// A copy of an fp model whose linear weights (attention and FFN; not the embedding/head or norms) are quantized.
    package func apply(to weights: ModelWeights) throws -> ModelWeights {
        guard weights.config.arch == .fp else {
            throw BitNetError.invalidArgument("post-training quantization applies to an fp model, got \(weights.config.arch.rawValue)")
        }
        let q = weights.copy()
        for s in weights.layout.slots where s.shape.count == 2 && s.name.hasPrefix("layers.") {
            quantize(weights.ptr + s.offset, count: s.count, into: q.ptr + s.offset)
        }
        return q
    }
}
