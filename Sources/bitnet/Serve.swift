import ArgumentParser
import BitNet
import BitNetServer
import Foundation
import BitNetTools
import BitNetKernels

/// The model flags of `serve` and `bench serve`: a model file, or a random-weight model of a preset shape.
struct ServedModelOptions: ParsableArguments {
    @Option(name: [.long, .customShort("m")], help: "Model: a training output directory, a .safetensors, .gguf or llama2.c .bin file, or a Hugging Face directory.") var model: String?
    @Option(help: "Tokenizer file for formats that keep it apart (llama2.c tokenizer.bin, tokenizer.json); with --preset it sets the vocabulary.")
    var tokenizer: String?
    @Option(help: "Instead of --model: a random ternary model of this shape (2b4t, \(ModelConfig.presetNames.joined(separator: ", "))) for load tests; needs --tokenizer.")
    var preset: String?
    @Option(name: .customLong("vocab-size"), help: "With --preset and a llama2.c tokenizer.bin: its vocabulary size (tok512.bin: 512).")
    var vocabSize: Int = 512
    @Option(name: [.long, .customShort("c")], help: "Positions per request (prompt + completion); default: the model's context (1024 with --preset).") var ctx: Int?
    @Option(name: .customLong("kv-cache"), help: "KV cache storage of every slot: f16, f32, q8 or q4 (answers equal `generate --kv-cache` with the same format).")
    var kvCache: String = "f16"
    @Option(name: [.long, .customShort("t")], help: "Threads for the model (default: all cores; same as BITNET_THREADS).") var threads: Int?
    @Option(name: .customLong("ternary-layout"), help: ternaryLayoutHelp) var ternaryLayout: String = "auto"

    /// The inference model (linears in --ternary-layout), its tokenizer and the name `/v1/models` lists.
    func load() throws -> (InferenceModel, any Tokenizer, String) {
        let (model, tok, name) = try loadModel()
        try applyTernaryLayout(ternaryLayout, to: model)
        return (model, tok, name)
    }

