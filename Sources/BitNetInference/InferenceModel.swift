import Foundation
import BitNetKernels
import BitNetCore
import BitNetTokenizers
import BitNetFormats

/// A linear layer prepared for inference: ternary/binary codes with one β per row group (Eq. 9), or f32 weights.
package struct InferenceLinear: @unchecked Sendable {
    package let rows: Int, cols: Int
    /// Codes in {-1, 0, +1} (b1: {-1, +1}), row-major [rows, cols]; kept only for the grouped-activation path.
    let codes: [Int8]
    /// The codes packed 2 bits each for the integer AVX2/VNNI kernel (one activation scale per token).
    private(set) var packed: PackedTernary?
    /// The same codes in the 1.6-bit base-3 layout instead (`setTernaryLayout(.t3)`; then `packed` is nil).
    private(set) var base3: PackedTernaryBase3? = nil
    /// Half-precision weights (the fp twin in `bitnet bench`, as the paper's FP16 baseline).
    var half: F16Matrix? = nil
    /// Output r comes from packed row rowOrder[r] (a mapped GGUF q/k projection keeps the file's rotate_half row
    /// order); nil: row r.
    var rowOrder: [Int32]? = nil
    /// β per group of rows/G rows.
    let betas: [Float]
    /// Full-precision weight (fp) or dequantized weight (used by the unsigned-activation path).
    let dense: [Float]
    let quant: LinearQuantization

    init(weight w: UnsafePointer<Float>, rows: Int, cols: Int, quant: LinearQuantization) {
        self.rows = rows; self.cols = cols; self.quant = quant
        if quant.arch.isQuantized {
            var c = [Int8](repeating: 0, count: rows * cols)
            var deq = [Float](repeating: 0, count: quant.unsigned ? rows * cols : 0)
            betas = c.withUnsafeMutableBufferPointer { cp in
                deq.withUnsafeMutableBufferPointer { dp in
                    Quantizer.quantizeWeight(w, rows: rows, cols: cols, arch: quant.arch, groups: quant.groups,
                                             codes: cp.baseAddress, dequant: quant.unsigned ? dp.baseAddress : nil)
                }
            }
            // One activation group and signed absmax: the packed integer kernel computes Σ W̃·x̃ exactly.
            if quant.groups == 1 && !quant.unsigned {
                packed = TernaryKernels.pack2bit(codes: c, rows: rows, cols: cols)
                codes = []
            } else {
                packed = nil
                codes = c
            }
            dense = deq
        } else {
            codes = []; betas = []; packed = nil
            dense = Array(UnsafeBufferPointer(start: w, count: rows * cols))
        }
    }

    /// A ternary layer over codes already packed in the kernel layout (e.g. borrowed from a mapped I2_S tensor) with
    /// one β; `rowOrder[r]` is the packed row holding output r (nil: the identity).
    init(packed p: PackedTernary, beta: Float, quant: LinearQuantization, rowOrder: [Int32]? = nil) {
        precondition(quant.arch.isQuantized && quant.groups == 1 && !quant.unsigned, "packed layers take one group and signed activations")
        precondition(rowOrder.map { $0.count == p.rows && $0.allSatisfy { $0 >= 0 && Int($0) < p.rows } } ?? true, "rowOrder must index the rows")
        rows = p.rows; cols = p.cols; self.quant = quant
        packed = p; codes = []; betas = [beta]; dense = []
        self.rowOrder = rowOrder
    }

    /// Bytes of this layer's weights read in place from a file mapping (0 when owned).
    var fileBackedBytes: Int { packed.map { $0.storage.isFileBacked ? $0.storage.count : 0 } ?? 0 }

    /// Sizes of the kernel weights (packed ternary, base-3 or half) that `placed(in:moveArenas:)` copies: those in
    /// arrays, and with `moveArenas` those already in an arena too (never those in a file mapping).
    func placeableSizes(moveArenas: Bool) -> [Int] {
        func size<E>(_ b: KernelBuffer<E>?) -> Int {
            guard let b, b.isMovable(moveArenas) else { return 0 }
            return b.count * MemoryLayout<E>.stride
        }
        return [size(packed?.storage), size(base3?.storage), size(half?.storage)].filter { $0 > 0 }
    }

    /// This layer with its movable kernel weights (see `placeableSizes`) copied into `arena`.
    func placed(in arena: WeightArena, moveArenas: Bool) -> InferenceLinear {
        var l = self
        if let p = packed, p.storage.isMovable(moveArenas) { l.packed = PackedTernary(storage: arena.place(p.storage), rows: p.rows, cols: p.cols) }
        if let b = base3, b.storage.isMovable(moveArenas) { l.base3 = PackedTernaryBase3(storage: arena.place(b.storage), rows: b.rows, cols: b.cols) }
        if let h = half, h.storage.isMovable(moveArenas) { l.half = F16Matrix(storage: arena.place(h.storage), rows: h.rows, cols: h.cols) }
        return l
    }

    /// The arenas holding this layer's kernel weights.
    var arenas: [WeightArena] { [packed?.storage.arena, base3?.storage.arena, half?.storage.arena].compactMap { $0 } }

    /// A random ternary layer (codes uniform over {-1, 0, +1}, β = 0.02) for benchmarks of any shape, drawn straight
    /// in the 2-bit layout: each byte's four fields from 16 random bits taken mod 81 (four base-3 digits; bias under
    /// 0.02 %), the fields past the last column code 0, as the packer pads.
    init(randomTernaryRows rows: Int, cols: Int, quant: LinearQuantization, rng: inout SeededRNG) {
        self.rows = rows; self.cols = cols; self.quant = quant
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
        packed = PackedTernary(bytes: bytes, rows: rows, cols: cols)
        codes = []; betas = [0.02]; dense = []
    }

    /// A random half-precision layer (values uniform in ±0.02) for the fp twin of `bitnet bench`.
    init(randomHalfRows rows: Int, cols: Int, rng: inout SeededRNG) {
        self.rows = rows; self.cols = cols; self.quant = .none
        var bits = [UInt16](repeating: 0, count: rows * cols)
        for i in 0..<bits.count { bits[i] = Float16((rng.nextUniform() - 0.5) * 0.04).bitPattern }
        half = F16Matrix(bits: bits, rows: rows, cols: cols)
        packed = nil; codes = []; betas = []; dense = []
    }

    /// Bytes this layer's weights take in memory: packed ternary (2 bits), f16 or f32.
    package var packedBytes: Int {
        if let packed { return packed.storage.count + betas.count * 4 }
        if let base3 { return base3.storage.count + betas.count * 4 }
        if half != nil { return rows * cols * 2 }
        return quant.arch == .fp ? rows * cols * 4 : (rows * cols * (quant.arch == .b1 ? 1 : 2) + 7) / 8 + betas.count * 4
    }

    /// y[rows] = W̃ · Quant(x) · βγ/Q_p for one token x[cols] (Eq. 9): integer products, one float scale per output and group.
    /// `xCodes` is scratch of `cols` Int8, `acc` of `rows` Int32.
    func apply(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, xCodes: UnsafeMutablePointer<Int8>, xDequant: UnsafeMutablePointer<Float>,
               acc: UnsafeMutablePointer<Int32>) {
        let (rows, cols) = (self.rows, self.cols)
        if let half {
            half.storage.withUnsafeBufferPointer { wp in
                DenseKernels.f16Gemv(weights: wp.baseAddress!, ld: cols, rows: rows, cols: cols, x: x, y: y)
            }
            return
        }
        if takesCodes {
            var scale: Float = 0
            ActivationQuantizer.quantize(x, rows: 1, cols: cols, bits: quant.bits, codes: xCodes, scales: &scale)
            applyPacked(codes: xCodes, scales: &scale, tokens: 1, y: y, acc: acc)
            return
        }
        if !quant.arch.isQuantized {
            dense.withUnsafeBufferPointer { wp in
                GEMM.sgemm(transA: false, transB: true, m: 1, n: rows, k: cols, a: x, lda: cols, b: wp.baseAddress!, ldb: cols,
                           beta: 0, c: y, ldc: rows)
            }
            return
        }
        if quant.unsigned {
            // Zero-point activations do not fit the signed integer product; use the dequantized operands.
            Quantizer.quantizeActivations(x, rows: 1, cols: cols, bits: quant.bits, scope: .perToken, groups: quant.groups,
                                          unsigned: true, out: xDequant)
            dense.withUnsafeBufferPointer { wp in
                GEMM.sgemm(transA: false, transB: true, m: 1, n: rows, k: cols, a: xDequant, lda: cols, b: wp.baseAddress!, ldb: cols,
                           beta: 0, c: y, ldc: rows)
            }
            return
        }
        let groups = quant.groups, gs = cols / groups
        let qp = Quantizer.signedRange(bits: quant.bits).qp
        let rowsPerGroup = rows / betas.count
        let betas = self.betas
        // One activation scale s_g = Q_p/(γ_g+ε) per group; stack storage keeps the decode loop allocation-free.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: groups) { scales in
        for g in 0..<groups {
            let p = x + g * gs
            let gamma = Quantizer.absmax(p, count: gs)
            Quantizer.absmaxQuantize(p, count: gs, gamma: gamma, bits: quant.bits, codes: xCodes + g * gs)
            scales[g] = qp / (gamma + Quantizer.epsilon)
        }
        codes.withUnsafeBufferPointer { cp in
            let wBase = cp.baseAddress!
            parallelRows(rows, minRowsPerTask: 64) { range in
                for r in range {
                    let wr = wBase + r * cols
                    let beta = betas[r / rowsPerGroup]
                    var out: Float = 0
                    for g in 0..<groups {
                        out += Float(Self.dot(wr + g * gs, xCodes + g * gs, gs)) / scales[g]
                    }
                    y[r] = out * beta
                }
            }
        }
        }
    }

    /// The same product for `n` tokens at once, x [n, cols] → y [n, rows] (prompt processing): the packed path
    /// unpacks each weight block once for several tokens (int8 GEMM), others run token by token.
    func applyBatch(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, tokens n: Int) {
        if let half, n > 1 {
            // The f16 twin: each weight row is read once for all tokens, as the ternary GEMM does.
            half.storage.withUnsafeBufferPointer {
                DenseKernels.f16Gemm(weights: $0.baseAddress!, ld: cols, rows: rows, cols: cols, x: x, ldx: cols, tokens: n, y: y, ldy: rows)
            }
            return
        }
        guard takesCodes, n > 1 else {
            let codes = UnsafeMutablePointer<Int8>.allocate(capacity: cols), deq = UnsafeMutablePointer<Float>.allocate(capacity: cols)
            let acc = UnsafeMutablePointer<Int32>.allocate(capacity: rows)
            defer { codes.deallocate(); deq.deallocate(); acc.deallocate() }
            for t in 0..<n { apply(x: x + t * cols, y: y + t * rows, xCodes: codes, xDequant: deq, acc: acc) }
            return
        }
        let codes = UnsafeMutablePointer<Int8>.allocate(capacity: n * cols), acc = UnsafeMutablePointer<Int32>.allocate(capacity: n * rows)
        let scales = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { codes.deallocate(); acc.deallocate(); scales.deallocate() }
        ActivationQuantizer.quantize(x, rows: n, cols: cols, bits: quant.bits, codes: codes, scales: scales)
        applyPacked(codes: codes, scales: scales, tokens: n, y: y, acc: acc)
    }

    /// True when the layer runs the integer kernels on per-token int8 codes (one activation group, signed absmax).
    package var takesCodes: Bool { packed != nil || base3 != nil }

    /// The packed layout of the integer kernels' weights (nil: the layer does not take int8 codes).
    var ternaryLayout: TernaryLayout? { packed != nil ? .t2 : base3 != nil ? .t3 : nil }

    /// This layer with its packed weights in `layout` (lossless; other layers unchanged).
    func converted(to layout: TernaryLayout, into arena: WeightArena? = nil) -> InferenceLinear {
        var l = self
        switch layout {
        case .t2: if let base3 { l.packed = TernaryKernels.from(base3: base3); l.base3 = nil }
        case .t3: if let packed { l.base3 = TernaryKernels.toBase3(packed, into: arena); l.packed = nil }
        }
        return l
    }

    /// Two or three one-token GEMVs of the same codes as one split over the pool (a, b, c in one layout), int32 sums
    /// to acc, acc + a.rows, acc + a.rows + b.rows. False (nothing done) when the layers do not share a packed layout.
    package static func fusedGemv(_ a: InferenceLinear, _ b: InferenceLinear, _ c: InferenceLinear?, codes: UnsafePointer<Int8>,
                          acc: UnsafeMutablePointer<Int32>) -> Bool {
        let yb = acc + a.rows, yc = c.map { _ in yb + b.rows }
        if let pa = a.packed, let pb = b.packed, c.map({ $0.packed != nil }) ?? true {
            TernaryKernels.gemv(pa, y: acc, pb, y: yb, c?.packed, y: yc, x: codes)
            return true
        }
        if let pa = a.base3, let pb = b.base3, c.map({ $0.base3 != nil }) ?? true {
            TernaryKernels.gemv(pa, y: acc, pb, y: yb, c?.base3, y: yc, x: codes)
            return true
        }
        return false
    }

    /// Tells the pool's idle workers that a one-token GEMV over a (fused with b, c when they share its layout) comes
    /// next, so they pull its first weights into cache during the serial work before it.
    static func announceGemv(_ a: InferenceLinear, _ b: InferenceLinear? = nil, _ c: InferenceLinear? = nil) {
        if let pa = a.packed {
            let pb = b?.packed, pc = c?.packed
            let fused = (b == nil || pb != nil) && (c == nil || pc != nil)
            TernaryKernels.announceGemv(pa, fused ? pb : nil, fused ? pc : nil)
        } else if let pa = a.base3 {
            let pb = b?.base3, pc = c?.base3
            let fused = (b == nil || pb != nil) && (c == nil || pc != nil)
            TernaryKernels.announceGemv(pa, fused ? pb : nil, fused ? pc : nil)
        } else if let half = a.half {
            half.storage.withUnsafeBufferPointer { DenseKernels.announceF16Gemv(weights: $0.baseAddress!, ld: a.cols, rows: a.rows, cols: a.cols) }
        }
    }

    /// y [n, rows] from activations already quantized per token (codes [n, cols], scales s_t = Q_p/(γ_t+ε)):
    /// acc = W̃·x̃ in int32 (exact), y = acc / s_t · β (Eq. 9). `acc` is scratch of n·rows Int32.
    func applyPacked(codes: UnsafePointer<Int8>, scales: UnsafePointer<Float>, tokens n: Int, y: UnsafeMutablePointer<Float>,
                     acc: UnsafeMutablePointer<Int32>) {
        if let base3 {
            if n == 1 { TernaryKernels.gemv(base3, x: codes, y: acc) }
            else { TernaryKernels.gemm(base3, x: codes, ldx: cols, tokens: n, y: acc, ldy: rows) }
        } else {
            guard let packed else { preconditionFailure("applyPacked on a layer without packed ternary weights") }
            if n == 1 { TernaryKernels.gemv(packed, x: codes, y: acc) }
            else { TernaryKernels.gemm(packed, x: codes, ldx: cols, tokens: n, y: acc, ldy: rows) }
        }
        scaleOutputs(acc: acc, scales: scales, tokens: n, y: y)
    }

    /// acc = W̃·x̃ for one token's codes (int32, exact): the GEMV of `applyPacked` without the final scale.
    package func gemvPacked(codes: UnsafePointer<Int8>, acc: UnsafeMutablePointer<Int32>) {
        if let base3 { TernaryKernels.gemv(base3, x: codes, y: acc) }
        else if let packed { TernaryKernels.gemv(packed, x: codes, y: acc) }
        else { preconditionFailure("gemvPacked on a layer without packed ternary weights") }
    }

    /// y = acc / s_t · β for n tokens of int32 sums [n, rows] (Eq. 9's final scale).
    func scaleOutputs(acc: UnsafePointer<Int32>, scales: UnsafePointer<Float>, tokens n: Int, y: UnsafeMutablePointer<Float>) {
        let beta = betas[0]
        for t in 0..<n {
            let k = beta / scales[t], yt = y + t * rows, at = acc + t * rows
            if let rowOrder {
                rowOrder.withUnsafeBufferPointer { o in for r in 0..<rows { yt[r] = Float(at[Int(o[r])]) * k } }
            } else {
                for r in 0..<rows { yt[r] = Float(at[r]) * k }
            }
        }
    }

    /// Σ a[i]·b[i] in exact integer arithmetic.
    @inline(__always)
    static func dot(_ a: UnsafePointer<Int8>, _ b: UnsafePointer<Int8>, _ n: Int) -> Int32 {
        var acc: Int32 = 0
        for i in 0..<n { acc &+= Int32(a[i]) &* Int32(b[i]) }
        return acc
    }
}

