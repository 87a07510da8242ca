import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

/// GGUF container and codecs: against the `gguf` PyPI package's files (codecs.gguf, made by
/// scripts/make_format_fixtures.py), round trips through our writer, and hostile input.
final class GGUFTests: XCTestCase {
    static let dir = TestPaths.fixtures.appendingPathComponent("formats")

    func testReadsMetadataOfEveryKindWrittenByGGUFPy() throws {
        let f = try GGUFFile.read(path: Self.dir.appendingPathComponent("codecs.gguf").path)
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f["general.architecture"]?.string, "codecs")
        XCTAssertEqual(f["codecs.string"]?.string, "héllo")
        XCTAssertEqual(f["codecs.ints"]?.array?.compactMap(\.int), [1, -2, 3])
        XCTAssertEqual(f["codecs.flag"], .bool(true))
        XCTAssertEqual(f["codecs.f64"]?.double, 0.125)
    }

    /// Our dequantization of each type equals gguf's numpy dequantization of the same bytes.
    func testDequantizationMatchesGGUFPy() throws {
        let f = try GGUFFile.read(path: Self.dir.appendingPathComponent("codecs.gguf").path)
        let ref = try Safetensors.read(path: Self.dir.appendingPathComponent("codecs-ref.safetensors").path)
        for name in ["f32", "f16", "bf16", "q8_0", "q4_0", "q6_k", "tq1_0", "tq2_0"] {
            let t = try XCTUnwrap(f.tensor(name), name)
            XCTAssertEqual(t.shape, [4, 512], name)
            XCTAssertEqual(try f.floats(name), try ref.floats("deq." + name), name)
        }
    }

    /// Our quantizers write the same bytes as gguf's numpy ports of ggml's reference quantizers.
    func testQuantizationMatchesGGUFPyBytes() throws {
        let f = try GGUFFile.read(path: Self.dir.appendingPathComponent("codecs.gguf").path)
        let ref = try Safetensors.read(path: Self.dir.appendingPathComponent("codecs-ref.safetensors").path)
        for (name, type) in [("f32", GGMLType.f32), ("f16", .f16), ("bf16", .bf16), ("q8_0", .q8_0), ("q4_0", .q4_0), ("tq1_0", .tq1_0), ("tq2_0", .tq2_0)] {
            let src = try ref.floats("src." + name)
            XCTAssertEqual(GGMLQuants.quantize(type, src), try f.bytes(name), name)
        }
    }

    /// Q6_K has no quantizer in gguf: ours must decode back within its 6-bit step.
    func testQ6KQuantizerRoundTrip() throws {
        let x = randomArray(1024, seed: 3)
        let d = GGMLQuants.quantize(.q6_K, x)
        XCTAssertEqual(d.count, 4 * 210)
        var y = [Float](repeating: 0, count: x.count)
        d.withUnsafeBytes { p in y.withUnsafeMutableBufferPointer { GGMLQuants.dequantize(.q6_K, p.baseAddress!, count: 1024, into: $0.baseAddress!) } }
        let amax = x.map(abs).max()!
        XCTAssertLessThan(maxAbsDiff(x, y), amax / 32)
    }

    func testI2SLayoutAsBitnetCpp() throws {
        // Element j of a 128-block: byte j % 32, bits 7-6 for j < 32 ... 1-0 for j >= 96; scale float at n/4.
        var x = [Float](repeating: 0, count: 256)
        x[0] = 0.5; x[32] = -0.5; x[97] = 0.5; x[128 + 31] = -0.5
        let d = GGMLQuants.quantize(.i2_s, x)
        XCTAssertEqual(d.count, 64 + 32)
        let b = [UInt8](d)
        XCTAssertEqual(b[0], 0b10_00_01_01)         // j=0 → +1 (2), j=32 → -1 (0), j=64, j=96 → 0 (1)
        XCTAssertEqual(b[1], 0b01_01_01_10)         // j=97 → +1 in bits 1-0
        XCTAssertEqual(b[32 + 31], 0b00_01_01_01)   // second block, j=31 → -1
        XCTAssertEqual(Float(bitPattern: UInt32(b[64]) | UInt32(b[65]) << 8 | UInt32(b[66]) << 16 | UInt32(b[67]) << 24), 0.5)
        let r = d.withUnsafeBytes { GGMLQuants.ternary(.i2_s, $0.baseAddress!, count: 256) }
        XCTAssertEqual(r.codes.map { Float($0) * 0.5 }, x)
    }

    func testWriterRoundTripsEveryValueAndType() throws {
        var g = GGUFWriter()
        let values: [(String, GGUFValue)] = [
            ("a.u8", .uint8(7)), ("a.i8", .int8(-7)), ("a.u16", .uint16(700)), ("a.i16", .int16(-700)), ("a.u32", .uint32(70000)),
            ("a.i32", .int32(-70000)), ("a.f32", .float32(1.5)), ("a.bool", .bool(false)), ("a.str", .string("ünïcode")),
            ("a.u64", .uint64(1 << 40)), ("a.i64", .int64(-(1 << 40))), ("a.f64", .float64(-2.25)),
            ("a.arr", .array(elementType: 8, [.string("x"), .string("")])),
            ("a.nested", .array(elementType: 9, [.array(elementType: 4, [.uint32(1)])])),
        ]
        for (k, v) in values { g.set(k, v) }
        let x = randomArray(2 * 256, seed: 9)
        for t in GGMLType.allCases { try g.addTensor(name: "t." + t.name, shape: [2, 256], type: t, values: x) }
        let f = try GGUFFile.parse(g.serialize(), path: "mem.gguf")
        for (k, v) in values { XCTAssertEqual(f[k], v, k) }
        for t in GGMLType.allCases {
            let info = try XCTUnwrap(f.tensor("t." + t.name))
            XCTAssertEqual(info.type, t); XCTAssertEqual(info.shape, [2, 256])
            XCTAssertEqual(info.offset % 32, 0)
            XCTAssertEqual(try f.bytes("t." + t.name), GGMLQuants.quantize(t, x), t.name)
        }
    }

    // MARK: - Ternary import

    func testTernaryLatentRecoversCodesAndScaleExactly() {
        var rng = SeededRNG(seed: 5)
        for (rows, cols, groups) in [(8, 16, 1), (8, 16, 4), (4, 4, 2)] {
            var codes = (0..<(rows * cols)).map { _ in Int8(truncatingIfNeeded: Int(rng.next() % 3) - 1) }
            var scales = (0..<groups).map { Float($0 + 1) * 0.0123 }
            if groups == 2 { for i in 0..<(rows * cols / 2) { codes[i] = 0 }; scales[0] = 0.5 }  // an all-zero group
            var w = [Float](repeating: 0, count: rows * cols)
            w.withUnsafeMutableBufferPointer { TernaryWeights.latent(codes: codes, scales: scales, into: $0.baseAddress!) }
            let r = w.withUnsafeBufferPointer { TernaryWeights.quantize($0.baseAddress!, rows: rows, cols: cols, arch: .b158, groups: groups) }
            XCTAssertEqual(r.codes, codes)
            for g in 0..<groups where !(groups == 2 && g == 0) { XCTAssertEqual(r.scales[g], scales[g], accuracy: scales[g] * 1e-6) }
        }
    }

    func testRotaryPermutationIsInvertedAndMatchesLlamaCpp() {
        // llama.cpp permute: w.reshape(heads, 2, hd/2, cols).swapaxes(1, 2): new row h*hd + 2i + j = old row h*hd + j*hd/2 + i.
        let heads = 2, hd = 4, cols = 1
        let w = (0..<(heads * hd)).map { Float($0) }
        let p = TernaryWeights.permuteRotary(w, heads: heads, rows: heads * hd, cols: cols)
        XCTAssertEqual(p, [0, 2, 1, 3, 4, 6, 5, 7])
        XCTAssertEqual(TernaryWeights.permuteRotary(p, heads: heads, rows: heads * hd, cols: cols, inverse: true), w)
    }

    // MARK: - Conversion round trips

    func testOwnModelThroughGGUFKeepsPredictions() throws {
        var c = tinyConfig(.b158, ffn: .relu2, vocab: 40, seq: 16)
        c.dim = 256; c.nHeads = 4; c.nKVHeads = 2; c.ffnDim = 256; c.tieEmbeddings = true
        let w = ModelWeights(config: c, seed: 11)
        let tokens = [1, 5, 9, 3, 30, 2]
        let base = try FormatLogitTests.ourLogits(w, tokens)
        for t in [GGMLType.tq1_0, .tq2_0, .i2_s, .f16, .f32, .bf16, .q8_0] {
            var o = GGUFModel.ExportOptions(); o.type = t; o.embeddingType = .f32
            let data = try GGUFModel.serialize(w, tokenizer: nil, options: o).serialize()
            let url = TestPaths.tempDir().appendingPathComponent("m-\(t.name).gguf")
            try data.write(to: url)
            let back = try GGUFModel.load(path: url.path).weights
            XCTAssertEqual(back.config, c, t.name)
            let logits = try FormatLogitTests.ourLogits(back, tokens)
            // Ternary and float types keep the codes; f16 β rounding moves logits by well under 1e-2.
            XCTAssertLessThan(maxAbsDiff(base, logits), 2e-2, t.name)
        }
    }

    /// stories260K (llama2.c, fp, SentencePiece vocabulary) → GGUF `llama` F32 → the same logits and tokens.
    func testLlama2cModelThroughGGUFKeepsLogitsAndTokenizer() throws {
        let m = try ModelFile.load(path: TestPaths.sharedFile("stories260K/stories260K.bin"),
                                   tokenizerPath: TestPaths.sharedFile("stories260K/tok512.bin"))
        var o = GGUFModel.ExportOptions(); o.type = .f32; o.embeddingType = .f32
        let url = TestPaths.tempDir().appendingPathComponent("stories.gguf")
        try GGUFModel.save(m.weights, tokenizer: m.tokenizer, to: url, options: o)
        let back = try GGUFModel.load(path: url.path)
        XCTAssertEqual(back.weights.config.arch, .fp)
        let tokens = [1, 403, 407, 261, 378]
        XCTAssertEqual(try FormatLogitTests.ourLogits(back.weights, tokens), try FormatLogitTests.ourLogits(m.weights, tokens))
        let text = "Once upon a time, a little girl named Lily saw a big dog."
        let tok = try XCTUnwrap(back.tokenizer)
        XCTAssertEqual(tok.encode(text), m.tokenizer!.encode(text))
        XCTAssertEqual(tok.bosID, 1); XCTAssertEqual(tok.eosID, 2)
        XCTAssertEqual(tok.decode(tok.encode(text)).trimmingCharacters(in: .whitespaces), text)
    }

    /// llama.cpp's optional per-tensor `blk.N.*.scale` multiplies the layer's output: it multiplies β on import.
    func testLlamaCppScaleTensorMultipliesBeta() throws {
        var c = tinyConfig(.b158, vocab: 40); c.tieEmbeddings = true
        let w = ModelWeights(config: c, seed: 4)
        var o = GGUFModel.ExportOptions(); o.type = .f32; o.embeddingType = .f32
        var g = try GGUFModel.serialize(w, tokenizer: nil, options: o)
        try g.addTensor(name: "blk.0.attn_v.scale", shape: [1], type: .f32, values: [2.5])
        let back = try GGUFModel.load(path: { let u = TestPaths.tempDir().appendingPathComponent("s.gguf"); try g.write(to: u); return u.path }()).weights
        let s = w.layout.slot("layers.0.attention.wv.weight")!
        let a = TernaryWeights.quantize(w.ptr + s.offset, rows: s.shape[0], cols: s.shape[1], arch: .b158, groups: 1)
        let b = TernaryWeights.quantize(back.ptr + s.offset, rows: s.shape[0], cols: s.shape[1], arch: .b158, groups: 1)
        XCTAssertEqual(a.codes, b.codes)
        XCTAssertEqual(b.scales[0], a.scales[0] * 2.5, accuracy: a.scales[0] * 1e-5)
    }

    /// SwiGLU ternary models go out as llama.cpp's `bitnet`, ReLU² ones as bitnet.cpp's `bitnet-25`, fp as `llama`.
    func testExportArchitectureFollowsTheNetwork() throws {
        for (arch, ffn, expected) in [(Architecture.b158, FFNKind.swiglu, "bitnet"), (.b158, .relu2, "bitnet-25"), (.fp, .swiglu, "llama")] {
            var c = tinyConfig(arch, ffn: ffn, vocab: 40); c.tieEmbeddings = true; c.subNorm = arch != .fp
            var o = GGUFModel.ExportOptions(); o.type = .f32
            let g = try GGUFModel.serialize(ModelWeights(config: c, seed: 2), tokenizer: nil, options: o)
            XCTAssertEqual(g.metadata.first { $0.key == "general.architecture" }?.value.string, expected)
        }
    }

    /// Version 2 files (same layout as 3 for little-endian) are read.
    func testReadsVersion2() throws {
        var d = try validFile()
        d[4] = 2
        XCTAssertEqual(try GGUFFile.parse(d, path: "v2.gguf").version, 2)
    }

    /// An fp (llama) model in Q8_0, Q6_K and Q4_0 comes back with its predictions within the quantization error.
    func testFullPrecisionModelInQTypes() throws {
        var c = tinyConfig(.fp, vocab: 40); c.dim = 256; c.nHeads = 4; c.nKVHeads = 4; c.ffnDim = 256; c.subNorm = false
        let w = ModelWeights(config: c, seed: 8)
        let tokens = [3, 1, 4, 1, 5]
        let base = try FormatLogitTests.ourLogits(w, tokens)
        // Relative logit error grows about 4x per bit removed: measured 0.4 %, 1.7 %, 7.5 %.
        var errors: [Float] = []
        for (t, tol) in [(GGMLType.q8_0, Float(0.01)), (.q6_K, 0.04), (.q4_0, 0.15)] {
            var o = GGUFModel.ExportOptions(); o.type = t; o.embeddingType = t
            let url = TestPaths.tempDir().appendingPathComponent("fp-\(t.name).gguf")
            try GGUFModel.save(w, tokenizer: nil, to: url, options: o)
            let back = try GGUFModel.load(path: url.path)
            XCTAssertEqual(back.weights.config.arch, .fp)
            let err = maxAbsDiff(base, try FormatLogitTests.ourLogits(back.weights, tokens)) / base.map(abs).max()!
            XCTAssertLessThan(err, tol, t.name)
            errors.append(err)
        }
        XCTAssertTrue(errors[0] < errors[1] && errors[1] < errors[2], "\(errors)")
    }

    func testUntiedTernaryModelIsRefusedForLlamaCpp() throws {
        var c = tinyConfig(.b158, vocab: 40); c.tieEmbeddings = false
        XCTAssertThrowsError(try GGUFModel.serialize(ModelWeights(config: c, seed: 1), tokenizer: nil)) { e in
            XCTAssertTrue("\(e)".contains("tie embeddings"), "\(e)")
        }
    }

    func testOwnModelThroughHFKeepsPredictions() throws {
        var c = tinyConfig(.b158, ffn: .relu2, vocab: 40, seq: 16)
        c.nKVHeads = c.nHeads / 2
        let w = ModelWeights(config: c, seed: 12)
        let tokens = [1, 5, 9, 3, 30, 2]
        let base = try FormatLogitTests.ourLogits(w, tokens)
        for (storage, bf16) in [(HFModel.LinearStorage.packed, false), (.master, false), (.packed, true)] {
            let dir = TestPaths.tempDir().appendingPathComponent("hf-\(storage)-\(bf16)")
            try HFModel.save(w, tokenizer: nil, to: dir, storage: storage, bf16: bf16)
            let back = try HFModel.load(path: dir.path).weights
            let logits = try FormatLogitTests.ourLogits(back, tokens)
            XCTAssertLessThan(maxAbsDiff(base, logits), bf16 ? 0.1 : 1e-3, "\(storage) bf16=\(bf16)")
        }
    }

    // MARK: - Hostile input

    func validFile() throws -> Data {
        var g = GGUFWriter()
        g.set("general.architecture", .string("llama"))
        g.set("x.arr", .array(elementType: 8, [.string("ab"), .string("c")]))
        try g.addTensor(name: "w", shape: [2, 256], type: .tq2_0, values: randomArray(512, seed: 1))
        return g.serialize()
    }

    /// Every truncation of a valid file is rejected with a named error (never a crash).
    func testEveryTruncationIsRejected() throws {
        let data = try validFile()
        let full = try GGUFFile.parse(data, path: "ok.gguf")
        let end = full.dataStart + full.tensors[0].offset + full.tensors[0].byteCount  // the writer pads after this
        for n in 0..<end where n < 200 || n % 7 == 0 || n == end - 1 {
            XCTAssertThrowsError(try GGUFFile.parse(data.prefix(n), path: "cut.gguf"), "prefix \(n)") { e in
                XCTAssertTrue("\(e)".contains("cut.gguf"), "\(e)")
            }
        }
    }

    /// Overwriting any header byte with extreme values gives an error or a file whose tensors stay in bounds.
    func testCorruptedHeaderBytesNeverCrash() throws {
        let data = try validFile()
        for i in 0..<min(data.count, 260) {
            for v: UInt8 in [0xFF, 0x00, 0x7F, 0x80] {
                var d = data
                d[i] = v
                if let f = try? GGUFFile.parse(d, path: "bad.gguf") {
                    for t in f.tensors { XCTAssertLessThanOrEqual(f.dataStart + t.offset + t.byteCount, d.count) }
                }
            }
        }
    }

    func testHostileCountsAreNamed() throws {
        func header(_ version: UInt32, _ tensors: UInt64, _ kvs: UInt64) -> Data {
            var d = Data("GGUF".utf8)
            withUnsafeBytes(of: version.littleEndian) { d.append(contentsOf: $0) }
            withUnsafeBytes(of: tensors.littleEndian) { d.append(contentsOf: $0) }
            withUnsafeBytes(of: kvs.littleEndian) { d.append(contentsOf: $0) }
            return d
        }
        func message(_ d: Data) -> String { do { _ = try GGUFFile.parse(d, path: "h.gguf"); return "" } catch { return "\(error)" } }
        XCTAssertTrue(message(header(3, UInt64.max, 0)).contains("tensor_count"))
        XCTAssertTrue(message(header(3, 0, 1 << 62)).contains("metadata_kv_count"))
        XCTAssertTrue(message(header(1, 0, 0)).contains("version 1"))
        XCTAssertTrue(message(header(UInt32(3).byteSwapped, 0, 0)).contains("big-endian"))
        XCTAssertTrue(message(Data("GGML".utf8) + Data(count: 20)).contains("magic"))
        // A string whose length is a lie.
        var d = header(3, 0, 1)
        withUnsafeBytes(of: UInt64(1 << 50).littleEndian) { d.append(contentsOf: $0) }
        d.append(Data(count: 16))
        XCTAssertTrue(message(d).contains("string length"), message(d))
    }

    /// A hyperparameter that lies (a huge FFN) is caught against the tensors before any allocation.
    func testLyingHyperparameterIsCaughtBeforeAllocating() throws {
        var d = try Data(contentsOf: Self.dir.appendingPathComponent("model-tq2_0.gguf"))
        let key = Data("bitnet.feed_forward_length".utf8)
        let at = try XCTUnwrap(d.range(of: key)).upperBound
        XCTAssertEqual(d[at], 4)  // uint32
        d.replaceSubrange((at + 4)..<(at + 8), with: [0, 0, 0, 1])  // 1 << 24
        let url = TestPaths.tempDir().appendingPathComponent("lie.gguf")
        try d.write(to: url)
        XCTAssertThrowsError(try GGUFModel.load(path: url.path)) { e in
            XCTAssertTrue("\(e)".contains("lie.gguf") && "\(e)".contains("ffn"), "\(e)")
        }
    }

    /// A long array under a key nothing reads is validated and dropped (it used to cost ~25x its size); any array past
    /// the length limit is refused, naming the key; a vocabulary array is still read.
    func testLongMetadataArraysAreBounded() throws {
        func gguf(_ kvs: [(String, UInt32, UInt64, (inout Data) -> Void)]) -> Data {
            var d = Data("GGUF".utf8)
            func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
            func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
            u32(3); u64(0); u64(UInt64(kvs.count))
            for (key, elementType, n, items) in kvs {
                u64(UInt64(key.utf8.count)); d.append(contentsOf: Array(key.utf8))
                u32(9); u32(elementType); u64(n)
                items(&d)
            }
            d.append(Data(count: (32 - d.count % 32) % 32))   // the (empty) data section starts aligned
            return d
        }
        let n = 20_000_000
        let blob = gguf([("junk.blob", 0, UInt64(n), { $0.append(Data(count: n)) }),
                         ("tokenizer.ggml.scores", 6, 3, { $0.append(Data(count: 12)) })])
        let f = try GGUFFile.parse(blob, path: "blob.gguf")
        XCTAssertNil(f["junk.blob"])
        XCTAssertEqual(f.skippedArrays.map(\.key), ["junk.blob"])
        XCTAssertEqual(f.skippedArrays.map(\.count), [n])
        XCTAssertEqual(f["tokenizer.ggml.scores"]?.array, [.float32(0), .float32(0), .float32(0)])
        // Skipped values are still checked: a bad bool inside is named.
        let bools = gguf([("junk.flags", 7, 5000, { $0.append(Data(repeating: 1, count: 4999) + [2]) })])
        XCTAssertThrowsError(try GGUFFile.parse(bools, path: "b.gguf")) { XCTAssertTrue("\($0)".contains("junk.flags[4999]: bool byte is 2"), "\($0)") }
        let long = (1 << 21) + 1
        let tokens = gguf([("tokenizer.ggml.token_type", 0, UInt64(long), { $0.append(Data(count: long)) })])
        XCTAssertThrowsError(try GGUFFile.parse(tokens, path: "t.gguf")) { error in
            XCTAssertTrue("\(error)".contains("tokenizer.ggml.token_type: array of \(long) elements is longer than the 2097152"), "\(error)")
        }
    }
}
