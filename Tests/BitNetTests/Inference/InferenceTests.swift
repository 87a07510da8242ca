import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools
import BitNetKernels

final class InferenceTests: XCTestCase {
    /// Incremental decoding with the KV cache (integer BitLinear) gives the logits of the batched full forward.
    func testKVCacheMatchesFullForward() throws {
        // (arch, ffn, quant groups): one group takes the packed 2-bit integer kernel, two groups the grouped path.
        for (arch, ffn, groups) in [(Architecture.fp, FFNKind.swiglu, 1), (.b158, .relu2, 1), (.b1, .swiglu, 1), (.b158, .swiglu, 2)] {
            var c = tinyConfig(arch, ffn: ffn)
            c.actScopeTrain = .perToken
            c.quantGroups = groups
            let w = ModelWeights(config: c, seed: 3)
            let tokens = [1, 5, 9, 2, 30, 7, 7, 0, 36, 11]
            let g = TrainingGraph(weights: w, batch: 1, seqLen: tokens.count)
            g.forward(inputs: tokens, training: false)
            let full = g.logits.array
            let session = InferenceSession(model: InferenceModel(weights: w))
            var inc: [Float] = []
            for t in tokens { inc += Array(try session.step(token: t)) }
            let scale = full.map(abs).max()!
            XCTAssertLessThan(maxAbsDiff(full, inc) / scale, 1e-4, "\(arch) groups \(groups)")
        }
    }

