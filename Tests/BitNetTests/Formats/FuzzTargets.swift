import Foundation
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining

/// The per-input functions of the libFuzzer harnesses: one per kind of file a user can point the tool at, each
/// calling the loader the CLI calls for it. scripts/fuzz.sh compiles this file (its `import BitNet…` lines dropped)
/// into fuzz/FuzzMain.swift's harness, and FuzzCorpusReplayTests runs the same functions on the kept corpus and
/// crashers of Tests/BitNetTests/Fixtures/fuzz/<harness>/. A function returns when the loader returns or throws;
/// a crash, trap, hang or huge allocation is a finding.
enum FuzzTargets {
    struct Harness: Sendable {
        /// Directory name under Tests/BitNetTests/Fixtures/fuzz/ and the name scripts/fuzz.sh takes.
        let name: String
        /// Largest input libFuzzer makes (-max_len); seeds are truncated to it.
        let maxLen: Int
        /// Runs one input.
        let run: @Sendable (Data) -> Void
        /// Seeds written by the project's own writers (complete small files; fuzz.sh adds the repository's fixtures).
        let seeds: @Sendable () -> [Data]
    }

    static let harnesses: [Harness] = [
        Harness(name: "parsers", maxLen: 8192, run: parsers, seeds: { [] }),
        Harness(name: "tokenizer-json", maxLen: 32768, run: tokenizerJSON, seeds: { [tinyBPEJSON()] }),
        Harness(name: "hf-model", maxLen: 400_000, run: hfModel, seeds: { [] }),
        Harness(name: "llama2c-model", maxLen: 8192, run: llama2cModel, seeds: { [tinyLlama2c(shared: true), tinyLlama2c(shared: false)] }),
        Harness(name: "llama2c-tokenizer", maxLen: 8192, run: llama2cTokenizer, seeds: { [] }),
        Harness(name: "model-file", maxLen: 100_000, run: modelFile, seeds: { [tinyModelFile()] }),
        Harness(name: "checkpoint", maxLen: 65536, run: checkpoint, seeds: { [tinyCheckpoint()] }),
        Harness(name: "gguf-vocab", maxLen: 65536, run: ggufVocab, seeds: { [] }),
        Harness(name: "gguf-model", maxLen: 200_000, run: ggufModel, seeds: tinyGGUFModels),
        Harness(name: "chat-template", maxLen: 16384, run: chatTemplate, seeds: chatTemplateSeeds),
    ]

    static func harness(_ name: String) -> Harness? { harnesses.first { $0.name == name } }

    // MARK: harnesses

    /// GGUF and safetensors parsers (the first byte picks: even GGUF, odd safetensors), the harness kept from before.
    @Sendable static func parsers(_ input: Data) {
        guard let first = input.first else { return }
        let data = Data(input.dropFirst())
        if first & 1 == 0 {
            if let f = try? GGUFFile.parse(data, path: "fuzz.gguf") {
                for t in f.tensors {
                    precondition(f.dataStart + t.offset + t.byteCount <= data.count, "tensor out of bounds")
                    if t.count <= 1 << 16 { _ = try? f.floats(t.name) }
                }
            }
        } else if let f = try? Safetensors.read(path: write(data, "fuzz.safetensors")) {
            for (name, e) in f.entries where e.end - e.begin <= 1 << 20 { _ = try? f.floats(name) }
        }
    }

    /// A Hugging Face tokenizer.json given with --tokenizer (`ModelFile.loadTokenizer` → `ByteLevelBPE(contentsOf:)`).
    @Sendable static func tokenizerJSON(_ data: Data) {
        if let t = try? ModelFile.loadTokenizer(path: write(data, "tokenizer.json"), vocabSize: 1 << 20) { exercise(t) }
    }

