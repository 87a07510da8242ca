import Foundation
import BitNetCore

extension ByteLevelBPE {
    /// Serializes to the Hugging Face `tokenizer.json` format (loadable by the Python `tokenizers` library).
    package func jsonData() throws -> Data {
        var s = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": ["
        for (i, t) in added.enumerated() {
            s += i == 0 ? "\n" : ",\n"
            s += "    {\"id\": \(t.id), \"content\": \(Self.jsonQuote(t.content)), \"single_word\": false, "
            s += "\"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": \(t.special)}"
        }
        s += added.isEmpty ? "],\n" : "\n  ],\n"
        s += "  \"normalizer\": null,\n"
        switch preTokenizer {
        case .gpt2:
            s += "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true},\n"
        case .llama3:
            s += "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
            s += Self.jsonQuote(Self.llama3Pattern) + "}, \"behavior\": \"Isolated\", \"invert\": false}, "
            s += "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]},\n"
        }
        if addsBOS, let b = bosID, let name = tokenString(b) {
            let q = Self.jsonQuote(name)
            s += "  \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \(q), \"type_id\": 0}}, "
            s += "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": [], \"special_tokens\": {\(q): {\"id\": \(q), \"ids\": [\(b)], \"tokens\": [\(q)]}}},\n"
        } else {
            s += "  \"post_processor\": null,\n"
        }
        s += "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n"
        s += "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
        s += "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
        s += "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": \(ignoreMerges),\n"
        s += "    \"vocab\": {"
        let addedIDs = Set(added.map(\.id))
        var first = true
        for id in 0..<tokens.count where !addedIDs.contains(id) {
            s += first ? "\n" : ",\n"
            first = false
            s += "      \(Self.jsonQuote(Self.byteLevelString(tokens[id]))): \(id)"
        }
        s += first ? "},\n" : "\n    },\n"
        s += "    \"merges\": ["
        for (i, m) in merges.enumerated() {
            s += i == 0 ? "\n" : ",\n"
            let text = Self.byteLevelString(tokens[m.left]) + " " + Self.byteLevelString(tokens[m.right])
            s += "      " + Self.jsonQuote(text)
        }
        s += merges.isEmpty ? "]\n" : "\n    ]\n"
        s += "  }\n}\n"
        return Data(s.utf8)
    }

    /// Writes `tokenizer.json` atomically (a temporary file in the same folder, then a rename).
    package func save(to url: URL) throws {
        try FileIO.writeAtomically(try jsonData(), to: url)
    }

    /// Loads a `tokenizer.json` file (byte-level BPE only).
    package init(contentsOf url: URL) throws {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw TokenizerError.unreadable(file: url.path, reason: error.localizedDescription)
        }
        try self.init(jsonData: data, source: url.path)
    }

    /// Parses `tokenizer.json` content (byte-level BPE only), validating ids and merges.
    package init(jsonData: Data) throws {
        try self.init(jsonData: jsonData, source: "tokenizer.json data")
    }

    private init(jsonData: Data, source: String) throws {
        func malformed(_ reason: String) -> TokenizerError { .malformed(file: source, reason: reason) }
        func unsupported(_ reason: String) -> TokenizerError { .unsupported(file: source, reason: reason) }

        let file: HFFile
        do {
            file = try JSONDecoder().decode(HFFile.self, from: jsonData)
        } catch let error as DecodingError {
            throw malformed(Self.describe(error))
        } catch {
            throw malformed("\(error)")
        }
        if let n = file.normalizer {
            throw unsupported("normalizer \(n.type ?? "?") (only none is supported)")
        }
        guard let pre = file.preTokenizer else {
            throw unsupported("no pre_tokenizer (ByteLevel with use_regex is required)")
        }
        var kind = PreTokenizer.gpt2
        if pre.type == "Sequence" {
            // LLaMA 3: Split on its regex (isolated), then ByteLevel without its own regex.
            let parts = pre.pretokenizers ?? []
            guard parts.count == 2, parts[0].type == "Split", parts[0].pattern?.regex == Self.llama3Pattern,
                  parts[0].behavior == "Isolated", parts[0].invert != true,
                  parts[1].type == "ByteLevel", parts[1].useRegex == false, parts[1].addPrefixSpace != true else {
                throw unsupported("pre_tokenizer Sequence other than LLaMA 3's (Split on its regex, then ByteLevel)")
            }
            kind = .llama3
        } else {
            guard pre.type == "ByteLevel" else {
                throw unsupported("pre_tokenizer \(pre.type) (only ByteLevel and LLaMA 3's Sequence are supported)")
            }
            if pre.addPrefixSpace == true { throw unsupported("pre_tokenizer ByteLevel with add_prefix_space true") }
            if pre.useRegex == false { throw unsupported("pre_tokenizer ByteLevel with use_regex false") }
        }
        let model = file.model
        if let t = model.type, t != "BPE" { throw unsupported("model type \(t) (only BPE is supported)") }
        if let p = model.continuingSubwordPrefix, !p.isEmpty { throw unsupported("continuing_subword_prefix \(p)") }
        if let p = model.endOfWordSuffix, !p.isEmpty { throw unsupported("end_of_word_suffix \(p)") }
        guard let rawMerges = model.merges else { throw malformed("model has no merges") }

        // Ids: the vocab and the added tokens together must cover 0..<count exactly.
        var stringOfID: [Int: String] = [:]
        for (token, id) in model.vocab {
            guard id >= 0 else { throw malformed("vocab token \(Self.jsonQuote(token)) has negative id \(id)") }
            if let other = stringOfID[id] {
                let pair = [other, token].sorted().map { Self.jsonQuote($0) }.joined(separator: " and ")
                throw malformed("vocab tokens \(pair) share id \(id)")
            }
            stringOfID[id] = token
        }
        var addedTokens: [AddedToken] = []
        var addedIDs = Set<Int>()
        for a in file.addedTokens ?? [] {
            guard a.id >= 0 else { throw malformed("added token \(Self.jsonQuote(a.content)) has negative id \(a.id)") }
            guard !a.content.isEmpty else { throw malformed("added token \(a.id) has empty content") }
            guard addedIDs.insert(a.id).inserted else { throw malformed("two added tokens have id \(a.id)") }
            if let inVocab = stringOfID[a.id], inVocab != a.content {
                throw malformed("added token \(Self.jsonQuote(a.content)) has id \(a.id), which the vocab gives to \(Self.jsonQuote(inVocab))")
            }
            addedTokens.append(AddedToken(id: a.id, content: a.content, special: a.special ?? false))
        }
        let count = Set(stringOfID.keys).union(addedIDs).count
        guard count > 0 else { throw malformed("empty vocabulary") }
        for id in stringOfID.keys where id >= count {
            throw malformed("vocab id \(id) is out of range 0..<\(count) (ids must be contiguous)")
        }
        for id in addedIDs where id >= count {
            throw malformed("added token id \(id) is out of range 0..<\(count) (ids must be contiguous)")
        }

        var tokens = [[UInt8]](repeating: [], count: count)
        var byteToID = [Int32](repeating: -1, count: 256)
        let addedByID = Dictionary(uniqueKeysWithValues: addedTokens.map { ($0.id, $0) })
        for id in 0..<count {
            if let a = addedByID[id] {
                tokens[id] = Array(a.content.utf8)
                continue
            }
            let token = stringOfID[id]!
            guard let bytes = Self.bytes(ofByteLevelString: token) else {
                throw malformed("vocab token \(Self.jsonQuote(token)) (id \(id)) has a character outside the byte-level alphabet")
            }
            guard !bytes.isEmpty else { throw malformed("vocab token id \(id) is the empty string") }
            tokens[id] = bytes
            if bytes.count == 1 && byteToID[Int(bytes[0])] < 0 { byteToID[Int(bytes[0])] = Int32(id) }
        }
        if let missing = byteToID.firstIndex(of: -1) {
            throw malformed("no vocab token for byte 0x\(String(missing, radix: 16, uppercase: true)) (a byte-level vocab needs all 256)")
        }

        var idOfString: [String: Int] = [:]
        for (token, id) in model.vocab where addedByID[id] == nil { idOfString[token] = id }
        var merges: [Merge] = []
        merges.reserveCapacity(rawMerges.count)
        for (rank, raw) in rawMerges.enumerated() {
            let parts: [String]
            switch raw {
            case .joined(let s): parts = s.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            case .pair(let p): parts = p
            }
            guard parts.count == 2 else {
                throw malformed("merge #\(rank) \(Self.jsonQuote(parts.joined(separator: " "))) is not two tokens")
            }
            guard let l = idOfString[parts[0]] else {
                throw malformed("merge #\(rank) refers to unknown token \(Self.jsonQuote(parts[0]))")
            }
            guard let r = idOfString[parts[1]] else {
                throw malformed("merge #\(rank) refers to unknown token \(Self.jsonQuote(parts[1]))")
            }
            guard let result = idOfString[parts[0] + parts[1]] else {
                throw malformed("merge #\(rank) produces \(Self.jsonQuote(parts[0] + parts[1])), which is not in the vocab")
            }
            merges.append(Merge(left: l, right: r, result: result))
        }
        // A TemplateProcessing that opens with a special token adds it (LLaMA 3: <|begin_of_text|>).
        let post = file.postProcessor
        let template = post?.type == "TemplateProcessing" ? post?.single
            : post?.processors?.first(where: { $0.type == "TemplateProcessing" })?.single
        var addedBOS: Int? = nil
        if let first = template?.first?.specialToken?.id {
            guard let a = addedTokens.first(where: { $0.content == first }) else {
                throw malformed("post_processor adds \(Self.jsonQuote(first)), which is not an added token")
            }
            addedBOS = a.id
        }
        self.init(tokens: tokens, added: addedTokens, merges: merges, byteToID: byteToID, preTokenizer: kind,
                  ignoreMerges: model.ignoreMerges ?? false, bosID: addedBOS, addsBOS: addedBOS != nil)
    }
}

