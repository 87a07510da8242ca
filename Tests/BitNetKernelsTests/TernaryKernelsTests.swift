import XCTest
@testable import BitNetKernels
import CBitNetKernels

final class TernaryKernelsTests: XCTestCase {
    private let colsList = [1, 5, 127, 128, 129, 256, 300, 640, 1000, 2560]

    /// Naive Int32 product of row-major codes W [rows, cols] with X [tokens, cols] -> [tokens, rows].
    private func naive(_ w: [Int8], rows: Int, cols: Int, x: [Int8], tokens: Int) -> [Int32] {
        var y = [Int32](repeating: 0, count: tokens * rows)
        for t in 0..<tokens {
            for r in 0..<rows {
                var acc: Int32 = 0
                for j in 0..<cols { acc += Int32(w[r * cols + j]) * Int32(x[t * cols + j]) }
                y[t * rows + r] = acc
            }
        }
        return y
    }

    func testLayoutMatchesI2S() {
        // element j of a block sits in byte j % 32, bits 7-6 / 5-4 / 3-2 / 1-0 for j / 32 = 0 / 1 / 2 / 3.
        var codes = [Int8](repeating: 0, count: 130)
        codes[0] = 1; codes[32] = -1; codes[64] = 1; codes[96] = -1; codes[129] = 1
        let p = TernaryKernels.pack2bit(codes: codes, rows: 1, cols: 130)
        XCTAssertEqual(p.rowStride, 64)
        XCTAssertEqual(p.bytes[0], 0b10_00_10_00)
        XCTAssertEqual(p.bytes[1], 0x55)
        XCTAssertEqual(p.bytes[32], 0x55)               // element 128 = 0 (and padding = 0)
        XCTAssertEqual(p.bytes[33], 0b10_01_01_01)      // element 129 = +1
        XCTAssertEqual(TernaryKernels.unpack(p), codes)
        XCTAssertEqual(TernaryKernels.rowStrideBase3(cols: 5), 1)
        XCTAssertEqual(TernaryKernels.packBase3(codes: [-1, 0, 1, 1, -1], rows: 1, cols: 5).bytes, [0 + 3 + 18 + 54 + 0])
        XCTAssertEqual(TernaryKernels.packBase3(codes: [1, 1, 1, 1, 1], rows: 1, cols: 5).bytes, [242])
    }

    func testRoundTripsAllShapes() {
        var rng = KernelTestRNG(state: 1)
        for cols in colsList {
            for rows in 1...17 {
                var w = (0..<(rows * cols)).map { _ in rng.ternary() }
                if rows > 2 { for j in 0..<cols { w[cols + j] = 0 } }   // an all-zero row
                let p2 = TernaryKernels.pack2bit(codes: w, rows: rows, cols: cols)
                XCTAssertEqual(p2.bytes.count, rows * ((cols + 127) / 128) * 32)
                XCTAssertEqual(TernaryKernels.unpack(p2), w, "2-bit \(rows)x\(cols)")
                let p3 = TernaryKernels.packBase3(codes: w, rows: rows, cols: cols)
                XCTAssertEqual(p3.bytes.count, rows * ((cols + 4) / 5))
                XCTAssertTrue(p3.bytes.allSatisfy { $0 <= 242 })
                XCTAssertEqual(TernaryKernels.unpackBase3(p3), w, "base-3 \(rows)x\(cols)")
                XCTAssertEqual(TernaryKernels.toBase3(p2), p3)
                XCTAssertEqual(TernaryKernels.from(base3: p3), p2)
            }
        }
        // Bits per weight of base-3 for cols divisible by 5.
        let p = TernaryKernels.packBase3(codes: [Int8](repeating: 1, count: 1000), rows: 1, cols: 1000)
        XCTAssertLessThanOrEqual(Double(p.bytes.count * 8) / 1000, 1.6)
    }

    /// Runs body once per path this CPU supports, restoring the default path afterwards.
    private func forEachISA(_ body: (String) -> Void) {
        let saved = TernaryKernels.activeISA
        defer { TernaryKernels.selectISA(saved) }
        var seen = Set<String>()
        for name in TernaryKernels.isaNames {
            let got = TernaryKernels.selectISA(name)
            if seen.insert(got).inserted { body(got) }
        }
        XCTAssertTrue(seen.contains("portable"))
    }

