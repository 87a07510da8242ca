import Foundation
import XCTest
@testable import BitNetKernels
import CBitNetKernels

/// Every elementwise kernel on every path this CPU has, against its portable _ref twin (and the quantizer against
/// its formula), at lengths with every kind of ragged tail of the 8-, 32-wide SIMD loops.
final class ElementwiseKernelsTests: XCTestCase {
    private let lengths = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 39, 40, 63, 64, 65, 95, 96, 97, 100, 255, 256, 257, 1000, 2560]

    private func forEachISA(_ body: (String) -> Void) {
        let seen = forEachSelectableISA(ElementwiseKernels.isaNames, active: ElementwiseKernels.activeISA,
                                        select: { ElementwiseKernels.selectISA($0) }, body)
        XCTAssertTrue(seen.contains("portable"))
    }

    /// Values in [-scale, scale), with a few exact zeros and, when `spikes`, outliers that set the absmax.
    private func inputs(_ n: Int, _ rng: inout KernelTestRNG, scale: Float = 4, spikes: Bool = true) -> [Float] {
        var x = (0..<n).map { _ in rng.float() * scale }
        if n > 4 { x[Int(rng.next() % UInt64(n))] = 0 }
        if spikes && n > 2 { x[Int(rng.next() % UInt64(n))] = -37.5; x[n - 1] = 21 }
        return x
    }

    func testSelectISA() {
        XCTAssertEqual(ElementwiseKernels.selectISA("portable"), "portable")
        XCTAssertEqual(bitnet_elementwise_isa(), BITNET_ELEMENTWISE_PORTABLE)
        let best = ElementwiseKernels.selectISA("avx2")
        XCTAssertTrue(["avx2", "portable"].contains(best))
        #if arch(x86_64)
        // The CPUs this project targets have AVX2 + FMA (the capped request gives it back unless BITNET_ISA forbids it).
        XCTAssertEqual(Int32(bitnet_elementwise_set_isa(BITNET_ELEMENTWISE_AVX2)), BITNET_ELEMENTWISE_AVX2)
        #endif
        ElementwiseKernels.selectISA(best)
    }

    // MARK: absmax (Eq. 7)

    func testAbsmaxMatchesRefAndMaxAbs() {
        var rng = KernelTestRNG(state: 21)
        forEachISA { isa in
            for n in lengths {
                for spikes in [false, true] {
                    let x = inputs(n, &rng, spikes: spikes)
                    let expected = x.reduce(Float(0)) { max($0, abs($1)) }
                    let ref = bitnet_absmax_ref(x, n)
                    XCTAssertEqual(ref.bitPattern, expected.bitPattern, "ref n=\(n)")
                    XCTAssertEqual(bitnet_absmax(x, n).bitPattern, ref.bitPattern, "\(isa) n=\(n)")
                }
            }
        }
    }

    // MARK: absmax quantization (Eq. 6)

    /// q = clamp(round_half_even(x * s), qn, qp), s = qp / (gamma + eps) (all in Float), dequant = q / s.
    private func formula(_ x: [Float], gamma: Float, qn: Float, qp: Float, eps: Float) -> (codes: [Int8], dequant: [Float]) {
        let s = qp / (gamma + eps)
        let q = x.map { min(max((($0 * s)).rounded(.toNearestOrEven), qn), qp) }
        return (q.map { Int8($0) }, q.map { $0 / s })
    }

    private func quantize(_ x: [Float], gamma: Float, qn: Float, qp: Float, eps: Float, codes wantCodes: Bool,
                          dequant wantDequant: Bool, ref: Bool) -> (codes: [Int8], dequant: [Float]) {
        let n = x.count
        var codes = [Int8](repeating: 99, count: n), dq = [Float](repeating: .nan, count: n)
        codes.withUnsafeMutableBufferPointer { c in
            dq.withUnsafeMutableBufferPointer { d in
                let cp = wantCodes ? c.baseAddress : nil, dp = wantDequant ? d.baseAddress : nil
                if ref { bitnet_absmax_quantize_ref(x, n, gamma, qn, qp, eps, dp, cp) }
                else { bitnet_absmax_quantize(x, n, gamma, qn, qp, eps, dp, cp) }
            }
        }
        return (codes, dq)
    }

    func testAbsmaxQuantizeMatchesRefAndFormula() {
        var rng = KernelTestRNG(state: 22)
        let eps: Float = 1e-5
        // 8-bit activations (Eq. 6 with b = 8), 4-bit, and a range past int8's (codes then only through dequant).
        let ranges: [(Float, Float)] = [(-128, 127), (-8, 7), (-127, 127)]
        forEachISA { isa in
            for n in lengths {
                for (qn, qp) in ranges {
                    let x = inputs(n, &rng)
                    let gamma = bitnet_absmax_ref(x, n)
                    let f = formula(x, gamma: gamma, qn: qn, qp: qp, eps: eps)
                    let ref = quantize(x, gamma: gamma, qn: qn, qp: qp, eps: eps, codes: true, dequant: true, ref: true)
                    XCTAssertEqual(ref.codes, f.codes, "ref codes n=\(n) [\(qn), \(qp)]")
                    XCTAssertEqual(ref.dequant.map(\.bitPattern), f.dequant.map(\.bitPattern), "ref dequant n=\(n)")
                    // Codes only (the decode path's 32-wide loop), dequant only, both.
                    let c = quantize(x, gamma: gamma, qn: qn, qp: qp, eps: eps, codes: true, dequant: false, ref: false)
                    XCTAssertEqual(c.codes, f.codes, "\(isa) codes only n=\(n) [\(qn), \(qp)]")
                    XCTAssertTrue(c.dequant.allSatisfy(\.isNaN), "\(isa) wrote dequant it was not given")
                    let d = quantize(x, gamma: gamma, qn: qn, qp: qp, eps: eps, codes: false, dequant: true, ref: false)
                    XCTAssertEqual(d.dequant.map(\.bitPattern), f.dequant.map(\.bitPattern), "\(isa) dequant only n=\(n)")
                    XCTAssertTrue(d.codes.allSatisfy { $0 == 99 }, "\(isa) wrote codes it was not given")
                    let b = quantize(x, gamma: gamma, qn: qn, qp: qp, eps: eps, codes: true, dequant: true, ref: false)
                    XCTAssertEqual(b.codes, f.codes, "\(isa) both n=\(n)")
                    XCTAssertEqual(b.dequant.map(\.bitPattern), f.dequant.map(\.bitPattern), "\(isa) both n=\(n)")
                }
            }
        }
    }

    /// Ties round to even and the clamp bounds hold: with gamma = qp and eps = 0 the scale is exactly 1.
    func testAbsmaxQuantizeTiesAndClamp() {
        let ties: [Float] = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -127.5, 127.5, 128.5, -128.5, 300, -300, 0, -0.0, 3.49, -3.51]
        forEachISA { isa in
            for n in [ties.count, 33, 64, 100] {
                let x = (0..<n).map { ties[$0 % ties.count] }
                let f = formula(x, gamma: 127, qn: -128, qp: 127, eps: 0)
                XCTAssertEqual(f.codes.prefix(6), [0, 2, 2, 0, -2, -2])
                for (wantCodes, wantDq) in [(true, false), (true, true), (false, true)] {
                    let r = quantize(x, gamma: 127, qn: -128, qp: 127, eps: 0, codes: wantCodes, dequant: wantDq, ref: false)
                    if wantCodes { XCTAssertEqual(r.codes, f.codes, "\(isa) n=\(n)") }
                    if wantDq { XCTAssertEqual(r.dequant.map(\.bitPattern), f.dequant.map(\.bitPattern), "\(isa) n=\(n)") }
                }
            }
        }
    }

    func testQuantizeRowsMatchesPortablePath() {
        let rng = KernelTestRNG(state: 23)
        let shapes = [(1, 1, 1), (3, 7, 1), (2, 64, 2), (4, 100, 4), (3, 257, 1), (2, 2560, 5)]
        var results: [String: [[Float]]] = [:]
        forEachISA { isa in
            var rngCopy = rng
            var outs: [[Float]] = []
            for (rows, cols, groups) in shapes {
                let x = (0..<(rows * cols)).map { _ in rngCopy.float() * 3 }
                var out = [Float](repeating: .nan, count: rows * cols)
                bitnet_quantize_rows(x, &out, 0, rows, cols, groups, -128, 127, 1e-5)
                // Each group by the formula with its own absmax.
                let gs = cols / groups
                for r in 0..<rows {
                    for g in 0..<groups {
                        let p = Array(x[(r * cols + g * gs)..<(r * cols + (g + 1) * gs)])
                        let f = formula(p, gamma: p.reduce(Float(0)) { max($0, abs($1)) }, qn: -128, qp: 127, eps: 1e-5)
                        XCTAssertEqual(Array(out[(r * cols + g * gs)..<(r * cols + (g + 1) * gs)]).map(\.bitPattern),
                                       f.dequant.map(\.bitPattern), "\(isa) \(rows)x\(cols)/\(groups) row \(r) group \(g)")
                    }
                }
                outs.append(out)
            }
            results[isa] = outs
        }
        if let a = results["avx2"], let p = results["portable"] {
            XCTAssertEqual(a.map { $0.map(\.bitPattern) }, p.map { $0.map(\.bitPattern) })
        }
    }

    // MARK: exp-based kernels

    /// |a - b| within `ulps` units in the last place of the larger magnitude (or `abs` absolutely).
    private func close(_ a: Float, _ b: Float, ulps: Float, abs absTol: Float = 0) -> Bool {
        if a.bitPattern == b.bitPattern { return true }
        let m = max(Swift.abs(a), Swift.abs(b))
        return Swift.abs(a - b) <= ulps * m.ulp + absTol
    }

    func testSwigluForwardMatchesRef() {
        var rng = KernelTestRNG(state: 24)
        forEachISA { isa in
            for n in lengths {
                let g = inputs(n, &rng, scale: 12, spikes: false), u = inputs(n, &rng, scale: 3, spikes: false)
                var h = [Float](repeating: .nan, count: n), r = h
                bitnet_swiglu_forward(&h, g, u, n)
                bitnet_swiglu_forward_ref(&r, g, u, n)
                for i in 0..<n {
                    let tail = i >= n - n % 8
                    if isa == "portable" || tail { XCTAssertEqual(h[i].bitPattern, r[i].bitPattern, "\(isa) n=\(n) i=\(i)") }
                    else { XCTAssertTrue(close(h[i], r[i], ulps: 8, abs: 1e-30), "\(isa) n=\(n) i=\(i): \(h[i]) vs \(r[i])") }
                }
                for i in 0..<n {   // and against the definition silu(g) * u
                    let gd = Double(g[i]), e = gd / (1 + Foundation.exp(-gd)) * Double(u[i])
                    XCTAssertEqual(Double(h[i]), e, accuracy: 1e-5 * max(1, Swift.abs(e)), "\(isa) n=\(n) i=\(i)")
                }
            }
        }
    }

    func testSwigluBackwardMatchesRef() {
        var rng = KernelTestRNG(state: 25)
        forEachISA { isa in
            for n in lengths {
                let g = inputs(n, &rng, scale: 12, spikes: false), u = inputs(n, &rng, scale: 3, spikes: false)
                let dh = inputs(n, &rng, scale: 2, spikes: false)
                var dg = [Float](repeating: .nan, count: n), du = dg, rg = dg, ru = dg
                bitnet_swiglu_backward(&dg, &du, dh, g, u, n)
                bitnet_swiglu_backward_ref(&rg, &ru, dh, g, u, n)
                for i in 0..<n {
                    // The SIMD path's scalar tail is compiled for FMA (the compiler may contract 1 + x (1 - s)), so
                    // only du is exact there.
                    let tail = i >= n - n % 8
                    if isa == "portable" || tail { XCTAssertEqual(du[i].bitPattern, ru[i].bitPattern, "\(isa) du n=\(n) i=\(i)") }
                    else { XCTAssertTrue(close(du[i], ru[i], ulps: 8, abs: 1e-30), "\(isa) du n=\(n) i=\(i): \(du[i]) vs \(ru[i])") }
                    if isa == "portable" { XCTAssertEqual(dg[i].bitPattern, rg[i].bitPattern, "\(isa) dg n=\(n) i=\(i)"); continue }
                    // dg = dh u s (1 + x (1 - s)): the factor in parentheses can cancel, so the bound is on the size of
                    // dh u s (1 + |x|).
                    let s = 1 / (1 + Foundation.exp(-Double(g[i])))
                    let scale = Float(Swift.abs(Double(dh[i]) * Double(u[i])) * s * (1 + Swift.abs(Double(g[i]))))
                    XCTAssertTrue(close(dg[i], rg[i], ulps: 8, abs: 8 * scale.ulp + 1e-30), "\(isa) dg n=\(n) i=\(i): \(dg[i]) vs \(rg[i])")
                }
            }
        }
    }

    func testExpShiftedSumMatchesRef() {
        var rng = KernelTestRNG(state: 26)
        forEachISA { isa in
            for n in lengths {
                let x = inputs(n, &rng, scale: 20, spikes: false)
                let shift = x.max() ?? 0
                var out = [Float](repeating: .nan, count: n), ref = out
                let sum = bitnet_exp_shifted_sum(x, &out, n, shift)
                let refSum = bitnet_exp_shifted_sum_ref(x, &ref, n, shift)
                let noOut = bitnet_exp_shifted_sum(x, nil, n, shift)
                XCTAssertEqual(noOut.bitPattern, sum.bitPattern, "\(isa) n=\(n): the sum without outputs")
                if isa == "portable" { XCTAssertEqual(sum.bitPattern, refSum.bitPattern, "\(isa) n=\(n)") }
                else { XCTAssertEqual(sum, refSum, accuracy: 1e-6 * max(1, refSum), "\(isa) n=\(n)") }
                var exact = 0.0
                for i in 0..<n {
                    exact += Foundation.exp(Double(x[i]) - Double(shift))
                    let tail = i >= n - n % 8
                    if isa == "portable" || tail { XCTAssertEqual(out[i].bitPattern, ref[i].bitPattern, "\(isa) n=\(n) i=\(i)") }
                    else { XCTAssertTrue(close(out[i], ref[i], ulps: 8, abs: 1e-37), "\(isa) n=\(n) i=\(i): \(out[i]) vs \(ref[i])") }
                }
                XCTAssertEqual(sum, exact, accuracy: 1e-5 * max(1, exact), "\(isa) n=\(n)")
            }
        }
    }
}
