import Foundation
import BitNetKernels

/// Which linear layer the network uses: the paper's two BitNets or the full-precision twin.
public enum Architecture: String, Codable, Sendable, CaseIterable {
    case b158 = "bitnet-b1.58"
    case b1 = "bitnet-b1"
    case fp = "fp"

    /// True for the two quantized variants (BitLinear, Eq. 9).
    package var isQuantized: Bool { self != .fp }

    /// Parses a user's spelling ("b1.58", "bitnet-b1.58", "fp16", ...), nil when unknown.
    package static func parse(_ s: String) -> Architecture? {
        switch s.lowercased() {
        case "bitnet-b1.58", "b1.58", "b158", "bitnet-b158", "bitnet": return .b158
        case "bitnet-b1", "b1": return .b1
        case "fp", "fp32", "fp16", "full-precision", "llama": return .fp
        default: return nil
        }
    }
}

/// The feed-forward block: SwiGLU (LLaMA) or gated squared ReLU (BitNet b1.58 2B4T).
public enum FFNKind: String, Codable, Sendable {
    case swiglu, relu2
}

/// Scope of the activation absmax γ during training (Sec. 3.1.1: b1 trains per tensor, infers per token).
public enum ActivationScope: String, Codable, Sendable {
    case perToken = "per_token"
    case perTensor = "per_tensor"
}

/// Every hyperparameter of the network; `docs/MODEL.md` pins its meaning.
public struct ModelConfig: Codable, Sendable, Equatable {
    public var arch: Architecture
    public var vocabSize: Int
    public var dim: Int
    public var nLayers: Int
    public var nHeads: Int
    public var nKVHeads: Int
    public var ffnDim: Int
    public var maxSeqLen: Int
    public var ffn: FFNKind
    public var subNorm: Bool
    public var normEps: Float
    public var ropeTheta: Float
    public var tieEmbeddings: Bool
    public var normGroups: Int
    public var quantGroups: Int
    public var actBits: Int
    public var actScopeTrain: ActivationScope
    public var unsignedAfterNonlinearity: Bool

    enum CodingKeys: String, CodingKey {
        case arch, dim, ffn
        case vocabSize = "vocab_size", nLayers = "n_layers", nHeads = "n_heads", nKVHeads = "n_kv_heads"
        case ffnDim = "ffn_dim", maxSeqLen = "max_seq_len", subNorm = "sub_norm", normEps = "norm_eps"
        case ropeTheta = "rope_theta", tieEmbeddings = "tie_embeddings", normGroups = "norm_groups"
        case quantGroups = "quant_groups", actBits = "act_bits", actScopeTrain = "act_scope_train"
        case unsignedAfterNonlinearity = "unsigned_after_nonlinearity"
    }

    /// A config with the project's defaults for everything not given.
    public init(arch: Architecture, vocabSize: Int, dim: Int, nLayers: Int, nHeads: Int, nKVHeads: Int? = nil,
                ffnDim: Int? = nil, maxSeqLen: Int = 256, ffn: FFNKind = .swiglu, subNorm: Bool = true,
                normEps: Float = 1e-5, ropeTheta: Float = 10000, tieEmbeddings: Bool = true,
                normGroups: Int = 1, quantGroups: Int = 1, actBits: Int = 8,
                actScopeTrain: ActivationScope = .perToken, unsignedAfterNonlinearity: Bool = false) {
        self.arch = arch; self.vocabSize = vocabSize; self.dim = dim; self.nLayers = nLayers
        self.nHeads = nHeads; self.nKVHeads = nKVHeads ?? nHeads
        // SwiGLU's 8/3 expansion rounded to a multiple of 16 keeps parameters close to a 4x MLP.
        self.ffnDim = ffnDim ?? ((dim * 8 / 3 + 15) / 16 * 16)
        self.maxSeqLen = maxSeqLen; self.ffn = ffn; self.subNorm = subNorm; self.normEps = normEps
        self.ropeTheta = ropeTheta; self.tieEmbeddings = tieEmbeddings; self.normGroups = normGroups
        self.quantGroups = quantGroups; self.actBits = actBits; self.actScopeTrain = actScopeTrain
        self.unsignedAfterNonlinearity = unsignedAfterNonlinearity
    }

