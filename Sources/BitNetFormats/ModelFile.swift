import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetKernels

/// A model with the tokenizer stored beside it (if any).
package struct LoadedModel {
    package let weights: ModelWeights
    package let tokenizer: (any Tokenizer)?
}

/// The project's own model file: safetensors with every parameter as F32 under the names of docs/MODEL.md,
/// and metadata `bitnet.config` (JSON) and `bitnet.tokenizer` (a Hugging Face tokenizer.json).
package enum ModelFile {
    /// The file name inside a checkpoint directory.
    package static let fileName = "model.safetensors"

    /// Serializes weights (+ tokenizer) to bytes.
    package static func serialize(_ weights: ModelWeights, tokenizer: ByteLevelBPE?) throws -> Data {
        var meta = ["format": "bitnet-swift", "bitnet.config": weights.config.jsonString()]
        if let tokenizer { meta["bitnet.tokenizer"] = String(decoding: try tokenizer.jsonData(), as: UTF8.self) }
        let tensors = weights.layout.slots.map { s in
            (name: s.name, shape: s.shape, payload: Safetensors.Payload.f32Pointer(UnsafePointer(weights.ptr + s.offset), s.count))
        }
        return Safetensors.serialize(tensors, metadata: meta)
    }

    /// Writes the model atomically to `url` (a file path).
    package static func save(_ weights: ModelWeights, tokenizer: ByteLevelBPE?, to url: URL) throws {
        try FileIO.writeAtomically(try serialize(weights, tokenizer: tokenizer), to: url)
    }

    /// Resolves a user's --model argument: a checkpoint directory, a .safetensors, .gguf or llama2.c .bin file.
    package static func resolve(_ path: String) throws -> String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw BitNetError.fileNotFound(path) }
        if isDir.boolValue {
            let f = URL(fileURLWithPath: path).appendingPathComponent(fileName).path
            guard FileManager.default.fileExists(atPath: f) else {
                throw BitNetError.fileNotFound("\(f) (the directory \(path) holds no \(fileName))")
            }
            return f
        }
        return path
    }

    /// Loads a model from a checkpoint directory, a safetensors file or a llama2.c checkpoint; `tokenizerPath`
    /// names a separate vocabulary (llama2.c's tokenizer.bin, or a tokenizer.json).
    package static func load(path: String, tokenizerPath: String? = nil, showProgress: Bool = false) throws -> LoadedModel {
        if HFModel.isHFDirectory(path) {
            return try withTokenizer(HFModel.load(path: path, showProgress: showProgress), tokenizerPath)
        }
        let file = try resolve(path)
        if GGUFModel.isGGUF(path: file) { return try withTokenizer(GGUFModel.load(path: file, showProgress: showProgress), tokenizerPath) }
        let weights: ModelWeights
        var tokenizer: (any Tokenizer)?
        if Llama2cModel.looksLikeLlama2c(path: file) {
            weights = try Llama2cModel.load(path: file)
        } else {
            guard Safetensors.hasHeader(path: file) else {
                throw BitNetError.invalidFormat(file: file, field: "format", problem: "not a model: no GGUF magic, no safetensors "
                                                + "header, not a llama2.c checkpoint (.bin), not a Hugging Face folder")
            }
            let st = try Safetensors.read(path: file)
            guard let cfg = st.metadata["bitnet.config"] else {
                throw BitNetError.invalidFormat(file: file, field: "__metadata__", problem: "no bitnet.config: not a bitnet-swift model file")
            }
            let config = try ModelConfig.fromJSON(cfg, source: file)
            // Every tensor must be in the file with the config's shape (the reader checked each against the file's
            // size) before the model is allocated: a config's sizes alone would let a small file claim terabytes.
            for s in ParameterLayout(config: config).slots {
                guard let e = st.entries[s.name] else {
                    throw BitNetError.invalidFormat(file: file, field: s.name, problem: "tensor missing")
                }
                guard e.shape == s.shape else {
                    throw BitNetError.invalidFormat(file: file, field: s.name, problem: "shape \(e.shape), config needs \(s.shape)")
                }
            }
            weights = ModelWeights(config: config)
            for s in weights.layout.slots {
                let values = try st.floats(s.name)
                values.withUnsafeBufferPointer { (weights.ptr + s.offset).update(from: $0.baseAddress!, count: s.count) }
            }
            try weights.checkFinite(file: file)
            if let tj = st.metadata["bitnet.tokenizer"] {
                do { tokenizer = try ByteLevelBPE(jsonData: Data(tj.utf8)) }
                catch { throw BitNetError.invalidFormat(file: file, field: "bitnet.tokenizer", problem: "\(error)") }
            }
        }
        if let tokenizerPath {
            tokenizer = try loadTokenizer(path: tokenizerPath, vocabSize: weights.config.vocabSize)
        }
        if let t = tokenizer, t.vocabSize != weights.config.vocabSize {
            throw BitNetError.shapeMismatch("tokenizer has \(t.vocabSize) tokens, the model's vocabulary is \(weights.config.vocabSize)")
        }
        return LoadedModel(weights: weights, tokenizer: tokenizer)
    }

    /// A loaded model with its tokenizer replaced by the one at `tokenizerPath` (if given), sizes checked.
    static func withTokenizer(_ m: LoadedModel, _ tokenizerPath: String?) throws -> LoadedModel {
        guard let tokenizerPath else { return m }
        return LoadedModel(weights: m.weights, tokenizer: try replacementTokenizer(tokenizerPath, vocabSize: m.weights.config.vocabSize))
    }

    /// The tokenizer at `path` for a model of `vocabSize` tokens (it may use fewer).
    package static func replacementTokenizer(_ path: String, vocabSize: Int) throws -> any Tokenizer {
        let t = try loadTokenizer(path: path, vocabSize: vocabSize)
        guard t.vocabSize <= vocabSize else {
            throw BitNetError.shapeMismatch("tokenizer has \(t.vocabSize) tokens, the model's vocabulary is \(vocabSize)")
        }
        return t
    }

    /// Loads a tokenizer file: a tokenizer.json (byte-level BPE) or a llama2.c tokenizer.bin.
    package static func loadTokenizer(path: String, vocabSize: Int) throws -> any Tokenizer {
        guard FileManager.default.fileExists(atPath: path) else { throw BitNetError.fileNotFound(path) }
        if path.hasSuffix(".json") { return try ByteLevelBPE(contentsOf: URL(fileURLWithPath: path)) }
        return try Llama2cTokenizer(contentsOf: URL(fileURLWithPath: path), vocabSize: vocabSize)
    }
}

extension ModelFile {
    /// The Jinja chat template a model carries (GGUF `tokenizer.chat_template`, or a Hugging Face directory's
    /// tokenizer_config.json), nil when none.
    package static func chatTemplate(path: String) throws -> String? {
        if HFModel.isHFDirectory(path) {
            guard let d = FileManager.default.contents(atPath: path + "/tokenizer_config.json"),
                  let j = try? JSONSerialization.jsonObject(with: d) as? [String: Any] else { return nil }
            return j["chat_template"] as? String
        }
        let file = try resolve(path)
        guard GGUFModel.isGGUF(path: file) else { return nil }
        return try GGUFFile.read(path: file)["tokenizer.chat_template"]?.string
    }
}
