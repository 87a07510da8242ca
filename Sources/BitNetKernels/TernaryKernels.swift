import CBitNetKernels

/// A ternary matrix in the 2-bit layout of `bitnet_ternary.h`: blocks of 128 weights per 32 bytes (byte j of a
/// block holds elements j, j+32, j+64, j+96 in bits 7-6, 5-4, 3-2, 1-0, each as code + 1), row r at r * rowStride.
/// The bytes are owned or borrowed from a memory-mapped file (bitnet.cpp's I2_S tensors have this layout when
/// cols % 128 == 0, so they are served without a copy).
package struct PackedTernary: Sendable, Equatable {
    /// The packed bytes, owned or in a file mapping; the kernels read them in place.
    package let storage: KernelBuffer<UInt8>
    package let rows: Int
    package let cols: Int
    /// Bytes per row: ceil(cols / 128) * 32.
    package let rowStride: Int

    /// The packed bytes as an array (a copy when they live in a file mapping).
    package var bytes: [UInt8] { storage.array }

    package init(bytes: [UInt8], rows: Int, cols: Int) {
        self.init(storage: KernelBuffer(bytes), rows: rows, cols: cols)
    }

    /// A matrix over existing storage (e.g. a mapped I2_S tensor), `rows * rowStride2bit(cols)` bytes.
    package init(storage: KernelBuffer<UInt8>, rows: Int, cols: Int) {
        let stride = TernaryKernels.rowStride2bit(cols: cols)
        precondition(rows >= 0 && cols >= 0 && storage.count == rows * stride,
                     "PackedTernary: \(storage.count) bytes do not hold \(rows)x\(cols) (row stride \(stride))")
        self.storage = storage; self.rows = rows; self.cols = cols; self.rowStride = stride
    }
}

/// A ternary matrix in the base-3 layout of `bitnet_ternary.h` (1.6 bit/weight): blocks of 320 weights per 64 bytes,
/// byte p of a block holding elements p, p+64, p+128, p+192, p+256 as b = sum_i (code_i + 1) * place_i, places
/// (1, 3, 9, 28, 84): base 3 with the top two places widened so the AVX-512 kernel looks each digit up in one table.
package struct PackedTernaryBase3: Sendable, Equatable {
    /// The packed bytes, owned or in a `WeightArena`; the kernels read them in place.
    package let storage: KernelBuffer<UInt8>
    package let rows: Int
    package let cols: Int
    /// Bytes per row: ceil(cols / 320) * 64.
    package let rowStride: Int

    /// The packed bytes as an array (a copy when they live in an arena).
    package var bytes: [UInt8] { storage.array }

    package init(bytes: [UInt8], rows: Int, cols: Int) {
        self.init(storage: KernelBuffer(bytes), rows: rows, cols: cols)
    }

    /// A matrix over existing storage of `rows * rowStrideBase3(cols)` bytes.
    package init(storage: KernelBuffer<UInt8>, rows: Int, cols: Int) {
        let stride = TernaryKernels.rowStrideBase3(cols: cols)
        precondition(rows >= 0 && cols >= 0 && storage.count == rows * stride,
                     "PackedTernaryBase3: \(storage.count) bytes do not hold \(rows)x\(cols) (row stride \(stride))")
        self.storage = storage; self.rows = rows; self.cols = cols; self.rowStride = stride
    }
}