    public var headDim: Int { dim / nHeads }
    public var kvDim: Int { nKVHeads * headDim }

    /// Checks every shape constraint; the error names the offending field.
    public func validate() throws {
        func bad(_ f: String, _ p: String) -> BitNetError { .invalidArgument("model config \(f): \(p)") }
        for (name, v) in [("vocab_size", vocabSize), ("dim", dim), ("n_layers", nLayers), ("n_heads", nHeads),
                          ("n_kv_heads", nKVHeads), ("ffn_dim", ffnDim), ("max_seq_len", maxSeqLen),
                          ("norm_groups", normGroups), ("quant_groups", quantGroups)] where v <= 0 {
            throw bad(name, "must be positive, got \(v)")
        }
        for (name, v) in [("vocab_size", vocabSize), ("dim", dim), ("ffn_dim", ffnDim), ("max_seq_len", maxSeqLen)]
        where v > 1 << 24 { throw bad(name, "\(v) is implausibly large") }
        if nLayers > 4096 || nHeads > 4096 { throw bad("n_layers/n_heads", "implausibly large") }
        if dim % nHeads != 0 { throw bad("dim", "\(dim) is not a multiple of n_heads \(nHeads)") }
        if headDim % 2 != 0 { throw bad("dim", "head_dim \(headDim) must be even for rotary embeddings") }
        if nHeads % nKVHeads != 0 { throw bad("n_kv_heads", "n_heads \(nHeads) is not a multiple of \(nKVHeads)") }
        if dim % normGroups != 0 || ffnDim % normGroups != 0 { throw bad("norm_groups", "\(normGroups) must divide dim and ffn_dim") }
        for d in [dim, ffnDim, kvDim] where d % quantGroups != 0 {
            throw bad("quant_groups", "\(quantGroups) must divide every linear's rows and columns (\(d))")
        }
        if !(2...8).contains(actBits) { throw bad("act_bits", "must be in 2...8, got \(actBits)") }
        if !(normEps > 0) { throw bad("norm_eps", "must be positive") }
    }

    /// Number of trainable parameters (embedding counted once when tied).
    public var parameterCount: Int {
        ParameterLayout(config: self).totalCount
    }

    /// Parameters inside BitLinear layers (the ones that become ternary).
    package var linearParameterCount: Int {
        nLayers * (dim * dim * 2 + dim * kvDim * 2 + dim * ffnDim * 3)
    }

    /// A training size preset (`--size`: tiny, small, 10m, medium, large; see `ModelPreset`) for `arch`, nil for
    /// other names.
    public static func preset(_ name: String, arch: Architecture, vocabSize: Int, maxSeqLen: Int) -> ModelConfig? {
        guard let p = ModelPreset.named(name), p.family == .training else { return nil }
        return p.config(arch: arch, vocabSize: vocabSize, maxSeqLen: maxSeqLen)
    }

    /// The names `preset` accepts.
    public static var presetNames: [String] { ModelPreset.names(.training) }

    /// JSON for files and metadata (stable key order).
    package func jsonString() -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: (try? enc.encode(self)) ?? Data(), as: UTF8.self)
    }

    /// Decodes and validates a config JSON; `source` names the file in errors.
    package static func fromJSON(_ s: String, source: String) throws -> ModelConfig {
        do {
            let c = try JSONDecoder().decode(ModelConfig.self, from: Data(s.utf8))
            try c.validate()
            return c
        } catch let e as BitNetError {
            throw BitNetError.invalidFormat(file: source, field: "bitnet.config", problem: e.description)
        } catch {
            throw BitNetError.invalidFormat(file: source, field: "bitnet.config", problem: "\(error)")
        }
    }
}
