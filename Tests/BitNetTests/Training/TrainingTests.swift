import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

final class TrainingTests: XCTestCase {
    /// A token stream with structure (a repeated pattern plus noise) for quick training runs.
    func syntheticData(vocab: Int, count: Int, seed: UInt64) -> TokenDataset {
        var rng = SeededRNG(seed: seed)
        let pattern = (0..<23).map { _ in rng.nextInt(below: vocab) }
        let toks = (0..<count).map { i in Int32(rng.nextInt(below: 10) == 0 ? rng.nextInt(below: vocab) : pattern[i % pattern.count]) }
        return TokenDataset(train: Array(toks[0..<count * 9 / 10]), val: Array(toks[(count * 9 / 10)...]),
                            trainBytes: count * 9 / 10, valBytes: count / 10)
    }

    func testOverfitsOneBatch() {
        for arch in [Architecture.fp, .b158, .b1] {
            let c = tinyConfig(arch, vocab: 37, seq: 16)
            let w = ModelWeights(config: c, seed: 7)
            let g = TrainingGraph(weights: w, batch: 2, seqLen: 16)
            let grads = FloatBuffer(w.layout.totalCount)
            let adam = AdamW(count: w.layout.totalCount)
            var rng = SeededRNG(seed: 1)
            let inputs = (0..<32).map { _ in rng.nextInt(below: 37) }, targets = (0..<32).map { _ in rng.nextInt(below: 37) }
            var first: Float = 0, last: Float = 0
            for step in 0..<300 {
                let loss = g.lossAndGradients(inputs: inputs, targets: targets, gradients: grads.ptr)
                if step == 0 { first = loss }
                last = loss
                clipGradientNorm(grads.ptr, count: grads.count, maxNorm: 1)
                adam.update(params: w.ptr, grads: grads.ptr, slots: w.layout.slots, lr: arch == .fp ? 1e-2 : 2e-2, wd: 0)
            }
            XCTAssertGreaterThan(first, 3.0, "\(arch) starts near ln(37)")
            XCTAssertLessThan(last, 0.15, "\(arch) memorizes one batch (loss \(first) -> \(last))")
        }
    }

    func options(steps: Int) -> TrainOptions {
        var o = TrainOptions()
        o.batchSize = 2; o.seqLen = 16; o.steps = steps; o.warmupSteps = 3; o.evalEvery = 5; o.evalWindows = 4
        o.checkpointEvery = 4; o.lr = 5e-3; o.lr2 = 3e-3; o.seed = 99
        return o
    }

    /// The held-out curve is one measure at every point, the last included: the first `evalWindows` windows. The
    /// run's result is the whole held-out text, evaluated once, stored, and reported again by a re-run.
    func testHeldOutCurveIsOneMeasureAndTheResultTheWholeSet() throws {
        let c = tinyConfig(.b158, vocab: 37, seq: 16)
        let data = syntheticData(vocab: 37, count: 3000, seed: 2)
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let trainer = try Trainer(config: c, options: options(steps: 10), tokenizer: nil, data: data, outDir: dir)
        trainer.showProgress = false
        let r = try trainer.run(resume: false)
        XCTAssertEqual(r.log.compactMap { $0.valLoss == nil ? nil : $0.step }, [5, 10])
        let w = try ModelFile.load(path: dir.path).weights
        let graph = TrainingGraph(weights: w, batch: 2, seqLen: 16)
        let subset = evaluateLoss(graph: graph, tokens: data.val, maxWindows: 4), whole = evaluateLoss(graph: graph, tokens: data.val)
        XCTAssertEqual(subset.count, 4 * 16)
        XCTAssertGreaterThan(whole.count, subset.count)
        XCTAssertEqual(r.log.last?.valLoss, Float(subset.loss), "the last curve point is the same subset as the others")
        XCTAssertEqual(r.finalValLoss, whole.loss)
        XCTAssertEqual(r.finalValTokens, whole.count)
        let again = try Trainer(config: c, options: options(steps: 10), tokenizer: nil, data: data, outDir: dir)
        again.showProgress = false
        let stored = try again.run(resume: true)
        XCTAssertEqual(stored.trainedSteps, 0)
        XCTAssertEqual(stored.finalValLoss, r.finalValLoss)
        XCTAssertEqual(stored.finalValTokens, r.finalValTokens)
        XCTAssertEqual(stored.tokensPerSecond, r.tokensPerSecond)
        let svg = try String(contentsOf: dir.appendingPathComponent("loss.svg"), encoding: .utf8)
        XCTAssertTrue(svg.contains("held-out, first 4 windows of 16"), "the legend says what the held-out points are")
    }

