import Foundation
import BitNetKernels
import CBitNetKernels
import BitNetCore
import BitNetTokenizers
import BitNetFormats

/// Storage of the output head and the token embedding at inference (Sec. 2 keeps them high precision; f16 and
/// blocks of 32 with an absmax scale in 8, 6 or 4 bits shrink the largest tensor of 2B4T, 128256 x 2560).
package enum HeadFormat: String, Sendable, CaseIterable {
    case f32, f16, q8, q6, q4

    /// The block format behind q8/q6/q4.
    var block: BlockQuantFormat? { BlockQuantFormat(rawValue: rawValue) }
}

/// A dense [rows, cols] weight in a `HeadFormat`: products with activations (the head) and row lookups (the embedding).
package final class DenseMatrix: @unchecked Sendable {
    enum Storage {
        case f32([Float]), f16(F16Matrix), block(BlockQuantMatrix)
    }
    let rows: Int, cols: Int
    let storage: Storage

    /// Stores row-major `values` [rows, cols] in `format` (rounded to half, or absmax blocks of 32).
    package init(_ values: [Float], rows: Int, cols: Int, format: HeadFormat) {
        self.rows = rows; self.cols = cols
        if let block = format.block {
            storage = .block(BlockQuantMatrix.quantize(values: values, rows: rows, cols: cols, format: block))
        } else if format == .f16 {
            storage = .f16(F16Matrix(values, rows: rows, cols: cols))
        } else {
            storage = .f32(values)
        }
    }

    /// Stores [rows, cols] values that `fill(r0, r1, out)` writes row block by row block (rows r0..<r1, row-major at
    /// `out`), converting each block as it comes: for f16 and block formats the f32 matrix is never whole in memory
    /// (a 128k x 2560 embedding is 1.3 GB in f32, 0.27 GB in q6). Equal, bit for bit, to `init(_:rows:cols:format:)`
    /// on the same values.
    /// `arenaHugePages` non-nil: f16 and block formats are written straight into a `WeightArena` of their own (on
    /// 2 MiB pages when true), as `placeWeights` would place them, with no array in between.
    package init(rows: Int, cols: Int, format: HeadFormat, rowsPerBlock: Int = 256, arenaHugePages: Bool? = nil,
                 fill: (Int, Int, UnsafeMutablePointer<Float>) -> Void) {
        self.rows = rows; self.cols = cols
        let chunk = max(1, min(rowsPerBlock, rows))
        func blocks(_ body: (Int, Int, UnsafePointer<Float>) -> Void) {
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(chunk * cols, 1))
            defer { scratch.deallocate() }
            var r0 = 0
            while r0 < rows {
                let r1 = min(rows, r0 + chunk)
                fill(r0, r1, scratch)
                body(r0, r1, scratch)
                r0 = r1
            }
        }
        /// `count` elements written by `write`, in an arena when asked (and one can be mapped), else in an array.
        func buffer<E>(_ count: Int, _ write: (UnsafeMutablePointer<E>) -> Void) -> KernelBuffer<E> {
            if let huge = arenaHugePages, let arena = WeightArena(capacity: WeightArena.bytesNeeded([count * MemoryLayout<E>.stride]), hugePages: huge) {
                return arena.make(count: count, write)
            }
            return KernelBuffer([E](unsafeUninitializedCapacity: count) { buf, n in
                if count > 0 { write(buf.baseAddress!) }
                n = count
            })
        }
        if let block = format.block {
            let stride = block.rowStride(cols: cols)
            let bytes: KernelBuffer<UInt8> = buffer(rows * stride) { dst in
                blocks { r0, r1, src in bitnet_bq_quantize(block.raw, src, cols, cols, dst + r0 * stride, 0, r1 - r0) }
            }
            storage = .block(BlockQuantMatrix(format: block, storage: bytes, rows: rows, cols: cols))
        } else if format == .f16 {
            let bits: KernelBuffer<UInt16> = buffer(rows * cols) { dst in
                blocks { r0, r1, src in bitnet_f32_to_f16(src, dst + r0 * cols, (r1 - r0) * cols) }
            }
            storage = .f16(F16Matrix(storage: bits, rows: rows, cols: cols))
        } else {
            let values = [Float](unsafeUninitializedCapacity: rows * cols) { buf, n in
                blocks { r0, r1, src in (buf.baseAddress! + r0 * cols).update(from: src, count: (r1 - r0) * cols) }
                n = rows * cols
            }
            storage = .f32(values)
        }
    }

    /// Wraps half weights as they are (a GGUF F16 tensor served from the file mapping).
    init(f16 m: F16Matrix) {
        rows = m.rows; cols = m.cols; storage = .f16(m)
    }

    private init(rows: Int, cols: Int, storage: Storage) {
        self.rows = rows; self.cols = cols; self.storage = storage
    }

    /// Whether `placed(in:)` would copy the weights: f16 or block weights in an array, or with `moveArenas` in an
    /// arena (never f32 weights, nor weights in a file mapping).
    func isMovable(_ moveArenas: Bool) -> Bool {
        switch storage {
        case .f32: false
        case .f16(let m): m.storage.isMovable(moveArenas)
        case .block(let m): m.storage.isMovable(moveArenas)
        }
    }

    /// This matrix with its f16 or block weights copied into `arena` (itself for f32 weights).
    func placed(in arena: WeightArena) -> DenseMatrix {
        switch storage {
        case .f32: self
        case .f16(let m): DenseMatrix(rows: rows, cols: cols, storage: .f16(F16Matrix(storage: arena.place(m.storage), rows: m.rows, cols: m.cols)))
        case .block(let m):
            DenseMatrix(rows: rows, cols: cols,
                        storage: .block(BlockQuantMatrix(format: m.format, storage: arena.place(m.storage), rows: m.rows, cols: m.cols)))
        }
    }

    /// The arena holding the weights (nil: an array or a file mapping).
    var arena: WeightArena? {
        switch storage {
        case .f32: nil
        case .f16(let m): m.storage.arena
        case .block(let m): m.storage.arena
        }
    }

    /// True when the weights are read from a file mapping, not owned.
    var isFileBacked: Bool {
        if case .f16(let m) = storage { return m.storage.isFileBacked }
        return false
    }

    var format: HeadFormat {
        switch storage {
        case .f32: .f32
        case .f16: .f16
        case .block(let m): HeadFormat(rawValue: m.format.rawValue)!
        }
    }

    /// Bytes as stored.
    var bytes: Int {
        switch storage {
        case .f32(let v): v.count * 4
        case .f16(let m): m.storage.count * 2
        case .block(let m): m.storage.count
        }
    }

    /// Every value as f32 (exact for f32, the dequantized values otherwise).
    func values() -> [Float] {
        switch storage {
        case .f32(let v): v
        case .f16(let m): DenseKernels.toF32(f16: m.bits)
        case .block(let m): m.dequantize()
        }
    }

    /// Tells the pool's idle workers that `gemv` comes next, so they pull its first rows into cache (f16 and block
    /// formats; the f32 head runs through sgemm, which splits differently).
    func announceGemv() {
        switch storage {
        case .f32: break
        case .f16(let m):
            m.storage.withUnsafeBufferPointer { DenseKernels.announceF16Gemv(weights: $0.baseAddress!, ld: cols, rows: rows, cols: cols) }
        case .block(let m): m.announceGemv()
        }
    }

    /// y[rows] = W · x[cols].
    func gemv(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        switch storage {
        case .f32(let v):
            v.withUnsafeBufferPointer { GEMM.sgemm(transA: false, transB: true, m: 1, n: rows, k: cols, a: x, lda: cols, b: $0.baseAddress!, ldb: cols, beta: 0, c: y, ldc: rows) }
        case .f16(let m):
            m.storage.withUnsafeBufferPointer { DenseKernels.f16Gemv(weights: $0.baseAddress!, ld: cols, rows: rows, cols: cols, x: x, y: y) }
        case .block(let m):
            m.gemv(x: x, y: y)
        }
    }

    /// Y[t, :] = W · X[t, :] for `tokens` rows of x [tokens, cols] into y [tokens, rows]: the weights stream once for
    /// all tokens (batched decoding, prompt logits); each row equals `gemv` of that token.
    func gemm(x: UnsafePointer<Float>, tokens: Int, y: UnsafeMutablePointer<Float>) {
        if tokens == 1 { gemv(x: x, y: y); return }
        switch storage {
        case .f32(let v):
            v.withUnsafeBufferPointer { GEMM.sgemm(transA: false, transB: true, m: tokens, n: rows, k: cols, a: x, lda: cols, b: $0.baseAddress!, ldb: cols, beta: 0, c: y, ldc: rows) }
        case .f16(let m):
            m.storage.withUnsafeBufferPointer {
                DenseKernels.f16Gemm(weights: $0.baseAddress!, ld: cols, rows: rows, cols: cols, x: x, ldx: cols, tokens: tokens, y: y, ldy: rows)
            }
        case .block(let m):
            m.gemm(x: x, ldx: cols, tokens: tokens, y: y, ldy: rows)
        }
    }

    /// Writes row `r` (cols floats) into `out`: the embedding lookup.
    func row(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        switch storage {
        case .f32(let v):
            v.withUnsafeBufferPointer { out.update(from: $0.baseAddress! + r * cols, count: cols) }
        case .f16(let m):
            m.storage.withUnsafeBufferPointer { bitnet_f16_to_f32($0.baseAddress! + r * cols, out, cols) }
        case .block(let m):
            m.dequantizeRow(r, into: out)
        }
    }
}