    /// The unsigned-activation path (Sec. 3.1.1: min/max zero-point quantization of the FFN down projection's input,
    /// η of Eq. 15), with one and two quantization groups: step-by-step decoding and a batched prefill both give the
    /// training graph's logits, and each W2 holds its dequantized weights while the other linears keep their form.
    func testUnsignedActivationPathMatchesTrainingGraph() throws {
        for (arch, groups) in [(Architecture.b158, 1), (.b158, 2), (.b1, 1)] {
            var c = tinyConfig(arch, ffn: .relu2)
            c.actScopeTrain = .perToken
            c.quantGroups = groups
            c.unsignedAfterNonlinearity = true
            let w = ModelWeights(config: c, seed: 5)
            let tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5, 35]
            let g = TrainingGraph(weights: w, batch: 1, seqLen: tokens.count)
            g.forward(inputs: tokens, training: false)
            let full = g.logits.array, scale = full.map(abs).max()!
            let model = InferenceModel(weights: w)
            for layer in model.layers {
                guard case .unsignedDequant = layer.w2.weights else { return XCTFail("\(arch) groups \(groups): W2 is \(layer.w2.weights)") }
                switch (groups, layer.w1.weights) {
                case (1, .t2), (2, .groupedCodes): break
                default: XCTFail("\(arch) groups \(groups): W1 is \(layer.w1.weights)")
                }
            }
            let session = InferenceSession(model: model)
            var inc: [Float] = []
            for t in tokens { inc += Array(try session.step(token: t)) }
            XCTAssertLessThan(maxAbsDiff(full, inc) / scale, 1e-4, "\(arch) groups \(groups)")
            let prompt = InferenceSession(model: model)   // owns the logits the buffer points into
            let batched = try withExtendedLifetime(prompt) { Array(try prompt.prefill(tokens: tokens)) }
            XCTAssertLessThan(maxAbsDiff(Array(full.suffix(c.vocabSize)), batched) / scale, 1e-4, "\(arch) groups \(groups) prefill")
            // The zero point matters: the same weights with signed absmax activations give other logits.
            var signed = c
            signed.unsignedAfterNonlinearity = false
            let other = TrainingGraph(weights: ModelWeights(config: signed, seed: 5), batch: 1, seqLen: tokens.count)
            other.forward(inputs: tokens, training: false)
            XCTAssertGreaterThan(maxAbsDiff(full, other.logits.array) / scale, 1e-3, "\(arch) groups \(groups)")
        }
    }

    /// A chat whose history outgrows the context drops its oldest turns (never the system message), says how many,
    /// and still refuses a single message longer than the context.
    func testChatTrimsTheOldestTurnsToFitTheContext() throws {
        let tok = try Llama2cTokenizer(contentsOf: URL(fileURLWithPath: try TestPaths.sharedFile("stories260K/tok512.bin")), vocabSize: 512)
        var c = tinyConfig(.b158, vocab: 512, seq: 96)
        c.tieEmbeddings = true
        let model = try InferenceModel(synthetic: c, seed: 3)
        var chat = try Chat(model: model, tokenizer: tok, template: .plain, system: "Be kind.")
        var o = GenerationOptions(maxTokens: 8, temperature: 0)
        o.stopAtEOS = false
        let line = "Once upon a time there was a little dog who liked to play in the park."
        var trims: [Int] = []
        for _ in 0..<4 {
            _ = try chat.send(line, options: o) { _ in }
            trims.append(chat.lastTrimmedTurns)
            XCTAssertLessThan(chat.promptTokens().count, c.maxSeqLen)
            XCTAssertEqual(chat.messages.first, ChatMessage(.system, "Be kind."))
        }
        XCTAssertEqual(trims.first, 0, "the first turn fits")
        XCTAssertGreaterThan(trims.reduce(0, +), 0, "later turns dropped old ones: \(trims)")
        let before = chat.messages
        XCTAssertThrowsError(try chat.send(String(repeating: line, count: 8), options: o) { _ in }) {
            XCTAssertTrue("\($0)".contains("the message alone takes"), "\($0)")
        }
        XCTAssertEqual(chat.messages, before, "a refused message leaves the history as it was")
    }

    /// A prompt processed in one batched prefill leaves the same state as token-by-token steps.
    func testPrefillEqualsStepByStep() throws {
        for (arch, groups) in [(Architecture.b158, 1), (.b1, 1), (.fp, 1), (.b158, 2)] {
            var c = tinyConfig(arch, seq: 24)
            c.quantGroups = groups
            let model = InferenceModel(weights: ModelWeights(config: c, seed: 21))
            let prompt = [4, 8, 15, 16, 23, 1, 0, 36, 2, 9]
            let a = InferenceSession(model: model), b = InferenceSession(model: model)
            var stepLogits: [Float] = []
            for t in prompt { stepLogits = Array(try a.step(token: t)) }
            let batched = Array(try b.prefill(tokens: prompt))
            XCTAssertLessThan(maxAbsDiff(stepLogits, batched), 1e-5, "\(arch) groups \(groups)")
            XCTAssertEqual(b.position, prompt.count)
            // Decoding continues identically from both.
            XCTAssertLessThan(maxAbsDiff(Array(try a.step(token: 5)), Array(try b.step(token: 5))), 1e-5)
        }
    }

    func testSessionRejectsBadTokensAndFullContext() throws {
        let c = tinyConfig(.b158, seq: 4)
        let session = InferenceSession(model: InferenceModel(weights: ModelWeights(config: c, seed: 1)))
        XCTAssertThrowsError(try session.step(token: c.vocabSize))
        XCTAssertThrowsError(try session.step(token: -1))
        for _ in 0..<4 { _ = try session.step(token: 1) }
        XCTAssertThrowsError(try session.step(token: 1))
    }

    func testSamplerGreedyTopKAndSeeds() throws {
        let logits: [Float] = [0.1, 3, 0.2, 2.9, -1]
        try logits.withUnsafeBufferPointer { lp in
            var greedy = try Sampler(temperature: 0)
            XCTAssertEqual(greedy.sample(lp), 1)
            var top1 = try Sampler(temperature: 1, topK: 1, seed: 5)
            for _ in 0..<20 { XCTAssertEqual(top1.sample(lp), 1) }
            var a = try Sampler(temperature: 1, seed: 9), b = try Sampler(temperature: 1, seed: 9)
            let sa = (0..<50).map { _ in a.sample(lp) }, sb = (0..<50).map { _ in b.sample(lp) }
            XCTAssertEqual(sa, sb)
            XCTAssertTrue(Set(sa).isSubset(of: [0, 1, 2, 3, 4]))
            // top-p 0.5 keeps only the best token here (p(1) ≈ 0.5 already).
            var nucleus = try Sampler(temperature: 1, topP: 0.4, seed: 1)
            for _ in 0..<20 { XCTAssertEqual(nucleus.sample(lp), 1) }
            // Empirical frequencies follow softmax at temperature 1.
            var s = try Sampler(temperature: 1, seed: 123)
            var counts = [Int](repeating: 0, count: 5)
            for _ in 0..<20000 { counts[s.sample(lp)] += 1 }
            let z = logits.map { exp(Double($0)) }.reduce(0, +)
            for i in 0..<5 { XCTAssertEqual(Double(counts[i]) / 20000, exp(Double(logits[i])) / z, accuracy: 0.015) }
        }
        XCTAssertThrowsError(try Sampler(temperature: -1))
        XCTAssertThrowsError(try Sampler(topP: 0))
    }
}

