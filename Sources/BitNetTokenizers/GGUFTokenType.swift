/// llama.cpp's token types (`llama_token_type`; gguf-py's `TokenType`), one per token in GGUF's
/// `tokenizer.ggml.token_type`. They decide which tokens are matched whole and which decode to nothing.
package enum GGUFTokenType: Int32, Sendable {
    /// An ordinary vocabulary token.
    case normal = 1
    /// The unknown token (`<unk>`).
    case unknown = 2
    /// A control token (`<s>`, `</s>`, `<|eot_id|>`): special, decodes to nothing.
    case control = 3
    /// A user-defined added token: matched whole, decodes to its text.
    case userDefined = 4
    /// A reserved token that never matches text (`<pad>`).
    case unused = 5
    /// A byte-fallback piece (`<0xAB>`).
    case byte = 6

    /// The type a GGUF file stores as `value`; nil for a value llama.cpp does not define (read as normal).
    package init?(_ value: Int) {
        guard let raw = Int32(exactly: value) else { return nil }
        self.init(rawValue: raw)
    }
}
