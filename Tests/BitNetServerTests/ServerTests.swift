import BitNet
@testable import BitNetInference
@testable import BitNetTools
import Foundation
import XCTest
@testable import BitNetServer

/// `bitnet serve` driven over loopback by a real HTTP client.
final class ServerTests: XCTestCase {
    /// Non-streaming and streaming answers of both endpoints equal `bitnet generate` (same seed and options).
    func testAnswersEqualGenerate() async throws {
        let stories = try Stories.shared.get()
        let srv = try await RunningServer.start()
        let cases: [(prompt: String, o: GenerationOptions)] = [
            ("Once upon a time", options(maxTokens: 40, temperature: 0.8, topK: 40, topP: 0.95, seed: 42)),
            ("The cat", options(maxTokens: 25, temperature: 1.0, topK: 0, topP: 0.9, seed: 7)),
            ("Lily went", options(maxTokens: 30, temperature: 0, topK: 0, topP: 1, seed: 1)),
        ]
        for (prompt, o) in cases {
            let expected = try stories.generate(prompt: prompt, options: o)
            XCTAssertFalse(expected.isEmpty)
            let fields: [String: Any] = ["max_tokens": o.maxTokens, "temperature": Double(o.temperature), "top_k": o.topK,
                                         "top_p": Double(o.topP), "seed": Int(o.seed), "model": "stories260K"]
            var text = fields; text["prompt"] = prompt
            let whole = try await srv.request("/v1/completions", json: text)
            XCTAssertEqual(whole.status, 200, whole.text)
            XCTAssertEqual(whole.completionText, expected)
            XCTAssertEqual(whole.object["object"] as? String, "text_completion")
            let usage = whole.object["usage"] as? [String: Int]
            let promptTokens = try Generator(model: stories.model, tokenizer: stories.tokenizer).promptTokens(prompt, addBOS: nil).count
            XCTAssertEqual(usage?["prompt_tokens"], promptTokens)
            XCTAssertEqual(usage?["total_tokens"], (usage?["prompt_tokens"] ?? 0) + (usage?["completion_tokens"] ?? -1))
            text["stream"] = true
            let streamed = try await srv.request("/v1/completions", json: text)
            XCTAssertEqual(streamed.status, 200)
            XCTAssertEqual(streamed.headers["content-type"], "text/event-stream")
            XCTAssertEqual(streamed.events.last, "[DONE]")
            XCTAssertEqual(LoopbackConnection.streamedText(streamed.events), expected)
            XCTAssertEqual(streamedFinish(streamed.events), whole.finishReason)

            // Chat: the messages rendered by the chat template, then the same generation.
            let messages = [["role": "system", "content": "Tell a story."], ["role": "user", "content": prompt]]
            let chatExpected = try stories.generate(prompt: ChatTemplate.render(messages.map { .init(role: $0["role"]!, content: $0["content"]!) }), options: o)
            var chat = fields; chat["messages"] = messages
            let chatWhole = try await srv.request("/v1/chat/completions", json: chat)
            XCTAssertEqual(chatWhole.status, 200, chatWhole.text)
            XCTAssertEqual(chatWhole.completionText, chatExpected)
            XCTAssertEqual(chatWhole.object["object"] as? String, "chat.completion")
            chat["stream"] = true
            let chatStream = try await srv.request("/v1/chat/completions", json: chat)
            XCTAssertEqual(LoopbackConnection.streamedText(chatStream.events), chatExpected)
            XCTAssertEqual(chatStream.events.last, "[DONE]")
        }
        try await srv.stop()
    }

    /// `stop` cuts the answer before the first occurrence of a stop string, streamed or not, with finish_reason "stop".
    func testStopStrings() async throws {
        let stories = try Stories.shared.get()
        let o = options(maxTokens: 60, temperature: 0.8, topK: 40, topP: 0.95, seed: 9)
        let full = try stories.generate(prompt: "Once upon a time", options: o)
        let chars = Array(full)
        XCTAssertGreaterThan(chars.count, 30)
        let stop = String(chars[20..<24])
        let cut = String(full[..<full.range(of: stop)!.lowerBound])
        let srv = try await RunningServer.start()
        for stream in [false, true] {
            let r = try await srv.request("/v1/completions", json: ["prompt": "Once upon a time", "max_tokens": 60, "temperature": 0.8, "top_k": 40,
                                                                    "top_p": 0.95, "seed": 9, "stop": ["zzzq", stop], "stream": stream])
            XCTAssertEqual(stream ? LoopbackConnection.streamedText(r.events) : r.completionText, cut)
            XCTAssertEqual(stream ? streamedFinish(r.events) : r.finishReason, "stop")
        }
        try await srv.stop()
    }

