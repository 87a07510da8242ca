import XCTest
import BitNetKernels
import CBitNetKernels
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

final class KVCacheTests: XCTestCase {
    /// Reference symmetric absmax per head (Sec. 4.2): code = clip(round(x·Q_p/(γ+ε))), value = code·(γ+ε)/Q_p.
    private func referenceDequant(_ x: [Float], bits: Int) -> [Float] {
        let qp = Double((1 << (bits - 1)) - 1)
        let gamma = Double(x.map(abs).max()!) + 1e-5
        return x.map { v in
            let code = min(qp, max(-qp - 1, (Double(v) * qp / gamma).rounded(.toNearestOrEven)))
            return Float(code * gamma / qp)
        }
    }

    /// Every format stores and loads each head within its error bound; q8/q4 equal the reference formula.
    func testRoundTripErrorBounds() throws {
        let heads = 3, hd = 8
        for format in KVCacheFormat.allCases {
            let cache = try KVCache(format: format, layers: 2, maxSeqLen: 5, kvHeads: heads, headDim: hd)
            for pos in 0..<5 {
                var k = randomArray(heads * hd, seed: UInt64(10 + pos), scale: 3)
                let v = randomArray(heads * hd, seed: UInt64(50 + pos), scale: 0.01)
                k[1] = 0; k[hd] = 1000   // a zero and an outlier in head 1
                cache.store(layer: 1, pos: pos, key: k, value: v)
                for (data, isKey) in [(k, true), (v, false)] {
                    for h in 0..<heads {
                        var got = [Float](repeating: .nan, count: hd)
                        got.withUnsafeMutableBufferPointer {
                            if isKey { cache.loadKey(layer: 1, pos: pos, head: h, into: $0.baseAddress!) }
                            else { cache.loadValue(layer: 1, pos: pos, head: h, into: $0.baseAddress!) }
                        }
                        let x = Array(data[(h * hd)..<((h + 1) * hd)])
                        let gamma = x.map(abs).max()!
                        switch format {
                        case .f32: XCTAssertEqual(got, x)
                        case .f16:
                            for i in 0..<hd { XCTAssertLessThanOrEqual(abs(got[i] - x[i]), abs(x[i]) * 0x1p-11 + 1e-7) }
                        case .q8, .q4:
                            let bound = (gamma + 1e-5) / Float((1 << (format.bits - 1)) - 1) / 2
                            let ref = referenceDequant(x, bits: format.bits)
                            for i in 0..<hd {
                                XCTAssertLessThanOrEqual(abs(got[i] - x[i]), bound * 1.0001, "\(format) head \(h)")
                                XCTAssertEqual(got[i], ref[i], accuracy: bound * 1e-4, "\(format) head \(h)")
                            }
                        }
                    }
                }
            }
        }
    }

    /// Attention over a cache (each format; 2 query heads per KV head) equals exact attention over the dequantized keys and values.
    func testAttentionUsesDequantizedValues() throws {
        let heads = 4, kvHeads = 2, hd = 6, T = 70
        for format in [KVCacheFormat.q4, .q8, .f16, .f32] {
            let cache = try KVCache(format: format, layers: 1, maxSeqLen: T, kvHeads: kvHeads, headDim: hd)
            var keys: [[Float]] = [], values: [[Float]] = []
            for t in 0..<T {
                let k = randomArray(kvHeads * hd, seed: UInt64(t), scale: 2), v = randomArray(kvHeads * hd, seed: UInt64(1000 + t))
                cache.store(layer: 0, pos: t, key: k, value: v)
                keys.append(k); values.append(v)
            }
            func deq(_ rows: [[Float]]) -> [[Float]] {
                rows.map { row in (0..<kvHeads).flatMap { h -> [Float] in
                    let x = Array(row[(h * hd)..<((h + 1) * hd)])
                    switch format {
                    case .f32: return x
                    case .f16: return x.map { Float(Float16($0)) }
                    default: return referenceDequant(x, bits: format.bits)
                    }
                } }
            }
            let dk = deq(keys), dv = deq(values)
            let q = randomArray(heads * hd, seed: 77)
            for pos in [0, 9, T - 1] {
                var out = [Float](repeating: 0, count: heads * hd)
                q.withUnsafeBufferPointer { qp in
                    out.withUnsafeMutableBufferPointer { op in
                        // The query heads of each KV head together (grouped-query attention).
                        let group = heads / kvHeads
                        for kvh in 0..<kvHeads {
                            cache.attendGroup(layer: 0, pos: pos, queries: qp.baseAddress! + kvh * group * hd, group: group, kvHead: kvh,
                                              out: op.baseAddress! + kvh * group * hd)
                        }
                    }
                }
                for h in 0..<heads {
                    let kvh = h / (heads / kvHeads)
                    var scores = (0...pos).map { t in (0..<hd).reduce(0.0) { $0 + Double(q[h * hd + $1]) * Double(dk[t][kvh * hd + $1]) } / Double(hd).squareRoot() }
                    let m = scores.max()!
                    scores = scores.map { exp($0 - m) }
                    let z = scores.reduce(0, +)
                    for i in 0..<hd {
                        let ref = (0...pos).reduce(0.0) { $0 + scores[$1] / z * Double(dv[$1][kvh * hd + i]) }
                        XCTAssertEqual(Double(out[h * hd + i]), ref, accuracy: 1e-4, "\(format) pos \(pos) head \(h)")
                    }
                }
            }
        }
    }

