import Foundation
import BitNetKernels

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
            let h = dst.assumingMemoryBound(to: Float16.self)
            for i in 0..<n { h[i] = Float16(x[i]) }
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
            let h = row.assumingMemoryBound(to: Float16.self) + head * hd
            for i in 0..<hd { out[i] = Float(h[i]) }
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

    /// Causal attention of one query (all heads, [nHeads·headDim]) at `pos` over cached positions 0...pos of
    /// `layer` (GQA: query head h reads KV head h / group). `att` is scratch of nHeads·maxSeqLen floats.
    func attend(layer l: Int, pos: Int, query: UnsafePointer<Float>, heads: Int, out: UnsafeMutablePointer<Float>,
                att: UnsafeMutablePointer<Float>) {
        let hd = headDim, group = heads / kvHeads, maxT = maxSeqLen
        let scale = 1 / Float(hd).squareRoot()
        let f32 = format == .f32
        // Heads in parallel once the context is long enough to pay for the hand-off.
        ThreadPool.shared.parallelFor(pos >= 64 ? heads : 1) { task in
            let range = pos >= 64 ? task..<(task + 1) : 0..<heads
            withUnsafeTemporaryAllocation(of: Float.self, capacity: hd) { tmpBuf in
                let tmp = tmpBuf.baseAddress!
                for h in range {
                    let qh = query + h * hd, kvh = h / group
                    let a = att + h * maxT
                    for t in 0...pos {
                        let kt: UnsafePointer<Float>
                        if f32 { kt = f32Head(keys, layer: l, pos: t, head: kvh) } else { loadKey(layer: l, pos: t, head: kvh, into: tmp); kt = UnsafePointer(tmp) }
                        var s: Float = 0
                        for i in 0..<hd { s += qh[i] * kt[i] }
                        a[t] = s * scale
                    }
                    CausalAttention.causalSoftmaxRow(a, valid: pos + 1, width: pos + 1)
                    let o = out + h * hd
                    for i in 0..<hd { o[i] = 0 }
                    for t in 0...pos {
                        let vt: UnsafePointer<Float>
                        if f32 { vt = f32Head(values, layer: l, pos: t, head: kvh) } else { loadValue(layer: l, pos: t, head: kvh, into: tmp); vt = UnsafePointer(tmp) }
                        let p = a[t]
                        for i in 0..<hd { o[i] += p * vt[i] }
                    }
                }
            }
        }
    }
}
