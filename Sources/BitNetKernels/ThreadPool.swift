import CBitNetKernels
import Foundation

/// A fixed set of worker threads (threadCount - 1 of them, plus the calling thread) for data-parallel loops.
///
/// Idle workers spin ~2 ms (with pause, yielding after 50 µs) and then sleep on a condvar, so the calls of a decode
/// step start without a wake-up and an idle process does not burn CPU. A call that the workers made slower than the caller alone
/// would have been (a descheduled worker holding a task) makes the following calls run serially for a while,
/// so an oversubscribed machine degrades to single-thread speed rather than below it. Calls from inside a task run serially (no deadlock);
/// calls from different threads are serialized.
package final class ThreadPool: @unchecked Sendable {
    /// Process-wide pool: `ProcessInfo.activeProcessorCount` threads, or `BITNET_THREADS` when set to a positive integer.
    package static let shared: ThreadPool = {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        if let raw = ProcessInfo.processInfo.environment["BITNET_THREADS"], environmentInt("BITNET_THREADS").map({ $0 < 1 }) ?? true {
            FileHandle.standardError.write(Data("note: BITNET_THREADS=\(raw) is not a positive whole number; using \(cores) threads\n".utf8))
        }
        return ThreadPool(threadCount: environmentInt("BITNET_THREADS").flatMap { $0 > 0 ? $0 : nil } ?? cores)
    }()

    /// Default idle-time prefetch of new pools (see `idlePrefetchBytes`): 256 KiB (`bench --compare-prefetch` A/Bs it).
    package static let defaultIdlePrefetchBytes = 256 * 1024

    /// Default busy-wait of new pools before an idle thread blocks: `BITNET_SPIN_US` microseconds when set, else 2000.
    package static let defaultSpinMicroseconds = environmentInt("BITNET_SPIN_US") ?? 2000

    /// The whole number ≥ 0 in environment variable `name` (spaces around it ignored); nil when unset or not one.
    private static func environmentInt(_ name: String) -> Int? {
        ProcessInfo.processInfo.environment[name].flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }.flatMap { $0 >= 0 ? $0 : nil }
    }

    /// The C pool; immutable after init, and the C side is thread-safe.
    let raw: OpaquePointer
    /// The body of the running call (read by the tasks) and the lock that gives it to one caller at a time.
    private nonisolated(unsafe) var current: ((Int) -> Void)?
    private let callLock: UnsafeMutablePointer<pthread_mutex_t>

    /// Creates a pool running tasks on `threadCount` threads, the caller included (values below 1 mean 1);
    /// `oversubscriptionGuard: false` keeps every call parallel even when that is slower (for benchmarks).
    package init(threadCount: Int, oversubscriptionGuard: Bool = true, spinMicroseconds: Int = ThreadPool.defaultSpinMicroseconds) {
        let n = Int32(clamping: max(1, threadCount))
        guard let p = bitnet_pool_create(n) else { fatalError("ThreadPool: cannot allocate a pool of \(n) threads") }
        raw = p
        self.spinMicroseconds = max(0, spinMicroseconds)
        bitnet_pool_set_spin_ns(p, self.spinMicroseconds * 1000)
        callLock = .allocate(capacity: 1)
        pthread_mutex_init(callLock, nil)
        if !oversubscriptionGuard { bitnet_pool_set_guard(p, 0) }
        idlePrefetchBytes = ThreadPool.defaultIdlePrefetchBytes
        bitnet_pool_set_idle_prefetch(p, idlePrefetchBytes)
    }

    deinit {
        bitnet_pool_destroy(raw)
        pthread_mutex_destroy(callLock)
        callLock.deallocate()
    }

    /// Calls run in parallel; calls run on the caller alone while backing off from an oversubscribed machine; parallel
    /// calls slower than the caller alone would have been (two in a row start a back-off); parallel calls that found a
    /// worker blocked and had to wake it (slow on a VM; see `spinMicroseconds`); and the seconds the caller waited for
    /// the other threads' last tasks after running out of its own.
    package var stats: (parallelCalls: Int, serialCalls: Int, fallbacks: Int, wakeups: Int, waitSeconds: Double) {
        var p = 0, s = 0, f = 0, w = 0, ns = 0
        bitnet_pool_stats(raw, &p, &s, &f, &w, &ns)
        return (p, s, f, w, Double(ns) / 1e9)
    }

    /// How long an idle thread busy-waits for the next call (or the caller for the last task) before blocking; it
    /// yields the core after the first 50 µs. Waking a blocked worker can cost more than the serial gaps of a decode
    /// step (0.25-1 ms on a 2-vCPU VM), so the spin outlasts those gaps (docs/KERNELS.md).
    package var spinMicroseconds: Int {
        didSet { bitnet_pool_set_spin_ns(raw, max(0, spinMicroseconds) * 1000) }
    }

    /// Bytes of each thread's first rows that a `prefetchSplit` hint lets idle workers pull into cache before the
    /// split starts (0: off). A decode step leaves the memory bus idle during its serial work between GEMVs
    /// (norms, quantization, RoPE); a waiting worker fills that time with the next GEMV's first weights.
    package var idlePrefetchBytes: Int {
        didSet { bitnet_pool_set_idle_prefetch(raw, max(0, idlePrefetchBytes)) }
    }

    /// Bytes that idle workers have prefetched on hints so far.
    package var idlePrefetchedBytes: Int { bitnet_pool_prefetched_bytes(raw) }

    /// Prefetch hints published so far (`prefetchSplit`, `prefetch`).
    package var idlePrefetchHints: Int { bitnet_pool_prefetch_hints(raw) }

    /// Threads that run tasks, the caller included (fewer than requested only if threads could not be spawned).
    package var threadCount: Int { Int(bitnet_pool_thread_count(raw)) }

    /// Runs body(i) for i in 0..<count across the workers and the caller; returns when all are done.
    package func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        precondition(count >= 0, "ThreadPool.parallelFor: count must be >= 0, got \(count)")
        if count == 0 { return }
        if count == 1 || threadCount == 1 {
            for i in 0..<count { body(i) }
            return
        }
        // A call from inside a task (of any pool) runs serially, as the C pool would; checking first keeps such a
        // call off `callLock`, which its own outer call holds.
        if bitnet_pool_in_task() != 0 {
            for i in 0..<count { body(i) }
            return
        }
        // The closure outlives nothing: bitnet_pool_parallel_for returns only after every task ran, so the tasks may
        // read it from `current` for the call's duration. A concrete (non-generic) stored property keeps the call
        // allocation-free, as the decode loop needs; `callLock` serializes callers on different threads.
        withoutActuallyEscaping(body) { escapable in
            pthread_mutex_lock(callLock)
            current = escapable
            bitnet_pool_parallel_for(raw, count, { ctx, index in
                Unmanaged<ThreadPool>.fromOpaque(ctx!).takeUnretainedValue().current!(Int(index))
            }, Unmanaged.passUnretained(self).toOpaque())
            current = nil
            pthread_mutex_unlock(callLock)
        }
    }

    /// Runs task(context, i) for i in 0..<count across the workers and the caller: the allocation-free form of
    /// `parallelFor` for hot loops (a C function pointer and a context the caller keeps alive for the call).
    package func parallelFor(_ count: Int, context: UnsafeMutableRawPointer, task: bitnet_task_fn) {
        precondition(count >= 0, "ThreadPool.parallelFor: count must be >= 0, got \(count)")
        bitnet_pool_parallel_for(raw, count, task, context)
    }
}

