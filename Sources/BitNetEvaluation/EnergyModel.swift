import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference
import BitNetTraining
import BitNetKernels

/// Process node of the arithmetic energy table (Table 1).
package enum ProcessNode: String, Codable, Sendable, CaseIterable {
    case nm45 = "45nm"
    case nm7 = "7nm"

    /// Parses "7nm", "7", "45nm" or "45"; nil when unknown.
    package static func parse(_ s: String) -> ProcessNode? {
        switch s.lowercased() {
        case "7nm", "7": return .nm7
        case "45nm", "45": return .nm45
        default: return nil
        }
    }
}

/// Number formats of Table 1.
package enum ArithmeticPrecision: String, Codable, Sendable, CaseIterable {
    case fp32 = "FP32", fp16 = "FP16", int8 = "INT8"
}

/// Table 1: energy of one ADD and one MUL in picojoules (Horowitz 2014; Zhang et al. 2022).
package enum ArithmeticEnergy {
    /// (Ê_add, Ê_mul) in pJ for a precision at a node, exactly as printed in Table 1.
    package static func picojoules(_ p: ArithmeticPrecision, _ node: ProcessNode) -> (add: Double, mul: Double) {
        switch (p, node) {
        case (.fp32, .nm45): return (0.9, 3.7)
        case (.fp32, .nm7): return (0.38, 1.31)
        case (.fp16, .nm45): return (0.4, 1.1)
        case (.fp16, .nm7): return (0.16, 0.34)
        case (.int8, .nm45): return (0.03, 0.2)
        case (.int8, .nm7): return (0.007, 0.07)
        }
    }

    /// Ê_add in joules.
    package static func add(_ p: ArithmeticPrecision, _ node: ProcessNode) -> Double { picojoules(p, node).add * 1e-12 }
    /// Ê_mul in joules.
    package static func mul(_ p: ArithmeticPrecision, _ node: ProcessNode) -> Double { picojoules(p, node).mul * 1e-12 }
}

/// How a matrix product is executed by BitNet (the FP32/FP16 baselines run every product at their own precision).
package enum ProductKind: String, Codable, Sendable {
    /// A BitLinear weight product: INT8 adds (Eq. 10 with Ê_add INT8) and only rescaling multiplies (Eq. 12).
    case bitLinear = "bitlinear"
    /// The output head: full precision in BitNet, like the embedding (Eqs. 10-11 at FP16).
    case head
    /// Activation-by-activation attention products QKᵀ and AV: not BitLinear, FP16 in BitNet (Eqs. 10-11).
    case attention
}

/// One m×n "weight" times n×p "activation" product, occurring `count` times in the whole model.
package struct MatrixProduct: Codable, Sendable, Equatable {
    package var name: String
    package var kind: ProductKind
    package var m: Int
    package var n: Int
    package var p: Int
    package var count: Int

    package init(name: String, kind: ProductKind, m: Int, n: Int, p: Int, count: Int) {
        self.name = name; self.kind = kind; self.m = m; self.n = n; self.p = p; self.count = count
    }

    /// Multiplications of one occurrence: m·n·p (Eq. 11).
    package var fullMuls: Double { Double(m) * Double(n) * Double(p) }
    /// Additions of one occurrence: m·(n−1)·p (Eq. 10).
    package var fullAdds: Double { Double(m) * Double(n - 1) * Double(p) }
    /// BitNet's rescaling multiplications of one occurrence: m·p + n·p (Eq. 12).
    package var scaleMuls: Double { Double(m) * Double(p) + Double(n) * Double(p) }
}

/// MUL and ADD energy in joules.
package struct EnergyPair: Codable, Sendable, Equatable {
    package var mul: Double
    package var add: Double
    package init(mul: Double = 0, add: Double = 0) { self.mul = mul; self.add = add }
    /// MUL + ADD.
    package var total: Double { mul + add }
    /// Elementwise sum.
    package static func + (a: EnergyPair, b: EnergyPair) -> EnergyPair { EnergyPair(mul: a.mul + b.mul, add: a.add + b.add) }
    /// Scaled by a factor (e.g. 1/p for per token).
    package func scaled(_ f: Double) -> EnergyPair { EnergyPair(mul: mul * f, add: add * f) }
}

