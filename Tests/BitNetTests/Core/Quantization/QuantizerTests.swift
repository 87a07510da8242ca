import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

/// Quantizers against values computed by hand from Eq. 1-7 and 14-15.
final class QuantizerTests: XCTestCase {
    func ternary(_ w: [Float]) -> (codes: [Int8], deq: [Float], beta: Float) {
        var c = [Int8](repeating: 9, count: w.count), d = [Float](repeating: 9, count: w.count)
        let beta = Quantizer.absmeanTernary(w, count: w.count, codes: &c, dequant: &d)
        return (c, d, beta)
    }

    func testAbsmeanTernaryHandComputed() {
        // β = (0.5 + 1 + 0 + 0.25)/4 = 0.4375; W/β = [1.14, -2.29, 0, 0.571] → RoundClip → [1, -1, 0, 1].
        let r = ternary([0.5, -1.0, 0.0, 0.25])
        XCTAssertEqual(r.beta, 0.4375)
        XCTAssertEqual(r.codes, [1, -1, 0, 1])
        XCTAssertEqual(r.deq, [0.4375, -0.4375, 0, 0.4375])
    }

    func testAbsmeanThresholdIsHalfBeta() {
        // β = 1 for these: values just under β/2 go to 0, just over go to ±1.
        let r = ternary([0.49, -0.51, 1.0, -2.0])
        XCTAssertEqual(r.beta, 1.0)
        XCTAssertEqual(r.codes, [0, -1, 1, -1])
    }

    func testAllZeroWeightsGiveZerosNotNaN() {
        let r = ternary([0, 0, 0, 0])
        XCTAssertEqual(r.beta, 0)
        XCTAssertEqual(r.codes, [0, 0, 0, 0])
        XCTAssertEqual(r.deq, [0, 0, 0, 0])
    }

    func testEpsilonKeepsTinyWeightsFinite() {
        // β = 1e-7 is far below ε = 1e-5, so W/(β+ε) ≈ 0.01 rounds to 0 instead of exploding.
        let r = ternary([1e-7, -1e-7])
        XCTAssertEqual(r.codes, [0, 0])
        XCTAssertTrue(r.deq.allSatisfy { $0.isFinite })
    }

    func testRoundClipTiesToEven() {
        XCTAssertEqual(Quantizer.roundClip(0.5, -1, 1), 0)
        XCTAssertEqual(Quantizer.roundClip(-0.5, -1, 1), 0)
        XCTAssertEqual(Quantizer.roundClip(1.5, -128, 127), 2)
        XCTAssertEqual(Quantizer.roundClip(2.5, -128, 127), 2)
        XCTAssertEqual(Quantizer.roundClip(-3.5, -128, 127), -4)
        XCTAssertEqual(Quantizer.roundClip(300, -128, 127), 127)
        XCTAssertEqual(Quantizer.roundClip(-300, -128, 127), -128)
    }

    func testSignBinaryCentresByMean() {
        // α = 0.25, β = 0.25: Sign(W − α) = [-1, -1, 1, 1].
        var c = [Int8](repeating: 0, count: 4), d = [Float](repeating: 0, count: 4)
        let (alpha, beta) = Quantizer.signBinary([0.1, 0.2, 0.3, 0.4], count: 4, codes: &c, dequant: &d)
        XCTAssertEqual(alpha, 0.25, accuracy: 1e-7)
        XCTAssertEqual(beta, 0.25, accuracy: 1e-7)
        XCTAssertEqual(c, [-1, -1, 1, 1])
        XCTAssertEqual(d[0], -0.25, accuracy: 1e-7)
    }

    func testSignOfZeroIsMinusOne() {
        // Eq. 2: Sign(0) = −1; every W − α is 0 here.
        var c = [Int8](repeating: 0, count: 3)
        Quantizer.signBinary([2, 2, 2], count: 3, codes: &c)
        XCTAssertEqual(c, [-1, -1, -1])
    }

    func testGroupQuantizationHasOneBetaPerRowGroup() {
        // Rows [1, 1] and [0.1, -0.1]: one β would zero the second row; G = 2 keeps it (Eq. 14).
        let w: [Float] = [1, 1, 0.1, -0.1]
        var c = [Int8](repeating: 0, count: 4)
        let one = Quantizer.quantizeWeight(w, rows: 2, cols: 2, arch: .b158, groups: 1, codes: &c)
        XCTAssertEqual(one.count, 1)
        XCTAssertEqual(c, [1, 1, 0, 0])
        let two = Quantizer.quantizeWeight(w, rows: 2, cols: 2, arch: .b158, groups: 2, codes: &c)
        XCTAssertEqual(two[0], 1, accuracy: 1e-7)
        XCTAssertEqual(two[1], 0.1, accuracy: 1e-7)
        XCTAssertEqual(c, [1, 1, 1, -1])
    }

