import Foundation
import BitNetKernels
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference
import BitNetTraining
import BitNetEvaluation
import BitNetServer

/// Training throughput: tokens/s of full steps (forward, loss, backward, AdamW) and model FLOPs utilization.
package enum TrainingBenchmark {
    package struct Result: Sendable {
        package let tokensPerSecond: Double
        package let stepSeconds: Double
        /// Matmul FLOPs per trained token: 6·(linear + head parameters) + 12·layers·dim·context (attention).
        package let flopsPerToken: Double
        package var achievedGFLOPS: Double { tokensPerSecond * flopsPerToken / 1e9 }
    }

    /// FLOPs of one trained token (forward + backward = 3x forward), the PaLM appendix formula.
    package static func flopsPerToken(_ c: ModelConfig, seqLen: Int) -> Double {
        let matmulParams = Double(c.linearParameterCount + c.vocabSize * c.dim)
        return 6 * matmulParams + 12 * Double(c.nLayers * c.dim * seqLen)
    }

    /// Times `steps` training steps on random tokens after `warmup` untimed ones.
    package static func run(config: ModelConfig, batch: Int, seqLen: Int, steps: Int, warmup: Int = 2, seed: UInt64 = 1) -> Result {
        let w = ModelWeights(config: config, seed: seed)
        let graph = TrainingGraph(weights: w, batch: batch, seqLen: seqLen)
        let grads = FloatBuffer(w.layout.totalCount)
        let adam = AdamW(count: w.layout.totalCount)
        var rng = SeededRNG(seed: seed)
        var t0 = 0.0
        for s in 0..<(warmup + steps) {
            if s == warmup { t0 = Clock.now() }
            let inputs = (0..<batch * seqLen).map { _ in rng.nextInt(below: config.vocabSize) }
            let targets = (0..<batch * seqLen).map { _ in rng.nextInt(below: config.vocabSize) }
            _ = graph.lossAndGradients(inputs: inputs, targets: targets, gradients: grads.ptr)
            clipGradientNorm(grads.ptr, count: grads.count, maxNorm: 1)
            adam.update(params: w.ptr, grads: grads.ptr, slots: w.layout.slots, lr: 1e-3, wd: 0.1)
        }
        let dt = (Clock.now() - t0) / Double(max(steps, 1))
        return Result(tokensPerSecond: Double(batch * seqLen) / dt, stepSeconds: dt, flopsPerToken: flopsPerToken(config, seqLen: seqLen))
    }

    /// Peak f32 GEMM rate of this machine with the project's kernel (a large square NT product), in GFLOP/s.
    package static func measuredPeakGFLOPS(threads: ThreadPool? = .shared) -> Double {
        GEMM.benchmark(m: 1024, n: 1024, k: 1024, transA: false, transB: true, threads: threads, iterations: 5).gflops
    }
}
