/// Every named model shape the tool knows, in one registry: the training sizes (`train --size`), the released
/// BitNet b1.58 2B4T (`bench`/`serve --preset 2b4t`), and the paper's models that `bitnet energy` prices.
package struct ModelPreset: Sendable {
    package enum Family: Sendable, Equatable {
        /// Sizes to train here; head_dim 64 where the width allows, FFN about 8/3 of the width in multiples of 256.
        case training
        /// A released model's shapes.
        case released
        /// A model of the paper's tables (Table 10: BitNet b1 against a Transformer with a plain 4x MLP;
        /// Table 12: b1.58 against LLaMA); vocabulary 32000 (LLaMA) is an assumption.
        case paper
    }

    package let name: String
    package let family: Family
    /// The FFN is a plain two-matrix MLP (Table 10's Transformer) rather than a gated one.
    package let plainMLP: Bool
    private let shape: @Sendable (_ arch: Architecture?, _ vocabSize: Int?, _ maxSeqLen: Int?) -> ModelConfig

    /// The shape; `arch`, `vocabSize` and `maxSeqLen` replace the preset's own when given.
    package func config(arch: Architecture? = nil, vocabSize: Int? = nil, maxSeqLen: Int? = nil) -> ModelConfig {
        shape(arch, vocabSize, maxSeqLen)
    }

    /// The FFN width of a training shape of width `dim`: the multiple of 256 nearest to SwiGLU's 8/3·dim (at least
    /// 256), so that rows of the down projection are whole blocks of every GGUF type (TQ2_0, TQ1_0 and Q6_K store
    /// 256-weight blocks, I2_S 128).
    package static func ffnWidth(forDim dim: Int) -> Int {
        max(256, Int((Double(dim) * 8 / 3 / 256).rounded()) * 256)
    }

    package static func named(_ name: String) -> ModelPreset? { all.first { $0.name == name.lowercased() } }

    package static func names(_ family: Family) -> [String] { all.filter { $0.family == family }.map(\.name) }

    package static let all: [ModelPreset] = {
        func training(_ name: String, _ dim: Int, _ layers: Int, _ heads: Int) -> ModelPreset {
            ModelPreset(name: name, family: .training, plainMLP: false) { arch, vocab, seq in
                let a = arch ?? .b158
                return ModelConfig(arch: a, vocabSize: vocab ?? 32000, dim: dim, nLayers: layers, nHeads: heads,
                                   ffnDim: ffnWidth(forDim: dim), maxSeqLen: seq ?? 1024,
                                   actScopeTrain: a == .b1 ? .perTensor : .perToken, unsignedAfterNonlinearity: false)
            }
        }
        func plain(_ name: String, _ d: Int, _ l: Int, _ h: Int) -> ModelPreset {
            ModelPreset(name: name, family: .paper, plainMLP: true) { arch, vocab, seq in
                ModelConfig(arch: arch ?? .b1, vocabSize: vocab ?? 32000, dim: d, nLayers: l, nHeads: h, ffnDim: 4 * d,
                            maxSeqLen: seq ?? 2048)
            }
        }
        func glu(_ name: String, _ d: Int, _ f: Int, _ h: Int, _ l: Int) -> ModelPreset {
            ModelPreset(name: name, family: .paper, plainMLP: false) { arch, vocab, seq in
                ModelConfig(arch: arch ?? .b158, vocabSize: vocab ?? 32000, dim: d, nLayers: l, nHeads: h, ffnDim: f,
                            maxSeqLen: seq ?? 2048)
            }
        }
        return [
            training("tiny", 128, 2, 4), training("small", 256, 4, 4), training("10m", 384, 6, 6),
            training("medium", 512, 8, 8), training("large", 768, 12, 12),
            // BitNet b1.58 2B4T: hidden 2560, 30 layers, 20 heads, 5 KV heads, FFN 6912, ReLU², vocab 128256, tied.
            ModelPreset(name: "2b4t", family: .released, plainMLP: false) { arch, vocab, seq in
                ModelConfig(arch: arch ?? .b158, vocabSize: vocab ?? 128256, dim: 2560, nLayers: 30, nHeads: 20, nKVHeads: 5,
                            ffnDim: 6912, maxSeqLen: seq ?? 4096, ffn: .relu2, subNorm: true, ropeTheta: 500000,
                            tieEmbeddings: true)
            },
            plain("6.7b", 4096, 32, 32), plain("13b", 5120, 40, 40), plain("30b", 7168, 48, 56),
            glu("700m", 1536, 4096, 24, 24), glu("1.3b", 2048, 5460, 32, 24), glu("3b", 3200, 8640, 32, 26),
            glu("3.9b", 3200, 12800, 32, 26),
        ]
    }()
}
