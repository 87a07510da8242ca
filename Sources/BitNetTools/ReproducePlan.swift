import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference
import BitNetTraining
import BitNetEvaluation
import BitNetServer
import BitNetKernels

/// The scale of a `bitnet reproduce` run: corpus, model sizes, tokens and evaluation sizes, derived from the time budget
/// alone (a speed probe only predicts the time), then stored in `DIR/plan.json` so a resumed run repeats it.
package struct ReproducePlan: Codable, Sendable, Equatable {
    /// One model size of the scaling series (same for b1.58, b1 and fp).
    package struct Size: Codable, Sendable, Equatable {
        package var name: String
        package var dim: Int
        package var layers: Int
        package var heads: Int
        package init(name: String, dim: Int, layers: Int, heads: Int) { self.name = name; self.dim = dim; self.layers = layers; self.heads = heads }
    }

    package var budgetMinutes: Double
    package var corpus: [String]
    package var valFraction: Double
    package var vocabSize: Int
    package var sizes: [Size]
    package var batch: Int
    package var context: Int
    package var steps: Int
    package var warmup: Int
    package var lrBitNet: Float
    package var lrFP: Float
    package var seed: UInt64
    /// Size (index into `sizes`) of the schedule ablation.
    package var ablationSize: Int
    /// Documents per zero-shot task.
    package var zeroShotLimit: Int
    /// WikiText-2 tokens (about) per perplexity evaluation.
    package var wikiTextTokens: Int
    /// Held-out tokens per evaluation of the PTQ and KV-cache tables.
    package var heldOutTokens: Int
    /// Seconds per training step measured by the probe, per size (b1.58), for the record.
    package var probeSecondsPerStep: [Double]

    /// The model config of a size for a variant.
    package func config(_ size: Size, arch: Architecture, vocabSize v: Int) -> ModelConfig {
        ModelConfig(arch: arch, vocabSize: v, dim: size.dim, nLayers: size.layers, nHeads: size.heads, maxSeqLen: context,
                    actScopeTrain: arch == .b1 ? .perTensor : .perToken)
    }

    /// Training options of a variant: BitNet gets the two-stage recipe at its higher LR, fp the cosine one (Sec. 2.2.3).
    package func trainOptions(arch: Architecture, schedule: Schedule? = nil) -> TrainOptions {
        var o = TrainOptions.defaults(for: arch)
        o.batchSize = batch; o.seqLen = context; o.steps = steps; o.warmupSteps = warmup; o.seed = seed
        o.lr = arch == .fp ? lrFP : lrBitNet
        o.lr2 = arch == .fp ? lrFP : lrBitNet * 2 / 3
        if let schedule { o.schedule = schedule }
        o.evalEvery = max(steps / 8, 1); o.evalWindows = 16
        o.checkpointEvery = max(steps / 4, 1)
        return o
    }

    /// Sizes, context and corpus of the quick (≤ 20 min) and full plans.
    static func shape(budgetMinutes: Double, dataDir: String) -> (corpus: [String], vocab: Int, sizes: [Size], batch: Int, context: Int) {
        if budgetMinutes < 20 {
            return ([dataDir + "/tinyshakespeare.txt"], 384,
                    [Size(name: "d32", dim: 32, layers: 2, heads: 2), Size(name: "d48", dim: 48, layers: 2, heads: 3),
                     Size(name: "d64", dim: 64, layers: 2, heads: 4), Size(name: "d96", dim: 96, layers: 2, heads: 4)],
                    8, 64)
        }
        // The complete plays (5 MB) so the larger models see each token about once.
        return ([dataDir + "/shakespeare-complete.txt"], 512,
                [Size(name: "d48", dim: 48, layers: 2, heads: 2), Size(name: "d64", dim: 64, layers: 3, heads: 2),
                 Size(name: "d96", dim: 96, layers: 3, heads: 3), Size(name: "d128", dim: 128, layers: 4, heads: 4)],
                16, 128)
    }

    /// Matmul FLOPs of one training step of every run of a plan's shape: 4 sizes × 3 variants + the ablation.
    static func flopsPerPlanStep(sizes: [Size], vocab: Int, batch: Int, context: Int, ablationSize: Int) -> Double {
        func flops(_ s: Size) -> Double {
            let c = ModelConfig(arch: .b158, vocabSize: vocab, dim: s.dim, nLayers: s.layers, nHeads: s.heads, maxSeqLen: context)
            return TrainingBenchmark.flopsPerToken(c, seqLen: context) * Double(batch * context)
        }
        return sizes.map(flops).reduce(0, +) * 3 + flops(sizes[ablationSize])
    }

    /// The training FLOP/s the plan is sized for, fixed once: the full plan's 628 steps in 35 % of 60 minutes (what a
    /// quiet 2-core Zen 4 reached, the committed report's run). The work depends on the budget alone, never on how
    /// busy the machine is when the run starts, so the same command always trains the same models the same way.
    static var referenceFLOPS: Double {
        let full = shape(budgetMinutes: 60, dataDir: "")
        return 628 * flopsPerPlanStep(sizes: full.sizes, vocab: full.vocab, batch: full.batch, context: full.context, ablationSize: 2)
            / (60 * 60 * 0.35)
    }

    /// Derives a plan from the budget alone: the steps (the same for every model) are those 35 % of the budget allows at
    /// `referenceFLOPS` (a real run spends about twice its matmul time: evaluations, checkpoints), evaluation sizes
    /// scale with the minutes. `secondsPerStep(config, batch, context)`, when given, only predicts this machine's time.
    package static func make(budgetMinutes: Double, dataDir: String, seed: UInt64,
                            secondsPerStep: ((ModelConfig, Int, Int) -> Double)? = nil) -> ReproducePlan {
        let s = shape(budgetMinutes: budgetMinutes, dataDir: dataDir)
        var plan = ReproducePlan(budgetMinutes: budgetMinutes, corpus: s.corpus, valFraction: 0.05, vocabSize: s.vocab, sizes: s.sizes,
                                 batch: s.batch, context: s.context, steps: 0, warmup: 0, lrBitNet: 3e-3, lrFP: 1e-3, seed: seed,
                                 ablationSize: 2, zeroShotLimit: 0, wikiTextTokens: 0, heldOutTokens: 0, probeSecondsPerStep: [])
        let flops = flopsPerPlanStep(sizes: s.sizes, vocab: s.vocab, batch: s.batch, context: s.context, ablationSize: plan.ablationSize)
        plan.steps = max(40, min(20_000, Int((budgetMinutes * 60 * 0.35 * referenceFLOPS / flops).rounded())))
        plan.warmup = max(plan.steps / 10, 1)
        if let secondsPerStep {
            plan.probeSecondsPerStep = s.sizes.map { secondsPerStep(plan.config($0, arch: .b158, vocabSize: s.vocab), s.batch, s.context) }
        }
        let scale = budgetMinutes / 60
        plan.zeroShotLimit = max(20, min(1000, Int(100 * scale)))
        plan.wikiTextTokens = max(4000, min(250_000, Int(20_000 * scale)))
        plan.heldOutTokens = max(4000, min(100_000, Int(16_000 * scale)))
        return plan
    }

    /// Training minutes this machine needs for the plan at the probed speed (twice the matmul time, as `make` assumes).
    package var probedTrainingMinutes: Double? {
        guard probeSecondsPerStep.count == sizes.count else { return nil }
        let perStepAll = probeSecondsPerStep.reduce(0, +) * 3 + probeSecondsPerStep[ablationSize]
        return perStepAll * Double(steps) * 2 / 60
    }
}

/// Seconds per training step of a config on random tokens: 1 warm-up step, then the median of 5 (a machine shared with
/// other work makes single steps noisy).
package func probeTrainingStep(config: ModelConfig, batch: Int, context: Int, seed: UInt64 = 1) -> Double {
    let w = ModelWeights(config: config, seed: seed)
    let g = TrainingGraph(weights: w, batch: batch, seqLen: context)
    let grads = FloatBuffer(w.layout.totalCount)
    let adam = AdamW(count: w.layout.totalCount)
    var rng = SeededRNG(seed: seed)
    let inputs = (0..<(batch * context)).map { _ in rng.nextInt(below: config.vocabSize) }
    let targets = (0..<(batch * context)).map { _ in rng.nextInt(below: config.vocabSize) }
    func step() {
        _ = g.lossAndGradients(inputs: inputs, targets: targets, gradients: grads.ptr)
        adam.update(params: w.ptr, grads: grads.ptr, slots: w.layout.slots, lr: 1e-4, wd: 0)
    }
    step()
    var times: [Double] = []
    for _ in 0..<5 {
        let t0 = Clock.now()
        step()
        times.append(Clock.now() - t0)
    }
    return times.sorted()[2]
}