/// A model ready for decoding: quantized linears, full-precision embedding, head and norms.
/// It owns its tensors, so it can be built from trained weights or synthetically (benchmarks of any shape).
package final class InferenceModel: @unchecked Sendable {
    package let config: ModelConfig
    package struct Layer {
        package let wq, wk, wv, wo, w1, w3, w2: InferenceLinear
        /// Offsets into `norms` (-1: absent).
        package let attnNorm, attnSubNorm, ffnNorm, ffnSubNorm: Int
        /// The seven linears, for sums over them (sizes, not the forward pass).
        package var linears: [InferenceLinear] { [wq, wk, wv, wo, w1, w3, w2] }

        /// This layer with `transform` applied to each linear (norm offsets unchanged).
        func with(_ transform: (InferenceLinear) -> InferenceLinear) -> Layer {
            Layer(wq: transform(wq), wk: transform(wk), wv: transform(wv), wo: transform(wo), w1: transform(w1), w3: transform(w3),
                  w2: transform(w2), attnNorm: attnNorm, attnSubNorm: attnSubNorm, ffnNorm: ffnNorm, ffnSubNorm: ffnSubNorm)
        }
    }
    package private(set) var layers: [Layer]

    /// Σ over every linear of every layer.
    private func sumOverLinears(_ value: (InferenceLinear) -> Int) -> Int {
        layers.reduce(0) { $0 + $1.linears.reduce(0) { $0 + value($1) } }
    }
    let rope: Rope
    /// Token embedding [vocab, dim] and output head [vocab, dim]: one shared matrix when tied (stored once).
    private(set) var embedding: DenseMatrix
    private(set) var head: DenseMatrix
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
    init(config c: ModelConfig, layers: [Layer], embedding: DenseMatrix, head: DenseMatrix, norms normValues: [Float], finalNorm: Int) {
        config = c
        rope = Rope(headDim: c.headDim, maxSeqLen: c.maxSeqLen, theta: c.ropeTheta)
        self.layers = layers; self.embedding = embedding; self.head = head; self.finalNorm = finalNorm
        norms = FloatBuffer(normValues.count)
        normValues.withUnsafeBufferPointer { norms.ptr.update(from: $0.baseAddress!, count: $0.count) }
        placeWeights()
    }

    /// A model of `config`'s shape with random weights (the `bitnet bench` synthetic model; no latent weights exist):
    /// ternary linears for BitNet, f16 linears for `fp` (the paper's FP16 baseline); the head in `headFormat`.
    package init(synthetic c: ModelConfig, seed: UInt64 = 1, headFormat: HeadFormat = .f32) throws {
        guard c.quantGroups == 1, !c.unsignedAfterNonlinearity else {
            throw BitNetError.unsupported("synthetic models use one quantization group and signed activations")
        }
        try c.validate()
        config = c
        rope = Rope(headDim: c.headDim, maxSeqLen: c.maxSeqLen, theta: c.ropeTheta)
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
            built.append(Layer(wq: linear(qD, c.dim), wk: linear(c.kvDim, c.dim), wv: linear(c.kvDim, c.dim),
                               wo: linear(c.dim, qD), w1: linear(c.ffnDim, c.dim), w3: linear(c.ffnDim, c.dim),
                               w2: linear(c.dim, c.ffnDim),
                               attnNorm: base, attnSubNorm: c.subNorm ? base + c.dim : -1,
                               ffnNorm: base + c.dim + (c.subNorm ? qD : 0),
                               ffnSubNorm: c.subNorm ? base + 2 * c.dim + qD : -1))
        }
        layers = built
        finalNorm = c.nLayers * perLayerNorms
        norms = FloatBuffer(finalNorm + c.dim)
        norms.ptr.update(repeating: 1, count: norms.count)
        let values = (0..<(c.vocabSize * c.dim)).map { _ in (rng.nextUniform() - 0.5) * 0.04 }
        embedding = DenseMatrix(values, rows: c.vocabSize, cols: c.dim, format: headFormat)
        head = embedding
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
        for i in layers.indices {
            let linears = layers[i].linears
            // 2-bit linears read in place from a mapped I2_S file, once copied to t3: their file pages leave the resident set.
            defer { if layout == .t3 { for l in linears { l.packed?.storage.releaseFilePages() } } }
            // To base 3, a layer of 2-bit linears converts straight into its new arena (no array, no copy).
            if layout == .t3, linears.allSatisfy({ $0.packed != nil && $0.base3 == nil && $0.half == nil }),
               let arena = WeightArena(capacity: WeightArena.bytesNeeded(linears.map { $0.rows * TernaryKernels.rowStrideBase3(cols: $0.cols) }),
                                       hugePages: hugePages) {
                layers[i] = layers[i].with { $0.converted(to: .t3, into: arena) }
                continue
            }
            layers[i] = layers[i].with { $0.converted(to: layout) }
            placeWeights(layer: i)
        }
    }

    // MARK: weight placement

    /// Whether `placeWeights` advises its arenas for 2 MiB pages: on unless BITNET_HUGE_PAGES=0.
    package static let hugePagesByDefault = ProcessInfo.processInfo.environment["BITNET_HUGE_PAGES"] != "0"

    /// Copies the weights that decoding streams (ternary and f16 linears, and the head and embedding in f16 or a
    /// block format) out of their arrays into `WeightArena`s: one per layer, in decode order, and one for the
    /// head/embedding, on 2 MiB pages with `hugePages`. Weights read from a file mapping stay there; f32 weights stay
    /// in arrays. With `moveArenas`, weights already in arenas are copied again (to switch page sizes). Every
    /// initializer, `setHeadFormat` and `setTernaryLayout` call this, so only a change of page size needs it. Not
    /// thread-safe: no session may decode meanwhile.
    package func placeWeights(hugePages: Bool = InferenceModel.hugePagesByDefault, moveArenas: Bool = false) {
        self.hugePages = hugePages
        for i in layers.indices { placeWeights(layer: i, moveArenas: moveArenas) }
        let tied = head === embedding
        let movable = [head, tied ? nil : embedding].compactMap { $0 }.filter { $0.isMovable(moveArenas) }
        guard !movable.isEmpty,
              let arena = WeightArena(capacity: WeightArena.bytesNeeded(movable.map(\.bytes)), hugePages: hugePages) else { return }
        if head.isMovable(moveArenas) { head = head.placed(in: arena) }
        if tied { embedding = head }
        else if embedding.isMovable(moveArenas) { embedding = embedding.placed(in: arena) }
    }

    /// Whether the arenas of `placeWeights` (and of the conversions after it) use huge pages.
    package private(set) var hugePages = InferenceModel.hugePagesByDefault

    /// `placeWeights` for the linears of layer i, into an arena of their own.
    private func placeWeights(layer i: Int, moveArenas: Bool = false) {
        let sizes = layers[i].linears.flatMap { $0.placeableSizes(moveArenas: moveArenas) }
        guard !sizes.isEmpty, let arena = WeightArena(capacity: WeightArena.bytesNeeded(sizes), hugePages: hugePages) else { return }
        layers[i] = layers[i].with { $0.placed(in: arena, moveArenas: moveArenas) }
    }

    /// Where the weights are: the arrays and arenas of every layer, the head and the embedding (see `restore`).
    package struct Placement {
        fileprivate let layers: [Layer], embedding: DenseMatrix, head: DenseMatrix
    }

    /// The current placement, to come back to with `restore` (A/B benchmarks of placements keep both in memory).
    package var placement: Placement { Placement(layers: layers, embedding: embedding, head: head) }

    /// Switches to a placement taken from this model (O(1): no copy).
    package func restore(_ p: Placement) {
        layers = p.layers; embedding = p.embedding; head = p.head
    }

    /// Bytes of weights in arenas, and how many of them the system backs with huge pages (from /proc/self/smaps).
    package var arenaStats: (bytes: Int, hugePageBytes: Int) {
        var seen = Set<ObjectIdentifier>(), bytes = 0, huge = 0
        for a in layers.flatMap({ $0.linears.flatMap(\.arenas) }) + [head.arena, embedding.arena].compactMap({ $0 })
        where seen.insert(ObjectIdentifier(a)).inserted {
            bytes += a.used; huge += a.hugePageBytes
        }
        return (bytes, huge)
    }

    /// The layout `auto` picks for this model on this CPU: t3 when its fast kernels run here and it stores the
    /// linears in fewer bytes (20 % fewer at 2560 columns; more for narrow rows: 64 bytes per 320 columns against 32
    /// per 128); t2 otherwise. Linears mapped from an I2_S file (the t2 layout) are then copied to t3 in memory and
    /// their file pages released: fewer resident bytes, and a faster decode than reading them in place.
    package var preferredTernaryLayout: TernaryLayout {
        let t2Bytes = sumOverLinears { $0.takesCodes ? $0.rows * TernaryKernels.rowStride2bit(cols: $0.cols) : 0 }
        let t3Bytes = sumOverLinears { $0.takesCodes ? $0.rows * TernaryKernels.rowStrideBase3(cols: $0.cols) : 0 }
        return TernaryKernels.base3IsFast && t3Bytes < t2Bytes ? .t3 : .t2
    }

    /// Converts the ternary linears once into each of `layouts` and keeps every copy, so that `setTernaryLayout`
    /// then switches between them in O(1) (an A/B benchmark alternating layouts step by step). Costs the memory of
    /// each kept copy; the current layout stays set.
    package func keepTernaryLayouts(_ layouts: [TernaryLayout]) {
        let current = ternaryLayout
        keptLayouts = [current: layers]
        for layout in layouts where keptLayouts[layout] == nil {
            setTernaryLayout(layout)
            keptLayouts[layout] = layers
        }
        layers = keptLayouts[current]!
    }

    /// The layouts kept by `keepTernaryLayouts` (empty: none).
    private var keptLayouts: [TernaryLayout: [Layer]] = [:]

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
