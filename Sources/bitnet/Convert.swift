import ArgumentParser
import BitNet
import Foundation
import BitNetTools
import BitNetKernels

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a model between the project's checkpoint, GGUF and Hugging Face safetensors.",
        discussion: """
        The input format is detected: a GGUF file, a Hugging Face directory (config.json + *.safetensors, sharded too),
        a bitnet-swift checkpoint (directory or .safetensors) or a llama2.c .bin. Examples:
          bitnet convert --from runs/tiny --to gguf --type tq2_0 --out tiny.gguf
          bitnet convert --from bitnet-b1.58-2B-4T --to bitnet --out 2b4t.safetensors
          bitnet convert --from tiny.gguf --to hf --out tiny-hf
        """)

    @Option(help: "Input model (format detected).") var from: String
    @Option(help: "Output format: gguf, hf or bitnet (the project's own checkpoint).") var to: String
    @Option(help: "Output path: a .gguf file, a directory for hf, a .safetensors file or directory for bitnet.") var out: String
    @Option(help: "GGUF type of the BitLinear weights: tq2_0, tq1_0, i2_s, f16, bf16, f32, q8_0, q6_k, q4_0.") var type: String = "tq2_0"
    @Option(name: .customLong("embedding-type"), help: "GGUF type of the token embedding and output head.") var embeddingType: String = "f16"
    @Option(name: .customLong("hf-linear"), help: "Hugging Face linears: packed (2B4T BitLinear layout) or master (bf16 master weights, online quantization).") var hfLinear: String = "packed"
    @Option(name: .customLong("hf-dtype"), help: "Hugging Face float tensors: bf16 (as 2B4T) or f32.") var hfDType: String = "bf16"
    @Option(help: "Tokenizer file to attach (tokenizer.json or llama2.c tokenizer.bin) when the input has none.") var tokenizer: String?

    func run() throws {
        try runReportingErrors {
            let target: ModelConversion.Target
            switch to.lowercased() {
            case "gguf":
                target = .gguf(try GGUFModel.ExportOptions(type: type, embeddingType: embeddingType, typeOption: "--type",
                                                           embeddingOption: "--embedding-type"))
            case "hf":
                guard let storage = HFModel.LinearStorage(rawValue: hfLinear) else { throw BitNetError.invalidArgument("--hf-linear must be packed or master") }
                guard hfDType == "bf16" || hfDType == "f32" else { throw BitNetError.invalidArgument("--hf-dtype must be bf16 or f32") }
                target = .huggingFace(storage, bf16: hfDType == "bf16")
            case "bitnet":
                target = .bitnet
            default:
                throw BitNetError.invalidArgument("--to must be gguf, hf or bitnet")
            }
            try ModelConversion.convert(from: from, tokenizerPath: tokenizer, to: target, out: out, showProgress: true) { printError($0) }
            printError("wrote \(out)")
        }
    }
}