extension ThreadPool {
    /// Runs `body(r0, r1)` over `range` split into chunks of whole `granule`-row groups, about `chunksPerThread` per thread, on `pool`;
    /// runs it once on the caller when there is no pool or one thread, fewer than 2 granules of rows, or less work
    /// (rows × `perRow`) than `threshold`. Shared by the row-parallel GEMV kernels.
    static func splitRows(_ range: Range<Int>, work perRow: Int, granule: Int, threshold: Int, pool: ThreadPool?,
                          _ body: (Int, Int) -> Void) {
        guard !range.isEmpty else { return }
        guard let pool, let chunk = rowChunk(range.count, work: perRow, granule: granule, threshold: threshold, threads: pool.threadCount) else {
            body(range.lowerBound, range.upperBound)
            return
        }
        pool.parallelFor((range.count + chunk - 1) / chunk) { i in
            let r0 = range.lowerBound + i * chunk
            body(r0, min(r0 + chunk, range.upperBound))
        }
    }

    /// `splitRows` for a C kernel taking its arguments as a struct: no Swift closure, so no allocation per call
    /// (the decode loop's GEMVs). Cut by `splitMode`: by default each thread streams its own contiguous lane of
    /// chunks and then helps with the others' (see bitnet_pool_split_rows).
    static func splitRows(_ range: Range<Int>, work perRow: Int, granule: Int, threshold: Int, pool: ThreadPool?,
                          kernel: bitnet_rows_fn, args: UnsafeRawPointer) {
        guard !range.isEmpty else { return }
        let chunk = pool.flatMap { rowChunk(range.count, work: perRow, granule: granule, threshold: threshold, threads: $0.threadCount) } ?? 0
        bitnet_pool_split_rows(pool?.raw, range.lowerBound, range.upperBound, chunk, kernel, args)
    }

    /// One matrix of a split's row space in memory, for `prefetchSplit`: row r at base + r × rowStride bytes.
    package typealias RowSpan = (base: UnsafeRawPointer, rowStride: Int, rows: Int)

