import ArgumentParser
import BitNet
import Foundation
import BitNetTools
import BitNetKernels

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a BitNet b1.58, b1 or fp model from scratch on text files.")

    @Option(name: .long, parsing: .upToNextOption, help: "Training text file(s), UTF-8.") var data: [String] = []
    @Option(help: "bitnet-b1.58, bitnet-b1 or fp.") var arch: String = "bitnet-b1.58"
    @Option(help: "Output directory (model.safetensors, checkpoint, log.csv, loss.svg).") var out: String
    @Option(name: .customLong("vocab-size"), help: "Byte-level BPE vocabulary size to train.") var vocabSize: Int = 1024
    @Option(help: "Reuse this tokenizer.json instead of training one.") var tokenizer: String?
    @Option(name: .customLong("val-fraction"), help: "Fraction of the text held out (from the end).") var valFraction: Double = 0.1
    @Flag(name: .customLong("no-resume"), help: "Start from scratch even if --out holds a checkpoint.") var noResume = false
    @OptionGroup var shape: ModelShapeOptions
    @OptionGroup var optim: OptimOptions

    func run() throws {
        try runReportingErrors {
            let a = try parseArch(arch)
            let opts = try optim.options(arch: a)
            let cfg = try shape.config(arch: a, vocabSize: 1024, context: opts.seqLen)   // the tokenizer sets the vocabulary
            let outURL = URL(fileURLWithPath: out)
            let r = try TrainingPipeline.train(dataPaths: data, outDir: outURL, config: cfg, options: opts, vocabSize: vocabSize,
                                               tokenizerPath: tokenizer, valFraction: valFraction, resume: !noResume)
            printError(String(format: "done: held-out loss %.4f (perplexity %.2f), %.0f tokens/s, %@", r.finalValLoss, exp(r.finalValLoss),
                              r.tokensPerSecond, ProgressLine.format(r.seconds)))
            printError(r.trainedSteps == 0 ? "nothing to train; \(outURL.path) is left as it was"
                       : "wrote \(outURL.path)/{model.safetensors,checkpoint.safetensors,tokenizer.json,log.csv,loss.svg}")
        }
    }
}

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The main job: train a BitNet model and its fp twin (same shape, tokens, seed), compare them on held-out text.")

    @Option(name: .long, parsing: .upToNextOption, help: "Training text file(s), UTF-8.") var data: [String] = []
    @Option(help: "Output directory.") var out: String = "runs/compare"
    @Option(help: "Comma-separated variants to train.") var archs: String = "bitnet-b1.58,fp"
    @Option(name: .customLong("vocab-size"), help: "Byte-level BPE vocabulary size (the demo's).") var vocabSize: Int = 2048
    @Option(name: .customLong("val-fraction"), help: "Fraction of the text held out (from the end).") var valFraction: Double = 0.1
    @Option(help: "Prompt of the generated samples (the demo's).") var prompt: String = "ROMEO."
    @Flag(name: .customLong("no-resume"), help: "Start from scratch even if --out holds checkpoints.") var noResume = false
    @Option(help: "Train every variant with this many seeds (--seed, --seed + 1, ...) into DIR/seed-S/ and report mean ± sd and the gap's 95 % interval.")
    var seeds: Int = 1
    @OptionGroup var shape: ModelShapeOptions
    @OptionGroup var optim: OptimOptions

    func run() throws {
        try runReportingErrors {
            guard (1...50).contains(seeds) else { throw BitNetError.invalidArgument("--seeds must be in 1...50, got \(seeds)") }
            let archList = try archs.split(separator: ",").map { try parseArch(String($0)) }
            let (tok, ds) = try TrainingPipeline.prepare(dataPaths: data, valFraction: valFraction, vocabSize: vocabSize)
            let base = try shape.config(arch: .b158, vocabSize: tok.vocabSize, context: optim.context)
            let outURL = URL(fileURLWithPath: out)
            let seedList = (0..<seeds).map { optim.seed &+ UInt64($0) }
            var perSeed: [[TwinComparison.Row]] = []
            for (k, seed) in seedList.enumerated() {
                var opts: [Architecture: TrainOptions] = [:]
                for a in archList { opts[a] = try optim.options(arch: a); opts[a]!.seed = seed }
                var cmp = TwinComparison(baseConfig: base, options: opts)
                cmp.archs = archList
                cmp.samplePrompt = prompt
                cmp.modelsBefore = k * archList.count; cmp.modelsInAll = seeds * archList.count
                if seeds > 1 { printError("== seed \(seed) (\(k + 1) of \(seeds))") }
                let dir = seeds > 1 ? outURL.appendingPathComponent("seed-\(seed)") : outURL
                perSeed.append(try cmp.run(tokenizer: tok, data: ds, outDir: dir, resume: !noResume))
            }
            if seeds == 1 {
                print(TwinComparison.report(perSeed[0]))
            } else {
                let summary = TwinComparison.seedSummary(perSeed, seeds: seedList)
                try FileIO.writeAtomically(summary, to: outURL.appendingPathComponent("report.md"))
                print(summary)
            }
            print("loss curves: \(seeds > 1 ? outURL.path + "/seed-*/loss.svg" : outURL.appendingPathComponent("loss.svg").path)")
            print("report:      \(outURL.appendingPathComponent("report.md").path)")
        }
    }
}
