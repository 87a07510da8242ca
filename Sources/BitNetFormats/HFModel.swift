import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetKernels

/// Hugging Face checkpoints: a directory with `config.json` and `model.safetensors` (or shards listed in
/// `model.safetensors.index.json`), in the layout of `microsoft/bitnet-b1.58-2B-4T` (model_type `bitnet`) or LLaMA.
///
/// BitNet linears come packed (uint8 [out/4, in], code+1 in bits 2i..2i+1 of chunk i, plus `weight_scale`) or as
/// float master weights quantized online (the `-bf16` variant). `quantization_config.linear_class` decides what the
/// scale means: `bitlinear` divides the output by it (β = 1/scale), `autobitlinear` multiplies (β = scale).
/// Hugging Face's q/k rows use rotate_half order; they are permuted to the consecutive pairs of docs/MODEL.md.
package enum HFModel {
    /// How BitNet linears are stored.
    package enum LinearStorage: String, Sendable {
        /// uint8-packed ternary codes + `weight_scale` (BitLinear, 2B4T).
        case packed
        /// Float master weights with online absmean quantization (AutoBitLinear online, the `-bf16` variant).
        case master
    }

    /// What `config.json` says beyond the ModelConfig.
    struct Info {
        var config: ModelConfig
        var linearClass = "bitlinear"
        var online = false
        var bos: Int?, eos: Int?
    }

    /// True when `path` is a directory whose `config.json` has a Hugging Face `model_type`.
    package static func isHFDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue,
              let d = FileManager.default.contents(atPath: path + "/config.json"),
              let config = try? JSONDecoder().decode(HFConfig.self, from: d) else { return false }
        return config.modelType != nil
    }

    /// Parses and validates `config.json`.
    static func readConfig(dir: String) throws -> Info {
        let file = dir + "/config.json"
        let json: HFConfig
        do {
            json = try JSONDecoder().decode(HFConfig.self, from: FileIO.read(file))
        } catch let e as BitNetError { throw e } catch DecodingError.typeMismatch(_, let context) where context.codingPath.isEmpty {
            throw BitNetError.invalidFormat(file: file, field: "top level", problem: "not a JSON object")
        } catch {
            throw BitNetError.invalidFormat(file: file, field: "JSON", problem: error.localizedDescription)
        }
        func bad(_ f: String, _ p: String) -> BitNetError { .invalidFormat(file: file, field: f, problem: p) }
        func int(_ v: HFConfig.Number?, _ k: String, _ d: Int? = nil) throws -> Int {
            guard let v else { if let d { return d }; throw bad(k, "missing") }
            guard let x = v.double, let i = Int(exactly: x), i > 0, i <= 1 << 24 else { throw bad(k, "\(v) is not a positive integer") }
            return i
        }
        func num(_ v: HFConfig.Number?, _ k: String, _ d: Double) throws -> Float {
            switch v {
            case nil, .null?: return Float(d)
            case let v?:
                guard let x = v.double, x.isFinite, x > 0 else { throw bad(k, "\(v) is not a positive number") }
                return Float(x)
            }
        }
        let modelType = json.modelType ?? ""
        guard modelType == "bitnet" || modelType == "llama" else {
            throw bad("model_type", "'\(modelType)' is not supported (bitnet and llama are)")
        }
        let dim = try int(json.hiddenSize, "hidden_size"), heads = try int(json.numAttentionHeads, "num_attention_heads")
        if let hd = json.headDim, let x = hd.double, Int(exactly: x.rounded(.towardZero)) != dim / heads {
            throw bad("head_dim", "\(hd) differs from hidden_size / num_attention_heads")
        }
        let act = json.hiddenAct ?? (modelType == "bitnet" ? "relu2" : "silu")
        let ffn: FFNKind
        switch act {
        case "relu2": ffn = .relu2
        case "silu", "swish": ffn = .swiglu
        default: throw bad("hidden_act", "'\(act)' is not relu2 or silu")
        }
        let rope = json.ropeParameters ?? json.ropeScaling
        if let t = rope?.ropeType ?? rope?.type, t != "default" {
            throw bad("rope_parameters", "rope_type '\(t)' is not supported (default is)")
        }
        let theta = try num(rope?.ropeTheta ?? json.ropeTheta, "rope_theta", modelType == "bitnet" ? 500000 : 10000)
        let tied = json.tieWordEmbeddings ?? (modelType == "llama")
        var info = Info(config: ModelConfig(arch: modelType == "bitnet" ? .b158 : .fp, vocabSize: try int(json.vocabSize, "vocab_size"), dim: dim,
                                            nLayers: try int(json.numHiddenLayers, "num_hidden_layers"), nHeads: heads,
                                            nKVHeads: try int(json.numKeyValueHeads, "num_key_value_heads", heads),
                                            ffnDim: try int(json.intermediateSize, "intermediate_size"),
                                            maxSeqLen: min(try int(json.maxPositionEmbeddings, "max_position_embeddings", 2048), 1 << 16), ffn: ffn,
                                            subNorm: modelType == "bitnet", normEps: try num(json.rmsNormEps, "rms_norm_eps", 1e-6),
                                            ropeTheta: theta, tieEmbeddings: tied))
        if let q = json.quantizationConfig {
            guard modelType == "bitnet", q.quantMethod == "bitnet" else {
                throw bad("quantization_config", "only quant_method bitnet on model_type bitnet is supported")
            }
            info.linearClass = q.linearClass ?? "bitlinear"
            guard ["bitlinear", "autobitlinear"].contains(info.linearClass) else { throw bad("quantization_config.linear_class", "'\(info.linearClass)' is not bitlinear or autobitlinear") }
            let mode = q.quantizationMode ?? "offline"
            guard mode == "offline" || mode == "online" else { throw bad("quantization_config.quantization_mode", "'\(mode)'") }
            info.online = mode == "online" && info.linearClass == "autobitlinear"
            if q.useRMSNorm == true {
                throw bad("quantization_config.use_rms_norm", "an extra RMSNorm inside every linear is not supported")
            }
        }
        info.bos = json.bosTokenID
        info.eos = json.eosTokenID
        do { try info.config.validate() } catch { throw bad("shapes", "\(error)") }
        return info
    }

    /// `model.safetensors.index.json`: which shard holds each tensor.
    private struct ShardIndex: Decodable {
        var weightMap: [String: String]
        enum CodingKeys: String, CodingKey { case weightMap = "weight_map" }
    }

    /// Opens the safetensors file(s) of a checkpoint: tensor name → file.
    static func openShards(dir: String) throws -> [String: Safetensors.File] {
        let index = dir + "/model.safetensors.index.json"
        guard FileManager.default.fileExists(atPath: index) else {
            let f = try Safetensors.read(path: dir + "/model.safetensors")
            return f.entries.keys.reduce(into: [:]) { $0[$1] = f }
        }
        guard let map = try? JSONDecoder().decode(ShardIndex.self, from: FileIO.read(index)).weightMap else {
            throw BitNetError.invalidFormat(file: index, field: "weight_map", problem: "missing or not an object of strings")
        }
        var files: [String: Safetensors.File] = [:], byName: [String: Safetensors.File] = [:]
        for (name, shard) in map {
            guard !shard.contains("/"), !shard.hasPrefix("."), shard.hasSuffix(".safetensors") else {
                throw BitNetError.invalidFormat(file: index, field: "weight_map.\(name)", problem: "'\(shard)' is not a shard file name in the same folder")
            }
            if files[shard] == nil { files[shard] = try Safetensors.read(path: dir + "/" + shard) }
            guard files[shard]!.entries[name] != nil else {
                throw BitNetError.invalidFormat(file: dir + "/" + shard, field: name, problem: "tensor listed in the index but missing")
            }
            byName[name] = files[shard]
        }
        return byName
    }

    /// Hugging Face's name of one of our tensors.
    static func hfName(_ name: String) -> String {
        let fixed = ["tok_embeddings.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"]
        if let f = fixed[name] { return f }
        let parts = name.split(separator: ".", maxSplits: 2).map(String.init)
        let map = ["attention_norm.weight": "input_layernorm.weight", "attention.wq.weight": "self_attn.q_proj.weight",
                   "attention.wk.weight": "self_attn.k_proj.weight", "attention.wv.weight": "self_attn.v_proj.weight",
                   "attention.wo.weight": "self_attn.o_proj.weight", "attention.sub_norm.weight": "self_attn.attn_sub_norm.weight",
                   "ffn_norm.weight": "post_attention_layernorm.weight", "feed_forward.w1.weight": "mlp.gate_proj.weight",
                   "feed_forward.w3.weight": "mlp.up_proj.weight", "feed_forward.w2.weight": "mlp.down_proj.weight",
                   "feed_forward.sub_norm.weight": "mlp.ffn_sub_norm.weight"]
        return "model.layers.\(parts[1])." + (map[parts[2]] ?? parts[2])
    }

    /// Heads whose rows a tensor's RoPE permutation runs over (nil: not q or k).
    static func rotaryHeads(_ name: String, _ c: ModelConfig) -> Int? {
        name.hasSuffix("attention.wq.weight") ? c.nHeads : name.hasSuffix("attention.wk.weight") ? c.nKVHeads : nil
    }

    /// Loads a checkpoint directory (weights, and tokenizer.json when present); `showProgress`: a line per tensor.
    package static func load(path dir: String, showProgress: Bool = false) throws -> LoadedModel {
        let info = try readConfig(dir: dir)
        let c = info.config
        let files = try openShards(dir: dir)
        // Every tensor must be in the files (whose sizes were checked) before the model is allocated.
        for s in ParameterLayout(config: c).slots {
            let name = hfName(s.name)
            guard let e = files[name]?.entries[name] else {
                throw BitNetError.invalidFormat(file: dir, field: name, problem: "tensor missing (needed for \(s.name))")
            }
            let elements = e.shape.reduce(1, *) * (e.dtype == "U8" ? 4 : 1)
            guard elements == s.count else {
                throw BitNetError.invalidFormat(file: files[name]!.path, field: name, problem: "shape \(e.shape) \(e.dtype) does not hold the \(s.shape) the config needs")
            }
        }
        let w = ModelWeights(config: c)
        let L = w.layout
        var progress = showProgress ? ProgressLine(total: L.slots.count, unit: "tensors") : nil
        for (n, s) in L.slots.enumerated() {
            defer { progress?.update(done: n + 1, extra: "reading \(URL(fileURLWithPath: dir).lastPathComponent)") }
            let name = hfName(s.name)
            guard let f = files[name], let e = f.entries[name] else {
                throw BitNetError.invalidFormat(file: dir, field: name, problem: "tensor missing (needed for \(s.name))")
            }
            func bad(_ p: String) -> BitNetError { .invalidFormat(file: f.path, field: name, problem: p) }
            let dst = w.ptr + s.offset
            let isLinear = s.shape.count == 2 && s.offset != L.embedding && s.offset != L.output
            if isLinear && e.dtype == "U8" {
                guard c.arch.isQuantized, e.shape == [s.shape[0] / 4, s.shape[1]], s.shape[0] % 4 == 0 else {
                    throw bad("packed shape \(e.shape), expected [\(s.shape[0] / 4), \(s.shape[1])] for \(s.shape)")
                }
                var codes = try unpack(f.rawBytes(name), rows: s.shape[0], cols: s.shape[1], bad: bad)
                let beta = try scale(files, name: name, info: info, bad: bad)
                if let h = rotaryHeads(s.name, c) { codes = TernaryWeights.permuteRotary(codes, heads: h, rows: s.shape[0], cols: s.shape[1]) }
                TernaryWeights.latent(codes: codes, scales: [beta], into: dst)
            } else {
                guard e.shape == s.shape else { throw bad("shape \(e.shape), the config needs \(s.shape)") }
                guard ["F32", "F16", "BF16"].contains(e.dtype) else { throw bad("dtype \(e.dtype) is not F32, F16 or BF16") }
                var v = try f.floats(name)
                if let h = rotaryHeads(s.name, c) { v = TernaryWeights.permuteRotary(v, heads: h, rows: s.shape[0], cols: s.shape[1]) }
                if isLinear && c.arch.isQuantized && !info.online && info.linearClass == "autobitlinear" {
                    // Offline AutoBitLinear computes with the stored weight times weight_scale: it must be ternary.
                    guard let (codes, a) = TernaryWeights.detect(v) else { throw bad("offline autobitlinear weight is not ternary") }
                    TernaryWeights.latent(codes: codes, scales: [a * (try scale(files, name: name, info: info, bad: bad))], into: dst)
                } else if isLinear && c.arch.isQuantized {
                    // AutoBitLinear online: codes = RoundClip(W / max(mean|W|, 1e-5)) as transformers computes them
                    // (Eq. 3 adds ε instead of clamping; the few weights at a rounding boundary would flip), stored losslessly.
                    let (codes, beta) = onlineQuantize(v)
                    TernaryWeights.latent(codes: codes, scales: [beta], into: dst)
                } else {
                    v.withUnsafeBufferPointer { dst.update(from: $0.baseAddress!, count: s.count) }
                }
            }
            for i in 0..<s.count where !dst[i].isFinite { throw bad("non-finite value at index \(i)") }
        }
        var tokenizer: (any Tokenizer)? = nil
        let tj = dir + "/tokenizer.json"
        if FileManager.default.fileExists(atPath: tj) {
            var t = try ByteLevelBPE(contentsOf: URL(fileURLWithPath: tj))
            t.setSpecialIDs(bos: info.bos, eos: info.eos)
            guard t.vocabSize <= c.vocabSize else {
                throw BitNetError.invalidFormat(file: tj, field: "vocab", problem: "\(t.vocabSize) tokens exceed the model's \(c.vocabSize)")
            }
            tokenizer = t
        }
        return LoadedModel(weights: w, tokenizer: tokenizer)
    }

    /// transformers' WeightQuant: β = max(mean|W|, 1e-5), codes = clamp(round_half_even(W / β), -1, 1).
    static func onlineQuantize(_ w: [Float]) -> (codes: [Int8], beta: Float) {
        var sum: Double = 0
        for x in w { sum += Double(abs(x)) }
        let beta = max(Float(sum / Double(max(w.count, 1))), 1e-5)
        let inv = 1 / beta
        return (w.map { Int8(max(-1, min(1, ($0 * inv).rounded(.toNearestOrEven)))) }, beta)
    }

    /// Unpacks uint8 [rows/4, cols]: code+1 of row i·rows/4 + r sits in bits 2i..2i+1 of packed row r.
    static func unpack(_ d: Data, rows: Int, cols: Int, bad: (String) -> BitNetError) throws -> [Int8] {
        var codes = [Int8](repeating: 0, count: rows * cols)
        let pr = rows / 4
        try d.withUnsafeBytes { (p: UnsafeRawBufferPointer) in
            for r in 0..<pr {
                for j in 0..<cols {
                    let byte = p[r * cols + j]
                    for i in 0..<4 {
                        let q = (byte >> (2 * UInt8(i))) & 3
                        guard q != 3 else { throw bad("packed value 3 at row \(i * pr + r), column \(j) is not a ternary code") }
                        codes[(i * pr + r) * cols + j] = Int8(q) - 1
                    }
                }
            }
        }
        return codes
    }

    /// β of a packed linear from its `weight_scale`, in the direction its linear class applies it.
    static func scale(_ files: [String: Safetensors.File], name: String, info: Info, bad: (String) -> BitNetError) throws -> Float {
        let sname = name.replacingOccurrences(of: ".weight", with: ".weight_scale")
        guard let f = files[sname] else { throw bad("\(sname) missing") }
        let v = try f.floats(sname)
        guard v.count == 1, v[0].isFinite, v[0] > 0 else { throw bad("\(sname) must be one positive finite number, got \(v.prefix(4))") }
        return info.linearClass == "bitlinear" ? 1 / v[0] : v[0]
    }

    /// Writes a model as a Hugging Face checkpoint directory: config.json, model.safetensors (and tokenizer.json).
    /// Ternary models become model_type `bitnet` (packed: BitLinear layout of 2B4T; master: AutoBitLinear online
    /// with the latent weights); `fp` models without sub-norms become `llama`. `bf16` stores floats as bf16.
    package static func save(_ weights: ModelWeights, tokenizer: (any Tokenizer)?, to dir: URL, storage: LinearStorage = .packed,
                            bf16: Bool = true, chatTemplate: String? = nil) throws {
        let c = weights.config
        try c.validate()
        if c.arch.isQuantized {
            guard c.subNorm, c.quantGroups == 1, c.normGroups == 1, !c.unsignedAfterNonlinearity else {
                throw BitNetError.unsupported("Hugging Face BitNet needs sub-norms, quant_groups 1, norm_groups 1 and signed activations")
            }
        } else if c.subNorm || c.ffn != .swiglu || c.normGroups != 1 {
            throw BitNetError.unsupported("an fp model exports as llama: no sub-norms, SwiGLU, norm_groups 1")
        }
        let floatDType = bf16 ? "BF16" : "F32"
        func encode(_ v: [Float]) -> Data {
            if !bf16 { return v.withUnsafeBytes { Data($0) } }
            var d = Data(count: v.count * 2)
            d.withUnsafeMutableBytes { p in for (i, x) in v.enumerated() { p.storeBytes(of: GGMLQuants.floatToBF16(x).littleEndian, toByteOffset: 2 * i, as: UInt16.self) } }
            return d
        }
        var tensors: [(name: String, shape: [Int], payload: Safetensors.Payload)] = []
        let L = weights.layout
        for s in L.slots {
            let src = weights.ptr + s.offset
            var v = Array(UnsafeBufferPointer(start: src, count: s.count))
            let name = hfName(s.name)
            let isLinear = s.shape.count == 2 && s.offset != L.embedding && s.offset != L.output
            if isLinear && c.arch.isQuantized && storage == .packed {
                var (codes, betas) = TernaryWeights.quantize(src, rows: s.shape[0], cols: s.shape[1], arch: c.arch, groups: 1)
                if let h = rotaryHeads(s.name, c) { codes = TernaryWeights.permuteRotary(codes, heads: h, rows: s.shape[0], cols: s.shape[1], inverse: true) }
                guard s.shape[0] % 4 == 0 else { throw BitNetError.unsupported("\(s.name): \(s.shape[0]) rows do not pack 4 per byte") }
                tensors.append((name, [s.shape[0] / 4, s.shape[1]], .raw("U8", pack(codes, rows: s.shape[0], cols: s.shape[1]))))
                // BitLinear divides by weight_scale: store 1/β (f32 keeps it exact; bf16 as 2B4T does).
                tensors.append((name + "_scale", [1], .raw(floatDType, encode([1 / max(betas[0], 1e-30)]))))
            } else {
                if let h = rotaryHeads(s.name, c) { v = TernaryWeights.permuteRotary(v, heads: h, rows: s.shape[0], cols: s.shape[1], inverse: true) }
                tensors.append((name, s.shape, .raw(floatDType, encode(v))))
            }
        }
        var config = HFConfig()
        config.architectures = [c.arch.isQuantized ? "BitNetForCausalLM" : "LlamaForCausalLM"]
        config.modelType = c.arch.isQuantized ? "bitnet" : "llama"
        config.vocabSize = .int(c.vocabSize); config.hiddenSize = .int(c.dim); config.intermediateSize = .int(c.ffnDim)
        config.numHiddenLayers = .int(c.nLayers); config.numAttentionHeads = .int(c.nHeads); config.numKeyValueHeads = .int(c.nKVHeads)
        config.hiddenAct = c.ffn == .relu2 ? "relu2" : "silu"
        config.maxPositionEmbeddings = .int(c.maxSeqLen); config.rmsNormEps = .float(c.normEps); config.ropeTheta = .float(c.ropeTheta)
        config.ropeParameters = HFConfig.RopeParameters(ropeType: "default", ropeTheta: .float(c.ropeTheta))
        config.tieWordEmbeddings = c.tieEmbeddings; config.torchDtype = bf16 ? "bfloat16" : "float32"
        config.attentionBias = false; config.headDim = .int(c.headDim)
        if c.arch.isQuantized {
            config.quantizationConfig = storage == .packed
                ? HFConfig.QuantizationConfig(quantMethod: "bitnet", linearClass: "bitlinear", quantizationMode: "offline")
                : HFConfig.QuantizationConfig(quantMethod: "bitnet", linearClass: "autobitlinear", quantizationMode: "online")
        }
        config.bosTokenID = tokenizer?.bosID
        config.eosTokenID = tokenizer?.eosID
        try FileIO.createDirectory(dir)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let cj = try encoder.encode(config)
        try FileIO.writeAtomically(cj, to: dir.appendingPathComponent("config.json"))
        try FileIO.writeAtomically(Safetensors.serialize(tensors, metadata: ["format": "pt"]), to: dir.appendingPathComponent("model.safetensors"))
        if let b = tokenizer as? ByteLevelBPE {
            try FileIO.writeAtomically(try b.jsonData(), to: dir.appendingPathComponent("tokenizer.json"))
            var tc: [String: Any] = ["tokenizer_class": "PreTrainedTokenizerFast"]
            if let t = chatTemplate { tc["chat_template"] = t }
            if let id = b.bosID, let s = b.tokenString(id) { tc["bos_token"] = s }
            if let id = b.eosID, let s = b.tokenString(id) { tc["eos_token"] = s }
            try FileIO.writeAtomically(try JSONSerialization.data(withJSONObject: tc, options: [.sortedKeys, .prettyPrinted]),
                                       to: dir.appendingPathComponent("tokenizer_config.json"))
        }
    }

    /// Packs codes [rows, cols] as uint8 [rows/4, cols] (inverse of `unpack`).
    static func pack(_ codes: [Int8], rows: Int, cols: Int) -> Data {
        let pr = rows / 4
        var d = Data(count: pr * cols)
        d.withUnsafeMutableBytes { p in
            for i in 0..<4 { for r in 0..<pr { for j in 0..<cols {
                p[r * cols + j] |= UInt8(codes[(i * pr + r) * cols + j] + 1) << (2 * UInt8(i))
            } } }
        }
        return d
    }
}
