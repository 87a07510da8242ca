import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

/// Hugging Face checkpoints: shards, the weight_scale direction of each linear class, packing, hostile files.
final class HFModelTests: XCTestCase {
    static let packed = TestPaths.fixtures.appendingPathComponent("formats/hf-packed")

    /// A copy of the packed fixture split into two shards with an index.
    func testShardedCheckpointLoadsTheSameWeights() throws {
        let dir = TestPaths.tempDir()
        let st = try Safetensors.read(path: Self.packed.appendingPathComponent("model.safetensors").path)
        let names = st.entries.keys.sorted()
        var map: [String: String] = [:]
        for (i, half) in [Array(names.prefix(names.count / 2)), Array(names.dropFirst(names.count / 2))].enumerated() {
            let file = "model-0000\(i + 1)-of-00002.safetensors"
            let tensors = try half.map { n in (name: n, shape: st.entries[n]!.shape, payload: Safetensors.Payload.raw(st.entries[n]!.dtype, try st.rawBytes(n))) }
            try Safetensors.serialize(tensors, metadata: ["format": "pt"]).write(to: dir.appendingPathComponent(file))
            for n in half { map[n] = file }
        }
        try JSONSerialization.data(withJSONObject: ["metadata": [:], "weight_map": map]).write(to: dir.appendingPathComponent("model.safetensors.index.json"))
        try FileManager.default.copyItem(at: Self.packed.appendingPathComponent("config.json"), to: dir.appendingPathComponent("config.json"))
        let a = try HFModel.load(path: Self.packed.path).weights, b = try HFModel.load(path: dir.path).weights
        XCTAssertEqual(Array(UnsafeBufferPointer(start: a.ptr, count: a.layout.totalCount)),
                       Array(UnsafeBufferPointer(start: b.ptr, count: b.layout.totalCount)))
        // A shard name that leaves the folder is refused.
        map[names[0]] = "../evil.safetensors"
        try JSONSerialization.data(withJSONObject: ["weight_map": map]).write(to: dir.appendingPathComponent("model.safetensors.index.json"))
        XCTAssertThrowsError(try HFModel.load(path: dir.path)) { XCTAssertTrue("\($0)".contains("shard"), "\($0)") }
    }

    /// bitlinear divides by weight_scale, autobitlinear (offline) multiplies: the same file read both ways gives
    /// scales that are reciprocal, i.e. the reader honours the direction.
    func testWeightScaleDirectionFollowsLinearClass() throws {
        let dir = TestPaths.tempDir()
        for f in ["model.safetensors"] { try FileManager.default.copyItem(at: Self.packed.appendingPathComponent(f), to: dir.appendingPathComponent(f)) }
        var cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.packed.appendingPathComponent("config.json"))) as! [String: Any]
        var q = cfg["quantization_config"] as! [String: Any]
        q["linear_class"] = "autobitlinear"
        cfg["quantization_config"] = q
        try JSONSerialization.data(withJSONObject: cfg).write(to: dir.appendingPathComponent("config.json"))
        let st = try Safetensors.read(path: Self.packed.appendingPathComponent("model.safetensors").path)
        let ws = try st.floats("model.layers.0.self_attn.v_proj.weight_scale")[0]
        let name = "layers.0.attention.wv.weight"
        func beta(_ w: ModelWeights) -> Float {
            let s = w.layout.slot(name)!
            return TernaryWeights.quantize(w.ptr + s.offset, rows: s.shape[0], cols: s.shape[1], arch: .b158, groups: 1).scales[0]
        }
        XCTAssertEqual(beta(try HFModel.load(path: Self.packed.path).weights), 1 / ws, accuracy: 1e-6 / ws)
        XCTAssertEqual(beta(try HFModel.load(path: dir.path).weights), ws, accuracy: 1e-6 * ws)
    }

    func testPackingIsTransformersLayout() {
        // rows 0..7, 2 packed rows: byte r holds rows r, r+2, r+4, r+6 in bits 0-1, 2-3, 4-5, 6-7 (code + 1).
        let codes: [Int8] = [1, 0, -1, 1, 0, 0, -1, 1]
        let d = HFModel.pack(codes, rows: 8, cols: 1)
        XCTAssertEqual([UInt8](d), [0b00_01_00_10, 0b10_01_10_01])
        XCTAssertEqual(try HFModel.unpack(d, rows: 8, cols: 1, bad: { .invalidArgument($0) }), codes)
        XCTAssertThrowsError(try HFModel.unpack(Data([0xFF]), rows: 4, cols: 1, bad: { .invalidArgument($0) }))
    }

    func testHostileConfigsAreNamed() throws {
        let dir = TestPaths.tempDir()
        try FileManager.default.copyItem(at: Self.packed.appendingPathComponent("model.safetensors"), to: dir.appendingPathComponent("model.safetensors"))
        let base = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.packed.appendingPathComponent("config.json"))) as! [String: Any]
        for (key, value, mentions) in [("hidden_size", -5 as Any, "hidden_size"), ("num_attention_heads", 3, "shapes"),
                                       ("hidden_act", "gelu", "hidden_act"), ("model_type", "gpt2", "model_type"),
                                       ("vocab_size", 1 << 40, "vocab_size")] {
            var c = base
            c[key] = value
            try JSONSerialization.data(withJSONObject: c).write(to: dir.appendingPathComponent("config.json"))
            XCTAssertThrowsError(try HFModel.load(path: dir.path), key) { XCTAssertTrue("\($0)".contains(mentions), "\($0)") }
        }
        try Data("{not json".utf8).write(to: dir.appendingPathComponent("config.json"))
        XCTAssertThrowsError(try HFModel.load(path: dir.path)) { XCTAssertTrue("\($0)".contains("config.json"), "\($0)") }
    }
}
