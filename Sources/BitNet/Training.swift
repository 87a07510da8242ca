import Foundation
import BitNetCore
import BitNetTraining

/// Training a model from scratch on text files (Sec. 2.2 of the paper): a byte-level BPE tokenizer trained on the
/// corpus, the last `heldOutFraction` held out, latent f32 weights quantized on the fly with the straight-through
/// estimator, checkpoints that resume exactly. Writes model.safetensors, checkpoint.safetensors, tokenizer.json,
/// log.csv and loss.svg into `output`.
public struct TrainingRun: Sendable {
    public var data: [String]
    public var output: String
    /// The network; its vocabulary becomes the tokenizer's and its context `options.seqLen`.
    public var config: ModelConfig
    public var options: TrainOptions
    public var vocabularySize = 1024
    public var heldOutFraction = 0.1
    /// A tokenizer.json to use instead of training one.
    public var tokenizer: String? = nil
    /// Print progress lines to standard error.
    public var showProgress = true

    /// A run of a size preset (tiny, small, 10m, medium, large) with the variant's default recipe
    /// (`TrainOptions.defaults(for:)`: two-stage schedule for BitNet, cosine for fp).
    public init(data: [String], output: String, architecture: Architecture = .b158, size: String = "small") throws {
        let options = TrainOptions.defaults(for: architecture)
        guard let c = ModelConfig.preset(size, arch: architecture, vocabSize: vocabularySize, maxSeqLen: options.seqLen) else {
            throw BitNetError.invalidArgument("unknown size \(size); choose one of \(ModelConfig.presetNames.joined(separator: ", "))")
        }
        self.data = data; self.output = output; config = c; self.options = options
    }

    /// Trains (resuming from a checkpoint in `output` when `resume`) and returns the log and final held-out loss.
    @discardableResult
    public func run(resume: Bool = true) throws -> TrainResult {
        try TrainingPipeline.train(dataPaths: data, outDir: URL(fileURLWithPath: output), config: config, options: options,
                                   vocabSize: vocabularySize, tokenizerPath: tokenizer, valFraction: heldOutFraction, resume: resume,
                                   verbose: showProgress)
    }
}
