import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetKernels

/// Tokenizers embedded in GGUF files (`tokenizer.ggml.*`): `gpt2` byte-level BPE and `llama` SentencePiece-style.
package enum GGUFVocabulary {
    /// The tokenizer a GGUF file embeds, nil when it has none.
    package static func tokenizer(from f: GGUFFile) throws -> (any Tokenizer)? {
        guard let model = f["tokenizer.ggml.model"] else { return nil }
        guard let kind = model.string else { throw f.bad("tokenizer.ggml.model", "not a string") }
        guard let tokVal = f["tokenizer.ggml.tokens"], let items = tokVal.array else { throw f.bad("tokenizer.ggml.tokens", "missing or not an array") }
        var tokens: [String] = []
        tokens.reserveCapacity(items.count)
        for (i, v) in items.enumerated() {
            guard let s = v.string else { throw f.bad("tokenizer.ggml.tokens[\(i)]", "not a string") }
            tokens.append(s)
        }
        let types = try intArray(f, "tokenizer.ggml.token_type", count: tokens.count) ?? Array(repeating: Int(GGUFTokenType.normal.rawValue), count: tokens.count)
        func id(_ key: String) throws -> Int? {
            guard let v = f[key] else { return nil }
            guard let i = v.int, i >= 0, i < tokens.count else { throw f.bad(key, "\(v) is not a token id below \(tokens.count)") }
            return i
        }
        let bos = try id("tokenizer.ggml.bos_token_id"), eos = try id("tokenizer.ggml.eos_token_id")
        switch kind {
        case "gpt2":
            guard let mv = f["tokenizer.ggml.merges"]?.array else { throw f.bad("tokenizer.ggml.merges", "missing") }
            var merges: [String] = []
            for (i, v) in mv.enumerated() {
                guard let s = v.string else { throw f.bad("tokenizer.ggml.merges[\(i)]", "not a string") }
                merges.append(s)
            }
            let pre = f["tokenizer.ggml.pre"]?.string ?? "default"
            let llama3 = pre == "llama-bpe" || pre == "llama3"
            var t = try ByteLevelBPE(vocabulary: tokens, types: types, merges: merges, bos: bos, eos: eos,
                                     preTokenizer: llama3 ? .llama3 : .gpt2, source: f.path)
            // llama.cpp adds BOS for LLaMA 3 vocabularies unless the file says otherwise.
            if case .bool(let add)? = f["tokenizer.ggml.add_bos_token"] { t.setAddsBOS(add) } else { t.setAddsBOS(llama3) }
            return t
        case "llama":
            guard let sv = f["tokenizer.ggml.scores"]?.array, sv.count == tokens.count else {
                throw f.bad("tokenizer.ggml.scores", "missing or not one per token")
            }
            let scores = try sv.enumerated().map { (i, v) -> Float in
                guard let d = v.double else { throw f.bad("tokenizer.ggml.scores[\(i)]", "not a number") }
                return Float(d)
            }
            return try SentencePieceBPE(pieces: tokens, scores: scores, types: types, bos: bos, eos: eos, source: f.path)
        default:
            throw f.bad("tokenizer.ggml.model", "'\(kind)' is not supported (gpt2 and llama are)")
        }
    }

    static func intArray(_ f: GGUFFile, _ key: String, count: Int) throws -> [Int]? {
        guard let v = f[key] else { return nil }
        guard let a = v.array, a.count == count else { throw f.bad(key, "not an array of \(count) integers") }
        return try a.enumerated().map { (i, x) in
            guard let n = x.int else { throw f.bad("\(key)[\(i)]", "not an integer") }
            return n
        }
    }

    /// Stores a tokenizer as `tokenizer.ggml.*` (gpt2 for byte-level BPE, llama for SentencePiece-style vocabularies).
    package static func write(_ t: any Tokenizer, into g: inout GGUFWriter) throws {
        if let b = t as? ByteLevelBPE {
            g.set("tokenizer.ggml.model", .string("gpt2"))
            g.set("tokenizer.ggml.pre", .string(b.preTokenizer == .llama3 ? "llama-bpe" : "gpt-2"))
            let special = Set(b.specialTokenIDs)
            g.set("tokenizer.ggml.tokens", .array(elementType: 8, (0..<b.vocabSize).map { .string(b.tokenString($0) ?? "") }))
            g.set("tokenizer.ggml.token_type", .array(elementType: 5, (0..<b.vocabSize).map {
                .int32((special.contains($0) ? GGUFTokenType.control : b.isAddedToken($0) ? .userDefined : .normal).rawValue)
            }))
            g.set("tokenizer.ggml.merges", .array(elementType: 8, b.merges.map {
                .string((b.tokenString($0.left) ?? "") + " " + (b.tokenString($0.right) ?? ""))
            }))
            // Say it explicitly: llama.cpp's default for BPE vocabularies would otherwise decide.
            g.set("tokenizer.ggml.add_bos_token", .bool(b.addsBOS))
            g.set("tokenizer.ggml.add_eos_token", .bool(false))
        } else if let s = t as? SentencePieceBPE {
            g.set("tokenizer.ggml.model", .string("llama"))
            g.set("tokenizer.ggml.tokens", .array(elementType: 8, s.pieces.map { .string($0) }))
            g.set("tokenizer.ggml.scores", .array(elementType: 6, s.scores.map { .float32($0) }))
            g.set("tokenizer.ggml.token_type", .array(elementType: 5, s.types.map { .int32(Int32($0)) }))
        } else if let l = t as? Llama2cTokenizer {
            // llama2.c's vocabulary is SentencePiece's: <unk>, <s>, </s>, <0xAB> byte pieces, spaces stored as ' '.
            g.set("tokenizer.ggml.model", .string("llama"))
            let pieces = (0..<l.vocabSize).map { String(decoding: l.piece($0), as: UTF8.self) }
            g.set("tokenizer.ggml.tokens", .array(elementType: 8, pieces.map { .string($0.replacingOccurrences(of: " ", with: "\u{2581}")) }))
            g.set("tokenizer.ggml.scores", .array(elementType: 6, (0..<l.vocabSize).map { .float32(l.score($0) ?? 0) }))
            g.set("tokenizer.ggml.token_type", .array(elementType: 5, pieces.enumerated().map { (i, p) in
                let byte = p.count == 6 && p.hasPrefix("<0x") && p.hasSuffix(">")
                let type: GGUFTokenType = i == 0 ? .unknown : i <= 2 ? .control : byte ? .byte : .normal
                return .int32(type.rawValue)
            }))
            g.set("tokenizer.ggml.unknown_token_id", .uint32(0))
        } else {
            throw BitNetError.unsupported("this tokenizer kind cannot be stored in GGUF (byte-level BPE and SentencePiece can)")
        }
        if let b = t.bosID { g.set("tokenizer.ggml.bos_token_id", .uint32(UInt32(b))) }
        if let e = t.eosID { g.set("tokenizer.ggml.eos_token_id", .uint32(UInt32(e))) }
    }
}
