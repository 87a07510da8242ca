import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetKernels

/// Picks the next token from logits: greedy at temperature 0, otherwise temperature + top-k + top-p sampling, seeded.
package struct Sampler: Sendable {
    package var temperature: Float
    package var topK: Int
    package var topP: Float
    var rng: SeededRNG

    /// `topK` 0 and `topP` 1 disable those filters.
    package init(temperature: Float = 0.8, topK: Int = 0, topP: Float = 1, seed: UInt64 = 0) throws {
        guard temperature >= 0, temperature.isFinite else { throw BitNetError.invalidArgument("temperature must be >= 0, got \(temperature)") }
        guard topK >= 0 else { throw BitNetError.invalidArgument("top-k must be >= 0, got \(topK)") }
        guard topP > 0 && topP <= 1 else { throw BitNetError.invalidArgument("top-p must be in (0, 1], got \(topP)") }
        self.temperature = temperature; self.topK = topK; self.topP = topP
        rng = SeededRNG(seed: seed)
    }

    /// Index of the largest logit (first one on ties).
    package static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        for i in 1..<logits.count where logits[i] > logits[best] { best = i }
        return best
    }

    /// The next token for these logits.
    package mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int {
        if temperature == 0 { return Self.argmax(logits) }
        var idx = Array(0..<logits.count)
        // Candidates sorted by logit (descending, index breaks ties so results are reproducible).
        idx.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        if topK > 0 && topK < idx.count { idx.removeLast(idx.count - topK) }
        let m = logits[idx[0]]
        var probs = idx.map { Double(expf((logits[$0] - m) / temperature)) }
        let total = probs.reduce(0, +)
        for i in probs.indices { probs[i] /= total }
        if topP < 1 {
            var cum = 0.0, keep = probs.count
            for (i, p) in probs.enumerated() { cum += p; if cum >= Double(topP) { keep = i + 1; break } }
            probs.removeLast(probs.count - keep); idx.removeLast(idx.count - keep)
            let t = probs.reduce(0, +)
            for i in probs.indices { probs[i] /= t }
        }
        let r = Double(rng.nextUniform())
        var cum = 0.0
        for (i, p) in probs.enumerated() { cum += p; if r < cum { return idx[i] } }
        return idx[idx.count - 1]
    }
}

/// Options of one generation.
public struct GenerationOptions: Sendable {
    public var maxTokens: Int = 128
    public var temperature: Float = 0.8
    public var topK: Int = 40
    public var topP: Float = 0.95
    public var seed: UInt64 = 42
    /// Stop at the tokenizer's end-of-sequence token.
    public var stopAtEOS = true
    /// Prepend BOS to the prompt; nil decides by tokenizer: llama2.c models are trained with BOS, models trained
    /// here on raw text (byte-level BPE) are not, so they get BOS only for an empty prompt.
    public var addBOS: Bool? = nil
    /// Storage of the KV cache: f16 by default, as llama.cpp's (half the memory of f32 and faster attention at long
    /// contexts); f32 for exact reference comparisons; q8/q4 per-head absmax (Table 6).
    public var kvCache: KVCacheFormat = .f16

    /// Options with these values and the defaults above for the rest.
    public init(maxTokens: Int = 128, temperature: Float = 0.8, topK: Int = 40, topP: Float = 0.95, seed: UInt64 = 42,
                kvCache: KVCacheFormat = .f16) {
        self.maxTokens = maxTokens; self.temperature = temperature; self.topK = topK; self.topP = topP; self.seed = seed
        self.kvCache = kvCache
    }
}

/// Why a generation ended: the end-of-sequence token (or a stop string) or a length limit (max tokens, context).
public enum FinishReason: String, Sendable {
    case stop, length
}