// MARK: - JSON schema (the subset of tokenizer.json that is read)

extension ByteLevelBPE {
    fileprivate struct HFFile: Decodable {
        var addedTokens: [HFAdded]?
        var normalizer: HFTyped?
        var preTokenizer: HFPreTokenizer?
        var postProcessor: HFPostProcessor?
        var model: HFModel
        enum CodingKeys: String, CodingKey {
            case addedTokens = "added_tokens", normalizer, preTokenizer = "pre_tokenizer", postProcessor = "post_processor", model
        }
    }

    fileprivate struct HFTyped: Decodable {
        var type: String?
    }

    fileprivate struct HFPreTokenizer: Decodable {
        var type: String
        var addPrefixSpace: Bool?
        var useRegex: Bool?
        var pretokenizers: [HFPreTokenizer]?
        var pattern: HFPattern?
        var behavior: String?
        var invert: Bool?
        enum CodingKeys: String, CodingKey {
            case type, addPrefixSpace = "add_prefix_space", useRegex = "use_regex", pretokenizers, pattern, behavior, invert
        }
    }

    fileprivate struct HFPattern: Decodable {
        var regex: String?
        enum CodingKeys: String, CodingKey { case regex = "Regex" }
    }

    /// The post-processor: only a `TemplateProcessing` whose single template may start with BOS is read.
    fileprivate struct HFPostProcessor: Decodable {
        var type: String?
        var single: [HFTemplatePiece]?
        var processors: [HFPostProcessor]?
    }

