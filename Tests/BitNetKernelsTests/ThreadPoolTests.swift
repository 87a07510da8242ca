import Foundation
import XCTest
@testable import BitNetKernels
import CBitNetKernels

final class ThreadPoolTests: XCTestCase {
    /// Per-index hit counters; each task writes only its own slot, so no two threads touch one element.
    final class Counts: @unchecked Sendable {
        let p: UnsafeMutablePointer<Int>
        let n: Int
        init(_ n: Int) {
            self.n = n
            p = .allocate(capacity: n)
            p.initialize(repeating: 0, count: n)
        }
        deinit { p.deallocate() }
        func reset() { p.update(repeating: 0, count: n) }
        func allOnce(_ count: Int) -> Bool { (0..<count).allSatisfy { p[$0] == 1 } }
    }

    func testThreadCount() {
        XCTAssertEqual(ThreadPool(threadCount: 3).threadCount, 3)
        XCTAssertEqual(ThreadPool(threadCount: 0).threadCount, 1)
        XCTAssertGreaterThanOrEqual(ThreadPool.shared.threadCount, 1)
    }

    func testEveryIndexExactlyOnce() {
        for threads in [1, 2, 4] {
            let pool = ThreadPool(threadCount: threads)
            let counts = Counts(5000)
            for count in [0, 1, 2, 3, 7, 64, 1000, 5000] {
                counts.reset()
                pool.parallelFor(count) { counts.p[$0] += 1 }
                XCTAssertTrue(counts.allOnce(count), "threads=\(threads) count=\(count)")
                XCTAssertTrue((count..<counts.n).allSatisfy { counts.p[$0] == 0 })
            }
        }
    }

    func testTenThousandTinyJobs() {
        let pool = ThreadPool(threadCount: 2)
        let counts = Counts(8)
        var bad = 0
        for job in 0..<10_000 {
            let count = 1 + job % 8
            counts.reset()
            pool.parallelFor(count) { counts.p[$0] += 1 }
            if !counts.allOnce(count) { bad += 1 }
        }
        XCTAssertEqual(bad, 0)
    }

    func testNestedParallelForRunsInline() {
        let pool = ThreadPool(threadCount: 2)
        let outer = 16, inner = 10
        let counts = Counts(outer * inner)
        pool.parallelFor(outer) { i in
            pool.parallelFor(inner) { j in counts.p[i * inner + j] += 1 }
            // A different pool called from inside a task must not deadlock either.
            ThreadPool.shared.parallelFor(1) { _ in }
        }
        XCTAssertTrue(counts.allOnce(outer * inner))
    }

    func testConcurrentCallersFromTwoThreads() {
        let pool = ThreadPool(threadCount: 2)
        let perThread = Counts(2)
        DispatchQueue.concurrentPerform(iterations: 2) { caller in
            let counts = Counts(33)
            var ok = 0
            for r in 0..<1000 {
                let count = 1 + (r * 7 + caller) % 33
                counts.reset()
                pool.parallelFor(count) { counts.p[$0] += 1 }
                if counts.allOnce(count) { ok += 1 }
            }
            perThread.p[caller] = ok
        }
        XCTAssertEqual(perThread.p[0], 1000)
        XCTAssertEqual(perThread.p[1], 1000)
    }

    func testWorkersSleepAndWakeUp() {
        // Longer than the spin window: workers are asleep and must be woken for the next job.
        let pool = ThreadPool(threadCount: 2)
        let counts = Counts(64)
        for _ in 0..<3 {
            usleep(2000)
            counts.reset()
            pool.parallelFor(64) { counts.p[$0] += 1 }
            XCTAssertTrue(counts.allOnce(64))
        }
    }

    func testCreateAndDestroyManyPools() {
        for t in 1...20 {
            let pool = ThreadPool(threadCount: 1 + t % 4)
            let counts = Counts(10)
            pool.parallelFor(10) { counts.p[$0] += 1 }
            XCTAssertTrue(counts.allOnce(10))
        }
    }

