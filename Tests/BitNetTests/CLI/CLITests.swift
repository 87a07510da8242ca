import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools
import BitNetKernels

/// Runs the built `bitnet` executable (debug or release) and checks how it ends.
struct BitNetExecutable {
    let url: URL

    /// The executable next to the tests, or a skip when it is not built.
    init() throws {
        let candidates = [Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent(),
                          TestPaths.repoRoot.appendingPathComponent(".build/debug"), TestPaths.repoRoot.appendingPathComponent(".build/release")]
        guard let dir = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.appendingPathComponent("bitnet").path) }) else {
            throw XCTSkip("bitnet executable not built")
        }
        url = dir.appendingPathComponent("bitnet")
    }

    func run(_ args: [String], environment: [String: String] = [:], in directory: URL? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = url
        p.arguments = args
        if let directory { p.currentDirectoryURL = directory }
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .exit, "no crash for \(args)")
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func expectFailure(_ args: [String], mentions: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try run(args)
        XCTAssertNotEqual(r.status, 0, "\(args) must fail", file: file, line: line)
        XCTAssertTrue(r.stderr.lowercased().contains(mentions.lowercased()), "stderr for \(args) should mention '\(mentions)': \(r.stderr)", file: file, line: line)
    }
}

/// The `bitnet` executable on bad input: a named error on standard error and a non-zero exit, never a crash.
final class CLITests: XCTestCase {
    var cli: BitNetExecutable!

    override func setUpWithError() throws { cli = try BitNetExecutable() }

    func run(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) { try cli.run(args) }

    func expectFailure(_ args: [String], mentions: String, file: StaticString = #filePath, line: UInt = #line) throws {
        try cli.expectFailure(args, mentions: mentions, file: file, line: line)
    }

