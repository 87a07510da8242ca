// swift-tools-version:6.0
import PackageDescription

// Targets depend in one direction only (docs/ARCHITECTURE.md draws it):
// kernels → core → tokenizers → formats → inference, training → evaluation → BitNet (the public API) → server → CLI.
// Benchmarks, profiles, A/B harnesses and `reproduce` live in BitNetTools, which only the CLI and tests link.
// Swift targets build with the release default, -O: bounds, overflow and precondition checks stay in the product (what
// the fuzzers exercise is what ships). The hot loops are C (CBitNetKernels) or unsafe-pointer code, which has no checks.

let package = Package(
    name: "bitnet-swift",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "BitNet", targets: ["BitNet"]),
        .executable(name: "bitnet", targets: ["bitnet"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // C intrinsics for the hot loops (GEMM, ternary GEMV/GEMM, attention, thread pool), dispatched at run time.
        .target(name: "CBitNetKernels", cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]),
        // Swift face of the kernels: packed weight buffers, GEMM/GEMV wrappers, thread pool, weight arenas.
        .target(name: "BitNetKernels", dependencies: ["CBitNetKernels"]),
        // The paper's math: quantizers (Eq. 1-9, 14-15), layers with forward and backward, config, training graph.
        .target(name: "BitNetCore", dependencies: ["BitNetKernels", "CBitNetKernels"]),
        // Byte-level BPE (tokenizer.json), SentencePiece BPE, llama2.c tokenizers.
        .target(name: "BitNetTokenizers", dependencies: ["BitNetCore"]),
        // Files: own checkpoint, safetensors, GGUF (read/write, GGML codecs), Hugging Face, llama2.c.
        .target(name: "BitNetFormats", dependencies: ["BitNetTokenizers", "BitNetCore", "BitNetKernels"]),
        // Integer inference: packed linears, KV cache, sessions, sampling, chat.
        .target(name: "BitNetInference",
                dependencies: ["BitNetFormats", "BitNetTokenizers", "BitNetCore", "BitNetKernels", "CBitNetKernels"]),
        // Training from scratch: data, AdamW, two-stage schedule, trainer with checkpoints and resume.
        .target(name: "BitNetTraining", dependencies: ["BitNetFormats", "BitNetTokenizers", "BitNetCore", "BitNetKernels"]),
        // Perplexity, zero-shot tasks, WikiText, PTQ, scaling fits, energy model, twin comparison.
        .target(name: "BitNetEvaluation",
                dependencies: ["BitNetInference", "BitNetTraining", "BitNetFormats", "BitNetTokenizers", "BitNetCore", "BitNetKernels"]),
        // The public API: load, generate, chat, train, evaluate, convert; re-exports the layers' public types.
        .target(name: "BitNet",
                dependencies: ["BitNetEvaluation", "BitNetInference", "BitNetTraining", "BitNetFormats", "BitNetTokenizers", "BitNetCore"]),
        // `bitnet serve`: the OpenAI-compatible HTTP server (Hummingbird), kept apart so the libraries have no server dependencies.
        .target(name: "BitNetServer",
                dependencies: ["BitNetInference", "BitNetFormats", "BitNetTokenizers", "BitNetCore",
                               .product(name: "Hummingbird", package: "hummingbird"),
                               .product(name: "HummingbirdCore", package: "hummingbird"),
                               .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                               .product(name: "UnixSignals", package: "swift-service-lifecycle")]),
        // Benchmarks, profiles, A/B harnesses, `reproduce`: for the CLI and tests only, never part of the library.
        .target(name: "BitNetTools",
                dependencies: ["BitNetServer", "BitNet", "BitNetEvaluation", "BitNetInference", "BitNetTraining", "BitNetFormats",
                               "BitNetTokenizers", "BitNetCore", "BitNetKernels", "CBitNetKernels"]),
        .executableTarget(
            name: "bitnet",
            dependencies: ["BitNet", "BitNetServer", "BitNetTools", "BitNetKernels",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(name: "BitNetKernelsTests", dependencies: ["BitNetKernels", "CBitNetKernels"]),
        .testTarget(name: "BitNetTests",
                    dependencies: ["BitNet", "BitNetEvaluation", "BitNetInference", "BitNetTraining", "BitNetFormats",
                                   "BitNetTokenizers", "BitNetCore", "BitNetKernels", "BitNetTools"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "BitNetServerTests", dependencies: ["BitNetServer", "BitNetTools", "BitNet"]),
        // The public API as a user sees it (the README's library example, compiled and run).
        .testTarget(name: "BitNetAPITests", dependencies: ["BitNet"]),
    ],
    swiftLanguageModes: [.v6]
)