    /// A worker that holds a task far longer than the caller's share (as when it is descheduled on an oversubscribed
    /// machine) in two calls in a row makes the guarded pool back off to serial calls; a single slow call (a hiccup)
    /// does not; every task still runs exactly once; without the guard the pool never backs off.
    func testOversubscriptionGuardFallsBackToSerial() {
        for guarded in [true, false] {
            let pool = ThreadPool(threadCount: 2, oversubscriptionGuard: guarded)
            let caller = pthread_self()
            let counts = Counts(8)
            let workerRan = Counts(1)   // written by the one worker thread only, read by the caller
            /// Calls until the worker takes part in one and holds its task 200 ms (it may be asleep and lose the race for
            /// the first calls); returns the number of calls made.
            func slowCall() -> Int {
                workerRan.p[0] = 0
                var calls = 0
                while workerRan.p[0] == 0 && calls < 200 {
                    calls += 1
                    counts.reset()
                    var callerWaited = false   // touched by the caller only
                    pool.parallelFor(8) { i in
                        if pthread_equal(pthread_self(), caller) == 0 {
                            workerRan.p[0] = 1
                            usleep(200_000)   // far longer than the caller's share, even on a loaded machine
                        } else if !callerWaited {
                            // Hold the caller until the worker has a task (or 1 s passed), so a worker does take part.
                            callerWaited = true
                            let t0 = DispatchTime.now().uptimeNanoseconds
                            while workerRan.p[0] == 0 && DispatchTime.now().uptimeNanoseconds - t0 < 1_000_000_000 { sched_yield() }
                        }
                        counts.p[i] += 1
                    }
                    XCTAssertTrue(counts.allOnce(8))
                }
                XCTAssertEqual(workerRan.p[0], 1, "a worker never took a task")
                return calls
            }
            /// Serial calls made by one plain call (1 while backing off, else 0).
            func serialCallsOfPlainCall() -> Int {
                let before = pool.stats.serialCalls
                counts.reset()
                pool.parallelFor(8) { counts.p[$0] += 1 }
                XCTAssertTrue(counts.allOnce(8))
                return pool.stats.serialCalls - before
            }
            // One slow call: a hiccup, no back-off (setting the guard again clears its state).
            bitnet_pool_set_guard(pool.raw, guarded ? 1 : 0)
            _ = slowCall()
            XCTAssertEqual(serialCallsOfPlainCall(), 0, "one slow call must not start a back-off")
            if guarded { XCTAssertEqual(pool.stats.fallbacks, 1, "the slow call is counted") }
            // Two slow calls in a row (the fast calls while waiting for the worker would clear the first one's count).
            var checked = false
            for _ in 0..<20 where !checked {
                bitnet_pool_set_guard(pool.raw, guarded ? 1 : 0)
                _ = slowCall()
                guard slowCall() == 1 else { continue }
                checked = true
                XCTAssertEqual(serialCallsOfPlainCall(), guarded ? 1 : 0, "two slow calls in a row back off, when guarded")
            }
            XCTAssertTrue(checked, "the worker never took part in two calls in a row")
            if !guarded { XCTAssertEqual(pool.stats.fallbacks, 0) }
        }
    }

    /// With no spin an idle worker blocks right after its tasks, so calls 3 ms apart each find it blocked and wake it;
    /// spinning longer than the gap (as the default 2 ms spin covers a decode step's serial gaps) it never blocks.
    func testSpinKeepsWorkersAwakeAcrossGaps() {
        for (spin, expectWakeups) in [(0, true), (1_000_000, false)] {
            let pool = ThreadPool(threadCount: 2, spinMicroseconds: spin)
            XCTAssertEqual(pool.spinMicroseconds, spin)
            let counts = Counts(64)
            pool.parallelFor(64) { counts.p[$0] += 1 }   // the worker has started and run once
            let before = pool.stats
            for _ in 0..<20 {
                usleep(3_000)
                counts.reset()
                pool.parallelFor(64) { counts.p[$0] += 1 }
                XCTAssertTrue(counts.allOnce(64))
            }
            let wakeups = pool.stats.wakeups - before.wakeups
            if expectWakeups {
                XCTAssertGreaterThanOrEqual(wakeups, 10, "spin 0: the worker should block between calls")
            } else {
                XCTAssertEqual(wakeups, 0, "spin 1 s: the worker should still be spinning 3 ms later")
            }
        }
    }

