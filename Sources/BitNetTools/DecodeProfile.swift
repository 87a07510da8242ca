import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference
import BitNetTraining
import BitNetEvaluation
import BitNetServer
import BitNetKernels

/// Where decoding time goes: wall time per phase of the forward pass (one token at a time), accumulated while a
/// profile is a session's `phaseObserver`. Reading the clock costs ~20 ns, ten times a layer; nothing is allocated per token.
package final class DecodeProfile: DecodePhaseObserver, @unchecked Sendable {
    package typealias Phase = DecodePhase

    private let totals = UnsafeMutablePointer<UInt64>.allocate(capacity: Phase.allCases.count)
    private var last: UInt64 = 0
    /// Forward passes recorded.
    package private(set) var tokens = 0

    package init() { totals.initialize(repeating: 0, count: Phase.allCases.count) }
    deinit { totals.deallocate() }

    private static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Starts a forward pass.
    package func begin() {
        tokens += 1
        last = Self.nanoseconds()
    }

    /// Charges the time since the previous phase ended (or `begin`) to `phase`.
    package func end(_ phase: Phase) {
        let now = Self.nanoseconds()
        totals[phase.rawValue] &+= now &- last
        last = now
    }

    /// Seconds per recorded token spent in `phase`.
    package func secondsPerToken(_ phase: Phase) -> Double {
        tokens == 0 ? 0 : Double(totals[phase.rawValue]) * 1e-9 / Double(tokens)
    }

    /// Seconds per recorded token over all phases.
    package var totalSecondsPerToken: Double { Phase.allCases.reduce(0) { $0 + secondsPerToken($1) } }
}
