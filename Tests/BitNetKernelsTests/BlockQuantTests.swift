import XCTest
@testable import BitNetKernels
import CBitNetKernels

/// Runs `body` once on every dense-kernel path this CPU can take (selectISA caps requests), then restores the path.
func forEachDenseISA(_ body: (String) -> Void) {
    let original = DenseKernels.activeISA
    defer { DenseKernels.selectISA(original) }
    var seen: [String] = []
    for name in DenseKernels.isaNames {
        let got = DenseKernels.selectISA(name)
        if !seen.contains(got) { seen.append(got) }
    }
    for isa in seen {
        DenseKernels.selectISA(isa)
        body(isa)
    }
}

final class BlockQuantTests: XCTestCase {
    private let colsList = [1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 100, 127, 128, 129, 200, 257]

    // MARK: reference quantizer (the layout of bitnet_blockquant.h, written out independently)

    /// Scale of a q6/q4 block: the smallest f16 >= absmax / Q, saturated at 65504; as (f16 bits, f32 value).
    private func refScale(_ amax: Float, _ qmax: Float) -> (UInt16, Float) {
        #if !(os(macOS) && arch(x86_64))
        if amax == 0 { return (0, 0) }
        let d = amax / qmax
        var h = Float16(d)
        if !h.isFinite || h > Float16.greatestFiniteMagnitude { h = .greatestFiniteMagnitude }
        if Float(h) < d { h = h.nextUp }
        if !h.isFinite { h = .greatestFiniteMagnitude }
        return (h.bitPattern, Float(h))
        #else
        let h = bitnet_f32_to_f16_scalar(amax / qmax)   // Float16 is unavailable on macOS x86_64
        return (h, bitnet_f16_to_f32_scalar(h))
        #endif
    }

    /// Codes and scale of one block of up to 32 values, as documented: q8 d = absmax / 127, q6/q4 d = smallest f16 >=
    /// absmax / Q; q = round-half-even(v / d) clamped to [-Q, Q], NaN -> 0.
    private func refBlock(_ blk: [Float], _ format: BlockQuantFormat) -> (q: [Int], d: Float, f16: UInt16) {
        let qmax = Float(format.maxCode)
        let amax = blk.reduce(Float(0)) { $1.magnitude > $0 ? $1.magnitude : $0 }   // NaN never wins
        var q = [Int](repeating: 0, count: 32)
        var d: Float = 0, h: UInt16 = 0
        if format == .q8 { d = amax / 127 } else { (h, d) = refScale(amax, qmax) }
        if d > 0 {
            for (i, v) in blk.enumerated() {
                let r = (v / d).rounded(.toNearestOrEven)
                q[i] = r.isNaN ? 0 : Int(min(max(r, -qmax), qmax))
            }
        }
        return (q, d, h)
    }

    /// Expected bytes of one row (q8 blocks / q6-q4 groups packed as documented) and its per-block scales.
    private func refRow(_ x: ArraySlice<Float>, _ format: BlockQuantFormat) -> (bytes: [UInt8], scales: [Float]) {
        let xs = Array(x)
        var out: [UInt8] = [], scales: [Float] = []
        if format == .q8 {
            for b in stride(from: 0, to: xs.count, by: 32) {
                let (q, d, _) = refBlock(Array(xs[b..<min(b + 32, xs.count)]), format)
                withUnsafeBytes(of: d.bitPattern.littleEndian) { out += $0 }
                out += q.map { UInt8(bitPattern: Int8($0)) }
                scales.append(d)
            }
            return (out, scales)
        }
        let offset = format == .q6 ? 32 : 8
        for g in stride(from: 0, to: xs.count, by: 128) {
            var c = [Int](repeating: offset, count: 128), head: [UInt8] = []
            for b in 0..<4 {
                let lo = g + 32 * b
                guard lo < xs.count else { head += [0, 0]; continue }
                let (q, d, h) = refBlock(Array(xs[lo..<min(lo + 32, xs.count)]), format)
                head += [UInt8(h & 0xff), UInt8(h >> 8)]
                scales.append(d)
                for i in 0..<32 { c[32 * b + i] = q[i] + offset }
            }
            out += head
            out += (0..<64).map { j in UInt8((c[j] & 15) | (c[j + 64] & 15) << 4) }
            if format == .q6 {
                out += (0..<32).map { j in UInt8((0..<4).reduce(0) { $0 | (c[j + 32 * $1] >> 4) << (2 * $1) }) }
            }
        }
        return (out, scales)
    }

