import Foundation
import Synchronization

/// Counters behind `GET /metrics` (Prometheus text format), safe to update from any thread.
public final class ServerMetrics: Sendable {
    private struct State {
        var requests: [String: Int] = [:]  // "endpoint status" → count
        var promptTokens = 0, generatedTokens = 0, completed = 0, cancelled = 0
        var queued = 0, active = 0, slots = 0
        var decodeSteps = 0, decodeSeconds = 0.0
        /// (time, tokens) of recent decode steps, for the tokens/s gauge.
        var recent: [(Double, Int)] = []
    }
    private let state = Mutex(State())
    /// The tokens/s gauge averages over this many seconds.
    public static let rateWindow = 10.0

    public init() {}

    var queued: Int { get { state.withLock { $0.queued } } set { state.withLock { $0.queued = newValue } } }
    var active: Int { get { state.withLock { $0.active } } set { state.withLock { $0.active = newValue } } }
    var slots: Int { get { state.withLock { $0.slots } } set { state.withLock { $0.slots = newValue } } }

    func countRequest(endpoint: String, status: Int) { state.withLock { $0.requests["\(endpoint) \(status)", default: 0] += 1 } }
    func countPromptTokens(_ n: Int) { state.withLock { $0.promptTokens += n } }
    func countGenerated(_ n: Int) { state.withLock { s in s.generatedTokens += n; s.recent.append((Date().timeIntervalSince1970, n)) } }
    func countCompleted() { state.withLock { $0.completed += 1 } }
    func countCancelled() { state.withLock { $0.cancelled += 1 } }

    /// One batched decode step that produced `tokens` tokens.
    func recordStep(tokens: Int, seconds: Double) {
        let now = Date().timeIntervalSince1970
        state.withLock { s in
            s.generatedTokens += tokens; s.decodeSteps += 1; s.decodeSeconds += seconds
            s.recent.append((now, tokens))
            if let i = s.recent.firstIndex(where: { $0.0 >= now - Self.rateWindow }), i > 0 { s.recent.removeFirst(i) }
        }
    }

    /// Total generated tokens so far.
    public var generatedTokens: Int { state.withLock { $0.generatedTokens } }

    /// The Prometheus exposition text.
    public func render() -> String {
        let now = Date().timeIntervalSince1970
        return state.withLock { s in
            let recent = s.recent.filter { $0.0 >= now - Self.rateWindow }.reduce(0) { $0 + $1.1 }
            var out = "# HELP bitnet_requests_total HTTP requests by endpoint and status.\n# TYPE bitnet_requests_total counter\n"
            for key in s.requests.keys.sorted() {
                let parts = key.split(separator: " ")
                out += "bitnet_requests_total{endpoint=\"\(parts[0])\",status=\"\(parts[1])\"} \(s.requests[key]!)\n"
            }
            func metric(_ name: String, _ type: String, _ help: String, _ value: String) {
                out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
            }
            metric("bitnet_prompt_tokens_total", "counter", "Prompt tokens processed.", "\(s.promptTokens)")
            metric("bitnet_generated_tokens_total", "counter", "Completion tokens generated.", "\(s.generatedTokens)")
            metric("bitnet_completions_total", "counter", "Generations that ran to the end.", "\(s.completed)")
            metric("bitnet_cancelled_total", "counter", "Generations dropped because the client went away or the server stopped.", "\(s.cancelled)")
            metric("bitnet_tokens_per_second", "gauge", "Completion tokens per second over the last \(Int(Self.rateWindow)) s.",
                   String(format: "%.3f", Double(recent) / Self.rateWindow))
            metric("bitnet_decode_steps_total", "counter", "Batched decode steps.", "\(s.decodeSteps)")
            metric("bitnet_decode_seconds_total", "counter", "Time spent in batched decode steps.", String(format: "%.6f", s.decodeSeconds))
            metric("bitnet_queue_length", "gauge", "Requests waiting for a slot.", "\(s.queued)")
            metric("bitnet_active_slots", "gauge", "Sequences decoding now.", "\(s.active)")
            metric("bitnet_slots", "gauge", "Sequences that can decode together (--parallel).", "\(s.slots)")
            return out
        }
    }
}
