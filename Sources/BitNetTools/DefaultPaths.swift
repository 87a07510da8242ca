import Foundation
import BitNetCore
import BitNetEvaluation

/// Where the tool's defaults point: the shared corpora, the zero-shot cache, the PyTorch oracle and its script.
/// They are found from the running executable (its checkout), never from the current directory, so
/// `cd /tmp && bitnet eval wikitext --model M` reads the same file as running it in the checkout.
/// `BITNET_DATA_DIR` and `BITNET_ZERO_SHOT_DIR` override the data folders.
package enum DefaultPaths {
    /// The checkout the executable was built in: the first folder above it whose `Package.swift` is this package's
    /// (`…/.build/release/bitnet` → `…`); nil for a binary copied elsewhere.
    package static let checkout: URL? = {
        guard let exe = Bundle.main.executableURL?.resolvingSymlinksInPath() else { return nil }
        return checkout(above: exe)
    }()

    package static func checkout(above file: URL) -> URL? {
        var dir = file.deletingLastPathComponent()
        while dir.pathComponents.count > 1 {
            let manifest = dir.appendingPathComponent("Package.swift")
            if let text = try? String(contentsOf: manifest, encoding: .utf8), text.contains("\"BitNetCore\"") { return dir }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }

    /// The shared corpora: `$BITNET_DATA_DIR`, else `shared/data` beside the checkout (`../shared/data` from it),
    /// else inside it (`shared/data`), else `../shared/data` from the current directory as a last resort.
    package static var sharedData: String {
        if let env = ProcessInfo.processInfo.environment["BITNET_DATA_DIR"], !env.isEmpty { return env }
        if let root = checkout {
            for candidate in [root.deletingLastPathComponent().appendingPathComponent("shared/data"), root.appendingPathComponent("shared/data")]
            where (try? FileIO.isDirectory(candidate)) == true {
                return candidate.standardizedFileURL.path
            }
        }
        return URL(fileURLWithPath: "../shared/data").standardizedFileURL.path
    }

    /// WikiText-2's validation text in the shared corpora.
    package static var wikiText2Validation: String { sharedData + "/wikitext-2/valid.txt" }

    /// Zero-shot task files (`scripts/get_zero_shot.sh` fills it): `$BITNET_ZERO_SHOT_DIR`, else `data-cache/zero-shot` in the checkout.
    package static var zeroShot: String {
        if let env = ProcessInfo.processInfo.environment["BITNET_ZERO_SHOT_DIR"], !env.isEmpty { return env }
        return inCheckout(ZeroShotData.defaultDirectory)
    }

    /// The Python that `scripts/setup_oracle.sh` installs torch into.
    package static var oraclePython: String { inCheckout(".venv-oracle/bin/python") }

    /// The PyTorch twin used by `bench train`.
    package static var torchReference: String { inCheckout("scripts/torch_reference.py") }

    /// `relative` inside the checkout, or in the current directory for a binary outside one (absolute either way).
    static func inCheckout(_ relative: String) -> String {
        (checkout.map { $0.appendingPathComponent(relative) } ?? URL(fileURLWithPath: relative)).standardizedFileURL.path
    }
}
