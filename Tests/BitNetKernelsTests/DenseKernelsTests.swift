import XCTest
@testable import BitNetKernels
import CBitNetKernels

final class DenseKernelsTests: XCTestCase {
    private func forEachISA(_ body: (String) -> Void) { forEachDenseISA(body) }

    private let colsList = [1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 64, 100, 257]

    // MARK: f16 conversion

    func testF16ConversionAllHalvesAndRandomFloats() {
        forEachISA { isa in
            let all = (0...0xFFFF).map { UInt16($0) }
            let f = DenseKernels.toF32(f16: all)
            for h in all {
                let s = bitnet_f16_to_f32_scalar(h)
                XCTAssertEqual(f[Int(h)].bitPattern, s.bitPattern, "\(isa) half \(h)")
                #if !(os(macOS) && arch(x86_64))
                let ref = Float(Float16(bitPattern: h))
                if !ref.isNaN { XCTAssertEqual(s.bitPattern, ref.bitPattern, "half \(h)") } else { XCTAssertTrue(s.isNaN) }
                #endif
            }
            // Back to half is the identity (NaNs: quieted, same payload).
            XCTAssertEqual(DenseKernels.toF16(f).enumerated().filter { i, b in b != UInt16(i) | (f[i].isNaN ? 0x0200 : 0) }.count, 0, isa)

            var rng = KernelTestRNG(state: 7)
            var xs: [Float] = [0, -0, 65504, 65519.99, 65520, -65520, 1e-8, 2.98e-8, 2.99e-8, 6.1e-5, 6.103515625e-05,
                               5.96e-8, .infinity, -.infinity, .nan, .leastNonzeroMagnitude, .greatestFiniteMagnitude, 1 + 0x1p-11]
            for _ in 0..<50_000 { xs.append(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))) }
            for _ in 0..<50_000 { xs.append(rng.float() * Float(1 << Int(rng.next() % 20)) * 0x1p-12) }
            let h = DenseKernels.toF16(xs)
            for (i, x) in xs.enumerated() {
                let s = bitnet_f32_to_f16_scalar(x)
                XCTAssertEqual(h[i], s, "\(isa) f32 \(x) bits \(String(x.bitPattern, radix: 16))")
                #if !(os(macOS) && arch(x86_64))
                if !x.isNaN { XCTAssertEqual(s, Float16(x).bitPattern, "f32 \(x)") } else { XCTAssertTrue(Float16(bitPattern: s).isNaN) }
                #endif
            }
        }
    }

    // MARK: f16 GEMV

    /// Double-precision y of the half weights and an f32 error bound for a length-n dot product.
    private func exact(_ w: F16Matrix, _ x: [Float]) -> (y: [Double], bound: [Double]) {
        let wf = DenseKernels.toF32(f16: w.bits)
        var y = [Double](repeating: 0, count: w.rows), b = y
        for r in 0..<w.rows {
            var s = 0.0, a = 0.0
            for j in 0..<w.cols { let p = Double(wf[r * w.cols + j]) * Double(x[j]); s += p; a += abs(p) }
            y[r] = s
            b[r] = Double(w.cols + 2) * 0x1p-23 * a + 1e-30
        }
        return (y, b)
    }

    func testF16GemvMatchesReferenceAllShapes() {
        var rng = KernelTestRNG(state: 11)
        let pool = ThreadPool(threadCount: 2)
        forEachISA { isa in
            for cols in colsList {
                for rows in [1, 2, 3, 4, 5, 7, 8, 9, 13] {
                    let w = F16Matrix((0..<(rows * cols)).map { _ in rng.float() * 3 }, rows: rows, cols: cols)
                    let x = (0..<cols).map { _ in rng.float() }
                    let y = DenseKernels.f16Gemv(w, x: x, pool: nil)
                    let ref = DenseKernels.f16GemvReference(w, x: x)
                    let (ex, bound) = exact(w, x)
                    for r in 0..<rows {
                        XCTAssertLessThanOrEqual(abs(Double(y[r]) - ex[r]), bound[r], "\(isa) \(rows)x\(cols) row \(r)")
                        XCTAssertLessThanOrEqual(abs(Double(ref[r]) - ex[r]), bound[r], "ref \(rows)x\(cols) row \(r)")
                        XCTAssertLessThanOrEqual(abs(y[r] - ref[r]), Float(2 * bound[r]), "\(isa) vs ref \(rows)x\(cols) row \(r)")
                    }
                    if isa == "portable" { XCTAssertEqual(y, ref) }
                    // Each row's result does not depend on which rows are computed with it.
                    for r in 0..<rows {
                        var one = [Float](repeating: .nan, count: rows)
                        w.bits.withUnsafeBufferPointer { wp in
                            DenseKernels.f16Gemv(weights: wp.baseAddress!, ld: cols, rows: rows, cols: cols, x: x, y: &one,
                                                 rowRange: r..<(r + 1), pool: nil)
                        }
                        XCTAssertEqual(one[r], y[r], "\(isa) single row \(r) of \(rows)x\(cols)")
                        XCTAssertTrue(one.enumerated().allSatisfy { $0.offset == r || $0.element.isNaN })
                    }
                }
            }
            // Large enough to split over the pool: bitwise equal to one thread; a strided sub-range.
            let rows = 301, cols = 1003, ld = 1011
            let wl = (0..<(rows * ld)).map { _ in rng.float() }
            let wh = DenseKernels.toF16(wl)
            let x = (0..<cols).map { _ in rng.float() }
            var y1 = [Float](repeating: .nan, count: rows), y2 = y1, y3 = y1
            wh.withUnsafeBufferPointer { wp in
                DenseKernels.f16Gemv(weights: wp.baseAddress!, ld: ld, rows: rows, cols: cols, x: x, y: &y1, pool: nil)
                DenseKernels.f16Gemv(weights: wp.baseAddress!, ld: ld, rows: rows, cols: cols, x: x, y: &y2, pool: pool)
                DenseKernels.f16Gemv(weights: wp.baseAddress!, ld: ld, rows: rows, cols: cols, x: x, y: &y3, rowRange: 37..<290, pool: pool)
            }
            XCTAssertEqual(y1, y2, isa)
            XCTAssertEqual(Array(y3[37..<290]), Array(y1[37..<290]), isa)
            XCTAssertTrue(y3[0..<37].allSatisfy(\.isNaN) && y3[290...].allSatisfy(\.isNaN), isa)
            let dense = F16Matrix(bits: (0..<rows).flatMap { Array(wh[($0 * ld)..<($0 * ld + cols)]) }, rows: rows, cols: cols)
            let (ex, bound) = exact(dense, x)
            for r in 0..<rows { XCTAssertLessThanOrEqual(abs(Double(y1[r]) - ex[r]), bound[r], "\(isa) strided row \(r)") }
        }
    }

    // MARK: q8

    func testQ8LayoutAndRounding() {
        // d = 127 / 127 = 1 exactly: codes are the values rounded half to even.
        var w = [Float](repeating: 0, count: 40)
        w[0] = 127; w[1] = 0.5; w[2] = 1.5; w[3] = 2.5; w[4] = -0.5; w[5] = -1.5; w[6] = -126.5; w[7] = 3.49
        w[32] = -2; w[33] = 1   // second (partial) block: d = 2/127
        let q = DenseKernels.quantizeQ8(w, rows: 1, cols: 40, pool: nil)
        XCTAssertEqual(q.rowStride, 72)
        XCTAssertEqual(q.bytes.count, 72)
        let d0 = q.bytes[0..<4].withUnsafeBytes { $0.loadUnaligned(as: Float.self) }
        XCTAssertEqual(d0, 1)
        XCTAssertEqual(q.bytes[4..<12].map { Int8(bitPattern: $0) }, [127, 0, 2, 2, 0, -2, -126, 3])
        let d1 = q.bytes[36..<40].withUnsafeBytes { $0.loadUnaligned(as: Float.self) }
        XCTAssertEqual(d1, Float(2) / 127)
        XCTAssertEqual(Int8(bitPattern: q.bytes[40]), -127)
        XCTAssertEqual(Int8(bitPattern: q.bytes[41]), 64)   // 1 / (2/127) = 63.5 -> 64 (even)
        XCTAssertTrue(q.bytes[48..<72].allSatisfy { $0 == 0 })   // padding
        // An all-zero block: scale 0, codes 0, dequantizes to 0.
        let z = DenseKernels.quantizeQ8([Float](repeating: 0, count: 5), rows: 1, cols: 5, pool: nil)
        XCTAssertTrue(z.bytes.allSatisfy { $0 == 0 })
        XCTAssertEqual(DenseKernels.dequantize(z), [0, 0, 0, 0, 0])
    }

    func testQ8RoundTripErrorWithinHalfScale() {
        var rng = KernelTestRNG(state: 3)
        for cols in colsList {
            let rows = 5
            var w = (0..<(rows * cols)).map { _ in rng.float() * Float(1 << Int(rng.next() % 8)) }
            for j in 0..<cols { w[2 * cols + j] = 0 }   // an all-zero row
            let q = DenseKernels.quantizeQ8(w, rows: rows, cols: cols)
            XCTAssertEqual(q.bytes.count, rows * ((cols + 31) / 32) * 36)
            let dq = DenseKernels.dequantize(q)
            for r in 0..<rows {
                for b in stride(from: 0, to: cols, by: 32) {
                    let blk = (b..<min(b + 32, cols)).map { r * cols + $0 }
                    let amax = blk.map { abs(w[$0]) }.max()!
                    let d = amax / 127
                    var maxCode = 0
                    for i in blk {
                        XCTAssertLessThanOrEqual(abs(w[i] - dq[i]), d / 2 * (1 + 1e-5), "\(rows)x\(cols) [\(i)]")
                        let code = Int(Int8(bitPattern: q.bytes[r * q.rowStride + b / 32 * 36 + 4 + (i - r * cols - b)]))
                        maxCode = max(maxCode, abs(code))
                    }
                    XCTAssertEqual(maxCode, amax > 0 ? 127 : 0, "\(rows)x\(cols) row \(r) block \(b / 32)")
                }
            }
            // Quantizing the dequantized weights is a fixed point.
            XCTAssertEqual(DenseKernels.dequantize(DenseKernels.quantizeQ8(dq, rows: rows, cols: cols, pool: nil)), dq)
        }
    }

    func testQ8GemvMatchesDequantizeThenDot() {
        var rng = KernelTestRNG(state: 5)
        let pool = ThreadPool(threadCount: 2)
        forEachISA { isa in
            for cols in colsList + [1000] {
                for rows in [1, 3, 4, 5, 9] {
                    let w = (0..<(rows * cols)).map { _ in rng.float() }
                    let x = (0..<cols).map { _ in rng.float() * 4 }
                    let q = DenseKernels.quantizeQ8(w, rows: rows, cols: cols, pool: nil)
                    let dq = DenseKernels.dequantize(q)
                    let y = DenseKernels.q8Gemv(q, x: x, pool: nil)
                    let ref = DenseKernels.q8GemvReference(q, x: x)
                    if isa == "portable" { XCTAssertEqual(y, ref) }
                    for r in 0..<rows {
                        var s = 0.0, a = 0.0
                        for j in 0..<cols { let p = Double(dq[r * cols + j]) * Double(x[j]); s += p; a += abs(p) }
                        let bound = Double(cols + 4) * 0x1p-23 * a + 1e-30
                        XCTAssertLessThanOrEqual(abs(Double(y[r]) - s), bound, "\(isa) \(rows)x\(cols) row \(r)")
                        XCTAssertLessThanOrEqual(abs(Double(ref[r]) - s), bound, "ref \(rows)x\(cols) row \(r)")
                    }
                    for r in 0..<rows {
                        var one = [Float](repeating: .nan, count: rows)
                        q.bytes.withUnsafeBufferPointer { wp in
                            DenseKernels.q8Gemv(weights: wp.baseAddress!, rowStride: q.rowStride, rows: rows, cols: cols, x: x,
                                                y: &one, rowRange: r..<(r + 1), pool: nil)
                        }
                        XCTAssertEqual(one[r], y[r], "\(isa) single row \(r) of \(rows)x\(cols)")
                        XCTAssertTrue(one.enumerated().allSatisfy { $0.offset == r || $0.element.isNaN })
                    }
                }
            }
            let rows = 517, cols = 999
            let q = DenseKernels.quantizeQ8((0..<(rows * cols)).map { _ in rng.float() }, rows: rows, cols: cols, pool: pool)
            let x = (0..<cols).map { _ in rng.float() }
            XCTAssertEqual(DenseKernels.q8Gemv(q, x: x, pool: pool), DenseKernels.q8Gemv(q, x: x, pool: nil), isa)
            XCTAssertEqual(DenseKernels.quantizeQ8(DenseKernels.dequantize(q), rows: rows, cols: cols, pool: pool), q)
        }
    }

    // MARK: memory

    func testReadSumAndBandwidth() {
        var bytes = [UInt8](repeating: 0, count: 1000)
        for i in 0..<bytes.count { bytes[i] = UInt8(truncatingIfNeeded: i * 7 + 3) }
        forEachISA { isa in
            for n in [0, 1, 31, 64, 127, 255, 256, 257, 999, 1000] {
                let want = bytes.withUnsafeBytes { p -> UInt64 in
                    var s: UInt64 = 0, i = 0
                    while i + 8 <= n { s &+= p.loadUnaligned(fromByteOffset: i, as: UInt64.self); i += 8 }
                    while i < n { s &+= UInt64(p[i]); i += 1 }
                    return s
                }
                XCTAssertEqual(bitnet_read_sum(bytes, n), want, "\(isa) n \(n)")
            }
        }
        let one = MemoryBandwidth.measure(bytes: 16 << 20, repetitions: 2, pool: nil)
        let two = MemoryBandwidth.measure(bytes: 16 << 20, repetitions: 2, pool: ThreadPool(threadCount: 2))
        XCTAssertTrue(one > 0 && one.isFinite, "\(one)")
        XCTAssertTrue(two > 0 && two.isFinite, "\(two)")
    }

    func testPeakRSSGrowsAfterTouching64MB() {
        let reset = ProcessMemory.resetPeakRSS()
        let before = ProcessMemory.peakRSSBytes()
        XCTAssertGreaterThan(before, 0)
        if let cur = ProcessMemory.currentRSSBytes() { XCTAssertGreaterThanOrEqual(before, cur / 2) }
        let size = 64 << 20
        let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        defer { buf.deallocate() }
        for off in stride(from: 0, to: size, by: 4096) { buf.storeBytes(of: UInt8(truncatingIfNeeded: off >> 12) | 1, toByteOffset: off, as: UInt8.self) }
        var sum = 0
        for off in stride(from: 0, to: size, by: 4096) { sum &+= Int(buf.load(fromByteOffset: off, as: UInt8.self)) }
        XCTAssertGreaterThan(sum, 0)
        let after = ProcessMemory.peakRSSBytes()
        if reset {
            XCTAssertGreaterThanOrEqual(after - before, 60 << 20, "before \(before) after \(after)")
        } else {
            XCTAssertGreaterThanOrEqual(after, 64 << 20)
            XCTAssertGreaterThanOrEqual(after, before)
        }
        if let cur = ProcessMemory.currentRSSBytes() { XCTAssertGreaterThanOrEqual(after, cur) }
    }
}
