import Foundation
import Synchronization
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference

/// Counters behind `GET /metrics` (Prometheus text format), safe to update from any thread.
package final class ServerMetrics: Sendable {
    private struct State {
        var requests: [String: Int] = [:]  // "endpoint status" → count
        var promptTokens = 0, generatedTokens = 0, completed = 0, cancelled = 0
        var queued = 0, active = 0, slots = 0
        var decodeSteps = 0, decodeSeconds = 0.0
        /// Tokens generated in each of the last `rateWindow` whole seconds (ring indexed by epoch second), for the gauge.
        var perSecond = [Int](repeating: 0, count: Int(ServerMetrics.rateWindow))
        var lastSecond = 0

        /// Moves the ring to epoch second `t`, zeroing the seconds that passed without tokens.
        mutating func advance(to t: Int) {
            guard t > lastSecond else { return }
            for k in (lastSecond + 1)...min(t, lastSecond + perSecond.count) { perSecond[k % perSecond.count] = 0 }
            lastSecond = t
        }
    }
    private let state = Mutex(State())
    /// The tokens/s gauge averages over this many seconds.
    package static let rateWindow = 10.0

    package init() {}

    var queued: Int { get { state.withLock { $0.queued } } set { state.withLock { $0.queued = newValue } } }
    var active: Int { get { state.withLock { $0.active } } set { state.withLock { $0.active = newValue } } }
    var slots: Int { get { state.withLock { $0.slots } } set { state.withLock { $0.slots = newValue } } }

    func countRequest(endpoint: String, status: Int) { state.withLock { $0.requests["\(endpoint) \(status)", default: 0] += 1 } }
    func countPromptTokens(_ n: Int) { state.withLock { $0.promptTokens += n } }
    /// Completion tokens (end-of-sequence excluded, as in `usage`), also kept for the tokens/s gauge.
    func countGenerated(_ n: Int) {
        guard n > 0 else { return }
        let t = Int(Date().timeIntervalSince1970)
        state.withLock { s in
            s.generatedTokens += n
            s.advance(to: t)
            s.perSecond[t % s.perSecond.count] += n
        }
    }
    func countCompleted() { state.withLock { $0.completed += 1 } }
    func countCancelled() { state.withLock { $0.cancelled += 1 } }

    /// One batched decode step and its time.
    func recordStep(seconds: Double) {
        state.withLock { s in s.decodeSteps += 1; s.decodeSeconds += seconds }
    }

    /// Total generated tokens so far.
    package var generatedTokens: Int { state.withLock { $0.generatedTokens } }

    /// The Prometheus exposition text.
    package func render() -> String {
        let t = Int(Date().timeIntervalSince1970)
        return state.withLock { s in
            s.advance(to: t)
            let recent = s.perSecond.reduce(0, +)
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
