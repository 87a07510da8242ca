import Foundation

// libFuzzer entry of every harness in Tests/BitNetTests/Formats/FuzzTargets.swift (compiled into this module by
// scripts/fuzz.sh): BITNET_FUZZ_HARNESS names the harness; with BITNET_FUZZ_SEEDS=DIR the binary writes that harness's
// generated seeds into DIR and exits; with BITNET_FUZZ_LIST=1 it prints every harness and its -max_len and exits.

nonisolated(unsafe) var selected: FuzzTargets.Harness?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>,
                           _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    let env = ProcessInfo.processInfo.environment
    if env["BITNET_FUZZ_LIST"] != nil {
        print(FuzzTargets.harnesses.map { "\($0.name) \($0.maxLen)" }.joined(separator: "\n"))
        exit(0)
    }
    guard let name = env["BITNET_FUZZ_HARNESS"], let h = FuzzTargets.harness(name) else {
        let names = FuzzTargets.harnesses.map(\.name).joined(separator: " ")
        FileHandle.standardError.write(Data("set BITNET_FUZZ_HARNESS to one of: \(names)\n".utf8))
        exit(2)
    }
    if let dir = env["BITNET_FUZZ_SEEDS"] {
        for (i, d) in h.seeds().enumerated() {
            try! d.prefix(h.maxLen).write(to: URL(fileURLWithPath: dir).appendingPathComponent("seed-\(h.name)-\(i)"))
        }
        exit(0)
    }
    selected = h
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    selected!.run(Data(bytes: start, count: count))
    return 0
}