final class InferenceFormatsTests: XCTestCase {
    /// The head stored in f16 or 8-bit blocks gives logits close to the f32 head (relative to the logit range).
    /// The head and embedding in f16 or 8/6/4-bit blocks stay close to f32; the stored bytes shrink by the format's ratio.
    func testHeadFormatsAgreeWithF32() throws {
        for tied in [true, false] {
            var c = tinyConfig(.b158, vocab: 64)
            c.tieEmbeddings = tied
            let w = ModelWeights(config: c, seed: 12)
            func logits(_ model: InferenceModel) throws -> [Float] {
                let s = InferenceSession(model: model)
                var out: [Float] = []
                for t in [1, 7, 30] { out = Array(try s.step(token: t)) }
                return out
            }
            let f32Model = InferenceModel(weights: w)
            let ref = try logits(f32Model)
            let scale = ref.map(abs).max()!
            let blockRatio = { (f: BlockQuantFormat) in Double(c.dim * 4) / Double(f.rowStride(cols: c.dim)) }
            for (format, tol, ratio) in [(HeadFormat.f16, Float(1e-2), 2.0), (.q8, 5e-2, blockRatio(.q8)), (.q6, 0.1, blockRatio(.q6)),
                                         (.q4, 0.4, blockRatio(.q4))] {
                let model = InferenceModel(weights: w)
                try model.setHeadFormat(format)
                XCTAssertEqual(model.headFormat, format)
                XCTAssertLessThan(maxAbsDiff(try logits(model), ref) / scale, tol, "\(format) tied \(tied)")
                XCTAssertEqual(Double(f32Model.head.bytes) / Double(model.head.bytes), ratio, accuracy: 1e-9)
                XCTAssertEqual(model.head === model.embedding, tied)
                // Embedding rows are the dequantized stored values.
                var row = [Float](repeating: 0, count: c.dim)
                model.embedding.row(7, into: &row)
                XCTAssertEqual(row, Array(model.embedding.values()[(7 * c.dim)..<(8 * c.dim)]))
            }
        }
    }

