import Foundation

extension ByteLevelBPE {
    /// The pre-tokenizer patterns: GPT-2's and LLaMA 3's (which also keeps numbers to 3 digits and newlines apart).
    package enum PreTokenizer: String, Sendable {
        case gpt2, llama3
    }

    /// Splits text into pre-token words with the GPT-2 pattern (exposed for inspection and tests).
    package static func preTokenize(_ text: String, kind: PreTokenizer = .gpt2) -> [String] {
        var text = text
        var words: [String] = []
        text.withUTF8 { p in
            forEachWord(p, kind) { s, e in
                words.append(String(decoding: UnsafeBufferPointer(rebasing: p[s..<e]), as: UTF8.self))
            }
        }
        return words
    }

    /// Calls `body(start, end)` with the byte range of each pre-token word of `kind`.
    static func forEachWord(_ p: UnsafeBufferPointer<UInt8>, _ kind: PreTokenizer, _ body: (Int, Int) -> Void) {
        switch kind {
        case .gpt2: forEachPreToken(p, body)
        case .llama3: forEachLlama3PreToken(p, body)
        }
    }
}

// MARK: - GPT-2 pre-tokenizer

extension ByteLevelBPE {
    /// Character classes of the GPT-2 pattern.
    fileprivate enum CharClass: UInt8 {
        case letter, number, space, other
    }

    fileprivate static let asciiClass: [CharClass] = (0..<128).map { v -> CharClass in
        classifyNonASCII(UInt32(v))
    }

    @inline(__always)
    fileprivate static func classify(_ v: UInt32) -> CharClass {
        v < 128 ? asciiClass[Int(v)] : classifyNonASCII(v)
    }

