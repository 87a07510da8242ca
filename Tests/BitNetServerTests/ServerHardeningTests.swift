import BitNet
@testable import BitNetInference
@testable import BitNetTools
import Foundation
import XCTest
@testable import BitNetServer

/// The server under the audit's attacks, with bounded loops on loopback: 1,100 idle connections, a body dribbled one
/// byte at a time, eight concurrent 1 MB prompts. It keeps answering /health quickly throughout and refuses the attack
/// traffic with the right status; limits that pass validation no longer fail later.
final class ServerHardeningTests: XCTestCase {
    /// Milliseconds /health takes, answered 200.
    func healthMilliseconds(_ srv: RunningServer) async throws -> Double {
        let t0 = Date()
        let r = try await srv.request("GET", "/health")
        XCTAssertEqual(r.status, 200, r.text)
        return Date().timeIntervalSince(t0) * 1000
    }

    /// The median of five /health round trips, in milliseconds.
    func medianHealth(_ srv: RunningServer) async throws -> Double {
        var times: [Double] = []
        for _ in 0..<5 { times.append(try await healthMilliseconds(srv)) }
        return times.sorted()[2]
    }

    func testIdleConnectionsDribbledBodiesAndBigPromptsDoNotStallHealth() async throws {
        let limit = OpenAIServer.raiseDescriptorLimit()
        guard limit >= 2 * 1100 + 256 else { throw XCTSkip("descriptor limit \(limit) is too low for 1,100 connections on both ends") }
        let srv = try await RunningServer.start(maxBody: 2 << 20, ctx: 64, bodyTimeout: 1)
        let port = srv.port

        // 1,100 idle connections (the audit crashed the server with these under a 1,024-descriptor limit).
        let idle = try await onOwnThread { try (0..<1100).map { _ in try LoopbackConnection(port: port, timeout: 5) } }
        let health1 = try await medianHealth(srv)
        XCTAssertLessThan(health1, 100, "/health with 1,100 idle connections")

        // A chunked body dribbled a byte every 0.2 s: 408 once the 1 s body deadline passes, while /health answers.
        let dribbled = Task {
            try await onOwnThread { () -> (LoopbackConnection.Reply, Double) in
                let c = try LoopbackConnection(port: port, timeout: 10)
                let t0 = Date()
                try c.send(Array("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".utf8))
                let sender = Thread {
                    for _ in 0..<40 {   // at most 8 s
                        guard (try? c.send(Array("1\r\n{\r\n".utf8))) != nil else { return }
                        Thread.sleep(forTimeInterval: 0.2)
                    }
                }
                sender.start()
                let reply = try c.readResponse()
                return (reply, Date().timeIntervalSince(t0))
            }
        }
        try await Task.sleep(nanoseconds: 300_000_000)
        let health2 = try await medianHealth(srv)
        XCTAssertLessThan(health2, 100, "/health while a body dribbles")
        let (reply, seconds) = try await dribbled.value
        XCTAssertEqual(reply.status, 408, reply.text)
        XCTAssertLessThan(seconds, 4, "the deadline is 1 s")

        // Eight 1 MB prompts at once: refused by their size before tokenizing, /health unaffected.
        let prompt = String(repeating: "Once upon a time there was a girl. ", count: 30_000)
        let big = Task {
            try await withThrowingTaskGroup(of: LoopbackConnection.Reply.self) { g in
                for _ in 0..<8 { g.addTask { try await srv.request("/v1/completions", json: ["prompt": prompt, "max_tokens": 4]) } }
                var replies: [LoopbackConnection.Reply] = []
                for try await r in g { replies.append(r) }
                return replies
            }
        }
        let health3 = try await medianHealth(srv)
        XCTAssertLessThan(health3, 100, "/health during eight 1 MB prompts")
        for r in try await big.value {
            XCTAssertEqual(r.status, 400, r.text)
            XCTAssertEqual(r.error?["code"] as? String, "context_length_exceeded", r.text)
        }
        withExtendedLifetime(idle) {}
        try await srv.stop()
    }

    /// Past its connection cap the server waits to accept instead of running out of descriptors; once clients leave,
    /// it serves again.
    func testConnectionCapHoldsAndRecovers() async throws {
        let srv = try await RunningServer.start(maxConnections: 20)
        XCTAssertEqual(srv.server.connectionLimit, 20)
        let port = srv.port
        let held = try await onOwnThread { try (0..<30).map { _ in try LoopbackConnection(port: port, timeout: 5) } }
        // The 21st and later connections sit in the listen backlog: a request on one of them is not answered yet.
        let waiting = try await onOwnThread { () -> Bool in
            let c = try LoopbackConnection(port: port, timeout: 0.5)
            try c.sendRequest(method: "GET", path: "/health")
            return (try? c.readResponse()) == nil
        }
        XCTAssertTrue(waiting, "no answer beyond the cap")
        for c in held { c.close() }
        try await Task.sleep(nanoseconds: 300_000_000)
        let health4 = try await medianHealth(srv)
        XCTAssertLessThan(health4, 100)
        try await srv.stop()
    }

    /// A top_p so small it is 0 in f32 is refused at validation (it used to end as a 503); an upload the client
    /// abandons is counted as 499, not as a server error; /metrics needs the API key when one is set.
    func testTinyTopPAbortedUploadsAndMetricsKey() async throws {
        let srv = try await RunningServer.start(apiKey: "sekret")
        let auth = ["Authorization": "Bearer sekret"]
        let tiny = try await srv.request("/v1/completions", json: ["prompt": "a", "top_p": 1e-300], headers: auth)
        XCTAssertEqual(tiny.status, 400, tiny.text)
        XCTAssertEqual(tiny.error?["param"] as? String, "top_p")
        let unauthorized = try await srv.request("GET", "/metrics")
        XCTAssertEqual(unauthorized.status, 401)
        let port = srv.port
        try await onOwnThread {
            let c = try LoopbackConnection(port: port, timeout: 5)
            try c.send(Array("POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekret\r\nContent-Length: 1000\r\n\r\n{\"prompt\"".utf8))
            c.close()
        }
        try await Task.sleep(nanoseconds: 500_000_000)
        let metrics = try await srv.request("GET", "/metrics", headers: auth)
        XCTAssertEqual(metrics.status, 200)
        XCTAssertTrue(metrics.text.contains("status=\"499\""), metrics.text)
        XCTAssertFalse(metrics.text.contains("status=\"500\""), metrics.text)
        try await srv.stop()
    }
}
