import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetTraining

/// Token-level perplexity and bits per byte of the model at `path` (any supported format) on `text`, in windows of
/// `context` tokens (default: the model's) sliding by `stride` (default: the window), as `bitnet eval perplexity`.
public func perplexity(ofModelAt path: String, tokenizer tokenizerPath: String? = nil, on text: String, context: Int? = nil,
                       stride: Int? = nil) throws -> PerplexityResult {
    let loaded = try ModelFile.load(path: path, tokenizerPath: tokenizerPath)
    guard let tok = loaded.tokenizer else { throw BitNetError.invalidArgument("\(path) has no tokenizer; pass a tokenizer file") }
    return try perplexity(weights: loaded.weights, tokenizer: tok, text: text, context: context, stride: stride)
}

/// The formats `convertModel` writes.
public enum ModelExportFormat: Sendable {
    /// The project's checkpoint (safetensors + config + tokenizer), a folder or a `.safetensors` file.
    case bitnet
    /// GGUF for llama.cpp (`tq2_0`, `tq1_0`) or bitnet.cpp (`i2_s`); also f16, bf16, f32, q8_0, q6_k, q4_0 linears.
    /// `embedding` is the type of the token embedding and head.
    case gguf(weights: String = "tq2_0", embedding: String = "f16")
    /// A Hugging Face folder for transformers' BitNetForCausalLM: packed ternary linears (2B4T's layout) or bf16
    /// master weights.
    case huggingFace(packedLinears: Bool = true, bf16: Bool = true)
}

/// Converts the model at `path` (any supported format) to `format` at `output`.
public func convertModel(at path: String, to format: ModelExportFormat, output: String, tokenizer: String? = nil) throws {
    let target: ModelConversion.Target
    switch format {
    case .bitnet: target = .bitnet
    case .gguf(let weights, let embedding): target = .gguf(try GGUFModel.ExportOptions(type: weights, embeddingType: embedding))
    case .huggingFace(let packed, let bf16): target = .huggingFace(packed ? .packed : .master, bf16: bf16)
    }
    try ModelConversion.convert(from: path, tokenizerPath: tokenizer, to: target, out: output)
}
