import ArgumentParser
import BitNet
import BitNetKernels
import Foundation
import BitNetTools

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks: inference (default), training vs PyTorch, GEMM.",
        subcommands: [InferenceBench.self, TrainBench.self, GemmBench.self, ThreadsBench.self, HeadKernelBench.self, ServeBench.self],
        defaultSubcommand: InferenceBench.self)

    struct InferenceBench: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "inference",
            abstract: "Decode/prefill tokens/s, time to first token, peak RSS and roofline fraction; ternary vs its f16 twin.")
        @Option(help: "A model file or directory (otherwise a synthetic model of --preset or the shape flags).") var model: String?
        @Option(help: "Synthetic shape preset: 2b4t (BitNet b1.58 2B4T) or a training size preset (tiny, small, 10m, ...).") var preset: String = "2b4t"
        @Option(help: "Threads (default: all cores; same as BITNET_THREADS).") var threads: Int?
        @Option(help: "Output head and embedding format for the ternary model: f32, f16, q8, q6 or q4.") var head: String = "q8"
        @Option(name: .customLong("ternary-layout"), help: ternaryLayoutHelp) var ternaryLayout: String = "auto"
        @Option(name: .customLong("decode-tokens"), help: "Tokens to decode.") var decodeTokens: Int = 32
        @Option(help: "Decode after a random prompt of this many tokens (the KV cache depth the decode steps attend over, as llama-bench -d); 0 = from the first position.")
        var context: Int = 0
        @Option(name: .customLong("context-sweep"), help: "Decode --decode-tokens steps at each of these KV cache depths (ascending, e.g. 0,512,1024,2048), for each format of --kv-cache (a list here, e.g. f32,f16,q8): decode tok/s and attention ms/token per depth.")
        var contextSweep: String?
        @Option(help: "With --context-sweep: also draw decode tok/s against the depth, one line per KV cache format, as an SVG file.")
        var plot: String?
        @Option(help: "Prompt lengths for prefill, comma-separated.") var prompts: String = "128,512"
        @Flag(name: .customLong("no-twin"), help: "Skip the f16 fp twin.") var noTwin = false
        @Option(name: .customLong("kv-cache"), help: "KV cache storage: f16 (the tools' default), f32, q8 or q4 (with --context-sweep, a comma-separated list).") var kvCache: String = "f16"
        @Flag(help: "Print JSON.") var json = false
        @Option(name: .customLong("repeat"), help: "Run the ternary model's benchmark this many times in one process (bandwidth probes around each run) and report every run and the medians; the rest of the report uses the run with the median decode rate.")
        var repeatCount: Int = 1
        @Option(name: .customLong("paired-steps"), help: "Also take the roofline step by step: this many decode steps, each between two read passes of 256 MB, so both sides of each ratio share the moment's memory bandwidth (median and quartiles); default --decode-tokens x --repeat, 0 = off.")
        var pairedSteps: Int?
        @Flag(help: "Also print where a decode step's time goes: ms/token and weight GB/s per phase of the forward pass.") var profile = false
        @Option(name: .customLong("compare-chunks"), help: "A/B test: decode alternately with these row splits (e.g. 16,16g,16u,4: chunks per thread; default lanes, g = guided, u = uniform), 5 rounds, medians.")
        var compareChunks: String?
        @Option(name: .customLong("compare-spin"), help: "A/B test: decode alternately with the pool's idle threads spinning these many microseconds before sleeping (e.g. 20,1000), 5 rounds, medians.")
        var compareSpin: String?
        @Option(name: .customLong("compare-prefetch"), help: "A/B test: decode alternately with idle pool threads prefetching this many KiB of the next GEMV's first weights per thread (e.g. 0,256; 0 = off), 5 rounds, medians.")
        var comparePrefetch: String?
        @Option(name: .customLong("compare-layout"), help: "A/B test: decode alternately with the ternary linears in these layouts (e.g. t2,t3; both kept in memory), 5 rounds, medians.")
        var compareLayout: String?
        @Option(name: .customLong("compare-pages"), help: "A/B test: decode alternately with the weights on these page sizes (4k, 2m: transparent huge pages; both copies kept in memory), 5 rounds, medians.")
        var comparePages: String?

        /// Decodes with the variants' settings taking turns step by step (5 sessions of `decode-tokens` steps per
        /// variant, in one process: this VM's speed drifts within seconds, so the variants share every drift) and
        /// prints each variant's median step rate against the first variant's.
        /// With `prefillTokens`, each round also prefills a prompt of that many tokens once per variant, in turn.
        private func alternateDecode(_ model: InferenceModel, _ variants: [(label: String, apply: () -> Void)], kvCache: KVCacheFormat,
                                     prefillTokens: Int? = nil) throws {
            let positions = max(decodeTokens * variants.count + 2, prefillTokens ?? 0)
            guard positions <= model.config.maxSeqLen else {
                throw BitNetError.invalidArgument("\(variants.count) variants of --decode-tokens \(decodeTokens) need \(positions) positions; the model has \(model.config.maxSeqLen)")
            }
            var seconds = [[Double]](repeating: [], count: variants.count)
            var prefillSeconds = [[Double]](repeating: [], count: variants.count)
            let vocab = model.config.vocabSize
            for round in 0..<5 {
                let session = try InferenceSession(model: model, maxSeqLen: positions, kvCache: kvCache)
                if let prefillTokens {
                    let prompt = (0..<prefillTokens).map { (round * 7919 + $0 * 104729) % vocab }
                    for v in variants.indices {
                        variants[v].apply()
                        session.reset()
                        let t0 = Clock.now()
                        _ = try session.prefill(tokens: prompt)
                        prefillSeconds[v].append(Clock.now() - t0)
                    }
                    session.reset()
                }
                var token = (round * 7919) % vocab
                token = Sampler.argmax(try session.step(token: token))   // warm-up
                for i in 0..<decodeTokens * variants.count {
                    let v = i % variants.count
                    variants[v].apply()
                    let t0 = Clock.now()
                    token = Sampler.argmax(try session.step(token: token))
                    seconds[v].append(Clock.now() - t0)
                }
                let line = zip(variants, seconds).map { String(format: "%@ %.2f", $0.label, 1 / median(Array($1.suffix(decodeTokens)))) }
                printError("round \(round + 1) (tok/s, median step): " + line.joined(separator: ", "))
            }
            let rates = seconds.map { 1 / median($0) }
            for (v, r) in zip(variants, rates) {
                print(String(format: "%@: decode %.2f tok/s (median of %d interleaved steps; %.2fx the first)", v.label, r, 5 * decodeTokens, r / rates[0]))
            }
            if let prefillTokens {
                let rates = prefillSeconds.map { Double(prefillTokens) / median($0) }
                for (v, r) in zip(variants, rates) {
                    print(String(format: "%@: prefill %d %.1f tok/s (median of 5 alternating prompts; %.2fx the first)", v.label, prefillTokens, r, r / rates[0]))
                }
            }
        }

        /// The A/B variants of a --compare-* option listing whole numbers ≥ 0 (e.g. "20,2000"), each made by `make`.
        private func wholeNumberVariants(_ list: String, option: String, unit: String,
                                         _ make: (Int) -> (String, () -> Void)) throws -> [(label: String, apply: () -> Void)] {
            try list.split(separator: ",").map { s in
                guard let v = Int(s), v >= 0 else { throw BitNetError.invalidArgument("\(option): '\(s)' is not a whole number of \(unit)") }
                return make(v)
            }
        }

        private func median(_ v: [Double]) -> Double {
            let s = v.sorted()
            return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }

        /// Prints (or writes as JSON) a context sweep, and draws it when --plot names a file.
        private func reportContextSweep(_ points: [InferenceBenchmark.ContextPoint], linears: String) throws {
            if let plot {
                let formats = points.map(\.kvCache).reduce(into: [KVCacheFormat]()) { if !$0.contains($1) { $0.append($1) } }
                let series = formats.map { f in
                    SVGPlot.Series(name: "KV cache \(f.rawValue)", points: points.filter { $0.kvCache == f }.map { (Double($0.context), $0.decodeTokensPerSecond) })
                }
                let svg = SVGPlot.lineChart(title: "Decode speed vs KV cache depth (\(linears) linears, \(ThreadPool.shared.threadCount) threads)",
                                            xLabel: "cached positions before decoding", yLabel: "decode tokens/s", series: series)
                try FileIO.writeAtomically(svg, to: URL(fileURLWithPath: plot))
            }
            if json {
                let rows: [[String: Any]] = points.map {
                    ["kv_cache": $0.kvCache.rawValue, "context": $0.context, "decode_tokens_per_s": $0.decodeTokensPerSecond,
                     "attention_ms_per_token": $0.attentionSecondsPerToken * 1e3]
                }
                let obj: [String: Any] = ["threads": ThreadPool.shared.threadCount, "ternary_layout": linears, "decode_tokens": decodeTokens,
                                          "context_sweep": rows]
                print(String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self))
                return
            }
            print("decode vs KV cache depth (\(linears) linears, \(ThreadPool.shared.threadCount) threads, \(decodeTokens) steps per depth)")
            print("kv cache   context   decode tok/s   attention ms/token")
            for p in points {
                print(String(format: "%-8@ %9d %14.2f %20.3f", p.kvCache.rawValue as NSString, p.context, p.decodeTokensPerSecond,
                             p.attentionSecondsPerToken * 1e3))
            }
            if let plot { print("plot: \(plot)") }
        }

        func run() throws {
            if let threads { setenv("BITNET_THREADS", "\(max(threads, 1))", 1) }
            try runReportingErrors {
                guard let headFormat = HeadFormat(rawValue: head) else { throw BitNetError.invalidArgument("--head must be f32, f16, q8, q6 or q4") }
                let promptLengths = try prompts.split(separator: ",").map { s -> Int in
                    guard let v = Int(s), v > 0 else { throw BitNetError.invalidArgument("--prompts: '\(s)' is not a positive integer") }
                    return v
                }
                guard decodeTokens > 0 else { throw BitNetError.invalidArgument("--decode-tokens must be positive") }
                guard (1...100).contains(repeatCount) else { throw BitNetError.invalidArgument("--repeat must be between 1 and 100") }
                guard (pairedSteps ?? 0) >= 0 else { throw BitNetError.invalidArgument("--paired-steps must be >= 0") }
                let sweepDepths = try contextSweep.map { list in
                    try list.split(separator: ",", omittingEmptySubsequences: false).map { s -> Int in
                        guard let v = Int(s), v >= 0 else { throw BitNetError.invalidArgument("--context-sweep: '\(s)' is not a depth (an integer >= 0)") }
                        return v
                    }
                }
                if plot != nil && sweepDepths == nil { throw BitNetError.invalidArgument("--plot draws a --context-sweep; add --context-sweep") }
                guard context >= 0 else { throw BitNetError.invalidArgument("--context must be >= 0, got \(context)") }
                // One format, or with --context-sweep a list (an empty entry is named as an unknown format).
                let kvFormats = try sweepDepths == nil ? [parseKVCacheFormat(kvCache)]
                    : kvCache.split(separator: ",", omittingEmptySubsequences: false).map { try parseKVCacheFormat(String($0)) }
                let kv = kvFormats[0]
                // The roofline: the best read rate of probes before and after the decode (this VM's varies by run).
                // Peak RSS of the model's work, without the probes' 512 MB buffers: the peak is sampled before each
                // probe and reset after it (where /proc/self/clear_refs allows; else the figure includes them).
                var peakOutsideProbes = 0, probesExcluded = true
                func probeBandwidth() -> Double {
                    peakOutsideProbes = max(peakOutsideProbes, ProcessMemory.peakRSSBytes())
                    let b = MemoryBandwidth.measure(bytes: 512 << 20, repetitions: 5)
                    if !ProcessMemory.resetPeakRSS() { probesExcluded = false }
                    return b
                }
                let bandwidthBefore = probeBandwidth()
                peakOutsideProbes = 0
                // The model under test: a trained file, or a synthetic ternary model of the preset's shape.
                var config: ModelConfig
                var ternary: InferenceModel
                let t0 = Clock.now()
                if let model {
                    ternary = try ModelFile.loadInference(path: model, headFormat: headFormat, preferBase3: ternaryLayout != "t2").model
                    config = ternary.config
                } else {
                    config = try presetConfig(preset)
                    // Room for the prompts, or for every --compare-* variant's steps in one session.
                    let variants = [compareChunks, compareSpin, comparePrefetch, compareLayout, comparePages].compactMap { $0?.split(separator: ",").count }.max() ?? 1
                    config.maxSeqLen = max(config.maxSeqLen, (promptLengths.max() ?? 0) + decodeTokens + 2, decodeTokens * variants + 2,
                                           context + decodeTokens + 2, (sweepDepths?.max() ?? 0) + decodeTokens + 1)
                    ternary = try InferenceModel(synthetic: config, headFormat: headFormat, preferBase3: ternaryLayout != "t2")
                }
                try ternary.setHeadFormat(headFormat)
                let layout = try applyTernaryLayout(ternaryLayout, to: ternary)
                printError(String(format: "model ready in %.1fs: %@ dim %d, %d layers, %d/%d heads, ffn %d, vocab %d; %.0f MB of weights, head %@, linears %@",
                                  Clock.now() - t0, config.arch.rawValue, config.dim, config.nLayers, config.nHeads, config.nKVHeads,
                                  config.ffnDim, config.vocabSize, Double(ternary.inferenceBytes) / 1e6, head, layout.rawValue))
                if let sweepDepths {
                    let points = try InferenceBenchmark.contextSweep(model: ternary, contexts: sweepDepths, formats: kvFormats, decodeTokens: decodeTokens)
                    try reportContextSweep(points, linears: layout.rawValue)
                    return
                }
                if let compareChunks {
                    // "16" = lanes of 16 chunks per thread; "16g" = guided (big chunks, then 16 per thread); "16u" = uniform.
                    let variants = try compareChunks.split(separator: ",").map { s -> (String, () -> Void) in
                        let mode: ThreadPool.SplitMode = s.hasSuffix("u") ? .uniform : s.hasSuffix("g") ? .guided : .lanes
                        guard let v = Int(mode == .lanes ? s : s.dropLast()), v > 0 else {
                            throw BitNetError.invalidArgument("--compare-chunks: '\(s)' is not a positive integer (optionally followed by g or u)")
                        }
                        return ("split \(s) (\(mode.rawValue), \(v) chunks per thread)", { ThreadPool.chunksPerThread = v; ThreadPool.splitMode = mode })
                    }
                    // Splits cut the prompt GEMMs too: a prompt of the first --prompts length alternates as well.
                    try alternateDecode(ternary, variants, kvCache: kv, prefillTokens: promptLengths.first)
                    return
                }
                if let compareSpin {
                    let variants = try wholeNumberVariants(compareSpin, option: "--compare-spin", unit: "microseconds") { us in
                        ("spin \(us) us", { ThreadPool.shared.spinMicroseconds = us })
                    }
                    try alternateDecode(ternary, variants, kvCache: kv)
                    return
                }
                if let comparePrefetch {
                    let variants = try wholeNumberVariants(comparePrefetch, option: "--compare-prefetch", unit: "KiB") { kb in
                        (kb == 0 ? "idle prefetch off" : "idle prefetch \(kb) KiB", { ThreadPool.shared.idlePrefetchBytes = kb * 1024 })
                    }
                    try alternateDecode(ternary, variants, kvCache: kv)
                    return
                }
                if let compareLayout {
                    let layouts = try compareLayout.split(separator: ",").map { s -> TernaryLayout in
                        guard let l = TernaryLayout(rawValue: String(s)) else {
                            throw BitNetError.invalidArgument("--compare-layout: '\(s)' is not a ternary layout (use \(TernaryLayout.allCases.map(\.rawValue).joined(separator: ", ")))")
                        }
                        return l
                    }
                    ternary.keepTernaryLayouts(layouts)
                    let model = ternary
                    // The layouts differ in the prefill GEMM too: a prompt of the first --prompts length alternates as well.
                    try alternateDecode(ternary, layouts.map { l in ("linears \(l.rawValue)", { model.setTernaryLayout(l) }) }, kvCache: kv,
                                        prefillTokens: promptLengths.first)
                    return
                }
                if let comparePages {
                    let sizes = try comparePages.split(separator: ",").map { s -> Bool in
                        switch s.lowercased() {
                        case "4k": return false
                        case "2m": return true
                        default: throw BitNetError.invalidArgument("--compare-pages: '\(s)' is not a page size (use 4k or 2m)")
                        }
                    }
                    // One copy of the weights per page size, each in arenas of its own.
                    let placements = sizes.map { huge -> InferenceModel.Placement in
                        ternary.placeWeights(hugePages: huge, moveArenas: true)
                        let stats = ternary.arenaStats
                        printError(String(format: "%@ pages: %.0f MB of weights in arenas, %.0f MB of them on huge pages", huge ? "2m" : "4k",
                                          Double(stats.bytes) / 1e6, Double(stats.hugePageBytes) / 1e6))
                        return ternary.placement
                    }
                    let model = ternary
                    try alternateDecode(ternary, zip(sizes, placements).map { huge, p in (huge ? "2 MiB pages" : "4 KiB pages", { model.restore(p) }) },
                                        kvCache: kv, prefillTokens: promptLengths.first)
                    return
                }
                let pool0 = (ThreadPool.shared.stats, prefetched: ThreadPool.shared.idlePrefetchedBytes)
                // Each run: the benchmark between two bandwidth probes (its roofline uses the better one).
                var runs: [(result: InferenceBenchmark.Result, bandwidth: Double)] = []
                var probe = bandwidthBefore
                for i in 0..<repeatCount {
                    if i > 0 { probe = probeBandwidth() }
                    let r = try InferenceBenchmark.run(model: ternary, promptLengths: promptLengths, decodeTokens: decodeTokens, context: context,
                                                       kvCache: kv, profile: profile)
                    runs.append((r, max(probe, probeBandwidth())))
                }
                let repeats = RepeatSummary(runs: runs.map { ($0.result.decodeTokensPerSecond, $0.result.decodeMedianTokensPerSecond,
                                                              $0.result.prefillTokensPerSecond, $0.result.achievedBandwidth / $0.bandwidth) })
                let (a, bandwidth) = runs[repeats.medianRun]
                let phases = a.profile.map { p in DecodeProfile.Phase.allCases.map { ($0, p.secondsPerToken($0), ternary.bytesPerToken(in: $0)) } }
                let rss = probesExcluded ? max(peakOutsideProbes, ProcessMemory.peakRSSBytes()) : ProcessMemory.peakRSSBytes()
                let arena = ternary.arenaStats   // before the twin replaces the model
                // Where the peak goes: the weights by category, the KV cache of the largest session the bench opened,
                // and the rest (runtime, scratch, transient load buffers).
                let parts = ternary.weightBreakdown
                let kvPositions = max((promptLengths.max() ?? 0) + decodeTokens + 2, context + decodeTokens + 2)
                let kvBytes = min(kvPositions, config.maxSeqLen)
                    * KVCache.bytesPerPosition(format: kv, layers: config.nLayers, kvHeads: config.nKVHeads, headDim: config.headDim)
                let memory: [(String, Int)] = [("linears", parts.linears), ("embedding_and_head", parts.embeddingAndHead),
                                               ("norms", parts.norms), ("kv_cache", kvBytes),
                                               ("other", max(0, rss - parts.linears - parts.embeddingAndHead - parts.norms - kvBytes))]
                // The GEMVs alone, in turns with decode steps, for the profile's "alone".
                let chainDecoder = profile ? try InferenceBenchmark.TimedDecoder(model: ternary, maxSeqLen: min(config.maxSeqLen, 256), kvCache: kv) : nil
                var stepError: Error?
                let gemvChain = chainDecoder.flatMap { decoder in
                    InferenceBenchmark.gemvChain(model: ternary, tokens: 16) {
                        do { return try decoder.step() } catch { stepError = error; return 0 }
                    }
                }
                if let stepError { throw stepError }
                let steps = pairedSteps ?? decodeTokens * repeatCount
                let paired = steps > 0 ? try InferenceBenchmark.pairedRoofline(model: ternary, steps: steps, context: context, kvCache: kv) : nil
                let pool1 = (ThreadPool.shared.stats, prefetched: ThreadPool.shared.idlePrefetchedBytes)
                // Fixed widths: the line's length (hence the allocations that build it) must not depend on the token
                // count, or scripts/check_decode_allocs.sh would see it.
                printError(String(format: "thread pool: %9d parallel calls (%9d woke a blocked worker; caller waited %8.1f ms for the last tasks), %9d run serially by the oversubscription guard after %6d slow calls; idle workers prefetched %8.1f MB",
                                  pool1.0.parallelCalls - pool0.0.parallelCalls, pool1.0.wakeups - pool0.0.wakeups, (pool1.0.waitSeconds - pool0.0.waitSeconds) * 1e3,
                                  pool1.0.serialCalls - pool0.0.serialCalls, pool1.0.fallbacks - pool0.0.fallbacks, Double(pool1.prefetched - pool0.prefetched) / 1e6))
                var twin: InferenceBenchmark.Result?
                if !noTwin && model == nil && config.arch.isQuantized {
                    var fc = config
                    fc.arch = .fp
                    ternary = try InferenceModel(synthetic: fc, headFormat: .f16)   // frees the ternary model
                    printError(String(format: "f16 twin ready: %.0f MB of weights", Double(ternary.inferenceBytes) / 1e6))
                    twin = try InferenceBenchmark.run(model: ternary, promptLengths: promptLengths, decodeTokens: max(4, decodeTokens / 4), context: context,
                                                      kvCache: kv)
                }
                let roofline = a.achievedBandwidth / bandwidth
                if json {
                    var obj: [String: Any] = [
                        "arch": config.arch.rawValue, "threads": ThreadPool.shared.threadCount, "head": head, "ternary_layout": layout.rawValue, "kv_cache": kvCache, "decode_context": context,
                        "decode_tokens_per_s": a.decodeTokensPerSecond, "decode_median_tokens_per_s": a.decodeMedianTokensPerSecond,
                        "prefill_tokens_per_s": Dictionary(uniqueKeysWithValues: a.prefillTokensPerSecond.map { ("\($0.key)", $0.value) }),
                        "time_to_first_token_s": Dictionary(uniqueKeysWithValues: a.timeToFirstToken.map { ("\($0.key)", $0.value) }),
                        "peak_rss_bytes": rss, "memory_bytes": Dictionary(uniqueKeysWithValues: memory), "weight_bytes": a.weightBytes, "bytes_per_token": a.bytesPerToken,
                        "read_bandwidth_bytes_per_s": bandwidth, "achieved_bandwidth_bytes_per_s": a.achievedBandwidth,
                        "roofline_fraction": roofline, "arena_bytes": arena.bytes, "huge_page_bytes": arena.hugePageBytes]
                    if let paired {
                        obj["paired_roofline_fraction"] = paired.median
                        obj["paired_roofline_quartiles"] = [paired.quantile(0.25), paired.quantile(0.75)]
                        obj["paired_roofline_steps"] = paired.fractions.count
                        obj["paired_read_bandwidth_bytes_per_s"] = paired.medianPassRate
                    }
                    if repeatCount > 1 {
                        obj["runs"] = repeats.runs.map { r -> [String: Any] in
                            ["decode_tokens_per_s": r.decode, "decode_median_tokens_per_s": r.medianStep, "roofline_fraction": r.roofline,
                             "prefill_tokens_per_s": Dictionary(uniqueKeysWithValues: r.prefill.map { ("\($0.key)", $0.value) })]
                        }
                        obj["median_decode_tokens_per_s"] = repeats.median(\.decode)
                        obj["median_roofline_fraction"] = repeats.median(\.roofline)
                        obj["median_prefill_tokens_per_s"] = Dictionary(uniqueKeysWithValues: promptLengths.map { n in
                            ("\(n)", repeats.median { $0.prefill[n] ?? 0 }) })
                        let decodeStats = repeats.meanAndDeviation(\.decode)
                        obj["decode_tokens_per_s_mean"] = decodeStats.mean; obj["decode_tokens_per_s_sd"] = decodeStats.deviation
                    }
                    if let phases {
                        obj["decode_profile"] = Dictionary(uniqueKeysWithValues: phases.map { phase, sec, bytes in
                            var entry: [String: Any] = ["seconds_per_token": sec, "weight_bytes_per_token": bytes]
                            if let alone = gemvChain?.phaseSeconds[phase] { entry["gemv_alone_seconds_per_token"] = alone }
                            return ("\(phase)", entry) })
                        if let chain = gemvChain {
                            obj["gemv_alone_seconds_per_token"] = chain.secondsPerToken
                            obj["gemv_alone_interleaved_step_seconds"] = chain.interleavedSeconds
                        }
                    }
                    if let t = twin {
                        obj["f16_decode_tokens_per_s"] = t.decodeTokensPerSecond
                        obj["f16_weight_bytes"] = t.weightBytes
                        obj["decode_speedup_vs_f16"] = a.decodeTokensPerSecond / t.decodeTokensPerSecond
                        obj["memory_ratio_vs_f16"] = Double(t.weightBytes) / Double(a.weightBytes)
                        obj["f16_prefill_tokens_per_s"] = Dictionary(uniqueKeysWithValues: t.prefillTokensPerSecond.map { ("\($0.key)", $0.value) })
                    }
                    let d = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
                    print(String(decoding: d, as: UTF8.self))
                    return
                }
                func row(_ name: String, _ r: InferenceBenchmark.Result) {
                    var line = String(format: "%-14@ decode %7.2f tok/s (median step %7.2f)", name as NSString, r.decodeTokensPerSecond,
                                      r.decodeMedianTokensPerSecond)
                    for n in promptLengths.sorted() {
                        line += String(format: " | prefill %d: %6.1f tok/s, TTFT %.2fs", n, r.prefillTokensPerSecond[n] ?? 0, r.timeToFirstToken[n] ?? 0)
                    }
                    line += String(format: " | weights %.0f MB", Double(r.weightBytes) / 1e6)
                    print(line)
                }
                print("threads \(ThreadPool.shared.threadCount), GEMM \(GEMM.activeISA), ternary \(TernaryKernels.activeISA), dense \(DenseKernels.activeISA)"
                      + ", KV cache \(kvCache)" + (context > 0 ? ", decode after \(context) cached positions" : "")
                      + String(format: ", weights on 2 MiB pages: %.0f of %.0f MB", Double(arena.hugePageBytes) / 1e6, Double(a.weightBytes) / 1e6))
                if repeatCount > 1 {
                    func line(_ label: String, _ decode: Double, _ step: Double?, _ prefill: (Int) -> Double, _ roofline: Double) -> String {
                        var l = label.padding(toLength: 7, withPad: " ", startingAt: 0) + String(format: " decode %7.2f tok/s", decode)
                        if let step { l += String(format: " (median step %7.2f)", step) }
                        for n in promptLengths.sorted() { l += String(format: " | prefill %d: %6.1f tok/s", n, prefill(n)) }
                        return l + String(format: " | roofline %3.0f %%", 100 * roofline)
                    }
                    for (i, r) in repeats.runs.enumerated() { print(line("run \(i + 1)", r.decode, r.medianStep, { r.prefill[$0] ?? 0 }, r.roofline)) }
                    print(line("median", repeats.median(\.decode), repeats.median(\.medianStep), { n in repeats.median { $0.prefill[n] ?? 0 } },
                               repeats.median(\.roofline)) + "   (each a median over the runs on its own; rows below: run \(repeats.medianRun + 1))")
                    print(repeats.table(decodeTokens: decodeTokens, promptLengths: promptLengths))
                }
                row(config.arch.rawValue, a)
                if let t = twin { row("fp (f16)", t) }
                print("memory at peak: " + memory.map { String(format: "%@ %.0f MB", $0.0.replacingOccurrences(of: "_", with: " "), Double($0.1) / 1e6) }
                    .joined(separator: " + ") + String(format: " = %.0f MB", Double(rss) / 1e6))
                print(String(format: "peak RSS %.0f MB | read bandwidth %.1f GB/s | weights streamed %.1f GB/s = %.0f %% of roofline",
                             Double(rss) / 1e6, bandwidth / 1e9, a.achievedBandwidth / 1e9, 100 * roofline))
                if let paired {
                    print(String(format: "roofline step by step: median %.0f %% (quartiles %.0f-%.0f %%) of %d decode steps, each against the better of the read passes around it (median pass %.1f GB/s)",
                                 100 * paired.median, 100 * paired.quantile(0.25), 100 * paired.quantile(0.75), paired.fractions.count,
                                 paired.medianPassRate / 1e9))
                }
                if let phases, let p = a.profile {
                    print(String(format: "decode profile (%d steps, %.2f ms/token):", p.tokens, 1e3 * p.totalSecondsPerToken))
                    for (phase, sec, bytes) in phases {
                        var line = "  " + phase.name.padding(toLength: 14, withPad: " ", startingAt: 0) + String(format: " %7.3f ms/token %5.1f %%", 1e3 * sec, 100 * sec / max(p.totalSecondsPerToken, 1e-12))
                        if bytes > 0 { line += String(format: "  %6.1f MB at %5.1f GB/s = %3.0f %% of read bandwidth", Double(bytes) / 1e6, Double(bytes) / max(sec, 1e-12) / 1e9, 100 * Double(bytes) / max(sec, 1e-12) / bandwidth) }
                        if let alone = gemvChain?.phaseSeconds[phase] { line += String(format: " (alone %3.0f %%)", 100 * Double(bytes) / max(alone, 1e-12) / bandwidth) }
                        print(line)
                    }
                    if let chain = gemvChain?.secondsPerToken {
                        print(String(format: "  (alone: the same GEMVs with nothing in between, %.2f ms/token, %.1f GB/s = %.0f %% of read bandwidth)",
                                     1e3 * chain, Double(a.bytesPerToken) / chain / 1e9, 100 * Double(a.bytesPerToken) / chain / bandwidth))
                        if let step = gemvChain?.interleavedSeconds {
                            print(String(format: "  (in turns with 16 decode steps: step %.2f ms against its GEMVs alone %.2f ms, %.3fx: the rest of a step costs %.2f ms)",
                                         1e3 * step, 1e3 * chain, step / chain, 1e3 * (step - chain)))
                        }
                    }
                }
                if let t = twin {
                    print(String(format: "ternary / f16: decode %.2fx faster, weights %.2fx smaller", a.decodeTokensPerSecond / t.decodeTokensPerSecond,
                                 Double(t.weightBytes) / Double(a.weightBytes)))
                }
                print("""
                    how to read it: decode = decoded tokens / the decode loop's wall time; median step = 1 / the median time of one \
                    token's step (the shared host's hiccups move it less); prefill N = an N-token prompt's tokens / its time; \
                    roofline = the weight bytes a token reads x the decode rate / the read bandwidth probed around the run, so any \
                    slow moment of the host counts against it; step by step times each decode step between two read passes and \
                    divides by the better one, so both sides share the moment's bandwidth: when the two rooflines differ, the \
                    host was busy, and the step-by-step figure is the kernel's; peak RSS = the most memory the process held \
                    loading and running the model (\(probesExcluded ? "the bandwidth probes' 512 MB buffers excluded" : "including the bandwidth probes' 512 MB buffers: this kernel cannot reset the peak"))
                    """)
            }
        }

        func presetConfig(_ name: String) throws -> ModelConfig {
            guard let p = ModelPreset.named(name), p.family != .paper else {
                throw BitNetError.invalidArgument("unknown --preset \(name): use 2b4t or \(ModelConfig.presetNames.joined(separator: ", "))")
            }
            return p.config()
        }
    }

    struct TrainBench: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "train",
            abstract: "Training tokens/s and MFU of a model shape, and the same model trained by PyTorch (ratio in one run).")
        @Option(help: "bitnet-b1.58, bitnet-b1 or fp.") var arch: String = "bitnet-b1.58"
        @Option(help: "Size preset.") var size: String = "small"
        @Option(name: .customLong("vocab-size")) var vocabSize: Int = 1024
        @Option var batch: Int = 8
        @Option var context: Int = 128
        @Option var steps: Int = 10
        @Option(help: "Python with torch for the comparison (default: the checkout's .venv-oracle/bin/python if present).") var python: String?
        @Flag(name: .customLong("no-torch"), help: "Skip the PyTorch run.") var noTorch = false
        @Flag(help: "Print JSON.") var json = false
        @Option(name: .customLong("repeat"), help: "Alternate the two engines this many times; medians are reported.") var repeats: Int = 3

        /// One PyTorch run of the same model; nil when it fails.
        func runTorch(py: String, config c: ModelConfig, threads: Int) throws -> (Double, String)? {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: py)
            p.arguments = [DefaultPaths.torchReference, "train-bench", "--arch", c.arch.rawValue, "--vocab", "\(c.vocabSize)",
                           "--dim", "\(c.dim)", "--layers", "\(c.nLayers)", "--heads", "\(c.nHeads)", "--kv-heads", "\(c.nKVHeads)",
                           "--ffn-dim", "\(c.ffnDim)", "--ffn", c.ffn.rawValue, "--batch", "\(batch)", "--ctx", "\(context)",
                           "--steps", "\(steps)", "--threads", "\(threads)"]
            let pipe = Pipe()
            p.standardOutput = pipe
            try p.run()
            let out = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            guard let line = String(decoding: out, as: UTF8.self).split(separator: "\n").last(where: { $0.hasPrefix("{") }),
                  let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let tps = (obj["tokens_per_s"] as? NSNumber)?.doubleValue else { return nil }
            return (tps, "\(obj["torch_version"] ?? "?")")
        }

        func run() throws {
            try runReportingErrors {
                let a = try parseArch(arch)
                guard let c = ModelConfig.preset(size, arch: a, vocabSize: vocabSize, maxSeqLen: context) else {
                    throw BitNetError.invalidArgument("unknown --size \(size)")
                }
                let threads = ThreadPool.shared.threadCount
                let peak1 = TrainingBenchmark.measuredPeakGFLOPS(threads: nil)
                let peakN = TrainingBenchmark.measuredPeakGFLOPS()
                let py = python ?? DefaultPaths.oraclePython
                let useTorch = !noTorch && FileManager.default.fileExists(atPath: py)
                var torchNote = noTorch ? "skipped" : "no \(py); run scripts/setup_oracle.sh"
                // Alternate the two engines repeatCount times so machine noise hits both alike; report medians.
                var oursRuns: [TrainingBenchmark.Result] = [], torchRuns: [Double] = [], ratios: [Double] = []
                for r in 0..<max(repeats, 1) {
                    printError("[\(r + 1)/\(repeats)] bitnet-swift: \(a.rawValue) \(size) (\(c.parameterCount) params), batch \(batch)x\(context), \(steps) steps, \(threads) threads")
                    let o = TrainingBenchmark.run(config: c, batch: batch, seqLen: context, steps: steps)
                    oursRuns.append(o)
                    guard useTorch else { continue }
                    printError("[\(r + 1)/\(repeats)] PyTorch (\(py) \(DefaultPaths.torchReference) train-bench)")
                    if let (tps, version) = try runTorch(py: py, config: c, threads: threads) {
                        torchRuns.append(tps); ratios.append(o.tokensPerSecond / tps); torchNote = "torch \(version)"
                    } else { torchNote = "torch run failed" }
                }
                func median(_ v: [Double]) -> Double { let s = v.sorted(); return s.isEmpty ? .nan : s[s.count / 2] }
                let ours = oursRuns.sorted { $0.tokensPerSecond < $1.tokensPerSecond }[oursRuns.count / 2]
                let torchTPS: Double? = torchRuns.isEmpty ? nil : median(torchRuns)
                let mfuPeak = ours.achievedGFLOPS / peakN
                let mfuNominal = ours.achievedGFLOPS / (90 * Double(threads))
                if json {
                    var obj: [String: Any] = ["arch": a.rawValue, "params": c.parameterCount, "tokens_per_s": ours.tokensPerSecond,
                                              "step_seconds": ours.stepSeconds, "achieved_gflops": ours.achievedGFLOPS,
                                              "gemm_peak_gflops_1t": peak1, "gemm_peak_gflops": peakN, "mfu_vs_measured_gemm_peak": mfuPeak,
                                              "mfu_vs_90gflops_per_core": mfuNominal, "threads": threads]
                    if let t = torchTPS { obj["torch_tokens_per_s"] = t; obj["speedup_vs_torch"] = median(ratios); obj["repeats"] = repeats }
                    let d = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
                    print(String(decoding: d, as: UTF8.self))
                } else {
                    print(String(format: "bitnet-swift  %@ %@ params %d  batch %dx%d  threads %d", a.rawValue, size, c.parameterCount, batch, context, threads))
                    print(String(format: "  tokens/s            %.0f   (%.3f s/step)", ours.tokensPerSecond, ours.stepSeconds))
                    print(String(format: "  model GFLOP/s       %.1f   (%.2f GFLOP/token)", ours.achievedGFLOPS, ours.flopsPerToken / 1e9))
                    print(String(format: "  GEMM peak here      %.1f GFLOP/s 1 thread, %.1f GFLOP/s %d threads", peak1, peakN, threads))
                    print(String(format: "  MFU                 %.1f %% of measured GEMM peak, %.1f %% of 90 GFLOP/s/core", 100 * mfuPeak, 100 * mfuNominal))
                    if let t = torchTPS {
                        print(String(format: "PyTorch       tokens/s %.0f  (%@)", t, torchNote))
                        print(String(format: "ratio         bitnet-swift / PyTorch = %.2fx (median of %d alternating runs: %@)", median(ratios), ratios.count,
                                     ratios.map { String(format: "%.2f", $0) }.joined(separator: ", ")))
                    } else {
                        print("PyTorch       \(torchNote)")
                    }
                }
            }
        }
    }

    struct GemmBench: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "gemm", abstract: "f32 GEMM GFLOP/s on training shapes.")
        @Option var m: Int = 2048
        @Option var n: Int = 768
        @Option var k: Int = 256
        func run() throws {
            print("isa: \(GEMM.activeISA)")
            for (ta, tb, name) in [(false, true, "NT (forward)"), (false, false, "NN (dx)"), (true, false, "TN (dW)")] {
                let one = GEMM.benchmark(m: m, n: n, k: k, transA: ta, transB: tb, threads: nil, iterations: 5)
                let all = GEMM.benchmark(m: m, n: n, k: k, transA: ta, transB: tb, threads: .shared, iterations: 5)
                print(String(format: "%@ %dx%dx%d: %.1f GFLOP/s 1 thread, %.1f GFLOP/s %d threads", name, m, n, k, one.gflops, all.gflops, ThreadPool.shared.threadCount))
            }
        }
    }

    struct ThreadsBench: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "threads",
            abstract: "Thread pool under oversubscription: ternary GEMV rounds on 1 vs N threads, quiet and with busy threads competing.")
        @Option(help: "Pool threads (default: all cores).") var threads: Int?
        @Option(help: "Busy threads started to oversubscribe the machine (default: 2 per core).") var spinners: Int?
        @Option(help: "Matrix dimension of each layer.") var dim: Int = 2560
        @Option(help: "Alternations of the three pools (medians are reported).") var repeats: Int = 5
        func run() throws {
            try runReportingErrors {
                let threads = self.threads ?? ProcessInfo.processInfo.activeProcessorCount
                let spinners = self.spinners ?? 2 * ProcessInfo.processInfo.activeProcessorCount
                guard threads >= 2, spinners >= 1, dim >= 32, repeats >= 1 else {
                    throw BitNetError.invalidArgument("need --threads >= 2, --spinners >= 1, --dim >= 32, --repeats >= 1")
                }
                print("ternary GEMV \(dim)x\(dim), 8 layers per round, ms per round (medians of \(repeats)):")
                print("load | 1 thread | \(threads) threads, no guard | \(threads) threads, guarded | guarded vs 1 thread")
                for r in ThreadPoolBenchmark.run(threads: threads, dim: dim, repeats: repeats, spinners: spinners) {
                    print(String(format: "%@ | %.3f | %.3f | %.3f | %.2fx", r.label, r.serial * 1e3, r.unguarded * 1e3, r.guarded * 1e3, r.serial / r.guarded))
                }
            }
        }
    }

    struct HeadKernelBench: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "head",
            abstract: "Output-head GEMV GB/s (f16/q8/q6/q4) vs read bandwidth, and a batched GEMV vs one GEMV per token.")
        @Option var rows: Int = 128_256
        @Option var cols: Int = 2560
        @Option(help: "Tokens of the batched GEMV.") var tokens: Int = 16
        @Option(help: "Threads (default: all).") var threads: Int?
        @Option(help: "Comma-separated formats: f16,q8,q6,q4.") var formats: String = "f16,q8,q6,q4"
        @Option var repetitions: Int = 3
        func run() throws {
            let names = formats.split(separator: ",").map { String($0) }
            guard rows > 0, cols > 0, tokens > 0, repetitions > 0,
                  names.allSatisfy({ $0 == "f16" || BlockQuantFormat(rawValue: $0) != nil }) else {
                throw ValidationError("bench head: rows/cols/tokens/repetitions must be > 0 and formats among f16,q8,q6,q4")
            }
            let pool = threads.map { ThreadPool(threadCount: $0) } ?? .shared
            print("isa: \(DenseKernels.activeISA), threads: \(pool.threadCount), \(rows)x\(cols)")
            _ = HeadBench.run(rows: rows, cols: cols, tokens: tokens, repetitions: repetitions, formats: names, pool: pool) { print($0) }
        }
    }
}

