import CBitNetKernels
import Foundation

/// Single-precision matrix multiply (row-major), backed by the C kernels in CBitNetKernels.
package enum GEMM {
    /// C = alpha·op(A)·op(B) + beta·C, row-major; op(A) is m×k, op(B) is k×n.
    ///
    /// A is m×k (lda ≥ k), or k×m when `transA` (lda ≥ m); B is k×n (ldb ≥ n), or n×k when `transB` (ldb ≥ k);
    /// ldc ≥ n. beta == 0 overwrites C (NaNs there are ignored); alpha == 0 or k == 0 only scales C.
    /// Work is split over output blocks, never over k, so the bits of C are the same for any pool size.
    /// `pool: nil` runs on the calling thread.
    package static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, pool: ThreadPool? = .shared) {
        check(transA: transA, transB: transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc)
        bitnet_sgemm(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, pool?.raw)
    }

    /// Portable scalar reference with the same contract (tests compare against it); accumulates in double, one thread.
    package static func sgemmReference(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                                      a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                      beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        check(transA: transA, transB: transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc)
        bitnet_sgemm_ref(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }

    /// The paths sgemm can take, fastest first.
    package static let isaNames = ["avx512", "avx2+fma", "portable"]

    /// "avx512", "avx2+fma" or "portable": the path sgemm takes, by default the fastest this CPU supports
    /// (BITNET_ISA=avx2 caps it at "avx2+fma", BITNET_ISA=portable forces "portable"; read once).
    package static var activeISA: String { String(cString: bitnet_sgemm_isa_name()) }

    /// Whether this CPU (and OS) can run the named path ("avx512", "avx2+fma" or "avx2", "portable").
    package static func isISASupported(_ name: String) -> Bool {
        guard let isa = isa(named: name) else { return false }
        return bitnet_sgemm_isa_supported(isa) != 0
    }

    /// Switches sgemm to "avx512", "avx2+fma" (or "avx2") or "portable" (tests, comparisons); returns the path now in
    /// effect: an unsupported request falls back to the best supported path below it, an unknown name to "portable".
    /// Each path is deterministic on its own, but different paths round differently. Not safe while sgemm runs on
    /// other threads.
    @discardableResult
    package static func selectISA(_ name: String) -> String {
        _ = bitnet_sgemm_set_isa(isa(named: name) ?? BITNET_ISA_PORTABLE)
        return activeISA
    }

    private static func isa(named name: String) -> bitnet_isa? {
        switch name {
        case "avx512": return BITNET_ISA_AVX512
        case "avx2+fma", "avx2": return BITNET_ISA_AVX2_FMA
        case "portable": return BITNET_ISA_PORTABLE
        default: return nil
        }
    }

    /// Measures sgemm GFLOP/s on an m×n×k problem (for `bitnet bench gemm`), returns (gflops, seconds per call).
    ///
    /// Inputs are random in [-1, 1); one untimed warm-up call, then `iterations` timed calls; the median call counts.
    package static func benchmark(m: Int, n: Int, k: Int, transA: Bool, transB: Bool, threads: ThreadPool?,
                                 iterations: Int) -> (gflops: Double, seconds: Double) {
        precondition(m > 0 && n > 0 && k > 0, "GEMM.benchmark: m, n, k must be positive (got \(m), \(n), \(k))")
        let lda = transA ? m : k, ldb = transB ? k : n
        var rng = SplitMix64(seed: 0x9E37_79B9_7F4A_7C15)
        let a = (0..<(m * k)).map { _ in rng.nextUnitFloat() }
        let b = (0..<(k * n)).map { _ in rng.nextUnitFloat() }
        var c = [Float](repeating: 0, count: m * n)
        var times: [Double] = []
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    let pcBase = pc.baseAddress!
                    func call() {
                        sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: pa.baseAddress!, lda: lda,
                              b: pb.baseAddress!, ldb: ldb, c: pcBase, ldc: n, pool: threads)
                    }
                    call()
                    for _ in 0..<max(1, iterations) {
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        call()
                        times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
                    }
                }
            }
        }
        times.sort()
        let seconds = max(times[times.count / 2], 1e-12)
        return (2.0 * Double(m) * Double(n) * Double(k) / seconds * 1e-9, seconds)
    }

    private static func check(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, lda: Int, ldb: Int, ldc: Int) {
        precondition(m >= 0 && n >= 0 && k >= 0, "GEMM.sgemm: negative dimension (m=\(m), n=\(n), k=\(k))")
        precondition(lda >= (transA ? m : k) && lda >= 0,
                     "GEMM.sgemm: lda=\(lda) must be >= \(transA ? "m" : "k")=\(transA ? m : k) (transA=\(transA))")
        precondition(ldb >= (transB ? k : n) && ldb >= 0,
                     "GEMM.sgemm: ldb=\(ldb) must be >= \(transB ? "k" : "n")=\(transB ? k : n) (transB=\(transB))")
        precondition(ldc >= n, "GEMM.sgemm: ldc=\(ldc) must be >= n=\(n)")
    }
}

/// Small deterministic generator for benchmark inputs (no dependency on the model's RNG).
private struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func nextUnitFloat() -> Float { Float(Int64(next() >> 40) - (1 << 23)) / Float(1 << 23) }
}
