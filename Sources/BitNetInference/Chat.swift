import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetKernels

/// One chat message.
public struct ChatMessage: Sendable, Equatable {
    public enum Role: String, Sendable { case system, user, assistant }
    public var role: Role
    public var content: String
    public init(_ role: Role, _ content: String) { self.role = role; self.content = content }
}

/// Chat prompt formats: LLaMA 3's header blocks and BitNet b1.58 2B4T's "Role: text<|eot_id|>" turns
/// (the Jinja templates of their tokenizer_config.json, written out as code).
package enum ChatTemplate: String, Sendable, CaseIterable {
    case llama3
    case bitnet

    /// The prompt text for `messages`, ending with the assistant's opening when `addGenerationPrompt`.
    /// Special tokens appear as text; encode with `ByteLevelBPE.encode(_:parseSpecial: true)`.
    package func render(_ messages: [ChatMessage], bos: String = "<|begin_of_text|>", addGenerationPrompt: Bool = true) -> String {
        var s = bos
        switch self {
        case .llama3:
            for m in messages {
                s += "<|start_header_id|>\(m.role.rawValue)<|end_header_id|>\n\n" + m.content.trimmingCharacters(in: .whitespacesAndNewlines) + "<|eot_id|>"
            }
            if addGenerationPrompt { s += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
        case .bitnet:
            for m in messages { s += m.role.rawValue.capitalized + ": " + m.content + "<|eot_id|>" }
            if addGenerationPrompt { s += "Assistant: " }
        }
        return s
    }

    /// Picks the template a Jinja chat template string implements (nil when neither).
    package static func detect(_ jinja: String) -> ChatTemplate? {
        if jinja.contains("<|start_header_id|>") { return .llama3 }
        if jinja.contains("Assistant: ") && jinja.contains("<|eot_id|>") { return .bitnet }
        return nil
    }
}

/// A multi-turn conversation with a model: the whole history is re-rendered each turn, and a reply ends at
/// `<|eot_id|>`, EOS or the token limit.
package struct Chat {
    package let model: InferenceModel
    package let tokenizer: ByteLevelBPE
    package let template: ChatTemplate
    package private(set) var messages: [ChatMessage] = []
    /// Tokens that end a reply.
    package let stopIDs: Set<Int>

    /// A chat; `system` starts the history when given.
    package init(model: InferenceModel, tokenizer: ByteLevelBPE, template: ChatTemplate, system: String? = nil) throws {
        guard tokenizer.addedTokenID("<|eot_id|>") != nil || tokenizer.eosID != nil else {
            throw BitNetError.invalidArgument("the tokenizer has neither <|eot_id|> nor an EOS token to end a reply")
        }
        self.model = model; self.tokenizer = tokenizer; self.template = template
        var stops = Set<Int>()
        for s in ["<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"] { if let id = tokenizer.addedTokenID(s) { stops.insert(id) } }
        if let e = tokenizer.eosID { stops.insert(e) }
        stopIDs = stops
        if let system, !system.isEmpty { messages.append(ChatMessage(.system, system)) }
    }

    /// The prompt tokens of the history plus the assistant's opening.
    package func promptTokens() -> [Int] {
        let bos = tokenizer.bosID.flatMap { tokenizer.tokenString($0) } ?? ""
        return tokenizer.encode(template.render(messages, bos: bos), parseSpecial: true)
    }

    /// Adds a user message, generates the reply (streamed through `onText`), stores and returns it.
    /// `isCancelled` is asked before each token (true: the reply ends there).
    package mutating func send(_ text: String, options: GenerationOptions, isCancelled: () -> Bool = { false },
                               onText: (String) -> Void) throws -> String {
        messages.append(ChatMessage(.user, text))
        let prompt = promptTokens()
        let c = model.config
        guard prompt.count < c.maxSeqLen else {
            messages.removeLast()
            throw BitNetError.invalidArgument("the conversation has \(prompt.count) tokens; the model's context is \(c.maxSeqLen)")
        }
        var sampler = try Sampler(temperature: options.temperature, topK: options.topK, topP: options.topP, seed: options.seed)
        let session = try InferenceSession(model: model, kvCache: options.kvCache)
        var decoder = StreamingDecoder(tokenizer: tokenizer, previousID: prompt.last)
        var logits = try session.prefill(tokens: prompt)
        var reply: [Int] = []
        var text = ""
        while reply.count < options.maxTokens, !isCancelled() {
            let next = sampler.sample(logits)
            if stopIDs.contains(next) { break }
            reply.append(next)
            let piece = decoder.push(next)
            text += piece
            if !piece.isEmpty { onText(piece) }
            if session.position >= session.maxSeqLen { break }
            logits = try session.step(token: next)
        }
        let tail = decoder.finish()
        text += tail
        if !tail.isEmpty { onText(tail) }
        messages.append(ChatMessage(.assistant, text))
        return text
    }
}
