import ArgumentParser
import BitNet
import Foundation
import BitNetTools
import BitNetKernels

struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat with an instruction-tuned model (LLaMA 3 or BitNet b1.58 2B4T prompt format), one line per turn.")

    @Option(name: [.long, .customShort("m")], help: "Model: a training output directory, a .safetensors, .gguf or llama2.c .bin file, or a Hugging Face directory (the models `serve` takes).") var model: String
    @Option(help: "Tokenizer file when the model has none inside (tokenizer.json).") var tokenizer: String?
    @Option(help: "Prompt format: auto (the model's chat template; LLaMA 3's or 2B4T's for their vocabularies; plain 'User:'/'Assistant:' lines otherwise), llama3, bitnet or plain.") var template: String = "auto"
    @Option(help: "System message.") var system: String?
    @Option(help: "A single user message: answer it and exit instead of reading standard input.") var message: String?
    @OptionGroup var sampling: SamplingOptions
    @Option(name: .customLong("ternary-layout"), help: ternaryLayoutHelp) var ternaryLayout: String = "auto"

    func run() throws {
        try runReportingErrors {
            let loaded = try ModelFile.loadInference(path: model, tokenizerPath: tokenizer, preferBase3: ternaryLayout != "t2")
            guard let tok = loaded.tokenizer else { throw BitNetError.invalidArgument("\(model) has no tokenizer; pass --tokenizer FILE") }
            let kind: ChatTemplate
            if template == "auto" {
                kind = ChatTemplate.choose(jinja: try ModelFile.chatTemplate(path: model), tokenizer: tok, ffn: loaded.model.config.ffn)
            } else {
                guard let k = ChatTemplate(rawValue: template) else {
                    throw BitNetError.invalidArgument("--template must be auto, \(ChatTemplate.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                kind = k
            }
            let im = loaded.model
            try applyTernaryLayout(ternaryLayout, to: im)
            var chat = try Chat(model: im, tokenizer: tok, template: kind, system: system)
            let o = sampling.generationOptions()
            let out = FileHandle.standardOutput
            if let message {
                _ = try chat.send(message, options: o) { out.write(Data($0.utf8)) }
                out.write(Data("\n".utf8))
                return
            }
            printError("chat (\(kind.rawValue) format); an empty line or end of input quits")
            while true {
                printError("> ", terminator: "")
                guard let line = readLine(), !line.isEmpty else { break }
                _ = try chat.send(line, options: o) { out.write(Data($0.utf8)) }
                out.write(Data("\n".utf8))
                if chat.lastTrimmedTurns > 0 {
                    printError("note: the conversation outgrew the context of \(im.config.maxSeqLen) positions; "
                               + "its \(chat.lastTrimmedTurns) oldest message\(chat.lastTrimmedTurns == 1 ? " was" : "s were") dropped")
                }
            }
        }
    }
}

/// Sampling flags shared by `generate` and `chat`; llama.cpp's spellings (`-n`, `--temp`) work too, and a negative
/// number after a flag is its value (so it reaches the range checks), not another flag.
struct SamplingOptions: ParsableArguments {
    @Option(name: [.customLong("max-tokens"), .customShort("n")], parsing: .unconditional, help: "Tokens to generate.")
    var maxTokens: Int = 256
    @Option(name: [.long, .customLong("temp")], parsing: .unconditional, help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0.8
    @Option(name: .customLong("top-k"), parsing: .unconditional, help: "Keep the k most likely tokens (0: all).") var topK: Int = 40
    @Option(name: .customLong("top-p"), parsing: .unconditional, help: "Nucleus sampling mass (1: off).") var topP: Float = 0.95
    @Option(parsing: .unconditional, help: "Sampling seed (default: a random one, printed so the run can be repeated).")
    var seed: UInt64?

    /// Checked before anything runs or prints.
    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1, got \(maxTokens)") }
        guard temperature >= 0, temperature.isFinite else {
            throw ValidationError("--temperature must be 0 (greedy) or more, got \(temperature)")
        }
        guard topK >= 0 else { throw ValidationError("--top-k must be 0 (off) or more, got \(topK)") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1], got \(topP)") }
    }

    /// The flags as library options.
    func generationOptions() -> GenerationOptions {
        var o = GenerationOptions()
        o.maxTokens = maxTokens; o.temperature = temperature; o.topK = topK; o.topP = topP
        if let seed { o.seed = seed } else {
            // As llama.cpp: a random seed unless one is given, said on standard error when sampling uses it.
            o.seed = UInt64.random(in: 0...UInt64(UInt32.max))
            if temperature > 0 { printError("seed \(o.seed) (pass --seed \(o.seed) to repeat this run)") }
        }
        return o
    }
}