    /// The decode GEMVs' splits (bitnet_pool_split_rows) in every mode: every row of [begin, end) exactly once, pieces
    /// starting at whole multiples of `chunk` from `begin`; guided: one big chunk per thread (~3/4 of the rows in all)
    /// before the small ones; lanes: pieces of at most `chunk` rows, none across the boundary of a thread's lane.
    func testSplitModesCoverEveryRowOnce() {
        struct Record { var hits: UnsafeMutablePointer<Int32>; var starts: UnsafeMutablePointer<Int>; var lengths: UnsafeMutablePointer<Int>; var begin: Int }
        let kernel: bitnet_rows_fn = { args, r0, r1 in
            let rec = args!.assumingMemoryBound(to: Record.self).pointee
            for r in r0..<r1 { rec.hits[r] += 1 }
            rec.starts[r0] = 1
            rec.lengths[r0] = r1 - r0
        }
        let saved = ThreadPool.splitMode
        defer { ThreadPool.splitMode = saved }
        for mode in ThreadPool.SplitMode.allCases {
            ThreadPool.splitMode = mode
            for threads in [1, 2, 3] {
                let pool = ThreadPool(threadCount: threads)
                for (begin, end, chunk) in [(0, 2560, 80), (7, 1000, 12), (0, 97, 4), (5, 6, 1), (0, 40, 40), (3, 50, 0)] {
                    let hits = UnsafeMutablePointer<Int32>.allocate(capacity: end), starts = UnsafeMutablePointer<Int>.allocate(capacity: end)
                    let lengths = UnsafeMutablePointer<Int>.allocate(capacity: end)
                    hits.initialize(repeating: 0, count: end); starts.initialize(repeating: 0, count: end); lengths.initialize(repeating: 0, count: end)
                    defer { hits.deallocate(); starts.deallocate(); lengths.deallocate() }
                    var rec = Record(hits: hits, starts: starts, lengths: lengths, begin: begin)
                    withUnsafePointer(to: &rec) { bitnet_pool_split_rows(pool.raw, begin, end, chunk, kernel, $0) }
                    let tag = "\(mode), threads \(threads), [\(begin), \(end)) chunk \(chunk)"
                    XCTAssertEqual((0..<end).map { hits[$0] }, (0..<end).map { $0 < begin ? 0 : 1 }, tag)
                    let runs = (begin..<end).filter { starts[$0] == 1 }
                    if chunk > 0 { XCTAssertTrue(runs.allSatisfy { ($0 - begin) % chunk == 0 }, tag) }
                    let rows = end - begin
                    if mode == .guided && threads > 1 && chunk > 0 && rows * 3 / (4 * threads) / chunk > 1 {
                        let big = rows * 3 / (4 * threads) / chunk * chunk
                        XCTAssertEqual(Array(runs.prefix(threads)), (0..<threads).map { begin + $0 * big }, tag)
                        XCTAssertEqual((0..<threads).map { lengths[begin + $0 * big] }, [Int](repeating: big, count: threads), tag)
                        XCTAssertTrue(runs.dropFirst(threads).allSatisfy { lengths[$0] <= chunk }, tag)
                    }
                    if mode != .guided && chunk > 0 && chunk < rows {
                        XCTAssertTrue(runs.allSatisfy { lengths[$0] <= chunk }, tag)
                        if mode == .lanes && threads > 1 {
                            // Lanes of whole chunks: ceil(rows / (threads × chunk)) chunks each.
                            let lane = (rows + threads * chunk - 1) / (threads * chunk) * chunk
                            XCTAssertTrue(runs.allSatisfy { ($0 - begin) / lane == ($0 - begin + lengths[$0] - 1) / lane }, tag)
                        }
                    }
                }
            }
        }
    }

