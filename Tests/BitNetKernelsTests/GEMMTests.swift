import XCTest
import BitNetKernels

final class GEMMTests: XCTestCase {
    /// Deterministic test data (the model's RNG is not a dependency of this target).
    struct LCG {
        var s: UInt64
        mutating func next() -> UInt64 {
            s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return s >> 33
        }
        mutating func float() -> Float { Float(Int(next() % 2_000_001) - 1_000_000) / 1_000_000 }
        mutating func int(_ r: ClosedRange<Int>) -> Int { r.lowerBound + Int(next() % UInt64(r.count)) }
    }

    struct Case {
        var m, n, k: Int
        var transA, transB: Bool
        var alpha: Float = 1, beta: Float = 0
        var padA = 0, padB = 0, padC = 0
    }

    /// Runs sgemm (and optionally checks against the double-precision triple loop); returns C with its padding.
    @discardableResult
    func run(_ t: Case, pool: ThreadPool?, seed: UInt64 = 1, nanInC: Bool = false, check: Bool = true,
             file: StaticString = #filePath, line: UInt = #line) -> [Float] {
        var rng = LCG(s: seed)
        let lda = (t.transA ? t.m : t.k) + t.padA, ldb = (t.transB ? t.k : t.n) + t.padB, ldc = t.n + t.padC
        let a = (0..<((t.transA ? t.k : t.m) * lda)).map { _ in rng.float() }
        let b = (0..<((t.transB ? t.n : t.k) * ldb)).map { _ in rng.float() }
        let c0 = (0..<(t.m * ldc)).map { i in nanInC && i % 3 == 0 ? Float.nan : rng.float() }
        var c = c0
        GEMM.sgemm(transA: t.transA, transB: t.transB, m: t.m, n: t.n, k: t.k, alpha: t.alpha, a: a, lda: lda,
                   b: b, ldb: ldb, beta: t.beta, c: &c, ldc: ldc, pool: pool)
        guard check else { return c }
        // |error| of a k-term f32 dot product is at most ~k·u·Σ|a·b| (u = 2^-24); a few extra roundings for alpha/beta.
        let u = Double(Float.ulpOfOne) / 2
        var worst = 0.0
        for i in 0..<t.m {
            for j in 0..<ldc {
                let got = c[i * ldc + j]
                if j >= t.n {
                    XCTAssertEqual(got.bitPattern, c0[i * ldc + j].bitPattern, "padding of C clobbered", file: file, line: line)
                    continue
                }
                var s = 0.0, mag = 0.0
                for p in 0..<t.k {
                    let x = Double(t.transA ? a[p * lda + i] : a[i * lda + p])
                    let y = Double(t.transB ? b[j * ldb + p] : b[p * ldb + j])
                    s += x * y
                    mag += abs(x * y)
                }
                var want = Double(t.alpha) * s
                mag *= abs(Double(t.alpha))
                if t.beta != 0 {
                    want += Double(t.beta) * Double(c0[i * ldc + j])
                    mag += abs(Double(t.beta) * Double(c0[i * ldc + j]))
                }
                let tol = 2 * Double(t.k + 4) * u * mag + 1e-30
                let err = abs(Double(got) - want)
                XCTAssertFalse(got.isNaN, "NaN at (\(i),\(j)) for \(t)", file: file, line: line)
                worst = max(worst, err / tol)
            }
        }
        XCTAssertLessThanOrEqual(worst, 1, "error above the f32 bound for \(t)", file: file, line: line)
        return c
    }

