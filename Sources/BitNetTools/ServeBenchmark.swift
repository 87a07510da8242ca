import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference
import BitNetTraining
import BitNetEvaluation
import BitNetServer
import BitNetKernels

/// Throughput of the server under N concurrent streaming clients: starts an `OpenAIServer` on a free loopback port,
/// and for each client count runs that many threads, each sending `requestsPerClient` streaming completions.
package enum ServeBenchmark {
    package struct Result: Sendable {
        package let clients: Int
        /// Completion tokens of all requests (from each stream's usage chunk).
        package let tokens: Int
        package let seconds: Double
        /// CPU time of the whole process (server, decode loop and clients) over the run: on a shared machine it tells
        /// the work done apart from the time other processes took.
        package let cpuSeconds: Double
        package var tokensPerSecond: Double { Double(tokens) / seconds }
        package var tokensPerCPUSecond: Double { Double(tokens) / cpuSeconds }
    }

    /// User + system CPU seconds of this process so far.
    static func cpuTime() -> Double {
        var u = rusage()
        #if canImport(Glibc)
        getrusage(RUSAGE_SELF.rawValue, &u)
        #else
        getrusage(RUSAGE_SELF, &u)
        #endif
        return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
    }

    /// Runs every client count in turn on one server and returns one result per count. Requests sample at temperature
    /// 0.8 with their own seeds up to `maxTokens`; one that meets end-of-sequence earlier counts the tokens it made.
    /// Each count runs `rounds` times (rounds interleave the counts) and keeps its fastest round, so a burst of load
    /// from other processes on a shared machine does not decide the comparison.
    package static func run(scheduler: BatchScheduler, clientCounts: [Int], requestsPerClient: Int, maxTokens: Int, prompt: String,
                           rounds: Int = 1, onResult: @escaping @Sendable (Result) -> Void = { _ in }) async throws -> [Result] {
        var cfg = ServerConfiguration()
        cfg.port = 0
        let server = OpenAIServer(scheduler: scheduler, configuration: cfg)
        let (portStream, portCont) = AsyncStream.makeStream(of: Int.self)
        let serverTask = Task { try await server.run(signals: []) { portCont.yield($0) } }
        var it = portStream.makeAsyncIterator()
        guard let port = await it.next() else { throw BitNetError.invalidArgument("server did not start") }
        defer { serverTask.cancel() }
        // One warm-up request.
        _ = try await onOwnThread { try oneRequest(port: port, prompt: prompt, maxTokens: 4, seed: 0) }
        var best: [Int: Result] = [:]
        for _ in 0..<max(rounds, 1) {
        for n in clientCounts {
            let t0 = Date(), c0 = cpuTime()
            let counts = try await withThrowingTaskGroup(of: Int.self) { group in
                for c in 0..<n {
                    group.addTask {
                        try await onOwnThread {
                            var total = 0
                            for r in 0..<requestsPerClient { total += try oneRequest(port: port, prompt: prompt, maxTokens: maxTokens, seed: UInt64(c * 1000 + r)) }
                            return total
                        }
                    }
                }
                return try await group.reduce(0, +)
            }
            let r = Result(clients: n, tokens: counts, seconds: Date().timeIntervalSince(t0), cpuSeconds: cpuTime() - c0)
            onResult(r)
            if r.tokensPerSecond > best[n]?.tokensPerSecond ?? 0 { best[n] = r }
        }
        }
        await server.shutdown()
        _ = try? await serverTask.value
        return clientCounts.map { best[$0]! }
    }

    /// One streaming completion; returns its completion tokens.
    static func oneRequest(port: Int, prompt: String, maxTokens: Int, seed: UInt64) throws -> Int {
        let body = LoopbackConnection.json(["prompt": prompt, "max_tokens": maxTokens, "stream": true, "seed": seed, "temperature": 0.8,
                                            "stream_options": ["include_usage": true]])
        let reply = try LoopbackConnection.request(port: port, path: "/v1/completions", headers: ["Content-Type": "application/json"], body: body, timeout: 600)
        guard reply.status == 200 else { throw BitNetError.invalidArgument("server answered \(reply.status): \(reply.text)") }
        for e in reply.events.reversed() where e != "[DONE]" {
            if let o = try? JSONSerialization.jsonObject(with: Data(e.utf8)) as? [String: Any], let u = o["usage"] as? [String: Any],
               let n = u["completion_tokens"] as? Int { return n }
        }
        throw BitNetError.invalidArgument("stream without usage")
    }
}
