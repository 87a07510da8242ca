import Foundation
import BitNetKernels
import CBitNetKernels

/// Storage of the output head and the token embedding at inference (Sec. 2 keeps them high precision; 8-bit blocks
/// and half precision cut the largest tensor of 2B4T, 128256 x 2560, to a quarter or a half of f32).
public enum HeadFormat: String, Sendable, CaseIterable {
    case f32, f16, q8
}

/// A dense [rows, cols] weight in a `HeadFormat`: products with activations (the head) and row lookups (the embedding).
final class DenseMatrix: @unchecked Sendable {
    enum Storage {
        case f32([Float]), f16(F16Matrix), q8(Q8Matrix)
    }
    let rows: Int, cols: Int
    let storage: Storage

    /// Stores row-major `values` [rows, cols] in `format` (rounded to half, or absmax 8-bit blocks of 32).
    init(_ values: [Float], rows: Int, cols: Int, format: HeadFormat) {
        self.rows = rows; self.cols = cols
        switch format {
        case .f32: storage = .f32(values)
        case .f16: storage = .f16(F16Matrix(values, rows: rows, cols: cols))
        case .q8: storage = .q8(DenseKernels.quantizeQ8(values, rows: rows, cols: cols))
        }
    }

    var format: HeadFormat {
        switch storage { case .f32: .f32; case .f16: .f16; case .q8: .q8 }
    }

    /// Bytes as stored.
    var bytes: Int {
        switch storage {
        case .f32(let v): v.count * 4
        case .f16(let m): m.bits.count * 2
        case .q8(let m): m.bytes.count
        }
    }

    /// Every value as f32 (exact for f32, the dequantized values otherwise).
    func values() -> [Float] {
        switch storage {
        case .f32(let v): v
        case .f16(let m): DenseKernels.toF32(f16: m.bits)
        case .q8(let m): DenseKernels.dequantize(m)
        }
    }

    /// y[rows] = W · x[cols].
    func gemv(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        switch storage {
        case .f32(let v):
            v.withUnsafeBufferPointer { GEMM.sgemm(transA: false, transB: true, m: 1, n: rows, k: cols, a: x, lda: cols, b: $0.baseAddress!, ldb: cols, beta: 0, c: y, ldc: rows) }
        case .f16(let m):
            m.bits.withUnsafeBufferPointer { DenseKernels.f16Gemv(weights: $0.baseAddress!, ld: cols, rows: rows, cols: cols, x: x, y: y) }
        case .q8(let m):
            m.bytes.withUnsafeBufferPointer { DenseKernels.q8Gemv(weights: $0.baseAddress!, rowStride: m.rowStride, rows: rows, cols: cols, x: x, y: y) }
        }
    }

    /// Writes row `r` (cols floats) into `out`: the embedding lookup.
    func row(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        switch storage {
        case .f32(let v):
            v.withUnsafeBufferPointer { out.update(from: $0.baseAddress! + r * cols, count: cols) }
        case .f16(let m):
            m.bits.withUnsafeBufferPointer { bitnet_f16_to_f32($0.baseAddress! + r * cols, out, cols) }
        case .q8(let m):
            m.bytes.withUnsafeBufferPointer { bitnet_q8_dequantize($0.baseAddress! + r * m.rowStride, cols, out, cols, 0, 1) }
        }
    }
}
