import Foundation
import BitNetKernels
import CBitNetKernels

/// Storage of the KV cache: f32, f16, or integers with one symmetric absmax scale per position and KV head
/// (Sec. 4.2, Table 6: "we quantize each head using symmetric absmax").
public enum KVCacheFormat: String, Sendable, CaseIterable {
    case f32, f16, q8, q4

    /// Bits per cached value (scales excluded).
    public var bits: Int {
        switch self { case .f32: 32; case .f16: 16; case .q8: 8; case .q4: 4 }
    }
}

/// Keys and values of every layer and position, [layers, positions, kvDim], in one `KVCacheFormat`.
/// Writes quantize a whole row (one position, all KV heads); reads dequantize one head of one position.
public final class KVCache: @unchecked Sendable {
    public let format: KVCacheFormat
    public let layers: Int, maxSeqLen: Int, kvHeads: Int, headDim: Int
    var kvDim: Int { kvHeads * headDim }
    /// Raw rows of keys and values, `rowBytes` per (layer, position).
    let keys: UnsafeMutableRawPointer, values: UnsafeMutableRawPointer
    let rowBytes: Int
    /// Dequantization step (γ+ε)/Q_p per (layer, position, KV head) for q8/q4; empty otherwise.
    let keyScales: UnsafeMutablePointer<Float>, valueScales: UnsafeMutablePointer<Float>

    /// An empty cache; `format` q4 needs an even head dimension (two codes per byte).
    public init(format: KVCacheFormat, layers: Int, maxSeqLen: Int, kvHeads: Int, headDim: Int) throws {
        if format == .q4 && headDim % 2 != 0 { throw BitNetError.unsupported("a 4-bit KV cache needs an even head dimension, got \(headDim)") }
        self.format = format; self.layers = layers; self.maxSeqLen = maxSeqLen; self.kvHeads = kvHeads; self.headDim = headDim
        let kvDim = kvHeads * headDim
        rowBytes = kvDim * format.bits / 8
        let total = layers * maxSeqLen * rowBytes
        keys = .allocate(byteCount: max(total, 1), alignment: 64)
        values = .allocate(byteCount: max(total, 1), alignment: 64)
        keys.initializeMemory(as: UInt8.self, repeating: 0, count: max(total, 1))
        values.initializeMemory(as: UInt8.self, repeating: 0, count: max(total, 1))
        let nScales = format == .q8 || format == .q4 ? layers * maxSeqLen * kvHeads : 1
        keyScales = .allocate(capacity: nScales); keyScales.initialize(repeating: 0, count: nScales)
        valueScales = .allocate(capacity: nScales); valueScales.initialize(repeating: 0, count: nScales)
    }

    deinit { keys.deallocate(); values.deallocate(); keyScales.deallocate(); valueScales.deallocate() }

    /// Bytes the cache takes (rows and scales).
    public var bytes: Int {
        2 * layers * maxSeqLen * (rowBytes + (format == .q8 || format == .q4 ? kvHeads * 4 : 0))
    }

    /// Stores key[kvDim] and value[kvDim] of `layer` at `pos`.
    public func store(layer: Int, pos: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        let row = layer * maxSeqLen + pos
        storeRow(key, into: keys + row * rowBytes, scales: keyScales + row * kvHeads)
        storeRow(value, into: values + row * rowBytes, scales: valueScales + row * kvHeads)
    }

    /// Writes one dequantized head (headDim floats) of the key at (`layer`, `pos`, `head`) into `out`.
    @inline(__always)
    func loadKey(layer: Int, pos: Int, head: Int, into out: UnsafeMutablePointer<Float>) {
        let row = layer * maxSeqLen + pos
        loadHead(keys + row * rowBytes, scales: keyScales + row * kvHeads, head: head, into: out)
    }

    /// Writes one dequantized head of the value at (`layer`, `pos`, `head`) into `out`.
    @inline(__always)
    func loadValue(layer: Int, pos: Int, head: Int, into out: UnsafeMutablePointer<Float>) {
        let row = layer * maxSeqLen + pos
        loadHead(values + row * rowBytes, scales: valueScales + row * kvHeads, head: head, into: out)
    }