/// The sampling loop of one generation as a state machine: the caller runs the model (alone, or batched with
/// other sequences) and hands each position's logits to `accept`, which samples, decodes and says what to run next.
/// `Generator` and `bitnet serve` both drive it, so they give the same tokens for the same seed and options.
package struct SequenceGenerator: Sendable {
    package let options: GenerationOptions
    /// Generated token ids (prompt excluded).
    package private(set) var tokens: [Int] = []
    /// Set once the generation is over.
    package private(set) var finishReason: FinishReason?
    var sampler: Sampler
    var decoder: StreamingDecoder
    let eosID: Int?
    /// Positions the sequence may fill (prompt included).
    let contextLength: Int

    /// Checks the prompt against the vocabulary and `contextLength` (the session's positions) and seeds the sampler.
    package init(tokenizer: any Tokenizer, promptTokens: [Int], options: GenerationOptions, vocabSize: Int, contextLength: Int) throws {
        guard options.maxTokens >= 0 else { throw BitNetError.invalidArgument("max tokens must be >= 0") }
        guard !promptTokens.isEmpty else { throw BitNetError.invalidArgument("empty prompt") }
        guard promptTokens.count < contextLength else {
            throw BitNetError.invalidArgument("prompt has \(promptTokens.count) tokens; the model's context is \(contextLength)")
        }
        for t in promptTokens where t < 0 || t >= vocabSize {
            throw BitNetError.invalidArgument("prompt token \(t) outside vocabulary 0..<\(vocabSize)")
        }
        self.options = options
        self.contextLength = contextLength
        sampler = try Sampler(temperature: options.temperature, topK: options.topK, topP: options.topP, seed: options.seed)
        decoder = StreamingDecoder(tokenizer: tokenizer)
        for t in promptTokens { _ = decoder.push(t) }
        eosID = options.stopAtEOS ? tokenizer.eosID : nil
        if options.maxTokens == 0 { finishReason = .length }
    }

    /// Samples the next token from the logits of the last position (`position` = positions now in the cache).
    /// Returns the text that became complete and the token the model must run next (nil: finished).
    package mutating func accept(logits: UnsafeBufferPointer<Float>, position: Int) -> (text: String, next: Int?) {
        guard finishReason == nil else { return ("", nil) }
        let next = sampler.sample(logits)
        if let eosID, next == eosID { finishReason = .stop; return ("", nil) }
        tokens.append(next)
        let piece = decoder.push(next)
        if tokens.count == options.maxTokens || position >= contextLength { finishReason = .length; return (piece, nil) }
        return (piece, next)
    }

    /// Ends the generation early (a stop string, a cancelled request) with `reason`.
    package mutating func finish(reason: FinishReason) {
        if finishReason == nil { finishReason = reason }
    }

    /// Text held back waiting for the rest of a UTF-8 sequence; call once when finished.
    package mutating func flush() -> String { decoder.finish() }
}

/// Where a generation's time went, as llama.cpp reports it: the prompt in one batched pass, then token by token.
package struct GenerationTimings: Sendable {
    package let promptTokens: Int, promptSeconds: Double, generatedTokens: Int, generationSeconds: Double

    /// "prompt 6 tokens in 0.004 s (1500.0 tok/s) | generation 100 tokens in 0.52 s (192.3 tok/s)".
    package var summary: String {
        func rate(_ n: Int, _ s: Double) -> String { String(format: "%d tokens in %.3f s (%.1f tok/s)", n, s, Double(n) / max(s, 1e-9)) }
        return "prompt \(rate(promptTokens, promptSeconds)) | generation \(rate(generatedTokens, generationSeconds))"
    }
}

/// Prompt → tokens → text, streaming each decoded piece as it is ready.
package struct Generator {
    package let model: InferenceModel
    package let tokenizer: any Tokenizer

    package init(model: InferenceModel, tokenizer: any Tokenizer) {
        self.model = model; self.tokenizer = tokenizer
    }

    /// The prompt's token ids as `generate(prompt:)` runs them: BOS prepended when `addBOS` (nil: by tokenizer) says so.
    package func promptTokens(_ prompt: String, addBOS: Bool?) throws -> [Int] {
        var ids = tokenizer.encode(prompt)
        let wantsBOS = addBOS ?? (ids.isEmpty || tokenizer.addsBOS)
        if wantsBOS, let bos = tokenizer.bosID { ids.insert(bos, at: 0) }
        guard !ids.isEmpty else { throw BitNetError.invalidArgument("empty prompt and the tokenizer has no BOS token to start from") }
        return ids
    }

    /// Generates after `prompt` (BOS prepended when the tokenizer has one); `onText` receives text pieces as they decode.
    /// Returns the generated token ids (prompt excluded).
    @discardableResult
    package func generate(prompt: String, options: GenerationOptions, onText: (String) -> Void) throws -> [Int] {
        try generate(promptTokens: promptTokens(prompt, addBOS: options.addBOS), options: options, onText: onText)
    }

    /// Generates after the given prompt token ids; `isCancelled` is asked before each token (true: stop there);
    /// `report` receives the prompt and generation timings at the end.
    @discardableResult
    package func generate(promptTokens: [Int], options: GenerationOptions, isCancelled: () -> Bool = { false },
                          report: (GenerationTimings) -> Void = { _ in }, onText: (String) -> Void) throws -> [Int] {
        let c = model.config
        var seq = try SequenceGenerator(tokenizer: tokenizer, promptTokens: promptTokens, options: options,
                                        vocabSize: c.vocabSize, contextLength: c.maxSeqLen)
        let session = try InferenceSession(model: model, promptTokens: promptTokens.count, maxNewTokens: options.maxTokens, kvCache: options.kvCache)
        // The prompt in one batched pass, then one token at a time.
        let t0 = Clock.now()
        var logits = try session.prefill(tokens: promptTokens)
        let t1 = Clock.now()
        defer {
            report(GenerationTimings(promptTokens: promptTokens.count, promptSeconds: t1 - t0, generatedTokens: seq.tokens.count,
                                     generationSeconds: Clock.now() - t1))
        }
        while seq.finishReason == nil {
            if isCancelled() { seq.finish(reason: .stop); break }
            let (piece, next) = seq.accept(logits: logits, position: session.position)
            if !piece.isEmpty { onText(piece) }
            guard let next else { break }
            logits = try session.step(token: next)
        }
        let tail = seq.flush()
        if !tail.isEmpty { onText(tail) }
        return seq.tokens
    }
}
