import CBitNetKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A row-major [rows, cols] matrix of IEEE half weights (bit patterns), row r at bits[r * cols].
/// The bits are owned or borrowed from a memory-mapped file (a GGUF F16 tensor has this layout).
package struct F16Matrix: Sendable, Equatable {
    /// The half bit patterns, owned or in a file mapping; the kernels read them in place.
    package let storage: KernelBuffer<UInt16>
    package let rows: Int
    package let cols: Int

    /// The bit patterns as an array (a copy when they live in a file mapping).
    package var bits: [UInt16] { storage.array }

    package init(bits: [UInt16], rows: Int, cols: Int) {
        self.init(storage: KernelBuffer(bits), rows: rows, cols: cols)
    }

    /// A matrix over existing storage (e.g. a mapped F16 tensor) of rows * cols values.
    package init(storage: KernelBuffer<UInt16>, rows: Int, cols: Int) {
        precondition(rows >= 0 && cols >= 0 && storage.count == rows * cols, "F16Matrix: \(storage.count) values for \(rows)x\(cols)")
        self.storage = storage; self.rows = rows; self.cols = cols
    }

    /// Rounds row-major f32 weights to half (nearest even).
    package init(_ weights: [Float], rows: Int, cols: Int) {
        precondition(rows >= 0 && cols >= 0 && weights.count == rows * cols, "F16Matrix: \(weights.count) values for \(rows)x\(cols)")
        self.init(bits: DenseKernels.toF16(weights), rows: rows, cols: cols)
    }
}

/// An int8 block-quantized matrix in the q8 layout of `bitnet_dense.h`: each row is ceil(cols / 32) blocks of
/// 36 bytes (f32 scale d, then 32 int8 codes q; weight = d * q; the last block's tail padded with q = 0).
package struct Q8Matrix: Sendable, Equatable {
    package let bytes: [UInt8]
    package let rows: Int
    package let cols: Int
    /// Bytes per row: ceil(cols / 32) * 36.
    package let rowStride: Int

    package init(bytes: [UInt8], rows: Int, cols: Int) {
        let stride = DenseKernels.q8RowStride(cols: cols)
        precondition(rows >= 0 && cols >= 0 && bytes.count == rows * stride,
                     "Q8Matrix: \(bytes.count) bytes do not hold \(rows)x\(cols) (row stride \(stride))")
        self.bytes = bytes; self.rows = rows; self.cols = cols; self.rowStride = stride
    }
}