    /// The base-3 layout (t3) gives exactly the logits of the 2-bit one (same integer sums), for prompt GEMMs and
    /// fused one-token GEMVs, on fewer bytes; converting back restores t2.
    func testTernaryLayoutT3LogitsEqualT2() throws {
        for arch in [Architecture.b158, .b1] {
            let w = ModelWeights(config: tinyConfig(arch, ffn: .relu2, seq: 24), seed: 31)
            func logits(_ model: InferenceModel) throws -> [Float] {
                let s = InferenceSession(model: model)
                var out = Array(try s.prefill(tokens: [4, 8, 15, 16, 23]))
                for t in [1, 7, 30] { out += Array(try s.step(token: t)) }
                return out
            }
            let t2 = InferenceModel(weights: w), t3 = InferenceModel(weights: w)
            t3.setTernaryLayout(.t3)
            XCTAssertEqual(t2.ternaryLayout, .t2)
            XCTAssertEqual(t3.ternaryLayout, .t3)
            XCTAssertEqual(try logits(t3), try logits(t2), "\(arch)")
            // Every linear is stored in ceil(cols / 320) * 64 bytes per row (tiny rows: more than t2's padding).
            for l in t3.layers.flatMap({ [$0.wq, $0.wk, $0.wv, $0.wo, $0.w1, $0.w3, $0.w2] }) {
                XCTAssertEqual(l.packedBytes, l.rows * ((l.cols + 319) / 320) * 64 + l.betas.count * 4)
            }
            t3.setTernaryLayout(.t2)
            XCTAssertEqual(t3.ternaryLayout, .t2)
            XCTAssertEqual(t3.bytesPerToken, t2.bytesPerToken)
            XCTAssertEqual(try logits(t3), try logits(t2))
        }
    }

    /// `auto` (preferredTernaryLayout): t3 only where its fast kernels run and it takes fewer bytes than t2.
    func testPreferredTernaryLayoutNeedsFastKernelsAndFewerBytes() throws {
        func model(dim: Int, ffn: Int) throws -> InferenceModel {
            try InferenceModel(synthetic: ModelConfig(arch: .b158, vocabSize: 40, dim: dim, nLayers: 1, nHeads: 4, nKVHeads: 2,
                                                      ffnDim: ffn, maxSeqLen: 8, ffn: .relu2, tieEmbeddings: true), headFormat: .f16)
        }
        // 640 and 1280 columns: t3 rows of 128 and 256 bytes against t2's 160 and 320.
        let wide = try model(dim: 640, ffn: 1280)
        XCTAssertLessThan(TernaryKernels.rowStrideBase3(cols: 640), TernaryKernels.rowStride2bit(cols: 640))
        XCTAssertEqual(wide.preferredTernaryLayout, TernaryKernels.base3IsFast ? .t3 : .t2)
        // 64 and 128 columns: one 64-byte t3 block per row against 32 bytes of t2.
        XCTAssertEqual(try model(dim: 64, ffn: 128).preferredTernaryLayout, .t2)
    }

    /// `keepTernaryLayouts` (bench --compare-layout): both copies stay, the current layout stays set, and switching
    /// between them in the middle of a session (one KV cache) decodes the same logits as either layout alone.
    func testKeptTernaryLayoutsSwitchMidSession() throws {
        let w = ModelWeights(config: tinyConfig(.b158, ffn: .relu2, seq: 24), seed: 32)
        let reference = InferenceModel(weights: w), model = InferenceModel(weights: w)
        model.keepTernaryLayouts([.t2, .t3])
        XCTAssertEqual(model.ternaryLayout, .t2)
        let a = InferenceSession(model: reference), b = InferenceSession(model: model)
        var want = Array(try a.prefill(tokens: [3, 1, 4])), got = Array(try b.prefill(tokens: [3, 1, 4]))
        for (i, t) in [1, 5, 9, 2, 6].enumerated() {
            model.setTernaryLayout(i % 2 == 0 ? .t3 : .t2)
            XCTAssertEqual(model.ternaryLayout, i % 2 == 0 ? .t3 : .t2)
            want += Array(try a.step(token: t))
            got += Array(try b.step(token: t))
        }
        XCTAssertEqual(got, want)
        model.setTernaryLayout(.t3)
        XCTAssertEqual(model.bytesPerToken, { let m = InferenceModel(weights: w); m.setTernaryLayout(.t3); return m.bytesPerToken }())
    }