    /// Exact attention (double precision) of query head h over positions 0...pos of the dequantized cache.
    private func referenceAttention(_ cache: KVCache, layer: Int, pos: Int, q: [Float], heads: Int) -> [Double] {
        let hd = cache.headDim, group = heads / cache.kvHeads
        var out = [Double](repeating: 0, count: heads * hd)
        var k = [Float](repeating: 0, count: hd), v = k
        for h in 0..<heads {
            let kvh = h / group
            var scores: [Double] = []
            for t in 0...pos {
                k.withUnsafeMutableBufferPointer { cache.loadKey(layer: layer, pos: t, head: kvh, into: $0.baseAddress!) }
                scores.append((0..<hd).reduce(0.0) { $0 + Double(q[h * hd + $1]) * Double(k[$1]) } / Double(hd).squareRoot())
            }
            let m = scores.max()!, e = scores.map { exp($0 - m) }, z = e.reduce(0, +)
            for t in 0...pos {
                v.withUnsafeMutableBufferPointer { cache.loadValue(layer: layer, pos: t, head: kvh, into: $0.baseAddress!) }
                for i in 0..<hd { out[h * hd + i] += e[t] / z * Double(v[i]) }
            }
        }
        return out
    }

    /// Decode attention split into (KV head, part) pool tasks (Flash-Decoding parts merged by their softmax state)
    /// equals exact attention, on every kernel path this CPU has (AVX-512, AVX2, portable), for every format, with head
    /// sizes that take each SIMD tail (128 = 2B4T, 48 and 16 on AVX-512; 20 and 6 only on AVX2), groups of 4, 3, 5, 6
    /// and 1 query heads, and contexts of 1 to 300 positions (1, 2 and several parts, the last shorter than a block).
    func testDecodeAttentionPartsEqualExactAttention() throws {
        let pool = ThreadPool(threadCount: 2)
        let shapes: [(kvHeads: Int, group: Int, hd: Int)] = [(5, 4, 128), (2, 3, 48), (1, 5, 20), (3, 1, 6), (2, 6, 16)]
        let best = bitnet_attention_set_isa(2)   // the CPU's best path (the default without BITNET_ISA)
        defer { bitnet_attention_set_isa(best) }
        for path in (0...best).reversed() {
            XCTAssertEqual(bitnet_attention_set_isa(Int32(path)), Int32(path))
            for format in KVCacheFormat.allCases {
                for shape in shapes {
                    let T = 300, heads = shape.kvHeads * shape.group, hd = shape.hd
                    let cache = try KVCache(format: format, layers: 2, maxSeqLen: T, kvHeads: shape.kvHeads, headDim: hd)
                    for t in 0..<T {
                        let k = randomArray(shape.kvHeads * hd, seed: UInt64(t), scale: 3)
                        let v = randomArray(shape.kvHeads * hd, seed: UInt64(5000 + t))
                        cache.store(layer: 1, pos: t, key: k, value: v)
                    }
                    let q = randomArray(heads * hd, seed: 99)
                    for pos in [0, 40, 63, 64, 130, T - 1] {
                        var out = [Float](repeating: .nan, count: heads * hd)
                        q.withUnsafeBufferPointer { qp in
                            out.withUnsafeMutableBufferPointer {
                                cache.attendDecode(layer: 1, pos: pos, queries: qp.baseAddress!, group: shape.group, out: $0.baseAddress!, pool: pool)
                            }
                        }
                        let ref = referenceAttention(cache, layer: 1, pos: pos, q: q, heads: heads)
                        let worst = zip(out, ref).map { abs(Double($0) - $1) }.max()!
                        XCTAssertLessThan(worst, 2e-5, "path \(path) \(format) \(shape) pos \(pos)")
                    }
                }
            }
        }
    }

