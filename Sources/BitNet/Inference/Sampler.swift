import Foundation

/// Picks the next token from logits: greedy at temperature 0, otherwise temperature + top-k + top-p sampling, seeded.
public struct Sampler: Sendable {
    public var temperature: Float
    public var topK: Int
    public var topP: Float
    var rng: SeededRNG

    /// `topK` 0 and `topP` 1 disable those filters.
    public init(temperature: Float = 0.8, topK: Int = 0, topP: Float = 1, seed: UInt64 = 0) throws {
        guard temperature >= 0, temperature.isFinite else { throw BitNetError.invalidArgument("temperature must be >= 0, got \(temperature)") }
        guard topK >= 0 else { throw BitNetError.invalidArgument("top-k must be >= 0, got \(topK)") }
        guard topP > 0 && topP <= 1 else { throw BitNetError.invalidArgument("top-p must be in (0, 1], got \(topP)") }
        self.temperature = temperature; self.topK = topK; self.topP = topP
        rng = SeededRNG(seed: seed)
    }

    /// Index of the largest logit (first one on ties).
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        for i in 1..<logits.count where logits[i] > logits[best] { best = i }
        return best
    }

    /// The next token for these logits.
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int {
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
    /// Storage of the KV cache (Table 6: 8- and 4-bit per-head absmax).
    public var kvCache: KVCacheFormat = .f32
    public init() {}
}

/// Prompt → tokens → text, streaming each decoded piece as it is ready.
public struct Generator {
    public let model: InferenceModel
    public let tokenizer: any Tokenizer

    public init(model: InferenceModel, tokenizer: any Tokenizer) {
        self.model = model; self.tokenizer = tokenizer
    }

    /// Generates after `prompt` (BOS prepended when the tokenizer has one); `onText` receives text pieces as they decode.
    /// Returns the generated token ids (prompt excluded).
    @discardableResult
    public func generate(prompt: String, options: GenerationOptions, onText: (String) -> Void) throws -> [Int] {
        var ids = tokenizer.encode(prompt)
        // Byte-level BPE models add BOS when their tokenizer says so (LLaMA 3, 2B4T); those trained here do not.
        let wantsBOS = options.addBOS ?? (ids.isEmpty || !(tokenizer is ByteLevelBPE) || (tokenizer as? ByteLevelBPE)?.addsBOS == true)
        if wantsBOS, let bos = tokenizer.bosID { ids.insert(bos, at: 0) }
        guard !ids.isEmpty else { throw BitNetError.invalidArgument("empty prompt and the tokenizer has no BOS token to start from") }
        return try generate(promptTokens: ids, options: options, onText: onText)
    }

    /// Generates after the given prompt token ids.
    @discardableResult
    public func generate(promptTokens: [Int], options: GenerationOptions, onText: (String) -> Void) throws -> [Int] {
        let c = model.config
        guard options.maxTokens >= 0 else { throw BitNetError.invalidArgument("max tokens must be >= 0") }
        guard promptTokens.count < c.maxSeqLen else {
            throw BitNetError.invalidArgument("prompt has \(promptTokens.count) tokens; the model's context is \(c.maxSeqLen)")
        }
        for t in promptTokens where t < 0 || t >= c.vocabSize {
            throw BitNetError.invalidArgument("prompt token \(t) outside vocabulary 0..<\(c.vocabSize)")
        }
        var sampler = try Sampler(temperature: options.temperature, topK: options.topK, topP: options.topP, seed: options.seed)
        let session = try InferenceSession(model: model, kvCache: options.kvCache)
        var decoder = StreamingDecoder(tokenizer: tokenizer)
        for t in promptTokens { _ = decoder.push(t) }
        var out: [Int] = []
        // The prompt in one batched pass, then one token at a time.
        var logits = try session.prefill(tokens: promptTokens)
        while out.count < options.maxTokens {
            let next = sampler.sample(logits)
            if options.stopAtEOS, let eos = tokenizer.eosID, next == eos { break }
            out.append(next)
            let piece = decoder.push(next)
            if !piece.isEmpty { onText(piece) }
            if out.count == options.maxTokens || session.position >= session.maxSeqLen { break }
            logits = try session.step(token: next)
        }
        let tail = decoder.finish()
        if !tail.isEmpty { onText(tail) }
        return out
    }
}
