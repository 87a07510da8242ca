// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "bitnet-swift",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "BitNet", targets: ["BitNet"]),
        .library(name: "BitNetKernels", targets: ["BitNetKernels"]),
        .executable(name: "bitnet", targets: ["bitnet"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // C intrinsics for the few hot loops (AVX2/FMA f32 GEMM, thread pool), dispatched at run time.
        .target(
            name: "CBitNetKernels",
            cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]
        ),
        // Swift face of the kernels: GEMM, thread pool.
        .target(
            name: "BitNetKernels",
            dependencies: ["CBitNetKernels"],
            swiftSettings: [.unsafeFlags(["-Ounchecked"])]
        ),
        // Quantizers, layers, model, tokenizers, formats, training, inference, evaluation.
        .target(
            name: "BitNet",
            dependencies: ["BitNetKernels", "CBitNetKernels"],
            swiftSettings: [.unsafeFlags(["-Ounchecked"])]
        ),
        .executableTarget(
            name: "bitnet",
            dependencies: ["BitNet", "BitNetServer", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // `bitnet serve`: the OpenAI-compatible HTTP server (Hummingbird); kept apart so BitNet has no server dependencies.
        .target(
            name: "BitNetServer",
            dependencies: ["BitNet", .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "UnixSignals", package: "swift-service-lifecycle")]
        ),
        .testTarget(name: "BitNetKernelsTests", dependencies: ["BitNetKernels"]),
        .testTarget(name: "BitNetTests", dependencies: ["BitNet"], exclude: ["Fixtures"]),
        .testTarget(name: "BitNetServerTests", dependencies: ["BitNetServer"]),
    ],
    swiftLanguageModes: [.v6]
)