    fileprivate struct HFTemplatePiece: Decodable {
        var specialToken: HFSpecialRef?
        enum CodingKeys: String, CodingKey { case specialToken = "SpecialToken" }
    }

    fileprivate struct HFSpecialRef: Decodable {
        var id: String
    }

    fileprivate struct HFAdded: Decodable {
        var id: Int
        var content: String
        var special: Bool?
    }

    fileprivate struct HFModel: Decodable {
        var type: String?
        var vocab: [String: Int]
        var merges: [HFMerge]?
        var continuingSubwordPrefix: String?
        var endOfWordSuffix: String?
        var ignoreMerges: Bool?
        enum CodingKeys: String, CodingKey {
            case type, vocab, merges, ignoreMerges = "ignore_merges"
            case continuingSubwordPrefix = "continuing_subword_prefix", endOfWordSuffix = "end_of_word_suffix"
        }
    }

    /// A merge is written either as "a b" or (newer files) as ["a", "b"].
    fileprivate enum HFMerge: Decodable {
        case joined(String)
        case pair([String])
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) {
                self = .joined(s)
            } else {
                self = .pair(try c.decode([String].self))
            }
        }
    }

    fileprivate static func describe(_ error: DecodingError) -> String {
        func path(_ p: [CodingKey]) -> String {
            p.isEmpty ? "top level" : p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .dataCorrupted(let ctx):
            if let u = ctx.underlyingError { return "not valid JSON (\(ctx.debugDescription): \(u.localizedDescription))" }
            return "bad value at \(path(ctx.codingPath)): \(ctx.debugDescription)"
        case .keyNotFound(let key, let ctx):
            return "missing key \"\(key.stringValue)\" at \(path(ctx.codingPath))"
        case .typeMismatch(let type, let ctx):
            return "wrong type at \(path(ctx.codingPath)) (expected \(type))"
        case .valueNotFound(let type, let ctx):
            return "null at \(path(ctx.codingPath)) (expected \(type))"
        @unknown default:
            return "\(error)"
        }
    }

    static func jsonQuote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20 || u.value == 0x7F:
                let hex = String(u.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