    /// Direct f32 pointer to a head of a key/value row, when the cache is f32 (no copy on the hot path).
    @inline(__always)
    func f32Head(_ base: UnsafeMutableRawPointer, layer: Int, pos: Int, head: Int) -> UnsafePointer<Float> {
        UnsafePointer((base + (layer * maxSeqLen + pos) * rowBytes).assumingMemoryBound(to: Float.self) + head * headDim)
    }

    private func storeRow(_ x: UnsafePointer<Float>, into dst: UnsafeMutableRawPointer, scales: UnsafeMutablePointer<Float>) {
        let n = kvDim, hd = headDim
        switch format {
        case .f32:
            dst.assumingMemoryBound(to: Float.self).update(from: x, count: n)
        case .f16:
            // F16C when the CPU has it: Swift's Float16(x) is a library call per value on x86.
            bitnet_f32_to_f16(x, dst.assumingMemoryBound(to: UInt16.self), n)
        case .q8, .q4:
            let bits = format.bits, qp = Quantizer.signedRange(bits: bits).qp
            withUnsafeTemporaryAllocation(of: Int8.self, capacity: hd) { codes in
                for head in 0..<kvHeads {
                    let xh = x + head * hd
                    let gamma = Quantizer.absmax(xh, count: hd)
                    Quantizer.absmaxQuantize(xh, count: hd, gamma: gamma, bits: bits, codes: codes.baseAddress!)
                    scales[head] = (gamma + Quantizer.epsilon) / qp
                    if format == .q8 {
                        (dst.assumingMemoryBound(to: Int8.self) + head * hd).update(from: codes.baseAddress!, count: hd)
                    } else {
                        // Two's-complement nibbles: element 2i in the low 4 bits, 2i+1 in the high 4 bits.
                        let b = dst.assumingMemoryBound(to: UInt8.self) + head * hd / 2
                        for i in 0..<(hd / 2) {
                            b[i] = UInt8(bitPattern: codes[2 * i]) & 0x0F | UInt8(bitPattern: codes[2 * i + 1]) << 4
                        }
                    }
                }
            }
        }
    }

    @inline(__always)
    private func loadHead(_ row: UnsafeMutableRawPointer, scales: UnsafeMutablePointer<Float>, head: Int, into out: UnsafeMutablePointer<Float>) {
        // Scales exist only for q8/q4 (`scales` points past the one-element placeholder otherwise; never read then).
        let hd = headDim
        switch format {
        case .f32:
            out.update(from: row.assumingMemoryBound(to: Float.self) + head * hd, count: hd)
        case .f16:
            // F16C: converting value by value through Float16 made f16 attention 10x slower than f32.
            bitnet_f16_to_f32(row.assumingMemoryBound(to: UInt16.self) + head * hd, out, hd)
        case .q8:
            let c = row.assumingMemoryBound(to: Int8.self) + head * hd
            let scale = scales[head]
            for i in 0..<hd { out[i] = Float(c[i]) * scale }
        case .q4:
            let b = row.assumingMemoryBound(to: UInt8.self) + head * hd / 2, scale = scales[head]
            for i in 0..<(hd / 2) {
                let byte = b[i]
                out[2 * i] = Float(Int8(bitPattern: byte << 4) >> 4) * scale
                out[2 * i + 1] = Float(Int8(bitPattern: byte) >> 4) * scale
            }
        }
    }

    /// Causal attention of the `group` query heads that share KV head `kvh` (grouped-query attention; their queries
    /// `q` [group, headDim] side by side) at `pos` over cached positions 0...pos of `layer`, into `out` [group, headDim].
    /// Each cached key and value row is read (and dequantized) once for the whole group. Scores live in stack
    /// scratch, so KV heads and rows can run on any thread.
    func attendGroup(layer l: Int, pos: Int, queries q: UnsafePointer<Float>, group g: Int, kvHead kvh: Int,
                     out o: UnsafeMutablePointer<Float>) {
        let hd = headDim, n = pos + 1, scale = 1 / Float(hd).squareRoot(), f32 = format == .f32
        withUnsafeTemporaryAllocation(of: Float.self, capacity: g * n + hd) { buf in
            let scores = buf.baseAddress!, tmp = scores + g * n   // scores [group, n], one dequantized row [headDim]
            for t in 0..<n {
                let kt: UnsafePointer<Float>
                if f32 { kt = f32Head(keys, layer: l, pos: t, head: kvh) } else { loadKey(layer: l, pos: t, head: kvh, into: tmp); kt = UnsafePointer(tmp) }
                for j in 0..<g { scores[j * n + t] = simdDot(q + j * hd, kt, hd) * scale }
            }
            for j in 0..<g { CausalAttention.causalSoftmaxRow(scores + j * n, valid: n, width: n) }
            o.update(repeating: 0, count: g * hd)
            for t in 0..<n {
                let vt: UnsafePointer<Float>
                if f32 { vt = f32Head(values, layer: l, pos: t, head: kvh) } else { loadValue(layer: l, pos: t, head: kvh, into: tmp); vt = UnsafePointer(tmp) }
                for j in 0..<g { simdAxpy(scores[j * n + t], vt, o + j * hd, hd) }
            }
        }
    }

