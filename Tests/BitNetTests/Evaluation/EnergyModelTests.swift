import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

/// The arithmetic energy model (Sec. 2.3, Eqs. 10-12, Table 1) against hand arithmetic and the paper's Table 2.
final class EnergyModelTests: XCTestCase {
    /// dim 8, 1 layer, 2 heads (head_dim 4), 1 KV head (kv_dim 4), gated FFN 16, vocab 10.
    let tiny = ModelConfig(arch: .b158, vocabSize: 10, dim: 8, nLayers: 1, nHeads: 2, nKVHeads: 1, ffnDim: 16)

    func assertPair(_ got: EnergyPair, mulPJ: Double, addPJ: Double, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.mul, mulPJ * 1e-12, accuracy: 1e-9 * mulPJ * 1e-12 + 1e-24, "mul", file: file, line: line)
        XCTAssertEqual(got.add, addPJ * 1e-12, accuracy: 1e-9 * addPJ * 1e-12 + 1e-24, "add", file: file, line: line)
    }

    func testTableOneValues() {
        XCTAssertEqual(ArithmeticEnergy.picojoules(.fp32, .nm45).add, 0.9); XCTAssertEqual(ArithmeticEnergy.picojoules(.fp32, .nm45).mul, 3.7)
        XCTAssertEqual(ArithmeticEnergy.picojoules(.fp32, .nm7).add, 0.38); XCTAssertEqual(ArithmeticEnergy.picojoules(.fp32, .nm7).mul, 1.31)
        XCTAssertEqual(ArithmeticEnergy.picojoules(.fp16, .nm45).add, 0.4); XCTAssertEqual(ArithmeticEnergy.picojoules(.fp16, .nm45).mul, 1.1)
        XCTAssertEqual(ArithmeticEnergy.picojoules(.fp16, .nm7).add, 0.16); XCTAssertEqual(ArithmeticEnergy.picojoules(.fp16, .nm7).mul, 0.34)
        XCTAssertEqual(ArithmeticEnergy.picojoules(.int8, .nm45).add, 0.03); XCTAssertEqual(ArithmeticEnergy.picojoules(.int8, .nm45).mul, 0.2)
        XCTAssertEqual(ArithmeticEnergy.picojoules(.int8, .nm7).add, 0.007); XCTAssertEqual(ArithmeticEnergy.picojoules(.int8, .nm7).mul, 0.07)
    }

    func testTinyProductShapes() {
        let ps = EnergyModel.products(config: tiny, tokens: 4)
        XCTAssertEqual(ps.map(\.name), ["wq", "wk", "wv", "wo", "w1", "w3", "w2"])
        XCTAssertEqual(ps.map { [$0.m, $0.n] }, [[8, 8], [4, 8], [4, 8], [8, 8], [16, 8], [16, 8], [8, 16]])
        XCTAssertTrue(ps.allSatisfy { $0.p == 4 && $0.count == 1 && $0.kind == .bitLinear })
        let plain = EnergyModel.products(config: tiny, tokens: 4, options: EnergyOptions(ffnLayout: .plain))
        XCTAssertEqual(plain.map(\.name), ["wq", "wk", "wv", "wo", "w1", "w2"])
    }

    func testTinyHandComputed7nm() {
        // p = 4. Per product m·n / m·(n−1) / m+n:
        //   wq 8x8: 64/56/16, wk 4x8: 32/28/12, wv 4x8: 32/28/12, wo 8x8: 64/56/16,
        //   w1 16x8: 128/112/24, w3 16x8: 128/112/24, w2 8x16: 128/120/24
        //   Σ m·n = 576, Σ m·(n−1) = 512, Σ (m+n) = 128.
        // MULs (Eq. 11) = 576·4 = 2304; ADDs (Eq. 10) = 512·4 = 2048; BitNet MULs (Eq. 12) = 128·4 = 512.
        // FP32 7nm: MUL 2304·1.31 = 3018.24 pJ, ADD 2048·0.38 = 778.24 pJ  → 3796.48 pJ
        // FP16 7nm: MUL 2304·0.34 = 783.36 pJ,  ADD 2048·0.16 = 327.68 pJ  → 1111.04 pJ
        // BitNet:   MUL 512·0.34 (FP16) = 174.08 pJ, ADD 2048·0.007 (INT8) = 14.336 pJ → 188.416 pJ
        let r = EnergyModel.estimate(config: tiny, tokens: 4, node: .nm7)
        assertPair(r.fp32, mulPJ: 3018.24, addPJ: 778.24)
        assertPair(r.fp16, mulPJ: 783.36, addPJ: 327.68)
        assertPair(r.bitnet, mulPJ: 174.08, addPJ: 14.336)
        assertPair(r.bitnetPerToken, mulPJ: 174.08 / 4, addPJ: 14.336 / 4)
        assertPair(r.fp32PerToken, mulPJ: 3018.24 / 4, addPJ: 778.24 / 4)
        XCTAssertEqual(r.ratioFP32, 3796.48 / 188.416, accuracy: 1e-9)  // 20.149...
        XCTAssertEqual(r.ratioFP16, 1111.04 / 188.416, accuracy: 1e-9)  // 5.8967...
        // wk alone: FP16 MUL 32·4·0.34 = 43.52 pJ, ADD 28·4·0.16 = 17.92 pJ; BitNet MUL 12·4·0.34 = 16.32, ADD 28·4·0.007 = 0.784.
        let wk = r.products[1]
        XCTAssertEqual(wk.product.name, "wk")
        assertPair(wk.fp16, mulPJ: 43.52, addPJ: 17.92)
        assertPair(wk.bitnet, mulPJ: 16.32, addPJ: 0.784)
    }

    func testTinyHeadAndAttentionAt45nm() {
        // Head 10x8, p = 4: MUL 80·4 = 320, ADD 70·4 = 280; full precision (FP16) in BitNet at 45nm:
        //   320·1.1 = 352 pJ, 280·0.4 = 112 pJ. FP32: 320·3.7 = 1184, 280·0.9 = 252.
        // Attention, 2 heads of head_dim 4, 1 layer: QKᵀ m=p=4, n=4, p=4 → 64 MUL, 4·3·4 = 48 ADD per head;
        //   AV m=4, n=p=4, p=4 → 64 MUL, 48 ADD per head; all: 256 MUL, 192 ADD. BitNet FP16: 281.6 pJ, 76.8 pJ.
        // BitLinear at 45nm: BitNet MUL 512·1.1 = 563.2, ADD 2048·0.03 = 61.44; FP32 MUL 2304·3.7 = 8524.8, ADD 2048·0.9 = 1843.2.
        let r = EnergyModel.estimate(config: tiny, tokens: 4, node: .nm45,
                                     options: EnergyOptions(includeHead: true, includeAttention: true))
        XCTAssertEqual(r.products.map(\.product.name), ["wq", "wk", "wv", "wo", "w1", "w3", "w2", "qk", "av", "head"])
        let head = r.products.last!
        assertPair(head.bitnet, mulPJ: 352, addPJ: 112)
        assertPair(head.fp32, mulPJ: 1184, addPJ: 252)
        assertPair(r.bitnet, mulPJ: 563.2 + 281.6 + 352, addPJ: 61.44 + 76.8 + 112)
        assertPair(r.fp32, mulPJ: 8524.8 + 256 * 3.7 + 1184, addPJ: 1843.2 + 192 * 0.9 + 252)
    }

    func testMatmulRatio71xAt7nm() {
        // One N×N by N×N product: FP16 = N²(N−1)·0.16 + N³·0.34 ≈ 0.5·N³ pJ; BitNet = N²(N−1)·0.007 + 2N²·0.34.
        // As N grows the ratio tends to 0.5/0.007 = 71.43 (the paper's "71.4x"); at N = 65536 it is within 0.2%.
        let n = 65536
        let x = MatrixProduct(name: "square", kind: .bitLinear, m: n, n: n, p: n, count: 1)
        let fp16 = EnergyModel.fullPrecision(x, .fp16, .nm7).total
        let bit = EnergyModel.bitnet(x, .nm7).total
        XCTAssertEqual(fp16 / bit, 71.4, accuracy: 71.4 * 0.005)
        XCTAssertEqual(0.5 / 0.007, 71.43, accuracy: 0.01)
    }

    func testTable2SixPointSevenBAt512Tokens() throws {
        // Reproduction of Table 2 (p = 512). What reproduces it: the Table 10 shape (hidden 4096, 32 layers, 32 heads)
        // with a plain 4x MLP (two matrices, w1 [4d x d], w2 [d x 4d]), no output head, PLUS the attention products
        // QKᵀ and AV over the full 512×512 (no causal halving), in FP32/FP16 for the baselines and FP16 in BitNet.
        // Without attention, FP32 7nm MUL is 4.32 J, not 4.41 J. A 32000-vocab head instead of attention also gives
        // 4.41 J here but 8.55 J (paper: 8.58) for 13B; attention matches all three sizes (next test).
        // Tolerance: the paper rounds to 0.01 J, so |ours − paper| ≤ 0.005 J (+1e-4 slack) for every FP32/FP16 entry
        // and for the BitNet MUL entries and 45nm ADD. Known mismatch: the BitNet 7nm ADD computes 0.0340 J
        // (INT8 linears 0.0231 + FP16 attention 0.0110) where the paper prints 0.04; that entry is checked at ±0.01.
        let (c, ffn) = try XCTUnwrap(EnergyModel.paperPreset("6.7b"))
        XCTAssertEqual(ffn, .plain)
        let o = EnergyOptions(includeHead: false, includeAttention: true, ffnLayout: ffn)
        let r7 = EnergyModel.estimate(config: c, tokens: 512, node: .nm7, options: o)
        let r45 = EnergyModel.estimate(config: c, tokens: 512, node: .nm45, options: o)
        let tol = 0.005 + 1e-4
        // Paper rows: WBits 32, 16, 1 — (7nm MUL, 7nm ADD, 45nm MUL, 45nm ADD).
        let paper: [(EnergyPair, EnergyPair, [Double], Double)] = [
            (r7.fp32, r45.fp32, [4.41, 1.28, 12.46, 3.03], tol),
            (r7.fp16, r45.fp16, [1.14, 0.54, 3.70, 1.35], tol),
            (r7.bitnet, r45.bitnet, [0.02, 0.04, 0.08, 0.13], tol),
        ]
        for (i, (a, b, want, t)) in paper.enumerated() {
            XCTAssertEqual(a.mul, want[0], accuracy: t, "row \(i) 7nm MUL")
            XCTAssertEqual(a.add, want[1], accuracy: i == 2 ? 0.01 : t, "row \(i) 7nm ADD")
            XCTAssertEqual(b.mul, want[2], accuracy: t, "row \(i) 45nm MUL")
            XCTAssertEqual(b.add, want[3], accuracy: t, "row \(i) 45nm ADD")
        }
        XCTAssertEqual(r7.bitnet.add, 0.0340, accuracy: 0.0005)
        // Without the attention products the same shape gives 4.32 J, outside rounding of the paper's 4.41 J.
        let linOnly = EnergyModel.estimate(config: c, tokens: 512, node: .nm7, options: EnergyOptions(ffnLayout: .plain))
        XCTAssertEqual(linOnly.fp32.mul, 4.32, accuracy: tol)
    }

    func testTable2LargerSizesAt512Tokens() {
        // Same recipe for 13B and 30B (Table 10 shapes): every FP32/FP16 entry within rounding (±0.005 J);
        // BitNet entries within ±0.01 J (30B 7nm ADD computes 0.1348 vs the paper's 0.14).
        let cases: [(String, [[Double]])] = [
            ("13b", [[8.58, 2.49, 24.23, 5.89], [2.23, 1.05, 7.20, 2.62], [0.04, 0.06, 0.12, 0.24]]),
            ("30b", [[20.09, 5.83, 56.73, 13.80], [5.21, 2.45, 16.87, 6.13], [0.06, 0.14, 0.20, 0.53]]),
        ]
        for (name, rows) in cases {
            let (c, ffn) = EnergyModel.paperPreset(name)!
            let o = EnergyOptions(includeAttention: true, ffnLayout: ffn)
            let r7 = EnergyModel.estimate(config: c, tokens: 512, node: .nm7, options: o)
            let r45 = EnergyModel.estimate(config: c, tokens: 512, node: .nm45, options: o)
            for (i, (a, b)) in [(r7.fp32, r45.fp32), (r7.fp16, r45.fp16), (r7.bitnet, r45.bitnet)].enumerated() {
                let t = i == 2 ? 0.01 : 0.005 + 1e-4
                XCTAssertEqual(a.mul, rows[i][0], accuracy: t, "\(name) row \(i) 7nm MUL")
                XCTAssertEqual(a.add, rows[i][1], accuracy: t, "\(name) row \(i) 7nm ADD")
                XCTAssertEqual(b.mul, rows[i][2], accuracy: t, "\(name) row \(i) 45nm MUL")
                XCTAssertEqual(b.add, rows[i][3], accuracy: t, "\(name) row \(i) 45nm ADD")
            }
        }
    }

    func testPaperPresetsValidate() throws {
        for name in EnergyModel.paperPresetNames {
            let (c, _) = try XCTUnwrap(EnergyModel.paperPreset(name), name)
            XCTAssertNoThrow(try c.validate(), name)
        }
        let b = EnergyModel.paperPreset("2b4t")!.config
        XCTAssertEqual([b.dim, b.nLayers, b.nHeads, b.nKVHeads, b.ffnDim, b.vocabSize, b.kvDim], [2560, 30, 20, 5, 6912, 128256, 640])
        XCTAssertNil(EnergyModel.paperPreset("nope"))
    }
}
