import CBitNetKernels
import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference
import BitNetTraining
import BitNetEvaluation
import BitNetServer
import BitNetKernels

/// Roofline benchmark of the output-head kernels: GEMV bandwidth of an f16 / q8 / q6 / q4 [rows, cols] matrix
/// against the measured read bandwidth, and a batched GEMV of `tokens` tokens against `tokens` GEMVs.
package enum HeadBench {
    /// One weight format's timings (best of the repetitions).
    package struct Row: Sendable {
        package let format: String
        /// Weight bytes streamed per GEMV.
        package let bytes: Int
        /// Seconds per GEMV.
        package let gemvSeconds: Double
        /// Seconds for one `gemm` of all tokens.
        package let gemmSeconds: Double
        /// Seconds for one GEMV per token, back to back.
        package let gemvLoopSeconds: Double
        /// Weight bytes per second of one GEMV.
        package var gemvBytesPerSecond: Double { Double(bytes) / gemvSeconds }
    }

    /// Measures the read bandwidth (bytes/s, `MemoryBandwidth.measure` on `pool`) and every format in `formats`
    /// ("f16", "q8", "q6", "q4") on a random matrix (uniform in [-0.05, 0.05), SplitMix64 `seed`); the bandwidth
    /// probe streams `bandwidthBytes` (keep it well above the last-level cache).
    /// One matrix is alive at a time; `progress` gets a line per step.
    package static func run(rows: Int = 128_256, cols: Int = 2560, tokens: Int = 16, repetitions: Int = 3,
                           formats: [String] = ["f16", "q8", "q6", "q4"], seed: UInt64 = 1, bandwidthBytes: Int = 512 << 20,
                           pool: ThreadPool? = .shared,
                           progress: (String) -> Void = { _ in }) -> (readBandwidth: Double, rows: [Row]) {
        precondition(rows > 0 && cols > 0 && tokens > 0 && repetitions > 0, "HeadBench.run: bad shape or repetitions")
        let bandwidth = MemoryBandwidth.measure(bytes: bandwidthBytes, repetitions: repetitions, pool: pool)
        progress(String(format: "read bandwidth %.2f GB/s", bandwidth / 1e9))
        var state = seed
        func uniform(_ n: Int) -> [Float] {
            (0..<n).map { _ in
                state &+= 0x9E37_79B9_7F4A_7C15
                var z = state
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                return (Float((z ^ (z >> 31)) >> 40) / Float(1 << 24) - 0.5) * 0.1
            }
        }
        let x = uniform(tokens * cols)
        var results: [Row] = []
        for name in formats {
            // Built in chunks of rows so the f32 source never exists in full; one raw buffer, freed after timing.
            let chunk = 4096
            let format = BlockQuantFormat(rawValue: name)
            precondition(format != nil || name == "f16", "HeadBench.run: unknown format \(name) (f16, q8, q6, q4)")
            let rowBytes = format?.rowStride(cols: cols) ?? 2 * cols
            let bytes = rows * rowBytes
            let w = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            defer { w.deallocate() }
            for r0 in stride(from: 0, to: rows, by: chunk) {
                let n = min(chunk, rows - r0), values = uniform(n * cols)
                let part: [UInt8] = format.map { BlockQuantMatrix.quantize(values: values, rows: n, cols: cols, format: $0, pool: pool).bytes }
                    ?? DenseKernels.toF16(values).withUnsafeBytes { Array($0) }
                part.withUnsafeBytes { (w + r0 * rowBytes).copyMemory(from: $0.baseAddress!, byteCount: part.count) }
            }
            let gemv: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
            let gemm: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
            if let format {
                let wq = UnsafePointer(w.assumingMemoryBound(to: UInt8.self))
                gemv = { xp, y in BlockQuantMatrix.gemv(format: format, weights: wq, rowStride: rowBytes, rows: rows, cols: cols, x: xp, y: y, pool: pool) }
                gemm = { xp, y in BlockQuantMatrix.gemm(format: format, weights: wq, rowStride: rowBytes, rows: rows, cols: cols, x: xp, ldx: cols,
                                                        tokens: tokens, y: y, ldy: rows, pool: pool) }
            } else {
                let wh = UnsafePointer(w.assumingMemoryBound(to: UInt16.self))
                gemv = { xp, y in DenseKernels.f16Gemv(weights: wh, ld: cols, rows: rows, cols: cols, x: xp, y: y, pool: pool) }
                gemm = { xp, y in DenseKernels.f16Gemm(weights: wh, ld: cols, rows: rows, cols: cols, x: xp, ldx: cols, tokens: tokens,
                                                       y: y, ldy: rows, pool: pool) }
            }
            var y = [Float](repeating: 0, count: tokens * rows)
            let (tv, tl, tg) = x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp -> (Double, Double, Double) in
                    let x0 = xp.baseAddress!, y0 = yp.baseAddress!
                    gemv(x0, y0)   // warm-up: spin up the pool
                    let tv = best(repetitions) { gemv(x0, y0) }
                    let tl = best(repetitions) { for t in 0..<tokens { gemv(x0 + t * cols, y0 + t * rows) } }
                    let tg = best(repetitions) { gemm(x0, y0) }
                    return (tv, tl, tg)
                }
            }
            let row = Row(format: name, bytes: bytes, gemvSeconds: tv, gemmSeconds: tg, gemvLoopSeconds: tl)
            progress(String(format: "%@: %.1f MB, GEMV %.2f ms = %.2f GB/s (%.0f%% of read bandwidth); %d tokens: gemm %.1f ms vs %d GEMVs %.1f ms (x%.1f)",
                            name, Double(bytes) / 1e6, tv * 1e3, row.gemvBytesPerSecond / 1e9, 100 * row.gemvBytesPerSecond / bandwidth,
                            tokens, tg * 1e3, tokens, tl * 1e3, tl / tg))
            results.append(row)
        }
        return (bandwidth, results)
    }

    /// Best wall time of `n` runs of `body`.
    private static func best(_ n: Int, _ body: () -> Void) -> Double {
        var b = Double.infinity
        for _ in 0..<n {
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            b = min(b, Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
        }
        return b
    }
}
