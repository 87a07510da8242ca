import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetKernels

/// Reader of llama2.c checkpoints (`model.bin`): seven int32 header fields, then f32 arrays (see ../shared/data/README.md).
/// The model becomes an `fp` config with SwiGLU, no sub-norms, RMSNorm eps 1e-5 and RoPE on consecutive pairs.
package enum Llama2cModel {
    /// Loads and validates a llama2.c checkpoint.
    package static func load(path: String) throws -> ModelWeights {
        let data = try FileIO.read(path)
        func bad(_ f: String, _ p: String) -> BitNetError { .invalidFormat(file: path, field: f, problem: p) }
        guard data.count >= 28 else { throw bad("header", "file is \(data.count) bytes, shorter than the 28-byte header") }
        let h: [Int] = (0..<7).map { i in Int(data.withUnsafeBytes { Int32(littleEndian: $0.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }) }
        let (dim, hidden, layers, heads, kvHeads, vocabRaw, seqLen) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6])
        let shared = vocabRaw > 0
        let vocab = abs(vocabRaw)
        for (name, v) in [("dim", dim), ("hidden_dim", hidden), ("n_layers", layers), ("n_heads", heads), ("n_kv_heads", kvHeads),
                          ("vocab_size", vocab), ("seq_len", seqLen)] where v <= 0 || v > 1 << 20 {
            throw bad(name, "\(v) is out of range")
        }
        guard dim % heads == 0 else { throw bad("n_heads", "dim \(dim) is not a multiple of \(heads)") }
        guard kvHeads <= heads, heads % kvHeads == 0 else { throw bad("n_kv_heads", "\(kvHeads) does not divide n_heads \(heads)") }
        let config = ModelConfig(arch: .fp, vocabSize: vocab, dim: dim, nLayers: layers, nHeads: heads, nKVHeads: kvHeads,
                                 ffnDim: hidden, maxSeqLen: seqLen, ffn: .swiglu, subNorm: false, normEps: 1e-5,
                                 ropeTheta: 10000, tieEmbeddings: shared)
        do { try config.validate() } catch { throw bad("header", "\(error)") }
        let hd = dim / heads, kvDim = kvHeads * hd
        // Float counts in file order; the two legacy RoPE tables sit before the optional classifier.
        let perLayer = [dim, dim * dim, kvDim * dim, kvDim * dim, dim * dim, dim, hidden * dim, dim * hidden, hidden * dim]
        let ropeTables = seqLen * hd / 2 * 2
        let needed = vocab * dim + perLayer.reduce(0, +) * layers + dim + ropeTables + (shared ? 0 : vocab * dim)
        let available = (data.count - 28) / 4
        guard available >= needed else {
            throw bad("weights", "file holds \(available) floats, the header needs \(needed) (truncated?)")
        }
        let w = ModelWeights(config: config)
        let L = w.layout
        data.withUnsafeBytes { raw in
            var cursor = 28
            func read(into offset: Int, count: Int) {
                let dst = UnsafeMutableRawPointer(w.ptr + offset)
                dst.copyMemory(from: raw.baseAddress! + cursor, byteCount: count * 4)
                cursor += count * 4
            }
            read(into: L.embedding, count: vocab * dim)
            // Each array stacks all layers: read layer by layer into our per-layer slots.
            let order: [(KeyPath<ParameterLayout.LayerSlots, Int>, Int)] = [
                (\.attnNorm, dim), (\.wq, dim * dim), (\.wk, kvDim * dim), (\.wv, kvDim * dim), (\.wo, dim * dim),
                (\.ffnNorm, dim), (\.w1, hidden * dim), (\.w2, dim * hidden), (\.w3, hidden * dim),
            ]
            for (kp, n) in order { for l in 0..<layers { read(into: L.layers[l][keyPath: kp], count: n) } }
            read(into: L.finalNorm, count: dim)
            cursor += ropeTables * 4
            if !shared { read(into: L.output, count: vocab * dim) }
        }
        try w.checkFinite(file: path)
        return w
    }

    /// True when the file is not safetensors (whose 9th byte opens the JSON header with '{') and is named *.bin.
    package static func looksLikeLlama2c(path: String) -> Bool {
        guard path.hasSuffix(".bin") else { return false }
        guard let h = FileHandle(forReadingAtPath: path) else { return true }
        defer { try? h.close() }
        let head = (try? h.read(upToCount: 9)) ?? Data()
        return !(head.count == 9 && head[head.startIndex + 8] == UInt8(ascii: "{"))
    }
}
