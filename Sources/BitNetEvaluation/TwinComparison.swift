import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference
import BitNetTraining
import BitNetKernels

/// The main job: a BitNet model and its full-precision twin (same shape, tokens, seed), trained and compared.
package struct TwinComparison {
    package struct Row: Sendable {
        package let arch: Architecture
        package let parameters: Int
        package let finalTrainLoss: Double
        package let valLoss: Double
        package let perplexity: Double
        package let bitsPerByte: Double
        package let checkpointBytes: Int
        package let inferenceBytes: Int
        package let tokensPerSecond: Double
        package let seconds: Double
        package let sample: String
    }

    package var archs: [Architecture] = [.b158, .fp]
    package var baseConfig: ModelConfig
    package var options: [Architecture: TrainOptions]
    package var samplePrompt = "ROMEO:"
    package var sampleTokens = 120

    package init(baseConfig: ModelConfig, options: [Architecture: TrainOptions]) {
        self.baseConfig = baseConfig; self.options = options
    }

    /// Trains each variant into `outDir/<arch>`, evaluates on the held-out tokens, writes `loss.svg` and `report.md`.
    package func run(tokenizer: ByteLevelBPE, data: TokenDataset, outDir: URL, resume: Bool = true) throws -> [Row] {
        var rows: [Row] = []
        var logs: [(String, [LogRow])] = []
        // Every variant's folder is checked before any trains: another run's checkpoint stops the comparison at once.
        let trainers = try archs.enumerated().map { i, arch in
            var cfg = baseConfig
            cfg.arch = arch
            if arch == .b1 { cfg.actScopeTrain = .perTensor }
            let trainer = try Trainer(config: cfg, options: options[arch] ?? TrainOptions.defaults(for: arch), tokenizer: tokenizer,
                                      data: data, outDir: outDir.appendingPathComponent(arch.rawValue))
            trainer.label = arch.rawValue
            trainer.progressPrefix = "model \(i + 1) of \(archs.count):"
            trainer.runsAfter = archs.count - 1 - i
            try trainer.checkResumable(resume: resume)
            return trainer
        }
        for trainer in trainers {
            let arch = trainer.config.arch, cfg = trainer.config, opts = trainer.options, dir = trainer.outDir
            printError("== model \(rows.count + 1) of \(trainers.count): training \(arch.rawValue), \(cfg.parameterCount) parameters, "
                       + "\(opts.steps) steps of \(opts.batchSize)x\(opts.seqLen) tokens")
            let result = try trainer.run(resume: resume)
            logs.append((arch.rawValue, result.log))
            let loaded = try ModelFile.load(path: dir.path)
            // Held-out loss over every held-out token (inference-time quantization, per token): the trainer's final
            // evaluation, or one here for a run that stopped before its last step.
            let ev: (loss: Double, count: Int)
            if result.finalValTokens > 0 { ev = (result.finalValLoss, result.finalValTokens) }
            else { ev = evaluateLoss(graph: TrainingGraph(weights: loaded.weights, batch: opts.batchSize, seqLen: opts.seqLen),
                                     tokens: data.val, showProgress: true) }
            let model = InferenceModel(weights: loaded.weights)
            var sample = ""
            var gen = GenerationOptions()
            gen.maxTokens = sampleTokens; gen.temperature = 0.8; gen.topK = 40; gen.topP = 0.95; gen.seed = opts.seed
            try Generator(model: model, tokenizer: tokenizer).generate(prompt: samplePrompt, options: gen) { sample += $0 }
            let ckptBytes = (try? FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent(ModelFile.fileName).path)[.size] as? Int) ?? 0
            let tail = result.log.suffix(max(1, result.log.count / 20))
            rows.append(Row(arch: arch, parameters: cfg.parameterCount,
                            finalTrainLoss: Double(tail.map(\.trainLoss).reduce(0, +)) / Double(tail.count),
                            valLoss: ev.loss, perplexity: exp(ev.loss),
                            bitsPerByte: ev.loss * Double(ev.count) / log(2) / Double(max(data.valBytes, 1)),
                            checkpointBytes: ckptBytes, inferenceBytes: model.inferenceBytes,
                            tokensPerSecond: result.tokensPerSecond, seconds: result.seconds, sample: samplePrompt + sample))
        }
        try FileIO.writeAtomically(Trainer.lossPlot(runs: logs.map { (name: $0.0, log: $0.1) },
                                                     heldOut: Trainer.heldOutCurveLabel(trainers[0].options)),
                                   to: outDir.appendingPathComponent("loss.svg"))
        try FileIO.writeAtomically(Self.report(rows), to: outDir.appendingPathComponent("report.md"))
        return rows
    }

    /// The side-by-side table (Markdown) with a generated sample per variant.
    package static func report(_ rows: [Row]) -> String {
        func mb(_ b: Int) -> String { String(format: "%.2f MB", Double(b) / 1e6) }
        var s = "| | " + rows.map(\.arch.rawValue).joined(separator: " | ") + " |\n"
        s += "|---|" + rows.map { _ in "---:|" }.joined() + "\n"
        let lines: [(String, (Row) -> String)] = [
            ("parameters", { "\($0.parameters)" }),
            ("train loss (last 5 %)", { String(format: "%.4f", $0.finalTrainLoss) }),
            ("held-out loss", { String(format: "%.4f", $0.valLoss) }),
            ("held-out perplexity", { String(format: "%.2f", $0.perplexity) }),
            ("held-out bits/byte", { String(format: "%.4f", $0.bitsPerByte) }),
            ("checkpoint on disk (f32 latent)", { mb($0.checkpointBytes) }),
            ("inference weights (packed)", { mb($0.inferenceBytes) }),
            ("training tokens/s", { String(format: "%.0f", $0.tokensPerSecond) }),
            ("training time", { ProgressLine.format($0.seconds) }),
        ]
        for (name, f) in lines { s += "| \(name) | " + rows.map(f).joined(separator: " | ") + " |\n" }
        if rows.count == 2 {
            s += String(format: "\nheld-out loss ratio %@ / %@: %.3f\n", rows[0].arch.rawValue, rows[1].arch.rawValue, rows[0].valLoss / rows[1].valLoss)
        }
        for r in rows {
            s += "\n### sample from \(r.arch.rawValue)\n\n```\n\(r.sample)\n```\n"
        }
        return s
    }
}
