import Foundation
import Synchronization
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference

/// A model ready to generate text: any supported file, prepared for integer inference (packed ternary weights in the
/// fastest layout this CPU runs, int8 activations). Generations on one model run one at a time.
public final class LanguageModel: @unchecked Sendable {
    /// The network's shape and variant.
    public let config: ModelConfig
    let model: InferenceModel
    let tokenizer: any Tokenizer
    let path: String
    private let busy = Mutex(())

    /// Loads `path`: a `bitnet train` output folder or `.safetensors` file, a GGUF file (llama.cpp, bitnet.cpp), a
    /// Hugging Face folder (`config.json` + safetensors) or a llama2.c `.bin`. `tokenizer` names a `tokenizer.json` or
    /// llama2.c `tokenizer.bin` for formats that keep it apart.
    public init(path: String, tokenizer tokenizerPath: String? = nil) throws {
        let loaded = try ModelFile.loadInference(path: path, tokenizerPath: tokenizerPath, preferBase3: true)
        guard let tok = loaded.tokenizer else { throw BitNetError.invalidArgument("\(path) has no tokenizer; pass a tokenizer file") }
        loaded.model.setTernaryLayout(loaded.model.preferredTernaryLayout)
        model = loaded.model; tokenizer = tok; config = loaded.model.config; self.path = path
    }

    /// Generates after `prompt`, streaming text pieces as they decode. Stopping the iteration stops the generation.
    public func generate(_ prompt: String, options: GenerationOptions = GenerationOptions()) -> AsyncThrowingStream<String, any Error> {
        stream { isCancelled, yield in
            let generator = Generator(model: self.model, tokenizer: self.tokenizer)
            let ids = try generator.promptTokens(prompt, addBOS: options.addBOS)
            try generator.generate(promptTokens: ids, options: options, isCancelled: isCancelled, onText: yield)
        }
    }

    /// The text generated after `prompt`, whole.
    public func complete(_ prompt: String, options: GenerationOptions = GenerationOptions()) throws -> String {
        try busy.withLock { _ in
            var text = ""
            try Generator(model: model, tokenizer: tokenizer).generate(prompt: prompt, options: options) { text += $0 }
            return text
        }
    }

    /// A conversation in the model's chat format: LLaMA 3's headers or 2B4T's turns for their vocabularies (or the
    /// file's chat template), plain "User:"/"Assistant:" lines for any other model.
    public func chat(system: String? = nil) throws -> ChatSession {
        let template = ChatTemplate.choose(jinja: try ModelFile.chatTemplate(path: path), tokenizer: tokenizer, ffn: config.ffn)
        return ChatSession(model: self, chat: try Chat(model: model, tokenizer: tokenizer, template: template, system: system))
    }

    /// Runs `body` on a thread of its own, one generation at a time, and streams what it yields.
    func stream(_ body: @escaping @Sendable (_ isCancelled: () -> Bool, _ yield: (String) -> Void) throws -> Void)
        -> AsyncThrowingStream<String, any Error> {
        AsyncThrowingStream { continuation in
            let cancelled = Atomic(false)
            continuation.onTermination = { _ in cancelled.store(true, ordering: .relaxed) }
            Thread.detachNewThread {
                do {
                    try self.busy.withLock { _ in
                        try body({ cancelled.load(ordering: .relaxed) }) { continuation.yield($0) }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
        }
    }
}

/// A multi-turn conversation: each `send` adds the user's message and the reply to `messages`.
public final class ChatSession: @unchecked Sendable {
    private let model: LanguageModel
    private let state: Mutex<Chat>

    init(model: LanguageModel, chat: Chat) {
        self.model = model; state = Mutex(chat)
    }

    /// The conversation so far (system message, then user and assistant turns).
    public var messages: [ChatMessage] { state.withLock { $0.messages } }

    /// Sends a user message and streams the reply; the reply joins `messages` when it ends.
    public func send(_ text: String, options: GenerationOptions = GenerationOptions()) -> AsyncThrowingStream<String, any Error> {
        model.stream { isCancelled, yield in
            _ = try self.state.withLock { chat in try chat.send(text, options: options, isCancelled: isCancelled, onText: yield) }
        }
    }
}
