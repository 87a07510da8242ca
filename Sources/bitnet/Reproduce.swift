import ArgumentParser
import BitNet
import Foundation
import BitNetTools
import BitNetKernels

/// `bitnet eval zero-shot`: multiple-choice and LAMBADA accuracy in the way of lm-evaluation-harness (Table 5).
struct ZeroShot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zero-shot",
        abstract: "Zero-shot accuracy (acc, acc_norm, standard errors; LAMBADA last-word accuracy and perplexity) like lm-evaluation-harness.")
    @Option(help: "Model path.") var model: String
    @Option(help: "Tokenizer file when the model has none inside.") var tokenizer: String?
    @Option(help: "Comma-separated tasks or 'all': \(ZeroShotTask.allCases.map(\.rawValue).joined(separator: ", ")).") var tasks: String = "all"
    @Option(help: "Documents per task (default: all).") var limit: Int?
    @Option(name: .customLong("data-dir"), help: "Folder with <task>.jsonl (made by \(ZeroShotData.fetchCommand)).") var dataDir: String = DefaultPaths.zeroShot
    @Option(help: "Sequences per forward batch.") var batch: Int = 16
    @Option(help: "Write the scores as JSON here.") var json: String?

    func run() throws {
        try runReportingErrors {
            let taskList = try ZeroShotTask.parseList(tasks)
            if let limit, limit < 1 { throw BitNetError.invalidArgument("--limit must be positive") }
            guard batch > 0 else { throw BitNetError.invalidArgument("--batch must be positive") }
            let loaded = try ModelFile.load(path: model, tokenizerPath: tokenizer)
            guard let tok = loaded.tokenizer else { throw BitNetError.invalidArgument("\(model) has no tokenizer; pass --tokenizer FILE") }
            // Fail on missing data before spending time on the first task.
            for t in taskList where !FileManager.default.fileExists(atPath: ZeroShotData.path(t, directory: dataDir)) {
                throw BitNetError.fileNotFound("\(ZeroShotData.path(t, directory: dataDir)) (zero-shot data for \(t.rawValue)); fetch it with \(ZeroShotData.fetchCommand)")
            }
            var ev = ZeroShotEvaluator(tokenizer: tok, scorer: GraphScorer(weights: loaded.weights, batch: batch))
            ev.showProgress = true
            var scores: [TaskScore] = []
            for t in taskList {
                let items = try ZeroShotData.load(t, directory: dataDir, limit: limit)
                scores.append(try ev.evaluate(t, items: items))
            }
            print("| task | n | acc | acc_norm | perplexity |\n|---|---:|---:|---:|---:|")
            for s in scores {
                let an = s.accNorm.map { String(format: "%.4f ± %.4f", $0, s.accNormStderr ?? .nan) } ?? "–"
                let p = s.perplexity.map { String(format: "%.3f", $0) } ?? "–"
                print(String(format: "| %@ | %d | %.4f ± %.4f | %@ | %@ |", s.task.rawValue, s.count, s.acc, s.accStderr, an, p))
            }
            print("")
            print(zeroShotTable([(name: URL(fileURLWithPath: model).lastPathComponent, scores: scores)], tasks: taskList.filter { $0 != .lambada }))
            if let json {
                let enc = JSONEncoder(); enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
                try FileIO.writeAtomically(try enc.encode(scores), to: URL(fileURLWithPath: json))
                printError("wrote \(json)")
            }
        }
    }
}

/// `bitnet eval wikitext`: word-level perplexity as the harness reports WikiText.
struct WikiTextPerplexity: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wikitext",
        abstract: "WikiText word-level perplexity (detokenized text, NLL per original word), with token-level perplexity and bits per byte.")
    @Option(help: "Model path.") var model: String
    @Option(help: "Tokenizer file when the model has none inside.") var tokenizer: String?
    @Option(help: "WikiText file (word-level, tokenized); $BITNET_DATA_DIR overrides the shared folder.") var data: String = DefaultPaths.wikiText2Validation
    @Option(help: "Window length in tokens (default: the model's context).") var context: Int?
    @Option(help: "Window stride (default: half the window).") var stride: Int?
    @Flag(name: .customLong("no-detokenize"), help: "Score the text as it is (any text; words counted on it).") var raw = false

    func run() throws {
        try runReportingErrors {
            let loaded = try ModelFile.load(path: model, tokenizerPath: tokenizer)
            guard let tok = loaded.tokenizer else { throw BitNetError.invalidArgument("\(model) has no tokenizer; pass --tokenizer FILE") }
            let ctx = min(context ?? loaded.weights.config.maxSeqLen, loaded.weights.config.maxSeqLen)
            let r = try wordPerplexity(weights: loaded.weights, tokenizer: tok, text: try FileIO.readText(data), wikitext: !raw,
                                       context: ctx, stride: stride ?? max(ctx / 2, 1), showProgress: true)
            print(String(format: "tokens %d  words %d  bytes %d  word perplexity %.3f  token perplexity %.3f  bits/byte %.4f",
                         r.tokens, r.words, r.bytes, r.wordPerplexity, r.tokenPerplexity, r.bitsPerByte))
        }
    }
}

/// `bitnet reproduce`: the paper's findings measured on this machine, in one command.
struct Reproduce: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train the scaling series (b1.58, b1, fp), evaluate (PTQ, zero-shot, WikiText, KV cache, schedule ablation) and write DIR/report.md with the analogs of Tables 2-6 and verdicts.")
    @Flag(help: "About ten minutes (same as --budget 10).") var quick = false
    @Option(help: "Time budget in minutes; scales model count, tokens and evaluation sizes.") var budget: Double = 60
    @Option(help: "Output folder (resumable: run the same command again to continue).") var out: String = "runs/reproduce"
    @Option(name: .customLong("data-dir"), help: "Shared corpora (tinyshakespeare.txt, wikitext-2/valid.txt): $BITNET_DATA_DIR, else shared/data beside the checkout.") var dataDir: String = DefaultPaths.sharedData
    @Option(name: .customLong("zero-shot-dir"), help: "Zero-shot task files (\(ZeroShotData.fetchCommand)); missing tasks are skipped.") var zeroShotDir: String = DefaultPaths.zeroShot
    @Option(help: "Random seed.") var seed: UInt64 = 1234

    func run() throws {
        try runReportingErrors {
            let minutes = quick ? 10 : budget
            let t0 = Clock.now()
            let r = try Reproduction(outDir: URL(fileURLWithPath: out), budgetMinutes: minutes, dataDir: dataDir, zeroShotDir: zeroShotDir, seed: seed)
            let report = try r.run()
            printError("done in \(ProgressLine.format(Clock.now() - t0)); report: \(report.path)")
            print(try FileIO.readText(report.path))
        }
    }
}
