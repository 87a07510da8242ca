import CBitNetKernels

/// The packed layouts of ternary weights (`bitnet_ternary.h`): 2 bits per weight (t2, bitnet.cpp I2_S style), or
/// 1.6 bits (t3, five base-3 digits per byte: 20 % fewer bytes per decoded token, the same Int32 products).
package enum TernaryLayout: String, Sendable, CaseIterable {
    case t2, t3
}

/// Exact int8 x ternary products over the base-3 layout (1.6 bit/weight): the contracts of the 2-bit `gemv`/`gemm`,
/// same Int32 results. The AVX512 path needs AVX512-VBMI besides VNNI (else it takes the AVX2 path);
/// `activeISA` / `selectISA` pick the path for both layouts.
extension TernaryKernels {
    /// Whether the t3 kernels run their AVX512-VBMI path on this CPU (with the current ISA cap); elsewhere they
    /// decode more slowly than t2 streams.
    package static var base3IsFast: Bool { bitnet_t3_is_fast() != 0 }

    /// Base of an empty buffer (cols == 0): never dereferenced.
    private static var emptyBytes: UnsafePointer<UInt8> { UnsafePointer(bitPattern: 1)! }

    /// y[r] = sum_j W[r, j] * x[j] for every row (x.count == cols), exact in Int32.
    package static func gemv(_ packed: PackedTernaryBase3, x: [Int8], pool: ThreadPool? = .shared) -> [Int32] {
        precondition(x.count == packed.cols, "gemv: x has \(x.count) values, matrix has \(packed.cols) columns")
        return int32Array(count: packed.rows) { y in
            x.withUnsafeBufferPointer { gemv(packed, x: $0.baseAddress ?? UnsafePointer(bitPattern: 1)!, y: y, pool: pool) }
        }
    }

    /// Pointer version: y[r] for r in `rowRange` (default all rows; y indexed by absolute row).
    package static func gemv(_ packed: PackedTernaryBase3, x: UnsafePointer<Int8>, y: UnsafeMutablePointer<Int32>,
                            rowRange: Range<Int>? = nil, pool: ThreadPool? = .shared) {
        packed.storage.withUnsafeBufferPointer { w in
            gemvBase3(weights: w.baseAddress ?? emptyBytes, rowStride: packed.rowStride, rows: packed.rows, cols: packed.cols,
                      x: x, y: y, rowRange: rowRange, pool: pool)
        }
    }

    /// Raw version over base-3 packed bytes: row r at weights + r * rowStride.
    package static func gemvBase3(weights: UnsafePointer<UInt8>, rowStride: Int, rows: Int, cols: Int,
                                 x: UnsafePointer<Int8>, y: UnsafeMutablePointer<Int32>,
                                 rowRange: Range<Int>? = nil, pool: ThreadPool? = .shared) {
        splitGemv(kernel: bitnet_t3_gemv_rows, prepare: bitnet_t3_gemv_prepare, minStride: rowStrideBase3(cols: cols), weights: weights, rowStride: rowStride, rows: rows,
                  cols: cols, x: x, y: y, rowRange: rowRange, pool: pool)
    }

    /// Y[t, r] for `tokens` rows of X (tokens x cols, row-major); returns [tokens, rows] row-major.
    package static func gemm(_ packed: PackedTernaryBase3, x: [Int8], tokens: Int, pool: ThreadPool? = .shared) -> [Int32] {
        precondition(tokens >= 0 && x.count == tokens * packed.cols, "gemm: x has \(x.count) values, want \(tokens)x\(packed.cols)")
        return int32Array(count: tokens * packed.rows) { y in
            x.withUnsafeBufferPointer {
                gemm(packed, x: $0.baseAddress ?? UnsafePointer(bitPattern: 1)!, ldx: packed.cols, tokens: tokens, y: y, ldy: packed.rows, pool: pool)
            }
        }
    }

