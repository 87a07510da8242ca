import CBitNetKernels

/// A block-quantized weight format of `bitnet_blockquant.h`: one scale per block of 32 weights, weight = d * q.
package enum BlockQuantFormat: String, Sendable, CaseIterable {
    /// f32 scale + 32 int8 codes in [-127, 127]: 36 bytes per block (9 bits per weight); the `Q8Matrix` layout.
    case q8
    /// Groups of 128: 4 f16 scales + 128 six-bit codes in [-31, 31] (104 bytes, 6.5 bits per weight).
    case q6
    /// Groups of 128: 4 f16 scales + 128 four-bit codes in [-7, 7] (72 bytes, 4.5 bits per weight).
    case q4

    /// The C format id (BITNET_BQ_*).
    package var raw: Int32 {
        switch self {
        case .q8: BITNET_BQ_Q8
        case .q6: BITNET_BQ_Q6
        case .q4: BITNET_BQ_Q4
        }
    }

    /// Weights per scale block.
    package static let blockSize = 32

    /// Weights per storage unit: 32 (q8 block) or 128 (q6/q4 group of 4 blocks).
    package var groupSize: Int { Int(bitnet_bq_group_size(raw)) }

    /// Bytes per storage unit (36, 104 or 72).
    package var groupBytes: Int { Int(bitnet_bq_group_bytes(raw)) }

    /// Largest code magnitude Q (127, 31 or 7).
    package var maxCode: Int {
        switch self {
        case .q8: 127
        case .q6: 31
        case .q4: 7
        }
    }

    /// Storage bits per weight, scales included (9, 6.5 or 4.5).
    package var bitsPerWeight: Double { Double(groupBytes * 8) / Double(groupSize) }

    /// Bytes per row: ceil(cols / groupSize) * groupBytes.
    package func rowStride(cols: Int) -> Int { Int(bitnet_bq_row_stride(raw, cols)) }

    /// Whether the GEMV quantizes the activations to int8 per block of 32 and multiplies in integers (q6, q4).
    package var integerProducts: Bool { self != .q8 }

    /// The int8 activations the q6/q4 GEMV multiplies by: per block of 32, e = absmax / 127 and
    /// q = round-half-even(x * 127 / absmax) (zero padded to whole groups of 128), and per 4 codes the correction
    /// -offset * sum(q) that cancels the stored code offset.
    package func quantizeActivations(_ x: [Float]) -> (q: [Int8], scales: [Float], correction: [Int32]) {
        precondition(self != .q8, "q8 multiplies f32 activations")
        let groups = (x.count + 127) / 128
        var q = [Int8](repeating: 0, count: groups * 128), d = [Float](repeating: 0, count: groups * 4)
        var corr = [Int32](repeating: 0, count: groups * 32)
        x.withUnsafeBufferPointer { xp in
            bitnet_bq_quantize_activations(raw, xp.baseAddress ?? DenseKernels.dummyF32, x.count, &q, &d, &corr)
        }
        return (q, d, corr)
    }
}

