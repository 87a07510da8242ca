import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetKernels

/// A model prepared for inference with the tokenizer stored beside it (if any).
package struct LoadedInferenceModel {
    package let model: InferenceModel
    package let tokenizer: (any Tokenizer)?
}

extension ModelFile {
    /// Loads a model for inference (`bitnet generate`, `chat`, `serve`, `bench inference`): a GGUF file through
    /// `InferenceModel(gguf:)`, which serves I2_S linears and an F16 embedding/head from the file mapping without a
    /// copy; other formats through latent weights and `InferenceModel(weights:)`. `headFormat` nil: f32, or f16 read in
    /// place for a GGUF F16 embedding.
    /// `preferBase3`: see `InferenceModel(gguf:preferBase3:)` (callers that will apply `auto` or `t3` pass true).
    package static func loadInference(path: String, tokenizerPath: String? = nil, headFormat: HeadFormat? = nil,
                                     preferBase3: Bool = false, showProgress: Bool = false) throws -> LoadedInferenceModel {
        if !HFModel.isHFDirectory(path) {
            let file = try resolve(path)
            if GGUFModel.isGGUF(path: file) {
                let f = try GGUFFile.read(path: file)
                let c = try GGUFModel.config(of: f)
                let tok = try tokenizerPath.map { try replacementTokenizer($0, vocabSize: c.vocabSize) } ?? GGUFModel.tokenizer(of: f, config: c)
                return LoadedInferenceModel(model: try InferenceModel(gguf: f, headFormat: headFormat, preferBase3: preferBase3, showProgress: showProgress), tokenizer: tok)
            }
        }
        let loaded = try load(path: path, tokenizerPath: tokenizerPath, showProgress: showProgress)
        let model = InferenceModel(weights: loaded.weights)
        try model.setHeadFormat(headFormat ?? .f32)
        return LoadedInferenceModel(model: model, tokenizer: loaded.tokenizer)
    }
}