    /// Lanes: a thread done with its own lane takes chunks from the back of the other's. Chunks of lane 0 sleep 2 ms,
    /// lane 1's are instant; lane 0 then ends up shared: its owner's chunks a prefix in claim order, the helper's the
    /// suffix, claimed back to front.
    func testLanesSplitStealsFromTheBack() throws {
        let saved = ThreadPool.splitMode
        defer { ThreadPool.splitMode = saved }
        ThreadPool.splitMode = .lanes
        let pool = ThreadPool(threadCount: 2, spinMicroseconds: 100_000)
        final class Log: @unchecked Sendable {
            var lock = pthread_mutex_t()
            var pieces: [(start: Int, thread: UInt, order: Int)] = []
            init() { pthread_mutex_init(&lock, nil) }
        }
        let log = Log()
        let kernel: bitnet_rows_fn = { args, r0, r1 in
            let log = Unmanaged<Log>.fromOpaque(args!).takeUnretainedValue()
            if r0 < 256 { usleep(2000) }
            pthread_mutex_lock(&log.lock)
            #if os(Linux)
            let me = UInt(pthread_self())
            #else
            let me = UInt(bitPattern: pthread_self())
            #endif
            log.pieces.append((r0, me, log.pieces.count))
            pthread_mutex_unlock(&log.lock)
        }
        pool.parallelFor(2) { _ in }   // both threads awake
        bitnet_pool_split_rows(pool.raw, 0, 512, 32, kernel, Unmanaged.passUnretained(log).toOpaque())
        let lane0 = log.pieces.filter { $0.start < 256 }.sorted { $0.start < $1.start }
        XCTAssertEqual(lane0.map(\.start), stride(from: 0, to: 256, by: 32).map { $0 })
        XCTAssertEqual(log.pieces.count, 16)
        let owner = lane0[0].thread
        let helped = lane0.filter { $0.thread != owner }
        guard !helped.isEmpty else { throw XCTSkip("the pool ran the split on one thread (a busy machine)") }
        // The owner's chunks come first in the lane and in claim order; the helper's are the rest, claimed from the back.
        let ownerRows = lane0.filter { $0.thread == owner }
        XCTAssertEqual(ownerRows.map(\.start), stride(from: 0, to: ownerRows.count * 32, by: 32).map { $0 })
        XCTAssertEqual(ownerRows.map(\.order), ownerRows.map(\.order).sorted())
        XCTAssertEqual(helped.map(\.order), helped.map(\.order).sorted(by: >), "stolen back to front")
    }

