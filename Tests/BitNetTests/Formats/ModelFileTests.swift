import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats

/// The project's own model file against hostile contents: sizes come from the tensors in the file, never from the
/// config alone, and non-finite weights are named.
final class ModelFileTests: XCTestCase {
    /// A small file whose config claims a huge model is refused before anything of the config's size is allocated
    /// (a 16M-token vocabulary at dim 4096 would be 256 GB of f32).
    func testConfigLargerThanItsTensorsIsRefusedBeforeAllocating() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let small = ModelWeights(config: tinyConfig(.b158), seed: 3)
        var huge = small.config
        huge.vocabSize = 1 << 24; huge.dim = 4096; huge.nHeads = 32; huge.nKVHeads = 32
        let tensors = small.layout.slots.map { s in
            (name: s.name, shape: s.shape, payload: Safetensors.Payload.f32Pointer(UnsafePointer(small.ptr + s.offset), s.count))
        }
        let file = dir.appendingPathComponent("claims-256GB.safetensors")
        try Safetensors.serialize(tensors, metadata: ["format": "bitnet-swift", "bitnet.config": huge.jsonString()]).write(to: file)
        XCTAssertThrowsError(try ModelFile.load(path: file.path)) { error in
            XCTAssertTrue("\(error)".contains("tok_embeddings.weight: shape [37, 16], config needs [16777216, 4096]"), "\(error)")
        }
        // Missing tensors are named the same way.
        let one = [tensors[0]]
        try Safetensors.serialize(one, metadata: ["format": "bitnet-swift", "bitnet.config": small.config.jsonString()]).write(to: file)
        XCTAssertThrowsError(try ModelFile.load(path: file.path)) { XCTAssertTrue("\($0)".contains("tensor missing"), "\($0)") }
        // A NaN in a weight is named with its tensor.
        small.ptr[small.layout.layers[1].wk + 5] = .nan
        try ModelFile.save(small, tokenizer: nil, to: file)
        XCTAssertThrowsError(try ModelFile.load(path: file.path)) { error in
            XCTAssertTrue("\(error)".contains("layers.1.attention.wk.weight: non-finite value nan at index 5"), "\(error)")
        }
    }
}