    func testSameSeedSameModelAndResumeReproducesTheRun() throws {
        let c = tinyConfig(.b158, vocab: 37, seq: 16)
        let data = syntheticData(vocab: 37, count: 3000, seed: 2)
        let dirA = TestPaths.tempDir("a"), dirB = TestPaths.tempDir("b")
        defer { try? FileManager.default.removeItem(at: dirA); try? FileManager.default.removeItem(at: dirB) }
        let full = try Trainer(config: c, options: options(steps: 12), tokenizer: nil, data: data, outDir: dirA)
        full.showProgress = false
        let a = try full.run(resume: false)
        // Interrupted at step 6, then resumed with the same command.
        var o = options(steps: 12)
        o.stopAfter = 6
        let part = try Trainer(config: c, options: o, tokenizer: nil, data: data, outDir: dirB)
        part.showProgress = false
        _ = try part.run(resume: false)
        let rest = try Trainer(config: c, options: options(steps: 12), tokenizer: nil, data: data, outDir: dirB)
        rest.showProgress = false
        let b = try rest.run(resume: true)
        XCTAssertEqual(a.log.map(\.trainLoss), b.log.map(\.trainLoss), "resumed loss curve equals the uninterrupted one")
        XCTAssertEqual(a.log.map(\.valLoss), b.log.map(\.valLoss))
        let wa = try ModelFile.load(path: dirA.path).weights, wb = try ModelFile.load(path: dirB.path).weights
        XCTAssertEqual(wa.values.array, wb.values.array, "same seed, same model")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dirA.appendingPathComponent("loss.svg").path))
        let csv = try String(contentsOf: dirA.appendingPathComponent("log.csv"), encoding: .utf8)
        XCTAssertEqual(csv.split(separator: "\n").count, 13)
    }

    func testCheckpointSaveLoadGivesIdenticalLogits() throws {
        for arch in Architecture.allCases {
            let c = tinyConfig(arch)
            let w = ModelWeights(config: c, seed: 11)
            let dir = TestPaths.tempDir()
            defer { try? FileManager.default.removeItem(at: dir) }
            let url = dir.appendingPathComponent("m.safetensors")
            try ModelFile.save(w, tokenizer: nil, to: url)
            let back = try ModelFile.load(path: url.path).weights
            XCTAssertEqual(back.config, c)
            let toks = [3, 1, 4, 1, 5, 9, 2, 6]
            let g1 = TrainingGraph(weights: w, batch: 1, seqLen: 8), g2 = TrainingGraph(weights: back, batch: 1, seqLen: 8)
            g1.forward(inputs: toks, training: false); g2.forward(inputs: toks, training: false)
            XCTAssertEqual(g1.logits.array, g2.logits.array)
        }
    }

    func testCorruptCheckpointIsANamedError() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let w = ModelWeights(config: tinyConfig(.b158), seed: 1)
        let url = dir.appendingPathComponent("m.safetensors")
        try ModelFile.save(w, tokenizer: nil, to: url)
        let good = try Data(contentsOf: url)
        // Truncated data, a lying header length, garbage JSON.
        let cases: [Data] = [good.prefix(good.count / 2), Data([0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]) + good.dropFirst(8),
                             Data([5, 0, 0, 0, 0, 0, 0, 0]) + Data("{{{{{".utf8), Data([1, 2, 3])]
        for (i, bad) in cases.enumerated() {
            try bad.write(to: url)
            XCTAssertThrowsError(try ModelFile.load(path: url.path), "case \(i)") { e in
                XCTAssertTrue("\(e)".contains(url.path), "error names the file: \(e)")
            }
        }
    }

    func testTwoStageSchedule() {
        let s = Schedule.twoStage
        XCTAssertEqual(s.values(step: 0, total: 100, warmup: 10, lr: 1, lr2: 0.5, weightDecay: 0.1).lr, 0.1, accuracy: 1e-6)
        XCTAssertEqual(s.values(step: 10, total: 100, warmup: 10, lr: 1, lr2: 0.5, weightDecay: 0.1).lr, 1, accuracy: 1e-6)
        let late1 = s.values(step: 49, total: 100, warmup: 10, lr: 1, lr2: 0.5, weightDecay: 0.1)
        XCTAssertEqual(late1.wd, 0.1)
        XCTAssertGreaterThan(late1.lr, 0.8)
        let stage2 = s.values(step: 50, total: 100, warmup: 10, lr: 1, lr2: 0.5, weightDecay: 0.1)
        XCTAssertEqual(stage2.lr, 0.5, accuracy: 1e-6)
        XCTAssertEqual(stage2.wd, 0, "stage 2 turns weight decay off")
        XCTAssertEqual(s.values(step: 99, total: 100, warmup: 10, lr: 1, lr2: 0.5, weightDecay: 0.1).lr, 0.01, accuracy: 1e-6)
        let cos = Schedule.cosine.values(step: 99, total: 100, warmup: 0, lr: 1, lr2: 1, weightDecay: 0.1)
        XCTAssertEqual(cos.wd, 0.1)
        XCTAssertEqual(cos.lr, 0.1, accuracy: 1e-3)
    }

    func testAdamWMatchesHandComputedStep() {
        // One step from m = v = 0: update = lr·g/(|g| + ε) after bias correction, decay p·(1 − lr·wd) first.
        let adam = AdamW(count: 2)
        var p: [Float] = [1, -2]
        let g: [Float] = [0.5, -0.25]
        let slot = TensorSlot(name: "w", shape: [1, 2], offset: 0)
        adam.update(params: &p, grads: g, slots: [slot], lr: 0.1, wd: 0.1)
        XCTAssertEqual(p[0], 1 * 0.99 - 0.1 * 0.5 / (0.5 + 1e-8), accuracy: 1e-6)
        XCTAssertEqual(p[1], -2 * 0.99 + 0.1, accuracy: 1e-6)
    }

    func testHeldOutSplitKeepsCharactersWhole() {
        let (a, b) = TokenDataset.split("héllo wörld ✓✓✓", valFraction: 0.3)
        XCTAssertEqual(a + b, "héllo wörld ✓✓✓")
    }

    /// The ETA adds up every part still due: steps, curve points, checkpoints (the last one too) and the final evaluation.
    func testETACountsEvaluationsAndCheckpointsStillDue() {
        var eta = TrainingETA(lastStep: 100, scheduleSteps: 100, evalEvery: 25, checkpointEvery: 50, curveWindows: 4,
                              heldOutWindows: 40, checkpointBytes: 400_000_000, batchSize: 8)
        XCTAssertEqual(eta.remaining(after: 10), 0, "nothing timed yet")
        eta.recordStep(seconds: 0.5); eta.recordStep(seconds: 1.5)   // 1 s a step
        // Before an evaluation or checkpoint is timed: a window is a third of a sequence's step time, a checkpoint 200 MB/s.
        let window = 1.0 / 8 / 3
        XCTAssertEqual(eta.remaining(after: 10), 90 + 4 * 4 * window + 40 * window + 2 * 2, accuracy: 1e-9)
        eta.secondsPerWindow = 0.1; eta.checkpointSeconds = 3
        // 90 steps, curve points at 25, 50, 75, 100 (4 windows each), the final 40 windows, checkpoints at 50 and 100.
        XCTAssertEqual(eta.remaining(after: 10), 90 + 1.6 + 4 + 6, accuracy: 1e-9)
        XCTAssertEqual(eta.remaining(after: 99), 1 + 0.4 + 4 + 3, accuracy: 1e-9)
        XCTAssertEqual(eta.remaining(after: 100), 0)
        // Stopping early (--stop-after 30): no final evaluation, and a checkpoint at the stop.
        var stop = TrainingETA(lastStep: 30, scheduleSteps: 100, evalEvery: 25, checkpointEvery: 50, curveWindows: 4,
                               heldOutWindows: 40, checkpointBytes: 0, batchSize: 8)
        stop.recordStep(seconds: 1); stop.secondsPerWindow = 0.1; stop.checkpointSeconds = 3
        XCTAssertEqual(stop.remaining(after: 10), 20 + 0.4 + 3, accuracy: 1e-9)
        // A schedule that does not end on a multiple of --eval-every still gets its last curve point.
        var odd = TrainingETA(lastStep: 90, scheduleSteps: 90, evalEvery: 25, checkpointEvery: 0, curveWindows: 4,
                              heldOutWindows: 40, checkpointBytes: 0, batchSize: 8)
        odd.recordStep(seconds: 1); odd.secondsPerWindow = 0.1; odd.checkpointSeconds = 3
        XCTAssertEqual(odd.remaining(after: 0), 90 + 4 * 0.4 + 4 + 3, accuracy: 1e-9)
    }
}