    // MARK: quantization

    func testBlockBytesAndStrides() {
        XCTAssertEqual(BlockQuantFormat.allCases.map(\.groupBytes), [36, 104, 72])
        XCTAssertEqual(BlockQuantFormat.allCases.map(\.groupSize), [32, 128, 128])
        XCTAssertEqual(BlockQuantFormat.allCases.map(\.bitsPerWeight), [9, 6.5, 4.5])
        XCTAssertEqual(BlockQuantFormat.q6.rowStride(cols: 2560), 20 * 104)
        XCTAssertEqual(BlockQuantFormat.q4.rowStride(cols: 33), 72)
        XCTAssertEqual(BlockQuantFormat.q4.rowStride(cols: 129), 2 * 72)
        XCTAssertEqual(BlockQuantFormat.q8.rowStride(cols: 100), DenseKernels.q8RowStride(cols: 100))
    }

    func testQuantizeMatchesReferenceLayoutAndRoundTrip() {
        var rng = KernelTestRNG(state: 21)
        for format in BlockQuantFormat.allCases {
            for cols in colsList {
                let rows = 5
                var w = (0..<(rows * cols)).map { _ in rng.float() * Float(1 << Int(rng.next() % 8)) * 0.01 }
                for j in 0..<cols { w[2 * cols + j] = 0 }   // an all-zero row
                let m = BlockQuantMatrix.quantize(values: w, rows: rows, cols: cols, format: format, pool: nil)
                XCTAssertEqual(m.bytes.count, rows * ((cols + format.groupSize - 1) / format.groupSize) * format.groupBytes)
                let dq = m.dequantize()
                var row = [Float](repeating: .nan, count: cols)
                for r in 0..<rows {
                    let (want, scales) = refRow(w[(r * cols)..<((r + 1) * cols)], format)
                    XCTAssertEqual(Array(m.bytes[(r * m.rowStride)..<((r + 1) * m.rowStride)]), want, "\(format) \(rows)x\(cols) row \(r)")
                    for j in 0..<cols {
                        let d = scales[j / 32]
                        XCTAssertLessThanOrEqual(abs(w[r * cols + j] - dq[r * cols + j]), d / 2 * (1 + 1e-6), "\(format) \(cols) [\(r), \(j)]")
                    }
                    m.dequantizeRow(r, into: &row)
                    XCTAssertEqual(row, Array(dq[(r * cols)..<((r + 1) * cols)]), "\(format) dequantizeRow \(r)")
                }
                XCTAssertTrue(dq[(2 * cols)..<(3 * cols)].allSatisfy { $0 == 0 })
                // Quantizing the dequantized values is a fixed point; the split over threads changes nothing.
                let again = BlockQuantMatrix.quantize(values: dq, rows: rows, cols: cols, format: format, pool: ThreadPool(threadCount: 2))
                XCTAssertEqual(again.dequantize(), dq, "\(format) \(cols)")
            }
        }
        // q8 is the Q8Matrix layout.
        let w = (0..<(7 * 70)).map { _ in rng.float() }
        XCTAssertEqual(BlockQuantMatrix.quantize(values: w, rows: 7, cols: 70, format: .q8).bytes,
                       DenseKernels.quantizeQ8(w, rows: 7, cols: 70).bytes)
    }