    /// The weights decoding streams move into arenas (one per layer, one for the head) when a model is built and after
    /// each change of format or layout; a copy on 4 KiB pages (`placeWeights(hugePages: false, moveArenas: true)`) and
    /// switching between placements in the middle of a session decode exactly the logits of a model left alone.
    func testWeightsLiveInArenasAndPlacementsSwitch() throws {
        let w = ModelWeights(config: tinyConfig(.b158, ffn: .relu2, seq: 24), seed: 33)
        let reference = InferenceModel(weights: w), model = InferenceModel(weights: w)
        func r64(_ n: Int) -> Int { (n + 63) / 64 * 64 }
        func linearBytes(_ stride: (Int) -> Int) -> Int {
            model.layers.flatMap(\.linears).reduce(0) { $0 + r64($1.rows * stride($1.cols)) }
        }
        // The f32 head stays in its array; every packed linear is in an arena of its layer.
        XCTAssertEqual(model.arenaStats.bytes, linearBytes { TernaryKernels.rowStride2bit(cols: $0) })
        XCTAssertTrue(model.layers.allSatisfy { l in l.linears.allSatisfy { $0.arenas.count == 1 && $0.arenas[0] === l.wq.arenas[0] } })
        XCTAssertFalse(model.layers[0].wq.arenas[0] === model.layers[1].wq.arenas[0])
        XCTAssertEqual(model.hugePages, InferenceModel.hugePagesByDefault)
        for m in [model, reference] { try m.setHeadFormat(.q8) }
        // An untied embedding goes to the head's arena too.
        XCTAssertFalse(model.head === model.embedding)
        let denseBytes = r64(model.head.bytes) + r64(model.embedding.bytes)
        XCTAssertEqual(model.arenaStats.bytes, linearBytes { TernaryKernels.rowStride2bit(cols: $0) } + denseBytes)
        XCTAssertTrue(model.head.arena != nil && model.head.arena === model.embedding.arena)
        let first = model.placement, firstArena = model.layers[0].wq.arenas[0]
        model.placeWeights(hugePages: false, moveArenas: true)
        XCTAssertFalse(model.hugePages)
        XCTAssertFalse(model.layers[0].wq.arenas[0] === firstArena)
        XCTAssertEqual(model.arenaStats.hugePageBytes, 0)
        let second = model.placement
        let a = InferenceSession(model: reference), b = InferenceSession(model: model)
        var want = Array(try a.prefill(tokens: [2, 7, 1])), got = Array(try b.prefill(tokens: [2, 7, 1]))
        for (i, t) in [8, 2, 8, 1, 8].enumerated() {
            model.restore(i % 2 == 0 ? first : second)
            want += Array(try a.step(token: t))
            got += Array(try b.step(token: t))
        }
        XCTAssertEqual(got, want)
        XCTAssertTrue(model.layers[0].wq.arenas[0] === firstArena)
        // A new layout is placed at once, layer by layer, with the page size last asked for.
        model.restore(second)
        model.setTernaryLayout(.t3)
        XCTAssertEqual(model.arenaStats.bytes, linearBytes { TernaryKernels.rowStrideBase3(cols: $0) } + denseBytes)
        XCTAssertTrue(model.layers.allSatisfy { $0.linears.allSatisfy { $0.arenas.count == 1 && !$0.arenas[0].hugePages } })
    }

    /// `InferenceBenchmark.gemvChain` (bench --profile's "alone"): a median time for exactly the phases that stream
    /// weights, the whole pass longer than its head alone; nil for the fp twin, whose linears take floats.
    func testGemvChainTimesTheWeightPhases() throws {
        var c = tinyConfig(.b158, vocab: 50, seq: 40)
        c.tieEmbeddings = true
        let ternary = try InferenceModel(synthetic: c, headFormat: .q8)
        let chain = try XCTUnwrap(InferenceBenchmark.gemvChain(model: ternary, tokens: 3))
        XCTAssertEqual(Set(chain.phaseSeconds.keys), Set(DecodeProfile.Phase.allCases.filter { ternary.bytesPerToken(in: $0) > 0 }))
        XCTAssertTrue(chain.phaseSeconds.values.allSatisfy { $0 > 0 })
        XCTAssertGreaterThan(chain.secondsPerToken, try XCTUnwrap(chain.phaseSeconds[.head]))
        XCTAssertNil(chain.interleavedSeconds)
        // Work in turns with the passes: run before each (the warm-up's too), its median over the timed passes.
        var calls = 0
        let turns = try XCTUnwrap(InferenceBenchmark.gemvChain(model: ternary, tokens: 5) { calls += 1; return [9, 5, 1, 4, 2, 3][calls - 1] })
        XCTAssertEqual(calls, 6)
        XCTAssertEqual(turns.interleavedSeconds, 3)   // median of 5, 1, 4, 2, 3 (the warm-up's 9 left out)
        var fc = c
        fc.arch = .fp
        XCTAssertNil(InferenceBenchmark.gemvChain(model: try InferenceModel(synthetic: fc, headFormat: .f16)))
    }