    /// Idle-time prefetch hints (bitnet_pool_prefetch_rows): the pieces are each thread's first rows of the split (its lane, or its big chunk)
    /// (the worker's first, then the caller's), mapped onto the right matrix of a fused row space, cut at the byte
    /// budget; an idle worker prefetches exactly those bytes; the split itself clears the hint; budget 0 is off.
    func testIdlePrefetchHintCoversEachThreadsFirstRows() {
        let pool = ThreadPool(threadCount: 2, spinMicroseconds: 1_000_000)
        pool.idlePrefetchBytes = 64 * 1024
        // Three matrices of one row space: 1000 rows × 640 B, 200 × 640 B, 2000 × 640 B (a fused Wq/Wk/Wv-like split).
        let strides = [640, 640, 640], rows = [1000, 200, 2000]
        let buffers = zip(rows, strides).map { UnsafeMutableRawPointer.allocate(byteCount: $0 * $1, alignment: 64) }
        defer { buffers.forEach { $0.deallocate() } }
        let chunk = 96, total = rows.reduce(0, +)
        // Each thread's first run: in lanes (the default), its lane of 17 chunks = 1632 rows (thread 1's starts in
        // matrix 2 at row 432); guided, its big chunk of 1200 rows (thread 1's starts at matrix 2, row 0).
        let lane = (total + 2 * chunk - 1) / (2 * chunk) * chunk, big = total * 3 / (4 * 2) / chunk * chunk
        XCTAssertEqual(lane, 1632)
        func pending() -> [(UInt, Int)] {
            var addr = [UInt](repeating: 0, count: 16), len = [Int](repeating: 0, count: 16)
            let n = Int(bitnet_pool_pending_prefetch(pool.raw, &addr, &len, 16))
            return (0..<n).map { (addr[$0], len[$0]) }
        }
        var spans = zip(buffers, zip(strides, rows)).map { bitnet_rows_span(base: $0, row_stride: $1.0, rows: $1.1) }
        let saved = ThreadPool.splitMode
        defer { ThreadPool.splitMode = saved }
        for mode in [ThreadPool.SplitMode.lanes, .guided] {
        ThreadPool.splitMode = mode
        let first = mode == .lanes ? lane : big
        func expectedPieces(budget: Int) -> [(UInt, Int)] {
            // Independent walk: thread 1's rows [first, 2 first), then thread 0's [0, first), each cut at `budget` bytes.
            var out: [(UInt, Int)] = []
            for start in [first, 0] {
                var r = start, left = budget, need = first
                var base = 0
                for (i, n) in rows.enumerated() {
                    defer { base += n }
                    guard r < base + n, need > 0, left > 0 else { continue }
                    let take = min(base + n - r, need), bytes = min(take * strides[i], left)
                    out.append((UInt(bitPattern: buffers[i] + (r - base) * strides[i]), bytes))
                    left -= bytes; need -= take; r += take
                }
            }
            return out
        }
        for budget in [64 * 1024, 700_000] {
            pool.idlePrefetchBytes = budget
            pool.parallelFor(2) { _ in }   // the worker is awake and starts a fresh 1 s spin
            let before = pool.idlePrefetchedBytes
            bitnet_pool_prefetch_rows(pool.raw, &spans, 3, chunk)
            let want = expectedPieces(budget: budget)
            let got = pending()
            XCTAssertEqual(got.map(\.0), want.map(\.0), "\(mode), budget \(budget): piece addresses")
            XCTAssertEqual(got.map(\.1), want.map(\.1), "\(mode), budget \(budget): piece lengths")
            // The spinning worker prefetches all of it, then stops.
            let wanted = want.reduce(0) { $0 + $1.1 }
            let deadline = Date().addingTimeInterval(2)
            while pool.idlePrefetchedBytes - before < wanted && Date() < deadline { usleep(200) }
            XCTAssertEqual(pool.idlePrefetchedBytes - before, wanted, "\(mode), budget \(budget): bytes prefetched by the idle worker")
        }
        }
        // A split clears the pending hint.
        bitnet_pool_prefetch_rows(pool.raw, &spans, 3, chunk)
        XCTAssertFalse(pending().isEmpty)
        let kernel: bitnet_rows_fn = { _, _, _ in }
        var dummy = 0
        withUnsafePointer(to: &dummy) { bitnet_pool_split_rows(pool.raw, 0, total, chunk, kernel, $0) }
        XCTAssertTrue(pending().isEmpty, "the split the hint announced clears it")
        // Budget 0: no hint at all.
        pool.idlePrefetchBytes = 0
        bitnet_pool_prefetch_rows(pool.raw, &spans, 3, chunk)
        XCTAssertTrue(pending().isEmpty)
        pool.prefetch(buffers[0], bytes: 4096, then: buffers[1], bytes: 4096)
        XCTAssertTrue(pending().isEmpty)
        // Whole ranges (the KV cache rows before an attention), in order.
        pool.idlePrefetchBytes = 1
        pool.prefetch(buffers[0], bytes: 5000, then: buffers[2], bytes: 7000)
        XCTAssertEqual(pending().map(\.0), [UInt(bitPattern: buffers[0]), UInt(bitPattern: buffers[2])])
        XCTAssertEqual(pending().map(\.1), [5000, 7000])
    }
}
