import BitNet
@testable import BitNetInference
@testable import BitNetTools
import Foundation
import XCTest
@testable import BitNetServer

/// The decode loop without HTTP.
final class SchedulerTests: XCTestCase {
    func collect(_ handle: GenerationHandle) async -> (text: String, last: GenerationEvent?) {
        var text = "", last: GenerationEvent?
        for await e in handle.events {
            if case .text(let s) = e { text += s } else { last = e }
        }
        return (text, last)
    }

    /// Six jobs of different prompts and lengths decoding together, batched (one stepBatch per step) and one session
    /// at a time, give each job exactly its `Generator` answer.
    func testBatchedAndUnbatchedEqualGenerator() async throws {
        let s = try Stories.shared.get()
        let prompts = ["Once upon a time", "The sun", "Tim had a red ball", "", "A big dog", "Mia"]
        let jobs = prompts.enumerated().map { i, p in
            (p, options(maxTokens: 10 + 7 * i, temperature: 0.9, topK: 30, topP: 0.95, seed: UInt64(i)))
        }
        let expected = try jobs.map { try s.generate(prompt: $0.0, options: $0.1) }
        for batched in [true, false] {
            let scheduler = try BatchScheduler(model: s.model, tokenizer: s.tokenizer, parallel: 4, maxQueue: 8, batched: batched)
            let handles = try jobs.map { p, o in
                try scheduler.submit(GenerationJob(promptTokens: try Generator(model: s.model, tokenizer: s.tokenizer).promptTokens(p, addBOS: nil), options: o))
            }
            for (k, h) in handles.enumerated() {
                let (text, last) = await collect(h)
                XCTAssertEqual(text, expected[k], "job \(k), batched \(batched)")
                guard case .finished(_, _, let n)? = last else { return XCTFail("job \(k) ended with \(String(describing: last))") }
                XCTAssertLessThanOrEqual(n, jobs[k].1.maxTokens)
            }
            scheduler.shutdown()
        }
    }

    /// `shutdown()` ends running and queued jobs with `failed` and stops the thread.
    func testShutdownEndsRunningAndQueuedJobs() async throws {
        let s = try Stories.shared.get()
        let scheduler = try BatchScheduler(model: s.model, tokenizer: s.tokenizer, parallel: 1, maxQueue: 2)
        scheduler.beforeRound = { usleep(10_000) }
        let job = GenerationJob(promptTokens: [1], options: options(maxTokens: 400, temperature: 1, topK: 0, topP: 1, seed: 1))
        let running = try scheduler.submit(job), queued = try scheduler.submit(job)
        while scheduler.load.active < 1 { try await Task.sleep(nanoseconds: 2_000_000) }
        scheduler.shutdown()
        for h in [running, queued] {
            let (_, last) = await collect(h)
            XCTAssertEqual(last, .failed("the server is shutting down"))
        }
        XCTAssertThrowsError(try scheduler.submit(job))
    }

    /// A job cancelled while it waits for a slot is dropped at admission and the loop goes on serving.
    func testJobCancelledWhileQueuedIsDropped() async throws {
        let s = try Stories.shared.get()
        let gate = DispatchSemaphore(value: 0)
        let scheduler = try BatchScheduler(model: s.model, tokenizer: s.tokenizer, parallel: 1, maxQueue: 2)
        scheduler.beforeRound = { gate.wait(); gate.signal() }
        let job = GenerationJob(promptTokens: [1], options: options(maxTokens: 5, temperature: 0, topK: 0, topP: 1, seed: 1))
        let first = try scheduler.submit(job), second = try scheduler.submit(job)
        second.cancel()
        gate.signal()
        let (_, lastSecond) = await collect(second)
        XCTAssertNil(lastSecond, "a dropped job ends without a final event")
        let (text, last) = await collect(first)
        XCTAssertEqual(last, .finished(.length, promptTokens: 1, completionTokens: 5))
        let (again, _) = await collect(try scheduler.submit(job))
        XCTAssertEqual(again, text)
        scheduler.shutdown()
    }
}