/// Dense inference kernels: f16-weight GEMV (fp twin, f16 output head) and the q8 block format (output head /
/// embedding) with its GEMV. Activations and outputs are f32. Rows can be split over a `ThreadPool`; every
/// path is deterministic and the result does not depend on the split.
package enum DenseKernels {
    /// "avx512", "avx2" or "portable": the path the GEMVs take (best supported by default; BITNET_ISA=avx2 caps
    /// it, BITNET_ISA=portable forces portable; read once).
    package static var activeISA: String { String(cString: bitnet_dense_isa_name()) }

    /// The paths, fastest first.
    package static let isaNames = ["avx512", "avx2", "portable"]

    /// Switches to the named path (capped at what the CPU supports; unknown names mean "portable"); returns the
    /// path now in effect. Not safe while the kernels run on other threads.
    @discardableResult
    package static func selectISA(_ name: String) -> String {
        let level: Int32
        switch name {
        case "avx512": level = BITNET_DENSE_AVX512
        case "avx2", "avx2+fma": level = BITNET_DENSE_AVX2
        default: level = BITNET_DENSE_PORTABLE
        }
        _ = bitnet_dense_set_isa(level)
        return activeISA
    }

    /// Below this many weights a GEMV runs on the calling thread.
    package static let parallelThreshold = 1 << 18

    // MARK: f16 conversion

    /// Half bit patterns of `values`, rounded to nearest even.
    package static func toF16(_ values: [Float]) -> [UInt16] {
        [UInt16](unsafeUninitializedCapacity: values.count) { buf, n in
            if !values.isEmpty { bitnet_f32_to_f16(values, buf.baseAddress!, values.count) }
            n = values.count
        }
    }

    /// f32 values of half bit patterns (exact).
    package static func toF32(f16 bits: [UInt16]) -> [Float] {
        [Float](unsafeUninitializedCapacity: bits.count) { buf, n in
            if !bits.isEmpty { bitnet_f16_to_f32(bits, buf.baseAddress!, bits.count) }
            n = bits.count
        }
    }

    // MARK: f16 GEMV

    /// y = W x for every row (x.count == cols).
    package static func f16Gemv(_ w: F16Matrix, x: [Float], pool: ThreadPool? = .shared) -> [Float] {
        precondition(x.count == w.cols, "f16Gemv: x has \(x.count) values, matrix has \(w.cols) columns")
        return [Float](unsafeUninitializedCapacity: w.rows) { y, n in
            if w.rows > 0 {
                w.storage.withUnsafeBufferPointer { wp in
                    x.withUnsafeBufferPointer { xp in
                        f16Gemv(weights: wp.baseAddress ?? dummyF16, ld: w.cols, rows: w.rows, cols: w.cols,
                                x: xp.baseAddress ?? dummyF32, y: y.baseAddress!, pool: pool)
                    }
                }
            }
            n = w.rows
        }
    }

    /// Tells the pool's idle workers that `f16Gemv` over these rows comes next (`ThreadPool.idlePrefetchBytes`).
    package static func announceF16Gemv(weights: UnsafePointer<UInt16>, ld: Int, rows: Int, cols: Int, pool: ThreadPool? = .shared) {
        ThreadPool.prefetchSplit(work: cols, granule: 4, threshold: parallelThreshold, pool: pool, (UnsafeRawPointer(weights), ld * 2, rows), nil, nil)
    }

    /// Raw version (e.g. a memory-mapped model file): row r at weights + r * ld (ld >= cols, in elements);
    /// computes y[r] for r in `rowRange` (default all rows; y indexed by absolute row).
    package static func f16Gemv(weights: UnsafePointer<UInt16>, ld: Int, rows: Int, cols: Int,
                               x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                               rowRange: Range<Int>? = nil, pool: ThreadPool? = .shared) {
        let range = rowRange ?? 0..<rows
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "f16Gemv: row range \(range) outside 0..<\(rows)")
        precondition(cols >= 0 && ld >= cols, "f16Gemv: ld \(ld) < cols \(cols)")
        var args = bitnet_f16_gemv_args(w: weights, ld: ld, cols: cols, x: x, y: y)
        withUnsafePointer(to: &args) {
            ThreadPool.splitRows(range, work: cols, granule: 4, threshold: parallelThreshold, pool: pool, kernel: bitnet_f16_gemv_rows, args: $0)
        }
    }

    /// Portable scalar reference (f32 accumulation in column order), single-threaded.
    package static func f16GemvReference(_ w: F16Matrix, x: [Float], rowRange: Range<Int>? = nil) -> [Float] {
        precondition(x.count == w.cols)
        let range = rowRange ?? 0..<w.rows
        var y = [Float](repeating: 0, count: w.rows)
        if !range.isEmpty { w.storage.withUnsafeBufferPointer { bitnet_f16_gemv_ref($0.baseAddress!, w.cols, w.cols, x, &y, range.lowerBound, range.upperBound) } }
        return y
    }

    // MARK: q8

    /// Bytes per q8 row: ceil(cols / 32) * 36.
    package static func q8RowStride(cols: Int) -> Int { Int(bitnet_q8_row_stride(cols)) }

    /// Quantizes row-major [rows, cols] f32 weights: per 32-weight block d = absmax / 127, q = round-half-even(w / d).
    package static func quantizeQ8(_ weights: [Float], rows: Int, cols: Int, pool: ThreadPool? = .shared) -> Q8Matrix {
        precondition(rows >= 0 && cols >= 0 && weights.count == rows * cols, "quantizeQ8: \(weights.count) values for \(rows)x\(cols)")
        let stride = q8RowStride(cols: cols)
        let bytes = [UInt8](unsafeUninitializedCapacity: rows * stride) { buf, n in
            if rows * stride > 0 {
                let dst = buf.baseAddress!
                weights.withUnsafeBufferPointer { src in
                    let s = src.baseAddress!
                    ThreadPool.splitRows(0..<rows, work: cols, granule: 4, threshold: parallelThreshold, pool: pool) { r0, r1 in
                        bitnet_q8_quantize(s, cols, cols, dst, r0, r1)
                    }
                }
            }
            n = rows * stride
        }
        return Q8Matrix(bytes: bytes, rows: rows, cols: cols)
    }

    /// Row-major [rows, cols] f32 weights d * q.
    package static func dequantize(_ q: Q8Matrix) -> [Float] {
        let n = q.rows * q.cols
        return [Float](unsafeUninitializedCapacity: n) { buf, count in
            if n > 0 { bitnet_q8_dequantize(q.bytes, q.cols, buf.baseAddress!, q.cols, 0, q.rows) }
            count = n
        }
    }

    /// y = W x for every row, f32 activations (x.count == cols).
    package static func q8Gemv(_ q: Q8Matrix, x: [Float], pool: ThreadPool? = .shared) -> [Float] {
        precondition(x.count == q.cols, "q8Gemv: x has \(x.count) values, matrix has \(q.cols) columns")
        return [Float](unsafeUninitializedCapacity: q.rows) { y, n in
            if q.rows > 0 {
                q.bytes.withUnsafeBufferPointer { wp in
                    x.withUnsafeBufferPointer { xp in
                        q8Gemv(weights: wp.baseAddress ?? dummyBytes, rowStride: q.rowStride, rows: q.rows, cols: q.cols,
                               x: xp.baseAddress ?? dummyF32, y: y.baseAddress!, pool: pool)
                    }
                }
            }
            n = q.rows
        }
    }

    /// Raw version: row r at weights + r * rowStride bytes (rowStride >= q8RowStride(cols)); y[r] for r in
    /// `rowRange` (default all rows; y indexed by absolute row).
    package static func q8Gemv(weights: UnsafePointer<UInt8>, rowStride: Int, rows: Int, cols: Int,
                              x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                              rowRange: Range<Int>? = nil, pool: ThreadPool? = .shared) {
        let range = rowRange ?? 0..<rows
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "q8Gemv: row range \(range) outside 0..<\(rows)")
        precondition(cols >= 0 && rowStride >= q8RowStride(cols: cols), "q8Gemv: row stride \(rowStride) too small for \(cols) columns")
        ThreadPool.splitRows(range, work: cols, granule: 4, threshold: parallelThreshold, pool: pool) { r0, r1 in
            bitnet_q8_gemv(weights, rowStride, cols, x, y, r0, r1)
        }
    }

    /// Portable scalar reference, single-threaded.
    package static func q8GemvReference(_ q: Q8Matrix, x: [Float], rowRange: Range<Int>? = nil) -> [Float] {
        precondition(x.count == q.cols)
        let range = rowRange ?? 0..<q.rows
        var y = [Float](repeating: 0, count: q.rows)
        if !range.isEmpty { bitnet_q8_gemv_ref(q.bytes, q.rowStride, q.cols, x, &y, range.lowerBound, range.upperBound) }
        return y
    }

    // MARK: helpers

    /// Stand-ins for the base of an empty buffer (cols == 0): never dereferenced.
    static var dummyF16: UnsafePointer<UInt16> { UnsafePointer(bitPattern: 2)! }
    static var dummyF32: UnsafePointer<Float> { UnsafePointer(bitPattern: 4)! }
    static var dummyBytes: UnsafePointer<UInt8> { UnsafePointer(bitPattern: 1)! }

}

