/// SplitMix64 for test inputs of the kernel tests (deterministic, independent of the library's generators).
struct KernelTestRNG {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    mutating func float() -> Float { Float(Int64(next() >> 40) - (1 << 23)) / Float(1 << 23) }
    /// Uniform over {-1, 0, +1}.
    mutating func ternary() -> Int8 { Int8(Int(next() % 3) - 1) }
    /// Any Int8.
    mutating func int8() -> Int8 { Int8(truncatingIfNeeded: next()) }
}
