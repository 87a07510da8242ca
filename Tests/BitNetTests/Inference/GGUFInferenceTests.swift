import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools
import BitNetKernels
import CBitNetKernels

/// `InferenceModel(gguf:)` serves I2_S linears and F16 embeddings from the file mapping: its logits equal those of the
/// decode-and-repack path (`GGUFModel.load` + `InferenceModel(weights:)`), the mapped bytes are exactly the I2_S codes
/// and F16 tensors, and bad files give named errors.
final class GGUFInferenceTests: XCTestCase {
    static let fixture = TestPaths.fixtures.appendingPathComponent("formats/model-i2_s.gguf").path

    /// Logits of every position decoded one token at a time, then of the same tokens as one prefill (the batched
    /// GEMM path), concatenated.
    static func logits(_ m: InferenceModel, _ tokens: [Int]) throws -> [Float] {
        let s = InferenceSession(model: m)
        var out: [Float] = []
        for t in tokens { out += Array(try s.step(token: t)) }
        s.reset()
        return out + (try s.prefillLogits(tokens: tokens))
    }

    /// The repacked model of the same file, head stored as `head`.
    static func repacked(_ path: String, head: HeadFormat) throws -> InferenceModel {
        let m = InferenceModel(weights: try GGUFModel.load(path: path).weights)
        try m.setHeadFormat(head)
        return m
    }

    /// Bytes of the I2_S codes whose rows are whole 128-blocks, plus the F16 embedding (when counted).
    static func mappableBytes(_ f: GGUFFile, embedding: Bool) -> Int {
        f.tensors.reduce(0) { sum, t in
            if t.type == .i2_s && t.dims[0] % 128 == 0 { return sum + t.count / 4 }
            if embedding && t.type == .f16 && t.name == "token_embd.weight" { return sum + t.count * 2 }
            return sum
        }
    }

    /// Mapped and repacked logits are bit for bit equal on these files: the same codes, and β read from the file
    /// equals the absmean the repacked path re-derives from its latent weights (the codes are exact either way; a
    /// last-bit difference of β on some other file would move logits by float rounding only).
    func assertSameLogits(_ a: [Float], _ b: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        let scale = b.map(abs).max() ?? 1
        XCTAssertEqual(a, b, what, file: file, line: line)
        print(String(format: "%@: max |mapped - repacked| logit difference %.3g (max |logit| %.3g)", what, maxAbsDiff(a, b), scale))
    }

    /// bitnet.cpp's I2_S fixture (bitnet-25, rotate_half q/k, F16 tied embedding): every linear and the embedding are
    /// read in place and the logits equal the repacked model's.
    func testI2SFixtureIsServedFromTheMappingWithTheSameLogits() throws {
        let f = try GGUFFile.read(path: Self.fixture)
        let mapped = try InferenceModel(gguf: f)
        XCTAssertEqual(mapped.headFormat, .f16)
        let expected = Self.mappableBytes(f, embedding: true)
        XCTAssertEqual(expected, 2 * (4 * 256 * 256 + 2 * 128 * 256 + 256 * 256) / 4 + 256 * 256 * 2)
        XCTAssertEqual(mapped.fileBackedBytes, expected)
        // `--ternary-layout auto` keeps mapped linears in place (t2); the repacked model's 128- and 256-column rows
        // would take as many or more bytes in t3, so it stays t2 too.
        XCTAssertEqual(mapped.preferredTernaryLayout, .t2)
        XCTAssertEqual(try Self.repacked(Self.fixture, head: .f16).preferredTernaryLayout, .t2)
        let tokens = try FormatLogitTests.reference().tokens
        let a = try Self.logits(mapped, tokens), b = try Self.logits(try Self.repacked(Self.fixture, head: .f16), tokens)
        assertSameLogits(a, b, "fixture")
        // The mapped model still matches transformers' logits as the repacked one does (FormatLogitTests).
        XCTAssertEqual(a.count, 2 * tokens.count * 256)
    }

