import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetKernels

/// Everything that decides a training run besides the model shape; stored in checkpoints.
public struct TrainOptions: Codable, Sendable, Equatable {
    public var batchSize = 16
    public var seqLen = 128
    public var steps = 1000
    /// Peak learning rate (stage 1 for the two-stage schedule).
    public var lr: Float = 3e-3
    /// Stage-2 starting learning rate (two-stage schedule only).
    public var lr2: Float = 2e-3
    public var warmupSteps = 100
    public var weightDecay: Float = 0.1
    public var schedule: Schedule = .twoStage
    public var gradClip: Float = 1.0
    public var seed: UInt64 = 1234
    /// Evaluate on held-out text every N steps (0: only at the end).
    public var evalEvery = 100
    /// Held-out windows of every point of the held-out curve: the first N windows of `seqLen` tokens, the same at
    /// every point (the final held-out loss, reported apart, uses the whole held-out text).
    public var evalWindows = 32
    /// Write a checkpoint every N steps (0: only at the end).
    public var checkpointEvery = 200
    /// Stop after this step even if `steps` is larger (to simulate an interruption; nil runs to the end).
    public var stopAfter: Int? = nil

    public init() {}

    /// Defaults per variant: BitNet gets the paper's higher LR and two-stage recipe, fp the usual cosine schedule.
    public static func defaults(for arch: Architecture) -> TrainOptions {
        var o = TrainOptions()
        if arch == .fp { o.lr = 1e-3; o.lr2 = 1e-3; o.schedule = .cosine }
        return o
    }
}

/// One row of the training log.
public struct LogRow: Codable, Sendable, Equatable {
    public var step: Int
    public var tokens: Int
    public var lr: Float
    public var wd: Float
    public var trainLoss: Float
    public var valLoss: Float?
    public var gradNorm: Float
    public var tokensPerSecond: Double

    static let csvHeader = "step,tokens,lr,weight_decay,train_loss,val_loss,grad_norm,tokens_per_s"
    var csv: String {
        "\(step),\(tokens),\(lr),\(wd),\(trainLoss),\(valLoss.map { "\($0)" } ?? ""),\(gradNorm),\(String(format: "%.1f", tokensPerSecond))"
    }
}

/// What a finished run reports.
public struct TrainResult: Sendable {
    public let config: ModelConfig
    public let log: [LogRow]
    /// Held-out loss over the whole held-out text once the run is finished (before that, the curve's last point).
    public let finalValLoss: Double
    /// Held-out tokens `finalValLoss` averages over.
    public let finalValTokens: Int
    public let tokensPerSecond: Double
    /// Training time over every session of the run (evaluations and checkpoints included).
    public let seconds: Double
    /// Steps this call trained: 0 when the folder already held the finished run (its files left as they were).
    public let trainedSteps: Int
}