    /// `InferenceBenchmark.pairedRoofline` (bench's step-by-step roofline): one fraction per step, each the step's
    /// weight rate over the better of the two read passes around it (recomputed here from the recorded times and
    /// passes); a session of 8 positions restarts as 20 steps fill it; quantiles by nearest rank; bad arguments named.
    func testPairedRooflineRatesEachStepAgainstItsNeighbouringPasses() throws {
        var c = tinyConfig(.b158, vocab: 50, seq: 8)
        c.tieEmbeddings = true
        let model = try InferenceModel(synthetic: c, headFormat: .q8)
        let r = try XCTUnwrap(try InferenceBenchmark.pairedRoofline(model: model, steps: 20, context: 2, probeBytes: 1 << 20))
        XCTAssertEqual(r.fractions.count, 20)
        XCTAssertEqual(r.passRates.count, 21)
        XCTAssertEqual(r.stepSeconds.count, 20)
        XCTAssertTrue(r.passRates.allSatisfy { $0 > 0 && $0.isFinite })
        for i in 0..<20 {
            let want = Double(model.bytesPerToken) / r.stepSeconds[i] / max(r.passRates[i], r.passRates[i + 1])
            XCTAssertEqual(r.fractions[i], want, accuracy: 1e-12 * want, "step \(i)")
        }
        XCTAssertEqual(r.medianPassRate, r.passRates.sorted()[10])
        let q = InferenceBenchmark.PairedRoofline(fractions: [0.9, 0.1, 0.5, 0.3, 0.2], passRates: [], stepSeconds: [])
        XCTAssertEqual(q.medianPassRate, 0)
        XCTAssertEqual(q.median, 0.3)
        XCTAssertEqual(q.quantile(0.25), 0.2)
        XCTAssertEqual(q.quantile(0.75), 0.5)
        XCTAssertEqual(q.quantile(1), 0.9)
        XCTAssertThrowsError(try InferenceBenchmark.pairedRoofline(model: model, steps: 0))
        XCTAssertThrowsError(try InferenceBenchmark.pairedRoofline(model: model, steps: 3, context: 7))
    }

    /// Synthetic ternary linears are drawn in the packed layout: every code in {-1, 0, +1}, each about a third of them
    /// (binomial bounds), padding columns code 0 (the packer's bytes for them), and the same seed gives the same bytes.
    func testSyntheticTernaryLinearsAreUniformAndPadded() throws {
        let q = LinearQuantization(arch: .b158, groups: 1, bits: 8, scope: .perToken)
        var rng = SeededRNG(seed: 3), again = SeededRNG(seed: 3)
        let l = InferenceLinear(randomTernaryRows: 300, cols: 200, quant: q, rng: &rng)
        let p = try XCTUnwrap(l.packed)
        XCTAssertEqual(p.bytes, InferenceLinear(randomTernaryRows: 300, cols: 200, quant: q, rng: &again).packed?.bytes)
        let codes = TernaryKernels.unpack(p)
        XCTAssertEqual(codes.count, 300 * 200)
        for v: Int8 in [-1, 0, 1] {
            let share = Double(codes.filter { $0 == v }.count) / Double(codes.count)
            XCTAssertEqual(share, 1.0 / 3, accuracy: 0.01, "code \(v)")   // 5 sigma of 60000 draws is 0.0096
        }
        XCTAssertEqual(p.bytes, TernaryKernels.pack2bit(codes: codes, rows: 300, cols: 200).bytes, "padding as the packer writes it")
    }