    func testRoundingHalfToEvenAndScaleRoundsUp() {
        // q4, absmax 7: d = 1 exactly; 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -3.5 -> -4.
        var w: [Float] = [7, 0.5, 1.5, 2.5, -3.5, -6.5, 0.49]
        let q4 = BlockQuantMatrix.quantize(values: w, rows: 1, cols: w.count, format: .q4, pool: nil)
        XCTAssertEqual(q4.bytes[0..<2], [0x00, 0x3c])   // f16 1.0
        XCTAssertEqual(q4.dequantize(), [7, 0, 2, 2, -4, -6, 0])
        // q6, absmax 1: 1/31 is not an f16; the scale is the next f16 above it, so the max code is 31 without clamping.
        w = [1, -1, 0.5]
        let q6 = BlockQuantMatrix.quantize(values: w, rows: 1, cols: 3, format: .q6, pool: nil)
        let d = bitnet_f16_to_f32_scalar(UInt16(q6.bytes[0]) | UInt16(q6.bytes[1]) << 8)
        XCTAssertGreaterThanOrEqual(d, Float(1) / 31)
        XCTAssertLessThan(d, Float(1) / 31 * (1 + 0x1p-10))
        XCTAssertEqual(q6.dequantize().map { ($0 / d).rounded() }, [31, -31, 15])   // 0.5 / d = 15.49...
    }

    func testEdgeValuesZeroTinyHugeNaNInf() {
        for format in [BlockQuantFormat.q6, .q4] {
            let qmax = Float(format.maxCode)
            // All zero: d = 0, codes 0 (c = 32 / 8 on disk), values 0.
            let z = BlockQuantMatrix.quantize(values: [Float](repeating: 0, count: 40), rows: 1, cols: 40, format: format, pool: nil)
            XCTAssertEqual(z.bytes, refRow([Float](repeating: 0, count: 40)[...], format).bytes)
            XCTAssertTrue(z.dequantize().allSatisfy { $0 == 0 })
            // Tiny: absmax / Q below the smallest subnormal f16 rounds up to 2^-24; the error bound d/2 still holds.
            let tiny: [Float] = [1e-30, -3e-31, 0, 2e-9, 1e-7]
            let t = BlockQuantMatrix.quantize(values: tiny, rows: 1, cols: 5, format: format, pool: nil)
            XCTAssertEqual(t.bytes, refRow(tiny[...], format).bytes, "\(format)")
            let td = refRow(tiny[...], format).scales[0]
            for (a, b) in zip(tiny, t.dequantize()) { XCTAssertLessThanOrEqual(abs(a - b), td / 2, "\(format) tiny \(a)") }
            // Subnormal-scale range keeps the bound too.
            let small: [Float] = (0..<32).map { Float($0 - 16) * 1.7e-6 }
            let sd = refRow(small[...], format).scales[0]
            for (a, b) in zip(small, BlockQuantMatrix.quantize(values: small, rows: 1, cols: 32, format: format, pool: nil).dequantize()) {
                XCTAssertLessThanOrEqual(abs(a - b), sd / 2 * (1 + 1e-6), "\(format) small \(a)")
            }
            // Huge: absmax / Q > 65504 saturates d at 65504 with codes clamped to +-Q.
            let huge: [Float] = [1e30, -1e30, 65504, 0]
            let h = BlockQuantMatrix.quantize(values: huge, rows: 1, cols: 4, format: format, pool: nil)
            XCTAssertEqual(h.bytes[0..<2], [0xff, 0x7b])
            XCTAssertEqual(h.dequantize(), [65504 * qmax, -65504 * qmax, 65504, 0])
            // NaN elements become 0 and do not disturb the others; inf saturates like a huge value.
            let odd: [Float] = [.nan, 2, -1, .infinity, 0.5]
            let o = BlockQuantMatrix.quantize(values: odd, rows: 1, cols: 5, format: format, pool: nil)
            XCTAssertEqual(o.dequantize(), [0, 0, 0, 65504 * qmax, 0])
            let withoutInf: [Float] = [.nan, 2, -1, 0.5]
            let n = BlockQuantMatrix.quantize(values: withoutInf, rows: 1, cols: 4, format: format, pool: nil)
            XCTAssertEqual(n.bytes, refRow(withoutInf[...], format).bytes)
            XCTAssertEqual(n.dequantize()[0], 0)
            XCTAssertEqual(Double(n.dequantize()[1]), 2, accuracy: Double(refRow(withoutInf[...], format).scales[0]) / 2)
        }
    }

    // MARK: GEMV / GEMM

