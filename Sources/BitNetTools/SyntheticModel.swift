import Foundation
import BitNetCore
import BitNetInference
import BitNetKernels

// Synthetic models: random weights of any shape, for benchmarks and load tests (no latent weights exist).

extension InferenceModel {
    /// A model of `config`'s shape with random weights (the `bitnet bench` synthetic model; no latent weights exist):
    /// ternary linears for BitNet, f16 linears for `fp` (the paper's FP16 baseline); the head in `headFormat`.
    /// `preferBase3`: each layer goes to `auto`'s layout for it as it is made (`Layer.inPreferredLayout`; else it stays
    /// t2, as drawn), so the model never holds every layer in both.
    package convenience init(synthetic c: ModelConfig, seed: UInt64 = 1, headFormat: HeadFormat = .f32, preferBase3: Bool = false) throws {
        guard c.quantGroups == 1, !c.unsignedAfterNonlinearity else {
            throw BitNetError.unsupported("synthetic models use one quantization group and signed activations")
        }
        try c.validate()
        var rng = SeededRNG(seed: seed)
        let q = LinearQuantization(arch: c.arch, groups: 1, bits: c.actBits, scope: .perToken)
        let qD = c.nHeads * c.headDim
        let perLayerNorms = 2 * c.dim + (c.subNorm ? qD + c.ffnDim : 0)
        var built: [Layer] = []
        func linear(_ rows: Int, _ cols: Int) -> InferenceLinear {
            c.arch.isQuantized ? InferenceLinear(randomTernaryRows: rows, cols: cols, quant: q, rng: &rng)
                               : InferenceLinear(randomHalfRows: rows, cols: cols, rng: &rng)
        }
        for l in 0..<c.nLayers {
            let base = l * perLayerNorms
            // Placed (and converted) as it is made, so its arrays are freed now rather than all held until the model places them.
            let layer = Layer(wq: linear(qD, c.dim), wk: linear(c.kvDim, c.dim), wv: linear(c.kvDim, c.dim),
                               wo: linear(c.dim, qD), w1: linear(c.ffnDim, c.dim), w3: linear(c.ffnDim, c.dim),
                               w2: linear(c.dim, c.ffnDim),
                               attnNorm: base, attnSubNorm: c.subNorm ? base + c.dim : -1,
                               ffnNorm: base + c.dim + (c.subNorm ? qD : 0),
                               ffnSubNorm: c.subNorm ? base + 2 * c.dim + qD : -1)
            built.append((preferBase3 ? layer.inPreferredLayout(hugePages: InferenceModel.hugePagesByDefault) : layer).placedInOwnArena())
        }
        // Drawn and stored block by block: the f32 embedding is never whole in memory.
        let embedding = DenseMatrix(rows: c.vocabSize, cols: c.dim, format: headFormat, arenaHugePages: InferenceModel.hugePagesByDefault) { r0, r1, out in
            for i in 0..<((r1 - r0) * c.dim) { out[i] = (rng.nextUniform() - 0.5) * 0.04 }
        }
        let finalNorm = c.nLayers * perLayerNorms
        self.init(config: c, layers: built, embedding: embedding, head: embedding,
                  norms: [Float](repeating: 1, count: finalNorm + c.dim), finalNorm: finalNorm)
    }
}

extension InferenceLinear {
    /// A random ternary layer (codes uniform over {-1, 0, +1}, β = 0.02) for benchmarks of any shape, drawn straight
    /// in the 2-bit layout: each byte's four fields from 16 random bits taken mod 81 (four base-3 digits; bias under
    /// 0.02 %), the fields past the last column code 0, as the packer pads.
    package init(randomTernaryRows rows: Int, cols: Int, quant: LinearQuantization, rng: inout SeededRNG) {
        let fields: [UInt8] = (0..<81).map { v in (0..<4).reduce((UInt8(0), v)) { acc, _ in (acc.0 << 2 | UInt8(acc.1 % 3), acc.1 / 3) }.0 }
        let stride = TernaryKernels.rowStride2bit(cols: cols), count = rows * stride
        var bytes = [UInt8](unsafeUninitializedCapacity: count) { buf, n in
            var i = 0
            while i < count {
                var bits = rng.next()
                for _ in 0..<4 where i < count {
                    buf[i] = fields[Int(bits & 0xFFFF) % 81]
                    bits >>= 16; i += 1
                }
            }
            n = count
        }
        // Element j of a 128-weight block: byte j % 32, bits 7-6 / 5-4 / 3-2 / 1-0 for j / 32 (code 0 = field 01).
        for r in 0..<rows {
            for j in cols..<(stride / 32 * 128) {
                let byte = r * stride + j / 128 * 32 + j % 32, shift = 6 - 2 * (j % 128 / 32)
                bytes[byte] = bytes[byte] & ~(3 << shift) | (1 << shift)
            }
        }
        self.init(weights: .t2(PackedTernary(bytes: bytes, rows: rows, cols: cols)), rows: rows, cols: cols, betas: [0.02], quant: quant)
    }

    /// A random half-precision layer (values uniform in ±0.02) for the fp twin of `bitnet bench`.
    package init(randomHalfRows rows: Int, cols: Int, rng: inout SeededRNG) {
        var bits = [UInt16](repeating: 0, count: rows * cols)
        for i in 0..<bits.count { bits[i] = Float16((rng.nextUniform() - 0.5) * 0.04).bitPattern }
        self.init(weights: .f16(F16Matrix(bits: bits, rows: rows, cols: cols)), rows: rows, cols: cols, betas: [], quant: .none)
    }
}
