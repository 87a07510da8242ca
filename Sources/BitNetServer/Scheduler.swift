import Foundation
import Synchronization
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference

/// One generation request as the scheduler runs it.
package struct GenerationJob: Sendable {
    package var promptTokens: [Int]
    package var options: GenerationOptions
    package var stop: [String]

    package init(promptTokens: [Int], options: GenerationOptions, stop: [String] = []) {
        self.promptTokens = promptTokens; self.options = options; self.stop = stop
    }
}

/// What a job's stream carries: text pieces, then exactly one `finished` or `failed`.
package enum GenerationEvent: Sendable, Equatable {
    case text(String)
    case finished(FinishReason, promptTokens: Int, completionTokens: Int)
    case failed(String)
}

/// Why a job was not accepted.
package enum SchedulerRejection: Error, Sendable {
    /// Every slot is busy and the waiting queue is full (answered 429).
    case queueFull
    /// The server is shutting down (answered 503).
    case unavailable
}

/// A submitted job: its events, and `cancel()` to drop it (the slot is freed before the next decode step).
package struct GenerationHandle: Sendable {
    package let events: AsyncStream<GenerationEvent>
    let flag: CancelFlag
    /// Drops the job if it is still queued or running (harmless after it ended).
    package func cancel() { flag.cancel() }
}

/// Set from any thread when the client goes away; read by the decode loop before each step.
final class CancelFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func cancel() { flag.store(true, ordering: .relaxed) }
    var isCancelled: Bool { flag.load(ordering: .relaxed) }
}

