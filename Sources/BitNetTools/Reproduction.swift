import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference
import BitNetTraining
import BitNetEvaluation
import BitNetServer
import BitNetKernels

/// One training run of the scaling series or the ablation.
package struct TrainedRun: Codable, Sendable {
    package var size: String
    package var arch: Architecture
    package var schedule: Schedule
    package var parameters: Int
    /// Parameters in the transformer blocks (BitLinear weights and norms), without the embedding/head.
    package var nonEmbeddingParameters: Int
    /// Held-out loss over every held-out token at the end of training (nats/token).
    package var valLoss: Double
    /// Inference energy per token at 7 nm of the BitLinear products (Eqs. 10-12): FP16 for fp, INT8-add for BitNet.
    package var energyPerToken: Double
    package var seconds: Double
    package var tokensPerSecond: Double
    package var log: [LogRow]
}

/// Measured numbers of one evaluated model (a row of Tables 3-6).
package struct ModelEvaluation: Codable, Sendable {
    package var name: String
    package var parameters: Int
    /// Mean held-out loss over the plan's held-out tokens (same tokens for every model).
    package var heldOutLoss: Double
    package var heldOutTokens: Int
    package var wikiText: WordPerplexityResult?
    package var zeroShot: [TaskScore]
    package var inferenceBytes: Int?
    package var decodeMsPerToken: Double?

    /// Mean of the headline accuracies (acc_norm where reported) over the multiple-choice tasks present.
    package var zeroShotAverage: Double? {
        let mc = zeroShot.filter { $0.task != .lambada }
        return mc.isEmpty ? nil : mc.map(\.headline).reduce(0, +) / Double(mc.count)
    }
    /// Standard error of that mean (tasks independent).
    package var zeroShotAverageStderr: Double? {
        let mc = zeroShot.filter { $0.task != .lambada }
        return mc.isEmpty ? nil : (mc.map { $0.headlineStderr * $0.headlineStderr }.reduce(0, +)).squareRoot() / Double(mc.count)
    }
}