    /// Shapes past the kernel's stack bounds still attend exactly: 70 query heads per KV head (passes of 64 + 6) on the
    /// SIMD paths (head 128) and a 2048-wide head (the portable path with a heap row buffer), f32 and q4 rows.
    func testDecodeAttentionLargeGroupsAndHeads() throws {
        for (group, hd) in [(70, 128), (70, 2048)] {
            for format in [KVCacheFormat.f32, .q4] {
                let T = 40, cache = try KVCache(format: format, layers: 1, maxSeqLen: T, kvHeads: 1, headDim: hd)
                for t in 0..<T { cache.store(layer: 0, pos: t, key: randomArray(hd, seed: UInt64(t), scale: 0.3), value: randomArray(hd, seed: UInt64(900 + t))) }
                let q = randomArray(group * hd, seed: 5, scale: 0.3)
                for pos in [0, T - 1] {
                    var out = [Float](repeating: .nan, count: group * hd)
                    q.withUnsafeBufferPointer { qp in
                        out.withUnsafeMutableBufferPointer { cache.attendDecode(layer: 0, pos: pos, queries: qp.baseAddress!, group: group, out: $0.baseAddress!) }
                    }
                    let ref = referenceAttention(cache, layer: 0, pos: pos, q: q, heads: group)
                    XCTAssertLessThan(zip(out, ref).map { abs(Double($0) - $1) }.max()!, 2e-5, "\(format) group \(group) head \(hd) pos \(pos)")
                }
            }
        }
    }

    /// The split of a decode step's context: one part per KV head on one thread or below 64 positions; with 2 threads and
    /// 5 KV heads (2B4T) 2 parts from 64 positions (10 tasks); never parts under 32 positions; at most 16.
    func testDecodePartsPolicy() {
        XCTAssertEqual(KVCache.decodeParts(positions: 4000, kvHeads: 5, threads: 1), 1)
        XCTAssertEqual(KVCache.decodeParts(positions: 48, kvHeads: 5, threads: 2), 1)
        XCTAssertEqual(KVCache.decodeParts(positions: 64, kvHeads: 5, threads: 2), 2)
        XCTAssertEqual(KVCache.decodeParts(positions: 4000, kvHeads: 5, threads: 2), 2)
        XCTAssertEqual(KVCache.decodeParts(positions: 4000, kvHeads: 1, threads: 2), 8)
        XCTAssertEqual(KVCache.decodeParts(positions: 100, kvHeads: 1, threads: 2), 3)
        XCTAssertEqual(KVCache.decodeParts(positions: 100_000, kvHeads: 1, threads: 8), KVCache.maxDecodeParts)
    }

