import ArgumentParser
import BitNet
import Foundation
import BitNetTools
import BitNetKernels

@main
struct BitNetCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bitnet",
        abstract: "Train, evaluate and run 1-bit (b1) and 1.58-bit (b1.58) BitNet LLMs on the CPU.",
        subcommands: [Train.self, Compare.self, Generate.self, Eval.self, Logits.self, Bench.self, Energy.self, Convert.self,
                      ChatCommand.self, Reproduce.self, Serve.self])

    /// A misspelt subcommand gets the nearest name (flags already get ArgumentParser's suggestions), then parsing
    /// goes on as ArgumentParser does it.
    static func main() {
        // A file-size limit (ulimit -f) then fails the write with EFBIG and a message, instead of killing the process.
        signal(SIGXFSZ, SIG_IGN)
        let names = configuration.subcommands.map { $0._commandName } + ["help"]
        if let first = CommandLine.arguments.dropFirst().first, !first.hasPrefix("-"), !names.contains(first) {
            let nearest = names.min { editDistance(first, $0) < editDistance(first, $1) }
            let hint = nearest.flatMap { editDistance(first, $0) <= max(2, first.count / 3) ? "; did you mean '\($0)'?" : nil } ?? ""
            printError("error: unknown subcommand '\(first)'\(hint) (subcommands: \(names.joined(separator: ", ")))")
            Foundation.exit(64)
        }
        main(nil)
    }
}

/// Levenshtein distance between two short strings (subcommand suggestions).
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    var row = Array(0...b.count)
    for i in 1...max(a.count, 1) where !a.isEmpty {
        var previous = row[0]
        row[0] = i
        for j in stride(from: 1, through: b.count, by: 1) {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            (previous, row[j]) = (row[j], min(row[j] + 1, row[j - 1] + 1, previous + cost))
        }
    }
    return a.isEmpty ? b.count : row[b.count]
}

/// Runs a command body and turns library errors into a clean message and exit code 1.
func runReportingErrors(_ body: () throws -> Void) throws {
    do { try body() }
    catch let e as BitNetError {
        printError("error: \(e.description)")
        throw ExitCode(1)
    } catch let e as TokenizerError {
        printError("error: \(e.description)")
        throw ExitCode(1)
    }
}

/// Model shape flags shared by `train` and `compare`.
struct ModelShapeOptions: ParsableArguments {
    @Option(help: "Size preset: \(ModelConfig.presetNames.joined(separator: ", ")).") var size: String = "small"
    @Option(help: "Hidden size (overrides the preset; the FFN width follows: the multiple of 256 nearest to 8/3 of it).") var dim: Int?
    @Option(help: "Number of layers.") var layers: Int?
    @Option(help: "Attention heads.") var heads: Int?
    @Option(name: .customLong("kv-heads"), help: "Key/value heads (grouped-query attention).") var kvHeads: Int?
    @Option(name: .customLong("ffn-dim"), help: "FFN hidden size.") var ffnDim: Int?
    @Option(help: "FFN: swiglu or relu2.") var ffn: String = "swiglu"
    @Flag(name: .customLong("no-sub-norm"), help: "Drop the sub-norms before wo and w2 (BitNet needs them; fp twin keeps the same network).") var noSubNorm = false
    @Option(name: .customLong("quant-groups"), help: "Group quantization G (Eq. 14-15).") var quantGroups: Int = 1
    @Option(name: .customLong("norm-groups"), help: "Group normalization G (Appendix A.1).") var normGroups: Int = 1
    @Option(name: .customLong("act-scope"), help: "Training activation scope: per_token or per_tensor (default per_tensor for b1).") var actScope: String?
    @Flag(name: .customLong("unsigned-after-nonlinearity"), help: "Unsigned min/max quantization of the FFN down-projection input (Sec. 3.1.1).") var unsignedAfter = false
    @Flag(name: .customLong("untied"), help: "Separate output head instead of the tied embedding.") var untied = false