    /// Like `run` (same inputs), but checks against the C double-precision reference, with the error bound computed
    /// by the reference too (|alpha|·|A|·|B| + |beta·C|): fast enough in debug builds for shapes that cross every
    /// cache block.
    @discardableResult
    func runFast(_ t: Case, pool: ThreadPool?, seed: UInt64 = 1, file: StaticString = #filePath, line: UInt = #line) -> [Float] {
        var rng = LCG(s: seed)
        let lda = (t.transA ? t.m : t.k) + t.padA, ldb = (t.transB ? t.k : t.n) + t.padB, ldc = t.n + t.padC
        let a = (0..<((t.transA ? t.k : t.m) * lda)).map { _ in rng.float() }
        let b = (0..<((t.transB ? t.n : t.k) * ldb)).map { _ in rng.float() }
        let c0 = (0..<(t.m * ldc)).map { _ in rng.float() }
        var c = c0, want = c0, mag = c0.map { abs($0) }
        GEMM.sgemm(transA: t.transA, transB: t.transB, m: t.m, n: t.n, k: t.k, alpha: t.alpha, a: a, lda: lda,
                   b: b, ldb: ldb, beta: t.beta, c: &c, ldc: ldc, pool: pool)
        GEMM.sgemmReference(transA: t.transA, transB: t.transB, m: t.m, n: t.n, k: t.k, alpha: t.alpha, a: a, lda: lda,
                            b: b, ldb: ldb, beta: t.beta, c: &want, ldc: ldc)
        GEMM.sgemmReference(transA: t.transA, transB: t.transB, m: t.m, n: t.n, k: t.k, alpha: abs(t.alpha),
                            a: a.map { abs($0) }, lda: lda, b: b.map { abs($0) }, ldb: ldb, beta: abs(t.beta), c: &mag, ldc: ldc)
        let u = Double(Float.ulpOfOne) / 2
        var worst = 0.0, clobbered = 0
        for i in 0..<t.m {
            for j in 0..<ldc {
                let x = i * ldc + j
                if j >= t.n {
                    if c[x].bitPattern != c0[x].bitPattern { clobbered += 1 }
                    continue
                }
                // `want` is itself rounded to f32 (half an ulp, within the bound's slack).
                let tol = 2 * Double(t.k + 4) * u * Double(mag[x]) + 1e-30
                let err = abs(Double(c[x]) - Double(want[x]))
                worst = max(worst, c[x].isNaN ? .infinity : err / tol)
            }
        }
        XCTAssertEqual(clobbered, 0, "padding of C clobbered for \(t)", file: file, line: line)
        XCTAssertLessThanOrEqual(worst, 1, "error above the f32 bound for \(t) on \(GEMM.activeISA)", file: file, line: line)
        return c
    }

    /// Runs `body` once per path this CPU supports, with that path forced; restores the previous one afterwards.
    func forEachSupportedISA(_ body: (String) -> Void) {
        let previous = GEMM.activeISA
        defer { GEMM.selectISA(previous) }
        for isa in GEMM.isaNames where GEMM.isISASupported(isa) {
            XCTAssertEqual(GEMM.selectISA(isa), isa)
            body(isa)
        }
    }

    func testActiveISA() {
        XCTAssertTrue(GEMM.isaNames.contains(GEMM.activeISA))
        XCTAssertTrue(GEMM.isISASupported("portable"))
        XCTAssertTrue(GEMM.isISASupported(GEMM.activeISA))
        XCTAssertFalse(GEMM.isISASupported("sse9"))
        if ProcessInfo.processInfo.environment["BITNET_ISA"] == nil {
            // By default sgemm takes the fastest supported path.
            XCTAssertEqual(GEMM.activeISA, GEMM.isaNames.first(where: GEMM.isISASupported))
        }
        // An unsupported request falls back to the best supported path below it.
        let previous = GEMM.activeISA
        defer { GEMM.selectISA(previous) }
        let fallback = GEMM.isaNames.first(where: GEMM.isISASupported)!
        XCTAssertEqual(GEMM.selectISA("avx512"), fallback)
        XCTAssertEqual(GEMM.selectISA("avx2"), GEMM.isISASupported("avx2+fma") ? "avx2+fma" : "portable")
    }

    func testEachISAAgreesWithReference() {
        let pool = ThreadPool(threadCount: 2)
        forEachSupportedISA { isa in
            for (i, (ta, tb)) in [(false, true), (false, false), (true, false), (true, true)].enumerated() {
                run(Case(m: 29, n: 37, k: 45, transA: ta, transB: tb, alpha: 0.75, beta: 0.5, padA: 1, padB: 2, padC: 3),
                    pool: pool, seed: UInt64(i))
                run(Case(m: 4, n: 70, k: 33, transA: ta, transB: tb), pool: pool, seed: UInt64(i), nanInC: true)
                runFast(Case(m: 181, n: 150, k: 409, transA: ta, transB: tb, beta: 1), pool: pool, seed: UInt64(i))
            }
        }
    }

