import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals
import Synchronization
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference

/// Settings of `bitnet serve`.
package struct ServerConfiguration: Sendable {
    package var host = "127.0.0.1"
    /// 0 picks a free port (tests); `onRunning` reports it.
    package var port = 8080
    /// When set, every /v1 request needs `Authorization: Bearer <key>`.
    package var apiKey: String?
    /// Larger request bodies get 413.
    package var maxBodyBytes = 1 << 20
    /// The id `GET /v1/models` lists.
    package var modelName = "bitnet"
    /// Graceful shutdown lets running generations finish for this long, then cancels them.
    package var shutdownTimeout = 10.0
    /// Connections idle (no request in progress) this long are closed.
    package var idleTimeout = 30.0
    /// A request body must arrive whole within this many seconds (408 after): a client dribbling bytes cannot hold a
    /// connection and a handler forever.
    package var bodyTimeout = 30.0
    /// Open connections at most (nil: the descriptor limit less `reservedDescriptors`); more wait in the listen backlog
    /// instead of exhausting descriptors.
    package var maxConnections: Int?
    /// Descriptors kept for everything but connections (model files, logs, the listener).
    package static let reservedDescriptors = 64

    package init() {}
}

/// The OpenAI-compatible HTTP server: routes, validation, SSE streaming; generation runs on a `BatchScheduler`.
package final class OpenAIServer: Sendable {
    package let scheduler: BatchScheduler
    package let configuration: ServerConfiguration
    let generator: @Sendable (String) throws -> [Int]
    /// The most bytes of text one token stands for: a prompt of more than `contextLength` times this many bytes
    /// cannot fit and is refused before it is tokenized.
    let maxBytesPerToken: Int
    /// Prompts are tokenized here, off the threads that answer other requests (a 1 MB prompt takes seconds).
    private let tokenizing = DispatchQueue(label: "bitnet-serve.tokenize")
    let createdAt = Int(Date().timeIntervalSince1970)
    private let nextID = Atomic<Int>(0)
    private let group = Mutex<ServiceGroup?>(nil)

    package init(scheduler: BatchScheduler, configuration: ServerConfiguration) {
        self.scheduler = scheduler
        self.configuration = configuration
        let (model, tokenizer) = (scheduler.model, scheduler.tokenizer)
        generator = { prompt in try Generator(model: model, tokenizer: tokenizer).promptTokens(prompt, addBOS: nil) }
        maxBytesPerToken = max(1, (0..<tokenizer.vocabSize).reduce(0) { max($0, tokenizer.decode([$1]).utf8.count) })
    }

    /// The connection limit in force: the configured one, else the descriptor limit less the reserve.
    package var connectionLimit: Int {
        if let m = configuration.maxConnections { return m }
        var r = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &r) == 0, r.rlim_cur != rlim_t.max else { return 1 << 16 }
        return max(16, Int(min(r.rlim_cur, 1 << 20)) - ServerConfiguration.reservedDescriptors)
    }

    /// Raises the soft descriptor limit to the hard one (at most 65,536), as servers do, so idle connections exhaust
    /// the connection cap, not the process's descriptors. Returns the soft limit now in force.
    @discardableResult
    package static func raiseDescriptorLimit() -> Int {
        var r = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &r) == 0 else { return 1024 }
        let want = min(r.rlim_max, 65_536)
        if r.rlim_cur < want {
            r.rlim_cur = want
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &r)
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &r)
        }
        return Int(min(r.rlim_cur, 1 << 20))
    }

    /// Tokenizes on `tokenizing`, so the cooperative threads stay free for /health and streaming.
    func tokenize(_ prompt: String) async throws -> [Int] {
        let generator = self.generator
        return try await withCheckedThrowingContinuation { (k: CheckedContinuation<[Int], any Error>) in
            tokenizing.async { k.resume(with: Result { try generator(prompt) }) }
        }
    }

    /// Serves until SIGINT/SIGTERM (or `shutdown()`): then refuses new work (503), lets running generations finish for
    /// `shutdownTimeout` seconds, cancels the rest, closes the listener and stops the decode thread.
    package func run(signals: [UnixSignal] = [.sigterm, .sigint], onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        var logger = Logger(label: "bitnet-serve")
        logger.logLevel = .warning
        let app = Application(
            router: makeRouter(),
            server: .http1(configuration: .init(idleTimeout: .milliseconds(Int64(configuration.idleTimeout * 1000)))),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "bitnet-swift",
                                 availableConnectionsDelegate: MaximumAvailableConnections(connectionLimit, logger: logger)),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
        // Services shut down in reverse order: the drain service first (while the HTTP server still answers), then the server.
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: app), .init(service: DrainService(server: self), successTerminationBehavior: .ignore)],
            gracefulShutdownSignals: signals, logger: logger))
        self.group.withLock { $0 = group }
        defer { scheduler.shutdown() }
        do { try await group.run() }
        catch let e as IOError where e.errnoCode == EADDRINUSE {
            throw BitNetError.invalidArgument("port \(configuration.port) on \(configuration.host) is in use (another server?); "
                                              + "pick another --port, or 0 for any free one")
        }
    }

    /// Starts the same graceful shutdown as SIGTERM.
    package func shutdown() async {
        let g = group.withLock { $0 }
        await g?.triggerGracefulShutdown()
    }

    /// Waits for the shutdown signal, then drains the scheduler.
    struct DrainService: Service {
        let server: OpenAIServer
        func run() async throws {
            try? await gracefulShutdown()
            let s = server.scheduler
            s.beginDrain()
            if await !s.waitUntilIdle(timeout: server.configuration.shutdownTimeout) {
                s.cancelAll()
                _ = await s.waitUntilIdle(timeout: 5)
            }
        }
    }

    // MARK: Routes

    func makeRouter() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: ErrorAndMetricsMiddleware(metrics: scheduler.metrics))
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
                     body: .init(byteBuffer: ByteBuffer(string: WebPage.html)))
        }
        router.get("/favicon.ico") { _, _ in Response(status: .noContent) }
        router.get("/health") { [self] _, _ in
            let (w, a) = scheduler.load
            let ok = !isDraining
            return Self.json(ok ? 200 : 503, ["status": ok ? "ok" : "shutting_down", "slots_busy": a, "slots": scheduler.parallel, "queued": w])
        }
        router.get("/metrics") { [self] request, _ in
            try authorize(request)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: scheduler.metrics.render())))
        }
        router.get("/v1/models") { [self] request, _ in
            try authorize(request)
            return Self.json(200, ["object": "list", "data": [["id": configuration.modelName, "object": "model",
                                                               "created": createdAt, "owned_by": "bitnet-swift"]]])
        }
        router.post("/v1/completions") { [self] request, _ in try await complete(request, kind: .text) }
        router.post("/v1/chat/completions") { [self] request, _ in try await complete(request, kind: .chat) }
        return router
    }

    var isDraining: Bool { scheduler.isDraining }

    func authorize(_ request: Request) throws(APIError) {
        guard let key = configuration.apiKey else { return }
        let given = request.headers[.authorization]
        guard let given, given.hasPrefix("Bearer ") else {
            throw APIError(status: 401, message: "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.", code: "invalid_api_key")
        }
        guard Self.constantTimeEqual(Array(given.dropFirst(7).utf8), Array(key.utf8)) else {
            throw APIError(status: 401, message: "Incorrect API key provided.", code: "invalid_api_key")
        }
    }

    /// Compares keys without an early exit, so response time does not tell how much of a guess was right.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) { diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0) }
        return diff == 0
    }

    /// Reads the body (bounded), validates it, queues the job and answers as JSON or as an SSE stream.
    func complete(_ request: Request, kind: CompletionKind) async throws -> Response {
        try authorize(request)
        let limit = configuration.maxBodyBytes
        if let len = request.headers[.contentLength].flatMap({ Int($0) }), len > limit {
            throw APIError(status: 413, message: "The request body is \(len) bytes; the limit is \(limit) bytes.", code: "request_too_large")
        }
        let body = try await collectBody(request, limit: limit)
        let req = try CompletionRequest.parse(Data(buffer: body), kind: kind, maxTokensLimit: scheduler.contextLength)
        let param = kind == .chat ? "messages" : "prompt"
        // Measured in bytes first: a prompt that cannot fit even at the longest token's bytes is refused untokenized.
        let bytes = req.prompt.utf8.count
        if bytes / maxBytesPerToken >= scheduler.contextLength {
            throw APIError(status: 400, message: "This model's maximum context length is \(scheduler.contextLength) tokens. However, your "
                           + "\(param) has \(bytes) bytes, at least \(bytes / maxBytesPerToken) tokens.", param: param, code: "context_length_exceeded")
        }
        let tokens: [Int]
        do { tokens = try await tokenize(req.prompt) }
        catch { throw APIError.invalid("\(error)", param: param) }
        guard tokens.count < scheduler.contextLength else {
            throw APIError(status: 400, message: "This model's maximum context length is \(scheduler.contextLength) tokens. However, your "
                           + "\(param) resulted in \(tokens.count) tokens.", param: param, code: "context_length_exceeded")
        }
        let handle: GenerationHandle
        do { handle = try scheduler.submit(GenerationJob(promptTokens: tokens, options: req.options, stop: req.stop)) }
        catch .queueFull {
            throw APIError(status: 429, message: "The server is busy: all \(scheduler.parallel) slots and \(scheduler.maxQueue) queue places are taken. Retry shortly.",
                           type: "rate_limit_error", code: "rate_limit_exceeded")
        } catch .unavailable {
            throw APIError(status: 503, message: "The server is shutting down.", type: "server_error", code: "service_unavailable")
        }
        let id = (kind == .chat ? "chatcmpl-" : "cmpl-") + String(nextID.add(1, ordering: .relaxed).newValue)
        let envelope = Envelope(id: id, kind: kind, created: Int(Date().timeIntervalSince1970), model: configuration.modelName)
        return req.stream ? streamResponse(handle, envelope: envelope, includeUsage: req.includeUsage)
                          : try await wholeResponse(handle, envelope: envelope)
    }

    /// The body, at most `limit` bytes, whole within `bodyTimeout` seconds: 413 beyond the limit, 408 past the deadline,
    /// 499 (client closed request, as nginx counts it) when the client goes away mid-upload.
    func collectBody(_ request: Request, limit: Int) async throws -> ByteBuffer {
        let timeout = configuration.bodyTimeout
        do {
            return try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
                group.addTask { try await request.body.collect(upTo: limit) }
                group.addTask { try await Task.sleep(nanoseconds: UInt64(timeout * 1e9)); return nil }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let body = first else {
                    throw APIError(status: 408, message: "The request body did not arrive within \(timeout) seconds.", code: "request_timeout")
                }
                return body
            }
        } catch is NIOTooManyBytesError {
            throw APIError(status: 413, message: "The request body is over the limit of \(limit) bytes.", code: "request_too_large")
        } catch let e as APIError {
            throw e
        } catch {
            throw APIError(status: 499, message: "The client closed the connection before the request body ended (\(error)).",
                           code: "client_closed_request")
        }
    }

    /// The fields every response object of one request shares.
    struct Envelope {
        let id: String, kind: CompletionKind, created: Int, model: String

        func object(chunk: Bool, choices: [[String: Any]], usage: [String: Int]?) -> [String: Any] {
            var o: [String: Any] = ["id": id, "created": created, "model": model, "choices": choices, "system_fingerprint": "bitnet-swift",
                                    "object": kind == .chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"]
            if let usage { o["usage"] = usage } else if !chunk { o["usage"] = NSNull() }
            return o
        }

        /// One choice: the whole answer (`chunk` false) or a streamed piece.
        func choice(text: String?, finish: FinishReason?, chunk: Bool, first: Bool = false) -> [String: Any] {
            var c: [String: Any] = ["index": 0, "logprobs": NSNull(), "finish_reason": finish?.rawValue ?? NSNull()]
            switch (kind, chunk) {
            case (.text, _): c["text"] = text ?? ""
            case (.chat, false): c["message"] = ["role": "assistant", "content": text ?? ""]
            case (.chat, true):
                var delta: [String: Any] = [:]
                if first { delta["role"] = "assistant" }
                if let text { delta["content"] = text }
                c["delta"] = delta
            }
            return c
        }
    }

    static func usage(_ prompt: Int, _ completion: Int) -> [String: Int] {
        ["prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion]
    }

    /// Non-streaming: waits for the whole generation.
    func wholeResponse(_ handle: GenerationHandle, envelope: Envelope) async throws -> Response {
        defer { handle.cancel() }
        var text = ""
        for await event in handle.events {
            switch event {
            case .text(let s): text += s
            case .finished(let reason, let p, let c):
                return Self.json(200, envelope.object(chunk: false, choices: [envelope.choice(text: text, finish: reason, chunk: false)],
                                                      usage: Self.usage(p, c)))
            case .failed(let why):
                throw APIError(status: 503, message: "Generation stopped: \(why)", type: "server_error", code: "service_unavailable")
            }
        }
        throw APIError(status: 503, message: "Generation was cancelled.", type: "server_error", code: "service_unavailable")
    }

    /// Streaming: one `data: {chunk}` event per text piece, a final chunk with the finish reason (and usage when
    /// asked), then `data: [DONE]`. A failed write (client gone) ends the handler and cancels the job.
    func streamResponse(_ handle: GenerationHandle, envelope: Envelope, includeUsage: Bool) -> Response {
        Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: ResponseBody { writer in
            defer { handle.cancel() }
            func send(_ object: Any) async throws {
                let data = (try? JSONSerialization.data(withJSONObject: object)) ?? Data("{}".utf8)
                var buf = ByteBuffer(string: "data: ")
                buf.writeBytes(data)
                buf.writeString("\n\n")
                try await writer.write(buf)
            }
            if envelope.kind == .chat {
                try await send(envelope.object(chunk: true, choices: [envelope.choice(text: "", finish: nil, chunk: true, first: true)], usage: nil))
            }
            loop: for await event in handle.events {
                switch event {
                case .text(let s):
                    try await send(envelope.object(chunk: true, choices: [envelope.choice(text: s, finish: nil, chunk: true)], usage: nil))
                case .finished(let reason, let p, let c):
                    try await send(envelope.object(chunk: true, choices: [envelope.choice(text: envelope.kind == .chat ? nil : "", finish: reason, chunk: true)],
                                                   usage: nil))
                    if includeUsage { try await send(envelope.object(chunk: true, choices: [], usage: Self.usage(p, c))) }
                    break loop
                case .failed(let why):
                    try await send(["error": ["message": "Generation stopped: \(why)", "type": "server_error", "param": NSNull(), "code": "service_unavailable"]])
                    break loop
                }
            }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        })
    }

    static func json(_ status: Int, _ object: Any) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(status: .init(code: status), headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func errorResponse(_ e: APIError) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if e.status == 429 || e.status == 503 { headers[.retryAfter] = "1" }
        if e.status == 408 || e.status == 413 || e.status == 499 { headers[.connection] = "close" }   // the rest of the body is not read
        return Response(status: .init(code: e.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: e.body)))
    }
}

/// Turns every error into an OpenAI-shaped JSON answer (404 and 405 from the router included) and counts requests.
struct ErrorAndMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics
    static var endpoints: Set<String> { ["/", "/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions"] }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        let endpoint = Self.endpoints.contains(path) ? path : "other"
        let response: Response
        do { response = try await next(request, context) }
        catch let e as APIError { response = OpenAIServer.errorResponse(e) }
        catch let e as any HTTPResponseError {
            // The router answers 404 for a known path with the wrong method; that is a 405.
            let code = Int(e.status.code) == 404 && endpoint != "other" ? 405 : Int(e.status.code)
            let message = code == 404 ? "Unknown request URL: \(request.method) \(path)."
                : code == 405 ? "Method \(request.method) is not allowed for \(path)." : "HTTP \(code): \(e.status.reasonPhrase)"
            response = OpenAIServer.errorResponse(APIError(status: code, message: message, code: code == 404 ? "unknown_url" : nil))
        } catch {
            response = OpenAIServer.errorResponse(APIError(status: 500, message: "Internal error: \(error)", type: "server_error"))
        }
        metrics.countRequest(endpoint: endpoint, status: Int(response.status.code))
        return response
    }
}
