import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

/// Finite-difference checks of every layer's hand-written backward: L = Σ out·R for a fixed random R,
/// so ∂L/∂out = R, and central differences of L must match the analytic gradient.
final class GradientCheckTests: XCTestCase {
    /// Compares analytic gradients with central differences at every input coordinate.
    func check(_ name: String, input: [Float], analytic: [Float], h: Float = 1e-2, tol: Float = 2e-2,
               loss: ([Float]) -> Double, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(input.count, analytic.count, file: file, line: line)
        var x = input
        var worst: Float = 0
        for i in 0..<x.count {
            let orig = x[i]
            x[i] = orig + h; let lp = loss(x)
            x[i] = orig - h; let lm = loss(x)
            x[i] = orig
            let numeric = Float((lp - lm) / Double(2 * h))
            let err = abs(numeric - analytic[i]) / max(1, abs(numeric), abs(analytic[i]))
            worst = max(worst, err)
        }
        XCTAssertLessThan(worst, tol, "\(name): worst relative error \(worst)", file: file, line: line)
    }

    func dot(_ a: [Float], _ b: [Float]) -> Double { zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) } }

    func testRMSNormBackward() {
        for groups in [1, 2] {
            let n = 3, d = 8
            let x0 = randomArray(n * d, seed: 1), w0 = randomArray(d, seed: 2).map { 1 + $0 * 0.5 }, r = randomArray(n * d, seed: 3)
            func fwd(_ x: [Float], _ w: [Float]) -> [Float] {
                var out = [Float](repeating: 0, count: n * d)
                RMSNorm.forward(out: &out, rstd: nil, x: x, weight: w, rows: n, dim: d, groups: groups, eps: 1e-5)
                return out
            }
            var rstd = [Float](repeating: 0, count: n * groups), out = [Float](repeating: 0, count: n * d)
            RMSNorm.forward(out: &out, rstd: &rstd, x: x0, weight: w0, rows: n, dim: d, groups: groups, eps: 1e-5)
            var dx = [Float](repeating: 0, count: n * d), dw = [Float](repeating: 0, count: d)
            RMSNorm.backward(dx: &dx, dweight: &dw, dout: r, x: x0, weight: w0, rstd: rstd, rows: n, dim: d, groups: groups)
            check("rmsnorm dx G=\(groups)", input: x0, analytic: dx) { self.dot(fwd($0, w0), r) }
            check("rmsnorm dw G=\(groups)", input: w0, analytic: dw) { self.dot(fwd(x0, $0), r) }
        }
    }

    func testGatedActivationBackward() {
        for kind in [FFNKind.swiglu, .relu2] {
            let n = 20
            // Keep gates away from ReLU's kink at 0 so differences are smooth.
            let g0 = randomArray(n, seed: 4).map { $0 + ($0 >= 0 ? 0.1 : -0.1) }, u0 = randomArray(n, seed: 5), r = randomArray(n, seed: 6)
            func fwd(_ g: [Float], _ u: [Float]) -> [Float] {
                var h = [Float](repeating: 0, count: n)
                GatedActivation.forward(h: &h, gate: g, up: u, count: n, kind: kind)
                return h
            }
            var dg = [Float](repeating: 0, count: n), du = dg
            GatedActivation.backward(dgate: &dg, dup: &du, dh: r, gate: g0, up: u0, count: n, kind: kind)
            check("\(kind) dgate", input: g0, analytic: dg, h: 1e-3) { self.dot(fwd($0, u0), r) }
            check("\(kind) dup", input: u0, analytic: du, h: 1e-3) { self.dot(fwd(g0, $0), r) }
        }
    }

    func testRopeBackwardIsInverseRotation() {
        let heads = 2, hd = 8, t = 5
        let rope = Rope(headDim: hd, maxSeqLen: t, theta: 10000)
        let x0 = randomArray(t * heads * hd, seed: 7), r = randomArray(t * heads * hd, seed: 8)
        func fwd(_ x: [Float]) -> [Float] { var y = x; rope.forward(&y, rows: t, seqLen: t, heads: heads); return y }
        var dx = r
        rope.backward(&dx, rows: t, seqLen: t, heads: heads)
        check("rope", input: x0, analytic: dx, h: 1e-2) { self.dot(fwd($0), r) }
        // A rotation preserves norms.
        XCTAssertEqual(dot(fwd(x0), fwd(x0)), dot(x0, x0), accuracy: 1e-4)
    }

    func testAttentionBackwardWithGroupedHeads() {
        let b = 2, t = 4, nh = 4, nkv = 2, hd = 4
        let att = CausalAttention(nHeads: nh, nKVHeads: nkv, headDim: hd)
        let q0 = randomArray(b * t * nh * hd, seed: 9), k0 = randomArray(b * t * nkv * hd, seed: 10), v0 = randomArray(b * t * nkv * hd, seed: 11)
        let r = randomArray(b * t * nh * hd, seed: 12)
        func fwd(_ q: [Float], _ k: [Float], _ v: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: b * t * nh * hd), p = [Float](repeating: 0, count: b * nh * t * t)
            att.forward(out: &out, probs: &p, q: q, k: k, v: v, batch: b, seqLen: t)
            return out
        }
        var out = [Float](repeating: 0, count: b * t * nh * hd), p = [Float](repeating: 0, count: b * nh * t * t)
        att.forward(out: &out, probs: &p, q: q0, k: k0, v: v0, batch: b, seqLen: t)
        var dq = [Float](repeating: 0, count: q0.count), dk = [Float](repeating: 0, count: k0.count), dv = dk
        att.backward(dq: &dq, dk: &dk, dv: &dv, dout: r, probs: p, q: q0, k: k0, v: v0, batch: b, seqLen: t)
        check("attention dq", input: q0, analytic: dq) { self.dot(fwd($0, k0, v0), r) }
        check("attention dk", input: k0, analytic: dk) { self.dot(fwd(q0, $0, v0), r) }
        check("attention dv", input: v0, analytic: dv) { self.dot(fwd(q0, k0, $0), r) }
        // Causality: the first token's output depends only on itself.
        var v1 = v0
        v1[(t - 1) * nkv * hd] += 5
        XCTAssertEqual(Array(fwd(q0, k0, v1)[0..<nh * hd]), Array(out[0..<nh * hd]))
    }

    func testCrossEntropyGradient() {
        let n = 3, v = 7
        let logits0 = randomArray(n * v, seed: 13, scale: 3), targets = [1, 6, 0]
        func loss(_ l: [Float]) -> Double {
            var c = l
            return Double(CrossEntropy.forwardBackward(logits: &c, targets: targets, vocab: v, gradient: false))
        }
        var g = logits0
        let value = CrossEntropy.forwardBackward(logits: &g, targets: targets, vocab: v, gradient: true)
        // Reference value by the formula −log softmax.
        var ref = 0.0
        for r in 0..<n {
            let row = logits0[r * v..<(r + 1) * v].map(Double.init)
            ref += log(row.map { exp($0) }.reduce(0, +)) - row[targets[r]]
        }
        XCTAssertEqual(Double(value), ref / Double(n), accuracy: 1e-5)
        check("cross-entropy", input: logits0, analytic: g, h: 1e-2, loss: loss)
    }

    func testFullPrecisionLinearBackward() {
        let n = 3, i = 5, o = 4
        let x0 = randomArray(n * i, seed: 14), w0 = randomArray(o * i, seed: 15), r = randomArray(n * o, seed: 16)
        func fwd(_ x: [Float], _ w: [Float]) -> [Float] {
            var y = [Float](repeating: 0, count: n * o)
            BitLinear.forward(y: &y, xq: x, wq: w, rows: n, in: i, out: o)
            return y
        }
        var dx = [Float](repeating: 0, count: n * i), dw = [Float](repeating: 0, count: o * i)
        BitLinear.backward(dx: &dx, dw: &dw, dy: r, xq: x0, wq: w0, rows: n, in: i, out: o, accumulateDx: false)
        check("linear dx", input: x0, analytic: dx) { self.dot(fwd($0, w0), r) }
        check("linear dw", input: w0, analytic: dw) { self.dot(fwd(x0, $0), r) }
    }

    func testStraightThroughEstimatorPassesGradientsUnchanged() {
        // STE (Sec. 2.2.1): the backward of BitLinear uses the quantized operands as if quantization were the identity:
        // dx = dy·W̃β and dW = dyᵀ·x̃, computed here by hand.
        let n = 2, i = 4, o = 3
        let x = randomArray(n * i, seed: 17), w = randomArray(o * i, seed: 18), dy = randomArray(n * o, seed: 19)
        let q = LinearQuantization(arch: .b158)
        var wq = [Float](repeating: 0, count: o * i), xq = [Float](repeating: 0, count: n * i)
        BitLinear.quantizeWeight(w, out: o, in: i, q: q, into: &wq)
        BitLinear.quantizeInput(x, rows: n, in: i, q: q, training: true, into: &xq)
        var dx = [Float](repeating: 0, count: n * i), dw = [Float](repeating: 0, count: o * i)
        BitLinear.backward(dx: &dx, dw: &dw, dy: dy, xq: xq, wq: wq, rows: n, in: i, out: o, accumulateDx: false)
        for r in 0..<n { for c in 0..<i {
            let e = (0..<o).reduce(Float(0)) { $0 + dy[r * o + $1] * wq[$1 * i + c] }
            XCTAssertEqual(dx[r * i + c], e, accuracy: 1e-5)
        } }
        for r in 0..<o { for c in 0..<i {
            let e = (0..<n).reduce(Float(0)) { $0 + dy[$1 * o + r] * xq[$1 * i + c] }
            XCTAssertEqual(dw[r * i + c], e, accuracy: 1e-5)
        } }
        // And the quantized weight really is ternary times β.
        let beta = w.map(abs).reduce(0, +) / Float(w.count)
        for v in wq { XCTAssertTrue(v == 0 || abs(abs(v) - beta) < 1e-6) }
    }

    func testEmbeddingBackwardAccumulatesRepeatedTokens() {
        var table = [Float](repeating: 0, count: 3 * 2)
        Embedding.backward(dtable: &table, dout: [1, 2, 3, 4, 5, 6], tokens: [2, 0, 2], dim: 2)
        XCTAssertEqual(table, [3, 4, 0, 0, 6, 8])
    }
}