    /// Double-precision W x of the dequantized weights and an f32 error bound for each row.
    private func exact(_ dq: [Float], rows: Int, cols: Int, _ x: ArraySlice<Float>) -> (y: [Double], bound: [Double]) {
        let xs = Array(x)
        var y = [Double](repeating: 0, count: rows), b = y
        for r in 0..<rows {
            var s = 0.0, a = 0.0
            for j in 0..<cols { let p = Double(dq[r * cols + j]) * Double(xs[j]); s += p; a += abs(p) }
            y[r] = s
            b[r] = Double(cols + 40) * 0x1p-23 * a + 1e-30
        }
        return (y, b)
    }

    /// The documented q6/q4 activation quantization, written out independently: per block of 32 (groups of 128 zero
    /// padded) e = absmax / 127 and q = round-half-even(x * (127 / absmax)); a block with no finite absmax > 0 is 0.
    private func refActivations(_ x: [Float]) -> (q: [Int], e: [Float]) {
        let groups = (x.count + 127) / 128
        var q = [Int](repeating: 0, count: groups * 128), e = [Float](repeating: 0, count: groups * 4)
        for b in 0..<(groups * 4) where 32 * b < x.count {
            let blk = x[(32 * b)..<min(32 * b + 32, x.count)]
            let amax = blk.reduce(Float(0)) { $1.magnitude > $0 ? $1.magnitude : $0 }
            guard amax > 0, amax.isFinite else { continue }
            let id = Float(127) / amax
            e[b] = amax / 127
            for (i, v) in blk.enumerated() {
                let r = (v * id).rounded(.toNearestOrEven)
                q[32 * b + i] = r.isNaN ? 0 : Int(min(max(r, -127), 127))
            }
        }
        return (q, e)
    }

    /// q6/q4 products from the documented formula in double: y = sum_b d_b e_b S_b with S_b the exact integer
    /// sum of weight codes x activation codes, and an f32 rounding bound of the kernels' float steps.
    private func integerReference(_ w: [Float], rows: Int, cols: Int, _ format: BlockQuantFormat, _ x: [Float]) -> (y: [Double], bound: [Double]) {
        let (xq, e) = refActivations(x)
        var y = [Double](repeating: 0, count: rows), bound = y
        for r in 0..<rows {
            var a = 0.0
            for b in stride(from: 0, to: cols, by: 32) {
                let (q, d, _) = refBlock(Array(w[(r * cols + b)..<(r * cols + min(b + 32, cols))]), format)
                let n = min(32, cols - b)
                let s = (0..<n).reduce(0) { $0 + q[$1] * xq[b + $1] }
                y[r] += Double(d) * Double(e[b / 32]) * Double(s)
                // The SIMD paths scale int32 lanes of 4 products each before summing: bound by the lanes' magnitudes.
                for l in stride(from: 0, to: n, by: 4) {
                    a += abs(Double(d) * Double(e[b / 32]) * Double((l..<min(l + 4, n)).reduce(0) { $0 + q[$1] * xq[b + $1] }))
                }
            }
            bound[r] = Double(cols / 32 + 40) * 0x1p-23 * a + 1e-30
        }
        return (y, bound)
    }

    func testActivationQuantizationMatchesFormula() {
        var rng = KernelTestRNG(state: 19)
        for format in [BlockQuantFormat.q6, .q4] {
            let offset = format == .q6 ? 32 : 8
            for cols in [1, 31, 32, 33, 127, 128, 129, 300] {
                var x = (0..<cols).map { _ in rng.float() * Float(1 << Int(rng.next() % 6)) }
                if cols > 40 { for j in 32..<40 { x[j] = 0 } }                      // an all-zero block... in part
                if cols > 70 { x[65] = .nan; x[66] = 1e-30; x[67] = -2.5 }            // NaN becomes 0, others kept
                let (q, d, corr) = format.quantizeActivations(x)
                let (rq, re) = refActivations(x)
                XCTAssertEqual(q.map(Int.init), rq, "\(format) \(cols)")
                XCTAssertEqual(d, re, "\(format) \(cols)")
                XCTAssertEqual(corr.map(Int.init), (0..<corr.count).map { l in -offset * (0..<4).reduce(0) { $0 + rq[4 * l + $1] } })
                for j in 0..<cols where !x[j].isNaN {   // round-trip error <= e / 2
                    XCTAssertLessThanOrEqual(abs(Float(q[j]) * d[j / 32] - x[j]), d[j / 32] / 2 * 1.0001 + 1e-37)
                }
            }
        }
        // The extreme values: +-absmax map to +-127 exactly; an inf makes its block 0 without touching the others.
        let (q, d, _) = BlockQuantFormat.q6.quantizeActivations([4, -4, 1] + [Float](repeating: 0, count: 29) + [.infinity, 2])
        XCTAssertEqual(Array(q[0..<3]), [127, -127, 32])
        XCTAssertEqual(d[0], Float(4) / 127)
        XCTAssertEqual(Array(q[32..<34]), [0, 0])
        XCTAssertEqual(d[1], 0)
    }