    private func loadModel() throws -> (InferenceModel, any Tokenizer, String) {
        if let threads { setenv("BITNET_THREADS", "\(max(threads, 1))", 1) }
        switch (model, preset) {
        case (let path?, nil):
            let loaded = try ModelFile.loadInference(path: path, tokenizerPath: tokenizer, preferBase3: ternaryLayout != "t2")
            guard let tok = loaded.tokenizer else { throw BitNetError.invalidArgument("\(path) has no tokenizer; pass --tokenizer FILE") }
            return (loaded.model, tok, URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent)
        case (nil, let name?):
            guard let tokenizer else { throw BitNetError.invalidArgument("--preset needs --tokenizer FILE (its size sets the vocabulary)") }
            let tok = try ModelFile.loadTokenizer(path: tokenizer, vocabSize: vocabSize)
            guard let preset = ModelPreset.named(name), preset.family != .paper else {
                throw BitNetError.invalidArgument("unknown --preset \(name): use 2b4t or \(ModelConfig.presetNames.joined(separator: ", "))")
            }
            var c = preset.config()
            c.vocabSize = tok.vocabSize
            c.maxSeqLen = max(ctx ?? 1024, 2)
            return (try InferenceModel(synthetic: c, seed: 1, headFormat: .f32), tok, "synthetic-\(name)")
        default:
            throw BitNetError.invalidArgument("give exactly one of --model PATH and --preset NAME")
        }
    }
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions, /v1/models, /health, /metrics, chat page at /).")
    @OptionGroup var served: ServedModelOptions
    @Option(help: "Address to listen on.") var host: String = "127.0.0.1"
    @Option(help: "Port (0: any free port).") var port: Int = 8080
    @Option(help: "Requests decoded together (each with its own KV cache).") var parallel: Int = 4
    @Option(help: "Requests that may wait for a slot; more get 429.") var queue: Int = 64
    @Option(name: .customLong("api-key"), help: "Require 'Authorization: Bearer KEY' on /v1 and /metrics. Visible to other users in `ps`: prefer --api-key-file or $BITNET_API_KEY (the default when set).") var apiKey: String?
    @Option(name: .customLong("api-key-file"), help: "Read the API key from this file (its first line).") var apiKeyFile: String?
    @Option(name: .customLong("max-body"), help: "Largest request body in bytes (413 beyond).") var maxBody: Int = 1 << 20
    @Option(name: .customLong("body-timeout"), help: "Seconds a request body may take to arrive (408 after).") var bodyTimeout: Double = 30
    @Option(name: .customLong("max-connections"), help: "Open connections at most; more wait to be accepted (default: the descriptor limit, raised to the hard limit, less 64).")
    var maxConnections: Int?
    @Option(name: .customLong("shutdown-timeout"), help: "Seconds running requests may finish after SIGINT/SIGTERM before they are cancelled.")
    var shutdownTimeout: Double = 10
    @Option(name: .customLong("model-name"), help: "Model id listed by /v1/models (default: the file name).") var modelName: String?

    func run() throws {
        try runReportingErrors {
            guard (0...65535).contains(port) else { throw BitNetError.invalidArgument("--port must be in 0...65535") }
            guard maxBody > 0, shutdownTimeout >= 0 else { throw BitNetError.invalidArgument("--max-body must be > 0, --shutdown-timeout >= 0") }
            guard bodyTimeout > 0, bodyTimeout.isFinite else { throw BitNetError.invalidArgument("--body-timeout must be a positive number of seconds") }
            if let m = maxConnections, m < 1 { throw BitNetError.invalidArgument("--max-connections must be >= 1, got \(m)") }
            guard apiKey == nil || apiKeyFile == nil else { throw BitNetError.invalidArgument("give --api-key or --api-key-file, not both") }
            let keyFromFile = try apiKeyFile.map { path -> String in
                let key = try FileIO.readText(path).split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
                guard !key.trimmingCharacters(in: .whitespaces).isEmpty else {
                    throw BitNetError.invalidFormat(file: path, field: "api key", problem: "the first line is empty")
                }
                return key
            }
            OpenAIServer.raiseDescriptorLimit()
            let (model, tok, name) = try served.load()
            let scheduler = try BatchScheduler(model: model, tokenizer: tok, parallel: parallel, maxQueue: queue, contextLength: served.ctx,
                                               kvCache: try parseKVCacheFormat(served.kvCache))
            var cfg = ServerConfiguration()
            cfg.host = host; cfg.port = port; cfg.maxBodyBytes = maxBody; cfg.shutdownTimeout = shutdownTimeout
            cfg.apiKey = apiKey ?? keyFromFile ?? ProcessInfo.processInfo.environment["BITNET_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
            cfg.bodyTimeout = bodyTimeout; cfg.maxConnections = maxConnections
            cfg.modelName = modelName ?? name
            let server = OpenAIServer(scheduler: scheduler, configuration: cfg)
            let (cfgFinal, host, parallel) = (cfg, host, parallel)
            let banner = { @Sendable (port: Int) in
                "bitnet serve: \(cfgFinal.modelName) on http://\(host):\(port)  (\(parallel) slots, context \(scheduler.contextLength), "
                    + "up to \(server.connectionLimit) connections, api key \(cfgFinal.apiKey == nil ? "off" : "on"))"
            }
            try blockOn {
                try await server.run { port in
                    printError(banner(port))
                }
            }
            printError("bitnet serve: stopped")
        }
    }
}

/// Runs async work from a synchronous command and waits for it (the CLI's root command is synchronous).
func blockOn(_ work: @escaping @Sendable () async throws -> Void) throws {
    final class Outcome: @unchecked Sendable { var error: (any Error)? }
    let outcome = Outcome(), done = DispatchSemaphore(value: 0)
    Task {
        do { try await work() } catch { outcome.error = error }
        done.signal()
    }
    done.wait()
    if let e = outcome.error { throw e }
}