/// The runs of `bench --repeat`: per-run decode rate, median-step rate, prefill rates and roofline fraction.
struct RepeatSummary {
    typealias Run = (decode: Double, medianStep: Double, prefill: [Int: Double], roofline: Double)
    let runs: [Run]

    /// The median over the runs of one value (the lower middle one for an even count).
    func median(_ value: (Run) -> Double) -> Double {
        let v = runs.map(value).sorted()
        return v[(v.count - 1) / 2]
    }

    /// Mean and sample standard deviation over the runs of one value (deviation 0 for a single run).
    func meanAndDeviation(_ value: (Run) -> Double) -> (mean: Double, deviation: Double) {
        let v = runs.map(value), mean = v.reduce(0, +) / Double(v.count)
        guard v.count > 1 else { return (mean, 0) }
        return (mean, (v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(v.count - 1)).squareRoot())
    }

    /// llama-bench's table: one row per test (tgN: decode N tokens, ppN: an N-token prompt), t/s as mean ± deviation.
    func table(decodeTokens: Int, promptLengths: [Int]) -> String {
        func row(_ test: String, _ value: (Run) -> Double) -> String {
            let (m, d) = meanAndDeviation(value)
            return "| \(test) | " + String(format: "%.2f ± %.2f", m, d) + " |"
        }
        return (["| test | t/s (mean ± sd over \(runs.count) runs) |", "|---|---:|", row("tg\(decodeTokens)", \.decode)]
                + promptLengths.sorted().map { n in row("pp\(n)", { $0.prefill[n] ?? 0 }) }).joined(separator: "\n")
    }

    /// Index of the run whose decode rate is the median (the lower middle one for an even count).
    var medianRun: Int {
        let order = runs.indices.sorted { runs[$0].decode < runs[$1].decode }
        return order[(order.count - 1) / 2]
    }
}
