import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetKernels

/// Corpus files → tokenizer → token dataset, the first half of `bitnet train` and `bitnet compare`.
package enum TrainingPipeline {
    /// Reads the corpus, holds out its last `valFraction`, trains a byte-level BPE of `vocabSize` on the training part
    /// (or loads `tokenizerPath`), and tokenizes both parts.
    package static func prepare(dataPaths: [String], valFraction: Double, vocabSize: Int, tokenizerPath: String? = nil,
                               verbose: Bool = true) throws -> (ByteLevelBPE, TokenDataset) {
        guard valFraction > 0 && valFraction < 1 else { throw BitNetError.invalidArgument("--val-fraction must be in (0, 1)") }
        let text = try TokenDataset.readCorpus(dataPaths)
        let (trainText, valText) = TokenDataset.split(text, valFraction: valFraction)
        guard !trainText.isEmpty, !valText.isEmpty else { throw BitNetError.emptyCorpus("corpus too small to hold out \(valFraction)") }
        let tokenizer: ByteLevelBPE
        if let tokenizerPath {
            guard FileManager.default.fileExists(atPath: tokenizerPath) else { throw BitNetError.fileNotFound(tokenizerPath) }
            tokenizer = try ByteLevelBPE(contentsOf: URL(fileURLWithPath: tokenizerPath))
        } else {
            guard vocabSize >= 258 && vocabSize <= 1 << 20 else { throw BitNetError.invalidArgument("--vocab-size must be in 258...1048576, got \(vocabSize)") }
            let t0 = Clock.now()
            tokenizer = try ByteLevelBPE.train(text: trainText, vocabSize: vocabSize)
            if verbose { printError(String(format: "tokenizer: byte-level BPE, %d tokens, trained in %.1fs", tokenizer.vocabSize, Clock.now() - t0)) }
        }
        let data = TokenDataset.tokenize(train: trainText, val: valText, tokenizer: tokenizer)
        if verbose {
            printError("data: \(data.train.count) training tokens (\(data.trainBytes) bytes), \(data.val.count) held-out tokens (\(data.valBytes) bytes)")
        }
        return (tokenizer, data)
    }
}

/// Perplexity of a model on a text: token-level perplexity and bits per UTF-8 byte.
public struct PerplexityResult: Sendable {
    public let tokens: Int
    public let bytes: Int
    /// Mean negative log-likelihood per token, in nats.
    public let meanNLL: Double
    public var perplexity: Double { exp(meanNLL) }
    public var bitsPerByte: Double { meanNLL * Double(tokens) / log(2) / Double(max(bytes, 1)) }
}

/// Token-level perplexity over `text` with windows of `context` tokens sliding by `stride` (BOS not added).
package func perplexity(weights: ModelWeights, tokenizer: any Tokenizer, text: String, context: Int? = nil, stride: Int? = nil,
                       batch: Int = 8, showProgress: Bool = false) throws -> PerplexityResult {
    let ctx = min(context ?? weights.config.maxSeqLen, weights.config.maxSeqLen)
    guard ctx >= 2 else { throw BitNetError.invalidArgument("context must be >= 2") }
    if let stride, stride < 1 || stride > ctx { throw BitNetError.invalidArgument("stride must be in 1...\(ctx)") }
    let tokens = tokenizer.encode(text).map { Int32($0) }
    guard tokens.count >= 2 else { throw BitNetError.emptyCorpus("the text has \(tokens.count) tokens; need at least 2") }
    let graph = TrainingGraph(weights: weights, batch: batch, seqLen: ctx)
    let r = evaluateLoss(graph: graph, tokens: tokens, stride: stride, showProgress: showProgress)
    return PerplexityResult(tokens: r.count, bytes: text.utf8.count, meanNLL: r.loss)
}

extension TrainingPipeline {
    /// `bitnet train` and `TrainingRun.run`: tokenizer and data from the corpus, then the trainer, writing
    /// model.safetensors, checkpoint.safetensors, tokenizer.json, log.csv and loss.svg into `outDir`. The config's
    /// vocabulary becomes the tokenizer's; its shape is checked before the slow parts.
    package static func train(dataPaths: [String], outDir: URL, config: ModelConfig, options: TrainOptions, vocabSize: Int,
                              tokenizerPath: String? = nil, valFraction: Double = 0.1, resume: Bool = true,
                              verbose: Bool = true) throws -> TrainResult {
        var cfg = config
        cfg.maxSeqLen = options.seqLen
        try cfg.validate()
        _ = try FileIO.isDirectory(outDir)   // a file in the output folder's place stops the run before the slow parts
        let (tok, ds) = try prepare(dataPaths: dataPaths, valFraction: valFraction, vocabSize: vocabSize, tokenizerPath: tokenizerPath,
                                    verbose: verbose)
        cfg.vocabSize = tok.vocabSize
        try cfg.validate()
        let trainer = try Trainer(config: cfg, options: options, tokenizer: tok, data: ds, outDir: outDir)
        trainer.label = cfg.arch.rawValue
        trainer.showProgress = verbose
        // Refuse another run's checkpoint before anything in outDir changes (its tokenizer.json included).
        try trainer.checkResumable(resume: resume)
        try FileIO.createDirectory(outDir)
        try tok.save(to: outDir.appendingPathComponent("tokenizer.json"))
        if verbose {
            printError("model: \(cfg.arch.rawValue), \(cfg.parameterCount) parameters (dim \(cfg.dim), \(cfg.nLayers) layers, "
                       + "\(cfg.nHeads) heads, ffn \(cfg.ffnDim) \(cfg.ffn.rawValue))")
        }
        return try trainer.run(resume: resume)
    }
}
