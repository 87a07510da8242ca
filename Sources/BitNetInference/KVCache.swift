import Foundation
import BitNetKernels
import CBitNetKernels
import BitNetCore
import BitNetTokenizers
import BitNetFormats

/// Storage of the KV cache: f32, f16, or integers with one symmetric absmax scale per position and KV head
/// (Sec. 4.2, Table 6: "we quantize each head using symmetric absmax").
public enum KVCacheFormat: String, Sendable, CaseIterable {
    case f32, f16, q8, q4

    /// The attention kernel's code for this format (bitnet_kv_format).
    var kernelCode: bitnet_kv_format.RawValue {
        switch self { case .f32: BITNET_KV_F32.rawValue; case .f16: BITNET_KV_F16.rawValue; case .q8: BITNET_KV_Q8.rawValue; case .q4: BITNET_KV_Q4.rawValue }
    }

    /// Bits per cached value (scales excluded).
    package var bits: Int {
        switch self { case .f32: 32; case .f16: 16; case .q8: 8; case .q4: 4 }
    }
}

/// Keys and values of every layer and position, [layers, kvHeads, positions, headDim], in one `KVCacheFormat`: one
/// KV head's rows are contiguous, so decode attention streams them in order. Writes take a whole position (all KV
/// heads); reads dequantize one head of one position.
package final class KVCache: @unchecked Sendable {
    package let format: KVCacheFormat
    package let layers: Int, maxSeqLen: Int, kvHeads: Int, headDim: Int
    var kvDim: Int { kvHeads * headDim }
    /// Raw head rows of keys and values, `headBytes` per (layer, KV head, position).
    let keys: UnsafeMutableRawPointer, values: UnsafeMutableRawPointer
    let headBytes: Int
    /// Dequantization step (γ+ε)/Q_p per (layer, KV head, position) for q8/q4; empty otherwise.
    let keyScales: UnsafeMutablePointer<Float>, valueScales: UnsafeMutablePointer<Float>

    /// An empty cache; `format` q4 needs an even head dimension (two codes per byte).
    package init(format: KVCacheFormat, layers: Int, maxSeqLen: Int, kvHeads: Int, headDim: Int) throws {
        if format == .q4 && headDim % 2 != 0 { throw BitNetError.unsupported("a 4-bit KV cache needs an even head dimension, got \(headDim)") }
        self.format = format; self.layers = layers; self.maxSeqLen = maxSeqLen; self.kvHeads = kvHeads; self.headDim = headDim
        headBytes = headDim * format.bits / 8
        // Refused before allocating when it cannot fit this machine's memory (a config may claim millions of positions).
        let perPosition = Self.bytesPerPosition(format: format, layers: layers, kvHeads: kvHeads, headDim: headDim)
        let physical = Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
        let (wanted, overflow) = perPosition.multipliedReportingOverflow(by: maxSeqLen)
        guard !overflow, physical <= 0 || wanted <= physical else {
            let gib = { (b: Double) in String(format: "%.1f GiB", b / 1_073_741_824) }
            throw BitNetError.invalidArgument("a \(format.rawValue) KV cache of \(maxSeqLen) positions needs "
                + "\(overflow ? "more than 2^63 bytes" : gib(Double(wanted))), more than this machine's \(gib(Double(physical))) of memory: "
                + "use a shorter context")
        }
        let total = layers * maxSeqLen * kvHeads * headBytes
        keys = .allocate(byteCount: max(total, 1), alignment: 64)
        values = .allocate(byteCount: max(total, 1), alignment: 64)
        keys.initializeMemory(as: UInt8.self, repeating: 0, count: max(total, 1))
        values.initializeMemory(as: UInt8.self, repeating: 0, count: max(total, 1))
        let nScales = format == .q8 || format == .q4 ? layers * maxSeqLen * kvHeads : 1
        keyScales = .allocate(capacity: nScales); keyScales.initialize(repeating: 0, count: nScales)
        valueScales = .allocate(capacity: nScales); valueScales.initialize(repeating: 0, count: nScales)
    }

    deinit { keys.deallocate(); values.deallocate(); keyScales.deallocate(); valueScales.deallocate(); partials?.deallocate() }

    /// Bytes the cache takes (rows and scales).
    package var bytes: Int { maxSeqLen * Self.bytesPerPosition(format: format, layers: layers, kvHeads: kvHeads, headDim: headDim) }

    /// Bytes one position takes in a cache of this shape: keys and values of every layer and KV head, with the q8/q4
    /// scales.
    package static func bytesPerPosition(format: KVCacheFormat, layers: Int, kvHeads: Int, headDim: Int) -> Int {
        2 * layers * kvHeads * (headDim * format.bits / 8 + (format == .q8 || format == .q4 ? 4 : 0))
    }

    /// Index of (`layer`, `head`, `pos`) among the head rows (and the q8/q4 scales).
    @inline(__always)
    func headRow(layer: Int, head: Int, pos: Int) -> Int { (layer * kvHeads + head) * maxSeqLen + pos }

    /// Stores key[kvDim] and value[kvDim] of `layer` at `pos`.
    package func store(layer: Int, pos: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        for head in 0..<kvHeads {
            let row = headRow(layer: layer, head: head, pos: pos)
            storeHead(key + head * headDim, into: keys + row * headBytes, scale: keyScales + row)
            storeHead(value + head * headDim, into: values + row * headBytes, scale: valueScales + row)
        }
    }

    /// Writes one dequantized head (headDim floats) of the key at (`layer`, `pos`, `head`) into `out`.
    @inline(__always)
    func loadKey(layer: Int, pos: Int, head: Int, into out: UnsafeMutablePointer<Float>) {
        let row = headRow(layer: layer, head: head, pos: pos)
        loadHead(keys + row * headBytes, scale: keyScales + row, into: out)
    }

    /// Writes one dequantized head of the value at (`layer`, `pos`, `head`) into `out`.
    @inline(__always)
    func loadValue(layer: Int, pos: Int, head: Int, into out: UnsafeMutablePointer<Float>) {
        let row = headRow(layer: layer, head: head, pos: pos)
        loadHead(values + row * headBytes, scale: valueScales + row, into: out)
    }

    private func storeHead(_ x: UnsafePointer<Float>, into dst: UnsafeMutableRawPointer, scale: UnsafeMutablePointer<Float>) {
        let hd = headDim
        switch format {
        case .f32:
            dst.assumingMemoryBound(to: Float.self).update(from: x, count: hd)
        case .f16:
            // F16C when the CPU has it: Swift's Float16(x) is a library call per value on x86.
            bitnet_f32_to_f16(x, dst.assumingMemoryBound(to: UInt16.self), hd)
        case .q8, .q4:
            let bits = format.bits, qp = Quantizer.signedRange(bits: bits).qp
            withUnsafeTemporaryAllocation(of: Int8.self, capacity: hd) { codes in
                let gamma = Quantizer.absmax(x, count: hd)
                Quantizer.absmaxQuantize(x, count: hd, gamma: gamma, bits: bits, codes: codes.baseAddress!)
                scale.pointee = (gamma + Quantizer.epsilon) / qp
                if format == .q8 {
                    dst.assumingMemoryBound(to: Int8.self).update(from: codes.baseAddress!, count: hd)
                } else {
                    // Two's-complement nibbles: element 2i in the low 4 bits, 2i+1 in the high 4 bits.
                    let b = dst.assumingMemoryBound(to: UInt8.self)
                    for i in 0..<(hd / 2) {
                        b[i] = UInt8(bitPattern: codes[2 * i]) & 0x0F | UInt8(bitPattern: codes[2 * i + 1]) << 4
                    }
                }
            }
        }
    }

    @inline(__always)
    private func loadHead(_ row: UnsafeMutableRawPointer, scale: UnsafeMutablePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        // Scales exist only for q8/q4 (`scale` points past the one-element placeholder otherwise; never read then).
        let hd = headDim
        switch format {
        case .f32:
            out.update(from: row.assumingMemoryBound(to: Float.self), count: hd)
        case .f16:
            // F16C: converting value by value through Float16 made f16 attention 10x slower than f32.
            bitnet_f16_to_f32(row.assumingMemoryBound(to: UInt16.self), out, hd)
        case .q8:
            let c = row.assumingMemoryBound(to: Int8.self), s = scale.pointee
            for i in 0..<hd { out[i] = Float(c[i]) * s }
        case .q4:
            let b = row.assumingMemoryBound(to: UInt8.self), s = scale.pointee
            for i in 0..<(hd / 2) {
                let byte = b[i]
                out[2 * i] = Float(Int8(bitPattern: byte << 4) >> 4) * s
                out[2 * i + 1] = Float(Int8(bitPattern: byte) >> 4) * s
            }
        }
    }

    /// The C kernel's view of KV head `kvh` of `layer` for `group` queries at `q` (rows from position 0).
    fileprivate func attendArgs(layer l: Int, kvHead kvh: Int, group g: Int, queries q: UnsafePointer<Float>) -> bitnet_attend_args {
        let row = headRow(layer: l, head: kvh, pos: 0), quantized = format == .q8 || format == .q4
        return bitnet_attend_args(format: Int32(format.kernelCode), group: g, head_dim: headDim, row_bytes: headBytes,
                                  scale: 1 / Float(headDim).squareRoot(), q: q, keys: keys + row * headBytes, values: values + row * headBytes,
                                  key_scales: quantized ? UnsafePointer(keyScales + row) : nil,
                                  value_scales: quantized ? UnsafePointer(valueScales + row) : nil)
    }

    /// Causal attention of the `group` query heads that share KV head `kvh` (grouped-query attention; their queries
    /// `q` [group, headDim] side by side) at `pos` over cached positions 0...pos of `layer`, into `out` [group, headDim],
    /// on this thread. Each cached key and value row is read (and dequantized) once for the whole group.
    func attendGroup(layer l: Int, pos: Int, queries q: UnsafePointer<Float>, group g: Int, kvHead kvh: Int,
                     out o: UnsafeMutablePointer<Float>) {
        var a = attendArgs(layer: l, kvHead: kvh, group: g, queries: q)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * g) { ml in
            let m = ml.baseAddress!, lsum = m + g
            bitnet_attend_part(&a, 0, pos + 1, m, lsum, o)
            bitnet_attend_merge(1, g, headDim, m, lsum, o, o)
        }
    }

    /// Parts per KV head of a decode step's attention over `n` positions (Flash-Decoding's split of the positions):
    /// enough (KV head, part) tasks to keep `threads` threads even (at least 4 per thread), each part at least 32
    /// positions, at most `maxDecodeParts`.
    static func decodeParts(positions n: Int, kvHeads: Int, threads: Int) -> Int {
        guard threads > 1 else { return 1 }
        return max(1, min((4 * threads + kvHeads - 1) / kvHeads, n / 32, maxDecodeParts))
    }
    static let maxDecodeParts = 16

    /// Per-part softmax state (m, l, o) of `attendDecode`, grown once per query group size (not per step).
    private var partials: UnsafeMutablePointer<Float>?
    private var partialsGroup = 0

    /// Decode attention of all query heads q [kvHeads·group, headDim] at `pos` over `layer` into `out`: one pool
    /// task per (KV head, part of positions 0...pos), each an online softmax, then the parts merged per KV head.
    /// Allocation-free after the first call; short contexts of small models stay on this thread.
    func attendDecode(layer l: Int, pos: Int, queries q: UnsafePointer<Float>, group g: Int, out: UnsafeMutablePointer<Float>,
                      pool: ThreadPool = .shared) {
        let n = pos + 1, hd = headDim
        if n * kvHeads * g * hd < 4096 || pool.threadCount == 1 {
            for kvh in 0..<kvHeads { attendGroup(layer: l, pos: pos, queries: q + kvh * g * hd, group: g, kvHead: kvh, out: out + kvh * g * hd) }
            return
        }
        let parts = Self.decodeParts(positions: n, kvHeads: kvHeads, threads: pool.threadCount)
        if partialsGroup < g {
            partials?.deallocate()
            partials = .allocate(capacity: kvHeads * Self.maxDecodeParts * g * (hd + 2))
            partialsGroup = g
        }
        let states = kvHeads * parts * g, m = partials!, lsum = m + states, o = lsum + states
        var job = DecodeAttentionJob(cache: Unmanaged.passUnretained(self), layer: l, positions: n, parts: parts, group: g, q: q,
                                     m: m, l: lsum, o: o)
        withUnsafeMutablePointer(to: &job) { pool.parallelFor(kvHeads * parts, context: $0, task: DecodeAttentionJob.run) }
        for kvh in 0..<kvHeads {
            let first = kvh * parts * g
            bitnet_attend_merge(parts, g, hd, m + first, lsum + first, o + first * hd, out + kvh * g * hd)
        }
    }

    /// Tells the pool's idle workers to pull the keys and values of `layer`'s positions 0..<count into cache (KV heads
    /// in order, up to 8): the weight stream of a decode step evicts them, and the next attention reads them all.
    func announceRows(layer l: Int, count: Int) {
        guard count > 0 else { return }
        let heads = min(kvHeads, 8)
        withUnsafeTemporaryAllocation(of: UnsafeRawPointer?.self, capacity: 2 * heads) { addr in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * heads) { len in
                for h in 0..<heads {
                    let offset = headRow(layer: l, head: h, pos: 0) * headBytes
                    addr[2 * h] = UnsafeRawPointer(keys + offset); addr[2 * h + 1] = UnsafeRawPointer(values + offset)
                    len[2 * h] = count * headBytes; len[2 * h + 1] = count * headBytes
                }
                ThreadPool.shared.prefetch(ranges: addr.baseAddress!, lengths: len.baseAddress!, count: 2 * heads)
            }
        }
    }

    /// Causal attention of a prompt's `n` queries [n, nHeads·headDim] at positions pos0..<pos0+n (their keys and
    /// values already stored) as matrix products per head: S = Q_h·K_hᵀ/√d, causal softmax, O_h = S·V_h. The
    /// quantized formats are dequantized once per layer for this.
    func attendPrompt(layer l: Int, pos0: Int, rows n: Int, query: UnsafePointer<Float>, heads: Int, out: UnsafeMutablePointer<Float>) {
        let T = pos0 + n, hd = headDim, qD = heads * hd, group = heads / kvHeads
        // K_h, V_h of KV head h: T rows of hd floats at base + h·stride (the cache itself when f32).
        var kBase: UnsafePointer<Float>, vBase: UnsafePointer<Float>, stride = maxSeqLen * hd
        var dequantized: UnsafeMutablePointer<Float>? = nil
        if format == .f32 {
            kBase = UnsafePointer((keys + headRow(layer: l, head: 0, pos: 0) * headBytes).assumingMemoryBound(to: Float.self))
            vBase = UnsafePointer((values + headRow(layer: l, head: 0, pos: 0) * headBytes).assumingMemoryBound(to: Float.self))
        } else {
            let buf = UnsafeMutablePointer<Float>.allocate(capacity: 2 * kvHeads * T * hd)
            for h in 0..<kvHeads {
                for t in 0..<T {
                    loadKey(layer: l, pos: t, head: h, into: buf + (h * T + t) * hd)
                    loadValue(layer: l, pos: t, head: h, into: buf + ((kvHeads + h) * T + t) * hd)
                }
            }
            kBase = UnsafePointer(buf); vBase = UnsafePointer(buf + kvHeads * T * hd)
            stride = T * hd
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
                       b: kBase + kvh * stride, ldb: hd, beta: 0, c: S, ldc: T)
            for i in 0..<n { CausalAttention.causalSoftmaxRow(S + i * T, valid: pos0 + i + 1, width: T) }
            GEMM.sgemm(transA: false, transB: false, m: n, n: hd, k: T, a: S, lda: T, b: vBase + kvh * stride, ldb: hd,
                       beta: 0, c: out + h * hd, ldc: qD)
        }
    }
}

/// One decode step's attention as the context of a C pool task per (KV head, part): allocation-free.
private struct DecodeAttentionJob {
    let cache: Unmanaged<KVCache>
    let layer, positions, parts, group: Int
    let q: UnsafePointer<Float>
    let m, l, o: UnsafeMutablePointer<Float>

    /// Task kvHead·parts + part: the online softmax of that KV head's queries over its share of the positions.
    static let run: bitnet_task_fn = { ctx, task in
        let j = ctx!.assumingMemoryBound(to: DecodeAttentionJob.self).pointee
        let cache = j.cache.takeUnretainedValue(), kvh = Int(task) / j.parts, part = Int(task) % j.parts
        let t0 = part * j.positions / j.parts, t1 = (part + 1) * j.positions / j.parts
        var a = cache.attendArgs(layer: j.layer, kvHead: kvh, group: j.group, queries: j.q + kvh * j.group * cache.headDim)
        let state = Int(task) * j.group
        bitnet_attend_part(&a, t0, t1, j.m + state, j.l + state, j.o + state * cache.headDim)
    }
}