/// Runs every request on one decode loop (its own thread, off Swift's cooperative pool): up to `parallel` sequences
/// decode together, each in its own `InferenceSession` (own KV cache) over the shared weights, one batched model step
/// per generated token; requests beyond that wait in a bounded FIFO queue.
package final class BatchScheduler: @unchecked Sendable {
    package let model: InferenceModel
    package let tokenizer: any Tokenizer
    /// Sequences decoded together.
    package let parallel: Int
    /// Requests that may wait for a slot.
    package let maxQueue: Int
    /// Positions per sequence (prompt + completion).
    package let contextLength: Int
    /// Storage of every slot's KV cache.
    package let kvCache: KVCacheFormat
    /// One `stepBatch` per step (true) or one `step` per session (the comparison in `bitnet bench serve --no-batch`).
    package let batched: Bool
    package let metrics: ServerMetrics

    private struct Pending {
        let job: GenerationJob
        let events: AsyncStream<GenerationEvent>.Continuation
        let cancel: CancelFlag
    }

    /// A sequence being decoded in a slot; only the loop thread touches it.
    private struct Active {
        var seq: SequenceGenerator
        var stop: StopFilter
        let events: AsyncStream<GenerationEvent>.Continuation
        let cancel: CancelFlag
        let promptCount: Int
        var next: Int
    }

    private let cond = NSCondition()
    // Guarded by `cond`.
    private var waiting: [Pending] = []
    private var busySlots = 0
    private var draining = false
    private var cancelling = false
    private var stopped = false
    private var loopExited = false
    /// Called by the loop before each round (admission + step); tests hold it to keep slots busy deterministically.
    var beforeRound: (@Sendable () -> Void)?
    // Loop thread only.
    private var slots: [Active?]
    private let sessions: [InferenceSession]

    /// Prepares `parallel` sessions of `contextLength` positions (their KV caches are reused, never reallocated) and
    /// starts the decode thread.
    package init(model: InferenceModel, tokenizer: any Tokenizer, parallel: Int, maxQueue: Int, contextLength: Int? = nil,
                kvCache: KVCacheFormat = .f16, batched: Bool = true, metrics: ServerMetrics = ServerMetrics()) throws {
        guard parallel >= 1 else { throw BitNetError.invalidArgument("--parallel must be >= 1, got \(parallel)") }
        guard maxQueue >= 0 else { throw BitNetError.invalidArgument("--queue must be >= 0, got \(maxQueue)") }
        let ctx = min(contextLength ?? model.config.maxSeqLen, model.config.maxSeqLen)
        guard ctx >= 2 else { throw BitNetError.invalidArgument("--ctx must be >= 2, got \(ctx)") }
        self.model = model; self.tokenizer = tokenizer
        self.parallel = parallel; self.maxQueue = maxQueue; self.contextLength = ctx; self.metrics = metrics
        sessions = try (0..<parallel).map { _ in try InferenceSession(model: model, maxSeqLen: ctx, kvCache: kvCache) }
        self.kvCache = kvCache
        self.batched = batched
        slots = Array(repeating: nil, count: parallel)
        metrics.slots = parallel
        let thread = Thread { [self] in loop() }
        thread.name = "bitnet-decode"
        thread.start()
    }

    /// Queues a job; its events arrive on the handle's stream. Cancelling the handle or the consuming task (client
    /// gone) frees the slot before the next decode step.
    package func submit(_ job: GenerationJob) throws(SchedulerRejection) -> GenerationHandle {
        let (stream, events) = AsyncStream.makeStream(of: GenerationEvent.self)
        let cancel = CancelFlag()
        // Only a flag: the loop never sleeps while it has jobs, and this may run inside `finish()` with the lock held.
        events.onTermination = { _ in cancel.cancel() }
        cond.lock()
        defer { cond.unlock() }
        guard !draining else { throw .unavailable }
        guard waiting.count < maxQueue + (parallel - busySlots) else { throw .queueFull }
        waiting.append(Pending(job: job, events: events, cancel: cancel))
        metrics.queued = waiting.count
        cond.signal()
        return GenerationHandle(events: stream, flag: cancel)
    }

    /// Jobs waiting plus jobs decoding.
    package var load: (waiting: Int, active: Int) {
        cond.lock(); defer { cond.unlock() }
        return (waiting.count, busySlots)
    }

    /// True once shutdown began.
    package var isDraining: Bool {
        cond.lock(); defer { cond.unlock() }
        return draining
    }

    /// Refuses new jobs (`submit` throws `.unavailable`); queued and running ones go on.
    package func beginDrain() {
        cond.lock(); draining = true; cond.unlock()
    }

    /// Ends every queued and running job now with `failed` (graceful shutdown past its deadline).
    package func cancelAll() {
        cond.lock(); draining = true; cancelling = true; cond.signal(); cond.unlock()
    }

    /// Waits (polling, from async code) until no job is queued or running, or `timeout` seconds pass; true if idle.
    package func waitUntilIdle(timeout: Double) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let (w, a) = load
            if w == 0 && a == 0 { return true }
            if Date() >= deadline { return false }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    /// Cancels everything and stops the decode thread (waits for it to exit).
    package func shutdown() {
        cond.lock()
        draining = true; cancelling = true; stopped = true
        cond.broadcast()
        while !loopExited { cond.wait() }
        cond.unlock()
    }

    /// The model step for every running sequence at once: one new token per session, linear layers batched over the
    /// sessions (the weights stream once per step), each attending over its own cache; logits per session.
    /// Unbatched (`batched` false, for comparison) runs each session's own `step` in turn.
    func decodeStep(_ sessions: [InferenceSession], tokens: [Int]) throws -> [UnsafeBufferPointer<Float>] {
        if batched && sessions.count > 1 { return try InferenceSession.stepBatch(sessions, tokens: tokens) }
        return try zip(sessions, tokens).map { try $0.step(token: $1) }
    }

    private func loop() {
        while true {
            cond.lock()
            while waiting.isEmpty && busySlots == 0 && !stopped { cond.wait() }
            if stopped {
                for p in waiting { p.events.yield(.failed("the server is shutting down")); p.events.finish() }
                waiting.removeAll()
                cond.unlock()
                for i in slots.indices where slots[i] != nil {
                    slots[i]!.events.yield(.failed("the server is shutting down"))
                    release(i, cancelled: true)
                }
                break
            }
            if let gate = beforeRound, !cancelling {
                cond.unlock(); gate(); cond.lock()
            }
            let cancelNow = cancelling
            var admitted: [Pending] = []
            while busySlots + admitted.count < parallel && !waiting.isEmpty {
                let p = waiting.removeFirst()
                if p.cancel.isCancelled { p.events.finish(); metrics.countCancelled(); continue }
                admitted.append(p)
            }
            if cancelNow {
                for p in waiting { p.events.yield(.failed("the server is shutting down")); p.events.finish() }
                waiting.removeAll()
            }
            busySlots += admitted.count
            metrics.queued = waiting.count
            metrics.active = busySlots
            cond.unlock()

            for p in admitted { start(p) }
            for i in slots.indices {
                guard let a = slots[i] else { continue }
                if cancelNow { a.events.yield(.failed("the server is shutting down")); release(i, cancelled: true) }
                else if a.cancel.isCancelled { release(i, cancelled: true) }
            }
            let running = slots.indices.filter { slots[$0] != nil }
            guard !running.isEmpty else { continue }
            let t0 = Date()
            do {
                let logits = try decodeStep(running.map { sessions[$0] }, tokens: running.map { slots[$0]!.next })
                for (k, i) in running.enumerated() { advance(slot: i, logits: logits[k]) }
            } catch {
                for i in running { slots[i]?.events.yield(.failed("decoding failed: \(error)")); release(i, cancelled: false) }
            }
            metrics.recordStep(seconds: Date().timeIntervalSince(t0))
        }
        cond.lock(); loopExited = true; cond.broadcast(); cond.unlock()
    }

    /// Puts a job in a free slot: prefill its prompt (batched over the prompt tokens) and sample the first token.
    private func start(_ p: Pending) {
        let i = slots.firstIndex { $0 == nil }!
        let session = sessions[i]
        session.reset()
        do {
            let seq = try SequenceGenerator(tokenizer: tokenizer, promptTokens: p.job.promptTokens, options: p.job.options,
                                            vocabSize: model.config.vocabSize, contextLength: contextLength)
            slots[i] = Active(seq: seq, stop: StopFilter(stops: p.job.stop), events: p.events, cancel: p.cancel,
                              promptCount: p.job.promptTokens.count, next: -1)
            metrics.countPromptTokens(p.job.promptTokens.count)
            if seq.finishReason != nil { finish(slot: i); return }
            let logits = try session.prefill(tokens: p.job.promptTokens)
            advance(slot: i, logits: logits)
        } catch {
            p.events.yield(.failed("\(error)"))
            if slots[i] != nil { release(i, cancelled: false) } else { p.events.finish(); releaseCount() }
        }
    }

    /// Samples the slot's next token from its logits and sends the text that is ready.
    private func advance(slot i: Int, logits: UnsafeBufferPointer<Float>) {
        guard var a = slots[i] else { return }
        let before = a.seq.tokens.count
        let (piece, next) = a.seq.accept(logits: logits, position: sessions[i].position)
        metrics.countGenerated(a.seq.tokens.count - before)
        let text = a.stop.push(piece)
        if !text.isEmpty { a.events.yield(.text(text)) }
        if a.stop.matched { a.seq.finish(reason: .stop) }
        slots[i] = a
        if let next, !a.stop.matched { slots[i]!.next = next } else { finish(slot: i) }
    }

    /// Frees the slot, then sends the held-back text and the final event (in this order, so a client that sends its
    /// next request as soon as it reads the end finds the slot free).
    private func finish(slot i: Int) {
        guard var a = slots[i] else { return }
        var tail = a.stop.push(a.seq.flush())
        tail += a.stop.flush()
        if a.stop.matched { a.seq.finish(reason: .stop) }
        slots[i] = nil
        releaseCount()
        metrics.countCompleted()
        if !tail.isEmpty { a.events.yield(.text(tail)) }
        a.events.yield(.finished(a.seq.finishReason ?? .length, promptTokens: a.promptCount, completionTokens: a.seq.tokens.count))
        a.events.finish()
    }

    private func release(_ i: Int, cancelled: Bool) {
        slots[i]?.events.finish()
        slots[i] = nil
        if cancelled { metrics.countCancelled() }
        releaseCount()
    }

    private func releaseCount() {
        cond.lock(); busySlots -= 1; metrics.active = busySlots; cond.unlock()
    }
}
