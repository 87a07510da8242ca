import Foundation
import BitNetKernels
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference
import BitNetTraining
import BitNetEvaluation
import BitNetServer

/// Inference speed of a model: decode and prefill tokens/s, time to first token, memory, and the weight-streaming
/// bandwidth against this machine's read bandwidth measured in the same run (the roofline).
package enum InferenceBenchmark {
    package struct Result: Sendable {
        package let decodeTokensPerSecond: Double
        /// 1 / the median time of one decode step: robust to a noisy neighbour stalling a few steps.
        package let decodeMedianTokensPerSecond: Double
        /// Prompt length → prefill tokens/s.
        package let prefillTokensPerSecond: [Int: Double]
        /// Prompt length → seconds until the first generated token's logits.
        package let timeToFirstToken: [Int: Double]
        package let weightBytes: Int
        package let bytesPerToken: Int
        /// Per-phase decode time, when the run was asked to profile.
        package let profile: DecodeProfile?
        /// Weight bytes streamed per second while decoding.
        package var achievedBandwidth: Double { Double(bytesPerToken) * decodeTokensPerSecond }
    }

    /// Decode speed at one KV cache depth and format (`contextSweep`).
    package struct ContextPoint: Sendable {
        package let kvCache: KVCacheFormat
        /// Cached positions before the first timed step.
        package let context: Int
        package let decodeTokensPerSecond: Double
        /// The attention phase's share of a step (`DecodeProfile.Phase.attention`).
        package let attentionSecondsPerToken: Double
    }

    /// Decode speed as the KV cache grows, per cache format (as llama-bench's tg at several -d): one session per format
    /// is prefilled with random tokens up to each depth of `contexts` in turn (ascending; a depth below the session's
    /// position restarts it), then decodes one warm-up and `decodeTokens` timed greedy steps there, profiled.
    package static func contextSweep(model: InferenceModel, contexts: [Int], formats: [KVCacheFormat], decodeTokens: Int,
                                    seed: UInt64 = 7) throws -> [ContextPoint] {
        let c = model.config
        guard let deepest = contexts.max(), !formats.isEmpty else { throw BitNetError.invalidArgument("a context sweep needs depths and KV cache formats") }
        guard contexts.allSatisfy({ $0 >= 0 }), zip(contexts, contexts.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw BitNetError.invalidArgument("context sweep depths must be ascending and >= 0, got \(contexts.map(String.init).joined(separator: ","))")
        }
        guard decodeTokens > 0 else { throw BitNetError.invalidArgument("decode tokens must be positive") }
        let maxLen = deepest + decodeTokens + 1
        guard maxLen <= c.maxSeqLen else { throw BitNetError.invalidArgument("context sweep needs \(maxLen) positions; the model has \(c.maxSeqLen)") }
        var rng = SeededRNG(seed: seed)
        var points: [ContextPoint] = []
        for format in formats {
            let session = try InferenceSession(model: model, maxSeqLen: maxLen, kvCache: format)
            for depth in contexts {
                if session.position > depth { session.reset() }
                if depth > session.position {
                    _ = try session.prefill(tokens: (session.position..<depth).map { _ in rng.nextInt(below: c.vocabSize) })
                }
                var token = rng.nextInt(below: c.vocabSize)
                token = Sampler.argmax(try session.step(token: token))   // warm-up (the first step after a prompt)
                let recorder = DecodeProfile()
                session.phaseObserver = recorder
                defer { session.phaseObserver = nil }
                let t0 = Clock.now()
                for _ in 0..<decodeTokens { token = Sampler.argmax(try session.step(token: token)) }
                let seconds = max(Clock.now() - t0, 1e-9)
                session.phaseObserver = nil
                points.append(ContextPoint(kvCache: format, context: depth, decodeTokensPerSecond: Double(decodeTokens) / seconds,
                                           attentionSecondsPerToken: recorder.secondsPerToken(.attention)))
            }
        }
        return points
    }

    /// Decodes `decodeTokens` tokens after `context` cached positions (a random prompt; 0: from the first position,
    /// as llama-bench's tg, whose -d is this depth), then times prefill for each prompt length; `profile` also records
    /// where the decode steps spend their time (`Result.profile`).
    package static func run(model: InferenceModel, promptLengths: [Int], decodeTokens: Int, context: Int = 0, kvCache: KVCacheFormat = .f32,
                           seed: UInt64 = 7, profile: Bool = false) throws -> Result {
        let c = model.config
        var rng = SeededRNG(seed: seed)
        guard context >= 0 else { throw BitNetError.invalidArgument("decode context must be >= 0, got \(context)") }
        let maxLen = max((promptLengths.max() ?? 0) + 1, context + decodeTokens + 2)
        guard maxLen <= c.maxSeqLen else { throw BitNetError.invalidArgument("benchmark needs \(maxLen) positions; the model has \(c.maxSeqLen)") }
        let session = try InferenceSession(model: model, maxSeqLen: maxLen, kvCache: kvCache)
        if context > 0 { _ = try session.prefill(tokens: (0..<context).map { _ in rng.nextInt(below: c.vocabSize) }) }
        // Decode: one warm-up token, then greedy steps.
        var token = rng.nextInt(below: c.vocabSize)
        _ = try session.step(token: token)
        var stepSeconds = [Double](repeating: 0, count: decodeTokens)
        let recorder = profile ? DecodeProfile() : nil
        session.phaseObserver = recorder
        defer { session.phaseObserver = nil }
        let t0 = Clock.now()
        for i in 0..<decodeTokens {
            let s0 = Clock.now()
            token = Sampler.argmax(try session.step(token: token))
            stepSeconds[i] = Clock.now() - s0
        }
        let decodeTPS = Double(decodeTokens) / max(Clock.now() - t0, 1e-9)
        session.phaseObserver = nil
        stepSeconds.sort()
        let median = decodeTokens % 2 == 1 ? stepSeconds[decodeTokens / 2]
            : (stepSeconds[decodeTokens / 2 - 1] + stepSeconds[decodeTokens / 2]) / 2
        var prefill: [Int: Double] = [:], ttft: [Int: Double] = [:]
        for n in promptLengths {
            session.reset()
            let prompt = (0..<n).map { _ in rng.nextInt(below: c.vocabSize) }
            let s0 = Clock.now()
            _ = try session.prefill(tokens: prompt)
            let dt = Clock.now() - s0
            prefill[n] = Double(n) / max(dt, 1e-9)
            ttft[n] = dt
        }
        return Result(decodeTokensPerSecond: decodeTPS, decodeMedianTokensPerSecond: 1 / max(median, 1e-9), prefillTokensPerSecond: prefill, timeToFirstToken: ttft,
                      weightBytes: model.inferenceBytes, bytesPerToken: model.bytesPerToken, profile: recorder)
    }

    /// Greedy decode steps timed one at a time, from `context` random positions of a session of `maxSeqLen`; the
    /// session restarts there (untimed) when full. What `pairedRoofline` and bench's interleaved profile time.
    package final class TimedDecoder {
        private let session: InferenceSession
        private let context: Int
        private var rng: SeededRNG
        private var token: Int

        package init(model: InferenceModel, maxSeqLen: Int, context: Int = 0, kvCache: KVCacheFormat = .f32, seed: UInt64 = 11) throws {
            guard context >= 0, context + 2 <= maxSeqLen else {
                throw BitNetError.invalidArgument("timed decoding: context \(context) leaves no room to decode in \(maxSeqLen) positions")
            }
            session = try InferenceSession(model: model, maxSeqLen: maxSeqLen, kvCache: kvCache)
            self.context = context
            rng = SeededRNG(seed: seed)
            token = 0
            try restart()
            token = rng.nextInt(below: model.config.vocabSize)
        }

        private func restart() throws {
            session.reset()
            let v = session.model.config.vocabSize
            if context > 0 { _ = try session.prefill(tokens: (0..<context).map { _ in rng.nextInt(below: v) }) }
        }

        /// One greedy step (after a restart when the session is full): its seconds.
        package func step() throws -> Double {
            if session.position >= session.maxSeqLen { try restart() }
            let t0 = Clock.now()
            token = Sampler.argmax(try session.step(token: token))
            return max(Clock.now() - t0, 1e-9)
        }
    }

    /// The roofline taken step by step (`pairedRoofline`): each decode step's weight-streaming rate over the better of
    /// the two read passes around it, so both sides of every ratio share this moment's memory bandwidth.
    package struct PairedRoofline: Sendable {
        /// Per step: bytesPerToken / step seconds / max(read pass before, read pass after).
        package let fractions: [Double]
        /// The read passes' rates (bytes per second), one more than there are steps: pass i before step i, i + 1 after.
        package let passRates: [Double]
        /// Each decode step's seconds.
        package let stepSeconds: [Double]

        /// The median step's fraction.
        package var median: Double { quantile(0.5) }
        /// The median read pass (bytes per second).
        package var medianPassRate: Double { passRates.isEmpty ? 0 : passRates.sorted()[passRates.count / 2] }
        /// The q-quantile of the fractions (nearest rank).
        package func quantile(_ q: Double) -> Double {
            guard !fractions.isEmpty else { return 0 }
            let sorted = fractions.sorted()
            return sorted[min(sorted.count - 1, max(0, Int((q * Double(sorted.count - 1)).rounded())))]
        }
    }

    /// Decode steps taken in turns with read passes over a `probeBytes` buffer (`MemoryBandwidth.Probe`, the pool's
    /// threads): pass, step, pass, step, ..., pass. A host whose memory bandwidth drifts within seconds (a shared VM)
    /// then moves both sides of each step's ratio alike, where a whole-run rate over the best probe of the run
    /// counts every slow moment against the decoder. Steps greedy-decode from `context` random positions; the session
    /// restarts there when full. Nil when the probe cannot be mapped.
    package static func pairedRoofline(model: InferenceModel, steps: Int, context: Int = 0, kvCache: KVCacheFormat = .f32,
                                      probeBytes: Int = 256 << 20, seed: UInt64 = 11) throws -> PairedRoofline? {
        guard steps > 0 else { throw BitNetError.invalidArgument("a paired roofline needs at least one step") }
        let decoder = try TimedDecoder(model: model, maxSeqLen: model.config.maxSeqLen, context: context, kvCache: kvCache, seed: seed)
        guard let probe = MemoryBandwidth.Probe(bytes: probeBytes) else { return nil }
        _ = try decoder.step()   // warm-up
        _ = probe.pass()
        var rates = [probe.pass()], seconds: [Double] = []
        for _ in 0..<steps {
            seconds.append(try decoder.step())
            rates.append(probe.pass())
        }
        let bytes = Double(model.bytesPerToken)
        let fractions = seconds.indices.map { i in bytes / seconds[i] / max(rates[i], rates[i + 1], 1) }
        return PairedRoofline(fractions: fractions, passRates: rates, stepSeconds: seconds)
    }

    /// A decode step's GEMVs alone (`gemvChain`): median seconds per token in all, and per phase of `DecodeProfile`.
    package struct GemvChain: Sendable {
        package let secondsPerToken: Double
        /// Median seconds per token of the GEMVs of each phase (the weight phases only).
        package let phaseSeconds: [DecodeProfile.Phase: Double]
        /// Median seconds of the work run in turns with the passes (`interleavedWith`; bench: one decode step), if any.
        package let interleavedSeconds: Double?
    }

    /// A decode step's GEMVs alone: the same pool calls as `InferenceSession.step` (Wq/Wk/Wv and W1/W3 fused, Wo,
    /// W2, then the head) on fixed activations with no other work in between, over `tokens` passes after one
    /// warm-up. What the rest of a step (norms, attention, the gaps between calls) adds shows against it. With
    /// `interleavedWith`, that work (returning its own seconds; a decode step) runs before every pass, so both share
    /// each moment of a host whose speed drifts (timed apart, the drift would land in their difference). Nil when the linears do
    /// not run on the integer kernels (the fp twin, grouped activations).
    package static func gemvChain(model: InferenceModel, tokens: Int = 8, interleavedWith work: (() -> Double)? = nil) -> GemvChain? {
        let c = model.config
        guard let first = model.layers.first, first.linears.allSatisfy(\.takesCodes), tokens > 0 else { return nil }
        let maxCols = max(c.dim, c.nHeads * c.headDim, c.ffnDim), maxRows = max(c.nHeads * c.headDim + 2 * c.kvDim, 2 * c.ffnDim, c.dim)
        let codes = UnsafeMutablePointer<Int8>.allocate(capacity: maxCols), acc = UnsafeMutablePointer<Int32>.allocate(capacity: maxRows)
        let x = FloatBuffer(c.dim), logits = FloatBuffer(c.vocabSize)
        defer { codes.deallocate(); acc.deallocate() }
        var rng = SeededRNG(seed: 5)
        for i in 0..<maxCols { codes[i] = Int8(truncatingIfNeeded: rng.nextInt(below: 255) - 127) }
        for i in 0..<c.dim { x.ptr[i] = rng.nextUniform() - 0.5 }
        var total: [Double] = [], phaseTotals: [DecodeProfile.Phase: [Double]] = [:], interleaved: [Double] = []
        for pass in 0...tokens {
            if let work {
                let seconds = work()
                if pass > 0 { interleaved.append(seconds) }
            }
            var t: [DecodeProfile.Phase: Double] = [:]
            func timed(_ phase: DecodeProfile.Phase, _ body: () -> Void) { let t0 = Clock.now(); body(); t[phase, default: 0] += Clock.now() - t0 }
            let t0 = Clock.now()
            for L in model.layers {
                timed(.qkv) {
                    if !InferenceLinear.fusedGemv(L.wq, L.wk, L.wv, codes: codes, acc: acc) { for w in [L.wq, L.wk, L.wv] { w.gemvPacked(codes: codes, acc: acc) } }
                }
                timed(.wo) { L.wo.gemvPacked(codes: codes, acc: acc) }
                timed(.ffnUp) {
                    if !InferenceLinear.fusedGemv(L.w1, L.w3, nil, codes: codes, acc: acc) { for w in [L.w1, L.w3] { w.gemvPacked(codes: codes, acc: acc) } }
                }
                timed(.ffnDown) { L.w2.gemvPacked(codes: codes, acc: acc) }
            }
            timed(.head) { model.applyHead(x: x.ptr, logits: logits.ptr) }
            if pass > 0 {
                total.append(Clock.now() - t0)
                for (phase, sec) in t { phaseTotals[phase, default: []].append(sec) }
            }
        }
        func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
        return GemvChain(secondsPerToken: median(total), phaseSeconds: phaseTotals.mapValues(median),
                         interleavedSeconds: interleaved.isEmpty ? nil : median(interleaved))
    }
}