    /// A Hugging Face model directory: [UInt16 LE n][config.json: n bytes][model.safetensors: the rest]
    /// (`ModelFile.loadInference` → `HFModel.load`: config.json, weight-name mapping, packed/bf16 linears).
    @Sendable static func hfModel(_ input: Data) {
        guard input.count >= 2 else { return }
        let n = Int(input[input.startIndex]) | Int(input[input.startIndex + 1]) << 8
        let body = input.dropFirst(2)
        let dir = scratch("hf")
        write(Data(body.prefix(n)), "hf/config.json")
        write(Data(body.dropFirst(n)), "hf/model.safetensors")
        if let m = try? ModelFile.loadInference(path: dir) { exercise(m.tokenizer) }
        _ = try? ModelFile.chatTemplate(path: dir)
    }

    /// A llama2.c checkpoint (`model.bin`, `ModelFile.loadInference` → `Llama2cModel.load`).
    @Sendable static func llama2cModel(_ data: Data) {
        _ = try? ModelFile.loadInference(path: write(data, "model.bin"))
    }

    /// A llama2.c tokenizer (`tok512.bin`): [UInt16 LE vocab size the model has][file]
    /// (`ModelFile.loadTokenizer` → `Llama2cTokenizer(contentsOf:vocabSize:)`).
    @Sendable static func llama2cTokenizer(_ input: Data) {
        guard input.count >= 2 else { return }
        let vocab = Int(input[input.startIndex]) | Int(input[input.startIndex + 1]) << 8
        if let t = try? ModelFile.loadTokenizer(path: write(Data(input.dropFirst(2)), "tokenizer.bin"), vocabSize: vocab) { exercise(t) }
    }

    /// The project's model file (safetensors with `bitnet.config` and maybe `bitnet.tokenizer`; `ModelFile.loadInference`).
    @Sendable static func modelFile(_ data: Data) {
        if let m = try? ModelFile.loadInference(path: write(data, "model.safetensors")) { exercise(m.tokenizer) }
    }

    /// A training checkpoint resumed by `bitnet train` (`Trainer.checkResumable`, then `Trainer.loadCheckpoint`),
    /// against the run of `checkpointTrainer`.
    @Sendable static func checkpoint(_ data: Data) {
        guard let trainer = try? checkpointTrainer() else { preconditionFailure("the checkpoint harness's trainer") }
        write(data, "run/checkpoint.safetensors")
        guard (try? trainer.checkResumable()) != nil else { return }
        _ = try? trainer.loadCheckpoint()
    }

    /// A GGUF vocabulary (`tokenizer.ggml.*`: gpt2 byte-level BPE or llama SentencePiece; `GGUFVocabulary.tokenizer(from:)`,
    /// and `GGUFModel.tokenizer(of:config:)` when the file describes a model).
    @Sendable static func ggufVocab(_ data: Data) {
        guard let f = try? GGUFFile.read(path: write(data, "vocab.gguf")) else { return }
        if let t = try? GGUFVocabulary.tokenizer(from: f) { exercise(t) }
        if let c = try? GGUFModel.config(of: f), let t = try? GGUFModel.tokenizer(of: f, config: c) { exercise(t) }
    }

    /// A GGUF model as `bitnet convert` reads it (`ModelFile.load` → `GGUFModel.load`) and as `generate`/`chat`/`serve`
    /// build it (`ModelFile.loadInference` → `InferenceModel(gguf:)`: TQ1_0/TQ2_0/I2_S into packed inference weights).
    @Sendable static func ggufModel(_ data: Data) {
        let path = write(data, "model.gguf")
        if let m = try? ModelFile.load(path: path) { exercise(m.tokenizer) }
        if let m = try? ModelFile.loadInference(path: path) { exercise(m.tokenizer) }
    }

