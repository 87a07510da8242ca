import BitNet
@testable import BitNetInference
@testable import BitNetTools
import Foundation
import XCTest
@testable import BitNetServer

enum ServerTestPaths {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let sharedData = repoRoot.deletingLastPathComponent().appendingPathComponent("shared/data")

    static func sharedFile(_ rel: String) throws -> String {
        let p = sharedData.appendingPathComponent(rel).path
        guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("shared data \(rel) not present") }
        return p
    }

    /// The built `bitnet` executable, if any.
    static var binary: URL? {
        let candidates = [Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent(),
                          repoRoot.appendingPathComponent(".build/debug"), repoRoot.appendingPathComponent(".build/release")]
        return candidates.map { $0.appendingPathComponent("bitnet") }.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }
}

/// stories260K (llama2.c) loaded once for all server tests.
final class Stories: @unchecked Sendable {
    static let shared = Result { try Stories() }
    let model: InferenceModel
    let tokenizer: any Tokenizer
    let modelPath: String, tokenizerPath: String

    init() throws {
        modelPath = try ServerTestPaths.sharedFile("stories260K/stories260K.bin")
        tokenizerPath = try ServerTestPaths.sharedFile("stories260K/tok512.bin")
        let loaded = try ModelFile.load(path: modelPath, tokenizerPath: tokenizerPath)
        model = InferenceModel(weights: loaded.weights)
        tokenizer = loaded.tokenizer!
    }

    /// What `bitnet generate` prints after the prompt, computed by the library function it calls.
    func generate(prompt: String, options: GenerationOptions) throws -> String {
        var text = ""
        try Generator(model: model, tokenizer: tokenizer).generate(prompt: prompt, options: options) { text += $0 }
        return text
    }
}

func options(maxTokens: Int, temperature: Float, topK: Int, topP: Float, seed: UInt64) -> GenerationOptions {
    var o = GenerationOptions()
    o.maxTokens = maxTokens; o.temperature = temperature; o.topK = topK; o.topP = topP; o.seed = seed
    return o
}

/// A server on a free loopback port, stopped by `stop()`.
final class RunningServer: @unchecked Sendable {
    let server: OpenAIServer
    let port: Int
    let task: Task<Void, any Error>

    static func start(parallel: Int = 4, queue: Int = 16, apiKey: String? = nil, maxBody: Int = 1 << 20, ctx: Int? = nil,
                      shutdownTimeout: Double = 10, bodyTimeout: Double = 30, maxConnections: Int? = nil,
                      gate: (@Sendable () -> Void)? = nil) async throws -> RunningServer {
        let s = try Stories.shared.get()
        let scheduler = try BatchScheduler(model: s.model, tokenizer: s.tokenizer, parallel: parallel, maxQueue: queue, contextLength: ctx)
        scheduler.beforeRound = gate
        var cfg = ServerConfiguration()
        cfg.port = 0; cfg.apiKey = apiKey; cfg.maxBodyBytes = maxBody; cfg.modelName = "stories260K"; cfg.shutdownTimeout = shutdownTimeout
        cfg.bodyTimeout = bodyTimeout; cfg.maxConnections = maxConnections
        let server = OpenAIServer(scheduler: scheduler, configuration: cfg)
        let (ports, cont) = AsyncStream.makeStream(of: Int.self)
        let task = Task { try await server.run(signals: []) { cont.yield($0) } }
        var it = ports.makeAsyncIterator()
        guard let port = await it.next() else { throw XCTSkip("server did not start") }
        return RunningServer(server: server, port: port, task: task)
    }

    init(server: OpenAIServer, port: Int, task: Task<Void, any Error>) {
        self.server = server; self.port = port; self.task = task
    }

    func stop() async throws {
        await server.shutdown()
        try await task.value
    }

    /// One request on its own thread: `request("/path", json:)` posts, `request("GET", "/path")` gets.
    func request(_ first: String, _ second: String? = nil, json: Any? = nil, raw: [UInt8]? = nil, headers: [String: String] = [:]) async throws -> LoopbackConnection.Reply {
        let (method, path) = second.map { (first, $0) } ?? ("POST", first)
        let body = raw ?? json.map { LoopbackConnection.json($0) } ?? []
        let port = self.port
        var h = headers
        if json != nil && h["Content-Type"] == nil { h["Content-Type"] = "application/json" }
        let hh = h
        return try await onOwnThread { try LoopbackConnection.request(port: port, method: method, path: path, headers: hh, body: body) }
    }
}

extension LoopbackConnection.Reply {
    /// The JSON body as a dictionary.
    var object: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:] }
    /// The `error` member of an OpenAI-shaped error body.
    var error: [String: Any]? { object["error"] as? [String: Any] }
    /// The text of a non-streaming completion (either endpoint).
    var completionText: String? {
        guard let c = (object["choices"] as? [[String: Any]])?.first else { return nil }
        return c["text"] as? String ?? (c["message"] as? [String: Any])?["content"] as? String
    }
    var finishReason: String? { ((object["choices"] as? [[String: Any]])?.first)?["finish_reason"] as? String }
}

/// The finish reason of the last choice chunk of an SSE stream.
func streamedFinish(_ events: [String]) -> String? {
    var f: String?
    for e in events where e != "[DONE]" {
        if let o = try? JSONSerialization.jsonObject(with: Data(e.utf8)) as? [String: Any],
           let c = (o["choices"] as? [[String: Any]])?.first, let r = c["finish_reason"] as? String { f = r }
    }
    return f
}

/// Resident set size of this process in bytes (Linux /proc).
func residentBytes() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
    return (Int(line.split(separator: " ")[1]) ?? 0) * 1024
}
