import BitNet
@testable import BitNetInference
@testable import BitNetTools
import Foundation
import XCTest
@testable import BitNetServer

/// Bad requests get a 4xx with an OpenAI-shaped error body; the plain endpoints; API key; queue limits; shutdown.
final class ServerErrorTests: XCTestCase {
    /// Asserts the OpenAI error shape: {"error":{"message","type","param","code"}} with the given status and param.
    func expectError(_ r: LoopbackConnection.Reply, status: Int, param: String? = nil, code: String? = nil, mentions: String? = nil,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, status, r.text, file: file, line: line)
        XCTAssertEqual(r.headers["content-type"], "application/json", file: file, line: line)
        guard let e = r.error else { return XCTFail("no error object in \(r.text)", file: file, line: line) }
        XCTAssertEqual(Set(e.keys), ["message", "type", "param", "code"], file: file, line: line)
        XCTAssertFalse((e["message"] as? String ?? "").isEmpty, file: file, line: line)
        XCTAssertNotNil(e["type"] as? String, file: file, line: line)
        if let param { XCTAssertEqual(e["param"] as? String, param, r.text, file: file, line: line) }
        if let code { XCTAssertEqual(e["code"] as? String, code, r.text, file: file, line: line) }
        if let mentions { XCTAssertTrue((e["message"] as? String ?? "").contains(mentions), "\(r.text) should mention \(mentions)", file: file, line: line) }
    }

    func testBadRequestsGet4xx() async throws {
        let srv = try await RunningServer.start(maxBody: 4096, ctx: 64)
        let c = "/v1/completions", chat = "/v1/chat/completions"
        expectError(try await srv.request(c, raw: Array("{\"prompt\": \"x\",".utf8)), status: 400)
        expectError(try await srv.request(c, raw: Array("[1,2,3]".utf8)), status: 400, mentions: "object")
        expectError(try await srv.request(c, raw: []), status: 400)
        expectError(try await srv.request(c, json: ["prompt": 5]), status: 400, param: "prompt", code: "invalid_type")
        expectError(try await srv.request(c, json: ["prompt": "a", "max_tokens": "10"]), status: 400, param: "max_tokens", code: "invalid_type")
        expectError(try await srv.request(c, json: ["prompt": "a", "max_tokens": 2.5]), status: 400, param: "max_tokens", code: "invalid_type")
        expectError(try await srv.request(c, json: ["prompt": "a", "temperature": "hot"]), status: 400, param: "temperature")
        expectError(try await srv.request(c, json: ["prompt": "a", "stream": "yes"]), status: 400, param: "stream")
        expectError(try await srv.request(c, json: ["prompt": "a", "stop": [1]]), status: 400, param: "stop")
        expectError(try await srv.request(c, json: ["prompt": "a", "frobnicate": true]), status: 400, param: "frobnicate",
                    code: "unknown_parameter", mentions: "Unrecognized request argument supplied: frobnicate")
        expectError(try await srv.request(c, json: ["prompt": "a", "max_tokens": 0]), status: 400, param: "max_tokens")
        expectError(try await srv.request(c, json: ["prompt": "a", "max_tokens": 65]), status: 400, param: "max_tokens")
        expectError(try await srv.request(c, json: ["prompt": "a", "max_tokens": -3]), status: 400, param: "max_tokens")
        expectError(try await srv.request(c, json: ["prompt": "a", "temperature": 3]), status: 400, param: "temperature")
        expectError(try await srv.request(c, json: ["prompt": "a", "top_p": 0]), status: 400, param: "top_p")
        expectError(try await srv.request(c, json: ["prompt": "a", "n": 2]), status: 400, param: "n")
        expectError(try await srv.request(c, json: ["max_tokens": 3]), status: 400, param: "prompt", code: "missing_required_parameter")
        // A prompt longer than the context (64 positions here).
        let long = String(repeating: "Once upon a time there was a girl. ", count: 20)
        expectError(try await srv.request(c, json: ["prompt": long]), status: 400, param: "prompt", code: "context_length_exceeded")
        expectError(try await srv.request(chat, json: ["messages": [["role": "user", "content": long]]]), status: 400,
                    param: "messages", code: "context_length_exceeded")
        // Chat-specific shapes.
        expectError(try await srv.request(chat, json: ["messages": "hi"]), status: 400, param: "messages", code: "invalid_type")
        expectError(try await srv.request(chat, json: ["messages": []]), status: 400, param: "messages")
        expectError(try await srv.request(chat, json: ["messages": [["role": "wizard", "content": "hi"]]]), status: 400, param: "messages[0].role")
        expectError(try await srv.request(chat, json: ["messages": [["role": "user"]]]), status: 400, param: "messages[0].content")
        expectError(try await srv.request(chat, json: ["messages": [["role": "user", "content": "hi", "mood": 1]]]), status: 400,
                    param: "messages[0].mood")
        expectError(try await srv.request(chat, json: ["prompt": "hi"]), status: 400, param: "prompt", code: "unknown_parameter")
        // Body over the size limit: declared, and sent chunked without a length.
        let big = ["prompt": String(repeating: "a", count: 10_000)]
        expectError(try await srv.request(c, json: big), status: 413, code: "request_too_large")
        let port = srv.port
        let chunked = try await onOwnThread { () -> LoopbackConnection.Reply in
            let conn = try LoopbackConnection(port: port)
            var raw = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            for _ in 0..<10 { raw += "400\r\n" + String(repeating: "b", count: 1024) + "\r\n" }
            raw += "0\r\n\r\n"
            try? conn.send(Array(raw.utf8))
            return try conn.readResponse()
        }
        expectError(chunked, status: 413)
        // Unknown routes and methods.
        expectError(try await srv.request("GET", "/v1/nothing"), status: 404, code: "unknown_url")
        expectError(try await srv.request("GET", "/v1/completions"), status: 405)
        // Known-but-unsupported options are refused by name, harmless ones accepted.
        expectError(try await srv.request(c, json: ["prompt": "a", "logprobs": 3]), status: 400, param: "logprobs")
        let ok = try await srv.request(c, json: ["prompt": "a", "max_tokens": 2, "user": "u1", "n": 1, "logprobs": NSNull(), "presence_penalty": 0,
                                                 "stream_options": ["include_usage": true], "model": "whatever"])
        XCTAssertEqual(ok.status, 200, ok.text)
        // Still serving after all that.
        let health = try await srv.request("GET", "/health")
        XCTAssertEqual(health.status, 200)
        try await srv.stop()
    }

    func testHealthModelsMetricsAndPage() async throws {
        let srv = try await RunningServer.start(parallel: 3)
        let health = try await srv.request("GET", "/health")
        XCTAssertEqual(health.object["status"] as? String, "ok")
        XCTAssertEqual(health.object["slots"] as? Int, 3)
        let models = try await srv.request("GET", "/v1/models")
        XCTAssertEqual(models.object["object"] as? String, "list")
        XCTAssertEqual(((models.object["data"] as? [[String: Any]])?.first)?["id"] as? String, "stories260K")
        let r = try await srv.request("/v1/completions", json: ["prompt": "Once", "max_tokens": 5, "temperature": 0])
        let completion = r.object["usage"] as? [String: Int]
        let page = try await srv.request("GET", "/")
        XCTAssertEqual(page.status, 200)
        XCTAssertTrue(page.headers["content-type"]?.hasPrefix("text/html") ?? false)
        XCTAssertTrue(page.text.contains("/v1/chat/completions") && page.text.contains("getReader"))
        let metrics = try await srv.request("GET", "/metrics")
        XCTAssertTrue(metrics.headers["content-type"]?.hasPrefix("text/plain") ?? false)
        let m = metrics.text
        for line in ["bitnet_requests_total{endpoint=\"/health\",status=\"200\"} 1", "bitnet_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 1",
                     "bitnet_generated_tokens_total \(completion?["completion_tokens"] ?? -1)", "bitnet_prompt_tokens_total \(completion?["prompt_tokens"] ?? -1)",
                     "bitnet_queue_length 0", "bitnet_slots 3", "# TYPE bitnet_tokens_per_second gauge"] {
            XCTAssertTrue(m.contains(line), "metrics lack '\(line)':\n\(m)")
        }
        try await srv.stop()
    }

    func testAPIKey() async throws {
        let srv = try await RunningServer.start(apiKey: "sekrit")
        let body: [String: Any] = ["prompt": "Once", "max_tokens": 3]
        expectError(try await srv.request("/v1/completions", json: body), status: 401, code: "invalid_api_key")
        expectError(try await srv.request("/v1/completions", json: body, headers: ["Authorization": "Bearer wrong"]), status: 401, code: "invalid_api_key")
        expectError(try await srv.request("/v1/completions", json: body, headers: ["Authorization": "sekrit"]), status: 401)
        expectError(try await srv.request("GET", "/v1/models"), status: 401)
        let ok = try await srv.request("/v1/completions", json: body, headers: ["Authorization": "Bearer sekrit"])
        XCTAssertEqual(ok.status, 200)
        let models = try await srv.request("GET", "/v1/models", headers: ["Authorization": "Bearer sekrit"])
        XCTAssertEqual(models.status, 200)
        // Health and metrics stay open for probes.
        let health = try await srv.request("GET", "/health")
        XCTAssertEqual(health.status, 200)
        try await srv.stop()
    }

    /// One slot, one queue place: a third request gets 429 while the gate holds the decode loop; after shutdown begins, 503.
    func testQueueFullAndShuttingDown() async throws {
        let gate = DispatchSemaphore(value: 0)
        let srv = try await RunningServer.start(parallel: 1, queue: 1, shutdownTimeout: 30, gate: { gate.wait(); gate.signal() })
        let port = srv.port
        let body = LoopbackConnection.json(["prompt": "Once", "max_tokens": 4, "stream": true, "temperature": 0])
        // Two requests fill the slot and the queue (they wait at the gate).
        let first = Task { try await onOwnThread { try LoopbackConnection.request(port: port, path: "/v1/completions", body: body) } }
        let second = Task { try await onOwnThread { try LoopbackConnection.request(port: port, path: "/v1/completions", body: body) } }
        while srv.server.scheduler.load.waiting < 2 { try await Task.sleep(nanoseconds: 5_000_000) }
        let third = try await srv.request("/v1/completions", json: ["prompt": "Once", "max_tokens": 4])
        expectError(third, status: 429, code: "rate_limit_exceeded")
        XCTAssertEqual(third.headers["retry-after"], "1")
        let metrics = try await srv.request("GET", "/metrics").text
        XCTAssertTrue(metrics.contains("bitnet_queue_length 2"), metrics)
        // Shutdown: new work is refused with 503 while the accepted two still finish.
        let stopping = Task { try await srv.stop() }
        while !srv.server.scheduler.isDraining { try await Task.sleep(nanoseconds: 5_000_000) }
        let refused = try await srv.request("/v1/completions", json: ["prompt": "Once", "max_tokens": 4])
        expectError(refused, status: 503, code: "service_unavailable")
        let health = try await srv.request("GET", "/health")
        XCTAssertEqual(health.status, 503)
        gate.signal()
        for t in [first, second] {
            let r = try await t.value
            XCTAssertEqual(r.status, 200)
            XCTAssertEqual(r.events.last, "[DONE]")
            XCTAssertEqual(streamedFinish(r.events), "length")
        }
        try await stopping.value
    }

    /// Past the shutdown timeout, running streams are cancelled with an error event and still end with [DONE].
    func testShutdownTimeoutCancelsStreams() async throws {
        let srv = try await RunningServer.start(parallel: 2, queue: 2, shutdownTimeout: 0.2, gate: { usleep(20_000) })
        let port = srv.port
        let body = LoopbackConnection.json(["prompt": "Once", "max_tokens": 400, "stream": true])
        let client = Task { try await onOwnThread { try LoopbackConnection.request(port: port, path: "/v1/completions", body: body) } }
        while srv.server.scheduler.load.active < 1 { try await Task.sleep(nanoseconds: 5_000_000) }
        try await srv.stop()
        let r = try await client.value
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.events.last, "[DONE]")
        XCTAssertTrue(r.events.contains { $0.contains("\"error\"") && $0.contains("shutting down") }, r.text)
    }

    /// `bitnet serve` ends cleanly on SIGTERM, finishing the stream in flight.
    func testServeExecutableStopsOnSIGTERM() async throws {
        guard let binary = ServerTestPaths.binary else { throw XCTSkip("bitnet executable not built") }
        let stories = try Stories.shared.get()
        let p = Process()
        p.executableURL = binary
        p.arguments = ["serve", "--model", stories.modelPath, "--tokenizer", stories.tokenizerPath, "--port", "0", "--parallel", "2"]
        let err = Pipe()
        p.standardError = err; p.standardOutput = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { p.terminate() } }
        // The first line names the port.
        let port = try await onOwnThread { () -> Int in
            var text = ""
            while !text.contains("\n") {
                let d = err.fileHandleForReading.availableData
                if d.isEmpty { break }
                text += String(decoding: d, as: UTF8.self)
            }
            guard let r = text.range(of: "http://127.0.0.1:") else { return 0 }
            return Int(text[r.upperBound...].prefix { $0.isNumber }) ?? 0
        }
        XCTAssertGreaterThan(port, 0)
        let reply = Task {
            try await onOwnThread {
                try LoopbackConnection.request(port: port, path: "/v1/completions",
                                               body: LoopbackConnection.json(["prompt": "Once", "max_tokens": 200, "stream": true, "seed": 5]))
            }
        }
        try await Task.sleep(nanoseconds: 300_000_000)
        kill(p.processIdentifier, SIGTERM)
        let r = try await reply.value
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.events.last, "[DONE]")
        try await onOwnThread { p.waitUntilExit() }
        XCTAssertEqual(p.terminationReason, .exit)
        XCTAssertEqual(p.terminationStatus, 0)
    }
}