    /// The chat template a model carries (`ModelFile.chatTemplate`): the first byte picks a Hugging Face directory's
    /// tokenizer_config.json (even) or a GGUF file's `tokenizer.chat_template` (odd); the rest is the file. Then
    /// `ChatTemplate.choose` and the prompt rendered and encoded as `Chat` does.
    @Sendable static func chatTemplate(_ input: Data) {
        guard let first = input.first else { return }
        let data = Data(input.dropFirst())
        let path: String
        var tokenizer: (any Tokenizer)? = nil
        if first & 1 == 0 {
            path = scratch("chat")
            write(Data(#"{"model_type": "llama"}"#.utf8), "chat/config.json")
            write(data, "chat/tokenizer_config.json")
        } else {
            path = write(data, "chat.gguf")
            if let f = try? GGUFFile.read(path: path) { tokenizer = try? GGUFVocabulary.tokenizer(from: f) }
        }
        guard let jinja = try? ModelFile.chatTemplate(path: path) else { return }
        let tok = tokenizer ?? chatTokenizer
        let messages = [ChatMessage(.system, "Be brief."), ChatMessage(.user, "Hi <|eot_id|> there"), ChatMessage(.assistant, "Hello.")]
        for ffn in [FFNKind.swiglu, .relu2] {
            let prompt = ChatTemplate.choose(jinja: jinja, tokenizer: tok, ffn: ffn).render(messages)
            let ids = (tok as? ByteLevelBPE)?.encode(prompt, parseSpecial: true) ?? tok.encode(prompt)
            _ = tok.decode(ids)
        }
    }

    // MARK: helpers

    /// Uses a loaded tokenizer as generation and chat do: encode (special tokens parsed), decode, stream every id.
    static func exercise(_ tokenizer: (any Tokenizer)?) {
        guard let t = tokenizer else { return }
        let text = "Hello world! <|eot_id|><|begin_of_text|> 12345 ünïcödé 你好 🙂\n\t  spaces  end"
        let ids = (t as? ByteLevelBPE)?.encode(text, parseSpecial: true) ?? t.encode(text)
        _ = t.decode(ids)
        var stream = StreamingDecoder(tokenizer: t, previousID: t.bosID)
        for id in ids + Array(0..<min(t.vocabSize, 1024)) + [-1, t.vocabSize] { _ = stream.push(id) }
        _ = stream.finish()
    }

    /// A per-process scratch directory (created) for the files a harness writes; `sub` is a folder in it.
    static func scratch(_ sub: String = "") -> String {
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("bitnet-fuzz-\(getpid())").appendingPathComponent(sub)
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.path
    }

    /// Writes `data` to `name` in the scratch directory and returns its path.
    @discardableResult
    static func write(_ data: Data, _ name: String) -> String {
        let url = URL(fileURLWithPath: scratch((name as NSString).deletingLastPathComponent)).appendingPathComponent((name as NSString).lastPathComponent)
        do { try data.write(to: url) } catch { preconditionFailure("cannot write \(url.path): \(error)") }
        return url.path
    }

    // MARK: fixed models and seeds

    /// A small tokenizer with LLaMA 3's chat tokens, for templates of files that carry no vocabulary.
    static let chatTokenizer: ByteLevelBPE = {
        let specials = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]
        do { return try ByteLevelBPE.train(text: "hello world, hello there", vocabSize: 256 + specials.count + 4, specialTokens: specials) }
        catch { preconditionFailure("chat tokenizer: \(error)") }
    }()

    static let tinyConfig = ModelConfig(arch: .b158, vocabSize: 16, dim: 8, nLayers: 1, nHeads: 2, nKVHeads: 1, ffnDim: 16, maxSeqLen: 8)

    /// The run the checkpoint harness resumes (a fixed tiny config, options and data) writing into the scratch folder.
    static func checkpointTrainer() throws -> Trainer {
        var o = TrainOptions()
        o.batchSize = 1; o.seqLen = 4; o.steps = 4
        let data = TokenDataset(train: (0..<12).map { Int32($0 % 16) }, val: [1, 2, 3, 4, 5, 6], trainBytes: 12, valBytes: 6)
        return try Trainer(config: tinyConfig, options: o, tokenizer: nil, data: data, outDir: URL(fileURLWithPath: scratch("run")))
    }

    static func tinyCheckpoint() -> Data {
        do {
            let t = try checkpointTrainer()
            let w = ModelWeights(config: tinyConfig, seed: 1)
            let adam = AdamW(count: w.layout.totalCount)
            adam.step = 1
            let log = [LogRow(step: 1, tokens: 4, lr: 1e-3, wd: 0.1, trainLoss: 2.5, valLoss: 2.6, gradNorm: 1, tokensPerSecond: 100)]
            try t.saveCheckpoint(weights: w, adam: adam, step: 1, log: log, seconds: 1, finalHeldOut: (loss: 2.6, tokens: 6))
            return try Data(contentsOf: t.checkpointURL)
        } catch { preconditionFailure("checkpoint seed: \(error)") }
    }

    static func tinyBPEJSON() -> Data {
        do { return try chatTokenizer.jsonData() } catch { preconditionFailure("tokenizer seed: \(error)") }
    }

    static func tinyModelFile() -> Data {
        let c = ModelConfig(arch: .b158, vocabSize: chatTokenizer.vocabSize, dim: 8, nLayers: 1, nHeads: 2, ffnDim: 16, maxSeqLen: 8)
        do { return try ModelFile.serialize(ModelWeights(config: c, seed: 2), tokenizer: chatTokenizer) }
        catch { preconditionFailure("model file seed: \(error)") }
    }

    /// A llama2.c checkpoint: dim 8, hidden 16, 1 layer, 2 heads, vocab 16 (negative: an unshared classifier), seq 4.
    static func tinyLlama2c(shared: Bool) -> Data {
        let (dim, hidden, vocab, seq, hd) = (8, 16, 16, 4, 4)
        var d = Data()
        for v in [dim, hidden, 1, 2, 2, shared ? vocab : -vocab, seq] { withUnsafeBytes(of: Int32(v).littleEndian) { d.append(contentsOf: $0) } }
        let floats = vocab * dim + (dim + 4 * dim * dim + dim + 3 * hidden * dim) + dim + seq * hd + (shared ? 0 : vocab * dim)
        for i in 0..<floats { withUnsafeBytes(of: Float(i % 7 - 3) * 0.01) { d.append(contentsOf: $0) } }
        return d
    }

    /// Small GGUF models by the project's writer: ternary linears (TQ1_0, TQ2_0, I2_S; rows of 256) and a float one.
    @Sendable static func tinyGGUFModels() -> [Data] {
        let ternary = ModelConfig(arch: .b158, vocabSize: 8, dim: 256, nLayers: 1, nHeads: 2, ffnDim: 256, maxSeqLen: 16, ffn: .relu2)
        let fp = ModelConfig(arch: .fp, vocabSize: 16, dim: 32, nLayers: 1, nHeads: 2, ffnDim: 32, maxSeqLen: 8, subNorm: false)
        do {
            var out: [Data] = []
            for (c, type, tok) in [(ternary, "tq1_0", nil), (ternary, "tq2_0", nil), (ternary, "i2_s", nil), (fp, "q8_0", nil),
                                   (ModelConfig(arch: .fp, vocabSize: chatTokenizer.vocabSize, dim: 8, nLayers: 1, nHeads: 2, ffnDim: 16,
                                                maxSeqLen: 8, subNorm: false), "f32", chatTokenizer as ByteLevelBPE?)] {
                var o = try GGUFModel.ExportOptions(type: type, embeddingType: type == "f32" ? "f32" : "f16")
                o.chatTemplate = "{{ '<|start_header_id|>' }}"
                out.append(try GGUFModel.serialize(ModelWeights(config: c, seed: 3), tokenizer: tok, options: o).serialize())
            }
            return out
        } catch { preconditionFailure("GGUF seeds: \(error)") }
    }

    @Sendable static func chatTemplateSeeds() -> [Data] {
        var g = GGUFWriter()
        g.set("tokenizer.chat_template", .string("{% for m in messages %}{{ m.role | capitalize }}: {{ m.content }}<|eot_id|>{% endfor %}Assistant: "))
        let hf = #"{"chat_template": "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>' }}", "bos_token": "<|begin_of_text|>"}"#
        return [Data([1]) + g.serialize(), Data([0]) + Data(hf.utf8)]
    }
}