    func testAbsmaxActivationsPerToken() {
        // γ = 1: scale = 127/(1+1e-5); 0.5·scale = 63.4994 → 63.
        var codes = [Int8](repeating: 0, count: 4)
        let x: [Float] = [1, -1, 0.5, 0]
        Quantizer.absmaxQuantize(x, count: 4, gamma: Quantizer.absmax(x, count: 4), bits: 8, codes: &codes)
        XCTAssertEqual(codes, [127, -127, 63, 0])
        // 4 bits: Q_p = 7.
        Quantizer.absmaxQuantize(x, count: 4, gamma: 1, bits: 4, codes: &codes)
        XCTAssertEqual(codes, [7, -7, 3, 0])   // 0.5·7/(1+ε) = 3.49998 → 3
    }

    /// The vectorized absmax and codes (32 at a time through saturating packs, 8 at a time, then a scalar tail) equal
    /// the formula value by value at every length, with and without clamping.
    func testAbsmaxQuantizeMatchesTheFormulaAtEveryLength() {
        var rng = SeededRNG(seed: 77)
        for n in [1, 7, 8, 31, 32, 33, 40, 63, 64, 100, 2560, 6917] {
            var x = (0..<n).map { _ in (rng.nextUniform() * 2 - 1) * 3 }
            x[n / 2] = -7.25   // the largest magnitude, negative
            if n > 3 { x[1] = 0; x[2] = 3.5 }
            let gamma = x.map(abs).max()!
            XCTAssertEqual(Quantizer.absmax(x, count: n), gamma, "n \(n)")
            for bits in [8, 4] {
                for g in [gamma, gamma / 4] {   // gamma / 4: most values clamp to Q_n or Q_p
                    let (qn, qp) = Quantizer.signedRange(bits: bits)
                    let scale = qp / (g + Quantizer.epsilon)
                    let want = x.map { Int8(Quantizer.roundClip($0 * scale, qn, qp)) }
                    var codes = [Int8](repeating: 99, count: n)
                    Quantizer.absmaxQuantize(x, count: n, gamma: g, bits: bits, codes: &codes)
                    XCTAssertEqual(codes, want, "n \(n) bits \(bits) gamma \(g)")
                }
            }
        }
    }

    func testAllZeroActivationsStayZero() {
        var out = [Float](repeating: 1, count: 6)
        Quantizer.quantizeActivations([0, 0, 0, 0, 0, 0], rows: 2, cols: 3, bits: 8, scope: .perToken, out: &out)
        XCTAssertEqual(out, [0, 0, 0, 0, 0, 0])
    }

    func testPerTensorVersusPerTokenScope() {
        let x: [Float] = [1, 0, 0.5, 0]
        var tensor = [Float](repeating: 0, count: 4), token = tensor
        Quantizer.quantizeActivations(x, rows: 2, cols: 2, bits: 8, scope: .perTensor, out: &tensor)
        Quantizer.quantizeActivations(x, rows: 2, cols: 2, bits: 8, scope: .perToken, out: &token)
        let s1: Float = 127 / (1 + 1e-5), s2: Float = 127 / (0.5 + 1e-5)
        XCTAssertEqual(tensor[2], 63 / s1)          // shares γ = 1 with row 0
        XCTAssertEqual(token[2], 127 / s2)           // its own γ = 0.5
    }

    func testActivationGroupsHaveTheirOwnGamma() {
        // Features split in 2 groups: the small group keeps its resolution.
        let x: [Float] = [100, 0, 0.01, 0.005]
        var g1 = [Float](repeating: 0, count: 4), g2 = g1
        Quantizer.quantizeActivations(x, rows: 1, cols: 4, bits: 8, scope: .perToken, groups: 1, out: &g1)
        Quantizer.quantizeActivations(x, rows: 1, cols: 4, bits: 8, scope: .perToken, groups: 2, out: &g2)
        XCTAssertEqual(g1[2], 0)                     // 0.01·127/100 rounds to 0
        XCTAssertEqual(g2[2], 0.01, accuracy: 1e-4)
        XCTAssertEqual(g2[3], 0.005, accuracy: 1e-4)
    }

    func testUnsignedQuantizationAfterNonLinearity() {
        // η = 0, range 3: scale = 255/3.00001 → codes 0, 85, 170, 255.
        var out = [Float](repeating: 0, count: 4)
        Quantizer.quantizeActivations([0, 1, 2, 3], rows: 1, cols: 4, bits: 8, scope: .perToken, unsigned: true, out: &out)
        let scale: Float = 255 / (3 + 1e-5)
        XCTAssertEqual(out, [0, 85 / scale, 170 / scale, 255 / scale])
        // With a negative minimum the zero point shifts: η = −1.
        Quantizer.quantizeActivations([-1, 0, 1, 2], rows: 1, cols: 4, bits: 8, scope: .perToken, unsigned: true, out: &out)
        XCTAssertEqual(out[0], -1, accuracy: 1e-6)
        XCTAssertEqual(out[3], 2, accuracy: 1e-4)
    }
}
