import BitNetCore
/// Cuts generated text at the first of the request's stop strings (OpenAI `stop`), holding back any tail that
/// could still become one so a streamed answer never shows part of a stop string.
package struct StopFilter: Sendable {
    package let stops: [[UInt8]]
    /// Everything generated so far (UTF-8) and how much of it was already handed out.
    private var text: [UInt8] = []
    private var emitted = 0
    package private(set) var matched = false

    package init(stops: [String]) { self.stops = stops.map { Array($0.utf8) } }

    /// Adds a decoded piece; returns the text now safe to send (the pieces are whole UTF-8 sequences, and so are the
    /// cut points: a match starts at a stop string's first byte, which is never a continuation byte).
    package mutating func push(_ piece: String) -> String {
        guard !matched else { return "" }
        text.append(contentsOf: piece.utf8)
        guard !stops.isEmpty else { return take(upTo: text.count) }
        // Earliest match that may involve the new bytes (older text was checked before).
        let longest = stops.map(\.count).max()!
        var cut: Int? = nil
        for s in stops {
            let from = max(0, emitted - s.count + 1)
            if let at = Self.find(s, in: text, from: from), at < (cut ?? Int.max) { cut = at }
        }
        if let cut { matched = true; return take(upTo: cut) }
        // Hold back the longest tail that is a proper prefix of some stop string.
        var hold = 0
        for len in stride(from: min(longest - 1, text.count - emitted), through: 1, by: -1) {
            let tail = text[(text.count - len)...]
            if stops.contains(where: { $0.count > len && $0[..<len].elementsEqual(tail) }) { hold = len; break }
        }
        return take(upTo: text.count - hold)
    }

    /// Whatever was held back (the generation ended without completing a stop string).
    package mutating func flush() -> String { matched ? "" : take(upTo: text.count) }

    private mutating func take(upTo end: Int) -> String {
        guard end > emitted else { return "" }
        let s = String(decoding: text[emitted..<end], as: UTF8.self)
        emitted = end
        return s
    }

    package static func find(_ needle: [UInt8], in hay: [UInt8], from: Int) -> Int? {
        guard needle.count <= hay.count else { return nil }
        var i = from
        while i + needle.count <= hay.count {
            if hay[i] == needle[0] && hay[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }
}
