import CBitNetKernels

/// The elementwise kernels of `bitnet_elementwise.h` (absmax activation quantization of Eq. 6-7, SwiGLU, shifted
/// exponentials): the path they take, and a way to select one (tests, comparisons).
package enum ElementwiseKernels {
    /// "avx2" or "portable": the path the kernels take, by default the best this CPU supports (BITNET_ISA=portable
    /// forces "portable"; read once). The quantizer gives identical results on every path; the exp-based kernels
    /// agree within a few ulp.
    package static var activeISA: String { String(cString: bitnet_elementwise_isa_name()) }

    /// The paths, fastest first.
    package static let isaNames = ["avx2", "portable"]

    /// Switches to the named path (capped at what the CPU supports; unknown names mean "portable"); returns the path
    /// now in effect. Not safe while the kernels run on other threads.
    @discardableResult
    package static func selectISA(_ name: String) -> String {
        let level: Int32
        switch name {
        case "avx2", "avx2+fma", "avx512", "avx512vnni": level = BITNET_ELEMENTWISE_AVX2
        default: level = BITNET_ELEMENTWISE_PORTABLE
        }
        _ = bitnet_elementwise_set_isa(level)
        return activeISA
    }
}
