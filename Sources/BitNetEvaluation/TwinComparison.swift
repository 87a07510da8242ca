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
    /// Where this comparison sits in a larger run (`compare --seeds`): models trained before it, and in all, so the
    /// progress says "model 3 of 6" and its ETA counts every model still to train.
    package var modelsBefore = 0
    package var modelsInAll: Int?

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
            let all = modelsInAll ?? archs.count
            trainer.progressPrefix = "model \(modelsBefore + i + 1) of \(all):"
            trainer.runsAfter = all - 1 - (modelsBefore + i)
            try trainer.checkResumable(resume: resume)
            return trainer
        }
        for trainer in trainers {
            let arch = trainer.config.arch, cfg = trainer.config, opts = trainer.options, dir = trainer.outDir
            printError("== model \(modelsBefore + rows.count + 1) of \(modelsInAll ?? trainers.count): training \(arch.rawValue), \(cfg.parameterCount) parameters, "
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

    /// The gap one comparison's verdict rests on: within this many nats of held-out loss, "matches".
    package static let matchMargin = 0.05

    /// Two-sided 95 % quantile of Student's t with `df` degrees of freedom (df ≥ 1; the normal's beyond 30).
    package static func t95(df: Int) -> Double {
        let table: [Double] = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
                               2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
                               2.045, 2.042]
        return df >= 1 && df <= table.count ? table[df - 1] : 1.96
    }

    /// Mean and sample standard deviation (0 for one value).
    package static func meanAndSD(_ xs: [Double]) -> (mean: Double, sd: Double) {
        let m = xs.reduce(0, +) / Double(max(xs.count, 1))
        guard xs.count > 1 else { return (m, 0) }
        return (m, (xs.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(xs.count - 1)).squareRoot())
    }

    /// The comparison over seeds (one `[Row]` per seed, the same variants in the same order): held-out loss mean ±
    /// standard deviation per variant, and the first variant's gap to the last (paired by seed) with its 95 % t
    /// interval and the verdict of a rule fixed here: "matches" when the whole interval lies within ±`matchMargin`
    /// nats; "ahead" or "behind" when it lies wholly beyond the margin; otherwise "undecided".
    package static func seedSummary(_ perSeed: [[Row]], seeds: [UInt64]) -> String {
        guard let first = perSeed.first, !first.isEmpty else { return "" }
        var s = "## Over \(perSeed.count) seeds (\(seeds.map(String.init).joined(separator: ", ")))\n\n"
        s += "| | " + first.map(\.arch.rawValue).joined(separator: " | ") + " |\n|---|" + first.map { _ in "---:|" }.joined() + "\n"
        s += "| held-out loss, mean ± sd | " + first.indices.map { k in
            let (m, sd) = meanAndSD(perSeed.map { $0[k].valLoss })
            return String(format: "%.4f ± %.4f", m, sd)
        }.joined(separator: " | ") + " |\n"
        s += "| held-out loss per seed | " + first.indices.map { k in perSeed.map { String(format: "%.4f", $0[k].valLoss) }.joined(separator: ", ") }
            .joined(separator: " | ") + " |\n"
        guard first.count >= 2, perSeed.count >= 2 else {
            return s + "\nOne seed: no interval for the gap; pass --seeds 3 or more for a verdict.\n"
        }
        let a = first[0].arch.rawValue, b = first[first.count - 1].arch.rawValue
        let gaps = perSeed.map { $0[0].valLoss - $0[$0.count - 1].valLoss }
        let (m, sd) = meanAndSD(gaps)
        let half = t95(df: gaps.count - 1) * sd / Double(gaps.count).squareRoot()
        let (lo, hi) = (m - half, m + half)
        let verdict = lo >= -matchMargin && hi <= matchMargin ? "matches"
            : hi < -matchMargin ? "\(a) ahead" : lo > matchMargin ? "\(a) behind" : "undecided"
        s += String(format: "\ngap %@ − %@: %+.4f nats, 95 %% interval [%+.4f, %+.4f] (t, %d seeds, paired): **%@**\n", a, b, m, lo, hi,
                    gaps.count, verdict)
        s += String(format: "\nRule, fixed before the runs: \"matches\" when the whole interval lies within ±%.2f nats; \"ahead\"/\"behind\" "
                    + "when it lies wholly beyond; otherwise \"undecided\". The paper expects b1.58 behind fp below ~3B parameters.\n",
                    matchMargin)
        return s
    }
}