/// Packing of ternary weights and exact int8 x ternary products (int32 out; the caller applies the scales).
package enum TernaryKernels {
    /// "avx512vnni", "avx2" or "portable": the path gemv/gemm take, by default the best this CPU supports
    /// (BITNET_ISA=avx2 caps it at "avx2", BITNET_ISA=portable forces "portable"; read once). All paths give
    /// identical results.
    package static var activeISA: String { String(cString: bitnet_ternary_isa_name()) }

    /// The paths gemv/gemm can take, fastest first.
    package static let isaNames = ["avx512vnni", "avx2", "portable"]

    /// Switches gemv/gemm to the named path (tests, comparisons); an unsupported request falls back to the best
    /// supported path below it, an unknown name to "portable". Returns the path now in effect. Not safe while
    /// the kernels run on other threads.
    @discardableResult
    package static func selectISA(_ name: String) -> String {
        let level: Int32
        switch name {
        case "avx512vnni": level = BITNET_TERNARY_AVX512VNNI
        case "avx2", "avx2+fma": level = BITNET_TERNARY_AVX2
        default: level = BITNET_TERNARY_PORTABLE
        }
        _ = bitnet_ternary_set_isa(level)
        return activeISA
    }

    /// Below this many weights gemv/gemm run on the calling thread.
    package static let parallelThreshold = 1 << 18

    package static func rowStride2bit(cols: Int) -> Int { Int(bitnet_t2_row_stride(cols)) }
    package static func rowStrideBase3(cols: Int) -> Int { Int(bitnet_t3_row_stride(cols)) }

    // MARK: packing

    /// Packs row-major [rows, cols] codes in {-1, 0, 1}; other values are a precondition failure.
    package static func pack2bit(codes: [Int8], rows: Int, cols: Int) -> PackedTernary {
        precondition(rows >= 0 && cols >= 0 && codes.count == rows * cols, "pack2bit: \(codes.count) codes for \(rows)x\(cols)")
        let stride = rowStride2bit(cols: cols)
        var bad = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: rows * stride) { buf, n in
            if rows * stride > 0 { bad = Int(bitnet_t2_pack(codes, rows, cols, buf.baseAddress!)) }
            n = rows * stride
        }
        precondition(bad == 0, "pack2bit: \(bad) codes outside {-1, 0, 1}")
        return PackedTernary(bytes: bytes, rows: rows, cols: cols)
    }

    /// Row-major [rows, cols] codes of a 2-bit packed matrix.
    package static func unpack(_ packed: PackedTernary) -> [Int8] {
        let n = packed.rows * packed.cols
        var bad = 0
        let codes = [Int8](unsafeUninitializedCapacity: n) { buf, count in
            if n > 0 { bad = packed.storage.withUnsafeBufferPointer { Int(bitnet_t2_unpack($0.baseAddress!, packed.rows, packed.cols, buf.baseAddress!)) } }
            count = n
        }
        precondition(bad == 0, "unpack: \(bad) invalid 2-bit fields (value 3)")
        return codes
    }

    /// Packs row-major [rows, cols] codes in {-1, 0, 1} five per byte (blocks of 320 per 64 bytes).
    package static func packBase3(codes: [Int8], rows: Int, cols: Int) -> PackedTernaryBase3 {
        precondition(rows >= 0 && cols >= 0 && codes.count == rows * cols, "packBase3: \(codes.count) codes for \(rows)x\(cols)")
        let stride = rowStrideBase3(cols: cols)
        var bad = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: rows * stride) { buf, n in
            if rows * stride > 0 { bad = Int(bitnet_t3_pack(codes, rows, cols, buf.baseAddress!)) }
            n = rows * stride
        }
        precondition(bad == 0, "packBase3: \(bad) codes outside {-1, 0, 1}")
        return PackedTernaryBase3(bytes: bytes, rows: rows, cols: cols)
    }

    /// Row-major [rows, cols] codes of a base-3 packed matrix.
    package static func unpackBase3(_ packed: PackedTernaryBase3) -> [Int8] {
        let n = packed.rows * packed.cols
        var bad = 0
        let codes = [Int8](unsafeUninitializedCapacity: n) { buf, count in
            if n > 0 { bad = packed.storage.withUnsafeBufferPointer { Int(bitnet_t3_unpack($0.baseAddress!, packed.rows, packed.cols, buf.baseAddress!)) } }
            count = n
        }
        precondition(bad == 0, "unpackBase3: \(bad) bytes that no packer writes")
        return codes
    }

    /// Converts between the layouts (lossless). To base 3: row by row on the pool's threads, without the codes of the
    /// whole matrix in between (a 2B-parameter model's linears convert in well under a second); with `arena`, straight
    /// into it (no array and no copy when the weights are placed).
    package static func toBase3(_ packed: PackedTernary, pool: ThreadPool? = .shared, into arena: WeightArena? = nil) -> PackedTernaryBase3 {
        let stride = rowStrideBase3(cols: packed.cols), rows = packed.rows
        var bad = 0
        func convert(_ dst: UnsafeMutablePointer<UInt8>) {
            packed.storage.withUnsafeBufferPointer { src in
                withUnsafeMutablePointer(to: &bad) { badCount in
                    var args = bitnet_t2_to_t3_args(src: src.baseAddress!, cols: packed.cols, dst: dst, bad: badCount)
                    withUnsafePointer(to: &args) { a in
                        ThreadPool.splitRows(0..<rows, work: stride, granule: 1, threshold: 1 << 20, pool: pool,
                                             kernel: bitnet_t2_to_t3_rows, args: a)
                    }
                }
            }
        }
        let storage: KernelBuffer<UInt8>
        if let arena {
            storage = arena.make(count: rows * stride, convert)
        } else {
            storage = KernelBuffer([UInt8](unsafeUninitializedCapacity: rows * stride) { buf, n in
                if rows * stride > 0 { convert(buf.baseAddress!) }
                n = rows * stride
            })
        }
        precondition(bad == 0, "toBase3: \(bad) invalid 2-bit fields (value 3)")
        return PackedTernaryBase3(storage: storage, rows: rows, cols: packed.cols)
    }
    package static func from(base3 packed: PackedTernaryBase3) -> PackedTernary {
        pack2bit(codes: unpackBase3(packed), rows: packed.rows, cols: packed.cols)
    }

    // MARK: GEMV / GEMM

    /// y[r] = sum_j W[r, j] * x[j] for every row (x.count == cols), exact in Int32.
    package static func gemv(_ packed: PackedTernary, x: [Int8], pool: ThreadPool? = .shared) -> [Int32] {
        precondition(x.count == packed.cols, "gemv: x has \(x.count) values, matrix has \(packed.cols) columns")
        return [Int32](unsafeUninitializedCapacity: packed.rows) { y, n in
            packed.storage.withUnsafeBufferPointer { w in
                x.withUnsafeBufferPointer { xp in
                    if packed.rows > 0 {
                        gemv(weights: w.baseAddress ?? dummyBytes, rowStride: packed.rowStride, rows: packed.rows, cols: packed.cols,
                             x: xp.baseAddress ?? dummyCodes, y: y.baseAddress!, pool: pool)
                    }
                }
            }
            n = packed.rows
        }
    }

    /// Pointer version: y[r] for r in `rowRange` (default all rows; y indexed by absolute row, so it needs
    /// at least rowRange.upperBound elements). x holds `packed.cols` values.
    package static func gemv(_ packed: PackedTernary, x: UnsafePointer<Int8>, y: UnsafeMutablePointer<Int32>,
                            rowRange: Range<Int>? = nil, pool: ThreadPool? = .shared) {
        packed.storage.withUnsafeBufferPointer { w in
            gemv(weights: w.baseAddress ?? dummyBytes, rowStride: packed.rowStride, rows: packed.rows, cols: packed.cols, x: x, y: y,
                 rowRange: rowRange, pool: pool)
        }
    }

    /// Raw version over packed bytes (e.g. a memory-mapped model file): row r at weights + r * rowStride.
    package static func gemv(weights: UnsafePointer<UInt8>, rowStride: Int, rows: Int, cols: Int,
                            x: UnsafePointer<Int8>, y: UnsafeMutablePointer<Int32>,
                            rowRange: Range<Int>? = nil, pool: ThreadPool? = .shared) {
        splitGemv(kernel: bitnet_t2_gemv_rows, prepare: bitnet_t2_gemv_prepare, minStride: rowStride2bit(cols: cols), weights: weights, rowStride: rowStride, rows: rows,
                  cols: cols, x: x, y: y, rowRange: rowRange, pool: pool)
    }

    /// Two or three GEMVs of the same input x (Wq/Wk/Wv or W1/W3 of one token) split over the pool as one row
    /// space, so the threads meet once instead of once per matrix; each result equals `gemv` of that matrix.
    package static func gemv(_ a: PackedTernary, y ya: UnsafeMutablePointer<Int32>, _ b: PackedTernary, y yb: UnsafeMutablePointer<Int32>,
                            _ c: PackedTernary?, y yc: UnsafeMutablePointer<Int32>?, x: UnsafePointer<Int8>, pool: ThreadPool? = .shared) {
        precondition(a.cols == b.cols && (c.map { $0.cols == a.cols } ?? true) && (c == nil) == (yc == nil),
                     "gemv: fused matrices need the same columns (\(a.cols), \(b.cols), \(c?.cols ?? a.cols)) and one output each")
        a.storage.withUnsafeBufferPointer { wa in
            b.storage.withUnsafeBufferPointer { wb in
                (c?.storage ?? KernelBuffer([])).withUnsafeBufferPointer { wc in
                    fusedGemv(kernel: bitnet_t2_gemv_rows, prepare: bitnet_t2_gemv_prepare, cols: a.cols, x: x, pool: pool,
                              (wa.baseAddress ?? dummyBytes, a.rowStride, a.rows, ya), (wb.baseAddress ?? dummyBytes, b.rowStride, b.rows, yb),
                              c.map { (wc.baseAddress ?? dummyBytes, $0.rowStride, $0.rows, yc!) })
                }
            }
        }
    }

    /// Tells the pool's idle workers that a GEMV over `a` (fused with b, c when given) comes next, so they pull its
    /// first weights into cache during the serial work before it (`ThreadPool.idlePrefetchBytes`). Returns at once.
    package static func announceGemv(_ a: PackedTernary, _ b: PackedTernary? = nil, _ c: PackedTernary? = nil, pool: ThreadPool? = .shared) {
        // The packed storage never moves (immutable arrays or file mappings the model keeps alive).
        func span(_ m: PackedTernary) -> ThreadPool.RowSpan {
            m.storage.withUnsafeBufferPointer { (UnsafeRawPointer($0.baseAddress ?? dummyBytes), m.rowStride, m.rows) }
        }
        ThreadPool.prefetchSplit(work: a.cols, granule: 8, threshold: parallelThreshold, pool: pool, span(a), b.map(span), c.map(span))
    }

    /// Y[t, r] for `tokens` rows of X (tokens x cols, row-major); returns [tokens, rows] row-major.
    package static func gemm(_ packed: PackedTernary, x: [Int8], tokens: Int, pool: ThreadPool? = .shared) -> [Int32] {
        precondition(tokens >= 0 && x.count == tokens * packed.cols, "gemm: x has \(x.count) values, want \(tokens)x\(packed.cols)")
        let n = tokens * packed.rows
        return [Int32](unsafeUninitializedCapacity: n) { y, count in
            if n > 0 {
                x.withUnsafeBufferPointer { xp in
                    gemm(packed, x: xp.baseAddress ?? dummyCodes, ldx: packed.cols, tokens: tokens,
                         y: y.baseAddress!, ldy: packed.rows, pool: pool)
                }
            }
            count = n
        }
    }

    /// Pointer version: Y[t * ldy + r] = sum_j W[r, j] * X[t * ldx + j], for r in `rowRange` (default all rows).
    package static func gemm(_ packed: PackedTernary, x: UnsafePointer<Int8>, ldx: Int, tokens: Int,
                            y: UnsafeMutablePointer<Int32>, ldy: Int, rowRange: Range<Int>? = nil,
                            pool: ThreadPool? = .shared) {
        packed.storage.withUnsafeBufferPointer { w in
            splitGemm(kernel: bitnet_t2_gemm, weights: w.baseAddress ?? dummyBytes, rowStride: packed.rowStride, rows: packed.rows,
                      cols: packed.cols, x: x, ldx: ldx, tokens: tokens, y: y, ldy: ldy, rowRange: rowRange, pool: pool)
        }
    }

    /// Portable references (bit-identical to the dispatching kernels; for tests).
    package static func gemvReference(_ packed: PackedTernary, x: [Int8]) -> [Int32] {
        precondition(x.count == packed.cols)
        var y = [Int32](repeating: 0, count: packed.rows)
        if packed.rows > 0 { packed.storage.withUnsafeBufferPointer { bitnet_t2_gemv_ref($0.baseAddress!, packed.rowStride, packed.cols, x, &y, 0, packed.rows) } }
        return y
    }

    package static func gemmReference(_ packed: PackedTernary, x: [Int8], tokens: Int) -> [Int32] {
        precondition(x.count == tokens * packed.cols)
        var y = [Int32](repeating: 0, count: tokens * packed.rows)
        if packed.rows > 0 && tokens > 0 {
            packed.storage.withUnsafeBufferPointer { bitnet_t2_gemm_ref($0.baseAddress!, packed.rowStride, packed.cols, x, packed.cols, tokens, &y, packed.rows, 0, packed.rows) }
        }
        return y
    }

    /// Stand-ins for the base of an empty buffer (cols == 0): never dereferenced.
    private static var dummyBytes: UnsafePointer<UInt8> { UnsafePointer(bitPattern: 1)! }
    private static var dummyCodes: UnsafePointer<Int8> { UnsafePointer(bitPattern: 1)! }

}
