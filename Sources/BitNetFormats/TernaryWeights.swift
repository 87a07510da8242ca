import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetKernels

/// Moves pre-quantized ternary weights (codes c ∈ {-1, 0, 1} and a scale β) into latent weights and back.
///
/// The latent matrix W = c · β / f, with f the fraction of non-zero codes, has mean|W| = β, so the absmean
/// quantizer of Eq. 3-5 recovers β and RoundClip(W / β, -1, 1) = c exactly: importing is lossless.
package enum TernaryWeights {
    /// Writes latent weights for `codes` with one scale per group of `codes.count / scales.count` values into `out`.
    package static func latent(codes: [Int8], scales: [Float], into out: UnsafeMutablePointer<Float>) {
        let per = codes.count / max(scales.count, 1)
        for (g, beta) in scales.enumerated() {
            let range = (g * per)..<((g + 1) * per)
            var nonZero = 0
            for i in range where codes[i] != 0 { nonZero += 1 }
            // An all-zero group has no scale to carry: its latent weights are zeros (quantized to zeros again).
            let w: Float = nonZero == 0 ? 0 : beta * Float(per) / Float(nonZero)
            for i in range { out[i] = Float(codes[i]) * w }
        }
    }

    /// The codes and per-group scales that the absmean quantizer gives for a latent matrix [rows, cols] (Eq. 3-5).
    package static func quantize(_ w: UnsafePointer<Float>, rows: Int, cols: Int, arch: Architecture, groups: Int) -> (codes: [Int8], scales: [Float]) {
        var codes = [Int8](repeating: 0, count: rows * cols)
        let betas = codes.withUnsafeMutableBufferPointer {
            Quantizer.quantizeWeight(w, rows: rows, cols: cols, arch: arch, groups: groups, codes: $0.baseAddress)
        }
        return (codes, betas)
    }

    /// Codes and one scale when every value is 0 or ±a for one a > 0 (a pre-ternarized float tensor, as llama.cpp's
    /// converter writes BitNet linears in F16/F32); nil otherwise.
    package static func detect(_ values: [Float]) -> (codes: [Int8], scale: Float)? {
        var a: Float = 0
        for v in values where v != 0 {
            if a == 0 { a = abs(v) } else if abs(v) != a { return nil }
        }
        guard a > 0 else { return nil }
        return (values.map { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }, a)
    }

    /// One scale for ternary data stored with per-block scales: the mean block scale over the non-zero codes
    /// (exact when all blocks share one scale, as in files written from a ternary model).
    package static func commonScale(codes: [Int8], blockScales: [Float], blockSize: Int) -> Float {
        // One scale for every block (what converters write per tensor): the weighted mean is that scale.
        if let first = blockScales.first, blockScales.allSatisfy({ $0 == first }) { return first }
        // Block by block: the non-zero count of a block times its scale (the same sum, without a division per element).
        var sum: Double = 0, n = 0
        codes.withUnsafeBufferPointer { cp in
            for (b, scale) in blockScales.enumerated() {
                let start = b * blockSize, end = min(start + blockSize, cp.count)
                guard start < end else { break }
                var nonZero = 0
                for i in start..<end { nonZero &+= cp[i] != 0 ? 1 : 0 }
                sum += Double(scale) * Double(nonZero); n += nonZero
            }
        }
        return n == 0 ? 0 : Float(sum / Double(n))
    }

    /// Permutes the rows of a q/k projection [heads * hd, cols] from Hugging Face's rotate_half order (first half,
    /// second half of each head) to the consecutive pairs of GGUF and docs/MODEL.md, or back when `inverse`.
    package static func permuteRotary<T>(_ w: [T], heads: Int, rows: Int, cols: Int, inverse: Bool = false) -> [T] {
        var out = w
        let hd = rows / heads, half = hd / 2
        // Whole rows at a time: this is generic and called across modules, where an element-wise loop runs unspecialized.
        w.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for h in 0..<heads {
                    for i in 0..<half {
                        for j in 0..<2 {
                            // Interleaved row 2i + j holds rotate_half row j * hd/2 + i.
                            let inter = h * hd + 2 * i + j, rh = h * hd + j * half + i
                            let (d, s) = inverse ? (rh, inter) : (inter, rh)
                            (dst.baseAddress! + d * cols).update(from: src.baseAddress! + s * cols, count: cols)
                        }
                    }
                }
            }
        }
        return out
    }
}