    /// Pointer version: Y[t * ldy + r] = sum_j W[r, j] * X[t * ldx + j], for r in `rowRange` (default all rows).
    /// Each row is decoded once per block of tokens.
    package static func gemm(_ packed: PackedTernaryBase3, x: UnsafePointer<Int8>, ldx: Int, tokens: Int,
                            y: UnsafeMutablePointer<Int32>, ldy: Int, rowRange: Range<Int>? = nil,
                            pool: ThreadPool? = .shared) {
        packed.storage.withUnsafeBufferPointer { w in
            splitGemm(kernel: bitnet_t3_gemm, weights: w.baseAddress ?? emptyBytes, rowStride: packed.rowStride, rows: packed.rows,
                      cols: packed.cols, x: x, ldx: ldx, tokens: tokens, y: y, ldy: ldy, rowRange: rowRange, pool: pool)
        }
    }

    /// `announceGemv` for base-3 matrices: idle workers pull the next GEMV's first weights into cache.
    package static func announceGemv(_ a: PackedTernaryBase3, _ b: PackedTernaryBase3? = nil, _ c: PackedTernaryBase3? = nil,
                                    pool: ThreadPool? = .shared) {
        func span(_ m: PackedTernaryBase3) -> ThreadPool.RowSpan {
            m.storage.withUnsafeBufferPointer { (UnsafeRawPointer($0.baseAddress ?? emptyBytes), m.rowStride, m.rows) }
        }
        ThreadPool.prefetchSplit(work: a.cols, granule: 8, threshold: parallelThreshold, pool: pool, span(a), b.map(span), c.map(span))
    }

    /// Fused GEMVs of one input x over base-3 matrices (Wq/Wk/Wv or W1/W3 of one token): one split over the pool,
    /// each result equal to `gemv` of that matrix (see the 2-bit version).
    package static func gemv(_ a: PackedTernaryBase3, y ya: UnsafeMutablePointer<Int32>, _ b: PackedTernaryBase3, y yb: UnsafeMutablePointer<Int32>,
                            _ c: PackedTernaryBase3?, y yc: UnsafeMutablePointer<Int32>?, x: UnsafePointer<Int8>, pool: ThreadPool? = .shared) {
        precondition(a.cols == b.cols && (c.map { $0.cols == a.cols } ?? true) && (c == nil) == (yc == nil),
                     "gemv: fused matrices need the same columns (\(a.cols), \(b.cols), \(c?.cols ?? a.cols)) and one output each")
        a.storage.withUnsafeBufferPointer { wa in
            b.storage.withUnsafeBufferPointer { wb in
                (c?.storage ?? KernelBuffer([])).withUnsafeBufferPointer { wc in
                    fusedGemv(kernel: bitnet_t3_gemv_rows, prepare: bitnet_t3_gemv_prepare, cols: a.cols, x: x, pool: pool,
                              (wa.baseAddress ?? emptyBytes, a.rowStride, a.rows, ya), (wb.baseAddress ?? emptyBytes, b.rowStride, b.rows, yb),
                              c.map { (wc.baseAddress ?? emptyBytes, $0.rowStride, $0.rows, yc!) })
                }
            }
        }
    }

    // MARK: shared by both layouts

    /// One matrix of a fused GEMV: packed base, row stride, rows, output.
    typealias FusedPart = (w: UnsafePointer<UInt8>, rowStride: Int, rows: Int, y: UnsafeMutablePointer<Int32>)

    /// A layout's activation preparation (bitnet_t2_gemv_prepare / bitnet_t3_gemv_prepare): once per GEMV on the
    /// calling thread, instead of once per row range in the kernel.
    typealias PrepareKernel = @convention(c) (UnsafePointer<Int8>?, Int) -> UnsafePointer<bitnet_gemv_prepared>?

