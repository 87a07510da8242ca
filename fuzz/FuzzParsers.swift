import Foundation

/// libFuzzer entry: the first byte picks the parser (GGUF or safetensors); the rest is the file.
/// Build and run with scripts/fuzz.sh; crashers go to Tests/BitNetTests/Fixtures/formats/crashers/.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    guard count > 0 else { return 0 }
    let data = Data(bytes: start + 1, count: count - 1)
    if start.load(as: UInt8.self) & 1 == 0 {
        if let f = try? GGUFFile.parse(data, path: "fuzz.gguf") {
            for t in f.tensors {
                precondition(f.dataStart + t.offset + t.byteCount <= data.count, "tensor out of bounds")
                if t.count <= 1 << 16 { _ = try? f.floats(t.name) }
            }
        }
    } else {
        let url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("fuzz-\(getpid()).safetensors")
        try? data.write(to: url)
        if let f = try? Safetensors.read(path: url.path) {
            for name in f.entries.keys where f.entries[name]!.end - f.entries[name]!.begin <= 1 << 20 { _ = try? f.floats(name) }
        }
    }
    return 0
}
