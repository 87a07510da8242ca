import ArgumentParser
import BitNet
import Foundation
import BitNetTools
import BitNetKernels

/// `bitnet energy`: the arithmetic energy of a model's matrix products (Sec. 2.3, Eqs. 10-12, Table 1).
struct Energy: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Arithmetic energy of a model's matrix products: FP32, FP16 and BitNet (Sec. 2.3, Table 1-2).")

    @Option(help: "Model file or checkpoint directory (its config is used).") var model: String?
    @Option(help: "Preset: \((ModelConfig.presetNames + EnergyModel.paperPresetNames).joined(separator: ", ")).") var preset: String?
    @Option(help: "Input length p in tokens.") var tokens: Int = 512
    @Option(help: "Process node: 7nm or 45nm.") var node: String = "7nm"
    @Flag(name: .customLong("include-head"), help: "Count the output head (full precision in BitNet).") var includeHead = false
    @Flag(name: .customLong("include-attention"), help: "Count QKᵀ and AV over the full p×p (FP16 in BitNet); needed for Table 2.") var includeAttention = false
    @Flag(name: .customLong("per-product"), help: "Also print every product.") var perProduct = false
    @Flag(help: "Print JSON.") var json = false

    /// The config and FFN layout named by --model or --preset.
    func resolveModel() throws -> (name: String, config: ModelConfig, ffn: EnergyOptions.FFNLayout) {
        switch (model, preset) {
        case (nil, nil), (.some, .some):
            throw BitNetError.invalidArgument("give exactly one of --model PATH or --preset NAME")
        case (let path?, nil):
            return (path, try ModelFile.load(path: path).weights.config, .gated)
        case (nil, let name?):
            if let c = ModelConfig.preset(name, arch: .b158, vocabSize: 32000, maxSeqLen: max(tokens, 1)) {
                return (name, c, .gated)
            }
            if let pp = EnergyModel.paperPreset(name) { return (name, pp.config, pp.ffnLayout) }
            throw BitNetError.invalidArgument(
                "unknown --preset \(name); choose one of \((ModelConfig.presetNames + EnergyModel.paperPresetNames).joined(separator: ", "))")
        }
    }

    func run() throws {
        try runReportingErrors {
            guard tokens > 0 else { throw BitNetError.invalidArgument("--tokens must be positive, got \(tokens)") }
            guard let n = ProcessNode.parse(node) else { throw BitNetError.invalidArgument("unknown --node \(node); use 7nm or 45nm") }
            let (name, c, ffn) = try resolveModel()
            let opts = EnergyOptions(includeHead: includeHead, includeAttention: includeAttention, ffnLayout: ffn)
            let r = EnergyModel.estimate(config: c, tokens: tokens, node: n, options: opts)
            if json { print(jsonText(r, name: name, config: c, options: opts)) } else { printTable(r, name: name, config: c, options: opts) }
        }
    }

    func printTable(_ r: EnergyReport, name: String, config c: ModelConfig, options o: EnergyOptions) {
        let ffnText = o.ffnLayout == .gated ? "gated FFN \(c.ffnDim) (w1,w3,w2)" : "plain FFN \(c.ffnDim) (w1,w2)"
        print("model \(name): dim \(c.dim), \(c.nLayers) layers, \(c.nHeads) heads (\(c.nKVHeads) kv), \(ffnText), vocab \(c.vocabSize)")
        print("node \(r.node.rawValue), input \(r.tokens) tokens; counted: BitLinear products"
              + (o.includeAttention ? " + attention QKᵀ/AV" : "") + (o.includeHead ? " + output head" : ""))
        print("BitNet: INT8 adds (Eq. 10), FP16 rescaling muls (Eq. 12); attention and head in FP16 (Eqs. 10-11)")
        func e(_ x: Double) -> String { String(format: "%11.4e", x) }
        func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
        func rpad(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }
        print("")
        print(pad("", 8) + rpad("whole input (J)", 35) + "   " + rpad("per token (J)", 35))
        print(pad("", 8) + ["MUL", "ADD", "MUL+ADD"].map { rpad($0, 12) }.joined() + "   "
              + ["MUL", "ADD", "MUL+ADD"].map { rpad($0, 12) }.joined())
        for (label, t, pt) in [("FP32", r.fp32, r.fp32PerToken), ("FP16", r.fp16, r.fp16PerToken), ("BitNet", r.bitnet, r.bitnetPerToken)] {
            print(pad(label, 8) + [t.mul, t.add, t.total].map { " " + e($0) }.joined() + "   "
                  + [pt.mul, pt.add, pt.total].map { " " + e($0) }.joined())
        }
        print("")
        func ratio(_ x: Double) -> String { String(format: "%.1fx", x) }
        print("FP32/BitNet: total \(ratio(r.ratioFP32)) (MUL \(ratio(r.ratioFP32Parts.mul)), ADD \(ratio(r.ratioFP32Parts.add)))")
        print("FP16/BitNet: total \(ratio(r.ratioFP16)) (MUL \(ratio(r.ratioFP16Parts.mul)), ADD \(ratio(r.ratioFP16Parts.add)))")
        if perProduct {
            print("")
            print("product     kind        m x n x p           count   FP32 (J)    FP16 (J)    BitNet (J)")
            for x in r.products {
                let p = x.product
                print("\(pad(p.name, 11)) \(pad(p.kind.rawValue, 11)) \(pad("\(p.m) x \(p.n) x \(p.p)", 19)) \(pad("\(p.count)", 7)) \(e(x.fp32.total)) \(e(x.fp16.total)) \(e(x.bitnet.total))")
            }
        }
    }

    func jsonText(_ r: EnergyReport, name: String, config c: ModelConfig, options o: EnergyOptions) -> String {
        func pair(_ p: EnergyPair) -> [String: Double] { ["mul_j": p.mul, "add_j": p.add, "total_j": p.total] }
        let obj: [String: Any] = [
            "model": name, "node": r.node.rawValue, "tokens": r.tokens,
            "include_head": o.includeHead, "include_attention": o.includeAttention, "ffn_layout": o.ffnLayout.rawValue,
            "config": ["dim": c.dim, "n_layers": c.nLayers, "n_heads": c.nHeads, "n_kv_heads": c.nKVHeads,
                       "ffn_dim": c.ffnDim, "vocab_size": c.vocabSize],
            "total": ["fp32": pair(r.fp32), "fp16": pair(r.fp16), "bitnet": pair(r.bitnet)],
            "per_token": ["fp32": pair(r.fp32PerToken), "fp16": pair(r.fp16PerToken), "bitnet": pair(r.bitnetPerToken)],
            "ratio": ["fp32_over_bitnet": r.ratioFP32, "fp16_over_bitnet": r.ratioFP16,
                      "fp32_over_bitnet_mul": r.ratioFP32Parts.mul, "fp32_over_bitnet_add": r.ratioFP32Parts.add,
                      "fp16_over_bitnet_mul": r.ratioFP16Parts.mul, "fp16_over_bitnet_add": r.ratioFP16Parts.add],
            "products": r.products.map { x -> [String: Any] in
                ["name": x.product.name, "kind": x.product.kind.rawValue, "m": x.product.m, "n": x.product.n,
                 "p": x.product.p, "count": x.product.count,
                 "fp32": pair(x.fp32), "fp16": pair(x.fp16), "bitnet": pair(x.bitnet)]
            },
        ]
        let data = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .prettyPrinted])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