    /// A model decoded with an 8-bit or 4-bit cache stays close to the f32 cache; 8-bit closer than 4-bit.
    func testQuantizedCacheLogitsStayClose() throws {
        let c = tinyConfig(.b158, seq: 24)
        let model = InferenceModel(weights: ModelWeights(config: c, seed: 5))
        let prompt = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]
        let ref = try InferenceSession(model: model, kvCache: .f32).prefillLogits(tokens: prompt)
        var errors: [KVCacheFormat: Float] = [:]
        for format in [KVCacheFormat.f16, .q8, .q4] {
            let s = try InferenceSession(model: model, kvCache: format)
            let got = try s.prefillLogits(tokens: prompt)
            errors[format] = maxAbsDiff(ref, got) / ref.map(abs).max()!
        }
        // Measured here: f16 0.8 %, q8 1.2 %, q4 10.7 % of the largest logit (activation codes downstream amplify it).
        XCTAssertLessThan(errors[.f16]!, 2e-2)
        XCTAssertLessThan(errors[.q8]!, 5e-2)
        XCTAssertLessThan(errors[.q4]!, 0.3)
        XCTAssertLessThan(errors[.q8]!, errors[.q4]!)
        XCTAssertGreaterThan(errors[.q4]!, 0, "a 4-bit cache cannot be exact on random data")
    }

    func testOddHeadDimRejectedForQ4() {
        XCTAssertThrowsError(try KVCache(format: .q4, layers: 1, maxSeqLen: 4, kvHeads: 1, headDim: 5)) { e in
            XCTAssertTrue("\(e)".contains("even head dimension"), "\(e)")
        }
        XCTAssertNoThrow(try KVCache(format: .q8, layers: 1, maxSeqLen: 4, kvHeads: 1, headDim: 5))
    }

    /// The cache's size follows its format: 4-bit rows take 1/8 of f32 rows (plus one scale per head).
    func testCacheBytes() throws {
        let f32 = try KVCache(format: .f32, layers: 2, maxSeqLen: 8, kvHeads: 2, headDim: 16)
        let q4 = try KVCache(format: .q4, layers: 2, maxSeqLen: 8, kvHeads: 2, headDim: 16)
        XCTAssertEqual(f32.bytes, 2 * 2 * 8 * 32 * 4)
        XCTAssertEqual(q4.bytes, 2 * 2 * 8 * (32 / 2 + 2 * 4))
    }
}

final class BatchedDecodingTests: XCTestCase {
    /// Several sessions at different positions stepped together give each session's own `step` logits.
    func testStepBatchEqualsIndependentSteps() throws {
        for (arch, groups, kv, head) in [(Architecture.b158, 1, KVCacheFormat.f32, HeadFormat.f32), (.fp, 1, .f32, .f16), (.b158, 2, .f32, .q6),
                                         (.b1, 1, .q8, .q4)] {
            var c = tinyConfig(arch, seq: 32)
            c.quantGroups = groups
            let model = InferenceModel(weights: ModelWeights(config: c, seed: 8))
            try model.setHeadFormat(head)
            let prompts = [[1, 2, 3], [9], [30, 4, 4, 4, 17, 2, 0]]
            let solo = try prompts.map { _ in try InferenceSession(model: model, kvCache: kv) }
            let together = try prompts.map { _ in try InferenceSession(model: model, kvCache: kv) }
            for (i, p) in prompts.enumerated() { _ = try solo[i].prefill(tokens: p); _ = try together[i].prefill(tokens: p) }
            var next = [5, 6, 7]
            for _ in 0..<4 {
                let batched = try InferenceSession.stepBatch(together, tokens: next).map(Array.init)
                for i in 0..<prompts.count {
                    let single = Array(try solo[i].step(token: next[i]))
                    XCTAssertLessThan(maxAbsDiff(single, batched[i]), 1e-4, "\(arch) groups \(groups) \(kv) session \(i)")
                    XCTAssertEqual(together[i].position, solo[i].position)
                }
                next = batched.map { $0.withUnsafeBufferPointer { Sampler.argmax($0) } }
            }
        }
    }

    /// `prefillLogits` gives the logits of every position, equal to stepping one token at a time.
    func testPrefillLogitsEqualsSteps() throws {
        let c = tinyConfig(.b158, ffn: .relu2, seq: 16)
        let model = InferenceModel(weights: ModelWeights(config: c, seed: 2))
        // 11 tokens: prompts of 8 or more take the matrix-product attention path.
        let tokens = [7, 3, 36, 0, 12, 12, 5, 9, 1, 30, 2]
        for kv in KVCacheFormat.allCases {
            let all = try InferenceSession(model: model, kvCache: kv).prefillLogits(tokens: tokens)
            let s = try InferenceSession(model: model, kvCache: kv)
            var steps: [Float] = []
            for t in tokens { steps += Array(try s.step(token: t)) }
            XCTAssertEqual(all.count, tokens.count * c.vocabSize)
            XCTAssertLessThan(maxAbsDiff(all, steps), 1e-4, "\(kv)")
        }
    }