    func testBadInputsGiveNamedErrors() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let empty = dir.appendingPathComponent("empty.txt")
        try Data().write(to: empty)
        let corrupt = dir.appendingPathComponent("corrupt.safetensors")
        try Data("not a model at all, just text".utf8).write(to: corrupt)
        try expectFailure(["train", "--data", "/nonexistent/corpus.txt", "--out", dir.path], mentions: "/nonexistent/corpus.txt")
        try expectFailure(["train", "--data", empty.path, "--out", dir.path], mentions: "empty")
        try expectFailure(["train", "--data", empty.path, "--out", dir.path, "--arch", "bitnet-b3"], mentions: "bitnet-b3")
        try expectFailure(["train", "--data", empty.path, "--out", dir.path, "--steps", "many"], mentions: "steps")
        try expectFailure(["train", "--out", dir.path, "--frobnicate"], mentions: "frobnicate")
        try expectFailure(["generate", "--model", corrupt.path, "--prompt", "hi"], mentions: corrupt.path)
        try expectFailure(["generate", "--model", dir.appendingPathComponent("missing").path], mentions: "not found")
        try expectFailure(["logits", "--model", corrupt.path, "--tokens", "1,2", "--out", dir.appendingPathComponent("l.bin").path], mentions: "corrupt.safetensors")
    }

    /// `bench --profile --json` on a small synthetic model: the per-phase profile is in the JSON, its weight bytes add
    /// up to bytes_per_token, `auto` resolves as the library says, and a bad layout is a named error.
    func testBenchProfileJSONAndTernaryLayoutAuto() throws {
        let r = try run(["bench", "--preset", "tiny", "--no-twin", "--decode-tokens", "3", "--prompts", "8", "--head", "q6",
                         "--profile", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        let profile = try XCTUnwrap(obj["decode_profile"] as? [String: [String: Double]])
        XCTAssertEqual(Set(profile.keys), Set(DecodeProfile.Phase.allCases.map { "\($0)" }))
        XCTAssertEqual(profile.values.reduce(0) { $0 + ($1["weight_bytes_per_token"] ?? 0) }, obj["bytes_per_token"] as? Double)
        XCTAssertGreaterThan(profile["head"]?["seconds_per_token"] ?? 0, 0)
        // The same GEMVs alone: a time for each phase that streams weights, and none for the others.
        XCTAssertEqual(Set(profile.filter { $0.value["gemv_alone_seconds_per_token"] != nil }.keys),
                       Set(profile.filter { ($0.value["weight_bytes_per_token"] ?? 0) > 0 }.keys))
        XCTAssertGreaterThan(obj["gemv_alone_seconds_per_token"] as? Double ?? 0, 0)
        XCTAssertGreaterThan(obj["gemv_alone_interleaved_step_seconds"] as? Double ?? 0, 0)
        // auto: the tiny preset's 128-column rows take 64 bytes in t3 against 32 in t2, so t2 on any CPU.
        XCTAssertEqual(obj["ternary_layout"] as? String, "t2")
        // The memory breakdown: the weight categories add up to the weights, the KV cache is the f16 default's
        // 2 (K, V) x layers x kv heads x head dim x 2 bytes per position, and all of it adds up to the peak.
        let memory = try XCTUnwrap(obj["memory_bytes"] as? [String: Int], r.stdout)
        XCTAssertEqual(Set(memory.keys), ["linears", "embedding_and_head", "norms", "kv_cache", "other"])
        XCTAssertEqual(memory["linears"]! + memory["embedding_and_head"]! + memory["norms"]!, obj["weight_bytes"] as? Int)
        let c = ModelPreset.named("tiny")!.config(arch: .b158, vocabSize: 512, maxSeqLen: 256)
        XCTAssertEqual(memory["kv_cache"]! % (2 * c.nLayers * c.nKVHeads * c.headDim * 2), 0)
        XCTAssertEqual(memory.values.reduce(0, +), obj["peak_rss_bytes"] as? Int)
        XCTAssertEqual(obj["kv_cache"] as? String, "f16", "the default cache")
        try expectFailure(["bench", "--preset", "tiny", "--no-twin", "--ternary-layout", "t9"], mentions: "t9")
        // Repeats end in llama-bench's table (mean ± sd per test, agreeing with the runs' JSON), and the text says how
        // to read the figures.
        let text = try run(["bench", "--preset", "tiny", "--no-twin", "--decode-tokens", "2", "--prompts", "8", "--repeat", "3",
                            "--paired-steps", "0"])
        XCTAssertEqual(text.status, 0, text.stderr)
        for fragment in ["| test | t/s (mean ± sd over 3 runs) |", "| tg2 | ", "| pp8 | ", "how to read it: decode = ", "step by step times each decode step"] {
            XCTAssertTrue(text.stdout.contains(fragment), "\(fragment): \(text.stdout)")
        }
        let json = try run(["bench", "--preset", "tiny", "--no-twin", "--decode-tokens", "2", "--prompts", "8", "--repeat", "3",
                            "--paired-steps", "0", "--json"])
        let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], json.stdout)
        let rates = try XCTUnwrap((o["runs"] as? [[String: Any]])?.compactMap { $0["decode_tokens_per_s"] as? Double })
        XCTAssertEqual(rates.count, 3)
        let mean = rates.reduce(0, +) / 3, sd = (rates.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 2).squareRoot()
        XCTAssertEqual(try XCTUnwrap(o["decode_tokens_per_s_mean"] as? Double), mean, accuracy: 1e-9 * mean)
        XCTAssertEqual(try XCTUnwrap(o["decode_tokens_per_s_sd"] as? Double), sd, accuracy: 1e-9 * mean)
    }

    /// `bench --repeat 3 --json`: three runs, each with its decode rate and roofline; the medians are the middle
    /// values of the runs (computed here from the runs), the report's own decode rate is the median run's, and a
    /// repeat count of 0 is a named error.
    func testBenchRepeatReportsRunsAndMedians() throws {
        let r = try run(["bench", "--preset", "tiny", "--no-twin", "--decode-tokens", "3", "--prompts", "8", "--repeat", "3", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        let runs = try XCTUnwrap(obj["runs"] as? [[String: Any]])
        XCTAssertEqual(runs.count, 3)
        let decode = runs.compactMap { $0["decode_tokens_per_s"] as? Double }, roofline = runs.compactMap { $0["roofline_fraction"] as? Double }
        let prefill = runs.compactMap { ($0["prefill_tokens_per_s"] as? [String: Double])?["8"] }
        XCTAssertEqual(decode.count, 3); XCTAssertEqual(roofline.count, 3); XCTAssertEqual(prefill.count, 3)
        XCTAssertTrue(decode.allSatisfy { $0 > 0 } && roofline.allSatisfy { $0 > 0 })
        XCTAssertEqual(obj["median_decode_tokens_per_s"] as? Double, decode.sorted()[1])
        XCTAssertEqual(obj["median_roofline_fraction"] as? Double, roofline.sorted()[1])
        XCTAssertEqual((obj["median_prefill_tokens_per_s"] as? [String: Double])?["8"], prefill.sorted()[1])
        XCTAssertEqual(obj["decode_tokens_per_s"] as? Double, decode.sorted()[1], "the report's rows are the median run's")
        try expectFailure(["bench", "--preset", "tiny", "--no-twin", "--repeat", "0"], mentions: "--repeat")
        // The step-by-step roofline: by default decode-tokens x repeat steps, quartiles around the median.
        XCTAssertEqual(obj["paired_roofline_steps"] as? Int, 9)
        let paired = try XCTUnwrap(obj["paired_roofline_fraction"] as? Double), quartiles = try XCTUnwrap(obj["paired_roofline_quartiles"] as? [Double])
        XCTAssertTrue(paired > 0 && quartiles.count == 2 && quartiles[0] <= paired && paired <= quartiles[1], "\(paired) \(quartiles)")
        let off = try run(["bench", "--preset", "tiny", "--no-twin", "--decode-tokens", "3", "--prompts", "8", "--paired-steps", "0", "--json"])
        XCTAssertEqual(off.status, 0, off.stderr)
        XCTAssertFalse(off.stdout.contains("paired_roofline"), off.stdout)
        let text = try run(["bench", "--preset", "tiny", "--no-twin", "--decode-tokens", "3", "--prompts", "8", "--paired-steps", "5"])
        XCTAssertTrue(text.stdout.contains("roofline step by step: median") && text.stdout.contains("of 5 decode steps"), text.stdout)
        try expectFailure(["bench", "--preset", "tiny", "--no-twin", "--paired-steps", "-1"], mentions: "--paired-steps")
        // An A/B of two variants interleaves their steps in one session: a preset gets the room, a model file names its limit.
        let ab = try run(["bench", "--preset", "tiny", "--no-twin", "--decode-tokens", "520", "--compare-spin", "20,2000"])
        XCTAssertEqual(ab.status, 0, ab.stderr)   // 2 × 520 steps + 2 > the preset's 1024 positions
        XCTAssertTrue(ab.stdout.contains("spin 2000 us: decode"), ab.stdout)
        let stories = try TestPaths.sharedFile("stories260K/stories260K.bin")
        try expectFailure(["bench", "--model", stories, "--no-twin", "--decode-tokens", "300", "--compare-spin", "20,2000"],
                          mentions: "602 positions; the model has 512")
        // Layouts: decode steps and prompts of the first --prompts length alternate; an unknown layout is named.
        let layouts = try run(["bench", "--preset", "tiny", "--no-twin", "--decode-tokens", "4", "--prompts", "8", "--compare-layout", "t2,t3"])
        XCTAssertEqual(layouts.status, 0, layouts.stderr)
        for line in ["linears t2: decode", "linears t3: decode", "linears t2: prefill 8 ", "linears t3: prefill 8 "] {
            XCTAssertTrue(layouts.stdout.contains(line), "\(line) missing from: \(layouts.stdout)")
        }
        try expectFailure(["bench", "--preset", "tiny", "--no-twin", "--compare-layout", "t2,t4"], mentions: "'t4'")
        // Page sizes: one copy of the weights per size (4k: none on huge pages), steps and prompts alternate.
        let pages = try run(["bench", "--preset", "tiny", "--no-twin", "--decode-tokens", "4", "--prompts", "8", "--compare-pages", "4k,2m"])
        XCTAssertEqual(pages.status, 0, pages.stderr)
        for line in ["4 KiB pages: decode", "2 MiB pages: decode", "4 KiB pages: prefill 8 ", "2 MiB pages: prefill 8 "] {
            XCTAssertTrue(pages.stdout.contains(line), "\(line) missing from: \(pages.stdout)")
        }
        XCTAssertTrue(pages.stderr.contains("4k pages: ") && pages.stderr.contains("MB of weights in arenas, 0 MB of them on huge pages"), pages.stderr)
        try expectFailure(["bench", "--preset", "tiny", "--no-twin", "--compare-pages", "4k,1g"], mentions: "'1g'")
    }

    /// `bench --context N`: decode after N cached positions (JSON `decode_context`, named in the text report); the
    /// context counts toward the model's positions, and a negative one is a named error.
    func testBenchDecodeContext() throws {
        let r = try run(["bench", "--preset", "tiny", "--no-twin", "--decode-tokens", "3", "--prompts", "8", "--context", "200", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        XCTAssertEqual(obj["decode_context"] as? Int, 200)
        // The weights sit in arenas (the tiny preset's q8 head and its t2/t3 linears); huge pages are at most all of them.
        let arena = try XCTUnwrap(obj["arena_bytes"] as? Int), huge = try XCTUnwrap(obj["huge_page_bytes"] as? Int)
        XCTAssertGreaterThan(arena, 0)
        XCTAssertLessThanOrEqual(huge, arena)
        XCTAssertGreaterThan(obj["decode_tokens_per_s"] as? Double ?? 0, 0)
        let text = try run(["bench", "--preset", "tiny", "--no-twin", "--decode-tokens", "3", "--prompts", "8", "--context", "100", "--kv-cache", "q8"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("KV cache q8, decode after 100 cached positions"), text.stdout)
        let stories = try TestPaths.sharedFile("stories260K/stories260K.bin")
        try expectFailure(["bench", "--model", stories, "--no-twin", "--decode-tokens", "32", "--prompts", "8", "--context", "500"],
                          mentions: "534 positions; the model has 512")
        try expectFailure(["bench", "--preset", "tiny", "--no-twin", "--context", "-1"], mentions: "context")
    }

    /// `bench --context-sweep` with two KV cache formats: JSON rows per (format, depth) in order, an SVG with one line per
    /// format, written atomically where --plot says; bad depth lists, --plot alone and too deep a sweep are named errors.
    func testBenchContextSweepJSONAndPlot() throws {
        let dir = TestPaths.tempDir()
        let svg = dir.appendingPathComponent("sweep.svg")
        let r = try run(["bench", "--preset", "tiny", "--decode-tokens", "3", "--context-sweep", "0,40,100", "--kv-cache", "f32,q4",
                         "--json", "--plot", svg.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        let rows = try XCTUnwrap(obj["context_sweep"] as? [[String: Any]])
        XCTAssertEqual(rows.compactMap { $0["kv_cache"] as? String }, ["f32", "f32", "f32", "q4", "q4", "q4"])
        XCTAssertEqual(rows.compactMap { $0["context"] as? Int }, [0, 40, 100, 0, 40, 100])
        XCTAssertTrue(rows.allSatisfy { ($0["decode_tokens_per_s"] as? Double ?? 0) > 0 && ($0["attention_ms_per_token"] as? Double ?? 0) > 0 })
        let drawn = try String(contentsOf: svg, encoding: .utf8)
        XCTAssertTrue(drawn.hasPrefix("<svg") && drawn.contains("KV cache f32") && drawn.contains("KV cache q4"), drawn)
        try expectFailure(["bench", "--preset", "tiny", "--context-sweep", "0,x"], mentions: "'x'")
        try expectFailure(["bench", "--preset", "tiny", "--context-sweep", "64,8"], mentions: "ascending")
        try expectFailure(["bench", "--preset", "tiny", "--plot", svg.path], mentions: "--context-sweep")
        try expectFailure(["bench", "--preset", "tiny", "--context-sweep", "0,8", "--kv-cache", "f32,f9"], mentions: "'f9'")
        try expectFailure(["bench", "--preset", "tiny", "--context-sweep", "0,8", "--kv-cache", ""], mentions: "unknown KV cache format ''")
        let stories = try TestPaths.sharedFile("stories260K/stories260K.bin")
        try expectFailure(["bench", "--model", stories, "--decode-tokens", "32", "--context-sweep", "0,500"], mentions: "533 positions; the model has 512")
    }

    func testLogitsCommandWritesTheReferenceLogits() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let c = tinyConfig(.b158)
        let w = ModelWeights(config: c, seed: 5)
        let model = dir.appendingPathComponent("m.safetensors")
        try ModelFile.save(w, tokenizer: nil, to: model)
        let out = dir.appendingPathComponent("logits.bin")
        let r = try run(["logits", "--model", model.path, "--tokens", "1,5,30", "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let data = try Data(contentsOf: out)
        XCTAssertEqual(data.count, 3 * c.vocabSize * 4)
        let values = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let g = TrainingGraph(weights: w, batch: 1, seqLen: 3)
        g.forward(inputs: [1, 5, 30], training: false)
        XCTAssertLessThan(maxAbsDiff(values, g.logits.array), 1e-4)
        try expectFailure(["logits", "--model", model.path, "--tokens", "1,99999", "--out", out.path], mentions: "99999")
    }

    /// Evaluation commands: a missing zero-shot file names the fetch script; a bad task or budget is named; the
    /// zero-shot command runs on a model with a tokenizer and local task files.
    func testEvaluationCommands() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let tok = try ByteLevelBPE.train(text: String(repeating: "Question: what is it? Answer: a cat. ", count: 30), vocabSize: 280)
        let w = ModelWeights(config: tinyConfig(.b158, vocab: tok.vocabSize, seq: 32), seed: 3)
        let model = dir.appendingPathComponent("m.safetensors")
        try ModelFile.save(w, tokenizer: tok, to: model)
        try expectFailure(["eval", "zero-shot", "--model", model.path, "--tasks", "piqa", "--data-dir", dir.path], mentions: "get_zero_shot.sh")
        try expectFailure(["eval", "zero-shot", "--model", model.path, "--tasks", "arc_medium"], mentions: "arc_medium")
        try expectFailure(["reproduce", "--budget", "1", "--out", dir.appendingPathComponent("r").path], mentions: "budget")
        let line = { (doc: Int, idx: Int, cont: String) in
            #"{"doc_id": \#(doc), "idx": \#(idx), "label": 0, "request": {"context": "Question: what is it?\nAnswer:", "continuation": "\#(cont)"}}"#
        }
        try ([line(0, 0, " a cat."), line(0, 1, " a dog."), line(1, 0, " it."), line(1, 1, " a cat.")].joined(separator: "\n"))
            .write(to: dir.appendingPathComponent("piqa.jsonl"), atomically: true, encoding: .utf8)
        let json = dir.appendingPathComponent("scores.json")
        let r = try run(["eval", "zero-shot", "--model", model.path, "--tasks", "piqa", "--data-dir", dir.path, "--json", json.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("| piqa | 2 |"), r.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: json.path))
    }
}

/// Training runs that must not give wrong results with exit code 0 (issue: resume, finished runs, binary corpora).
final class TrainingRunCLITests: XCTestCase {
    var cli: BitNetExecutable!

    override func setUpWithError() throws { cli = try BitNetExecutable() }

    /// A small text of `lines` numbered lines in one of two vocabularies, so two corpora really differ.
    func corpus(_ dir: URL, _ name: String, words: [String], lines: Int = 400) throws -> String {
        var text = ""
        for i in 0..<lines { text += "\(words[i % words.count]) \(words[(i * 7 + 3) % words.count]) line \(i) of \(name).\n" }
        let url = dir.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url.path
    }

    func train(_ data: String, _ out: URL, _ extra: [String] = []) throws -> (status: Int32, stdout: String, stderr: String) {
        try cli.run(["train", "--data", data, "--out", out.path, "--size", "tiny", "--vocab-size", "300", "--context", "16",
                     "--batch", "2", "--steps", "6", "--warmup", "1", "--eval-every", "3", "--checkpoint-every", "3"] + extra)
    }

    /// A folder trained on text A refuses to resume on text B: the error names the data, offers --no-resume and
    /// another --out, and nothing in the folder changes (tokenizer.json included); --no-resume trains on B.
    func testResumeRefusesAnotherCorpus() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try corpus(dir, "a.txt", words: ["Romeo", "Juliet", "Verona", "night", "balcony"])
        let b = try corpus(dir, "b.txt", words: ["electron", "proton", "neutron", "quark", "gluon"])
        let out = dir.appendingPathComponent("run")
        XCTAssertEqual(try train(a, out).status, 0)
        let files = ["tokenizer.json", "model.safetensors", "checkpoint.safetensors", "log.csv"]
        let before = try files.map { try Data(contentsOf: out.appendingPathComponent($0)) }
        let r = try train(b, out)
        XCTAssertNotEqual(r.status, 0, r.stderr)
        for fragment in ["training data", "--no-resume", "--out", "tokenizer"] { XCTAssertTrue(r.stderr.contains(fragment), r.stderr) }
        XCTAssertEqual(try files.map { try Data(contentsOf: out.appendingPathComponent($0)) }, before, "a refused run changes nothing")
        // Another recipe is named field by field.
        let lr = try train(a, out, ["--lr", "0.01"])
        XCTAssertNotEqual(lr.status, 0)
        XCTAssertTrue(lr.stderr.contains("lr: 0.003 in the checkpoint, 0.01 now"), lr.stderr)
        XCTAssertEqual(try train(b, out, ["--no-resume"]).status, 0)
        XCTAssertNotEqual(try Data(contentsOf: out.appendingPathComponent("tokenizer.json")), before[0])
    }

    /// Re-running a finished run reports its stored figures (positive tokens/s and time) and rewrites nothing;
    /// --stop-after below the checkpoint's step does the same instead of reporting a negative rate.
    func testFinishedRunReportsItsStoredFigures() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try corpus(dir, "a.txt", words: ["Romeo", "Juliet", "Verona", "night", "balcony"])
        let out = dir.appendingPathComponent("run")
        let first = try train(a, out)
        XCTAssertEqual(first.status, 0, first.stderr)
        let log = try Data(contentsOf: out.appendingPathComponent("log.csv"))
        let model = try Data(contentsOf: out.appendingPathComponent("model.safetensors"))
        func figures(_ stderr: String) throws -> (loss: String, rate: Double) {
            let line = try XCTUnwrap(stderr.split(separator: "\n").first { $0.hasPrefix("done: ") }, stderr)
            let parts = line.split(separator: " ")
            let rate = try XCTUnwrap(parts.firstIndex(of: "tokens/s,").map { Double(parts[$0 - 1]) } ?? nil, String(line))
            return (String(parts[3]), rate)
        }
        let (loss, _) = try figures(first.stderr)
        for extra in [[], ["--stop-after", "3"]] {
            let again = try train(a, out, extra)
            XCTAssertEqual(again.status, 0, again.stderr)
            XCTAssertTrue(again.stderr.contains("already at step 6"), again.stderr)
            let (l, rate) = try figures(again.stderr)
            XCTAssertEqual(l, loss)
            XCTAssertGreaterThan(rate, 0, again.stderr)
            XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("log.csv")), log)
            XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("model.safetensors")), model)
        }
    }

    /// Every training preset's FFN is a multiple of 256, so a preset model exports to I2_S; a type whose block does not
    /// divide a row names the dimension, the multiple and the types that would store the model.
    func testPresetsExportAndBadTypesNameTheDimension() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        for name in ModelConfig.presetNames {
            let c = try XCTUnwrap(ModelConfig.preset(name, arch: .b158, vocabSize: 64, maxSeqLen: 64))
            XCTAssertEqual(c.ffnDim % 256, 0, name)
            for type in GGMLType.allCases {
                var o = GGUFModel.ExportOptions()
                o.type = type
                let fits = c.dim % type.blockSize == 0
                if fits { XCTAssertNoThrow(try GGUFModel.checkBlocks(c, o), "\(name) \(type.name)") }
                else { XCTAssertThrowsError(try GGUFModel.checkBlocks(c, o), "\(name) \(type.name)") }
            }
        }
        let a = try corpus(dir, "a.txt", words: ["Romeo", "Juliet", "Verona", "night", "balcony"])
        let out = dir.appendingPathComponent("run")
        XCTAssertEqual(try train(a, out).status, 0)
        let i2s = try cli.run(["convert", "--from", out.path, "--to", "gguf", "--type", "i2_s", "--out", dir.appendingPathComponent("m.gguf").path])
        XCTAssertEqual(i2s.status, 0, i2s.stderr)
        XCTAssertEqual(try cli.run(["generate", "--model", dir.appendingPathComponent("m.gguf").path, "--prompt", "Romeo",
                                    "--max-tokens", "4", "--temperature", "0"]).status, 0)
        let r = try cli.run(["convert", "--from", out.path, "--to", "gguf", "--type", "tq2_0", "--out", dir.appendingPathComponent("t.gguf").path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("rows of dim 128 weights are not a multiple of its block of 256"), r.stderr)
        XCTAssertTrue(r.stderr.contains("types that can store this model: f32, f16, q4_0, q8_0, bf16, i2_s"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("t.gguf").path))
        // A shape of the old presets (FFN 688) names ffn_dim, and I2_S is not among the types that fit.
        var old = try XCTUnwrap(ModelConfig.preset("small", arch: .b158, vocabSize: 64, maxSeqLen: 64))
        old.ffnDim = 688
        var o = GGUFModel.ExportOptions()
        o.type = .i2_s
        XCTAssertThrowsError(try GGUFModel.checkBlocks(old, o)) {
            XCTAssertTrue("\($0)".contains("rows of ffn_dim 688 weights are not a multiple of its block of 128; types that can store this model: f32, f16, bf16"), "\($0)")
        }
    }

    /// llama.cpp's spellings give the same output as the long ones; a negative number after a flag reaches its range
    /// check, and bad sampling values stop before anything is printed to standard output.
    func testLlamaCppFlagsAndSamplingValuesAreChecked() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try TestPaths.sharedFile("stories260K/stories260K.bin"), tok = try TestPaths.sharedFile("stories260K/tok512.bin")
        let long = try cli.run(["generate", "--model", model, "--tokenizer", tok, "--prompt", "Once", "--max-tokens", "8", "--temperature", "0"])
        let short = try cli.run(["generate", "-m", model, "--tokenizer", tok, "-p", "Once", "-n", "8", "--temp", "0"])
        XCTAssertEqual(long.status, 0, long.stderr)
        XCTAssertEqual(short.status, 0, short.stderr)
        XCTAssertEqual(short.stdout, long.stdout)
        XCTAssertTrue(long.stdout.hasPrefix("Once upon a time"), long.stdout)
        // Load, prompt and generation are timed apart, as llama.cpp does: "load S s | prompt 2 tokens in S s (R tok/s) |
        // generation 8 tokens in S s (R tok/s)" (BOS + "Once" is the prompt).
        let timing = try NSRegularExpression(pattern: #"load [0-9.]+ s \| prompt 2 tokens in [0-9.]+ s \([0-9.]+ tok/s\) \| generation 8 tokens in [0-9.]+ s \([0-9.]+ tok/s\)"#)
        XCTAssertNotNil(timing.firstMatch(in: long.stderr, range: NSRange(long.stderr.startIndex..., in: long.stderr)), long.stderr)
        // Without --seed a sampled run picks a random seed and prints it; passing it back repeats the text.
        let sampled = try cli.run(["generate", "-m", model, "--tokenizer", tok, "-p", "Once", "-n", "16"])
        let seedLine = try XCTUnwrap(sampled.stderr.split(separator: "\n").first { $0.hasPrefix("seed ") }, sampled.stderr)
        let seed = String(seedLine.split(separator: " ")[1])
        XCTAssertEqual(try cli.run(["generate", "-m", model, "--tokenizer", tok, "-p", "Once", "-n", "16", "--seed", seed]).stdout,
                       sampled.stdout)
        XCTAssertFalse(long.stderr.contains("seed "), "greedy decoding uses no seed and prints none")
        // Clamps are said, not silent.
        let long2 = try cli.run(["generate", "-m", model, "--tokenizer", tok, "-p", "Once", "-n", "600", "--temp", "0"])
        XCTAssertEqual(long2.status, 0, long2.stderr)
        XCTAssertTrue(long2.stderr.contains("note: 2 prompt tokens + --max-tokens 600 pass the model's context of 512 positions"), long2.stderr)
        let text = dir.appendingPathComponent("t.txt")
        try Data(String(repeating: "Once upon a time there was a dog. ", count: 40).utf8).write(to: text)
        let ppl = try cli.run(["eval", "perplexity", "--model", model, "--tokenizer", tok, "--data", text.path, "--context", "4096"])
        XCTAssertEqual(ppl.status, 0, ppl.stderr)
        XCTAssertTrue(ppl.stderr.contains("note: --context 4096 is beyond the model's 512 positions"), ppl.stderr)
        let threads = try cli.run(["generate", "-m", model, "--tokenizer", tok, "-n", "2"], environment: ["BITNET_THREADS": "abc"])
        XCTAssertTrue(threads.stderr.contains("note: BITNET_THREADS=abc is not a positive whole number"), threads.stderr)
        for (args, message) in [(["--temperature", "-1"], "--temperature must be 0 (greedy) or more, got -1"),
                                (["--max-tokens", "0"], "--max-tokens must be at least 1, got 0"),
                                (["--top-p", "-0.5"], "--top-p must be in (0, 1], got -0.5"),
                                (["--top-k", "-3"], "--top-k must be 0 (off) or more, got -3")] {
            let r = try cli.run(["generate", "-m", model, "--tokenizer", tok, "-p", "Once"] + args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
            XCTAssertEqual(r.stdout, "", "\(args): nothing on standard output")
        }
    }

    /// A directory where a file belongs and a text file where a model belongs each get a one-line message saying so.
    func testWrongKindsOfPathAreNamed() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = dir.appendingPathComponent("notes.txt")
        try Data("just some notes, not a model".utf8).write(to: text)
        try cli.expectFailure(["generate", "-m", text.path, "-p", "hi"],
                              mentions: "not a model: no GGUF magic, no safetensors header, not a llama2.c checkpoint")
        try cli.expectFailure(["train", "--data", dir.path, "--out", dir.appendingPathComponent("o").path],
                              mentions: "\(dir.path): it is a directory, not a file")
        // Writing where one cannot says "cannot write", and a file in the place of the output folder is left alone.
        try cli.expectFailure(["train", "--data", text.path, "--out", text.path], mentions: "cannot write \(text.path): it is a file, not a directory")
        XCTAssertEqual(try String(contentsOf: text, encoding: .utf8), "just some notes, not a model")
        let corpusFile = try corpus(dir, "a.txt", words: ["Romeo", "Juliet", "Verona", "night", "balcony"])
        try cli.expectFailure(["train", "--data", corpusFile, "--out", "/proc/bitnet-out", "--size", "tiny", "--vocab-size", "300",
                               "--context", "16", "--steps", "2"], mentions: "cannot write /proc/bitnet-out")
        // A misspelt subcommand is named with the nearest one.
        try cli.expectFailure(["generat", "-m", text.path], mentions: "unknown subcommand 'generat'; did you mean 'generate'?")
        try cli.expectFailure(["frobnicate"], mentions: "unknown subcommand 'frobnicate' (subcommands: train, compare, generate")
        // A port that is taken: a listener of our own holds it.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET); addr.sin_port = 0; addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        XCTAssertTrue(bound)
        let port = Int(UInt16(bigEndian: addr.sin_port))
        let model = try TestPaths.sharedFile("stories260K/stories260K.bin"), tok = try TestPaths.sharedFile("stories260K/tok512.bin")
        try cli.expectFailure(["serve", "-m", model, "--tokenizer", tok, "--port", "\(port)"], mentions: "port \(port) on 127.0.0.1 is in use")
    }

    /// `compare` says which model of how many it trains, and its progress lines carry the time left for all of them;
    /// the ETA of a line counts the work after its last step (the final evaluation).
    func testCompareShowsModelCountAndOverallETA() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try corpus(dir, "a.txt", words: ["Romeo", "Juliet", "Verona", "night", "balcony"], lines: 1200)
        let r = try cli.run(["compare", "--data", a, "--out", dir.appendingPathComponent("cmp").path, "--size", "tiny", "--vocab-size", "300",
                             "--context", "16", "--batch", "2", "--steps", "6", "--warmup", "1", "--eval-every", "3"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for fragment in ["== model 1 of 2: training bitnet-b1.58", "== model 2 of 2: training fp", "model 1 of 2: bitnet-b1.58 loss",
                         "| all 2 runs: ETA "] {
            XCTAssertTrue(r.stderr.contains(fragment), "\(fragment): \(r.stderr)")
        }
        var line = ProgressLine(total: 10, unit: "steps")
        XCTAssertEqual(line.remainingSeconds(done: 0, finalSeconds: 7), 7)
        line.update(done: 10)
        XCTAssertEqual(line.remainingSeconds(done: 10, finalSeconds: 3), 3, accuracy: 1e-9)
        XCTAssertGreaterThan(line.remainingSeconds(done: 5, finalSeconds: 3), 3)
    }

    /// `chat` takes the models `serve` takes: one without chat tokens (llama2.c's, or trained here) gets plain
    /// "User:"/"Assistant:" lines; asking it for LLaMA 3's template says what that needs and what to use instead.
    func testChatTakesModelsWithoutChatTokens() throws {
        let model = try TestPaths.sharedFile("stories260K/stories260K.bin"), tok = try TestPaths.sharedFile("stories260K/tok512.bin")
        let r = try cli.run(["chat", "-m", model, "--tokenizer", tok, "--message", "Tell me a story", "-n", "24", "--temp", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
        XCTAssertFalse(r.stdout.contains("User:"), r.stdout)
        try cli.expectFailure(["chat", "-m", model, "--tokenizer", tok, "--message", "Hi", "--template", "llama3"],
                              mentions: "use --template plain")
        let loaded = try ModelFile.loadInference(path: model, tokenizerPath: tok)
        XCTAssertEqual(ChatTemplate.choose(jinja: nil, tokenizer: loaded.tokenizer!, ffn: .swiglu), .plain)
        XCTAssertEqual(ChatTemplate.choose(jinja: "{{ '<|start_header_id|>' }}", tokenizer: loaded.tokenizer!, ffn: .swiglu), .llama3)
    }

    /// `compare`'s defaults are the demo's (its vocabulary and sample prompt), so the two commands train and sample alike.
    func testCompareDefaultsAreTheDemos() throws {
        let demo = try String(contentsOf: TestPaths.repoRoot.appendingPathComponent("scripts/demo.sh"), encoding: .utf8)
        let help = try cli.run(["compare", "--help"]).stdout.replacingOccurrences(of: "\n", with: " ")
            .replacingOccurrences(of: " +", with: " ", options: .regularExpression)
        XCTAssertTrue(demo.contains("--vocab-size 2048"), demo)
        XCTAssertTrue(demo.contains("BITNET_DEMO_PROMPT:-ROMEO.}"), demo)
        XCTAssertTrue(help.contains("Byte-level BPE vocabulary size (the demo's). (default: 2048)"), help)
        XCTAssertTrue(help.contains("Prompt of the generated samples (the demo's). (default: ROMEO.)"), help)
    }

    /// Files that are not UTF-8 text are refused as corpora, naming the file and the problem.
    func testBinaryCorpusIsRefused() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let gguf = TestPaths.fixtures.appendingPathComponent("formats/model-tq2_0.gguf").path
        try cli.expectFailure(["train", "--data", gguf, "--out", dir.appendingPathComponent("g").path], mentions: "not UTF-8 text")
        let nul = dir.appendingPathComponent("nul.txt")
        try Data("some text\u{0}more text".utf8).write(to: nul)
        try cli.expectFailure(["train", "--data", nul.path, "--out", dir.appendingPathComponent("n").path], mentions: "NUL byte")
        XCTAssertEqual(FileIO.notText(Data("héllo — ✓ 𝄞".utf8)), nil)
        XCTAssertEqual(FileIO.notText(Data([0x61, 0xC3, 0x28, 0x62])), "not UTF-8 text: 1 invalid byte sequence, the first at byte 1")
        XCTAssertEqual(FileIO.notText(Data([0xED, 0xA0, 0x80])), "not UTF-8 text: 3 invalid byte sequences, the first at byte 0")   // a surrogate
        XCTAssertEqual(FileIO.notText(Data([0xF0, 0x9F, 0x98])), "not UTF-8 text: 3 invalid byte sequences, the first at byte 0")   // cut short
        // Scoring text goes through the same check.
        let model = try TestPaths.sharedFile("stories260K/stories260K.bin"), tok = try TestPaths.sharedFile("stories260K/tok512.bin")
        try cli.expectFailure(["eval", "perplexity", "--model", model, "--tokenizer", tok, "--data", gguf], mentions: "not UTF-8 text")
    }

    /// Defaults that name files (shared corpora, zero-shot cache, the PyTorch oracle) are found from the executable's
    /// checkout, so they are the same from any directory; `BITNET_DATA_DIR` overrides the shared folder.
    func testDefaultPathsDoNotDependOnTheCurrentDirectory() throws {
        let elsewhere = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: elsewhere) }
        func defaultShown(_ args: [String], option: String, environment: [String: String] = [:]) throws -> String {
            let help = try cli.run(args + ["--help"], environment: environment, in: elsewhere).stdout
            // The option's own entry under OPTIONS (not the usage line), joined across its wrapped lines.
            guard let options = help.range(of: "OPTIONS:"), let at = help.range(of: "  \(option) <", range: options.upperBound..<help.endIndex) else {
                XCTFail("no \(option) in \(help)"); return ""
            }
            let entry = String(help[at.upperBound...]).replacingOccurrences(of: "\n", with: " ")
                .replacingOccurrences(of: " +", with: " ", options: .regularExpression)
            guard let d = entry.range(of: "(default: "), let end = entry.range(of: ")", range: d.upperBound..<entry.endIndex) else {
                XCTFail("no default shown for \(option): \(entry)"); return ""
            }
            return String(entry[d.upperBound..<end.lowerBound])
        }
        let root = TestPaths.repoRoot.resolvingSymlinksInPath()
        let wiki = try defaultShown(["eval", "wikitext"], option: "--data")
        XCTAssertTrue(wiki.hasPrefix("/") && wiki.hasSuffix("/wikitext-2/valid.txt"), wiki)
        if FileManager.default.fileExists(atPath: TestPaths.repoRoot.appendingPathComponent("../shared/data").path) {
            XCTAssertTrue(FileManager.default.fileExists(atPath: wiki), "\(wiki) from \(elsewhere.path)")
        }
        let zeroShot = try defaultShown(["eval", "zero-shot"], option: "--data-dir")
        XCTAssertEqual(zeroShot, root.appendingPathComponent("data-cache/zero-shot").path)
        XCTAssertEqual(try defaultShown(["reproduce"], option: "--zero-shot-dir"), zeroShot)
        XCTAssertEqual(try defaultShown(["reproduce"], option: "--data-dir", environment: ["BITNET_DATA_DIR": "/data/corpora"]), "/data/corpora")
        XCTAssertEqual(DefaultPaths.checkout(above: cli.url.resolvingSymlinksInPath())?.path, root.path)
        XCTAssertEqual(DefaultPaths.oraclePython, root.appendingPathComponent(".venv-oracle/bin/python").path)
    }

    /// On a full disk (here a file-size limit, `ulimit -f`) a checkpoint fails as a whole: the error says "cannot
    /// write" with the path and the OS's reason, and the folder stays at its last step (model, checkpoint and log
    /// alike). A resume removes the temporary files a killed run left behind.
    func testFullDiskLeavesTheLastCheckpointWhole() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try corpus(dir, "a.txt", words: ["Romeo", "Juliet", "Verona", "night", "balcony"])
        let out = dir.appendingPathComponent("run")
        XCTAssertEqual(try train(a, out, ["--stop-after", "3"]).status, 0)
        let files = ["model.safetensors", "checkpoint.safetensors", "log.csv", "loss.svg", "tokenizer.json"]
        let before = try files.map { try Data(contentsOf: out.appendingPathComponent($0)) }
        XCTAssertLessThan(before[0].count, 2048 * 1024, "the model file fits under the limit")
        XCTAssertGreaterThan(before[1].count, 2048 * 1024, "the checkpoint does not")
        let deadPid = pidOfNoProcess()
        let stale = out.appendingPathComponent(".checkpoint.safetensors.tmp-\(deadPid)")
        try Data("left by a killed run".utf8).write(to: stale)

        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "ulimit -f 2048 && exec \"$0\" \"$@\"", cli.url.path, "train", "--data", a, "--out", out.path, "--size", "tiny",
                       "--vocab-size", "300", "--context", "16", "--batch", "2", "--steps", "6", "--warmup", "1", "--eval-every", "3",
                       "--checkpoint-every", "3"]
        let err = Pipe()
        p.standardError = err; p.standardOutput = FileHandle.nullDevice
        try p.run()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .exit, "no signal (SIGXFSZ) kills it")
        XCTAssertNotEqual(p.terminationStatus, 0, stderr)
        XCTAssertTrue(stderr.contains("cannot write \(out.path)/checkpoint.safetensors: File too large"), stderr)
        XCTAssertTrue(stderr.contains("removed 1 temporary file(s)"), stderr)
        XCTAssertEqual(try files.map { try Data(contentsOf: out.appendingPathComponent($0)) }, before, "the folder is still at step 3")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.path).sorted(), files.sorted(), "no temporary file stays")
        // Without the limit the same command finishes from step 3.
        let r = try train(a, out)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("resuming"), r.stderr)
    }

    /// An output that is a device is written in place, never replaced by a regular file.
    func testDeviceOutputIsWrittenInPlace() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let w = ModelWeights(config: tinyConfig(.b158), seed: 5)
        let model = dir.appendingPathComponent("m.safetensors")
        try ModelFile.save(w, tokenizer: nil, to: model)
        let r = try cli.run(["logits", "--model", model.path, "--tokens", "1,5,30", "--out", "/dev/null"])
        XCTAssertEqual(r.status, 0, r.stderr)
        var st = stat()
        XCTAssertEqual(lstat("/dev/null", &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFCHR)
        try cli.expectFailure(["logits", "--model", model.path, "--tokens", "1,5,30", "--out", "/dev/full"],
                              mentions: "cannot write /dev/full: No space left on device")
    }

    /// `compare --seeds 2` trains each variant twice (seeds 1234, 1235, folders seed-S) and reports mean ± sd and the
    /// gap's interval computed from the per-seed losses it prints.
    func testCompareOverSeeds() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = try corpus(dir, "a.txt", words: ["Romeo", "Juliet", "Verona", "night", "balcony"])
        let out = dir.appendingPathComponent("cmp")
        let r = try cli.run(["compare", "--data", a, "--out", out.path, "--size", "tiny", "--vocab-size", "300", "--context", "16",
                             "--batch", "2", "--steps", "4", "--warmup", "1", "--eval-every", "2", "--checkpoint-every", "2", "--seeds", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("## Over 2 seeds (1234, 1235)"), r.stdout)
        // Progress counts the models of every seed, and the time left covers them all.
        XCTAssertTrue(r.stderr.contains("== model 3 of 4: training bitnet-b1.58"), r.stderr)
        XCTAssertTrue(r.stderr.contains("model 1 of 4: bitnet-b1.58") && r.stderr.contains("all 4 runs: ETA"), r.stderr)
        for seed in ["seed-1234", "seed-1235"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("\(seed)/bitnet-b1.58/model.safetensors").path), seed)
        }
        // The per-seed losses it prints give its mean and gap.
        guard let line = r.stdout.split(separator: "\n").first(where: { $0.hasPrefix("| held-out loss per seed |") }) else { return XCTFail(r.stdout) }
        let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let q = cells[1].split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces))! }
        let f = cells[2].split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces))! }
        XCTAssertEqual(q.count, 2)
        let gap = ((q[0] - f[0]) + (q[1] - f[1])) / 2
        XCTAssertTrue(r.stdout.contains(String(format: "gap bitnet-b1.58 − fp: %+.4f nats", gap)) || r.stdout.contains(String(format: "%+.4f nats", gap + 0.00005))
                      || r.stdout.contains(String(format: "%+.4f nats", gap - 0.00005)), r.stdout)
        XCTAssertTrue(try String(contentsOf: out.appendingPathComponent("report.md"), encoding: .utf8).contains("Rule, fixed before the runs"))
        try cli.expectFailure(["compare", "--data", a, "--out", out.path, "--seeds", "0"], mentions: "--seeds must be in 1...50")
    }
}