    func testGemvAllPathsMatchReferenceAndExact() {
        var rng = KernelTestRNG(state: 23)
        forEachDenseISA { isa in
            for format in BlockQuantFormat.allCases {
                for cols in colsList {
                    for rows in [1, 3, 4, 5, 9] {
                        var w = (0..<(rows * cols)).map { _ in rng.float() * 0.1 }
                        var x = (0..<cols).map { _ in rng.float() * 4 }
                        if rows > 3 { for j in 0..<cols { w[3 * cols + j] = 0 } }             // an all-zero row
                        if cols > 64 { x[cols - 1] = 127; x[0] = -1e6 }                           // extreme activations
                        let m = BlockQuantMatrix.quantize(values: w, rows: rows, cols: cols, format: format, pool: nil)
                        let y = m.gemv(x: x, pool: nil), ref = m.gemvReference(x: x)
                        if isa == "portable" { XCTAssertEqual(y, ref, "\(format) \(rows)x\(cols)") }
                        // q8 multiplies f32 activations: the exact product of the dequantized weights; q6/q4 the
                        // documented integer formula (activations quantized per 32), both within f32 rounding.
                        let (ex, bound) = format == .q8 ? exact(m.dequantize(), rows: rows, cols: cols, x[...])
                                                        : integerReference(w, rows: rows, cols: cols, format, x)
                        for r in 0..<rows {
                            XCTAssertLessThanOrEqual(abs(Double(y[r]) - ex[r]), bound[r], "\(isa) \(format) \(rows)x\(cols) row \(r)")
                            XCTAssertLessThanOrEqual(abs(Double(ref[r]) - ex[r]), bound[r], "ref \(format) \(rows)x\(cols) row \(r)")
                        }
                        if format == .q8 {   // the Q8Matrix API is the same kernel
                            XCTAssertEqual(DenseKernels.q8Gemv(Q8Matrix(bytes: m.bytes, rows: rows, cols: cols), x: x, pool: nil), y)
                        } else {
                            // The cost of int8 activations: within sum_j |w_j| e_j / 2 of the f32-activation product.
                            let (fx, fb) = exact(m.dequantize(), rows: rows, cols: cols, x[...])
                            let e = refActivations(x).e, dq = m.dequantize()
                            for r in 0..<rows {
                                let actBound = (0..<cols).reduce(0.0) { $0 + Double(abs(dq[r * cols + $1])) * Double(e[$1 / 32]) / 2 }
                                XCTAssertLessThanOrEqual(abs(Double(y[r]) - fx[r]), actBound * 1.001 + fb[r] + bound[r], "\(isa) \(format) act row \(r)")
                            }
                        }
                    }
                }
            }
        }
    }