    /// Hint for the next `splitRows(_:work:granule:threshold:pool:kernel:args:)` over the rows of a, b, c (in that
    /// order, as one row space): idle workers start pulling each thread's first rows into cache now (see
    /// `idlePrefetchBytes`). Same work/granule/threshold as the call it announces; allocates nothing. The memory must
    /// stay valid until that call.
    static func prefetchSplit(work perRow: Int, granule: Int, threshold: Int, pool: ThreadPool?, _ a: RowSpan, _ b: RowSpan?, _ c: RowSpan?) {
        guard let pool, pool.threadCount > 1, pool.idlePrefetchBytes > 0 else { return }
        let rows = a.rows + (b?.rows ?? 0) + (c?.rows ?? 0)
        guard let chunk = rowChunk(rows, work: perRow, granule: granule, threshold: threshold, threads: pool.threadCount) else { return }
        withUnsafeTemporaryAllocation(of: bitnet_rows_span.self, capacity: 3) { spans in
            var n = 0
            func add(_ p: RowSpan) { spans[n] = bitnet_rows_span(base: p.base, row_stride: p.rowStride, rows: p.rows); n += 1 }
            add(a)
            if let b { add(b) }
            if let c { add(c) }
            bitnet_pool_prefetch_rows(pool.raw, spans.baseAddress!, n, chunk)
        }
    }

    /// Hint: idle workers pull `count` (at most 16) byte ranges into cache, in order. Same rules as
    /// `prefetch(_:bytes:then:bytes:)`.
    package func prefetch(ranges: UnsafePointer<UnsafeRawPointer?>, lengths: UnsafePointer<Int>, count: Int) {
        guard threadCount > 1, idlePrefetchBytes > 0, count > 0 else { return }
        bitnet_pool_prefetch_ranges(raw, ranges, lengths, count)
    }

    /// Hint: idle workers pull these two byte ranges into cache, in order (e.g. the keys and values the next attention
    /// reads). Off when `idlePrefetchBytes` is 0; the memory must stay valid until the work that reads it.
    package func prefetch(_ a: UnsafeRawPointer, bytes aBytes: Int, then b: UnsafeRawPointer, bytes bBytes: Int) {
        guard threadCount > 1, idlePrefetchBytes > 0 else { return }
        var addr: (UnsafeRawPointer?, UnsafeRawPointer?) = (a, b)
        var len = (aBytes, bBytes)
        withUnsafePointer(to: &addr) { ap in
            withUnsafePointer(to: &len) { lp in
                ap.withMemoryRebound(to: UnsafeRawPointer?.self, capacity: 2) { a2 in
                    lp.withMemoryRebound(to: Int.self, capacity: 2) { l2 in bitnet_pool_prefetch_ranges(raw, a2, l2, 2) }
                }
            }
        }
    }

    /// How the decode GEMVs' rows are cut over the threads (bitnet_pool_split_rows).
    package enum SplitMode: String, Sendable, CaseIterable {
        /// Thread t owns the t-th of equal runs of chunks, front to back, then takes chunks from the back of the others'.
        case lanes
        /// One big chunk per thread (~3/4 of the rows), then chunks claimed dynamically.
        case guided
        /// Chunks claimed dynamically only.
        case uniform
    }

    /// The split of the decode GEMVs (default lanes), for
    /// A/B measurements (`bench --compare-chunks 16,16g,16u`); set it between, not during, parallel work.
    package static var splitMode: SplitMode {
        get {
            switch bitnet_split_mode() {
            case BITNET_SPLIT_UNIFORM: .uniform
            case BITNET_SPLIT_GUIDED: .guided
            default: .lanes
            }
        }
        set {
            bitnet_set_split_mode(newValue == .uniform ? BITNET_SPLIT_UNIFORM : newValue == .guided ? BITNET_SPLIT_GUIDED : BITNET_SPLIT_LANES)
        }
    }

    /// Chunks per thread of a split (default 16; `bench --compare-chunks` A/Bs it; set it before, not during,
    /// parallel work). More chunks shrink the wait for the last one at the end of each call (the threads meet ~150
    /// times per decoded token) at the price of the per-chunk setup of the kernels (activation copies).
    package nonisolated(unsafe) static var chunksPerThread: Int = 16

    /// Rows per chunk (whole granules, about `chunksPerThread` chunks per thread), or nil to run on the caller: one
    /// thread, fewer than 2 granules of rows, or less work (rows × `perRow`) than `threshold`.
    private static func rowChunk(_ rows: Int, work perRow: Int, granule: Int, threshold: Int, threads: Int) -> Int? {
        guard threads > 1, rows >= 2 * granule, rows * max(perRow, 1) >= threshold else { return nil }
        let target = min(threads * min(max(chunksPerThread, 1), 256), rows / granule)
        return ((rows + target - 1) / target + granule - 1) / granule * granule
    }
}