    func testGemvMatchesReferenceAndNaive() { forEachISA { isa in gemvCases(isa) } }
    func testExtremeAllOnesMatrix() { forEachISA { _ in extremeCases() } }
    func testRowRangesAndParallelSplit() { forEachISA { _ in rowRangeCases() } }
    func testGemmMatchesGemvPerToken() { forEachISA { isa in gemmCases(isa) } }

    private func gemvCases(_ isa: String) {
        var rng = KernelTestRNG(state: 2)
        for cols in colsList {
            for rows in [1, 2, 3, 7, 16, 17] {
                var w = (0..<(rows * cols)).map { _ in rng.ternary() }
                if rows > 1 { for j in 0..<cols { w[j] = 0 } }
                let p = TernaryKernels.pack2bit(codes: w, rows: rows, cols: cols)
                let xs: [[Int8]] = [
                    (0..<cols).map { _ in rng.int8() },
                    [Int8](repeating: -128, count: cols),
                    [Int8](repeating: 127, count: cols),
                    (0..<cols).map { $0 % 2 == 0 ? -128 : 127 },
                ]
                for x in xs {
                    let want = naive(w, rows: rows, cols: cols, x: x, tokens: 1)
                    XCTAssertEqual(TernaryKernels.gemvReference(p, x: x), want, "ref \(rows)x\(cols)")
                    XCTAssertEqual(TernaryKernels.gemv(p, x: x), want, "gemv \(isa) \(rows)x\(cols)")
                    XCTAssertEqual(TernaryKernels.gemv(p, x: x, pool: nil), want)
                }
            }
        }
    }

    private func extremeCases() {
        // Every weight +1 or -1 with x = -128 / 127: largest sums the int16 stage sees.
        for cols in [128, 129, 1000] {
            for sign: Int8 in [1, -1] {
                let w = [Int8](repeating: sign, count: 3 * cols)
                let p = TernaryKernels.pack2bit(codes: w, rows: 3, cols: cols)
                for v: Int8 in [-128, 127] {
                    let y = TernaryKernels.gemv(p, x: [Int8](repeating: v, count: cols))
                    XCTAssertEqual(y, [Int32](repeating: Int32(sign) * Int32(v) * Int32(cols), count: 3))
                }
            }
        }
    }