    /// A model written by our writer (`bitnet convert --to gguf --type i2_s`; the reader accepts I2_S rows of whole
    /// 128-blocks only, so every linear maps), and as TQ2_0 (decoded and repacked); also an explicit head format.
    func testOwnI2SFileMapsWhatTheLayoutAllows() throws {
        var c = tinyConfig(.b158, ffn: .swiglu, vocab: 50, seq: 16)
        c.dim = 256; c.nHeads = 4; c.nKVHeads = 2; c.ffnDim = 256; c.tieEmbeddings = true; c.subNorm = true
        let w = ModelWeights(config: c, seed: 21)
        let dir = TestPaths.tempDir()
        let tokens = [1, 7, 3, 44, 12, 9, 0, 31]
        for type in [GGMLType.i2_s, .tq2_0] {
            var o = GGUFModel.ExportOptions(); o.type = type
            let url = dir.appendingPathComponent("m-\(type.name).gguf")
            try GGUFModel.save(w, tokenizer: nil, to: url, options: o)
            let f = try GGUFFile.read(path: url.path)
            let mapped = try InferenceModel(gguf: f)
            let linears = type == .i2_s ? c.nLayers * (c.dim * c.dim + 2 * c.kvDim * c.dim + c.dim * c.dim + 3 * c.ffnDim * c.dim) / 4 : 0
            XCTAssertEqual(Self.mappableBytes(f, embedding: false), linears, type.name)
            XCTAssertEqual(mapped.fileBackedBytes, linears + c.vocabSize * c.dim * 2, type.name)
            // Mapped I2_S linears and the F16 embedding stay in the file; TQ2_0, repacked, goes to arenas.
            let owned = c.nLayers * (c.dim * c.dim + 2 * c.kvDim * c.dim + c.dim * c.dim + 3 * c.ffnDim * c.dim) / 4
            XCTAssertEqual(mapped.arenaStats.bytes, type == .i2_s ? 0 : owned, type.name)
            assertSameLogits(try Self.logits(mapped, tokens), try Self.logits(try Self.repacked(url.path, head: .f16), tokens), type.name)
            // Asking for another head format converts the embedding (not mapped); linears stay mapped.
            let q8 = try InferenceModel(gguf: f, headFormat: .q8)
            XCTAssertEqual(q8.headFormat, .q8)
            XCTAssertEqual(q8.fileBackedBytes, linears, type.name)
            // Converted row block by row block straight into an arena of its own (no f32 copy, no array left behind).
            XCTAssertEqual(q8.arenaStats.bytes, (type == .i2_s ? 0 : owned) + c.vocabSize * BlockQuantFormat.q8.rowStride(cols: c.dim), type.name)
            assertSameLogits(try Self.logits(q8, tokens), try Self.logits(try Self.repacked(url.path, head: .q8), tokens), "\(type.name) q8")
        }
    }

    /// An I2_S file with rows wide enough for t3 to take fewer bytes (640 columns: 128 bytes per row against 160):
    /// `auto` picks t3 where its kernels are fast, even though the linears are mapped; converting copies them into
    /// arenas, leaves only the embedding file-backed, releases the linears' file pages, and keeps the logits bit for bit.
    func testMappedI2SConvertsToBase3AndReleasesItsPages() throws {
        var c = tinyConfig(.b158, ffn: .relu2, vocab: 40, seq: 16)
        c.dim = 640; c.nHeads = 5; c.nKVHeads = 1; c.ffnDim = 640; c.tieEmbeddings = true; c.subNorm = true
        let url = TestPaths.tempDir().appendingPathComponent("wide-i2_s.gguf")
        var o = GGUFModel.ExportOptions(); o.type = .i2_s
        try GGUFModel.save(ModelWeights(config: c, seed: 5), tokenizer: nil, to: url, options: o)
        let m = try InferenceModel(gguf: try GGUFFile.read(path: url.path))
        let linearBytes = c.nLayers * (c.dim * c.dim + 2 * c.kvDim * c.dim + c.dim * c.dim + 3 * c.ffnDim * c.dim) / 4
        let embeddingBytes = c.vocabSize * c.dim * 2
        XCTAssertEqual(m.fileBackedBytes, linearBytes + embeddingBytes)
        XCTAssertEqual(m.preferredTernaryLayout, TernaryKernels.base3IsFast ? .t3 : .t2)
        let tokens = [1, 7, 3, 39, 12, 0]
        let mapped = try Self.logits(m, tokens)

        // A mapped tensor's pages can be dropped and read back unchanged; an owned buffer has no file pages.
        let wq = m.layers[0].wq.packed!.storage, before = wq.array
        XCTAssertGreaterThan(wq.releaseFilePages(), 0)
        XCTAssertEqual(wq.array, before)
        XCTAssertEqual(KernelBuffer<UInt8>(before).releaseFilePages(), 0)

        // The file mapping's resident bytes (one mapping of the whole file) before and after the conversion.
        let resident = { wq.withUnsafeBufferPointer { Int(bitnet_mapping_resident_bytes($0.baseAddress!, $0.count)) } }
        _ = try Self.logits(m, tokens)
        let residentBefore = resident()
        m.setTernaryLayout(.t3)
        let residentAfter = resident()
        if residentBefore > 0 {   // smaps readable
            XCTAssertGreaterThanOrEqual(residentBefore, linearBytes)
            XCTAssertLessThanOrEqual(residentAfter, residentBefore - linearBytes + 4096 * 2 * 7 * c.nLayers)
        }
        XCTAssertEqual(m.ternaryLayout, .t3)
        XCTAssertEqual(m.fileBackedBytes, embeddingBytes)
        // Rows per layer: Wq, Wo, W2 (dim), Wk, Wv (kvDim), W1, W3 (ffn), each of 640 columns in two 64-byte t3 blocks.
        XCTAssertEqual(m.arenaStats.bytes, c.nLayers * (3 * c.dim + 2 * c.kvDim + 2 * c.ffnDim) * 128)
        XCTAssertEqual(try Self.logits(m, tokens), mapped)

        // preferBase3 converts each layer as it loads (what the CLI asks for with auto): the same model, never held
        // in both layouts.
        if TernaryKernels.base3IsFast {
            let direct = try InferenceModel(gguf: try GGUFFile.read(path: url.path), preferBase3: true)
            XCTAssertEqual(direct.ternaryLayout, .t3)
            XCTAssertEqual(direct.fileBackedBytes, embeddingBytes)
            XCTAssertEqual(direct.arenaStats.bytes, m.arenaStats.bytes)
            XCTAssertEqual(try Self.logits(direct, tokens), mapped)
        }
    }