    /// Two or three GEMVs of one layout's row kernel over the same x as one row space (bitnet_rows_concat), so the
    /// pool's threads meet once. Allocates nothing (decode loop).
    static func fusedGemv(kernel: bitnet_rows_fn, prepare: PrepareKernel, cols: Int, x: UnsafePointer<Int8>, pool: ThreadPool?,
                          _ a: FusedPart, _ b: FusedPart, _ c: FusedPart?) {
        let prepared = prepare(x, cols)
        var args = (bitnet_t2_gemv_args(w: a.w, row_stride: a.rowStride, cols: cols, x: x, y: a.y, prepared: prepared),
                    bitnet_t2_gemv_args(w: b.w, row_stride: b.rowStride, cols: cols, x: x, y: b.y, prepared: prepared),
                    bitnet_t2_gemv_args(w: c?.w ?? a.w, row_stride: c?.rowStride ?? 0, cols: cols, x: x, y: c?.y ?? a.y, prepared: prepared))
        withUnsafePointer(to: &args) { ap in
            let base = UnsafeRawPointer(ap), stride = MemoryLayout<bitnet_t2_gemv_args>.stride
            var concat = bitnet_rows_concat()
            concat.count = c == nil ? 2 : 3
            concat.fn = (kernel, kernel, kernel, nil)
            concat.args = (base, base + stride, base + 2 * stride, nil)
            concat.rows = (a.rows, b.rows, c?.rows ?? 0, 0)
            let total = a.rows + b.rows + (c?.rows ?? 0)
            withUnsafePointer(to: &concat) {
                ThreadPool.splitRows(0..<total, work: cols, granule: 8, threshold: parallelThreshold, pool: pool,
                                     kernel: bitnet_rows_concat_run, args: $0)
            }
        }
    }

    /// A C GEMM of `bitnet_ternary.h` (t2 or t3).
    typealias GemmKernel = @convention(c) (UnsafePointer<UInt8>?, Int, Int, UnsafePointer<Int8>?, Int, Int,
                                           UnsafeMutablePointer<Int32>?, Int, Int, Int) -> Void

    /// Runs a GEMV row kernel (bitnet_t2_gemv_rows / bitnet_t3_gemv_rows) over `rowRange`, split across the pool.
    static func splitGemv(kernel: bitnet_rows_fn, prepare: PrepareKernel, minStride: Int, weights: UnsafePointer<UInt8>, rowStride: Int, rows: Int, cols: Int,
                          x: UnsafePointer<Int8>, y: UnsafeMutablePointer<Int32>, rowRange: Range<Int>?, pool: ThreadPool?) {
        let range = rowRange ?? 0..<rows
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "gemv: row range \(range) outside 0..<\(rows)")
        precondition(rowStride >= minStride, "gemv: row stride \(rowStride) too small for \(cols) columns")
        if range.isEmpty { return }
        var args = bitnet_t2_gemv_args(w: weights, row_stride: rowStride, cols: cols, x: x, y: y, prepared: prepare(x, cols))
        withUnsafePointer(to: &args) {
            ThreadPool.splitRows(range, work: cols, granule: 8, threshold: parallelThreshold, pool: pool, kernel: kernel, args: $0)
        }
    }

    /// Runs a GEMM kernel over `rowRange` (default all rows), split across the pool.
    static func splitGemm(kernel: GemmKernel, weights: UnsafePointer<UInt8>, rowStride: Int, rows: Int, cols: Int,
                          x: UnsafePointer<Int8>, ldx: Int, tokens: Int, y: UnsafeMutablePointer<Int32>, ldy: Int,
                          rowRange: Range<Int>?, pool: ThreadPool?) {
        let range = rowRange ?? 0..<rows
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "gemm: row range \(range) outside 0..<\(rows)")
        precondition(ldx >= cols && ldy >= range.upperBound && tokens >= 0, "gemm: bad ldx \(ldx) / ldy \(ldy) / tokens \(tokens)")
        if tokens == 0 || range.isEmpty { return }
        ThreadPool.splitRows(range, work: cols * tokens, granule: 8, threshold: parallelThreshold, pool: pool) { r0, r1 in
            kernel(weights, rowStride, cols, x, ldx, tokens, y, ldy, r0, r1)
        }
    }

    /// A new [Int32] of `count` values written by `fill` (not called when count == 0).
    private static func int32Array(count: Int, _ fill: (UnsafeMutablePointer<Int32>) -> Void) -> [Int32] {
        [Int32](unsafeUninitializedCapacity: count) { buf, n in
            if count > 0 { fill(buf.baseAddress!) }
            n = count
        }
    }
}
