import Foundation
import BitNetKernels

/// A one-line progress display on standard error with rate and ETA, redrawn in place.
package struct ProgressLine: Sendable {
    package let total: Int
    package let unit: String
    private let start: Double
    private var lastDraw: Double = 0
    private let isTTY: Bool

    package init(total: Int, unit: String) {
        self.total = total
        self.unit = unit
        self.start = Clock.now()
        self.isTTY = isatty(2) != 0
    }

    /// Seconds since the line was created.
    package var elapsed: Double { Clock.now() - start }

    /// Seconds left: the items still to do at the rate so far, plus `finalSeconds` of work that follows the last item
    /// (a final evaluation, a checkpoint).
    package func remainingSeconds(done: Int, finalSeconds: Double = 0) -> Double {
        let rate = Double(done) / max(elapsed, 1e-9)
        return (rate > 0 ? Double(total - done) / rate : 0) + finalSeconds
    }

    /// Redraws the line at most 4 times a second (always on the last item); `extra` is appended. The ETA counts
    /// `finalSeconds` of work after the last item, or is `etaSeconds` when the caller accounts for it all.
    package mutating func update(done: Int, rateItems: Double? = nil, rateUnit: String? = nil, extra: String = "",
                                 finalSeconds: Double = 0, etaSeconds: Double? = nil) {
        let now = Clock.now()
        let last = done >= total
        if !last && now - lastDraw < (isTTY ? 0.25 : 5.0) { return }
        lastDraw = now
        let el = now - start
        let rate = Double(done) / max(el, 1e-9)
        let eta = etaSeconds ?? remainingSeconds(done: done, finalSeconds: last ? 0 : finalSeconds)
        var s = "\(done)/\(total) \(unit)"
        if let r = rateItems, let u = rateUnit { s += String(format: " | %.0f %@/s", r, u) }
        else { s += String(format: " | %.2f %@/s", rate, unit) }
        s += " | elapsed \(Self.format(el)) | ETA \(Self.format(eta))"
        if !extra.isEmpty { s += " | " + extra }
        printError(isTTY ? "\r\u{1B}[K" + s : s, terminator: isTTY && !last ? "" : "\n")
    }

    /// "1h02m", "3m05s" or "12s".
    package static func format(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        if s >= 3600 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
        if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
        return "\(s)s"
    }
}

/// Monotonic wall clock in seconds.
package enum Clock {
    package static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}
