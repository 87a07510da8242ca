import Foundation
import BitNetCore

extension ByteLevelBPE {
    /// Builds a tokenizer from a GGUF `gpt2` vocabulary: token strings in byte-level form, llama.cpp token types
    /// (`GGUFTokenType`: control → special, user-defined → added), merges "a b" in rank order.
    package init(vocabulary: [String], types: [Int], merges rawMerges: [String], bos: Int?, eos: Int?,
                preTokenizer: PreTokenizer, source: String) throws {
        func malformed(_ reason: String) -> TokenizerError { .malformed(file: source, reason: reason) }
        guard !vocabulary.isEmpty, types.count == vocabulary.count else { throw malformed("empty vocabulary or token types of another length") }
        var tokens = [[UInt8]](repeating: [], count: vocabulary.count)
        var added: [AddedToken] = []
        var byteToID = [Int32](repeating: -1, count: 256)
        var idOfString: [String: Int] = [:]
        for (id, t) in vocabulary.enumerated() {
            let type = GGUFTokenType(types[id])
            if type == .control || type == .userDefined {
                guard !t.isEmpty else { throw malformed("added token \(id) is empty") }
                added.append(AddedToken(id: id, content: t, special: type == .control))
                tokens[id] = Array(t.utf8)
                continue
            }
            guard let bytes = Self.bytes(ofByteLevelString: t), !bytes.isEmpty else {
                throw malformed("token \(id) \(Self.jsonQuote(t)) is empty or outside the byte-level alphabet")
            }
            tokens[id] = bytes
            if idOfString[t] == nil { idOfString[t] = id }
            if bytes.count == 1 && byteToID[Int(bytes[0])] < 0 { byteToID[Int(bytes[0])] = Int32(id) }
        }
        if let missing = byteToID.firstIndex(of: -1) {
            throw malformed("no token for byte 0x\(String(missing, radix: 16, uppercase: true)) (a byte-level vocab needs all 256)")
        }
        var merges: [Merge] = []
        merges.reserveCapacity(rawMerges.count)
        for (rank, m) in rawMerges.enumerated() {
            let parts = m.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2, let l = idOfString[parts[0]], let r = idOfString[parts[1]], let res = idOfString[parts[0] + parts[1]] else {
                throw malformed("merge #\(rank) \(Self.jsonQuote(m)) is not two known tokens whose concatenation is a token")
            }
            merges.append(Merge(left: l, right: r, result: res))
        }
        // llama.cpp's llama-bpe vocabularies emit whole-word tokens before merging, as LLaMA 3's ignore_merges.
        self.init(tokens: tokens, added: added, merges: merges, byteToID: byteToID, preTokenizer: preTokenizer,
                  ignoreMerges: preTokenizer == .llama3, bosID: bos, eosID: eos)
    }
}