    private func rowRangeCases() {
        var rng = KernelTestRNG(state: 3)
        let rows = 300, cols = 1000
        let w = (0..<(rows * cols)).map { _ in rng.ternary() }
        let x = (0..<cols).map { _ in rng.int8() }
        let p = TernaryKernels.pack2bit(codes: w, rows: rows, cols: cols)
        let want = naive(w, rows: rows, cols: cols, x: x, tokens: 1)
        XCTAssertEqual(TernaryKernels.gemv(p, x: x, pool: ThreadPool(threadCount: 3)), want)
        var y = [Int32](repeating: -7, count: rows)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                TernaryKernels.gemv(p, x: xp.baseAddress!, y: yp.baseAddress!, rowRange: 11..<29, pool: nil)
            }
        }
        for r in 0..<rows { XCTAssertEqual(y[r], (11..<29).contains(r) ? want[r] : -7) }
        // gemm over the pool (300 rows x 1000 cols x 2 tokens is above the parallel threshold).
        let x2 = x + x.reversed()
        let y2 = TernaryKernels.gemm(p, x: x2, tokens: 2, pool: ThreadPool(threadCount: 3))
        XCTAssertEqual(y2, naive(w, rows: rows, cols: cols, x: x2, tokens: 2))
    }

    /// Fused GEMVs (one split over the pool for 2-3 matrices of the same input) equal each matrix's own product, with
    /// thread chunks that straddle the matrices' boundaries (rows 97 + 203 + 61, every pool size).
    func testFusedGemvEqualsSeparateGemvs() {
        var rng = KernelTestRNG(state: 5)
        let cols = 1000, shapes = [97, 203, 61]
        let ws = shapes.map { r in (0..<(r * cols)).map { _ in rng.ternary() } }
        let ps = zip(ws, shapes).map { TernaryKernels.pack2bit(codes: $0, rows: $1, cols: cols) }
        let x = (0..<cols).map { _ in rng.int8() }
        let want = zip(ws, shapes).map { naive($0, rows: $1, cols: cols, x: x, tokens: 1) }
        for threads in [1, 2, 3] {
            let pool = ThreadPool(threadCount: threads)
            for three in [false, true] {
                var ya = [Int32](repeating: -1, count: 97), yb = [Int32](repeating: -1, count: 203), yc = [Int32](repeating: -1, count: 61)
                x.withUnsafeBufferPointer { xp in
                    ya.withUnsafeMutableBufferPointer { a in
                        yb.withUnsafeMutableBufferPointer { b in
                            yc.withUnsafeMutableBufferPointer { c in
                                TernaryKernels.gemv(ps[0], y: a.baseAddress!, ps[1], y: b.baseAddress!, three ? ps[2] : nil,
                                                    y: three ? c.baseAddress! : nil, x: xp.baseAddress!, pool: pool)
                            }
                        }
                    }
                }
                XCTAssertEqual(ya, want[0], "threads \(threads)")
                XCTAssertEqual(yb, want[1], "threads \(threads)")
                XCTAssertEqual(yc, three ? want[2] : [Int32](repeating: -1, count: 61), "threads \(threads) three \(three)")
            }
        }
    }

    private func gemmCases(_ isa: String) {
        var rng = KernelTestRNG(state: 4)
        for cols in colsList {
            for (rows, tokens) in [(1, 1), (5, 3), (17, 4), (9, 5), (16, 9), (3, 40)] {
                let w = (0..<(rows * cols)).map { _ in rng.ternary() }
                var x = (0..<(tokens * cols)).map { _ in rng.int8() }
                for j in 0..<cols { x[j] = -128 }   // token 0 extreme
                let p = TernaryKernels.pack2bit(codes: w, rows: rows, cols: cols)
                let y = TernaryKernels.gemm(p, x: x, tokens: tokens)
                XCTAssertEqual(y, naive(w, rows: rows, cols: cols, x: x, tokens: tokens), "gemm \(isa) \(rows)x\(cols) T=\(tokens)")
                XCTAssertEqual(TernaryKernels.gemmReference(p, x: x, tokens: tokens), y)
                for t in 0..<tokens {
                    let yt = TernaryKernels.gemv(p, x: Array(x[(t * cols)..<((t + 1) * cols)]))
                    XCTAssertEqual(Array(y[(t * rows)..<((t + 1) * rows)]), yt)
                }
            }
        }
    }

    func testZeroColumns() {
        let p = TernaryKernels.pack2bit(codes: [], rows: 3, cols: 0)
        XCTAssertEqual(p.rowStride, 0)
        XCTAssertEqual(TernaryKernels.unpack(p), [])
        XCTAssertEqual(TernaryKernels.gemv(p, x: []), [0, 0, 0])
        forEachISA { _ in
            XCTAssertEqual(TernaryKernels.gemv(p, x: []), [0, 0, 0])
            XCTAssertEqual(TernaryKernels.gemm(p, x: [], tokens: 2), [Int32](repeating: 0, count: 6))
        }
        XCTAssertEqual(TernaryKernels.unpackBase3(TernaryKernels.packBase3(codes: [], rows: 3, cols: 0)), [])
    }

    func testActiveISA() {
        let saved = TernaryKernels.activeISA
        defer { TernaryKernels.selectISA(saved) }
        XCTAssertTrue(TernaryKernels.isaNames.contains(saved))
        XCTAssertEqual(TernaryKernels.selectISA("portable"), "portable")
        XCTAssertEqual(TernaryKernels.selectISA("no-such-isa"), "portable")
        XCTAssertTrue(TernaryKernels.isaNames.contains(TernaryKernels.selectISA("avx512vnni")))
    }
}