/// Memory read bandwidth, for rooflines.
package enum MemoryBandwidth {
    /// Best-of-`repetitions` rate (bytes per second) of streaming a fresh `bytes`-byte buffer with the widest
    /// loads available (a 64-bit sum-reduce keeps the loads alive), split into one contiguous chunk per pool
    /// thread (nil: the calling thread only). One untimed warm-up pass; 0 if the buffer cannot be allocated.
    package static func measure(bytes: Int = 512 << 20, repetitions: Int = 3, pool: ThreadPool? = .shared) -> Double {
        precondition(bytes > 0, "MemoryBandwidth.measure: bytes must be > 0")
        return bitnet_measure_read_bandwidth(bytes, Int32(clamping: repetitions), pool?.raw)
    }

    /// A read probe that keeps its buffer between passes, to rate memory next to the work it is compared with (a
    /// roofline step by step). Nil when `bytes` is 0 or the buffer cannot be mapped.
    package final class Probe {
        private let raw: OpaquePointer
        /// The pool whose threads stream the buffer (held while the probe lives).
        private let pool: ThreadPool?

        package init?(bytes: Int = 256 << 20, pool: ThreadPool? = .shared) {
            guard bytes > 0, let p = bitnet_read_probe_create(bytes, pool?.raw) else { return nil }
            raw = p
            self.pool = pool
        }

        deinit { bitnet_read_probe_destroy(raw) }

        /// One timed pass over the buffer: bytes per second.
        package func pass() -> Double { bitnet_read_probe_pass(raw) }
    }
}

/// Resident-set statistics of this process.
package enum ProcessMemory {
    /// Peak resident set size in bytes: VmHWM from /proc/self/status where available, else getrusage ru_maxrss
    /// (KiB on Linux, bytes on Darwin).
    package static func peakRSSBytes() -> Int {
        if let kb = procStatusKiB("VmHWM:") { return kb * 1024 }
        var usage = rusage()
        guard getrusage(0 /* RUSAGE_SELF on Linux and Darwin */, &usage) == 0 else { return 0 }
        #if canImport(Darwin)
        return Int(usage.ru_maxrss)
        #else
        return Int(usage.ru_maxrss) * 1024
        #endif
    }

    /// Current resident set size in bytes (VmRSS); nil where /proc is unavailable.
    package static func currentRSSBytes() -> Int? {
        procStatusKiB("VmRSS:").map { $0 * 1024 }
    }

    /// Resets the peak (VmHWM) to the current RSS by writing "5" to /proc/self/clear_refs (Linux >= 4.0).
    /// Returns false where unsupported. getrusage's ru_maxrss is not reset by this.
    @discardableResult
    package static func resetPeakRSS() -> Bool {
        #if os(Linux)
        let fd = open("/proc/self/clear_refs", O_WRONLY)
        if fd < 0 { return false }
        defer { close(fd) }
        let msg: [UInt8] = [UInt8(ascii: "5")]
        return write(fd, msg, 1) == 1
        #else
        return false
        #endif
    }

    /// The KiB value of a "Key:   123 kB" line of /proc/self/status.
    private static func procStatusKiB(_ key: String) -> Int? {
        #if os(Linux)
        guard let f = fopen("/proc/self/status", "r") else { return nil }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 512)
        while fgets(&line, Int32(line.count), f) != nil {
            let s = line.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            if s.hasPrefix(key) {
                let digits = s.dropFirst(key.count).filter { $0.isNumber }
                return Int(String(digits))
            }
        }
        return nil
        #else
        return nil
        #endif
    }
}