    func config(arch: Architecture, vocabSize: Int, context: Int) throws -> ModelConfig {
        guard var c = ModelConfig.preset(size, arch: arch, vocabSize: vocabSize, maxSeqLen: context) else {
            throw BitNetError.invalidArgument("unknown --size \(size); choose one of \(ModelConfig.presetNames.joined(separator: ", "))")
        }
        if let dim { c.dim = dim; c.ffnDim = ModelPreset.ffnWidth(forDim: dim) }
        if let layers { c.nLayers = layers }
        if let heads { c.nHeads = heads; c.nKVHeads = heads }
        if let kvHeads { c.nKVHeads = kvHeads }
        if let ffnDim { c.ffnDim = ffnDim }
        guard let f = FFNKind(rawValue: ffn) else { throw BitNetError.invalidArgument("unknown --ffn \(ffn); use swiglu or relu2") }
        c.ffn = f
        c.subNorm = !noSubNorm
        c.quantGroups = quantGroups; c.normGroups = normGroups
        if let actScope {
            guard let s = ActivationScope(rawValue: actScope) else { throw BitNetError.invalidArgument("unknown --act-scope \(actScope)") }
            c.actScopeTrain = s
        }
        c.unsignedAfterNonlinearity = unsignedAfter
        c.tieEmbeddings = !untied
        try c.validate()
        return c
    }
}

/// Optimization flags shared by `train` and `compare`.
struct OptimOptions: ParsableArguments {
    @Option(help: "Sequences per batch.") var batch: Int = 16
    @Option(help: "Context length in tokens.") var context: Int = 128
    @Option(help: "Training steps.") var steps: Int = 1000
    @Option(help: "Peak learning rate (stage 1). Default: 3e-3 BitNet, 1e-3 fp.") var lr: Float?
    @Option(help: "Stage-2 learning rate of the two-stage schedule. Default: 2/3 of --lr.") var lr2: Float?
    @Option(help: "Warm-up steps.") var warmup: Int = 100
    @Option(name: .customLong("weight-decay"), help: "Weight decay (stage 1).") var weightDecay: Float = 0.1
    @Option(help: "two-stage or cosine. Default: two-stage for BitNet, cosine for fp.") var schedule: String?
    @Option(name: .customLong("grad-clip"), help: "Gradient clipping norm (0 disables).") var gradClip: Float = 1.0
    @Option(help: "Random seed: same seed, same model.") var seed: UInt64 = 1234
    @Option(name: .customLong("eval-every"), help: "Held-out evaluation every N steps.") var evalEvery: Int = 100
    @Option(name: .customLong("checkpoint-every"), help: "Checkpoint every N steps.") var checkpointEvery: Int = 200
    @Option(name: .customLong("stop-after"), help: "Stop after this step (resume later with the same command).") var stopAfter: Int?

    func options(arch: Architecture) throws -> TrainOptions {
        var o = TrainOptions.defaults(for: arch)
        o.batchSize = batch; o.seqLen = context; o.steps = steps; o.warmupSteps = warmup
        if let lr { o.lr = lr; o.lr2 = lr * 2 / 3 }
        if arch == .fp && lr2 == nil { o.lr2 = o.lr }
        if let lr2 { o.lr2 = lr2 }
        o.weightDecay = weightDecay; o.gradClip = gradClip; o.seed = seed
        o.evalEvery = evalEvery; o.checkpointEvery = checkpointEvery; o.stopAfter = stopAfter
        if let schedule {
            guard let s = Schedule(rawValue: schedule) else { throw BitNetError.invalidArgument("unknown --schedule \(schedule); use two-stage or cosine") }
            o.schedule = s
        }
        guard batch > 0, context > 1, steps > 0, warmup >= 0 else { throw BitNetError.invalidArgument("--batch, --steps must be positive, --context >= 2, --warmup >= 0") }
        return o
    }
}

func parseArch(_ s: String) throws -> Architecture {
    guard let a = Architecture.parse(s) else {
        throw BitNetError.invalidArgument("unknown --arch \(s); use bitnet-b1.58, bitnet-b1 or fp")
    }
    return a
}