    /// Tells the pool's idle workers to pull the keys and values of `layer`'s positions 0..<count into cache: the weight
    /// stream of a decode step evicts them, and the next attention reads them all.
    func announceRows(layer l: Int, count: Int) {
        guard count > 0 else { return }
        let offset = l * maxSeqLen * rowBytes
        ThreadPool.shared.prefetch(keys + offset, bytes: count * rowBytes, then: values + offset, bytes: count * rowBytes)
    }

    /// Causal attention of a prompt's `n` queries [n, nHeads·headDim] at positions pos0..<pos0+n (their keys and
    /// values already stored) as matrix products per head: S = Q_h·K_hᵀ/√d, causal softmax, O_h = S·V_h. The
    /// quantized formats are dequantized once per layer for this.
    func attendPrompt(layer l: Int, pos0: Int, rows n: Int, query: UnsafePointer<Float>, heads: Int, out: UnsafeMutablePointer<Float>) {
        let T = pos0 + n, hd = headDim, kvD = kvDim, qD = heads * hd, group = heads / kvHeads
        var kBase: UnsafePointer<Float>, vBase: UnsafePointer<Float>
        var dequantized: UnsafeMutablePointer<Float>? = nil
        if format == .f32 {
            kBase = UnsafePointer((keys + l * maxSeqLen * rowBytes).assumingMemoryBound(to: Float.self))
            vBase = UnsafePointer((values + l * maxSeqLen * rowBytes).assumingMemoryBound(to: Float.self))
        } else {
            let buf = UnsafeMutablePointer<Float>.allocate(capacity: 2 * T * kvD)
            for t in 0..<T {
                for h in 0..<kvHeads {
                    loadKey(layer: l, pos: t, head: h, into: buf + t * kvD + h * hd)
                    loadValue(layer: l, pos: t, head: h, into: buf + (T + t) * kvD + h * hd)
                }
            }
            kBase = UnsafePointer(buf); vBase = UnsafePointer(buf + T * kvD)
            dequantized = buf
        }
        defer { dequantized?.deallocate() }
        let scale = 1 / Float(hd).squareRoot()
        ThreadPool.shared.parallelFor(heads) { h in
            let kvh = h / group
            let S = UnsafeMutablePointer<Float>.allocate(capacity: n * T)
            defer { S.deallocate() }
            // Inside a pool task these products run on this thread (nested calls are serial).
            GEMM.sgemm(transA: false, transB: true, m: n, n: T, k: hd, alpha: scale, a: query + h * hd, lda: qD,
                       b: kBase + kvh * hd, ldb: kvD, beta: 0, c: S, ldc: T)
            for i in 0..<n { CausalAttention.causalSoftmaxRow(S + i * T, valid: pos0 + i + 1, width: T) }
            GEMM.sgemm(transA: false, transB: false, m: n, n: hd, k: T, a: S, lda: T, b: vBase + kvh * hd, ldb: kvD,
                       beta: 0, c: out + h * hd, ldc: qD)
        }
    }
}

/// y[i] += alpha·x[i], 16 lanes at a time (the attention-weighted sum of values).
@inline(__always)
func simdAxpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    var i = 0
    let av = SIMD16<Float>(repeating: alpha)
    while i + 16 <= n {
        let r = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD16<Float>.self) + av * UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
        UnsafeMutableRawPointer(y + i).storeBytes(of: r, as: SIMD16<Float>.self)
        i += 16
    }
    while i < n { y[i] += alpha * x[i]; i += 1 }
}