    func testStepBatchRejectsBadInput() throws {
        let c = tinyConfig(.b158, seq: 4)
        let model = InferenceModel(weights: ModelWeights(config: c, seed: 1)), other = InferenceModel(weights: ModelWeights(config: c, seed: 2))
        let a = InferenceSession(model: model), b = InferenceSession(model: model), z = InferenceSession(model: other)
        func message(_ body: () throws -> Void) -> String {
            do { try body(); return "no error" } catch { return "\(error)" }
        }
        XCTAssertTrue(message { _ = try InferenceSession.stepBatch([], tokens: []) }.contains("at least one"))
        XCTAssertTrue(message { _ = try InferenceSession.stepBatch([a, b], tokens: [1]) }.contains("2 sessions but 1 tokens"))
        XCTAssertTrue(message { _ = try InferenceSession.stepBatch([a, a], tokens: [1, 2]) }.contains("same session twice"))
        XCTAssertTrue(message { _ = try InferenceSession.stepBatch([a, z], tokens: [1, 2]) }.contains("share one model"))
        XCTAssertTrue(message { _ = try InferenceSession.stepBatch([a, b], tokens: [1, 99]) }.contains("outside vocabulary"))
        XCTAssertEqual(a.position, 0, "a rejected batch leaves the sessions untouched")
        _ = try b.prefill(tokens: [1, 2, 3, 4])
        XCTAssertTrue(message { _ = try InferenceSession.stepBatch([a, b], tokens: [1, 2]) }.contains("context full"))
        XCTAssertEqual(a.position, 0)
    }

    /// A config that claims millions of positions costs memory only for what a generation reaches: the RoPE tables
    /// stop at `Rope.tableLimit` (later positions computed by the same f32 formula, bit for bit), the generator's
    /// cache holds prompt + max tokens, and a cache larger than the machine's memory is refused before allocating.
    func testHugeContextsAreBoundedByUse() throws {
        let rope = Rope(headDim: 8, maxSeqLen: 16_000_000, theta: 10000)
        XCTAssertEqual(rope.cosTable.count, Rope.tableLimit * 4)
        for pos in [5, Rope.tableLimit - 1, Rope.tableLimit, 15_999_999] {
            var x: [Float] = (0..<16).map { Float($0) * 0.25 - 1 }
            var expected = x
            for h in 0..<2 {
                for i in 0..<4 {
                    let (c, s) = Rope.cosSin(pos: pos, pair: i, headDim: 8, theta: 10000)
                    let a = x[h * 8 + 2 * i], b = x[h * 8 + 2 * i + 1]
                    expected[h * 8 + 2 * i] = a * c - b * s
                    expected[h * 8 + 2 * i + 1] = a * s + b * c
                }
            }
            x.withUnsafeMutableBufferPointer { rope.apply($0.baseAddress!, heads: 2, pos: pos) }
            XCTAssertEqual(x, expected, "position \(pos)")
        }
        XCTAssertThrowsError(try KVCache(format: .f32, layers: 6, maxSeqLen: 16_000_000, kvHeads: 6, headDim: 64)) { error in
            XCTAssertTrue("\(error)".contains("a f32 KV cache of 16000000 positions needs 274.7 GiB, more than this machine's"), "\(error)")
        }
        XCTAssertThrowsError(try KVCache(format: .q4, layers: 1 << 20, maxSeqLen: 1 << 24, kvHeads: 1 << 20, headDim: 64))

        var c = tinyConfig(.b158, vocab: 258, seq: 16_000_000)
        c.tieEmbeddings = true
        let bpe = try ByteLevelBPE.train(text: "abc", vocabSize: 258)
        let model = InferenceModel(weights: ModelWeights(config: c, seed: 1))
        var o = GenerationOptions()
        o.temperature = 0; o.maxTokens = 4
        let ids = try Generator(model: model, tokenizer: bpe).generate(prompt: "abc", options: o) { _ in }
        XCTAssertEqual(ids.count, 4)
    }
}