extension Bench {
    struct ServeBench: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "serve",
            abstract: "Total tokens/s of `bitnet serve` with 1, 4, 16... concurrent streaming clients (server in-process, real HTTP on loopback).")
        @OptionGroup var served: ServedModelOptions
        @Option(help: "Concurrent client counts, comma-separated.") var clients: String = "1,4,16"
        @Option(name: .customLong("max-tokens"), help: "Completion tokens per request.") var maxTokens: Int = 64
        @Option(help: "Requests per client at each count.") var requests: Int = 2
        @Option(help: "Rounds over all counts; each count reports its fastest round.") var rounds: Int = 3
        @Option(help: "Prompt of every request.") var prompt: String = "Once upon a time"
        @Flag(name: .customLong("no-batch"), help: "Decode the slots one after another (per-session step) instead of one stepBatch, for comparison.")
        var noBatch = false
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            try runReportingErrors {
                let counts = try clients.split(separator: ",").map { s -> Int in
                    guard let v = Int(s), v > 0 else { throw BitNetError.invalidArgument("--clients: '\(s)' is not a positive integer") }
                    return v
                }
                guard maxTokens > 0, requests > 0, rounds > 0, !counts.isEmpty else {
                    throw BitNetError.invalidArgument("--max-tokens, --requests, --rounds and --clients must be positive")
                }
                let (model, tok, name) = try served.load()
                let scheduler = try BatchScheduler(model: model, tokenizer: tok, parallel: counts.max()!, maxQueue: counts.max()!, contextLength: served.ctx,
                                                   kvCache: try parseKVCacheFormat(served.kvCache), batched: !noBatch)
                printError("model \(name): dim \(model.config.dim), \(model.config.nLayers) layers, vocab \(model.config.vocabSize); \(scheduler.parallel) slots, "
                           + (noBatch ? "one step per slot" : "one stepBatch per step"))
                let (maxTokens, requests, prompt, rounds) = (maxTokens, requests, prompt, rounds)
                final class Box: @unchecked Sendable { var results: [ServeBenchmark.Result] = [] }
                let box = Box()
                try blockOn {
                    box.results = try await ServeBenchmark.run(scheduler: scheduler, clientCounts: counts, requestsPerClient: requests,
                                                               maxTokens: maxTokens, prompt: prompt, rounds: rounds) { r in
                        printError(String(format: "%3d clients: %6d tokens in %7.2f s = %8.1f tokens/s total, %7.1f per client; %7.2f CPU s = %8.1f tokens per CPU s",
                                          r.clients, r.tokens, r.seconds, r.tokensPerSecond, r.tokensPerSecond / Double(r.clients),
                                          r.cpuSeconds, r.tokensPerCPUSecond))
                    }
                }
                let base = box.results.first!.tokensPerSecond
                if json {
                    let rows = box.results.map { ["clients": $0.clients, "tokens": $0.tokens, "seconds": $0.seconds, "tokens_per_second": $0.tokensPerSecond,
                                                  "cpu_seconds": $0.cpuSeconds, "tokens_per_cpu_second": $0.tokensPerCPUSecond] as [String: Any] }
                    print(String(decoding: try JSONSerialization.data(withJSONObject: ["model": name, "results": rows], options: [.sortedKeys, .prettyPrinted]), as: UTF8.self))
                } else {
                    let baseCPU = box.results.first!.tokensPerCPUSecond
                    print("clients  tokens/s  vs \(box.results.first!.clients) client(s)  tokens/CPU-s  vs \(box.results.first!.clients) client(s)")
                    for r in box.results {
                        print(String(format: "%7d  %8.1f  %6.2fx        %8.1f  %6.2fx", r.clients, r.tokensPerSecond, r.tokensPerSecond / base,
                                     r.tokensPerCPUSecond, r.tokensPerCPUSecond / baseCPU))
                    }
                }
            }
        }
    }
}