    /// Every token of a GEMM equals the GEMV of that token bit for bit, on every path, for any row split.
    func testGemmEqualsGemvPerTokenBitForBit() {
        var rng = KernelTestRNG(state: 29)
        let pool = ThreadPool(threadCount: 2)
        forEachDenseISA { isa in
            for format in BlockQuantFormat.allCases {
                for (rows, cols) in [(1, 1), (5, 17), (9, 64), (13, 100), (4, 257), (37, 2560 / 8 + 3)] {
                    let m = BlockQuantMatrix.quantize(values: (0..<(rows * cols)).map { _ in rng.float() }, rows: rows, cols: cols,
                                                      format: format, pool: nil)
                    for tokens in [1, 2, 3, 5, 8, 11, 16, 17] {
                        let ldx = cols + 3
                        let x = (0..<(tokens * ldx)).map { _ in rng.float() * 2 }
                        let y = m.gemm(x: x, ldx: ldx, tokens: tokens, pool: nil)
                        let yr = m.gemmReference(x: x, ldx: ldx, tokens: tokens)
                        for t in 0..<tokens {
                            let xt = Array(x[(t * ldx)..<(t * ldx + cols)])
                            XCTAssertEqual(Array(y[(t * rows)..<((t + 1) * rows)]), m.gemv(x: xt, pool: nil), "\(isa) \(format) \(rows)x\(cols) tok \(t)/\(tokens)")
                            XCTAssertEqual(Array(yr[(t * rows)..<((t + 1) * rows)]), m.gemvReference(x: xt), "ref \(format) tok \(t)")
                        }
                        if isa == "portable" { XCTAssertEqual(y, yr) }
                        // A row range with padded Y (ldy > rows) touches only its rows.
                        let ldy = rows + 2, lo = rows / 3, hi = rows - rows / 4
                        var yp = [Float](repeating: .nan, count: tokens * ldy)
                        m.bytes.withUnsafeBufferPointer { wp in
                            BlockQuantMatrix.gemm(format: format, weights: wp.baseAddress!, rowStride: m.rowStride, rows: rows, cols: cols,
                                                  x: x, ldx: ldx, tokens: tokens, y: &yp, ldy: ldy, rowRange: lo..<hi, pool: pool)
                        }
                        for t in 0..<tokens {
                            for r in 0..<ldy {
                                if r >= lo && r < hi { XCTAssertEqual(yp[t * ldy + r], y[t * rows + r], "\(isa) \(format) range tok \(t) row \(r)") }
                                else { XCTAssertTrue(yp[t * ldy + r].isNaN) }
                            }
                        }
                    }
                }
            }
            // Large enough to split over the pool: bitwise equal to one thread, GEMV and GEMM.
            let rows = 301, cols = 999, tokens = 6
            for format in BlockQuantFormat.allCases {
                let m = BlockQuantMatrix.quantize(values: (0..<(rows * cols)).map { _ in rng.float() }, rows: rows, cols: cols, format: format, pool: pool)
                let x = (0..<(tokens * cols)).map { _ in rng.float() }
                XCTAssertEqual(m.gemm(x: x, ldx: cols, tokens: tokens, pool: pool), m.gemm(x: x, ldx: cols, tokens: tokens, pool: nil), "\(isa) \(format)")
                XCTAssertEqual(m.gemv(x: Array(x[..<cols]), pool: pool), m.gemv(x: Array(x[..<cols]), pool: nil), "\(isa) \(format)")
            }
        }
    }

    func testF16GemmEqualsF16GemvPerToken() {
        var rng = KernelTestRNG(state: 31)
        let pool = ThreadPool(threadCount: 2)
        forEachDenseISA { isa in
            for (rows, cols) in [(1, 1), (3, 7), (5, 16), (9, 31), (4, 33), (13, 100), (6, 257), (301, 999)] {
                let w = F16Matrix((0..<(rows * cols)).map { _ in rng.float() }, rows: rows, cols: cols)
                for tokens in [1, 2, 3, 4, 7, 8, 9, 16] {
                    let ldx = cols + 1
                    let x = (0..<(tokens * ldx)).map { _ in rng.float() }
                    let y = DenseKernels.f16Gemm(w, x: x, ldx: ldx, tokens: tokens, pool: pool)
                    let yr = DenseKernels.f16GemmReference(w, x: x, ldx: ldx, tokens: tokens)
                    for t in 0..<tokens {
                        let xt = Array(x[(t * ldx)..<(t * ldx + cols)])
                        XCTAssertEqual(Array(y[(t * rows)..<((t + 1) * rows)]), DenseKernels.f16Gemv(w, x: xt, pool: nil), "\(isa) \(rows)x\(cols) tok \(t)")
                        XCTAssertEqual(Array(yr[(t * rows)..<((t + 1) * rows)]), DenseKernels.f16GemvReference(w, x: xt), "ref tok \(t)")
                    }
                    if isa == "portable" { XCTAssertEqual(y, yr) }
                }
            }
        }
    }
}
