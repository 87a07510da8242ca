import Foundation

/// Where decoding time goes: wall time per phase of the forward pass (one token at a time), accumulated while a
/// profile is `active`. Reading the clock costs ~20 ns, ten times a layer; nothing is allocated per token.
public final class DecodeProfile: @unchecked Sendable {
    /// Phases of one layer (and the model's ends), in forward order.
    public enum Phase: Int, CaseIterable, Sendable {
        case embedding, qkv, ropeAndCache, attention, wo, ffnUp, activation, ffnDown, residual, head

        /// Short name for tables.
        public var name: String {
            switch self {
            case .embedding: return "embedding"
            case .qkv: return "norm+Wq/Wk/Wv"
            case .ropeAndCache: return "RoPE+KV store"
            case .attention: return "attention"
            case .wo: return "SubLN+Wo"
            case .ffnUp: return "norm+W1/W3"
            case .activation: return "ReLU²/SwiGLU"
            case .ffnDown: return "SubLN+W2"
            case .residual: return "residual adds"
            case .head: return "norm+head"
            }
        }
    }

    /// The profile that forward passes of one token add to (nil: no profiling). Set it around the steps to measure,
    /// from the thread that runs them.
    public nonisolated(unsafe) static var active: DecodeProfile?

    private let totals = UnsafeMutablePointer<UInt64>.allocate(capacity: Phase.allCases.count)
    private var last: UInt64 = 0
    /// Forward passes recorded.
    public private(set) var tokens = 0

    public init() { totals.initialize(repeating: 0, count: Phase.allCases.count) }
    deinit { totals.deallocate() }

    private static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Starts a forward pass.
    func begin() {
        tokens += 1
        last = Self.nanoseconds()
    }

    /// Charges the time since the previous mark (or `begin`) to `phase`.
    func mark(_ phase: Phase) {
        let now = Self.nanoseconds()
        totals[phase.rawValue] &+= now &- last
        last = now
    }

    /// Seconds per recorded token spent in `phase`.
    public func secondsPerToken(_ phase: Phase) -> Double {
        tokens == 0 ? 0 : Double(totals[phase.rawValue]) * 1e-9 / Double(tokens)
    }

    /// Seconds per recorded token over all phases.
    public var totalSecondsPerToken: Double { Phase.allCases.reduce(0) { $0 + secondsPerToken($1) } }
}

extension InferenceModel {
    /// Weight bytes a decoded token reads in `phase` (the linears of every layer, or the head); 0 for phases
    /// without weights.
    public func bytesPerToken(in phase: DecodeProfile.Phase) -> Int {
        switch phase {
        case .qkv: return layers.reduce(0) { $0 + $1.wq.packedBytes + $1.wk.packedBytes + $1.wv.packedBytes }
        case .wo: return layers.reduce(0) { $0 + $1.wo.packedBytes }
        case .ffnUp: return layers.reduce(0) { $0 + $1.w1.packedBytes + $1.w3.packedBytes }
        case .ffnDown: return layers.reduce(0) { $0 + $1.w2.packedBytes }
        case .head: return head.bytes
        default: return 0
        }
    }
}
