import Foundation
import BitNetKernels

/// One named tensor inside the flat parameter buffer.
package struct TensorSlot: Sendable, Equatable {
    package let name: String
    package let shape: [Int]
    package let offset: Int
    package var count: Int { shape.reduce(1, *) }
    /// Linear layers and embeddings get weight decay; norms do not.
    package var decays: Bool { shape.count == 2 }
}

/// Offsets of every parameter of a config in one contiguous f32 buffer (names of docs/MODEL.md).
/// wq, wk, wv are adjacent, and so are w1, w3: training multiplies each group as one fused matrix.
package struct ParameterLayout: Sendable {
    package private(set) var slots: [TensorSlot] = []
    package private(set) var index: [String: Int] = [:]
    package private(set) var totalCount = 0

    /// Slot offsets of one layer, so hot code does not look names up.
    package struct LayerSlots: Sendable {
        package var attnNorm = 0, wq = 0, wk = 0, wv = 0, attnSubNorm = -1, wo = 0
        package var ffnNorm = 0, w1 = 0, w3 = 0, ffnSubNorm = -1, w2 = 0
    }
    package private(set) var layers: [LayerSlots] = []
    package private(set) var embedding = 0
    package private(set) var finalNorm = 0
    /// Offset of the output head (== embedding when tied).
    package private(set) var output = 0

    package init(config c: ModelConfig) {
        embedding = add("tok_embeddings.weight", [c.vocabSize, c.dim])
        for l in 0..<c.nLayers {
            var s = LayerSlots()
            let p = "layers.\(l)."
            s.attnNorm = add(p + "attention_norm.weight", [c.dim])
            s.wq = add(p + "attention.wq.weight", [c.nHeads * c.headDim, c.dim])
            s.wk = add(p + "attention.wk.weight", [c.kvDim, c.dim])
            s.wv = add(p + "attention.wv.weight", [c.kvDim, c.dim])
            if c.subNorm { s.attnSubNorm = add(p + "attention.sub_norm.weight", [c.dim]) }
            s.wo = add(p + "attention.wo.weight", [c.dim, c.nHeads * c.headDim])
            s.ffnNorm = add(p + "ffn_norm.weight", [c.dim])
            s.w1 = add(p + "feed_forward.w1.weight", [c.ffnDim, c.dim])
            s.w3 = add(p + "feed_forward.w3.weight", [c.ffnDim, c.dim])
            if c.subNorm { s.ffnSubNorm = add(p + "feed_forward.sub_norm.weight", [c.ffnDim]) }
            s.w2 = add(p + "feed_forward.w2.weight", [c.dim, c.ffnDim])
            layers.append(s)
        }
        finalNorm = add("norm.weight", [c.dim])
        output = c.tieEmbeddings ? embedding : add("output.weight", [c.vocabSize, c.dim])
    }

    private mutating func add(_ name: String, _ shape: [Int]) -> Int {
        let off = totalCount
        index[name] = slots.count
        slots.append(TensorSlot(name: name, shape: shape, offset: off))
        totalCount += shape.reduce(1, *)
        return off
    }

    /// The slot of a named tensor.
    package func slot(_ name: String) -> TensorSlot? { index[name].map { slots[$0] } }
}

/// Model weights: a config plus its parameters in one flat buffer (latent full-precision weights, Sec. 2.2.2).
package final class ModelWeights: @unchecked Sendable {
    package let config: ModelConfig
    package let layout: ParameterLayout
    /// All parameters, in `layout` order.
    package let values: FloatBuffer
    /// Base address of the parameters.
    package var ptr: UnsafeMutablePointer<Float> { values.ptr }

    /// Zero weights of the config's shape.
    package init(config: ModelConfig) {
        self.config = config
        self.layout = ParameterLayout(config: config)
        self.values = FloatBuffer(layout.totalCount)
    }

    /// Throws, naming the tensor and the index, at the first NaN or infinity (`file` names the source in the error):
    /// a non-finite weight makes every logit NaN, which would decode as one token forever.
    package func checkFinite(file: String) throws {
        for s in layout.slots {
            let values = UnsafeBufferPointer(start: ptr + s.offset, count: s.count)
            if let i = values.firstIndex(where: { !$0.isFinite }) {
                throw BitNetError.invalidFormat(file: file, field: s.name, problem: "non-finite value \(values[i]) at index \(i)")
            }
        }
    }

    /// A deep copy (same config, same values).
    package func copy() -> ModelWeights {
        let w = ModelWeights(config: config)
        w.ptr.update(from: ptr, count: layout.totalCount)
        return w
    }

    /// Random initialization from `seed`: N(0, 0.02) for matrices, residual outputs scaled by 1/sqrt(2L), norms 1.
    package convenience init(config: ModelConfig, seed: UInt64) {
        self.init(config: config)
        var rng = SeededRNG(seed: seed)
        let residualStd: Float = 0.02 / Float(2 * config.nLayers).squareRoot()
        for s in layout.slots {
            if s.shape.count == 1 {
                for i in 0..<s.count { ptr[s.offset + i] = 1 }
            } else {
                let std: Float = s.name.hasSuffix("wo.weight") || s.name.hasSuffix("w2.weight") ? residualStd : 0.02
                for i in 0..<s.count { ptr[s.offset + i] = rng.nextNormal() * std }
            }
        }
    }

    /// Copy of one named tensor.
    package func tensor(_ name: String) -> [Float]? {
        guard let s = layout.slot(name) else { return nil }
        return Array(UnsafeBufferPointer(start: ptr + s.offset, count: s.count))
    }
}