/// Energies of one product (all its occurrences) under the three schemes.
package struct ProductEnergy: Codable, Sendable, Equatable {
    package var product: MatrixProduct
    package var fp32: EnergyPair
    package var fp16: EnergyPair
    package var bitnet: EnergyPair
}

/// What the energy model counts beyond the BitLinear products.
package struct EnergyOptions: Codable, Sendable, Equatable {
    /// The FFN's matrices: gated (w1, w3, w2; what ModelConfig builds) or plain (w1, w2; the 4x MLP of Table 10's Transformer).
    package enum FFNLayout: String, Codable, Sendable { case gated, plain }

    /// Count the [vocab x dim] output head (full precision in BitNet); default off, as Sec. 2.3 counts the BitLinear products.
    package var includeHead: Bool
    /// Count QKᵀ and AV over the full p×p attention (FP16 in BitNet); default off; needed to reproduce Table 2.
    package var includeAttention: Bool
    /// FFN layout; `.gated` for every ModelConfig, `.plain` for the Table 10 presets.
    package var ffnLayout: FFNLayout

    package init(includeHead: Bool = false, includeAttention: Bool = false, ffnLayout: FFNLayout = .gated) {
        self.includeHead = includeHead; self.includeAttention = includeAttention; self.ffnLayout = ffnLayout
    }
}

/// The whole-model breakdown returned by `EnergyModel.estimate`.
package struct EnergyReport: Codable, Sendable {
    package var node: ProcessNode
    package var tokens: Int
    package var products: [ProductEnergy]
    /// Totals over the whole input of `tokens` tokens.
    package var fp32: EnergyPair
    package var fp16: EnergyPair
    package var bitnet: EnergyPair

    /// Totals divided by the number of tokens.
    package var fp32PerToken: EnergyPair { fp32.scaled(1 / Double(tokens)) }
    package var fp16PerToken: EnergyPair { fp16.scaled(1 / Double(tokens)) }
    package var bitnetPerToken: EnergyPair { bitnet.scaled(1 / Double(tokens)) }

    /// FP32 total / BitNet total.
    package var ratioFP32: Double { fp32.total / bitnet.total }
    /// FP16 total / BitNet total.
    package var ratioFP16: Double { fp16.total / bitnet.total }
    /// FP32 MUL / BitNet MUL and ADD / ADD.
    package var ratioFP32Parts: EnergyPair { EnergyPair(mul: fp32.mul / bitnet.mul, add: fp32.add / bitnet.add) }
    /// FP16 MUL / BitNet MUL and ADD / ADD.
    package var ratioFP16Parts: EnergyPair { EnergyPair(mul: fp16.mul / bitnet.mul, add: fp16.add / bitnet.add) }
}