    /// Synthetic models (what `bitnet bench` measures) decode finite logits; the f16 twin has 16-bit linears.
    func testSyntheticModelsAndBenchmark() throws {
        var c = tinyConfig(.b158, vocab: 50, seq: 40)
        c.tieEmbeddings = true
        let ternary = try InferenceModel(synthetic: c, headFormat: .q8)
        var fc = c
        fc.arch = .fp
        let half = try InferenceModel(synthetic: fc, headFormat: .f16)
        XCTAssertLessThan(ternary.bytesPerToken, half.bytesPerToken)
        let s = InferenceSession(model: ternary)
        XCTAssertTrue(try s.step(token: 3).allSatisfy { $0.isFinite })
        let r = try InferenceBenchmark.run(model: half, promptLengths: [8, 16], decodeTokens: 5)
        XCTAssertGreaterThan(r.decodeTokensPerSecond, 0)
        XCTAssertEqual(Set(r.prefillTokensPerSecond.keys), [8, 16])
        XCTAssertThrowsError(try InferenceBenchmark.run(model: half, promptLengths: [100], decodeTokens: 5))
        // Both twins process a prompt in one batched pass with the logits of token-by-token steps.
        for model in [ternary, half] {
            let prompt = [3, 1, 4, 1, 5, 9, 2, 6]
            let a = InferenceSession(model: model), b = InferenceSession(model: model)
            var stepped: [Float] = []
            for t in prompt { stepped = Array(try a.step(token: t)) }
            XCTAssertLessThan(maxAbsDiff(stepped, Array(try b.prefill(tokens: prompt))), 1e-5)
        }
    }

    /// A context sweep: one point per (format, depth) in order, each with a decode rate and a profiled attention time
    /// (a depth below the session's position restarts it: 2 after 0 + 5 steps), 
    /// and depths that are not ascending or that overflow the model's positions are named errors.
    func testContextSweepPointsAndErrors() throws {
        let c = tinyConfig(.b158, vocab: 50, seq: 40)
        let model = try InferenceModel(synthetic: c, headFormat: .q8)
        let points = try InferenceBenchmark.contextSweep(model: model, contexts: [0, 2, 35], formats: [.f32, .q8], decodeTokens: 4)
        XCTAssertEqual(points.map(\.kvCache), [.f32, .f32, .f32, .q8, .q8, .q8])
        XCTAssertEqual(points.map(\.context), [0, 2, 35, 0, 2, 35])
        XCTAssertTrue(points.allSatisfy { $0.decodeTokensPerSecond > 0 && $0.attentionSecondsPerToken > 0 })
        XCTAssertThrowsError(try InferenceBenchmark.contextSweep(model: model, contexts: [0, 36], formats: [.f32], decodeTokens: 4)) {
            XCTAssertTrue("\($0)".contains("41 positions; the model has 40"), "\($0)")
        }
        XCTAssertThrowsError(try InferenceBenchmark.contextSweep(model: model, contexts: [8, 4], formats: [.f32], decodeTokens: 4)) {
            XCTAssertTrue("\($0)".contains("ascending"), "\($0)")
        }
    }

