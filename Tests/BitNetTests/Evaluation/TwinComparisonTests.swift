import XCTest
@testable import BitNetCore
@testable import BitNetEvaluation

/// The comparison over seeds: mean ± sd per variant and the paired gap's 95 % t interval, judged by the stated rule.
final class TwinComparisonTests: XCTestCase {
    func row(_ arch: Architecture, _ loss: Double) -> TwinComparison.Row {
        TwinComparison.Row(arch: arch, parameters: 1, finalTrainLoss: loss, valLoss: loss, perplexity: exp(loss), bitsPerByte: 1,
                           checkpointBytes: 1, inferenceBytes: 1, tokensPerSecond: 1, seconds: 1, sample: "")
    }

    func testSeedSummaryIntervalsAndVerdicts() {
        XCTAssertEqual(TwinComparison.t95(df: 2), 4.303)
        XCTAssertEqual(TwinComparison.t95(df: 100), 1.96)
        // Gaps 0.1, 0.2, 0.3: mean 0.2, sd 0.1, half-width 4.303 · 0.1 / √3 = 0.2484 → [−0.0484, +0.4484]: undecided.
        let wide = TwinComparison.seedSummary([[row(.b158, 3.1), row(.fp, 3.0)], [row(.b158, 3.3), row(.fp, 3.1)], [row(.b158, 3.5), row(.fp, 3.2)]],
                                              seeds: [1, 2, 3])
        XCTAssertTrue(wide.contains("gap bitnet-b1.58 − fp: +0.2000 nats, 95 % interval [-0.0484, +0.4484] (t, 3 seeds, paired): **undecided**"), wide)
        XCTAssertTrue(wide.contains("| held-out loss, mean ± sd | 3.3000 ± 0.2000 | 3.1000 ± 0.1000 |"), wide)
        // Gaps 0.01, 0.02, 0.015: the interval [+0.0026, +0.0274] lies within ±0.05: matches.
        let close = TwinComparison.seedSummary([[row(.b158, 3.01), row(.fp, 3.0)], [row(.b158, 3.12), row(.fp, 3.1)], [row(.b158, 2.915), row(.fp, 2.9)]],
                                               seeds: [1, 2, 3])
        XCTAssertTrue(close.contains("[+0.0026, +0.0274]") && close.contains("**matches**"), close)
        // b1.58 clearly ahead: the whole interval below −0.05.
        let ahead = TwinComparison.seedSummary([[row(.b158, 2.8), row(.fp, 3.0)], [row(.b158, 2.9), row(.fp, 3.1)], [row(.b158, 2.69), row(.fp, 2.9)]],
                                               seeds: [1, 2, 3])
        XCTAssertTrue(ahead.contains("**bitnet-b1.58 ahead**"), ahead)
        XCTAssertTrue(TwinComparison.seedSummary([[row(.b158, 3), row(.fp, 3)]], seeds: [1]).contains("One seed: no interval"))
    }
}
