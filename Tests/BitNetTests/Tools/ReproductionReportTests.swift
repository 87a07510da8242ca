import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

final class ReproductionReportTests: XCTestCase {
    func plan() -> ReproducePlan {
        ReproducePlan.make(budgetMinutes: 10, dataDir: "/data", seed: 1) { _, _, _ in 0.01 }
    }

    func run(_ size: String, _ arch: Architecture, loss: Double, n: Int, energy: Double) -> TrainedRun {
        TrainedRun(size: size, arch: arch, schedule: arch == .fp ? .cosine : .twoStage, parameters: n + 1000, nonEmbeddingParameters: n,
                   valLoss: loss, energyPerToken: energy, seconds: 1, tokensPerSecond: 1, log: [])
    }

    /// The plan depends on the budget alone: a probe reporting a fast or a slow machine changes nothing but the
    /// predicted time; the full plan at 60 minutes is the calibration's 628 steps; evaluation sizes grow with the minutes.
    func testPlanIsFixedByTheBudget() {
        let fast = ReproducePlan.make(budgetMinutes: 10, dataDir: "/d", seed: 1) { _, _, _ in 0.001 }
        let slow = ReproducePlan.make(budgetMinutes: 10, dataDir: "/d", seed: 1) { _, _, _ in 0.5 }
        let none = ReproducePlan.make(budgetMinutes: 10, dataDir: "/d", seed: 1)
        XCTAssertEqual(fast.steps, slow.steps)
        XCTAssertEqual(fast.steps, none.steps)
        XCTAssertEqual(fast.sizes, slow.sizes)
        XCTAssertNil(none.probedTrainingMinutes)
        XCTAssertEqual(slow.probedTrainingMinutes!, 0.5 * 13 * Double(slow.steps) * 2 / 60, accuracy: 1e-9)
        let p30 = ReproducePlan.make(budgetMinutes: 30, dataDir: "/d", seed: 1)
        let p60 = ReproducePlan.make(budgetMinutes: 60, dataDir: "/d", seed: 1)
        XCTAssertEqual(p60.steps, 628)
        XCTAssertEqual(p60.steps, 2 * p30.steps, accuracy: 1)
        // The quick plan's smaller models get more steps from the same FLOP rate: the ratio of the plans' FLOPs per step.
        let q = ReproducePlan.shape(budgetMinutes: 10, dataDir: ""), f = ReproducePlan.shape(budgetMinutes: 60, dataDir: "")
        let ratio = ReproducePlan.flopsPerPlanStep(sizes: f.sizes, vocab: f.vocab, batch: f.batch, context: f.context, ablationSize: 2)
            / ReproducePlan.flopsPerPlanStep(sizes: q.sizes, vocab: q.vocab, batch: q.batch, context: q.context, ablationSize: 2)
        XCTAssertEqual(Double(fast.steps), (628 * ratio / 6).rounded(), accuracy: 1)
        XCTAssertGreaterThan(p60.zeroShotLimit, fast.zeroShotLimit)
        XCTAssertGreaterThan(p60.context, fast.context)
    }

    /// Verdicts follow the numbers: Table 2 from the energy model agrees with the paper; a shrinking BitNet deficit holds,
    /// a growing one does not; the ablation compares the two schedules.
    func testVerdictsFollowTheNumbers() {
        let p = plan()
        let names = p.sizes.map(\.name)
        var runs: [TrainedRun] = []
        for (i, s) in names.enumerated() {
            let n = 1000 * (i + 1) * (i + 1)
            let fp = 2 + 10 * pow(Double(n), -0.3)
            runs.append(run(s, .fp, loss: fp, n: n, energy: 1e-6 * Double(n)))
            runs.append(run(s, .b158, loss: fp + 0.2 / Double(i + 1), n: n, energy: 2e-8 * Double(n)))   // deficit shrinks
            runs.append(run(s, .b1, loss: fp + 0.1 * Double(i + 1), n: n, energy: 2e-8 * Double(n)))     // deficit grows
        }
        let ablation = run(names[p.ablationSize], .b158, loss: 10, n: 1, energy: 1)
        let r = ReproductionReport(plan: p, runs: runs, ablation: ablation, evals: [:], ptq: [], kv: [], zeroShotTasks: [],
                                   zeroShotDir: "x", seconds: 1)
        let v = r.verdicts()
        func outcome(_ prefix: String) -> Verdict.Outcome? { v.first { $0.claim.hasPrefix(prefix) }?.outcome }
        XCTAssertEqual(outcome("Table 2"), .held)
        XCTAssertEqual(v.first { $0.claim.contains("bitnet-b1.58 and fp shrinks") }?.outcome, .held)
        XCTAssertEqual(v.first { $0.claim.contains("bitnet-b1 and fp shrinks") }?.outcome, .didNotHold)
        XCTAssertEqual(outcome("Fig. 2"), .held)
        XCTAssertEqual(outcome("Table 5"), .inconclusive, "no zero-shot data")
        let md = r.markdown()
        XCTAssertTrue(md.contains("## Verdicts") && md.contains("## Table 2") && md.contains("## Fig. 4") && md.contains("## Table 6"))
        XCTAssertNotNil(r.plots()["scaling-params.svg"])
    }
}
