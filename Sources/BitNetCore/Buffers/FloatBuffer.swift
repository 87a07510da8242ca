import BitNetKernels

/// A heap f32 buffer with a stable address: activations and gradients live in these so hot loops use raw pointers.
package final class FloatBuffer: @unchecked Sendable {
    package let count: Int
    package let ptr: UnsafeMutablePointer<Float>

    /// A zero-filled buffer of `count` floats.
    package init(_ count: Int) {
        self.count = count
        ptr = .allocate(capacity: max(count, 1))
        ptr.initialize(repeating: 0, count: max(count, 1))
    }

    deinit { ptr.deallocate() }

    /// Sets every element to zero.
    package func zero() { ptr.update(repeating: 0, count: count) }

    /// The contents as an array (for tests and files).
    package var array: [Float] { Array(UnsafeBufferPointer(start: ptr, count: count)) }
}

/// Splits `n` rows into one contiguous chunk per worker and runs them on the shared pool.
@inline(__always)
package func parallelRows(_ n: Int, minRowsPerTask: Int = 16, _ body: (Range<Int>) -> Void) {
    let pool = ThreadPool.shared
    let tasks = min(pool.threadCount, max(1, n / max(minRowsPerTask, 1)))
    if tasks <= 1 { body(0..<n); return }
    pool.parallelFor(tasks) { t in
        let lo = n * t / tasks, hi = n * (t + 1) / tasks
        if lo < hi { body(lo..<hi) }
    }
}

/// Σ a[i]·b[i] with 16-wide partial sums (attention scores, RMSNorm's sum of squares).
@inline(__always)
func simdDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD16<Float>.zero
    var i = 0
    while i + 16 <= n {
        acc += UnsafeRawPointer(a + i).loadUnaligned(as: SIMD16<Float>.self) * UnsafeRawPointer(b + i).loadUnaligned(as: SIMD16<Float>.self)
        i += 16
    }
    var s = acc.sum()
    while i < n { s += a[i] * b[i]; i += 1 }
    return s
}

/// y += x over `count` floats.
@inline(__always)
package func addInPlace(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ count: Int) {
    for i in 0..<count { y[i] += x[i] }
}