    /// The CLI's entry point maps GGUF files and keeps the embedded tokenizer; the same bytes parsed from memory
    /// give the same model with nothing file-backed.
    func testLoadInferenceAndInMemoryFiles() throws {
        let loaded = try ModelFile.loadInference(path: Self.fixture)
        XCTAssertGreaterThan(loaded.model.fileBackedBytes, 0)
        let f = try GGUFFile.parse(Data(contentsOf: URL(fileURLWithPath: Self.fixture)), path: "memory.gguf")
        let copied = try InferenceModel(gguf: f)
        XCTAssertEqual(copied.fileBackedBytes, 0)
        let tokens = [3, 9, 250, 17]
        XCTAssertEqual(try Self.logits(copied, tokens), try Self.logits(try Self.repacked(Self.fixture, head: .f16), tokens))
        XCTAssertEqual(try Self.logits(loaded.model, tokens), try Self.logits(try InferenceModel(gguf: try GGUFFile.read(path: Self.fixture)), tokens))
    }

    /// The row order of a mapped rotate_half projection is the decoder's permutation.
    func testRotaryRowOrderIsTheDecodersPermutation() {
        let (heads, rows) = (3, 12)
        let order = GGUFModel.rotaryRowOrder(heads: heads, rows: rows)
        let fileRows = (0..<rows).map { Float($0) }
        XCTAssertEqual(order.map { Float($0) }, TernaryWeights.permuteRotary(fileRows, heads: heads, rows: rows, cols: 1))
    }

    /// A 2-bit field of 3 is not a ternary code: both loaders name the tensor and the element.
    func testFieldThreeIsRejectedByBothLoaders() throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: Self.fixture))
        let f0 = try GGUFFile.parse(data, path: "x")
        let t = try XCTUnwrap(f0.tensor("blk.1.ffn_up.weight"))
        data[f0.dataStart + t.offset + 5] |= 0b1100_0000  // element 5 of the first block
        let url = TestPaths.tempDir().appendingPathComponent("three.gguf")
        try data.write(to: url)
        for load in [{ _ = try InferenceModel(gguf: try GGUFFile.read(path: url.path)) }, { _ = try GGUFModel.load(path: url.path) }] {
            XCTAssertThrowsError(try load()) { e in
                XCTAssertTrue("\(e)".contains("blk.1.ffn_up.weight") && "\(e)".contains("code 3 at element 5"), "\(e)")
            }
        }
        XCTAssertFalse([UInt8](repeating: 0x55, count: 17).withUnsafeBufferPointer(GGUFModel.hasTwoBitField3))
        XCTAssertTrue(([UInt8](repeating: 0x66, count: 16) + [0x30]).withUnsafeBufferPointer(GGUFModel.hasTwoBitField3))
        XCTAssertTrue(([UInt8](repeating: 0x00, count: 3) + [0x0C] + [UInt8](repeating: 0, count: 12)).withUnsafeBufferPointer(GGUFModel.hasTwoBitField3))
    }

    /// Bad scales and values are named errors; a truncated file is refused before anything is mapped.
    func testBadFilesGiveNamedErrors() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.fixture))
        let f0 = try GGUFFile.parse(data, path: "x")
        let dir = TestPaths.tempDir()
        func expectError(_ d: Data, _ name: String, mentions: String) throws {
            let url = dir.appendingPathComponent(name)
            try d.write(to: url)
            XCTAssertThrowsError(try ModelFile.loadInference(path: url.path), name) { e in
                XCTAssertTrue(e is BitNetError && "\(e)".contains(mentions), "\(name): \(e)")
            }
        }
        // NaN scale after the codes of an I2_S tensor.
        let q = try XCTUnwrap(f0.tensor("blk.0.attn_q.weight"))
        var d = data
        d.replaceSubrange((f0.dataStart + q.offset + q.count / 4)..<(f0.dataStart + q.offset + q.count / 4 + 4), with: [0, 0, 0xC0, 0x7F])
        try expectError(d, "nan-scale.gguf", mentions: "blk.0.attn_q.weight")
        // An infinite half in the mapped F16 embedding.
        let e = try XCTUnwrap(f0.tensor("token_embd.weight"))
        d = data
        d.replaceSubrange((f0.dataStart + e.offset + 20)..<(f0.dataStart + e.offset + 22), with: [0x00, 0x7C])
        try expectError(d, "inf-embedding.gguf", mentions: "token_embd.weight")
        // Truncations inside the tensor data.
        for cut in [data.count - 1, data.count - 5000, f0.dataStart + q.offset + 100] {
            try expectError(data.prefix(cut), "cut-\(cut).gguf", mentions: "truncated")
        }
    }
}
