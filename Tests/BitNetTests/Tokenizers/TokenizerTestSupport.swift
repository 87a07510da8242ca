@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools
import Foundation
import XCTest

/// Paths and shared fixtures of the tokenizer tests.
enum TokenizerTestSupport {
    /// The repository root, found from this file's path (symlinks resolved).
    static let repoRoot: URL = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
        .deletingLastPathComponent()  // Tokenizer
        .deletingLastPathComponent()  // BitNetTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()

    /// Tests/BitNetTests/Fixtures/tokenizer.
    static let fixtures: URL = repoRoot.appendingPathComponent("Tests/BitNetTests/Fixtures/tokenizer")

    /// A file of the project's shared data (`../shared/data/<relative>`), or an XCTSkip when absent.
    static func sharedData(_ relative: String) throws -> URL {
        let url = repoRoot.deletingLastPathComponent().appendingPathComponent("shared/data/\(relative)")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw XCTSkip("shared data \(url.path) not found")
        }
        return url
    }

    /// Tiny Shakespeare as text, or an XCTSkip when absent.
    static func shakespeare() throws -> String {
        let url = try sharedData("tinyshakespeare.txt")
        return String(decoding: try Data(contentsOf: url), as: UTF8.self)
    }

    /// The first `n` bytes of `text`, cut back to a scalar boundary.
    static func prefix(_ text: String, bytes n: Int) -> String {
        let bytes = Array(text.utf8)
        var k = min(n, bytes.count)
        while k < bytes.count && k > 0 && bytes[k] & 0xC0 == 0x80 { k -= 1 }
        return String(decoding: bytes[..<k], as: UTF8.self)
    }

    /// Strings that stress pre-tokenization and byte handling.
    static let trickyStrings: [String] = [
        "", "a", " ", "  ", "\n", "\r\n", "\t",
        "Hello, world!",
        "  leading and trailing spaces  ",
        "tabs\tand\nnewlines\r\nand\r\n\r\nCRLF",
        "I'm you're they've we'll he'd it's 'tis o'clock 'S 'T",
        "emoji 😀👍🏽 family 👨\u{200D}👩\u{200D}👧 flag 🇫🇷",
        "CJK 漢字かなカナ 한국어",
        "combining e\u{301} vs \u{E9}, a\u{301}\u{302}\u{303}",
        "numbers 12345 3.14 1,000,000 ① ½ Ⅻ",
        "\u{A0}nbsp\u{3000}ideographic\u{2028}line",
        "\u{0B}vt\u{0C}ff\u{85}nel\u{1C}fs",
        "\u{0}null\u{1}ctrl\u{7F}del",
        "mixed   \n\n  spaces\t \t end\n",
        "<|begin_of_text|> is plain text <|end_of_text|>",
        String(repeating: "漢", count: 200),
        String(repeating: "ab", count: 300),
        String(repeating: " ", count: 100),
        String(repeating: "😀", count: 40),
    ]
}
