import Foundation
import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

/// A process id no process has now: the writer of a temporary file a killed run left behind.
func pidOfNoProcess() -> Int32 {
    var pid: Int32 = 4_000_000
    while kill(pid, 0) == 0 || errno != ESRCH { pid -= 1 }
    return pid
}

/// Paths and small helpers shared by the tests.
enum TestPaths {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let sharedData = repoRoot.deletingLastPathComponent().appendingPathComponent("shared/data")

    static func sharedFile(_ rel: String) throws -> String {
        let p = sharedData.appendingPathComponent(rel).path
        guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("shared data \(rel) not present") }
        return p
    }

    static func tempDir(_ name: String = #function) -> URL {
        let u = FileManager.default.temporaryDirectory.appendingPathComponent("bitnet-tests-\(getpid())-\(name.filter { $0.isLetter || $0.isNumber })-\(UInt32.random(in: 0...UInt32.max))")
        try? FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
        return u
    }
}

/// A tiny config for fast tests.
func tinyConfig(_ arch: Architecture, ffn: FFNKind = .swiglu, vocab: Int = 37, seq: Int = 16) -> ModelConfig {
    ModelConfig(arch: arch, vocabSize: vocab, dim: 16, nLayers: 2, nHeads: 4, nKVHeads: 2, ffnDim: 24, maxSeqLen: seq, ffn: ffn,
                tieEmbeddings: arch != .b158)
}

/// Random values in [-scale, scale).
func randomArray(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var rng = SeededRNG(seed: seed)
    return (0..<n).map { _ in (rng.nextUniform() * 2 - 1) * scale }
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}