/// A row-major [rows, cols] block-quantized matrix (output head / embedding): row r at bytes[r * rowStride].
package struct BlockQuantMatrix: Sendable, Equatable {
    package let format: BlockQuantFormat
    /// The blocks, owned or in a `WeightArena`; the kernels read them in place.
    package let storage: KernelBuffer<UInt8>
    package let rows: Int
    package let cols: Int
    /// Bytes per row: format.rowStride(cols:).
    package let rowStride: Int

    /// The blocks as an array (a copy when they live in an arena).
    package var bytes: [UInt8] { storage.array }

    /// Wraps existing blocks (e.g. read from a file); bytes.count must be rows * format.rowStride(cols:).
    package init(format: BlockQuantFormat, bytes: [UInt8], rows: Int, cols: Int) {
        self.init(format: format, storage: KernelBuffer(bytes), rows: rows, cols: cols)
    }

    /// Blocks in existing storage of rows * format.rowStride(cols:) bytes.
    package init(format: BlockQuantFormat, storage: KernelBuffer<UInt8>, rows: Int, cols: Int) {
        let stride = format.rowStride(cols: cols)
        precondition(rows >= 0 && cols >= 0 && storage.count == rows * stride,
                     "BlockQuantMatrix: \(storage.count) bytes do not hold \(rows)x\(cols) \(format) (row stride \(stride))")
        self.format = format; self.storage = storage; self.rows = rows; self.cols = cols; self.rowStride = stride
    }

    /// The same q8 blocks as a BlockQuantMatrix.
    package init(_ q8: Q8Matrix) { self.init(format: .q8, bytes: q8.bytes, rows: q8.rows, cols: q8.cols) }

    /// Quantizes row-major [rows, cols] f32 values per 32-value block (see bitnet_blockquant.h): q8 d = absmax / 127;
    /// q6/q4 d = smallest f16 >= absmax / Q; q = round-half-even(value / d).
    package static func quantize(values: [Float], rows: Int, cols: Int, format: BlockQuantFormat,
                                pool: ThreadPool? = .shared) -> BlockQuantMatrix {
        precondition(rows >= 0 && cols >= 0 && values.count == rows * cols,
                     "BlockQuantMatrix.quantize: \(values.count) values for \(rows)x\(cols)")
        let stride = format.rowStride(cols: cols), fmt = format.raw
        let bytes = [UInt8](unsafeUninitializedCapacity: rows * stride) { buf, n in
            if rows * stride > 0 {
                let dst = buf.baseAddress!
                values.withUnsafeBufferPointer { src in
                    let s = src.baseAddress!
                    ThreadPool.splitRows(0..<rows, work: cols, granule: 4, threshold: DenseKernels.parallelThreshold, pool: pool) { r0, r1 in
                        bitnet_bq_quantize(fmt, s, cols, cols, dst, r0, r1)
                    }
                }
            }
            n = rows * stride
        }
        return BlockQuantMatrix(format: format, bytes: bytes, rows: rows, cols: cols)
    }

    /// Row-major [rows, cols] f32 values d * q.
    package func dequantize() -> [Float] {
        let n = rows * cols
        return [Float](unsafeUninitializedCapacity: n) { buf, count in
            if n > 0 { storage.withUnsafeBufferPointer { bitnet_bq_dequantize(format.raw, $0.baseAddress!, rowStride, cols, buf.baseAddress!, cols, 0, rows) } }
            count = n
        }
    }

    /// Writes row `row` (cols values d * q) to `into`: the embedding lookup.
    package func dequantizeRow(_ row: Int, into: UnsafeMutablePointer<Float>) {
        precondition(row >= 0 && row < rows, "BlockQuantMatrix.dequantizeRow: row \(row) outside 0..<\(rows)")
        storage.withUnsafeBufferPointer { Self.dequantizeRow(format: format, row: $0.baseAddress! + row * rowStride, cols: cols, into: into) }
    }

    /// Raw embedding lookup: `cols` values of the row whose blocks start at `row`.
    package static func dequantizeRow(format: BlockQuantFormat, row: UnsafePointer<UInt8>, cols: Int, into: UnsafeMutablePointer<Float>) {
        bitnet_bq_dequantize_row(format.raw, row, cols, into)
    }

    /// y = W x (x.count == cols): f32 activations for q8; q6/q4 quantize x to int8 per block of 32 and multiply in
    /// integers (see `quantizeActivations`).
    package func gemv(x: [Float], pool: ThreadPool? = .shared) -> [Float] {
        gemm(x: x, ldx: cols, tokens: 1, pool: pool, batched: false)
    }

    /// Y[t, :] = W X[t, :] for t < tokens (X row-major with row stride ldx >= cols; Y is [tokens, rows]).
    package func gemm(x: [Float], ldx: Int, tokens: Int, pool: ThreadPool? = .shared) -> [Float] {
        gemm(x: x, ldx: ldx, tokens: tokens, pool: pool, batched: true)
    }

    private func gemm(x: [Float], ldx: Int, tokens: Int, pool: ThreadPool?, batched: Bool) -> [Float] {
        precondition(tokens >= 0 && ldx >= cols && x.count >= (tokens > 0 ? (tokens - 1) * ldx + cols : 0),
                     "BlockQuantMatrix.gemm: x has \(x.count) values for \(tokens) tokens of \(cols) (ldx \(ldx))")
        return [Float](unsafeUninitializedCapacity: tokens * rows) { y, n in
            if rows > 0 && tokens > 0 {
                x.withUnsafeBufferPointer { xp in
                    let xb = xp.baseAddress ?? DenseKernels.dummyF32
                    if batched { gemm(x: xb, ldx: ldx, tokens: tokens, y: y.baseAddress!, ldy: rows, pool: pool) }
                    else { gemv(x: xb, y: y.baseAddress!, pool: pool) }
                }
            }
            n = tokens * rows
        }
    }

    /// Hot-path GEMV into caller memory: y[r] for r in `rowRange` (default all rows), x has `cols` values.
    package func gemv(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, rowRange: Range<Int>? = nil, pool: ThreadPool? = .shared) {
        storage.withUnsafeBufferPointer { wp in
            Self.gemv(format: format, weights: wp.baseAddress ?? DenseKernels.dummyBytes, rowStride: rowStride, rows: rows, cols: cols,
                      x: x, y: y, rowRange: rowRange, pool: pool)
        }
    }

    /// Tells the pool's idle workers that `gemv` over this matrix comes next (`ThreadPool.idlePrefetchBytes`).
    package func announceGemv(pool: ThreadPool? = .shared) {
        guard rows > 0 else { return }
        let span: ThreadPool.RowSpan = storage.withUnsafeBufferPointer { (UnsafeRawPointer($0.baseAddress!), rowStride, rows) }
        ThreadPool.prefetchSplit(work: cols, granule: 4, threshold: DenseKernels.parallelThreshold, pool: pool, span, nil, nil)
    }

    /// Hot-path batched GEMV into caller memory: X[t, j] at x[t * ldx + j], Y[t, r] at y[t * ldy + r].
    package func gemm(x: UnsafePointer<Float>, ldx: Int, tokens: Int, y: UnsafeMutablePointer<Float>, ldy: Int,
                     rowRange: Range<Int>? = nil, pool: ThreadPool? = .shared) {
        storage.withUnsafeBufferPointer { wp in
            Self.gemm(format: format, weights: wp.baseAddress ?? DenseKernels.dummyBytes, rowStride: rowStride, rows: rows, cols: cols,
                      x: x, ldx: ldx, tokens: tokens, y: y, ldy: ldy, rowRange: rowRange, pool: pool)
        }
    }

    /// Raw GEMV (e.g. a memory-mapped model file): row r at weights + r * rowStride bytes (rowStride >=
    /// format.rowStride(cols:)); y[r] for r in `rowRange` (default all rows; y indexed by absolute row).
    package static func gemv(format: BlockQuantFormat, weights: UnsafePointer<UInt8>, rowStride: Int, rows: Int, cols: Int,
                            x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                            rowRange: Range<Int>? = nil, pool: ThreadPool? = .shared) {
        let range = checkedRange(format, rowStride: rowStride, rows: rows, cols: cols, rowRange: rowRange)
        var args = bitnet_bq_gemv_args(format: format.raw, w: weights, row_stride: rowStride, cols: cols, x: x, y: y)
        withUnsafePointer(to: &args) {
            ThreadPool.splitRows(range, work: cols, granule: 4, threshold: DenseKernels.parallelThreshold, pool: pool,
                                 kernel: bitnet_bq_gemv_rows, args: $0)
        }
    }

    /// Raw batched GEMV: Y[t, r] = sum_j W[r, j] X[t, j] for t < tokens, r in `rowRange`; X[t, j] at x[t * ldx + j],
    /// Y[t, r] at y[t * ldy + r]. Each weight block is read once for all tokens; token t equals `gemv` of X[t, :]
    /// bit for bit.
    package static func gemm(format: BlockQuantFormat, weights: UnsafePointer<UInt8>, rowStride: Int, rows: Int, cols: Int,
                            x: UnsafePointer<Float>, ldx: Int, tokens: Int, y: UnsafeMutablePointer<Float>, ldy: Int,
                            rowRange: Range<Int>? = nil, pool: ThreadPool? = .shared) {
        let range = checkedRange(format, rowStride: rowStride, rows: rows, cols: cols, rowRange: rowRange)
        precondition(tokens >= 0 && ldx >= cols && ldy >= range.upperBound,
                     "BlockQuantMatrix.gemm: ldx \(ldx) < cols \(cols) or ldy \(ldy) < rows \(range.upperBound)")
        if tokens == 0 { return }
        let fmt = format.raw
        ThreadPool.splitRows(range, work: cols * tokens, granule: 4, threshold: DenseKernels.parallelThreshold, pool: pool) { r0, r1 in
            bitnet_bq_gemm(fmt, weights, rowStride, cols, x, ldx, tokens, y, ldy, r0, r1)
        }
    }

    /// Portable scalar reference of `gemm` (single-threaded; token t equals `gemvReference` of X[t, :]).
    package func gemmReference(x: [Float], ldx: Int, tokens: Int, rowRange: Range<Int>? = nil) -> [Float] {
        precondition(tokens >= 0 && ldx >= cols && x.count >= (tokens > 0 ? (tokens - 1) * ldx + cols : 0))
        let range = rowRange ?? 0..<rows
        var y = [Float](repeating: 0, count: tokens * rows)
        if !range.isEmpty && tokens > 0 {
            storage.withUnsafeBufferPointer { w in
                bitnet_bq_gemm_ref(format.raw, w.baseAddress!, rowStride, cols, x, ldx, tokens, &y, rows, range.lowerBound, range.upperBound)
            }
        }
        return y
    }

    /// Portable scalar reference of `gemv` (per block s = sum q x in column order, acc += d s), single-threaded.
    package func gemvReference(x: [Float], rowRange: Range<Int>? = nil) -> [Float] {
        precondition(x.count == cols)
        return gemmReference(x: x, ldx: cols, tokens: 1, rowRange: rowRange)
    }

    private static func checkedRange(_ format: BlockQuantFormat, rowStride: Int, rows: Int, cols: Int, rowRange: Range<Int>?) -> Range<Int> {
        let range = rowRange ?? 0..<rows
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "BlockQuantMatrix: row range \(range) outside 0..<\(rows)")
        precondition(cols >= 0 && rowStride >= format.rowStride(cols: cols),
                     "BlockQuantMatrix: row stride \(rowStride) too small for \(cols) \(format) columns")
        return range
    }
}