/// The arithmetic energy model of Sec. 2.3 (Eqs. 10-12, Table 1) applied to a whole model.
package enum EnergyModel {
    /// Every matrix product of one forward pass over p tokens: per layer wq, wk, wv, wo, FFN; optional head and attention.
    package static func products(config c: ModelConfig, tokens p: Int, options o: EnergyOptions = EnergyOptions()) -> [MatrixProduct] {
        let L = c.nLayers
        var out: [MatrixProduct] = [
            MatrixProduct(name: "wq", kind: .bitLinear, m: c.nHeads * c.headDim, n: c.dim, p: p, count: L),
            MatrixProduct(name: "wk", kind: .bitLinear, m: c.kvDim, n: c.dim, p: p, count: L),
            MatrixProduct(name: "wv", kind: .bitLinear, m: c.kvDim, n: c.dim, p: p, count: L),
            MatrixProduct(name: "wo", kind: .bitLinear, m: c.dim, n: c.dim, p: p, count: L),
            MatrixProduct(name: "w1", kind: .bitLinear, m: c.ffnDim, n: c.dim, p: p, count: L),
        ]
        if o.ffnLayout == .gated {
            out.append(MatrixProduct(name: "w3", kind: .bitLinear, m: c.ffnDim, n: c.dim, p: p, count: L))
        }
        out.append(MatrixProduct(name: "w2", kind: .bitLinear, m: c.dim, n: c.ffnDim, p: p, count: L))
        if o.includeAttention {
            // Per query head: scores K[p x hd]·Qᵀ[hd x p], then Vᵀ[hd x p]·Aᵀ[p x p]; the full p×p, no causal halving
            // (this is what reproduces Table 2).
            out.append(MatrixProduct(name: "qk", kind: .attention, m: p, n: c.headDim, p: p, count: L * c.nHeads))
            out.append(MatrixProduct(name: "av", kind: .attention, m: c.headDim, n: p, p: p, count: L * c.nHeads))
        }
        if o.includeHead {
            out.append(MatrixProduct(name: "head", kind: .head, m: c.vocabSize, n: c.dim, p: p, count: 1))
        }
        return out
    }

    /// Energy of one product under a full-precision scheme: Eq. 10 (adds) and Eq. 11 (muls), times its count.
    package static func fullPrecision(_ x: MatrixProduct, _ prec: ArithmeticPrecision, _ node: ProcessNode) -> EnergyPair {
        let k = Double(x.count)
        return EnergyPair(mul: k * x.fullMuls * ArithmeticEnergy.mul(prec, node),
                          add: k * x.fullAdds * ArithmeticEnergy.add(prec, node))
    }

    /// Energy of one product in BitNet (b1 and b1.58 alike): BitLinear uses INT8 adds (Eq. 10) and Eq. 12 muls.
    package static func bitnet(_ x: MatrixProduct, _ node: ProcessNode) -> EnergyPair {
        switch x.kind {
        case .head, .attention:
            return fullPrecision(x, .fp16, node)
        case .bitLinear:
            // Eq. 12's multiplies rescale by β and γ/Q_p: float scalars applied to the INT32 sums and to the
            // high-precision input, so they are FP16 multiplies (the paper's FP16 baseline). INT8 MUL would
            // understate them; either way they are O(mp+np) and well under 1% of the total.
            let k = Double(x.count)
            return EnergyPair(mul: k * x.scaleMuls * ArithmeticEnergy.mul(.fp16, node),
                              add: k * x.fullAdds * ArithmeticEnergy.add(.int8, node))
        }
    }

    /// The full breakdown for a config at a node over an input of p tokens (architecture of `config` is ignored:
    /// all three schemes are always reported).
    package static func estimate(config: ModelConfig, tokens p: Int, node: ProcessNode,
                                options: EnergyOptions = EnergyOptions()) -> EnergyReport {
        precondition(p > 0, "tokens must be positive")
        let rows = products(config: config, tokens: p, options: options).map { x in
            ProductEnergy(product: x, fp32: fullPrecision(x, .fp32, node), fp16: fullPrecision(x, .fp16, node),
                          bitnet: bitnet(x, node))
        }
        return EnergyReport(node: node, tokens: p, products: rows,
                            fp32: rows.reduce(EnergyPair()) { $0 + $1.fp32 },
                            fp16: rows.reduce(EnergyPair()) { $0 + $1.fp16 },
                            bitnet: rows.reduce(EnergyPair()) { $0 + $1.bitnet })
    }

    /// Names `paperPreset` accepts: Table 10 (BitNet b1 vs Transformer), Table 12 (b1.58 vs LLaMA) and BitNet b1.58 2B4T.
    package static var paperPresetNames: [String] { ModelPreset.names(.paper) + ModelPreset.names(.released) }

    /// A paper model (`ModelPreset`) as a config plus the FFN layout its energy needs; nil for an unknown name.
    /// Table 10 sizes use a plain 4x MLP (two matrices), which with attention reproduces Table 2.
    package static func paperPreset(_ name: String) -> (config: ModelConfig, ffnLayout: EnergyOptions.FFNLayout)? {
        guard let p = ModelPreset.named(name), p.family != .training else { return nil }
        return (p.config(), p.plainMLP ? .plain : .gated)
    }
}
