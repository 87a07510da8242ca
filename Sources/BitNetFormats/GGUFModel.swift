import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetKernels

/// Models in GGUF files (llama.cpp, bitnet.cpp): architectures `bitnet`, `bitnet-b1.58`, `bitnet-25` and `llama`.
///
/// Tensor names are llama.cpp's (`token_embd`, `blk.N.attn_q`, ..., `output_norm`, `output`). The q/k row order
/// depends on the architecture: llama.cpp runs `llama` with consecutive-pair RoPE (its converter permutes q/k, our
/// order) and the `bitnet*` archs with NEOX RoPE on Hugging Face's rotate_half order (its converter does not permute),
/// so those rows are permuted on import and export. Ternary linears (TQ1_0, TQ2_0, I2_S, or float tensors holding
/// only 0 and ±a) are imported losslessly through `TernaryWeights.latent`.
package enum GGUFModel {
    /// Metadata key holding the exact bitnet-swift config (JSON) in files this library writes.
    package static let configKey = "bitnet-swift.config"
    /// Architectures this reader accepts.
    package static let architectures = ["bitnet", "bitnet-b1.58", "bitnet-25", "llama"]

    /// Our tensor name → llama.cpp's, for one layout.
    package static func ggufName(_ name: String) -> String {
        let fixed: [String: String] = ["tok_embeddings.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
                                       "output.weight": "output.weight"]
        if let f = fixed[name] { return f }
        let parts = name.split(separator: ".", maxSplits: 2).map(String.init)  // layers, N, rest
        let map = ["attention_norm.weight": "attn_norm.weight", "attention.wq.weight": "attn_q.weight",
                   "attention.wk.weight": "attn_k.weight", "attention.wv.weight": "attn_v.weight",
                   "attention.wo.weight": "attn_output.weight", "attention.sub_norm.weight": "attn_sub_norm.weight",
                   "ffn_norm.weight": "ffn_norm.weight", "feed_forward.w1.weight": "ffn_gate.weight",
                   "feed_forward.w3.weight": "ffn_up.weight", "feed_forward.w2.weight": "ffn_down.weight",
                   "feed_forward.sub_norm.weight": "ffn_sub_norm.weight"]
        return "blk.\(parts[1])." + (map[parts[2]] ?? parts[2])
    }

    /// True for architectures whose q/k rows are in rotate_half order (llama.cpp's `LLAMA_ROPE_TYPE_NEOX`).
    static func usesRotateHalf(_ arch: String) -> Bool { arch != "llama" }

    /// True when the file starts with the GGUF magic.
    package static func isGGUF(path: String) -> Bool {
        guard let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        return (try? h.read(upToCount: 4)) == Data("GGUF".utf8)
    }

    /// The model config a GGUF file describes (its hyperparameter keys, or the exact config this library stored).
    package static func config(of f: GGUFFile) throws -> ModelConfig {
        guard let arch = f["general.architecture"]?.string else { throw f.bad("general.architecture", "missing") }
        guard architectures.contains(arch) else {
            throw f.bad("general.architecture", "'\(arch)' is not supported (\(architectures.joined(separator: ", ")) are)")
        }
        func int(_ k: String, default d: Int? = nil) throws -> Int {
            guard let v = f["\(arch).\(k)"] else {
                if let d { return d }
                throw f.bad("\(arch).\(k)", "missing")
            }
            guard let i = v.int, i > 0, i <= 1 << 24 else { throw f.bad("\(arch).\(k)", "\(v) is not a positive integer") }
            return i
        }
        func float(_ k: String, default d: Double) throws -> Float {
            guard let v = f["\(arch).\(k)"] else { return Float(d) }
            guard let x = v.double, x.isFinite, x > 0 else { throw f.bad("\(arch).\(k)", "\(v) is not a positive number") }
            return Float(x)
        }
        guard let emb = f.tensor("token_embd.weight"), emb.dims.count == 2 else { throw f.bad("token_embd.weight", "missing or not a matrix") }
        let dim = try int("embedding_length"), heads = try int("attention.head_count")
        let quantized = arch != "llama"
        let subNorm = f.tensor("blk.0.attn_sub_norm.weight") != nil
        var ffn: FFNKind = arch == "bitnet-25" ? .relu2 : .swiglu
        if let act = (f["\(arch).hidden_activation"] ?? f["\(arch).hidden_act"])?.string {
            switch act.lowercased() {
            case "relu2", "relu_sqr", "relu_squared", "squared_relu": ffn = .relu2
            case "silu", "swish", "swiglu": ffn = .swiglu
            default: throw f.bad("\(arch).hidden_activation", "'\(act)' is not relu2 or silu")
            }
        }
        var c = ModelConfig(arch: quantized ? .b158 : .fp, vocabSize: emb.dims[1], dim: dim, nLayers: try int("block_count"),
                            nHeads: heads, nKVHeads: try int("attention.head_count_kv", default: heads),
                            ffnDim: try int("feed_forward_length"), maxSeqLen: min(try int("context_length", default: 2048), 1 << 16),
                            ffn: ffn, subNorm: subNorm, normEps: try float("attention.layer_norm_rms_epsilon", default: 1e-5),
                            ropeTheta: try float("rope.freq_base", default: 10000),
                            tieEmbeddings: f.tensor("output.weight") == nil)
        if let stored = f[configKey] {
            guard let json = stored.string else { throw f.bad(configKey, "not a string") }
            let s = try ModelConfig.fromJSON(json, source: f.path)
            guard s.vocabSize == c.vocabSize, s.dim == c.dim, s.nLayers == c.nLayers, s.nHeads == c.nHeads,
                  s.nKVHeads == c.nKVHeads, s.ffnDim == c.ffnDim, s.subNorm == c.subNorm, s.tieEmbeddings == c.tieEmbeddings else {
                throw f.bad(configKey, "disagrees with the file's hyperparameters and tensors")
            }
            c = s
        }
        do { try c.validate() } catch { throw f.bad("\(arch) hyperparameters", "\(error)") }
        if let rd = f["\(arch).rope.dimension_count"], rd.int != c.headDim {
            throw f.bad("\(arch).rope.dimension_count", "\(rd) differs from head_dim \(c.headDim) (partial RoPE is not supported)")
        }
        return c
    }

    /// Loads weights and the embedded tokenizer (if any) of a GGUF model file (`showProgress`: a line per tensor).
    package static func load(path: String, showProgress: Bool = false) throws -> LoadedModel {
        let f = try GGUFFile.read(path: path)
        let (c, layout) = try checkedLayout(f)
        let w = ModelWeights(config: c)
        var progress = showProgress ? ProgressLine(total: layout.slots.count, unit: "tensors") : nil
        for (n, s) in layout.slots.enumerated() {
            defer { progress?.update(done: n + 1, extra: "reading \(URL(fileURLWithPath: path).lastPathComponent)") }
            try decode(f, slot: s, config: c, layout: layout, into: w.ptr + s.offset)
        }
        return LoadedModel(weights: w, tokenizer: try tokenizer(of: f, config: c))
    }

    /// The config of a GGUF model and its parameter layout, after checking that every tensor is present with its
    /// shape (so the file really holds the parameters) before anything is allocated.
    package static func checkedLayout(_ f: GGUFFile) throws -> (ModelConfig, ParameterLayout) {
        let c = try config(of: f)
        let layout = ParameterLayout(config: c)
        for s in layout.slots {
            let gname = ggufName(s.name)
            guard let t = f.tensor(gname) else { throw f.bad(gname, "tensor missing (needed for \(s.name))") }
            guard t.shape == s.shape || (s.shape.count == 1 && t.count == s.count) else {
                throw f.bad(gname, "shape \(t.shape), the config needs \(s.shape)")
            }
        }
        return (c, layout)
    }

    /// Rotary heads of a q/k projection whose rows the file keeps in rotate_half order (nil for other tensors).
    package static func rotateHalfHeads(_ f: GGUFFile, _ s: TensorSlot, _ c: ModelConfig) -> Int? {
        usesRotateHalf(f["general.architecture"]?.string ?? "") ? HFModel.rotaryHeads(s.name, c) : nil
    }

    /// Decodes parameter `s` (checked by `checkedLayout`) into s.count latent f32 weights at `dst`: ternary linears
    /// losslessly through `TernaryWeights.latent`, q/k rows permuted to consecutive pairs; a non-finite value is an error.
    package static func decode(_ f: GGUFFile, slot s: TensorSlot, config c: ModelConfig, layout: ParameterLayout,
                       into dst: UnsafeMutablePointer<Float>) throws {
        let gname = ggufName(s.name)
        let t = f.tensor(gname)!
        let heads = rotateHalfHeads(f, s, c)
        let isLinear = c.arch.isQuantized && s.shape.count == 2 && s.offset != layout.embedding && s.offset != layout.output
        if isLinear, let found = try ternaryTensor(f, t) {
            var codes = found.codes
            if let h = heads { codes = TernaryWeights.permuteRotary(codes, heads: h, rows: s.shape[0], cols: s.shape[1]) }
            TernaryWeights.latent(codes: codes, scales: [found.scale * (try extraScale(f, gname))], into: dst)
        } else {
            var v = try f.floats(gname)
            if let h = heads { v = TernaryWeights.permuteRotary(v, heads: h, rows: s.shape[0], cols: s.shape[1]) }
            v.withUnsafeBufferPointer { dst.update(from: $0.baseAddress!, count: s.count) }
        }
        for i in 0..<s.count where !dst[i].isFinite {
            throw f.bad(gname, "non-finite value at index \(i)")
        }
    }

    /// llama.cpp's optional per-tensor scale `<name>.scale` that multiplies a linear's output (1 when absent).
    package static func extraScale(_ f: GGUFFile, _ weightName: String) throws -> Float {
        let scaleName = weightName.replacingOccurrences(of: ".weight", with: ".scale")
        guard let st = f.tensor(scaleName) else { return 1 }
        guard st.count == 1 else { throw f.bad(scaleName, "has \(st.count) values, expected 1") }
        return try f.floats(scaleName)[0]
    }

    /// The tokenizer a GGUF file embeds (nil when none), checked against the vocabulary size.
    package static func tokenizer(of f: GGUFFile, config c: ModelConfig) throws -> (any Tokenizer)? {
        let tokenizer = try GGUFVocabulary.tokenizer(from: f)
        if let t = tokenizer, t.vocabSize != c.vocabSize {
            throw f.bad("tokenizer.ggml.tokens", "\(t.vocabSize) tokens, token_embd has \(c.vocabSize) rows")
        }
        return tokenizer
    }

    /// Codes and one scale of a ternary tensor, nil when the tensor is not ternary (then it is used as latent weights).
    package static func ternaryTensor(_ f: GGUFFile, _ t: GGUFTensorInfo) throws -> (codes: [Int8], scale: Float)? {
        if t.type.isTernary {
            let r = f.withBytes(t) { GGMLQuants.ternary(t.type, $0, count: t.count) }
            // Codes are -1, 0, 1, or 2 for the invalid field 3: one unsigned comparison finds the invalid ones.
            let anyInvalid = r.codes.withUnsafeBufferPointer { p in p.reduce(UInt8(0)) { $0 | (UInt8(bitPattern: $1 &+ 1) > 2 ? 1 : 0) } } != 0
            if anyInvalid, let bad = r.codes.firstIndex(where: { UInt8(bitPattern: $0 &+ 1) > 2 }) {
                throw f.bad(t.name, "2-bit code 3 at element \(bad) is not a ternary value (0, 1, 2 are)")
            }
            for s in r.blockScales where !s.isFinite || s < 0 { throw f.bad(t.name, "scale \(s) is not a finite non-negative number") }
            return (r.codes, TernaryWeights.commonScale(codes: r.codes, blockScales: r.blockScales, blockSize: r.blockSize))
        }
        return TernaryWeights.detect(try f.floats(t.name))
    }

    /// Options of `save`.
    package struct ExportOptions: Sendable {
        /// Type of the BitLinear weights.
        package var type: GGMLType = .tq2_0
        /// Type of the token embedding and output head (F16 as llama.cpp's converter writes them).
        package var embeddingType: GGMLType = .f16
        package var name = "bitnet-swift model"
        /// A Jinja chat template to store as `tokenizer.chat_template` (carried over by `bitnet convert`).
        package var chatTemplate: String? = nil
        package init() {}

        /// Options naming the linears' and the embedding's types as llama.cpp prints them (any case). An unknown name,
        /// or a ternary type for the embedding, is an error that starts with the option's name (`typeOption`,
        /// `embeddingOption`; empty: none).
        package init(type: String, embeddingType: String, typeOption: String = "", embeddingOption: String = "") throws {
            func named(_ option: String, _ value: String) -> String { option.isEmpty ? value : "\(option) \(value)" }
            guard let t = GGMLType.parse(type) else { throw BitNetError.invalidArgument("\(named(typeOption, type)) is not a GGUF type") }
            guard let e = GGMLType.parse(embeddingType), !e.isTernary else {
                throw BitNetError.invalidArgument("\(named(embeddingOption, embeddingType)) is not a float or Q type")
            }
            self.type = t; self.embeddingType = e
        }
    }

    /// Builds the GGUF of a model: arch `bitnet` for ternary SwiGLU models (llama.cpp's BitNet graph), `bitnet-25` for
    /// ternary ReLU² models (bitnet.cpp's 2B4T graph), `llama` for `fp` ones.
    package static func serialize(_ weights: ModelWeights, tokenizer: (any Tokenizer)?, options o: ExportOptions = ExportOptions(),
                                 showProgress: Bool = false) throws -> GGUFWriter {
        let c = weights.config
        try c.validate()
        // llama.cpp's `bitnet` graph is SiLU-gated; ReLU² models (2B4T's FFN) go out as bitnet.cpp's `bitnet-25`,
        // which upstream llama.cpp refuses by name instead of running with the wrong activation.
        let arch = !c.arch.isQuantized ? "llama" : c.ffn == .relu2 ? "bitnet-25" : "bitnet"
        if c.arch.isQuantized && o.type.isTernary && c.quantGroups != 1 {
            throw BitNetError.unsupported("\(o.type.name) holds one scale per tensor or block; quant_groups \(c.quantGroups) needs f16/f32")
        }
        if c.arch.isQuantized && !c.tieEmbeddings {
            throw BitNetError.unsupported("llama.cpp's bitnet graph always uses token_embd as the output head: the model must tie embeddings")
        }
        if c.normGroups != 1 { throw BitNetError.unsupported("norm_groups \(c.normGroups): llama.cpp normalizes whole rows") }
        if c.unsignedAfterNonlinearity { throw BitNetError.unsupported("unsigned activations after the nonlinearity have no GGUF equivalent") }
        if !c.arch.isQuantized && (c.subNorm || o.type.isTernary) {
            throw BitNetError.unsupported("an fp model exports as llama without sub-norms and with a float or Q type, not \(o.type.name)")
        }
        try checkBlocks(c, o)
        var g = GGUFWriter()
        g.set("general.architecture", .string(arch))
        g.set("general.name", .string(o.name))
        g.set("general.file_type", .uint32(fileType(o.type)))
        g.set("\(arch).vocab_size", .uint32(UInt32(c.vocabSize)))
        g.set("\(arch).context_length", .uint32(UInt32(c.maxSeqLen)))
        g.set("\(arch).embedding_length", .uint32(UInt32(c.dim)))
        g.set("\(arch).block_count", .uint32(UInt32(c.nLayers)))
        g.set("\(arch).feed_forward_length", .uint32(UInt32(c.ffnDim)))
        g.set("\(arch).rope.dimension_count", .uint32(UInt32(c.headDim)))
        g.set("\(arch).attention.head_count", .uint32(UInt32(c.nHeads)))
        g.set("\(arch).attention.head_count_kv", .uint32(UInt32(c.nKVHeads)))
        g.set("\(arch).attention.layer_norm_rms_epsilon", .float32(c.normEps))
        g.set("\(arch).rope.freq_base", .float32(c.ropeTheta))
        g.set("\(arch).hidden_activation", .string(c.ffn == .relu2 ? "relu2" : "silu"))
        g.set(configKey, .string(c.jsonString()))
        if let tokenizer { try GGUFVocabulary.write(tokenizer, into: &g) }
        if let t = o.chatTemplate { g.set("tokenizer.chat_template", .string(t)) }
        let L = weights.layout
        var progress = showProgress ? ProgressLine(total: L.slots.count, unit: "tensors") : nil
        for (n, s) in L.slots.enumerated() {
            defer { progress?.update(done: n + 1, extra: "encoding \(o.type.name)") }
            let src = weights.ptr + s.offset
            let name = ggufName(s.name)
            if s.shape.count == 1 {
                try g.addTensor(name: name, shape: s.shape, type: .f32, values: Array(UnsafeBufferPointer(start: src, count: s.count)))
            } else if s.offset == L.embedding || s.offset == L.output && !c.tieEmbeddings {
                try g.addTensor(name: name, shape: s.shape, type: o.embeddingType, values: Array(UnsafeBufferPointer(start: src, count: s.count)))
            } else if c.arch.isQuantized {
                // Write the quantized weight c·β (what the model computes with); ternary types then hold c exactly.
                let (codes, betas) = TernaryWeights.quantize(src, rows: s.shape[0], cols: s.shape[1], arch: c.arch, groups: c.quantGroups)
                let per = codes.count / betas.count
                var values = codes.enumerated().map { Float($0.element) * betas[$0.offset / per] }
                if usesRotateHalf(arch), let h = HFModel.rotaryHeads(s.name, c) {
                    values = TernaryWeights.permuteRotary(values, heads: h, rows: s.shape[0], cols: s.shape[1], inverse: true)
                }
                try g.addTensor(name: name, shape: s.shape, type: o.type, values: values)
            } else {
                try g.addTensor(name: name, shape: s.shape, type: o.type, values: Array(UnsafeBufferPointer(start: src, count: s.count)))
            }
        }
        return g
    }

    /// Writes a model as GGUF atomically.
    package static func save(_ weights: ModelWeights, tokenizer: (any Tokenizer)?, to url: URL, options: ExportOptions = ExportOptions(),
                            showProgress: Bool = false) throws {
        try serialize(weights, tokenizer: tokenizer, options: options, showProgress: showProgress).write(to: url)
    }

    /// GGUF stores each row in whole blocks of its type: the linears' rows hold `dim` weights (wq, wk, wv, wo, w1, w3)
    /// or `ffn_dim` (w2), the embedding's `dim`. Checked before any work, naming the dimension, the multiple and the
    /// types that would store this model.
    static func checkBlocks(_ c: ModelConfig, _ o: ExportOptions) throws {
        let rows = [("dim", c.dim), ("ffn_dim", c.ffnDim)]
        func fits(_ t: GGMLType) -> Bool { rows.allSatisfy { $0.1 % t.blockSize == 0 } }
        if let (field, n) = rows.first(where: { $0.1 % o.type.blockSize != 0 }) {
            let usable = GGMLType.allCases.filter { fits($0) && (c.arch.isQuantized || !$0.isTernary) }
            throw BitNetError.shapeMismatch("cannot store the linears as \(o.type.name): rows of \(field) \(n) weights are not a "
                + "multiple of its block of \(o.type.blockSize); types that can store this model: "
                + usable.map { $0.name.lowercased() }.joined(separator: ", ")
                + " (or train a shape whose dim and ffn_dim are multiples of \(o.type.blockSize))")
        }
        guard c.dim % o.embeddingType.blockSize == 0 else {
            throw BitNetError.shapeMismatch("cannot store the embedding as \(o.embeddingType.name): rows of dim \(c.dim) are not a "
                + "multiple of its block of \(o.embeddingType.blockSize); use --embedding-type f16, bf16 or f32")
        }
    }

    /// llama.cpp's `general.file_type` (LLAMA_FTYPE_*) for a tensor type.
    static func fileType(_ t: GGMLType) -> UInt32 {
        switch t {
        case .f32: 0
        case .f16: 1
        case .q4_0: 2
        case .q8_0: 7
        case .q6_K: 18
        case .bf16: 32
        case .tq1_0: 36
        case .tq2_0: 37
        case .i2_s: 40
        }
    }
}
