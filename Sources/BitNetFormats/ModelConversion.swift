import Foundation
import BitNetCore
import BitNetTokenizers

/// `bitnet convert` and `convertModel`: reads any supported model and writes it as the project's checkpoint, GGUF or
/// Hugging Face safetensors.
package enum ModelConversion {
    package enum Target: Sendable {
        case bitnet
        case gguf(GGUFModel.ExportOptions)
        case huggingFace(HFModel.LinearStorage, bf16: Bool)
    }

    /// Converts `source` (format detected; `tokenizerPath` attaches a tokenizer when it has none) to `target` at `out`.
    /// `log` receives what was read.
    package static func convert(from source: String, tokenizerPath: String? = nil, to target: Target, out: String,
                                showProgress: Bool = false, log: (String) -> Void = { _ in }) throws {
        let loaded = try ModelFile.load(path: source, tokenizerPath: tokenizerPath, showProgress: showProgress)
        let c = loaded.weights.config
        log("read \(source): \(c.arch.rawValue), \(c.nLayers) layers, dim \(c.dim), vocab \(c.vocabSize), ffn \(c.ffn.rawValue)"
            + (loaded.tokenizer == nil ? ", no tokenizer" : ""))
        let url = URL(fileURLWithPath: out)
        let chatTemplate = try ModelFile.chatTemplate(path: source)
        switch target {
        case .gguf(var o):
            o.chatTemplate = chatTemplate
            try GGUFModel.save(loaded.weights, tokenizer: loaded.tokenizer, to: url, options: o, showProgress: showProgress)
        case .huggingFace(let storage, let bf16):
            try HFModel.save(loaded.weights, tokenizer: loaded.tokenizer, to: url, storage: storage, bf16: bf16, chatTemplate: chatTemplate)
        case .bitnet:
            var dest = url
            if !out.hasSuffix(".safetensors") {
                try FileIO.createDirectory(url)
                dest = url.appendingPathComponent(ModelFile.fileName)
            }
            guard loaded.tokenizer == nil || loaded.tokenizer is ByteLevelBPE else {
                throw BitNetError.unsupported("the bitnet checkpoint stores byte-level BPE tokenizers only; convert to gguf to keep this one")
            }
            try ModelFile.save(loaded.weights, tokenizer: loaded.tokenizer as? ByteLevelBPE, to: dest)
        }
    }
}
