import Foundation
import XCTest

/// The layering of docs/ARCHITECTURE.md, checked against Package.swift and every source file's imports.
final class LayeringTests: XCTestCase {
    /// Bottom to top; a target may depend only on targets earlier in this list.
    static let layers = ["CBitNetKernels", "BitNetKernels", "BitNetCore", "BitNetTokenizers", "BitNetFormats", "BitNetInference",
                         "BitNetTraining", "BitNetEvaluation", "BitNet", "BitNetServer", "BitNetTools", "bitnet"]

    /// Each target's project dependencies as Package.swift declares them.
    static func declaredDependencies() throws -> [String: Set<String>] {
        let manifest = try String(contentsOf: TestPaths.repoRoot.appendingPathComponent("Package.swift"), encoding: .utf8)
        var deps: [String: Set<String>] = [:]
        let target = try NSRegularExpression(pattern: #"\.(?:executableTarget|target)\(\s*name:\s*"(\w+)"(?:,\s*dependencies:\s*\[([^\]]*)\])?"#)
        let ns = manifest as NSString
        for m in target.matches(in: manifest, range: NSRange(location: 0, length: ns.length)) {
            let name = ns.substring(with: m.range(at: 1))
            let list = m.range(at: 2).location == NSNotFound ? "" : ns.substring(with: m.range(at: 2))
            // Quoted names that are not inside .product(...): project targets.
            let plain = list.replacingOccurrences(of: #"\.product\([^)]*\)"#, with: "", options: .regularExpression)
            let quoted = try NSRegularExpression(pattern: #""(\w+)""#)
            deps[name] = Set(quoted.matches(in: plain, range: NSRange(location: 0, length: (plain as NSString).length))
                .map { (plain as NSString).substring(with: $0.range(at: 1)) })
        }
        return deps
    }

    func testPackageDependenciesPointDown() throws {
        let deps = try Self.declaredDependencies()
        XCTAssertEqual(Set(deps.keys), Set(Self.layers), "Package.swift's targets and the layer list differ")
        for (target, ds) in deps {
            let rank = try XCTUnwrap(Self.layers.firstIndex(of: target))
            for d in ds {
                let r = try XCTUnwrap(Self.layers.firstIndex(of: d), "\(target) depends on unknown target \(d)")
                XCTAssertLessThan(r, rank, "\(target) depends on \(d), which is not below it")
            }
        }
    }

    func testEveryImportIsADeclaredDependency() throws {
        let deps = try Self.declaredDependencies()
        let sources = TestPaths.repoRoot.appendingPathComponent("Sources")
        var checked = 0
        for target in Self.layers where target != "CBitNetKernels" {
            let dir = sources.appendingPathComponent(target)
            let files = try XCTUnwrap(FileManager.default.enumerator(atPath: dir.path)).compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }
            for f in files {
                let text = try String(contentsOf: dir.appendingPathComponent(f), encoding: .utf8)
                for line in text.split(separator: "\n") where line.hasPrefix("import ") || line.hasPrefix("@_exported import ") {
                    let module = String(line.split(separator: " ").last!)
                    guard Self.layers.contains(module) else { continue }   // Foundation, Hummingbird, ...
                    XCTAssertTrue(deps[target]!.contains(module), "\(target)/\(f) imports \(module), which Package.swift does not list")
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 100)
    }

    /// Benchmarks, profiles and A/B harnesses live in BitNetTools, not in the libraries.
    func testLibrariesHoldNoBenchmarks() throws {
        let sources = TestPaths.repoRoot.appendingPathComponent("Sources")
        for target in Self.layers where !["BitNetTools", "bitnet"].contains(target) {
            let files = try FileManager.default.contentsOfDirectory(atPath: sources.appendingPathComponent(target).path)
            for f in files { XCTAssertNil(f.range(of: "bench|profile", options: [.regularExpression, .caseInsensitive]), "\(target)/\(f)") }
        }
    }
}
