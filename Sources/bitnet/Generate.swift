import ArgumentParser
import BitNet
import BitNetKernels
import Foundation
import BitNetTools

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text from a model (streams to standard output).")

    @Option(name: [.long, .customShort("m")], help: "Model: a training output directory, a .safetensors, .gguf or llama2.c .bin file, or a Hugging Face directory.") var model: String
    @Option(help: "Tokenizer file for formats that keep it apart (llama2.c tokenizer.bin, tokenizer.json).") var tokenizer: String?
    @Option(name: [.long, .customShort("p")], help: "Prompt text (empty: start from BOS).") var prompt: String = ""
    @OptionGroup var sampling: SamplingOptions
    @Option(name: .customLong("kv-cache"), help: "KV cache storage: f16, f32 (exact reference), q8 or q4 (per-head absmax).") var kvCache: String = "f16"
    @Option(help: "Output head and embedding storage: f32, f16, q8, q6 or q4 (absmax blocks of 32); default f32, or f16 read in place from a GGUF F16 embedding.")
    var head: String?
    @Option(name: .customLong("ternary-layout"), help: ternaryLayoutHelp) var ternaryLayout: String = "auto"

    func run() throws {
        try runReportingErrors {
            let kv = try parseKVCacheFormat(kvCache)
            let headFormat = try head.map { h in
                guard let f = HeadFormat(rawValue: h) else {
                    throw BitNetError.invalidArgument("unknown head format '\(h)' (use \(HeadFormat.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                return f
            }
            let t0 = Clock.now()
            let loaded = try ModelFile.loadInference(path: model, tokenizerPath: tokenizer, headFormat: headFormat, preferBase3: ternaryLayout != "t2")
            guard let tok = loaded.tokenizer else {
                throw BitNetError.invalidArgument("\(model) has no tokenizer; pass --tokenizer FILE")
            }
            var o = sampling.generationOptions()
            o.kvCache = kv
            let im = loaded.model
            try applyTernaryLayout(ternaryLayout, to: im)
            let loadSeconds = Clock.now() - t0
            let generator = Generator(model: im, tokenizer: tok)
            let ids = try generator.promptTokens(prompt, addBOS: o.addBOS)
            let context = im.config.maxSeqLen
            if ids.count + o.maxTokens > context {
                printError("note: \(ids.count) prompt tokens + --max-tokens \(o.maxTokens) pass the model's context of \(context) "
                           + "positions; generation stops at \(context)")
            }
            let stdout = FileHandle.standardOutput
            if !prompt.isEmpty { stdout.write(Data(prompt.utf8)) }
            var timings: GenerationTimings?
            try generator.generate(promptTokens: ids, options: o, report: { timings = $0 }) { piece in
                stdout.write(Data(piece.utf8))
            }
            stdout.write(Data("\n".utf8))
            printError(String(format: "load %.2f s | ", loadSeconds) + (timings?.summary ?? ""))
        }
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluate a model.", subcommands: [Perplexity.self, WikiTextPerplexity.self, ZeroShot.self])

    struct Perplexity: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Token-level perplexity and bits per byte of a model on a text file.")
        @Option(help: "Model path.") var model: String
        @Option(help: "Tokenizer file when the model has none inside.") var tokenizer: String?
        @Option(help: "Text file.") var data: String
        @Option(help: "Window length in tokens (default: the model's context).") var context: Int?
        @Option(help: "Window stride (default: the window length; smaller gives each token more context).") var stride: Int?

        func run() throws {
            try runReportingErrors {
                let loaded = try ModelFile.load(path: model, tokenizerPath: tokenizer)
                guard let tok = loaded.tokenizer else { throw BitNetError.invalidArgument("\(model) has no tokenizer; pass --tokenizer FILE") }
                let text = try FileIO.readText(data)
                if let context, context > loaded.weights.config.maxSeqLen {
                    printError("note: --context \(context) is beyond the model's \(loaded.weights.config.maxSeqLen) positions; "
                               + "windows of \(loaded.weights.config.maxSeqLen) are used")
                }
                let r = try perplexity(weights: loaded.weights, tokenizer: tok, text: text, context: context, stride: stride, showProgress: true)
                print(String(format: "tokens %d  bytes %d  nll %.4f  perplexity %.3f  bits/byte %.4f", r.tokens, r.bytes, r.meanNLL, r.perplexity, r.bitsPerByte))
            }
        }
    }
}

struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write float32 little-endian logits [tokens x vocab] for a token sequence from position 0.")
    @Option(help: "Model path.") var model: String
    @Option(help: "Comma-separated token ids, e.g. 1,5,100.") var tokens: String
    @Option(help: "Output file.") var out: String
    @Option(help: "Path: 'inference' (KV cache, integer BitLinear) or 'reference' (batched training forward).") var path: String = "inference"

    func run() throws {
        try runReportingErrors {
            let ids = try tokens.split(separator: ",").map { s -> Int in
                guard let v = Int(s.trimmingCharacters(in: .whitespaces)) else { throw BitNetError.invalidArgument("--tokens: '\(s)' is not an integer") }
                return v
            }
            guard !ids.isEmpty else { throw BitNetError.invalidArgument("--tokens is empty") }
            let loaded = try ModelFile.load(path: model)
            let c = loaded.weights.config
            guard ids.count <= c.maxSeqLen else { throw BitNetError.invalidArgument("\(ids.count) tokens exceed the context \(c.maxSeqLen)") }
            for t in ids where t < 0 || t >= c.vocabSize { throw BitNetError.invalidArgument("token \(t) outside vocabulary 0..<\(c.vocabSize)") }
            var outData = Data(capacity: ids.count * c.vocabSize * 4)
            switch path {
            case "inference":
                let session = InferenceSession(model: InferenceModel(weights: loaded.weights))
                for t in ids { outData.append(try session.step(token: t)) }
            case "reference":
                let g = TrainingGraph(weights: loaded.weights, batch: 1, seqLen: ids.count)
                g.forward(inputs: ids, training: false)
                outData.append(UnsafeBufferPointer(start: g.logits.ptr, count: ids.count * c.vocabSize))
            default:
                throw BitNetError.invalidArgument("--path must be inference or reference")
            }
            try FileIO.writeAtomically(outData, to: URL(fileURLWithPath: out))
            printError("wrote \(ids.count) x \(c.vocabSize) float32 logits to \(out)")
        }
    }
}

