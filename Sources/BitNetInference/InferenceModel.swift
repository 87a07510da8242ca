import Foundation
import BitNetKernels
import BitNetCore
import BitNetTokenizers
import BitNetFormats

/// A model ready for decoding: quantized linears, full-precision embedding, head and norms.
/// It owns its tensors, so it can be built from trained weights or synthetically (benchmarks of any shape).
package final class InferenceModel: @unchecked Sendable {
    package let config: ModelConfig
    package struct Layer {
        package let wq, wk, wv, wo, w1, w3, w2: InferenceLinear
        /// Offsets into `norms` (-1: absent).
        package let attnNorm, attnSubNorm, ffnNorm, ffnSubNorm: Int
        package init(wq: InferenceLinear, wk: InferenceLinear, wv: InferenceLinear, wo: InferenceLinear, w1: InferenceLinear,
                     w3: InferenceLinear, w2: InferenceLinear, attnNorm: Int, attnSubNorm: Int, ffnNorm: Int, ffnSubNorm: Int) {
            self.wq = wq; self.wk = wk; self.wv = wv; self.wo = wo; self.w1 = w1; self.w3 = w3; self.w2 = w2
            self.attnNorm = attnNorm; self.attnSubNorm = attnSubNorm; self.ffnNorm = ffnNorm; self.ffnSubNorm = ffnSubNorm
        }

        /// This layer with its ternary linears in `layout`, placed in an arena of its own. To base 3, 2-bit linears
        /// convert straight into the new arena (no array, no copy), and those read in place from a mapped I2_S file
        /// release their file pages: they leave the resident set.
        package func converted(to layout: TernaryLayout, hugePages: Bool) -> Layer {
            defer { if layout == .t3 { for l in linears { _ = l.packed?.storage.releaseFilePages() } } }
            if layout == .t3, linears.allSatisfy({ $0.packed != nil }),
               let arena = WeightArena(capacity: WeightArena.bytesNeeded(linears.map { $0.rows * TernaryKernels.rowStrideBase3(cols: $0.cols) }),
                                       hugePages: hugePages) {
                return with { $0.converted(to: .t3, into: arena) }
            }
            return with { $0.converted(to: layout) }.placedInOwnArena(hugePages: hugePages)
        }

        /// Bytes of the linears on the integer kernels in the t2 and in the t3 layout.
        package var ternaryBytes: (t2: Int, t3: Int) {
            let codes = linears.filter(\.takesCodes)
            return (codes.reduce(0) { $0 + $1.rows * TernaryKernels.rowStride2bit(cols: $1.cols) },
                    codes.reduce(0) { $0 + $1.rows * TernaryKernels.rowStrideBase3(cols: $1.cols) })
        }

        /// This layer in `auto`'s layout for it: t3 where its kernels are fast and it takes fewer bytes, else as it is.
        /// Builders call it on each layer as they make it, so a model is never held in both layouts.
        package func inPreferredLayout(hugePages: Bool) -> Layer {
            let b = ternaryBytes
            return TernaryKernels.base3IsFast && b.t3 < b.t2 ? converted(to: .t3, hugePages: hugePages) : self
        }

        /// The seven linears, for sums over them (sizes, not the forward pass).
        package var linears: [InferenceLinear] { [wq, wk, wv, wo, w1, w3, w2] }

        /// This layer with `transform` applied to each linear (norm offsets unchanged).
        func with(_ transform: (InferenceLinear) -> InferenceLinear) -> Layer {
            Layer(wq: transform(wq), wk: transform(wk), wv: transform(wv), wo: transform(wo), w1: transform(w1), w3: transform(w3),
                  w2: transform(w2), attnNorm: attnNorm, attnSubNorm: attnSubNorm, ffnNorm: ffnNorm, ffnSubNorm: ffnSubNorm)
        }
    }
    package internal(set) var layers: [Layer]

    /// Σ over every linear of every layer.
    private func sumOverLinears(_ value: (InferenceLinear) -> Int) -> Int {
        layers.reduce(0) { $0 + $1.linears.reduce(0) { $0 + value($1) } }
    }
    let rope: Rope
    /// Token embedding [vocab, dim] and output head [vocab, dim]: one shared matrix when tied (stored once).
    var embedding: DenseMatrix
    var head: DenseMatrix
    /// Every RMSNorm weight, concatenated; `finalNorm` is the offset of the last one.
    let norms: FloatBuffer
    let finalNorm: Int

    /// Quantizes every BitLinear of trained weights once (offline, as Appendix D's inference notes say).
    package init(weights: ModelWeights) {
        let c = weights.config
        self.config = c
        rope = Rope(headDim: c.headDim, maxSeqLen: c.maxSeqLen, theta: c.ropeTheta)
        let q = LinearQuantization(arch: c.arch, groups: c.quantGroups, bits: c.actBits, scope: .perToken)
        var qDown = q
        qDown.unsigned = c.unsignedAfterNonlinearity && c.arch.isQuantized
        let w = weights.ptr, qD = c.nHeads * c.headDim, L = weights.layout
        let vd = c.vocabSize * c.dim
        embedding = DenseMatrix(Array(UnsafeBufferPointer(start: w + L.embedding, count: vd)), rows: c.vocabSize, cols: c.dim, format: .f32)
        head = c.tieEmbeddings ? embedding
            : DenseMatrix(Array(UnsafeBufferPointer(start: w + L.output, count: vd)), rows: c.vocabSize, cols: c.dim, format: .f32)
        // Norm weights: copy each into one buffer and remember where it went.
        var normValues: [Float] = []
        func keep(_ offset: Int, _ count: Int) -> Int {
            guard offset >= 0 else { return -1 }
            let at = normValues.count
            normValues += UnsafeBufferPointer(start: w + offset, count: count)
            return at
        }
        var built: [Layer] = []
        for s in L.layers {
            built.append(Layer(wq: InferenceLinear(weight: w + s.wq, rows: qD, cols: c.dim, quant: q),
                               wk: InferenceLinear(weight: w + s.wk, rows: c.kvDim, cols: c.dim, quant: q),
                               wv: InferenceLinear(weight: w + s.wv, rows: c.kvDim, cols: c.dim, quant: q),
                               wo: InferenceLinear(weight: w + s.wo, rows: c.dim, cols: qD, quant: q),
                               w1: InferenceLinear(weight: w + s.w1, rows: c.ffnDim, cols: c.dim, quant: q),
                               w3: InferenceLinear(weight: w + s.w3, rows: c.ffnDim, cols: c.dim, quant: q),
                               w2: InferenceLinear(weight: w + s.w2, rows: c.dim, cols: c.ffnDim, quant: qDown),
                               attnNorm: keep(s.attnNorm, c.dim), attnSubNorm: keep(s.attnSubNorm, qD),
                               ffnNorm: keep(s.ffnNorm, c.dim), ffnSubNorm: keep(s.ffnSubNorm, c.ffnDim)))
        }
        layers = built
        finalNorm = keep(L.finalNorm, c.dim)
        norms = FloatBuffer(normValues.count)
        normValues.withUnsafeBufferPointer { norms.ptr.update(from: $0.baseAddress!, count: $0.count) }
        placeWeights()
    }

    /// A model from prepared parts (the GGUF loader that serves tensors from the file mapping).
    package init(config c: ModelConfig, layers: [Layer], embedding: DenseMatrix, head: DenseMatrix, norms normValues: [Float], finalNorm: Int) {
        config = c
        rope = Rope(headDim: c.headDim, maxSeqLen: c.maxSeqLen, theta: c.ropeTheta)
        self.layers = layers; self.embedding = embedding; self.head = head; self.finalNorm = finalNorm
        norms = FloatBuffer(normValues.count)
        normValues.withUnsafeBufferPointer { norms.ptr.update(from: $0.baseAddress!, count: $0.count) }
        placeWeights()
    }

    /// Stores the output head and the embedding in f32, f16 or 8/6/4-bit blocks (a tied pair stays one matrix).
    /// Converting from a lossy format starts from its dequantized values.
    package func setHeadFormat(_ format: HeadFormat) throws {
        let c = config, tied = head === embedding
        if head.format != format { head = DenseMatrix(head.values(), rows: c.vocabSize, cols: c.dim, format: format) }
        if tied { embedding = head }
        else if embedding.format != format { embedding = DenseMatrix(embedding.values(), rows: c.vocabSize, cols: c.dim, format: format) }
        placeWeights(hugePages: hugePages)
    }

    /// The format the head is stored in.
    package var headFormat: HeadFormat { head.format }

    /// Stores the ternary linears (those on the integer kernels) in `layout`: t2 (2 bits/weight) or t3 (1.6 bits,
    /// 20 % fewer bytes per token). Lossless: logits are identical in either layout.
    package func setTernaryLayout(_ layout: TernaryLayout) {
        if let kept = keptLayouts[layout] { layers = kept; return }
        // Layer by layer, each converted layer placed at once: the old copy of a layer is freed before the next.
        for i in layers.indices { layers[i] = layers[i].converted(to: layout, hugePages: hugePages) }
    }

    /// The layout `auto` picks for this model on this CPU: t3 when its fast kernels run here and it stores the
    /// linears in fewer bytes (20 % fewer at 2560 columns; more for narrow rows: 64 bytes per 320 columns against 32
    /// per 128); t2 otherwise. Linears mapped from an I2_S file (the t2 layout) are then copied to t3 in memory and
    /// their file pages released: fewer resident bytes, and a faster decode than reading them in place.
    package var preferredTernaryLayout: TernaryLayout {
        let bytes = layers.map(\.ternaryBytes)
        return TernaryKernels.base3IsFast && bytes.reduce(0, { $0 + $1.t3 }) < bytes.reduce(0, { $0 + $1.t2 }) ? .t3 : .t2
    }

    /// Whether the arenas of `placeWeights` (and of the conversions after it) use huge pages.
    package internal(set) var hugePages = InferenceModel.hugePagesByDefault

    /// The layouts kept by `keepTernaryLayouts` (empty: none).
    var keptLayouts: [TernaryLayout: [Layer]] = [:]

    /// The layout of the ternary linears (t2 unless set; also t2 for models without integer-kernel linears).
    package var ternaryLayout: TernaryLayout { layers.first?.wq.ternaryLayout ?? .t2 }

    /// Logits = head · x (the output projection, in the head's stored format).
    package func applyHead(x: UnsafePointer<Float>, logits: UnsafeMutablePointer<Float>) {
        head.gemv(x: x, y: logits)
    }

    /// Logits [tokens, vocab] of x [tokens, dim], the head read once for all tokens.
    package func applyHead(x: UnsafePointer<Float>, tokens: Int, logits: UnsafeMutablePointer<Float>) {
        head.gemm(x: x, tokens: tokens, y: logits)
    }

    /// Size of the inference weights: packed linears plus f32 embedding/head and norms.
    package var inferenceBytes: Int {
        sumOverLinears(\.packedBytes) + embedding.bytes + (head === embedding ? 0 : head.bytes) + norms.count * 4
    }

    /// The weights by category, in bytes: (linears, embedding and head (once when tied), norms). They sum to
    /// `inferenceBytes`.
    package var weightBreakdown: (linears: Int, embeddingAndHead: Int, norms: Int) {
        (sumOverLinears(\.packedBytes), embedding.bytes + (head === embedding ? 0 : head.bytes), norms.count * 4)
    }

    /// Bytes of the weights read in place from a memory-mapped file (mapped I2_S linears and F16 embedding/head);
    /// 0 for a model that owns all its weights.
    package var fileBackedBytes: Int {
        let emb = embedding.isFileBacked ? embedding.bytes : 0
        return sumOverLinears(\.fileBackedBytes) + emb + (head !== embedding && head.isFileBacked ? head.bytes : 0)
    }

    /// Bytes read from memory per decoded token: every linear plus the head (the embedding row is negligible).
    package var bytesPerToken: Int {
        sumOverLinears(\.packedBytes) + head.bytes
    }

    func norm(_ offset: Int) -> UnsafePointer<Float> { UnsafePointer(norms.ptr + offset) }
}