    /// The same against the `bitnet generate` executable's standard output, when it is built.
    func testAnswerEqualsGenerateExecutable() async throws {
        guard let binary = ServerTestPaths.binary else { throw XCTSkip("bitnet executable not built") }
        let stories = try Stories.shared.get()
        let p = Process()
        p.executableURL = binary
        p.arguments = ["generate", "--model", stories.modelPath, "--tokenizer", stories.tokenizerPath, "--prompt", "Once upon a time",
                       "--max-tokens", "48", "--temperature", "0.9", "--top-k", "20", "--top-p", "0.9", "--seed", "1234"]
        let out = Pipe()
        p.standardOutput = out; p.standardError = FileHandle.nullDevice
        try p.run()
        let printed = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let srv = try await RunningServer.start()
        let r = try await srv.request("/v1/completions", json: ["prompt": "Once upon a time", "max_tokens": 48, "temperature": 0.9,
                                                                "top_k": 20, "top_p": 0.9, "seed": 1234, "stream": true])
        // generate prints the prompt, the completion and a newline.
        XCTAssertEqual("Once upon a time" + LoopbackConnection.streamedText(r.events) + "\n", printed)
        try await srv.stop()
    }

    /// 32 streaming clients at once, with garbage senders, clients that hang up mid-stream and slow readers mixed in:
    /// every good client gets exactly its `generate` answer, and the server is idle and healthy afterwards.
    func testConcurrentClientsWithBadOnesMixedIn() async throws {
        let stories = try Stories.shared.get()
        let srv = try await RunningServer.start(parallel: 8, queue: 64)
        let prompts = ["Once upon a time", "The dog", "Tom and Sue", "One day"]
        let n = 32
        let expected = try (0..<n).map { i in
            // The requests leave top_k and top_p out: the tool's defaults (40, 0.95) apply.
            try stories.generate(prompt: prompts[i % 4], options: options(maxTokens: 30, temperature: 0.9, topK: 40, topP: 0.95, seed: UInt64(100 + i)))
        }
        let port = srv.port
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<n {
                group.addTask {
                    let body = LoopbackConnection.json(["prompt": prompts[i % 4], "max_tokens": 30, "temperature": 0.9, "seed": 100 + i, "stream": true])
                    let text = try await onOwnThread { () -> String in
                        let c = try LoopbackConnection(port: port)
                        if i % 4 == 3 { c.readSize = 7; c.pause = 0.002 }  // slow reader
                        try c.sendRequest(method: "POST", path: "/v1/completions", headers: ["Content-Type": "application/json"], body: body)
                        let r = try c.readResponse()
                        XCTAssertEqual(r.events.last, "[DONE]")
                        return LoopbackConnection.streamedText(r.events)
                    }
                    XCTAssertEqual(text, expected[i], "client \(i)")
                }
            }
            for j in 0..<24 {
                group.addTask {
                    try await onOwnThread {
                        let c = try LoopbackConnection(port: port, timeout: 10)
                        switch j % 3 {
                        case 0:  // garbage JSON body
                            try c.sendRequest(method: "POST", path: "/v1/completions", headers: ["Content-Type": "application/json"],
                                              body: (0..<200).map { UInt8(truncatingIfNeeded: $0 &* 73 &+ j) })
                            let r = try c.readResponse()
                            XCTAssertEqual(r.status, 400)
                            XCTAssertNotNil(r.error?["message"])
                        case 1:  // not HTTP at all, then hang up
                            try c.send(Array("\u{1}\u{2}GARBAGE \(j)\r\n\r\n\u{0}\u{ff}".utf8))
                            _ = try? c.readResponse()
                            c.close()
                        default:  // hang up after the first streamed piece
                            try c.sendRequest(method: "POST", path: "/v1/completions", headers: ["Content-Type": "application/json"],
                                              body: LoopbackConnection.json(["prompt": "Once", "max_tokens": 400, "stream": true, "seed": j]))
                            var pieces = 0
                            _ = try c.readResponse { _ in pieces += 1; return pieces < 2 }
                            c.close()
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        // Hung-up clients free their slots: nothing stays queued or running.
        let idle = await srv.server.scheduler.waitUntilIdle(timeout: 10)
        XCTAssertTrue(idle, "slots still busy: \(srv.server.scheduler.load)")
        let health = try await srv.request("GET", "/health")
        XCTAssertEqual(health.status, 200)
        let metrics = try await srv.request("GET", "/metrics").text
        XCTAssertTrue(metrics.contains("bitnet_requests_total{endpoint=\"/v1/completions\",status=\"200\"}"), metrics)
        XCTAssertTrue(metrics.contains("bitnet_active_slots 0"), metrics)
        XCTAssertTrue(metrics.contains("bitnet_queue_length 0"), metrics)
        try await srv.stop()
    }

    /// A client that hangs up mid-stream frees its slot at once, not after its max_tokens.
    func testDisconnectFreesSlot() async throws {
        // 5 ms per decode round: 500 tokens would hold the slot for 2.5 s.
        let srv = try await RunningServer.start(parallel: 1, queue: 4, gate: { usleep(5000) })
        let port = srv.port
        try await onOwnThread {
            let c = try LoopbackConnection(port: port)
            try c.sendRequest(method: "POST", path: "/v1/completions", headers: [:],
                              body: LoopbackConnection.json(["prompt": "Once", "max_tokens": 500, "stream": true, "seed": 3, "temperature": 1.0]))
            var pieces = 0
            _ = try c.readResponse { _ in pieces += 1; return pieces < 3 }
            c.close()
        }
        // The one slot serves the next request right away.
        let r = try await srv.request("/v1/completions", json: ["prompt": "Hi", "max_tokens": 3])
        XCTAssertEqual(r.status, 200)
        let metrics = try await srv.request("GET", "/metrics").text
        XCTAssertTrue(metrics.contains("bitnet_cancelled_total 1"), metrics)
        // The hung-up stream stopped long before its 500 tokens.
        let generated = metrics.split(separator: "\n").first { $0.hasPrefix("bitnet_generated_tokens_total ") }.flatMap { Int($0.split(separator: " ")[1]) }
        XCTAssertLessThan(generated ?? 1000, 300, metrics)
        try await srv.stop()
    }

    /// Resident memory does not grow over 2,000 requests (after a warm-up that fills the allocator's pools).
    func testMemoryFlatOver2000Requests() async throws {
        let srv = try await RunningServer.start(parallel: 8, queue: 64)
        let port = srv.port
        func burst(_ count: Int) async throws {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for t in 0..<8 {
                    group.addTask {
                        try await onOwnThread {
                            // Keep-alive connections, renewed every 50 requests (connection churn is part of the test).
                            var conn: LoopbackConnection? = nil
                            for k in 0..<(count / 8) {
                                if k % 50 == 0 { conn = try LoopbackConnection(port: port) }
                                let stream = k % 2 == 0
                                let path = k % 3 == 0 ? "/v1/chat/completions" : "/v1/completions"
                                var body: [String: Any] = ["max_tokens": 2, "seed": t * 10000 + k, "stream": stream]
                                if path == "/v1/completions" { body["prompt"] = "Once upon a time" } else { body["messages"] = [["role": "user", "content": "Hi"]] }
                                try conn!.sendRequest(method: "POST", path: path, headers: ["Content-Type": "application/json"], body: LoopbackConnection.json(body))
                                let r = try conn!.readResponse()
                                XCTAssertEqual(r.status, 200)
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        try await burst(200)
        let before = residentBytes()
        try await burst(2000)
        let after = residentBytes()
        let growth = Double(after - before) / 1_048_576
        print(String(format: "RSS %.1f MiB -> %.1f MiB over 2000 requests (%+.2f MiB)", Double(before) / 1_048_576, Double(after) / 1_048_576, growth))
        XCTAssertLessThan(growth, 8, "RSS grew \(growth) MiB over 2000 requests")
        let metrics = try await srv.request("GET", "/metrics").text
        XCTAssertTrue(metrics.contains("bitnet_completions_total 2200"), metrics)
        try await srv.stop()
    }
}

/// `bitnet bench serve`'s driver: every client's streamed usage is counted.
final class ServeBenchmarkTests: XCTestCase {
    func testCountsEveryRequestsTokens() async throws {
        let s = try Stories.shared.get()
        let scheduler = try BatchScheduler(model: s.model, tokenizer: s.tokenizer, parallel: 3, maxQueue: 3)
        let results = try await ServeBenchmark.run(scheduler: scheduler, clientCounts: [1, 3], requestsPerClient: 2, maxTokens: 5,
                                                   prompt: "Once upon a time")
        XCTAssertEqual(results.map(\.clients), [1, 3])
        // stories260K does not end a story within 5 tokens of "Once upon a time": every request makes all 5.
        XCTAssertEqual(results.map(\.tokens), [10, 30])
        XCTAssertTrue(results.allSatisfy { $0.seconds > 0 && $0.cpuSeconds > 0 })
    }
}