    /// The AVX-512 path (6x64 tiles, K blocks of up to 384, 768-column blocks, 168-row A~ blocks) against the
    /// reference on shapes with tails in every dimension, all transposes, alpha/beta and padded leading dimensions.
    func testAVX512MatchesReferenceWithTails() throws {
        try XCTSkipUnless(GEMM.isISASupported("avx512"), "this CPU has no AVX-512")
        let previous = GEMM.activeISA
        defer { GEMM.selectISA(previous) }
        XCTAssertEqual(GEMM.selectISA("avx512"), "avx512")
        let pool = ThreadPool(threadCount: 2)
        var rng = LCG(s: 512)
        let ab: [(Float, Float)] = [(1, 0), (1, 1), (-0.5, 0.25), (2, 0)]
        for ta in [false, true] {
            for tb in [false, true] {
                for (alpha, beta) in ab {
                    // Random small shapes: row tails (m mod 6), column tails (n mod 16 and mod 64), short k.
                    let t = Case(m: rng.int(1...27), n: rng.int(1...150), k: rng.int(1...80), transA: ta, transB: tb,
                                 alpha: alpha, beta: beta, padA: rng.int(0...3), padB: rng.int(0...3), padC: rng.int(0...3))
                    run(t, pool: rng.int(0...1) == 0 ? nil : pool, seed: rng.next())
                }
                // Across the cache blocks: two K blocks, two row blocks (packed A~), two column blocks.
                runFast(Case(m: 175, n: 131, k: 397, transA: ta, transB: tb, alpha: 0.5, beta: 0.5, padA: 3, padC: 1),
                        pool: pool, seed: 1)
                runFast(Case(m: 19, n: 781, k: 390, transA: ta, transB: tb, padB: 5), pool: pool, seed: 2)
                runFast(Case(m: 175, n: 131, k: 397, transA: ta, transB: tb), pool: nil, seed: 3)
                // The dot-product path (m <= 8, B transposed) and a single row/column.
                runFast(Case(m: 7, n: 203, k: 517, transA: ta, transB: tb, beta: 1), pool: pool, seed: 4)
                run(Case(m: 1, n: 1, k: 33, transA: ta, transB: tb), pool: nil)
            }
        }
        // beta == 0 never reads C.
        run(Case(m: 13, n: 70, k: 9, transA: false, transB: false, padC: 2), pool: pool, nanInC: true)
        run(Case(m: 40, n: 100, k: 400, transA: true, transB: true, alpha: 2), pool: pool, nanInC: true)
    }

    /// On the AVX-512 path too, the bits of C do not depend on the thread count (rows or columns split, shared
    /// packed operands, A read in place or packed).
    func testAVX512BitwiseIdenticalAcrossThreadCounts() throws {
        try XCTSkipUnless(GEMM.isISASupported("avx512"), "this CPU has no AVX-512")
        let previous = GEMM.activeISA
        defer { GEMM.selectISA(previous) }
        XCTAssertEqual(GEMM.selectISA("avx512"), "avx512")
        let pools = [ThreadPool(threadCount: 2), ThreadPool(threadCount: 3)]
        let cases = [
            Case(m: 400, n: 130, k: 100, transA: false, transB: true),   // rows split, B~ shared, A in place
            Case(m: 50, n: 900, k: 100, transA: false, transB: false, beta: 0.5),  // columns split, A in place
            Case(m: 50, n: 900, k: 100, transA: true, transB: false),    // columns split, A~ shared
            Case(m: 181, n: 70, k: 400, transA: true, transB: true, alpha: 0.7, beta: 0.2),  // two K blocks
            Case(m: 390, n: 64, k: 96, transA: false, transB: true),
            Case(m: 64, n: 96, k: 390, transA: true, transB: false),
            Case(m: 6, n: 1001, k: 77, transA: false, transB: true, beta: 1),  // dot products
        ]
        for (i, t) in cases.enumerated() {
            let single = run(t, pool: nil, seed: UInt64(i), check: false)
            for pool in pools {
                let r = run(t, pool: pool, seed: UInt64(i), check: false)
                XCTAssertEqual(r.map(\.bitPattern), single.map(\.bitPattern),
                               "AVX-512 results differ between \(pool.threadCount) threads and 1 for \(t)")
            }
        }
    }

