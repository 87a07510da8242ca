import CBitNetKernels

/// The elements a kernel reads: an owned array, or `count` elements at a pointer into memory that `owner` keeps
/// alive (a tensor in a memory-mapped model file, served without a copy, or a `WeightArena`).
package struct KernelBuffer<Element: BitwiseCopyable>: @unchecked Sendable {
    private let owned: [Element]
    private let borrowed: UnsafePointer<Element>?
    /// Keeps the borrowed memory valid (e.g. the file mapping); nil for an owned array.
    private let owner: AnyObject?
    package let count: Int

    /// Owns `array`.
    package init(_ array: [Element]) {
        owned = array; borrowed = nil; owner = nil; count = array.count
    }

    /// Reads `count` elements at `base`, valid as long as `owner` lives (the buffer holds it); `base` must be
    /// aligned for `Element` and the memory must never change.
    package init(borrowing base: UnsafePointer<Element>, count: Int, owner: AnyObject) {
        precondition(count >= 0 && Int(bitPattern: base) % MemoryLayout<Element>.alignment == 0,
                     "KernelBuffer: \(count) elements at a pointer misaligned for \(Element.self)")
        owned = []; borrowed = base; self.owner = owner; self.count = count
    }

    /// True when the elements live in memory the buffer does not own (a file mapping or a `WeightArena`).
    package var isBorrowed: Bool { borrowed != nil }

    /// True when the elements are read in place from a memory-mapped file (borrowed, and not from a `WeightArena`).
    package var isFileBacked: Bool { borrowed != nil && !(owner is WeightArena) }

    /// Whether `WeightArena` placement copies these elements: always for an owned array, never for a file mapping,
    /// and for an arena's elements when `moveArenas`.
    package func isMovable(_ moveArenas: Bool) -> Bool { borrowed == nil || (moveArenas && owner is WeightArena) }

    /// Drops the resident pages of a file-backed buffer (the whole pages inside it) once a copy has replaced it: the
    /// contents stay readable (a read faults them back in from the file). Returns the bytes released; 0 for any other
    /// buffer.
    @discardableResult
    package func releaseFilePages() -> Int {
        guard isFileBacked, let borrowed else { return 0 }
        return withExtendedLifetime(owner) { Int(bitnet_file_pages_release(borrowed, count * MemoryLayout<Element>.stride)) }
    }

    /// The arena holding the elements, if they were placed in one.
    package var arena: WeightArena? { owner as? WeightArena }

    /// Runs `body` on the elements (no copy in either case).
    package func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Element>) throws -> R) rethrows -> R {
        guard let borrowed else { return try owned.withUnsafeBufferPointer(body) }
        return try withExtendedLifetime(owner) { try body(UnsafeBufferPointer(start: borrowed, count: count)) }
    }

    /// The elements as an array (the owned array itself, or a copy of borrowed memory).
    package var array: [Element] {
        guard borrowed != nil else { return owned }
        return withUnsafeBufferPointer { Array($0) }
    }
}

extension KernelBuffer: Equatable where Element: Equatable {
    /// Equal contents, wherever they live.
    package static func == (a: KernelBuffer, b: KernelBuffer) -> Bool {
        a.count == b.count && a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in pa.elementsEqual(pb) } }
    }
}
