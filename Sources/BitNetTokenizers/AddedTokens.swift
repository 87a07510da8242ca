import Foundation

extension ByteLevelBPE {
    /// A token of `added_tokens` (or a GGUF control or user-defined token): stored as its UTF-8 content, never
    /// produced by merges; a special one decodes to nothing.
    struct AddedToken: Sendable {
        var id: Int
        var content: String
        var special: Bool
    }

    /// True when `id` is an added token (special or not).
    package func isAddedToken(_ id: Int) -> Bool { added.contains { $0.id == id } }

    /// Id of an added token by its content.
    package func addedTokenID(_ content: String) -> Int? { added.first { $0.content == content }?.id }

    /// Encodes text in which added tokens (e.g. `<|eot_id|>`) are recognized as such, as Hugging Face does;
    /// the text between them is encoded normally. Longest match wins at a position.
    package func encode(_ text: String, parseSpecial: Bool) -> [Int] {
        guard parseSpecial, !added.isEmpty else { return encode(text) }
        let bytes = Array(text.utf8)
        let contents = added.map { (Array($0.content.utf8), $0.id) }.sorted { $0.0.count > $1.0.count }
        var out: [Int] = []
        var segmentStart = 0, i = 0
        while i < bytes.count {
            var matched: (Int, Int)? = nil
            for (c, id) in contents where c.count <= bytes.count - i && bytes[i] == c[0] && Array(bytes[i..<(i + c.count)]) == c {
                matched = (id, c.count); break
            }
            if let (id, len) = matched {
                if segmentStart < i { out += encode(String(decoding: bytes[segmentStart..<i], as: UTF8.self)) }
                out.append(id)
                i += len
                segmentStart = i
            } else {
                i += 1
            }
        }
        if segmentStart < bytes.count { out += encode(String(decoding: bytes[segmentStart...], as: UTF8.self)) }
        return out
    }
}