/// `bitnet reproduce`: trains the scaling series, evaluates, and writes `report.md` with the analogs of Tables 2-6,
/// Fig. 2 (right) and Fig. 4, each beside the paper's numbers, and a verdict per claim. Every stage stores its result
/// under `DIR/results/` and every training run checkpoints, so an interrupted run resumes where it stopped.
package final class Reproduction {
    package let outDir: URL
    package let dataDir: String
    package let zeroShotDir: String
    package private(set) var plan: ReproducePlan

    var tokenizer: ByteLevelBPE!
    var data: TokenDataset!
    var wikiText = ""
    var zeroShotItems: [ZeroShotTask: [ZeroShotItem]] = [:]
    var heldOut: [Int32] = []

    /// Loads `DIR/plan.json` when it exists (resume), else derives a plan for the budget with a speed probe.
    package init(outDir: URL, budgetMinutes: Double, dataDir: String, zeroShotDir: String, seed: UInt64 = 1234) throws {
        self.outDir = outDir; self.dataDir = dataDir; self.zeroShotDir = zeroShotDir
        guard budgetMinutes >= 5 else { throw BitNetError.invalidArgument("--budget must be at least 5 minutes, got \(budgetMinutes)") }
        let planURL = outDir.appendingPathComponent("plan.json")
        if FileManager.default.fileExists(atPath: planURL.path) {
            let p = try JSONDecoder().decode(ReproducePlan.self, from: FileIO.read(planURL.path))
            if p.budgetMinutes != budgetMinutes {
                throw BitNetError.invalidArgument("\(outDir.path) holds a run planned for \(Int(p.budgetMinutes)) minutes; resume it with the same --budget/--quick or use another --out")
            }
            plan = p
            printError("resuming the plan in \(planURL.path)")
        } else {
            printError("probing this machine's training speed to predict the time (the plan is fixed by the budget)...")
            plan = ReproducePlan.make(budgetMinutes: budgetMinutes, dataDir: dataDir, seed: seed) { c, b, t in
                probeTrainingStep(config: c, batch: b, context: t, seed: seed)
            }
            if let m = plan.probedTrainingMinutes {
                let note = m > budgetMinutes * 0.7 ? " (more than the budget planned for: the machine is busy or slower; the work stays the same)" : ""
                printError(String(format: "training %d steps per model should take about %.0f minutes here%@", plan.steps, m, note))
            }
            let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try FileIO.writeAtomically(try enc.encode(plan), to: planURL)
        }
    }

    /// Runs (or resumes) every stage and writes the report; returns its path.
    @discardableResult
    package func run() throws -> URL {
        let t0 = Clock.now()
        try prepareData()
        printError("plan: \(plan.sizes.map(\.name).joined(separator: ", ")) × b1.58/b1/fp, \(plan.steps) steps of \(plan.batch)x\(plan.context) tokens"
                   + ", \(plan.zeroShotLimit) docs per zero-shot task, budget \(Int(plan.budgetMinutes)) min")
        // Scaling series (Fig. 4) — also the models of Tables 3-5.
        var runs: [TrainedRun] = []
        for size in plan.sizes {
            for arch in [Architecture.b158, .b1, .fp] { runs.append(try train(size, arch)) }
        }
        // Schedule ablation (Fig. 2 right): the same b1.58 model with the one-stage (cosine, constant WD) recipe.
        let ablation = try train(plan.sizes[plan.ablationSize], .b158, schedule: .cosine)
        // Evaluations.
        var evals: [String: ModelEvaluation] = [:]
        for size in plan.sizes {
            for arch in [Architecture.b158, .fp] {
                evals["\(size.name) \(arch.rawValue)"] = try evaluateTrained(size, arch, latency: true)
            }
        }
        let largest = plan.sizes.last!
        evals["\(largest.name) \(Architecture.b1.rawValue)"] = try evaluateTrained(largest, .b1, latency: false)
        let fpWeights = try loadWeights(largest, .fp)
        var ptq: [(PTQMethod, ModelEvaluation)] = []
        for m in PTQMethod.allCases {
            let e = try cached("eval-ptq-\(m.rawValue)") {
                try evaluate(name: "\(largest.name) fp + PTQ \(m.label)", weights: try m.apply(to: fpWeights),
                             activationBits: m.activationBits, latency: false)
            }
            ptq.append((m, e))
        }
        // Table 6: the largest b1.58 model through the inference path with each KV-cache format.
        let b158 = InferenceModel(weights: try loadWeights(largest, .b158))
        var kv: [ModelEvaluation] = []
        for format in [KVCacheFormat.f32, .f16, .q8, .q4] {
            kv.append(try cached("eval-kv-\(format.rawValue)") { try evaluateKVCache(b158, format: format, name: "\(largest.name) b1.58 KV \(format.rawValue)") })
        }
        // Wall time summed over every session of this folder (a resumed run adds to it).
        let wallURL = outDir.appendingPathComponent("results").appendingPathComponent("wall-seconds.json")
        let before = (try? JSONDecoder().decode(Double.self, from: FileIO.read(wallURL.path))) ?? 0
        let total = before + Clock.now() - t0
        try FileIO.writeAtomically(Data("\(total)".utf8), to: wallURL)
        let report = ReproductionReport(plan: plan, runs: runs, ablation: ablation, evals: evals, ptq: ptq, kv: kv,
                                        zeroShotTasks: ZeroShotTask.allCases.filter { zeroShotItems[$0] != nil },
                                        zeroShotDir: zeroShotDir, seconds: total)
        try report.write(to: outDir)
        return outDir.appendingPathComponent("report.md")
    }

    // MARK: stages

    func prepareData() throws {
        let tokURL = outDir.appendingPathComponent("tokenizer.json")
        let tokPath: String? = FileManager.default.fileExists(atPath: tokURL.path) ? tokURL.path : nil
        let (tok, ds) = try TrainingPipeline.prepare(dataPaths: plan.corpus, valFraction: plan.valFraction, vocabSize: plan.vocabSize,
                                                    tokenizerPath: tokPath)
        if tokPath == nil { try tok.save(to: tokURL) }
        tokenizer = tok; data = ds
        heldOut = Array(ds.val.prefix(plan.heldOutTokens + 1))
        let wikiPath = dataDir + "/wikitext-2/valid.txt"
        wikiText = FileManager.default.fileExists(atPath: wikiPath) ? try FileIO.readText(wikiPath) : ""
        if wikiText.isEmpty { printError("note: \(wikiPath) not found; WikiText-2 perplexity is skipped") }
        let present = ZeroShotData.available(directory: zeroShotDir)
        if present.isEmpty {
            printError("note: no zero-shot data in \(zeroShotDir); the zero-shot columns are skipped. Fetch it with: \(ZeroShotData.fetchCommand)")
        }
        for task in present {
            zeroShotItems[task] = try ZeroShotData.load(task, directory: zeroShotDir, limit: plan.zeroShotLimit)
        }
    }

    func runDir(_ size: ReproducePlan.Size, _ arch: Architecture, _ schedule: Schedule?) -> URL {
        outDir.appendingPathComponent("runs").appendingPathComponent("\(size.name)-\(arch.rawValue)" + (schedule.map { "-\($0.rawValue)" } ?? ""))
    }

    /// Trains (or resumes, or reads the stored result of) one model of the series.
    func train(_ size: ReproducePlan.Size, _ arch: Architecture, schedule: Schedule? = nil) throws -> TrainedRun {
        let key = "train-\(size.name)-\(arch.rawValue)" + (schedule.map { "-\($0.rawValue)" } ?? "")
        return try cached(key) {
            let cfg = plan.config(size, arch: arch, vocabSize: tokenizer.vocabSize)
            let opts = plan.trainOptions(arch: arch, schedule: schedule)
            let trainer = try Trainer(config: cfg, options: opts, tokenizer: tokenizer, data: data, outDir: runDir(size, arch, schedule))
            trainer.label = "\(size.name) \(arch.rawValue)" + (schedule.map { " \($0.rawValue)" } ?? "")
            printError("== training \(trainer.label): \(cfg.parameterCount) parameters, \(opts.steps) steps of \(opts.batchSize)x\(opts.seqLen) tokens")
            let r = try trainer.run(resume: true)
            let energy = EnergyModel.estimate(config: cfg, tokens: plan.context, node: .nm7)
            let embedding = cfg.vocabSize * cfg.dim * (cfg.tieEmbeddings ? 1 : 2)
            return TrainedRun(size: size.name, arch: arch, schedule: opts.schedule, parameters: cfg.parameterCount,
                              nonEmbeddingParameters: cfg.parameterCount - embedding, valLoss: r.finalValLoss,
                              energyPerToken: (arch == .fp ? energy.fp16PerToken : energy.bitnetPerToken).total,
                              seconds: r.seconds, tokensPerSecond: r.tokensPerSecond, log: r.log)
        }
    }

    func loadWeights(_ size: ReproducePlan.Size, _ arch: Architecture) throws -> ModelWeights {
        try ModelFile.load(path: runDir(size, arch, nil).path).weights
    }

    func evaluateTrained(_ size: ReproducePlan.Size, _ arch: Architecture, latency: Bool) throws -> ModelEvaluation {
        try cached("eval-\(size.name)-\(arch.rawValue)") {
            try evaluate(name: "\(size.name) \(arch.rawValue)", weights: try loadWeights(size, arch), activationBits: nil, latency: latency)
        }
    }

    /// Held-out loss, WikiText-2 perplexity, zero-shot scores and (optionally) inference memory and decode latency.
    func evaluate(name: String, weights: ModelWeights, activationBits: Int?, latency: Bool) throws -> ModelEvaluation {
        printError("== evaluating \(name)")
        let graph = TrainingGraph(weights: weights, batch: 8, seqLen: plan.context, activationBits: activationBits)
        let ho = evaluateLoss(graph: graph, tokens: heldOut)
        var e = ModelEvaluation(name: name, parameters: weights.config.parameterCount, heldOutLoss: ho.loss, heldOutTokens: ho.count,
                                wikiText: nil, zeroShot: [], inferenceBytes: nil, decodeMsPerToken: nil)
        if !wikiText.isEmpty {
            e.wikiText = try wordPerplexity(weights: weights, tokenizer: tokenizer, text: wikiText, wikitext: true, context: plan.context,
                                            stride: plan.context / 2, activationBits: activationBits, maxTokens: plan.wikiTextTokens)
        }
        var ev = ZeroShotEvaluator(tokenizer: tokenizer, scorer: GraphScorer(weights: weights, batch: 16, activationBits: activationBits))
        ev.showProgress = true
        for task in ZeroShotTask.allCases {
            guard let items = zeroShotItems[task] else { continue }
            e.zeroShot.append(try ev.evaluate(task, items: items))
        }
        if latency {
            let model = InferenceModel(weights: weights)
            e.inferenceBytes = model.inferenceBytes
            e.decodeMsPerToken = try decodeLatency(model, tokens: Array(heldOut.prefix(min(64, plan.context)).map { Int($0) }))
        }
        return e
    }

    /// Held-out loss and zero-shot scores through the inference session with a KV-cache format (Table 6).
    func evaluateKVCache(_ model: InferenceModel, format: KVCacheFormat, name: String) throws -> ModelEvaluation {
        printError("== evaluating \(name)")
        let scorer = try SessionScorer(model: model, kvCache: format, maxContext: plan.context)
        let ho = try scorer.heldOutLoss(heldOut)
        var e = ModelEvaluation(name: name, parameters: model.config.parameterCount, heldOutLoss: ho.loss, heldOutTokens: ho.count,
                                wikiText: nil, zeroShot: [], inferenceBytes: nil, decodeMsPerToken: nil)
        var ev = ZeroShotEvaluator(tokenizer: tokenizer, scorer: scorer)
        ev.showProgress = true
        for task in ZeroShotTask.allCases {
            guard let items = zeroShotItems[task] else { continue }
            e.zeroShot.append(try ev.evaluate(task, items: items))
        }
        return e
    }

    /// Milliseconds per decoded token (one token at a time through the KV cache), median of 3 passes.
    func decodeLatency(_ model: InferenceModel, tokens: [Int]) throws -> Double {
        var times: [Double] = []
        for _ in 0..<3 {
            let s = InferenceSession(model: model, maxSeqLen: tokens.count)
            let t0 = Clock.now()
            for t in tokens { _ = try s.step(token: t) }
            times.append((Clock.now() - t0) * 1000 / Double(tokens.count))
        }
        return times.sorted()[1]
    }

    /// Returns the stored result of a stage, or runs it and stores the result (atomically).
    func cached<T: Codable>(_ name: String, _ body: () throws -> T) throws -> T {
        let url = outDir.appendingPathComponent("results").appendingPathComponent(name + ".json")
        if FileManager.default.fileExists(atPath: url.path) {
            let dec = JSONDecoder()
            dec.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            if let v = try? dec.decode(T.self, from: FileIO.read(url.path)) { return v }
            printError("note: \(url.path) is unreadable; redoing that stage")
        }
        let v = try body()
        let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        try FileIO.writeAtomically(try enc.encode(v), to: url)
        return v
    }
}