extension DenseKernels {
    /// Y[t, :] = W X[t, :] for t < tokens (X row-major, row stride ldx >= cols); Y is [tokens, rows].
    package static func f16Gemm(_ w: F16Matrix, x: [Float], ldx: Int, tokens: Int, pool: ThreadPool? = .shared) -> [Float] {
        precondition(tokens >= 0 && ldx >= w.cols && x.count >= (tokens > 0 ? (tokens - 1) * ldx + w.cols : 0),
                     "f16Gemm: x has \(x.count) values for \(tokens) tokens of \(w.cols) (ldx \(ldx))")
        return [Float](unsafeUninitializedCapacity: tokens * w.rows) { y, n in
            if w.rows > 0 && tokens > 0 {
                w.storage.withUnsafeBufferPointer { wp in
                    x.withUnsafeBufferPointer { xp in
                        f16Gemm(weights: wp.baseAddress ?? dummyF16, ld: w.cols, rows: w.rows, cols: w.cols, x: xp.baseAddress ?? dummyF32,
                                ldx: ldx, tokens: tokens, y: y.baseAddress!, ldy: w.rows, pool: pool)
                    }
                }
            }
            n = tokens * w.rows
        }
    }

    /// Raw batched f16 GEMV: row r at weights + r * ld; Y[t, r] at y[t * ldy + r] for r in `rowRange`; token t equals
    /// `f16Gemv` of X[t, :] bit for bit.
    package static func f16Gemm(weights: UnsafePointer<UInt16>, ld: Int, rows: Int, cols: Int, x: UnsafePointer<Float>, ldx: Int,
                               tokens: Int, y: UnsafeMutablePointer<Float>, ldy: Int,
                               rowRange: Range<Int>? = nil, pool: ThreadPool? = .shared) {
        let range = rowRange ?? 0..<rows
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "f16Gemm: row range \(range) outside 0..<\(rows)")
        precondition(cols >= 0 && ld >= cols && ldx >= cols && ldy >= range.upperBound && tokens >= 0,
                     "f16Gemm: ld \(ld) / ldx \(ldx) < cols \(cols) or ldy \(ldy) < rows \(range.upperBound)")
        if tokens == 0 { return }
        ThreadPool.splitRows(range, work: cols * tokens, granule: 4, threshold: parallelThreshold, pool: pool) { r0, r1 in
            bitnet_f16_gemm(weights, ld, cols, x, ldx, tokens, y, ldy, r0, r1)
        }
    }

    /// Portable scalar reference of `f16Gemm` (token t equals `f16GemvReference` of X[t, :]), single-threaded.
    package static func f16GemmReference(_ w: F16Matrix, x: [Float], ldx: Int, tokens: Int) -> [Float] {
        precondition(tokens >= 0 && ldx >= w.cols && x.count >= (tokens > 0 ? (tokens - 1) * ldx + w.cols : 0))
        var y = [Float](repeating: 0, count: tokens * w.rows)
        if w.rows > 0 && tokens > 0 { bitnet_f16_gemm_ref(w.bits, w.cols, w.cols, x, ldx, tokens, &y, w.rows, 0, w.rows) }
        return y
    }
}