    /// `\s` is the Unicode White_Space property, `\p{L}` and `\p{N}` the general categories L* and N*.
    fileprivate static func classifyNonASCII(_ v: UInt32) -> CharClass {
        guard let u = Unicode.Scalar(v) else { return .other }
        let props = u.properties
        if props.isWhitespace { return .space }
        switch props.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    /// Decodes the scalar starting at `i` of valid UTF-8; returns its value and byte length.
    @inline(__always)
    fileprivate static func scalar(_ p: UnsafeBufferPointer<UInt8>, _ i: Int) -> (UInt32, Int) {
        let b0 = UInt32(p[i])
        if b0 < 0x80 { return (b0, 1) }
        if b0 < 0xE0 { return (((b0 & 0x1F) << 6) | (UInt32(p[i + 1]) & 0x3F), 2) }
        if b0 < 0xF0 {
            return (((b0 & 0x0F) << 12) | ((UInt32(p[i + 1]) & 0x3F) << 6) | (UInt32(p[i + 2]) & 0x3F), 3)
        }
        return (((b0 & 0x07) << 18) | ((UInt32(p[i + 1]) & 0x3F) << 12)
                | ((UInt32(p[i + 2]) & 0x3F) << 6) | (UInt32(p[i + 3]) & 0x3F), 4)
    }

    /// Calls `body(start, end)` with the byte range of each match of
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` over valid UTF-8,
    /// with the regex's leftmost-first semantics. The ranges tile the input.
    static func forEachPreToken(_ p: UnsafeBufferPointer<UInt8>, _ body: (Int, Int) -> Void) {
        let n = p.count
        var i = 0
        while i < n {
            let start = i
            // 's 't 're 've 'm 'll 'd
            if p[i] == 0x27 && i + 1 < n {
                let b1 = p[i + 1]
                if b1 == 0x73 || b1 == 0x74 || b1 == 0x6D || b1 == 0x64 {  // s t m d
                    body(i, i + 2)
                    i += 2
                    continue
                }
                if i + 2 < n {
                    let b2 = p[i + 2]
                    if (b1 == 0x72 && b2 == 0x65) || (b1 == 0x76 && b2 == 0x65) || (b1 == 0x6C && b2 == 0x6C) {  // re ve ll
                        body(i, i + 3)
                        i += 3
                        continue
                    }
                }
            }
            let (c0, l0) = scalar(p, i)
            var cls = classify(c0)
            var j = i + l0
            if c0 == 0x20 && j < n {
                // " ?X+": the optional space joins a following letter, number or other run.
                let (c1, l1) = scalar(p, j)
                let k1 = classify(c1)
                if k1 != .space {
                    cls = k1
                    j += l1
                }
            }
            if cls != .space {
                while j < n {
                    let (c, l) = scalar(p, j)
                    if classify(c) != cls { break }
                    j += l
                }
                body(start, j)
                i = j
                continue
            }
            // Whitespace run: `\s+(?!\S)` leaves its last character to the word that follows it;
            // a single whitespace character before a non-space falls to `\s+`.
            var lastStart = start
            while j < n {
                let (c, l) = scalar(p, j)
                if classify(c) != .space { break }
                lastStart = j
                j += l
            }
            if j < n && lastStart > start { j = lastStart }
            body(start, j)
            i = j
        }
    }
}

// MARK: - LLaMA 3 pre-tokenizer

extension ByteLevelBPE {
    /// The Split regex of LLaMA 3's tokenizer.json (and llama.cpp's `llama-bpe` pre-tokenizer).
    static let llama3Pattern = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

    /// Calls `body(start, end)` for each match of `llama3Pattern` over valid UTF-8 (leftmost-first alternation).
    fileprivate static func forEachLlama3PreToken(_ p: UnsafeBufferPointer<UInt8>, _ body: (Int, Int) -> Void) {
        let n = p.count
        @inline(__always) func isNewline(_ c: UInt32) -> Bool { c == 0x0A || c == 0x0D }
        var i = 0
        while i < n {
            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if p[i] == 0x27 && i + 1 < n {
                let b1 = p[i + 1] | 0x20
                if b1 == 0x73 || b1 == 0x74 || b1 == 0x6D || b1 == 0x64 { body(i, i + 2); i += 2; continue }
                if i + 2 < n {
                    let b2 = p[i + 2] | 0x20
                    if (b1 == 0x72 && b2 == 0x65) || (b1 == 0x76 && b2 == 0x65) || (b1 == 0x6C && b2 == 0x6C) { body(i, i + 3); i += 3; continue }
                }
            }
            let (c0, l0) = scalar(p, i)
            let k0 = classify(c0)
            // [^\r\n\p{L}\p{N}]?\p{L}+
            var j = i
            if k0 == .letter {
                j = i
            } else if k0 != .number && !isNewline(c0) && i + l0 < n && classify(scalar(p, i + l0).0) == .letter {
                j = i + l0
            }
            if j > i || k0 == .letter {
                while j < n { let (c, l) = scalar(p, j); if classify(c) != .letter { break }; j += l }
                body(i, j); i = j; continue
            }
            // \p{N}{1,3}
            if k0 == .number {
                j = i
                var digits = 0
                while j < n && digits < 3 { let (c, l) = scalar(p, j); if classify(c) != .number { break }; j += l; digits += 1 }
                body(i, j); i = j; continue
            }
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            var s = i
            if c0 == 0x20 && i + 1 < n && classify(scalar(p, i + 1).0) == .other { s = i + 1 }
            if classify(scalar(p, s).0) == .other {
                j = s
                while j < n { let (c, l) = scalar(p, j); if classify(c) != .other { break }; j += l }
                while j < n && (p[j] == 0x0A || p[j] == 0x0D) { j += 1 }
                body(i, j); i = j; continue
            }
            // Whitespace: \s*[\r\n]+ (up to the last newline of the run), then \s+(?!\S), then \s+.
            j = i
            var lastStart = i, afterNewline = -1
            while j < n {
                let (c, l) = scalar(p, j)
                if classify(c) != .space { break }
                lastStart = j
                j += l
                if isNewline(c) { afterNewline = j }
            }
            if afterNewline > 0 { body(i, afterNewline); i = afterNewline; continue }
            if j < n && lastStart > i { j = lastStart }
            body(i, j); i = j
        }
    }
}
