import Foundation
import BitNetKernels
import BitNetCore
import BitNetTokenizers
import BitNetFormats

extension InferenceModel {
    /// Builds the inference model straight from a GGUF file, serving weights from the file mapping where the layout
    /// allows: I2_S linears with cols % 128 == 0 (bitnet.cpp's x86 I2_S packs 128-weight blocks exactly as the 2-bit
    /// kernel does, so row r starts at r·cols/4) and an F16 embedding/head when `headFormat` is nil or f16. Every other
    /// tensor is decoded and packed as `InferenceModel(weights:)` does from `GGUFModel.load`, and the logits equal that
    /// path's (β up to float rounding). `headFormat` nil keeps an F16 embedding in f16 and stores others in f32.
    ///
    /// `preferBase3`: each layer whose ternary linears take fewer bytes in t3, where its kernels are fast, is converted
    /// as soon as it is loaded (file pages of mapped I2_S linears released), as `ternaryLayout auto` would do after the
    /// load, so no model is ever held in both layouts.
    package convenience init(gguf f: GGUFFile, headFormat: HeadFormat? = nil, preferBase3: Bool = false, showProgress: Bool = false) throws {
        let (c, layout) = try GGUFModel.checkedLayout(f)
        let slots = Dictionary(uniqueKeysWithValues: layout.slots.map { ($0.offset, $0) })
        let q = LinearQuantization(arch: c.arch, groups: c.quantGroups, bits: c.actBits, scope: .perToken)
        var qDown = q
        qDown.unsigned = c.unsignedAfterNonlinearity && c.arch.isQuantized
        var progress = showProgress ? ProgressLine(total: layout.slots.count, unit: "tensors") : nil
        var done = 0
        func tick() {
            done += 1
            progress?.update(done: done, extra: "mapping \(URL(fileURLWithPath: f.path).lastPathComponent)")
        }
        func linear(_ offset: Int, _ quant: LinearQuantization) throws -> InferenceLinear {
            defer { tick() }
            let s = slots[offset]!
            if let mapped = try GGUFModel.mappedLinear(f, slot: s, config: c, quant: quant) { return mapped }
            if let packed = try GGUFModel.packedTernaryLinear(f, slot: s, config: c, quant: quant) {
                releaseFilePages(s)
                return packed
            }
            let w = try GGUFModel.decoded(f, slot: s, config: c, layout: layout)
            releaseFilePages(s)
            return w.withUnsafeBufferPointer { InferenceLinear(weight: $0.baseAddress!, rows: s.shape[0], cols: s.shape[1], quant: quant) }
        }
        // A tensor converted into memory leaves its file pages behind: they would stay resident (an f16 master's linears
        // are 4 GB at 2B shapes) until the kernel needs the memory.
        func releaseFilePages(_ s: TensorSlot) {
            if let t = f.tensor(GGUFModel.ggufName(s.name)) { _ = f.mappedElements(t, as: UInt8.self, count: t.byteCount)?.releaseFilePages() }
        }
        var normValues: [Float] = []
        func norm(_ offset: Int) throws -> Int {
            guard offset >= 0 else { return -1 }
            defer { tick() }
            let at = normValues.count
            normValues += try GGUFModel.decoded(f, slot: slots[offset]!, config: c, layout: layout)
            return at
        }
        func dense(_ offset: Int) throws -> DenseMatrix {
            defer { tick() }
            let s = slots[offset]!
            let t = f.tensor(GGUFModel.ggufName(s.name))!
            let format = headFormat ?? (t.type == .f16 ? .f16 : .f32)
            if format == .f16, let m = try GGUFModel.mappedF16(f, t, rows: s.shape[0], cols: s.shape[1]) { return DenseMatrix(f16: m) }
            guard format != .f32, s.shape.count == 2, t.shape == s.shape, GGUFModel.rotateHalfHeads(f, s, c) == nil else {
                return DenseMatrix(try GGUFModel.decoded(f, slot: s, config: c, layout: layout), rows: s.shape[0], cols: s.shape[1], format: format)
            }
            // Decoded and converted row block by row block straight into its arena: the f32 matrix is never whole in
            // memory (1.3 GB for a 128k-token embedding of width 2560), nor are two copies of the converted one.
            var failure: (any Error)?
            let m = DenseMatrix(rows: s.shape[0], cols: s.shape[1], format: format, arenaHugePages: InferenceModel.hugePagesByDefault) { r0, r1, out in
                guard failure == nil else { return }
                do { try GGUFModel.decodeRows(f, t, rows: r0..<r1, into: out) } catch { failure = error }
                // The file pages of rows already converted leave the resident set now, not after the whole tensor.
                if let rowBytes = t.type.byteCount(elements: s.shape[1]) {
                    _ = f.mappedElements(t, as: UInt8.self, byteOffset: r0 * rowBytes, count: (r1 - r0) * rowBytes)?.releaseFilePages()
                }
            }
            if let failure { throw failure }
            releaseFilePages(s)
            return m
        }
        let embedding = try dense(layout.embedding)
        var layers: [Layer] = []
        for s in layout.layers {
            let layer = Layer(wq: try linear(s.wq, q), wk: try linear(s.wk, q), wv: try linear(s.wv, q), wo: try linear(s.wo, q),
                              w1: try linear(s.w1, q), w3: try linear(s.w3, q), w2: try linear(s.w2, qDown),
                              attnNorm: try norm(s.attnNorm), attnSubNorm: try norm(s.attnSubNorm),
                              ffnNorm: try norm(s.ffnNorm), ffnSubNorm: try norm(s.ffnSubNorm))
            layers.append(preferBase3 ? layer.inPreferredLayout(hugePages: InferenceModel.hugePagesByDefault) : layer)
        }
        let finalNorm = try norm(layout.finalNorm)
        let head = c.tieEmbeddings ? embedding : try dense(layout.output)
        self.init(config: c, layers: layers, embedding: embedding, head: head, norms: normValues, finalNorm: finalNorm)
    }
}