    /// `bench --profile`: every decode step is recorded once, phases with weights take time, the phases' weight bytes
    /// add up to the model's bytes per token, prompts (several rows) and inactive steps record nothing, and the
    /// profiled steps return the same logits.
    func testDecodeProfileRecordsEveryStepAndPhase() throws {
        var c = tinyConfig(.b158, vocab: 50, seq: 40)
        c.tieEmbeddings = true
        let model = try InferenceModel(synthetic: c, headFormat: .q6)
        let phases = DecodeProfile.Phase.allCases
        XCTAssertEqual(phases.reduce(0) { $0 + model.bytesPerToken(in: $1) }, model.bytesPerToken)
        let plain = InferenceSession(model: model), profiled = InferenceSession(model: model)
        let expected = Array(try plain.prefill(tokens: [1, 2, 3])) + Array(try plain.step(token: 4)) + Array(try plain.step(token: 5))
        let profile = DecodeProfile()
        profiled.phaseObserver = profile
        var got = Array(try profiled.prefill(tokens: [1, 2, 3]))
        XCTAssertEqual(profile.tokens, 0, "a prompt of several rows is not a decode step")
        got += Array(try profiled.step(token: 4)) + Array(try profiled.step(token: 5))
        XCTAssertEqual(got, expected)
        XCTAssertEqual(profile.tokens, 2)
        for phase in [DecodeProfile.Phase.qkv, .wo, .ffnUp, .ffnDown, .head] {
            XCTAssertGreaterThan(profile.secondsPerToken(phase), 0, phase.name)
            XCTAssertGreaterThan(model.bytesPerToken(in: phase), 0, phase.name)
        }
        XCTAssertEqual(profile.totalSecondsPerToken, phases.reduce(0) { $0 + profile.secondsPerToken($1) }, accuracy: 1e-12)
        profiled.phaseObserver = nil
        _ = try profiled.step(token: 6)
        XCTAssertEqual(profile.tokens, 2)
        // Through the benchmark: one record per timed decode step (not the warm-up step, not the prefill runs).
        let r = try InferenceBenchmark.run(model: model, promptLengths: [8], decodeTokens: 3, profile: true)
        XCTAssertEqual(r.profile?.tokens, 3)
        XCTAssertNil(try InferenceBenchmark.run(model: model, promptLengths: [], decodeTokens: 2).profile)
    }

    /// Idle-time prefetch (ThreadPool.idlePrefetchBytes): on a model whose GEMVs run on the pool, each decode step
    /// announces every GEMV and attention to the idle workers (the head here is too small to split), the prompt
    /// announces nothing, and the logits are the same with the prefetch on and off. (Whether the worker gets to
    /// prefetch depends on scheduling; ThreadPoolTests checks that it prefetches what a hint asks.)
    func testIdlePrefetchKeepsLogitsAndAnnouncesEveryGemv() throws {
        let pool = ThreadPool.shared
        try XCTSkipIf(pool.threadCount < 2, "needs a pool with a worker")
        let c = ModelConfig(arch: .b158, vocabSize: 300, dim: 512, nLayers: 2, nHeads: 8, nKVHeads: 4, ffnDim: 1024, maxSeqLen: 16,
                            ffn: .relu2, tieEmbeddings: true)
        let model = try InferenceModel(synthetic: c, headFormat: .q6)
        let saved = pool.idlePrefetchBytes
        defer { pool.idlePrefetchBytes = saved }
        let steps = 10
        func decode() throws -> (logits: [Float], promptHints: Int, stepHints: Int) {
            let session = InferenceSession(model: model)
            let h0 = pool.idlePrefetchHints
            var out = Array(try session.prefill(tokens: [1, 2, 3]))
            let h1 = pool.idlePrefetchHints
            for t in 0..<steps { out += Array(try session.step(token: 4 + t)) }
            return (out, h1 - h0, pool.idlePrefetchHints - h1)
        }
        pool.idlePrefetchBytes = 0
        let off = try decode()
        XCTAssertEqual(off.promptHints + off.stepHints, 0, "off: no hints")
        pool.idlePrefetchBytes = 256 * 1024
        let on = try decode()
        XCTAssertEqual(on.logits, off.logits)
        XCTAssertEqual(on.promptHints, 0, "a prompt of several rows announces nothing")
        // Per step: the first Wq/Wk/Wv, then per layer the KV rows, Wo, W1/W3, W2 and the next layer's Wq/Wk/Wv.
        XCTAssertEqual(on.stepHints, steps * (1 + 4 * c.nLayers + (c.nLayers - 1)))
    }
}
