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
            dependencies: ["BitNet", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "BitNetKernelsTests", dependencies: ["BitNetKernels"]),
        .testTarget(name: "BitNetTests", dependencies: ["BitNet"], exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v6]
)