extension GGUFFile {
    /// `count` elements of E at `byteOffset` into tensor `t`, borrowed from the file mapping without a copy (they stay
    /// valid while the buffer lives); nil when the file was parsed from memory or the address is misaligned for E.
    /// The range must lie inside the tensor's bytes, whose bounds were checked against the file when it was read.
    func mappedElements<E: BitwiseCopyable>(_ t: GGUFTensorInfo, as _: E.Type, byteOffset: Int = 0, count: Int) -> KernelBuffer<E>? {
        precondition(tensor(t.name) == t && byteOffset >= 0 && count >= 0 && byteOffset + count * MemoryLayout<E>.stride <= t.byteCount,
                     "mappedElements: \(count) \(E.self) at \(byteOffset) outside tensor \(t.name) (\(t.byteCount) bytes)")
        guard let mapping, let base = mapping.base else { return nil }
        let p = base + dataStart + t.offset + byteOffset
        guard Int(bitPattern: p) % MemoryLayout<E>.alignment == 0 else { return nil }
        return KernelBuffer(borrowing: p.bindMemory(to: E.self, capacity: count), count: count, owner: mapping)
    }

}

extension GGUFModel {
    /// Parameter `s` decoded to latent f32 weights (see `decode`).
    static func decoded(_ f: GGUFFile, slot s: TensorSlot, config c: ModelConfig, layout: ParameterLayout) throws -> [Float] {
        try [Float](unsafeUninitializedCapacity: s.count) { buf, n in
            try decode(f, slot: s, config: c, layout: layout, into: buf.baseAddress!)
            n = s.count
        }
    }

    /// A ternary tensor (TQ1_0, TQ2_0, or I2_S that cannot be served mapped) packed straight from its codes and scale,
    /// without the latent f32 round trip `decode` takes (which recovers the same codes and scale: `TernaryWeights`):
    /// b1.58, one quantization group, signed activations; nil otherwise. q/k rows of rotate_half files are permuted.
    static func packedTernaryLinear(_ f: GGUFFile, slot s: TensorSlot, config c: ModelConfig, quant: LinearQuantization) throws -> InferenceLinear? {
        let name = ggufName(s.name)
        guard let t = f.tensor(name), t.type.isTernary, c.arch == .b158, quant.groups == 1, !quant.unsigned, s.shape.count == 2,
              let found = try ternaryTensor(f, t) else { return nil }
        var codes = found.codes
        if let h = rotateHalfHeads(f, s, c) { codes = TernaryWeights.permuteRotary(codes, heads: h, rows: s.shape[0], cols: s.shape[1]) }
        let beta = found.scale * (try extraScale(f, name))
        guard beta.isFinite, beta >= 0 else { throw f.bad(name, "scale \(beta) is not a finite non-negative number") }
        return InferenceLinear(packed: TernaryKernels.pack2bit(codes: codes, rows: s.shape[0], cols: s.shape[1]), beta: beta, quant: quant)
    }