    func testEdgeShapesAllTransposes() {
        let pool = ThreadPool(threadCount: 2)
        let dims = [1, 2, 3, 5, 6, 7, 16, 17, 33]
        var rng = LCG(s: 7)
        for ta in [false, true] {
            for tb in [false, true] {
                for _ in 0..<14 {
                    let t = Case(m: dims[rng.int(0...8)], n: dims[rng.int(0...8)], k: dims[rng.int(0...8)],
                                 transA: ta, transB: tb)
                    run(t, pool: pool)
                }
                run(Case(m: 1, n: 1, k: 1, transA: ta, transB: tb), pool: pool)
                run(Case(m: 1, n: 37, k: 300, transA: ta, transB: tb), pool: pool)   // m = 1 (GEMV-like)
                run(Case(m: 45, n: 1, k: 129, transA: ta, transB: tb), pool: pool)   // n = 1
                run(Case(m: 19, n: 23, k: 1, transA: ta, transB: tb), pool: pool)    // k = 1
            }
        }
    }

    func testLargerShapesTailsAndBlocking() {
        // k > 256 crosses K blocks, m > 144 crosses M blocks, n not a multiple of 16 leaves column tails.
        let pool = ThreadPool(threadCount: 2)
        for (i, (ta, tb)) in [(false, true), (false, false), (true, false), (true, true)].enumerated() {
            run(Case(m: 157, n: 83, k: 301, transA: ta, transB: tb), pool: pool, seed: UInt64(i))
            run(Case(m: 23, n: 211, k: 530, transA: ta, transB: tb), pool: pool, seed: UInt64(i + 10))
        }
    }

    func testAlphaBetaAndLeadingDimensions() {
        let pool = ThreadPool(threadCount: 2)
        let ab: [(Float, Float)] = [(1, 0), (1, 1), (0.5, 0), (-1.25, 0.3), (2, -2), (1, 0.5)]
        var rng = LCG(s: 99)
        for (alpha, beta) in ab {
            for ta in [false, true] {
                for tb in [false, true] {
                    let t = Case(m: rng.int(1...40), n: rng.int(1...40), k: rng.int(1...70), transA: ta, transB: tb,
                                 alpha: alpha, beta: beta, padA: rng.int(0...5), padB: rng.int(0...5), padC: rng.int(0...5))
                    run(t, pool: pool)
                }
            }
        }
    }

    func testBetaZeroOverwritesNaN() {
        for ta in [false, true] {
            for tb in [false, true] {
                run(Case(m: 13, n: 29, k: 7, transA: ta, transB: tb, beta: 0, padC: 2), pool: .shared, nanInC: true)
                run(Case(m: 40, n: 40, k: 300, transA: ta, transB: tb, alpha: 2, beta: 0), pool: .shared, nanInC: true)
            }
        }
    }

    func testZeroKAndZeroAlphaScaleC() {
        var c: [Float] = [1, 2, .nan, 4]
        let a: [Float] = [1, 1], b: [Float] = [1, 1]
        GEMM.sgemm(transA: false, transB: false, m: 2, n: 2, k: 0, a: a, lda: 0, b: b, ldb: 2, beta: 0, c: &c, ldc: 2)
        XCTAssertEqual(c, [0, 0, 0, 0])
        c = [1, 2, 3, 4]
        let nanA: [Float] = [.nan, .nan, .nan, .nan]
        GEMM.sgemm(transA: false, transB: false, m: 2, n: 2, k: 2, alpha: 0, a: nanA, lda: 2, b: b + b, ldb: 2,
                   beta: 2, c: &c, ldc: 2)
        XCTAssertEqual(c, [2, 4, 6, 8])
        c = [1, 2, 3, 4]
        GEMM.sgemm(transA: false, transB: false, m: 0, n: 2, k: 2, a: a, lda: 2, b: b, ldb: 2, beta: 0, c: &c, ldc: 2)
        XCTAssertEqual(c, [1, 2, 3, 4])
    }

