import Foundation
import BitNetKernels
import BitNetCore

/// The weights of one inference linear [rows, cols], in exactly one form; which form decides the product it runs.
package enum LinearWeights: @unchecked Sendable {
    /// Ternary (or binary) codes in the 2-bit layout t2, one activation scale per token: the integer kernels.
    case t2(PackedTernary)
    /// The same codes in the 1.6-bit base-3 layout t3 (same integer sums, 20 % fewer bytes).
    case t3(PackedTernaryBase3)
    /// Half-precision weights: the paper's FP16 baseline (the fp twin of `bitnet bench`).
    case f16(F16Matrix)
    /// Full-precision weights of an `fp` model, row-major.
    case f32([Float])
    /// Codes in {-1, 0, +1} (b1: {-1, +1}), row-major, for several activation groups (Eq. 14-15): integer dot
    /// products per group, one scale per group.
    case groupedCodes([Int8])
    /// Dequantized weights for zero-point (unsigned, Sec. 3.1.1) activations, which the signed integer product
    /// cannot take: multiplied in float.
    case unsignedDequant([Float])
}

/// A linear layer prepared for inference: its weights (`LinearWeights`) and one β per group of rows (Eq. 9).
package struct InferenceLinear: @unchecked Sendable {
    package let rows: Int, cols: Int
    package private(set) var weights: LinearWeights
    /// Output r comes from packed row rowOrder[r] (a mapped GGUF q/k projection keeps the file's rotate_half row
    /// order); nil: row r.
    var rowOrder: [Int32]? = nil
    /// β per group of rows/G rows.
    let betas: [Float]
    let quant: LinearQuantization

    /// A layer of these weights as they are (no quantization).
    package init(weights: LinearWeights, rows: Int, cols: Int, betas: [Float], quant: LinearQuantization, rowOrder: [Int32]? = nil) {
        self.weights = weights; self.rows = rows; self.cols = cols; self.betas = betas; self.quant = quant
        self.rowOrder = rowOrder
    }

    /// Quantizes a latent weight w [rows, cols] once (offline, as Appendix D's inference notes say).
    init(weight w: UnsafePointer<Float>, rows: Int, cols: Int, quant: LinearQuantization) {
        self.rows = rows; self.cols = cols; self.quant = quant
        guard quant.arch.isQuantized else {
            betas = []
            weights = .f32(Array(UnsafeBufferPointer(start: w, count: rows * cols)))
            return
        }
        var c = [Int8](repeating: 0, count: rows * cols)
        var deq = [Float](repeating: 0, count: quant.unsigned ? rows * cols : 0)
        betas = c.withUnsafeMutableBufferPointer { cp in
            deq.withUnsafeMutableBufferPointer { dp in
                Quantizer.quantizeWeight(w, rows: rows, cols: cols, arch: quant.arch, groups: quant.groups,
                                         codes: cp.baseAddress, dequant: quant.unsigned ? dp.baseAddress : nil)
            }
        }
        if quant.unsigned { weights = .unsignedDequant(deq) }
        // One activation group and signed absmax: the packed integer kernel computes Σ W̃·x̃ exactly.
        else if quant.groups == 1 { weights = .t2(TernaryKernels.pack2bit(codes: c, rows: rows, cols: cols)) }
        else { weights = .groupedCodes(c) }
    }

    /// A ternary layer over codes already packed in the kernel layout (e.g. borrowed from a mapped I2_S tensor) with
    /// one β; `rowOrder[r]` is the packed row holding output r (nil: the identity).
    init(packed p: PackedTernary, beta: Float, quant: LinearQuantization, rowOrder: [Int32]? = nil) {
        precondition(quant.arch.isQuantized && quant.groups == 1 && !quant.unsigned, "packed layers take one group and signed activations")
        precondition(rowOrder.map { $0.count == p.rows && $0.allSatisfy { $0 >= 0 && Int($0) < p.rows } } ?? true, "rowOrder must index the rows")
        self.init(weights: .t2(p), rows: p.rows, cols: p.cols, betas: [beta], quant: quant, rowOrder: rowOrder)
    }

    /// The codes in the t2 layout (nil in any other form).
    package var packed: PackedTernary? { if case .t2(let p) = weights { p } else { nil } }
    /// The codes in the t3 layout (nil in any other form).
    package var base3: PackedTernaryBase3? { if case .t3(let b) = weights { b } else { nil } }
    /// The half-precision weights (nil in any other form).
    var half: F16Matrix? { if case .f16(let h) = weights { h } else { nil } }

    /// True when the layer runs the integer kernels on per-token int8 codes (one activation group, signed absmax).
    package var takesCodes: Bool { ternaryLayout != nil }

    /// The packed layout of the integer kernels' weights (nil: the layer does not take int8 codes).
    var ternaryLayout: TernaryLayout? {
        switch weights {
        case .t2: .t2
        case .t3: .t3
        default: nil
        }
    }

    /// The kernel weights' buffer (packed ternary, base-3 or half), which `placed(in:moveArenas:)` may move.
    private var kernelStorage: (bytes: Int, isMovable: (Bool) -> Bool, arena: WeightArena?, isFileBacked: Bool)? {
        func describe<E>(_ b: KernelBuffer<E>) -> (Int, (Bool) -> Bool, WeightArena?, Bool) {
            (b.count * MemoryLayout<E>.stride, { b.isMovable($0) }, b.arena, b.isFileBacked)
        }
        switch weights {
        case .t2(let p): return describe(p.storage)
        case .t3(let b): return describe(b.storage)
        case .f16(let h): return describe(h.storage)
        case .f32, .groupedCodes, .unsignedDequant: return nil
        }
    }

    /// Bytes of this layer's weights read in place from a file mapping (0 when owned).
    var fileBackedBytes: Int { kernelStorage.map { $0.isFileBacked ? $0.bytes : 0 } ?? 0 }

    /// Sizes of the kernel weights that `placed(in:moveArenas:)` copies: those in arrays, and with `moveArenas` those
    /// already in an arena too (never those in a file mapping).
    func placeableSizes(moveArenas: Bool) -> [Int] {
        guard let k = kernelStorage, k.isMovable(moveArenas), k.bytes > 0 else { return [] }
        return [k.bytes]
    }

    /// This layer with its movable kernel weights (see `placeableSizes`) copied into `arena`.
    func placed(in arena: WeightArena, moveArenas: Bool) -> InferenceLinear {
        guard let k = kernelStorage, k.isMovable(moveArenas) else { return self }
        var l = self
        switch weights {
        case .t2(let p): l.weights = .t2(PackedTernary(storage: arena.place(p.storage), rows: p.rows, cols: p.cols))
        case .t3(let b): l.weights = .t3(PackedTernaryBase3(storage: arena.place(b.storage), rows: b.rows, cols: b.cols))
        case .f16(let h): l.weights = .f16(F16Matrix(storage: arena.place(h.storage), rows: h.rows, cols: h.cols))
        case .f32, .groupedCodes, .unsignedDequant: break
        }
        return l
    }

    /// The arenas holding this layer's kernel weights.
    var arenas: [WeightArena] { kernelStorage?.arena.map { [$0] } ?? [] }

    /// Bytes this layer's weights take in memory: packed ternary (2 or 1.6 bits), f16 or f32; codes of the grouped
    /// and unsigned paths counted at 2 bits (1 for b1).
    package var packedBytes: Int {
        switch weights {
        case .t2(let p): return p.storage.count + betas.count * 4
        case .t3(let b): return b.storage.count + betas.count * 4
        case .f16: return rows * cols * 2
        case .f32: return rows * cols * 4
        case .groupedCodes, .unsignedDequant: return (rows * cols * (quant.arch == .b1 ? 1 : 2) + 7) / 8 + betas.count * 4
        }
    }

    /// y[rows] = W̃ · Quant(x) · βγ/Q_p for one token x[cols] (Eq. 9): integer products, one float scale per output and group.
    /// `xCodes` is scratch of `cols` Int8, `acc` of `rows` Int32.
    func apply(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, xCodes: UnsafeMutablePointer<Int8>, xDequant: UnsafeMutablePointer<Float>,
               acc: UnsafeMutablePointer<Int32>) {
        let (rows, cols) = (self.rows, self.cols)
        switch weights {
        case .f16(let half):
            half.storage.withUnsafeBufferPointer { wp in
                DenseKernels.f16Gemv(weights: wp.baseAddress!, ld: cols, rows: rows, cols: cols, x: x, y: y)
            }
        case .t2, .t3:
            var scale: Float = 0
            ActivationQuantizer.quantize(x, rows: 1, cols: cols, bits: quant.bits, codes: xCodes, scales: &scale)
            applyPacked(codes: xCodes, scales: &scale, tokens: 1, y: y, acc: acc)
        case .f32(let dense):
            dense.withUnsafeBufferPointer { wp in
                GEMM.sgemm(transA: false, transB: true, m: 1, n: rows, k: cols, a: x, lda: cols, b: wp.baseAddress!, ldb: cols,
                           beta: 0, c: y, ldc: rows)
            }
        case .unsignedDequant(let dense):
            Quantizer.quantizeActivations(x, rows: 1, cols: cols, bits: quant.bits, scope: .perToken, groups: quant.groups,
                                          unsigned: true, out: xDequant)
            dense.withUnsafeBufferPointer { wp in
                GEMM.sgemm(transA: false, transB: true, m: 1, n: rows, k: cols, a: xDequant, lda: cols, b: wp.baseAddress!, ldb: cols,
                           beta: 0, c: y, ldc: rows)
            }
        case .groupedCodes(let codes):
            applyGrouped(codes, x: x, y: y, xCodes: xCodes)
        }
    }

    /// The grouped product: one activation scale s_g = Q_p/(γ_g+ε) per group (Eq. 14-15), integer dots per group.
    private func applyGrouped(_ codes: [Int8], x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, xCodes: UnsafeMutablePointer<Int8>) {
        let (rows, cols) = (self.rows, self.cols)
        let groups = quant.groups, gs = cols / groups
        let qp = Quantizer.signedRange(bits: quant.bits).qp
        let rowsPerGroup = rows / betas.count
        let betas = self.betas
        // Stack storage keeps the decode loop allocation-free.
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
        if case .f16(let half) = weights, n > 1 {
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

    /// This layer with its packed weights in `layout` (lossless; other layers unchanged).
    func converted(to layout: TernaryLayout, into arena: WeightArena? = nil) -> InferenceLinear {
        var l = self
        switch (layout, weights) {
        case (.t2, .t3(let b)): l.weights = .t2(TernaryKernels.from(base3: b))
        case (.t3, .t2(let p)): l.weights = .t3(TernaryKernels.toBase3(p, into: arena))
        default: break
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
        switch a.weights {
        case .t2(let pa):
            let pb = b?.packed, pc = c?.packed
            let fused = (b == nil || pb != nil) && (c == nil || pc != nil)
            TernaryKernels.announceGemv(pa, fused ? pb : nil, fused ? pc : nil)
        case .t3(let pa):
            let pb = b?.base3, pc = c?.base3
            let fused = (b == nil || pb != nil) && (c == nil || pc != nil)
            TernaryKernels.announceGemv(pa, fused ? pb : nil, fused ? pc : nil)
        case .f16(let half):
            half.storage.withUnsafeBufferPointer { DenseKernels.announceF16Gemv(weights: $0.baseAddress!, ld: a.cols, rows: a.rows, cols: a.cols) }
        case .f32, .groupedCodes, .unsignedDequant:
            break
        }
    }

    /// y [n, rows] from activations already quantized per token (codes [n, cols], scales s_t = Q_p/(γ_t+ε)):
    /// acc = W̃·x̃ in int32 (exact), y = acc / s_t · β (Eq. 9). `acc` is scratch of n·rows Int32.
    func applyPacked(codes: UnsafePointer<Int8>, scales: UnsafePointer<Float>, tokens n: Int, y: UnsafeMutablePointer<Float>,
                     acc: UnsafeMutablePointer<Int32>) {
        switch weights {
        case .t3(let base3):
            if n == 1 { TernaryKernels.gemv(base3, x: codes, y: acc) }
            else { TernaryKernels.gemm(base3, x: codes, ldx: cols, tokens: n, y: acc, ldy: rows) }
        case .t2(let packed):
            if n == 1 { TernaryKernels.gemv(packed, x: codes, y: acc) }
            else { TernaryKernels.gemm(packed, x: codes, ldx: cols, tokens: n, y: acc, ldy: rows) }
        default:
            preconditionFailure("applyPacked on a layer without packed ternary weights")
        }
        scaleOutputs(acc: acc, scales: scales, tokens: n, y: y)
    }

    /// acc = W̃·x̃ for one token's codes (int32, exact): the GEMV of `applyPacked` without the final scale.
    package func gemvPacked(codes: UnsafePointer<Int8>, acc: UnsafeMutablePointer<Int32>) {
        switch weights {
        case .t3(let base3): TernaryKernels.gemv(base3, x: codes, y: acc)
        case .t2(let packed): TernaryKernels.gemv(packed, x: codes, y: acc)
        default: preconditionFailure("gemvPacked on a layer without packed ternary weights")
        }
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
