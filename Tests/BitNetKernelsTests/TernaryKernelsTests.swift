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
        // Base-3: byte p of a 320-block holds elements p + 64 i as digit i of sum_i (code_i + 1) * place_i, places
        // 1, 3, 9, 28, 84; padding = code 0, so a padding byte is 1 + 3 + 9 + 28 + 84 = 125.
        XCTAssertEqual(TernaryKernels.rowStrideBase3(cols: 5), 64)
        XCTAssertEqual(TernaryKernels.packBase3(codes: [-1, 0, 1, 1, -1], rows: 1, cols: 5).bytes,
                       [0, 1, 2, 2, 0].map { UInt8($0 + 3 + 9 + 28 + 84) } + [UInt8](repeating: 125, count: 59))
        XCTAssertEqual(TernaryKernels.packBase3(codes: [Int8](repeating: 1, count: 640), rows: 1, cols: 640).bytes,
                       [UInt8](repeating: 2 + 6 + 18 + 56 + 168, count: 128))
        var c3 = [Int8](repeating: 0, count: 330)
        c3[0] = 1; c3[65] = -1; c3[258] = 1; c3[320] = -1; c3[329] = 1; c3[200] = -1
        var want3 = [UInt8](repeating: 125, count: 128)
        want3[0] = 126; want3[1] = 125 - 3; want3[2] = 125 + 84; want3[8] = 125 - 28; want3[64] = 124; want3[73] = 126
        XCTAssertEqual(TernaryKernels.packBase3(codes: c3, rows: 1, cols: 330).bytes, want3)
        XCTAssertEqual(TernaryKernels.unpackBase3(PackedTernaryBase3(bytes: want3, rows: 1, cols: 330)), c3)
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
                XCTAssertEqual(p3.bytes.count, rows * ((cols + 319) / 320) * 64)
                XCTAssertTrue(p3.bytes.allSatisfy { base3Digits($0).packed })
                XCTAssertEqual(TernaryKernels.unpackBase3(p3), w, "base-3 \(rows)x\(cols)")
                XCTAssertEqual(TernaryKernels.toBase3(p2), p3)
                XCTAssertEqual(TernaryKernels.from(base3: p3), p2)
            }
        }
        // A matrix big enough for the pool to convert it in row chunks (the layout `auto` converts whole models), and
        // wide rows (6912: 11 segments of 640 weights, the last one partial) against the independent packer.
        // On every path; and straight into a weight arena, whose buffer it then borrows.
        for (rows, cols) in [(4100, 1000), (40, 6912), (3, 130)] {
            let w = (0..<(rows * cols)).map { _ in rng.ternary() }
            let p2 = TernaryKernels.pack2bit(codes: w, rows: rows, cols: cols), want = TernaryKernels.packBase3(codes: w, rows: rows, cols: cols)
            forEachISA { isa in XCTAssertEqual(TernaryKernels.toBase3(p2), want, "\(isa) \(rows)x\(cols)") }
            let arena = WeightArena(capacity: want.bytes.count + 64, hugePages: false)!
            let placed = TernaryKernels.toBase3(p2, into: arena)
            XCTAssertEqual(placed, want, "arena \(rows)x\(cols)")
            XCTAssertTrue(placed.storage.arena === arena)
            XCTAssertEqual(arena.used, (want.bytes.count + 63) / 64 * 64)
        }
        // Invalid 2-bit fields (value 3) are counted inside the columns only; the converter stores them as code 0.
        var bytes = TernaryKernels.pack2bit(codes: [Int8](repeating: 1, count: 2 * 130), rows: 2, cols: 130).bytes
        bytes[0] |= 0xC0                 // row 0, column 0
        bytes[64 + 32 + 1] |= 0xC3       // row 1: column 129 (bits 7-6) and 128 + 96 + 1, padding past column 130 (bits 1-0)
        bytes[64 + 32 + 2] |= 0x30       // row 1: padding 128 + 64 + 2 (bits 5-4)
        forEachISA { isa in
            var out = [UInt8](repeating: 0, count: 2 * 64)   // one 64-byte block per row
            XCTAssertEqual(bitnet_t2_to_t3(bytes, 130, &out, 0, 2), 2, isa)
            var want = [Int8](repeating: 1, count: 2 * 130)
            want[0] = 0; want[130 + 129] = 0
            XCTAssertEqual(out, TernaryKernels.packBase3(codes: want, rows: 2, cols: 130).bytes, isa)
        }

        // Bits per weight of base-3 for whole blocks (2B4T's 2560 columns); 1.63 for its 6912.
        let p = TernaryKernels.packBase3(codes: [Int8](repeating: 1, count: 2560), rows: 1, cols: 2560)
        XCTAssertLessThanOrEqual(Double(p.bytes.count * 8) / 2560, 1.6)
        XCTAssertLessThanOrEqual(Double(TernaryKernels.rowStrideBase3(cols: 6912) * 8) / 6912, 1.67)
    }

    /// Runs body once per path this CPU supports, restoring the default path afterwards.
    private func forEachISA(_ body: (String) -> Void) {
        let seen = forEachSelectableISA(TernaryKernels.isaNames, active: TernaryKernels.activeISA,
                                        select: { TernaryKernels.selectISA($0) }, body)
        XCTAssertTrue(seen.contains("portable"))
    }

    // Every kernel case runs on both layouts (t2, t3) and every path, against the naive product.
    func testGemvMatchesReferenceAndNaive() { forEachLayoutAndISA { gemvCases($0, $1) } }
    func testExtremeAllOnesMatrix() { forEachLayoutAndISA { extremeCases($0, $1) } }
    func testRowRangesAndParallelSplit() { forEachLayoutAndISA { rowRangeCases($0, $1) } }
    func testGemmMatchesGemvPerToken() { forEachLayoutAndISA { gemmCases($0, $1) } }

    private func forEachLayoutAndISA(_ body: (Layout, String) -> Void) {
        for layout in Layout.allCases { forEachISA { body(layout, "\(layout) \($0)") } }
    }

    private func gemvCases(_ layout: Layout, _ tag: String) {
        var rng = KernelTestRNG(state: 2)
        for cols in layout.colsList {
            for rows in [1, 2, 3, 7, 16, 17] {
                var w = (0..<(rows * cols)).map { _ in rng.ternary() }
                if rows > 1 { for j in 0..<cols { w[j] = 0 } }
                let p = layout.pack(w, rows: rows, cols: cols)
                let xs: [[Int8]] = [
                    (0..<cols).map { _ in rng.int8() },
                    [Int8](repeating: -128, count: cols),
                    [Int8](repeating: 127, count: cols),
                    (0..<cols).map { $0 % 2 == 0 ? -128 : 127 },
                ]
                for x in xs {
                    let want = naive(w, rows: rows, cols: cols, x: x, tokens: 1)
                    XCTAssertEqual(p.gemvRef(x), want, "ref \(tag) \(rows)x\(cols)")
                    XCTAssertEqual(p.gemv(x, .shared), want, "gemv \(tag) \(rows)x\(cols)")
                    XCTAssertEqual(p.gemv(x, nil), want)
                }
            }
        }
    }

    private func extremeCases(_ layout: Layout, _ tag: String) {
        // Every weight +1 or -1 with x = -128 / 127: largest sums the int16 stage sees.
        for cols in [128, 129, 320, 321, 1000] {
            for sign: Int8 in [1, -1] {
                let p = layout.pack([Int8](repeating: sign, count: 3 * cols), rows: 3, cols: cols)
                for v: Int8 in [-128, 127] {
                    let y = p.gemv([Int8](repeating: v, count: cols), .shared)
                    XCTAssertEqual(y, [Int32](repeating: Int32(sign) * Int32(v) * Int32(cols), count: 3), tag)
                }
            }
        }
    }

    private func rowRangeCases(_ layout: Layout, _ tag: String) {
        var rng = KernelTestRNG(state: 3)
        let rows = 300, cols = 1000
        let w = (0..<(rows * cols)).map { _ in rng.ternary() }
        let x = (0..<cols).map { _ in rng.int8() }
        let p = layout.pack(w, rows: rows, cols: cols)
        let want = naive(w, rows: rows, cols: cols, x: x, tokens: 1)
        XCTAssertEqual(p.gemv(x, ThreadPool(threadCount: 3)), want, tag)
        var y = [Int32](repeating: -7, count: rows)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in p.gemvRange(xp.baseAddress!, yp.baseAddress!, 11..<29) }
        }
        for r in 0..<rows { XCTAssertEqual(y[r], (11..<29).contains(r) ? want[r] : -7) }
        // gemm over the pool (300 rows x 1000 cols x 2 tokens is above the parallel threshold).
        let x2 = x + x.reversed()
        XCTAssertEqual(p.gemm(x2, 2, ThreadPool(threadCount: 3)), naive(w, rows: rows, cols: cols, x: x2, tokens: 2), tag)
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

    /// The row kernels take activations prepared once per GEMV (sum, reordered or padded copy) and use them only when
    /// they were made for this very x and cols: prepared for another input, or for fewer columns, they are ignored.
    /// Wide rows past the AVX-512 t2 reorder (16500 columns) and tails of each layout, on every path.
    func testPreparedActivationsMatchTheirInputOnly() {
        var rng = KernelTestRNG(state: 9)
        typealias Prepare = (UnsafePointer<Int8>?, Int) -> UnsafePointer<bitnet_gemv_prepared>?
        let kernels: [(String, bitnet_rows_fn, Prepare, ([Int8], Int, Int) -> ([UInt8], Int))] = [
            ("t2", bitnet_t2_gemv_rows, bitnet_t2_gemv_prepare, { w, r, c in let p = TernaryKernels.pack2bit(codes: w, rows: r, cols: c); return (p.bytes, p.rowStride) }),
            ("t3", bitnet_t3_gemv_rows, bitnet_t3_gemv_prepare, { w, r, c in let p = TernaryKernels.packBase3(codes: w, rows: r, cols: c); return (p.bytes, p.rowStride) }),
        ]
        forEachISA { isa in
            for (name, rowsFn, prepare, pack) in kernels {
                for cols in [33, 256, 300, 2560, 6912 + 17, 16500] {
                    let rows = 9
                    let w = (0..<(rows * cols)).map { _ in rng.ternary() }
                    let x = (0..<cols).map { _ in rng.int8() }, other = (0..<cols).map { _ in Int8(-128) }
                    let want = naive(w, rows: rows, cols: cols, x: x, tokens: 1)
                    let (bytes, stride) = pack(w, rows, cols)
                    bytes.withUnsafeBufferPointer { wp in
                        x.withUnsafeBufferPointer { xp in
                            other.withUnsafeBufferPointer { op in
                                // Prepared for x; for another input; for x but fewer columns; none.
                                for (label, prepared) in [("own", prepare(xp.baseAddress, cols)), ("other x", prepare(op.baseAddress, cols)),
                                                          ("fewer cols", prepare(xp.baseAddress, cols - 1)), ("none", nil)] {
                                    var y = [Int32](repeating: -1, count: rows)
                                    y.withUnsafeMutableBufferPointer { yp in
                                        var args = bitnet_t2_gemv_args(w: wp.baseAddress, row_stride: stride, cols: cols, x: xp.baseAddress,
                                                                       y: yp.baseAddress, prepared: prepared)
                                        rowsFn(&args, 0, 5)          // two ranges, as a split runs them
                                        rowsFn(&args, 5, rows)
                                    }
                                    XCTAssertEqual(y, want, "\(name) \(isa) cols \(cols) prepared \(label)")
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    private func gemmCases(_ layout: Layout, _ tag: String) {
        var rng = KernelTestRNG(state: 4)
        for cols in layout.colsList {
            for (rows, tokens) in [(1, 1), (5, 3), (17, 4), (9, 5), (16, 9), (3, 40)] {
                let w = (0..<(rows * cols)).map { _ in rng.ternary() }
                var x = (0..<(tokens * cols)).map { _ in rng.int8() }
                for j in 0..<cols { x[j] = -128 }   // token 0 extreme
                let p = layout.pack(w, rows: rows, cols: cols)
                let y = p.gemm(x, tokens, .shared)
                XCTAssertEqual(y, naive(w, rows: rows, cols: cols, x: x, tokens: tokens), "gemm \(tag) \(rows)x\(cols) T=\(tokens)")
                XCTAssertEqual(p.gemmRef(x, tokens), y)
                for t in 0..<tokens {
                    let yt = p.gemv(Array(x[(t * cols)..<((t + 1) * cols)]), .shared)
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
        forEachLayoutAndISA { layout, tag in
            let p = layout.pack([], rows: 3, cols: 0)
            XCTAssertEqual(p.gemv([], .shared), [0, 0, 0], tag)
            XCTAssertEqual(p.gemm([], 2, .shared), [Int32](repeating: 0, count: 6), tag)
        }
        XCTAssertEqual(TernaryKernels.rowStrideBase3(cols: 0), 0)
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


/// A packed layout under test: packing, the dispatching kernels and the portable references, as closures.
private enum Layout: CaseIterable, CustomStringConvertible {
    case t2, t3

    var description: String { self == .t2 ? "t2" : "t3" }

    /// Columns around each layout's block (tails of every size class).
    var colsList: [Int] { self == .t2 ? [1, 5, 127, 128, 129, 300, 1000] : [1, 5, 63, 64, 65, 319, 320, 321, 700, 2560] }

    struct Packed {
        let gemv: ([Int8], ThreadPool?) -> [Int32]
        let gemvRange: (UnsafePointer<Int8>, UnsafeMutablePointer<Int32>, Range<Int>) -> Void
        let gemm: ([Int8], Int, ThreadPool?) -> [Int32]
        let gemvRef: ([Int8]) -> [Int32]
        let gemmRef: ([Int8], Int) -> [Int32]
    }

    func pack(_ w: [Int8], rows: Int, cols: Int) -> Packed {
        switch self {
        case .t2:
            let p = TernaryKernels.pack2bit(codes: w, rows: rows, cols: cols)
            return Packed(gemv: { TernaryKernels.gemv(p, x: $0, pool: $1) },
                          gemvRange: { TernaryKernels.gemv(p, x: $0, y: $1, rowRange: $2, pool: nil) },
                          gemm: { TernaryKernels.gemm(p, x: $0, tokens: $1, pool: $2) },
                          gemvRef: { TernaryKernels.gemvReference(p, x: $0) },
                          gemmRef: { TernaryKernels.gemmReference(p, x: $0, tokens: $1) })
        case .t3:
            let p = TernaryKernels.packBase3(codes: w, rows: rows, cols: cols)
            return Packed(gemv: { TernaryKernels.gemv(p, x: $0, pool: $1) },
                          gemvRange: { TernaryKernels.gemv(p, x: $0, y: $1, rowRange: $2, pool: nil) },
                          gemm: { TernaryKernels.gemm(p, x: $0, tokens: $1, pool: $2) },
                          gemvRef: { x in
                              var y = [Int32](repeating: 0, count: rows)
                              if rows > 0 { bitnet_t3_gemv_ref(p.bytes, p.rowStride, cols, x, &y, 0, rows) }
                              return y
                          },
                          gemmRef: { x, tokens in
                              var y = [Int32](repeating: 0, count: tokens * rows)
                              if rows > 0 && tokens > 0 { bitnet_t3_gemm_ref(p.bytes, p.rowStride, cols, x, cols, tokens, &y, rows, 0, rows) }
                              return y
                          })
        }
    }
}

extension TernaryKernelsTests {
    /// Digits u_0..u_4 of any base-3 byte by the documented rule, from the top: u = min(r / place, 2), r -= u * place,
    /// places 84, 28, 9, 3, 1; `packed` when they sum back to b (a byte some packer writes).
    func base3Digits(_ byte: UInt8) -> (digits: [Int], packed: Bool) {
        let places = [1, 3, 9, 28, 84]
        var r = Int(byte), u = [Int](repeating: 0, count: 5)
        for i in (0..<5).reversed() {
            u[i] = min(r / places[i], 2)
            r -= u[i] * places[i]
        }
        return (u, zip(u, places).map(*).reduce(0, +) == Int(byte))
    }

    /// Bytes no packer writes (28 g + 27 for g < 9, and 252...255) decode by the documented greedy rule on every path,
    /// so the paths agree on any input; bitnet_t3_unpack counts them.
    func testBase3AnyByteSameOnEveryPath() {
        let unused = (0..<256).filter { !base3Digits(UInt8($0)).packed }
        XCTAssertEqual(unused, (0..<9).map { 28 * $0 + 27 } + [252, 253, 254, 255])
        let rows = 4, cols = 640
        var bytes = (0..<(rows * 128)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        for b in 0..<256 { bytes[b] = UInt8(b) }
        let p = PackedTernaryBase3(bytes: bytes, rows: rows, cols: cols)
        var rng = KernelTestRNG(state: 15)
        let x = (0..<(3 * cols)).map { _ in rng.int8() }
        var w = [Int8](repeating: 0, count: rows * cols)
        for r in 0..<rows {
            for k in 0..<128 {
                let u = base3Digits(bytes[r * 128 + k]).digits
                for i in 0..<5 { w[r * cols + (k / 64) * 320 + i * 64 + k % 64] = Int8(u[i] - 1) }
            }
        }
        let want = naive(w, rows: rows, cols: cols, x: x, tokens: 3)
        forEachISA { isa in
            XCTAssertEqual(TernaryKernels.gemm(p, x: x, tokens: 3), want, isa)
            XCTAssertEqual(TernaryKernels.gemv(p, x: Array(x[0..<cols])), Array(want[0..<rows]), isa)
        }
        var codes = [Int8](repeating: 0, count: rows * cols)
        XCTAssertEqual(bitnet_t3_unpack(bytes, rows, cols, &codes), bytes.filter { !base3Digits($0).packed }.count)
    }
}