    func testBitwiseIdenticalAcrossThreadCounts() {
        let pools = [ThreadPool(threadCount: 1), ThreadPool(threadCount: 2), ThreadPool(threadCount: 3)]
        let cases = [
            Case(m: 390, n: 64, k: 96, transA: false, transB: true),   // forward y = x W^T
            Case(m: 390, n: 96, k: 64, transA: false, transB: false),  // dx = dy W
            Case(m: 64, n: 96, k: 390, transA: true, transB: false),   // dW = dy^T x
            Case(m: 7, n: 500, k: 300, transA: true, transB: true, alpha: 0.7, beta: 0.2),
            // Wide n split over columns: one thread packs A, smaller column ranges read A in place.
            Case(m: 40, n: 400, k: 300, transA: false, transB: false, beta: 0.5),
            Case(m: 41, n: 330, k: 70, transA: false, transB: true),
            // Few rows with B transposed take the dot-product path (decode-style y = x W^T).
            Case(m: 5, n: 1001, k: 77, transA: false, transB: true, beta: 1),
            Case(m: 3, n: 900, k: 130, transA: true, transB: true),
        ]
        for (i, t) in cases.enumerated() {
            let results = pools.map { run(t, pool: $0, seed: UInt64(i), check: false) }
            let single = run(t, pool: nil, seed: UInt64(i), check: false)
            for r in results + [single] {
                XCTAssertEqual(r.map(\.bitPattern), results[0].map(\.bitPattern), "results differ between thread counts for \(t)")
            }
        }
    }

    func testPortablePathMatchesContract() {
        let previous = GEMM.activeISA
        defer { GEMM.selectISA(previous) }
        XCTAssertEqual(GEMM.selectISA("portable"), "portable")
        let pool = ThreadPool(threadCount: 2)
        for ta in [false, true] {
            for tb in [false, true] {
                run(Case(m: 37, n: 21, k: 300, transA: ta, transB: tb, alpha: 1.5, beta: 0.5, padA: 1, padC: 3), pool: pool)
                run(Case(m: 1, n: 5, k: 3, transA: ta, transB: tb), pool: pool, nanInC: true)
            }
        }
        let t = Case(m: 100, n: 70, k: 50, transA: false, transB: true)
        XCTAssertEqual(run(t, pool: pool, check: false).map(\.bitPattern), run(t, pool: nil, check: false).map(\.bitPattern))
    }

    func testReferenceAgreesWithSgemm() {
        var rng = LCG(s: 5)
        let m = 9, n = 11, k = 13
        let a = (0..<(k * m)).map { _ in rng.float() }, b = (0..<(n * k)).map { _ in rng.float() }
        var c1 = (0..<(m * n)).map { _ in rng.float() }
        var c2 = c1
        GEMM.sgemmReference(transA: true, transB: true, m: m, n: n, k: k, alpha: 0.5, a: a, lda: m, b: b, ldb: k,
                            beta: 1.5, c: &c1, ldc: n)
        GEMM.sgemm(transA: true, transB: true, m: m, n: n, k: k, alpha: 0.5, a: a, lda: m, b: b, ldb: k,
                   beta: 1.5, c: &c2, ldc: n)
        for i in 0..<(m * n) { XCTAssertEqual(c1[i], c2[i], accuracy: 1e-5) }
    }

    func testBenchmarkRuns() {
        let r = GEMM.benchmark(m: 64, n: 48, k: 32, transA: false, transB: true, threads: nil, iterations: 3)
        XCTAssertGreaterThan(r.gflops, 0)
        XCTAssertGreaterThan(r.seconds, 0)
    }
}