/// Trains a model from scratch (Sec. 2.2) with checkpoints that resume exactly where they stopped.
/// Output folder: model.safetensors (weights + config + tokenizer), checkpoint.safetensors (+ optimizer state),
/// log.csv, loss.svg.
package final class Trainer {
    package let config: ModelConfig
    package let options: TrainOptions
    package let tokenizer: ByteLevelBPE?
    package let data: TokenDataset
    package let outDir: URL
    /// Print the progress line on standard error.
    package var showProgress = true
    /// Name shown on the progress line.
    package var label = ""
    /// Runs of about this one's cost that follow it in the same command (`compare`): the progress line then also
    /// shows the time left for all of them.
    package var runsAfter = 0
    /// Shown first in the progress line's text (`compare`: "model 1 of 2:").
    package var progressPrefix = ""

    package init(config: ModelConfig, options: TrainOptions, tokenizer: ByteLevelBPE?, data: TokenDataset, outDir: URL) throws {
        try config.validate()
        guard options.batchSize > 0, options.seqLen > 1, options.steps > 0 else {
            throw BitNetError.invalidArgument("batch, context and steps must be positive (context >= 2)")
        }
        guard options.seqLen <= config.maxSeqLen else {
            throw BitNetError.invalidArgument("context \(options.seqLen) exceeds the model's max_seq_len \(config.maxSeqLen)")
        }
        guard data.train.count > options.seqLen + 1 else {
            throw BitNetError.emptyCorpus("the training text has \(data.train.count) tokens; need more than the context \(options.seqLen) + 1")
        }
        guard options.lr > 0, options.lr.isFinite, options.lr2 >= 0 else { throw BitNetError.invalidArgument("learning rate must be positive") }
        self.config = config; self.options = options; self.tokenizer = tokenizer; self.data = data; self.outDir = outDir
    }

    var checkpointURL: URL { outDir.appendingPathComponent("checkpoint.safetensors") }
    var modelURL: URL { outDir.appendingPathComponent(ModelFile.fileName) }

    /// Runs (or resumes, when `resume` and a checkpoint exists) the training; returns the log and held-out loss.
    package func run(resume: Bool = true) throws -> TrainResult {
        let weights: ModelWeights
        let adam: AdamW
        var log: [LogRow] = []
        var startStep = 0, earlierSeconds = 0.0
        let tokensPerStep = options.batchSize * options.seqLen
        let lastStep = min(options.steps, options.stopAfter ?? options.steps)
        let stale = FileIO.removeStaleTemporaries(in: outDir)
        if showProgress && !stale.isEmpty { printError("removed \(stale.count) temporary file(s) a killed run left in \(outDir.path): \(stale.joined(separator: ", "))") }
        if resume, FileManager.default.fileExists(atPath: checkpointURL.path) {
            let stored: (loss: Double, tokens: Int)?
            (weights, adam, startStep, log, earlierSeconds, stored) = try loadCheckpoint()
            if startStep >= lastStep {
                // Nothing to train: report the stored run as it ended, and leave its files as they are.
                if showProgress {
                    printError("\(label.isEmpty ? "" : label + ": ")\(checkpointURL.path) is already at step \(startStep)"
                               + (startStep > lastStep ? " (past --stop-after \(lastStep))" : "") + "; reporting the stored run")
                }
                return Self.result(config: config, log: log, steps: startStep, tokensPerStep: tokensPerStep, seconds: earlierSeconds,
                                   trained: 0, finalHeldOut: stored)
            }
            if showProgress { printError("resuming \(label) from step \(startStep) (\(checkpointURL.path))") }
        } else {
            weights = ModelWeights(config: config, seed: options.seed)
            adam = AdamW(count: weights.layout.totalCount)
        }
        let graph = TrainingGraph(weights: weights, batch: options.batchSize, seqLen: options.seqLen)
        let grads = FloatBuffer(weights.layout.totalCount)
        var progress = ProgressLine(total: lastStep - startStep, unit: "steps")
        var savedSeconds = earlierSeconds
        let heldOutWindows = (data.val.count - 1 + options.seqLen - 1) / options.seqLen
        // Model file, checkpoint (weights and two moments) in f32: what a checkpoint writes, about.
        var eta = TrainingETA(lastStep: lastStep, scheduleSteps: options.steps, evalEvery: options.evalEvery,
                              checkpointEvery: options.checkpointEvery, curveWindows: options.evalWindows,
                              heldOutWindows: heldOutWindows, checkpointBytes: 16 * weights.layout.totalCount,
                              batchSize: options.batchSize)
        var finalHeldOut: (loss: Double, tokens: Int)? = nil
        let t0 = Clock.now()
        var lastValLoss: Float? = log.last(where: { $0.valLoss != nil })?.valLoss
        var step = startStep
        while step < lastStep {
            let (lr, wd) = options.schedule.values(step: step, total: options.steps, warmup: options.warmupSteps,
                                                   lr: options.lr, lr2: options.lr2, weightDecay: options.weightDecay)
            let (inputs, targets) = data.batch(step: step, batchSize: options.batchSize, seqLen: options.seqLen, seed: options.seed)
            let s0 = Clock.now()
            let loss = graph.lossAndGradients(inputs: inputs, targets: targets, gradients: grads.ptr)
            guard loss.isFinite else {
                throw BitNetError.invalidArgument("loss became \(loss) at step \(step + 1): lower the learning rate (--lr)")
            }
            let norm = clipGradientNorm(grads.ptr, count: grads.count, maxNorm: options.gradClip)
            adam.update(params: weights.ptr, grads: grads.ptr, slots: weights.layout.slots, lr: lr, wd: wd)
            step += 1
            eta.recordStep(seconds: Clock.now() - s0)
            let elapsed = Clock.now() - t0
            let tps = Double((step - startStep) * tokensPerStep) / max(elapsed, 1e-9)
            var row = LogRow(step: step, tokens: step * tokensPerStep, lr: lr, wd: wd, trainLoss: loss, valLoss: nil,
                             gradNorm: norm, tokensPerSecond: tps)
            if (options.evalEvery > 0 && step % options.evalEvery == 0) || step == options.steps {
                let e0 = Clock.now()
                let v = evaluateLoss(graph: graph, tokens: data.val, maxWindows: options.evalWindows)
                if v.count > 0 { row.valLoss = Float(v.loss); lastValLoss = row.valLoss }
                if eta.secondsPerWindow == nil { eta.secondsPerWindow = (Clock.now() - e0) / Double(max(1, min(options.evalWindows, heldOutWindows))) }
            }
            if step == options.steps {
                // The run's result: the whole held-out text, once.
                let v = evaluateLoss(graph: graph, tokens: data.val, showProgress: showProgress)
                finalHeldOut = (v.loss, v.count)
            }
            log.append(row)
            if (options.checkpointEvery > 0 && step % options.checkpointEvery == 0) || step == lastStep {
                let c0 = Clock.now()
                savedSeconds = earlierSeconds + c0 - t0
                try saveCheckpoint(weights: weights, adam: adam, step: step, log: log, seconds: savedSeconds, finalHeldOut: finalHeldOut)
                if eta.checkpointSeconds == nil { eta.checkpointSeconds = Clock.now() - c0 }
            }
            if showProgress {
                var extra = String(format: "loss %.4f", loss)
                if let v = lastValLoss { extra += String(format: " | val %.4f", v) }
                extra += String(format: " | lr %.2e", lr)
                let left = eta.remaining(after: step)
                if runsAfter > 0 {
                    extra += " | all \(runsAfter + 1) runs: ETA \(ProgressLine.format(left + Double(runsAfter) * (elapsed + left)))"
                }
                progress.update(done: step - startStep, rateItems: tps, rateUnit: "tok", extra: ([progressPrefix, label].filter { !$0.isEmpty } + [extra]).joined(separator: " "),
                                etaSeconds: left)
            }
        }
        // The figures the checkpoint stores, so a re-run of the finished run reports the same. A checkpoint written
        // before training time was recorded has no earlier time: then the rate is this session's.
        let steps = startStep > 0 && earlierSeconds == 0 ? lastStep - startStep : lastStep
        return Self.result(config: config, log: log, steps: steps, tokensPerStep: tokensPerStep, seconds: savedSeconds,
                           trained: lastStep - startStep, finalHeldOut: finalHeldOut)
    }

    /// A run's figures over all its sessions: `steps` steps in `seconds` of training, `trained` of them in this call.
    static func result(config: ModelConfig, log: [LogRow], steps: Int, tokensPerStep: Int, seconds: Double, trained: Int,
                       finalHeldOut: (loss: Double, tokens: Int)?) -> TrainResult {
        let finalVal = finalHeldOut?.loss ?? log.last(where: { $0.valLoss != nil })?.valLoss.map(Double.init) ?? .nan
        return TrainResult(config: config, log: log, finalValLoss: finalVal, finalValTokens: finalHeldOut?.tokens ?? 0,
                           tokensPerSecond: seconds > 0 ? Double(steps * tokensPerStep) / seconds : 0, seconds: seconds,
                           trainedSteps: trained)
    }

    // MARK: checkpoints

    /// Writes checkpoint.safetensors, model.safetensors, log.csv and loss.svg as one set (`FileIO.writeAtomically`):
    /// all are written before any replaces its old copy, so a full disk leaves the folder at the previous step, and
    /// a kill between the renames leaves the checkpoint (the one resume reads) the newest.
    func saveCheckpoint(weights: ModelWeights, adam: AdamW, step: Int, log: [LogRow], seconds: Double,
                        finalHeldOut: (loss: Double, tokens: Int)?) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        var meta = ["format": "bitnet-swift-checkpoint", "bitnet.config": config.jsonString(), "step": "\(step)",
                    "adam.step": "\(adam.step)", "data.fingerprint": data.fingerprint,
                    "data.tokens": "\(data.train.count),\(data.val.count)", "train.seconds": "\(seconds)",
                    "options": String(decoding: try enc.encode(options), as: UTF8.self),
                    "log": String(decoding: try enc.encode(log), as: UTF8.self)]
        if let tokenizer { meta["bitnet.tokenizer"] = String(decoding: try tokenizer.jsonData(), as: UTF8.self) }
        if let finalHeldOut { meta["final.val_loss"] = "\(finalHeldOut.loss)"; meta["final.val_tokens"] = "\(finalHeldOut.tokens)" }
        let n = weights.layout.totalCount
        let blob = Safetensors.serialize([
            (name: "params", shape: [n], payload: .f32Pointer(UnsafePointer(weights.ptr), n)),
            (name: "adam.m", shape: [n], payload: .f32Pointer(UnsafePointer(adam.m.ptr), n)),
            (name: "adam.v", shape: [n], payload: .f32Pointer(UnsafePointer(adam.v.ptr), n)),
        ], metadata: meta)
        let csv = ([LogRow.csvHeader] + log.map(\.csv)).joined(separator: "\n") + "\n"
        let plot = Self.lossPlot(runs: [(label.isEmpty ? config.arch.rawValue : label, log)], heldOut: Self.heldOutCurveLabel(options))
        try FileIO.writeAtomically([(blob, checkpointURL), (try ModelFile.serialize(weights, tokenizer: tokenizer), modelURL),
                                    (Data(csv.utf8), outDir.appendingPathComponent("log.csv")),
                                    (Data(plot.utf8), outDir.appendingPathComponent("loss.svg"))])
    }

    /// Throws when `outDir` holds a checkpoint this run must not resume (and `resume` is on): one of another model,
    /// recipe, corpus or tokenizer. The error says what differs. Call it before writing anything into `outDir`.
    package func checkResumable(resume: Bool = true) throws {
        guard resume, FileManager.default.fileExists(atPath: checkpointURL.path) else { return }
        try checkMatches(try Safetensors.read(path: checkpointURL.path))
    }

    /// The checkpoint's record of what it was trained on against this run's.
    func checkMatches(_ st: Safetensors.File) throws {
        let path = checkpointURL.path
        guard let cfgJSON = st.metadata["bitnet.config"] else {
            throw BitNetError.invalidFormat(file: path, field: "bitnet.config", problem: "missing")
        }
        let cfg = try ModelConfig.fromJSON(cfgJSON, source: path)
        var differences = Self.differences(cfg, config).map { "model \($0)" }
        if let o = st.metadata["options"], let saved = try? JSONDecoder().decode(TrainOptions.self, from: Data(o.utf8)) {
            var a = saved, b = options
            a.stopAfter = nil; b.stopAfter = nil
            differences += Self.differences(a, b)
        }
        if let f = st.metadata["data.fingerprint"], f != data.fingerprint {
            let was = st.metadata["data.tokens"]?.split(separator: ",").first.map { " (\($0) training tokens)" } ?? ""
            differences.append("training data: the checkpoint was trained on other text or another tokenizer\(was); "
                               + "this run has \(data.train.count) training tokens")
        }
        if let saved = st.metadata["bitnet.tokenizer"], let tokenizer, let now = try? tokenizer.jsonData(),
           Data(saved.utf8) != now {
            differences.append("tokenizer: the checkpoint's tokenizer differs from this run's")
        }
        guard differences.isEmpty else {
            throw BitNetError.invalidArgument("\(outDir.path) holds a checkpoint of another run (\(differences.joined(separator: "; "))); "
                                              + "nothing was changed there: pass --no-resume to train from scratch into it, or another --out")
        }
    }

    /// "field: was → now" for each stored property that differs between two values of one type.
    static func differences<T>(_ was: T, _ now: T) -> [String] {
        zip(Mirror(reflecting: was).children, Mirror(reflecting: now).children).compactMap { a, b in
            let (x, y) = ("\(a.value)", "\(b.value)")
            return x == y ? nil : "\(a.label ?? "?"): \(x) in the checkpoint, \(y) now"
        }
    }

    /// Restores weights, optimizer state, step, log and training time; refuses a checkpoint of another run.
    func loadCheckpoint() throws -> (ModelWeights, AdamW, Int, [LogRow], Double, (loss: Double, tokens: Int)?) {
        let path = checkpointURL.path
        let st = try Safetensors.read(path: path)
        try checkMatches(st)
        let cfg = config
        guard let stepS = st.metadata["step"], let step = Int(stepS), let aStep = st.metadata["adam.step"].flatMap({ Int($0) }) else {
            throw BitNetError.invalidFormat(file: path, field: "step", problem: "missing or not an integer")
        }
        let w = ModelWeights(config: cfg)
        let n = w.layout.totalCount
        let params = try st.floats("params"), m = try st.floats("adam.m"), v = try st.floats("adam.v")
        guard params.count == n, m.count == n, v.count == n else {
            throw BitNetError.invalidFormat(file: path, field: "params", problem: "holds \(params.count) values, the config needs \(n)")
        }
        params.withUnsafeBufferPointer { w.ptr.update(from: $0.baseAddress!, count: n) }
        let adam = AdamW(count: n)
        m.withUnsafeBufferPointer { adam.m.ptr.update(from: $0.baseAddress!, count: n) }
        v.withUnsafeBufferPointer { adam.v.ptr.update(from: $0.baseAddress!, count: n) }
        adam.step = aStep
        let log = (st.metadata["log"].flatMap { try? JSONDecoder().decode([LogRow].self, from: Data($0.utf8)) }) ?? []
        let seconds = st.metadata["train.seconds"].flatMap(Double.init) ?? 0
        let final = st.metadata["final.val_loss"].flatMap(Double.init).flatMap { loss in
            st.metadata["final.val_tokens"].flatMap { Int($0) }.map { (loss: loss, tokens: $0) }
        }
        return (w, adam, step, log.filter { $0.step <= step }, seconds, final)
    }

    /// What the held-out points of a curve are, for its legend.
    package static func heldOutCurveLabel(_ o: TrainOptions) -> String {
        "held-out, first \(o.evalWindows) windows of \(o.seqLen)"
    }

    /// SVG of training (thin) and held-out (dots) loss against tokens for one or more runs; `heldOut` names what
    /// the held-out points measure.
    package static func lossPlot(runs: [(name: String, log: [LogRow])], heldOut: String = "held-out") -> String {
        var series: [SVGPlot.Series] = []
        for (name, log) in runs {
            // Smooth the noisy per-step loss with a short moving average so curves can be compared by eye.
            let k = max(1, log.count / 100)
            var pts: [(x: Double, y: Double)] = []
            var i = 0
            while i < log.count {
                let chunk = log[i..<min(i + k, log.count)]
                pts.append((Double(chunk.last!.tokens), Double(chunk.map(\.trainLoss).reduce(0, +)) / Double(chunk.count)))
                i += k
            }
            series.append(.init(name: "\(name) train", points: pts))
            let val = log.compactMap { r in r.valLoss.map { (x: Double(r.tokens), y: Double($0)) } }
            if !val.isEmpty { series.append(.init(name: "\(name) \(heldOut)", points: val)) }
        }
        return SVGPlot.lineChart(title: "Loss", xLabel: "training tokens", yLabel: "cross-entropy (nats/token)", series: series)
    }
}