/// Applies `--ternary-layout` to a loaded model: t2, t3, or auto (the model's `preferredTernaryLayout`); an unknown
/// name is an error listing the valid ones. Returns the layout now in use.
@discardableResult
func applyTernaryLayout(_ name: String, to model: InferenceModel) throws -> TernaryLayout {
    let layout: TernaryLayout
    if name == "auto" {
        layout = model.preferredTernaryLayout
    } else {
        guard let l = TernaryLayout(rawValue: name) else {
            throw BitNetError.invalidArgument("unknown ternary layout '\(name)' (use auto, \(TernaryLayout.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        layout = l
    }
    model.setTernaryLayout(layout)
    return layout
}

/// Help text of every command's `--ternary-layout` option.
let ternaryLayoutHelp = ArgumentHelp("Ternary linears in memory: t2 (2 bits/weight), t3 (1.6 bits, same logits) or auto (t3 where its AVX512-VBMI kernels run and it takes fewer bytes; linears mapped from an I2_S file are then copied and their file pages released).")

/// The `--kv-cache` value as a format, or an error listing the valid ones.
func parseKVCacheFormat(_ name: String) throws -> KVCacheFormat {
    guard let f = KVCacheFormat(rawValue: name) else {
        throw BitNetError.invalidArgument("unknown KV cache format '\(name)' (use \(KVCacheFormat.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    return f
}