    /// Rows `rows` of a float or block-quantized matrix tensor [rows, cols] dequantized to f32 at `out` (a row is whole
    /// blocks, as the reader checked); a non-finite value is an error naming its index in the tensor.
    static func decodeRows(_ f: GGUFFile, _ t: GGUFTensorInfo, rows: Range<Int>, into out: UnsafeMutablePointer<Float>) throws {
        let cols = t.dims[0], count = rows.count * cols
        guard !t.type.isTernary, let rowBytes = t.type.byteCount(elements: cols) else { throw f.bad(t.name, "not a float or block matrix") }
        f.withBytes(t) { GGMLQuants.dequantize(t.type, $0 + rows.lowerBound * rowBytes, count: count, into: out) }
        if let i = UnsafeBufferPointer(start: out, count: count).firstIndex(where: { !$0.isFinite }) {
            throw f.bad(t.name, "non-finite value at index \(rows.lowerBound * cols + i)")
        }
    }

    /// A BitLinear served from the file mapping, or nil when it cannot be (the caller decodes it): the tensor must be
    /// I2_S with whole 128-blocks per row, the layer b1.58 with one quantization group and signed activations, and the
    /// file mapped. A 2-bit field of 3 is an error, as in `decode`. β is the f32 scale that follows the codes times the
    /// optional `.scale` tensor, as `decode` applies them; q/k projections of rotate_half files keep the file's row
    /// order and permute their outputs instead.
    static func mappedLinear(_ f: GGUFFile, slot s: TensorSlot, config c: ModelConfig, quant: LinearQuantization) throws -> InferenceLinear? {
        let name = ggufName(s.name)
        let t = f.tensor(name)!
        let (rows, cols) = (s.shape[0], s.shape[1])
        guard t.type == .i2_s, c.arch == .b158, quant.groups == 1, !quant.unsigned, cols % 128 == 0 else { return nil }
        // I2_S: rows·cols/4 bytes of codes, then the f32 scale (the reader checked byteCount = that + 32 fits the file).
        let codeBytes = rows * cols / 4
        guard t.byteCount >= codeBytes + 4, let bytes = f.mappedElements(t, as: UInt8.self, count: codeBytes) else { return nil }
        if bytes.withUnsafeBufferPointer(hasTwoBitField3) {
            _ = try ternaryTensor(f, t)  // throws, naming the first bad element
            throw f.bad(name, "2-bit code 3 is not a ternary value")
        }
        let scale = f.withBytes(t) { Float(bitPattern: UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: codeBytes, as: UInt32.self))) }
        guard scale.isFinite, scale >= 0 else { throw f.bad(name, "scale \(scale) is not a finite non-negative number") }
        let beta = scale * (try extraScale(f, name))
        guard beta.isFinite else { throw f.bad(name, "scale \(scale) times its .scale tensor is not finite") }
        let order = rotateHalfHeads(f, s, c).map { rotaryRowOrder(heads: $0, rows: rows) }
        return InferenceLinear(packed: PackedTernary(storage: bytes, rows: rows, cols: cols), beta: beta, quant: quant, rowOrder: order)
    }

    /// An F16 tensor [rows, cols] borrowed from the file mapping (nil when the file is not mapped); a non-finite
    /// value is an error, as in `decode`.
    static func mappedF16(_ f: GGUFFile, _ t: GGUFTensorInfo, rows: Int, cols: Int) throws -> F16Matrix? {
        guard t.type == .f16, t.count == rows * cols, let bits = f.mappedElements(t, as: UInt16.self, count: t.count) else { return nil }
        // Exponent bits all ones: infinity or NaN (GGUF is little-endian, as are the CPUs this runs on).
        if let i = bits.withUnsafeBufferPointer({ $0.firstIndex { UInt16(littleEndian: $0) & 0x7C00 == 0x7C00 } }) {
            throw f.bad(t.name, "non-finite value at index \(i)")
        }
        return F16Matrix(storage: bits, rows: rows, cols: cols)
    }

    /// Packed row of each output row of a q/k projection stored in rotate_half order: our row h·hd + 2i + j is the
    /// file's row h·hd + j·hd/2 + i (the permutation `TernaryWeights.permuteRotary` applies to decoded weights).
    static func rotaryRowOrder(heads: Int, rows: Int) -> [Int32] {
        let hd = rows / heads, half = hd / 2
        var order = [Int32](repeating: 0, count: rows)
        for h in 0..<heads {
            for i in 0..<half {
                for j in 0..<2 { order[h * hd + 2 * i + j] = Int32(h * hd + j * half + i) }
            }
        }
        return order
    }

    /// True when some 2-bit field of the bytes is 3 (not a ternary code), eight bytes at a time.
    static func hasTwoBitField3(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = b.baseAddress else { return false }
        let raw = UnsafeRawPointer(base), words = b.count / 8
        var hit: UInt64 = 0
        for i in 0..<words {
            let v = raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
            hit |= v & (v >> 1) & 0x5555_5555_5555_5555
        }
        for i in (words * 8)..<b.count { hit |= UInt64(b[i] & (b[i] >> 1) & 0x55) }
        return hit != 0
    }
}
