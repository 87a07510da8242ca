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

/// Chat prompt formats: LLaMA 3's header blocks and BitNet b1.58 2B4T's "Role: text<|eot_id|>" turns (the Jinja
/// templates of their tokenizer_config.json, written out as code), and plain "Role: text" lines for models without
/// chat tokens (those trained here, llama2.c's), as `bitnet serve` renders chat for them.
package enum ChatTemplate: String, Sendable, CaseIterable {
    case llama3
    case bitnet
    case plain

    /// The template for a model: the one its Jinja chat template implements, else LLaMA 3's or 2B4T's when its
    /// vocabulary has `<|eot_id|>` (2B4T's for ReLU² models), else plain lines.
    package static func choose(jinja: String?, tokenizer: any Tokenizer, ffn: FFNKind) -> ChatTemplate {
        if let jinja, let t = detect(jinja) { return t }
        if let bpe = tokenizer as? ByteLevelBPE, bpe.addedTokenID("<|eot_id|>") != nil { return ffn == .relu2 ? .bitnet : .llama3 }
        return .plain
    }

    /// Where a plain-template reply ends: the model starting the next turn.
    static let plainStops = ["\nUser:", "\nSystem:"]

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
        case .plain:
            s = ""
            for m in messages { s += m.role.rawValue.capitalized + ": " + m.content + "\n" }
            if addGenerationPrompt { s += "Assistant:" }
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
/// `<|eot_id|>`, EOS, the next turn's "User:" (plain template) or the token limit.
package struct Chat {
    package let model: InferenceModel
    package let tokenizer: any Tokenizer
    package let template: ChatTemplate
    package private(set) var messages: [ChatMessage] = []
    /// Tokens that end a reply.
    package let stopIDs: Set<Int>
    /// Messages the last `send` dropped from the start of the history to fit the context (0: none).
    package private(set) var lastTrimmedTurns = 0

    /// A chat; `system` starts the history when given. LLaMA 3's and 2B4T's templates need a byte-level BPE vocabulary
    /// with their special tokens; the plain template takes any tokenizer.
    package init(model: InferenceModel, tokenizer: any Tokenizer, template: ChatTemplate, system: String? = nil) throws {
        var stops = Set<Int>()
        if template != .plain {
            guard let bpe = tokenizer as? ByteLevelBPE, bpe.addedTokenID("<|eot_id|>") != nil || bpe.eosID != nil else {
                throw BitNetError.invalidArgument("the \(template.rawValue) chat template needs a byte-level BPE vocabulary with "
                                                  + "<|eot_id|> or an EOS token; use --template plain for this model")
            }
            for s in ["<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"] { if let id = bpe.addedTokenID(s) { stops.insert(id) } }
        }
        if let e = tokenizer.eosID { stops.insert(e) }
        self.model = model; self.tokenizer = tokenizer; self.template = template
        stopIDs = stops
        if let system, !system.isEmpty { messages.append(ChatMessage(.system, system)) }
    }

    /// The prompt tokens of the history plus the assistant's opening.
    package func promptTokens() -> [Int] {
        if template == .plain {
            let ids = tokenizer.encode(template.render(messages))
            return tokenizer.addsBOS ? (tokenizer.bosID.map { [$0] } ?? []) + ids : ids
        }
        let bpe = tokenizer as! ByteLevelBPE   // checked by init
        let bos = bpe.bosID.flatMap { bpe.tokenString($0) } ?? ""
        return bpe.encode(template.render(messages, bos: bos), parseSpecial: true)
    }

    /// Adds a user message, generates the reply (streamed through `onText`), stores and returns it.
    /// `isCancelled` is asked before each token (true: the reply ends there).
    package mutating func send(_ text: String, options: GenerationOptions, isCancelled: () -> Bool = { false },
                               onText: (String) -> Void) throws -> String {
        messages.append(ChatMessage(.user, text))
        var prompt = promptTokens()
        let c = model.config
        // A history that outgrows the context loses its oldest turns (the system message stays), with room left for
        // a reply of up to a quarter of the context.
        let room = c.maxSeqLen - min(options.maxTokens, c.maxSeqLen / 4)
        let first = messages.first?.role == .system ? 1 : 0
        lastTrimmedTurns = 0
        if prompt.count >= room {
            // A message that cannot fit even alone is refused with the history left as it was.
            let history = messages
            messages = Array(history.prefix(first)) + [history[history.count - 1]]
            let alone = promptTokens().count
            messages = history
            guard alone < c.maxSeqLen else {
                messages.removeLast()
                throw BitNetError.invalidArgument("the message alone takes \(alone) tokens; the model's context is \(c.maxSeqLen)")
            }
            while prompt.count >= room, messages.count - first > 1 {
                messages.remove(at: first)
                lastTrimmedTurns += 1
                prompt = promptTokens()
            }
        }
        var sampler = try Sampler(temperature: options.temperature, topK: options.topK, topP: options.topP, seed: options.seed)
        let session = try InferenceSession(model: model, promptTokens: prompt.count, maxNewTokens: options.maxTokens, kvCache: options.kvCache)
        var decoder = StreamingDecoder(tokenizer: tokenizer, previousID: prompt.last)
        var stops = StopFilter(stops: template == .plain ? ChatTemplate.plainStops : [])
        var logits = try session.prefill(tokens: prompt)
        var reply: [Int] = []
        var text = ""
        func emit(_ piece: String) {
            text += piece
            if !piece.isEmpty { onText(piece) }
        }
        while reply.count < options.maxTokens, !isCancelled(), !stops.matched {
            let next = sampler.sample(logits)
            if stopIDs.contains(next) { break }
            reply.append(next)
            emit(stops.push(decoder.push(next)))
            if session.position >= session.maxSeqLen { break }
            logits = try session.step(token: next)
        }
        emit(stops.push(decoder.finish()))
        emit(stops.flush())
        messages.append(ChatMessage(.assistant, text))
        return text
    }
}
