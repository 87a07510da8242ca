import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetKernels

/// Block codecs of the ggml tensor types (layouts of ggml-common.h; I2_S of bitnet.cpp's x86 build).
/// Quantizers follow ggml's reference (`quantize_row_*_ref`) so files match what llama.cpp writes.
package enum GGMLQuants {
    /// Powers of three for the base-3 packing of TQ1_0.
    static let pow3: [UInt8] = [1, 3, 9, 27, 81, 243]

    @inline(__always) static func f16(_ p: UnsafeRawPointer, _ off: Int) -> Float {
        Float(Float16(bitPattern: UInt16(littleEndian: p.loadUnaligned(fromByteOffset: off, as: UInt16.self))))
    }

    @inline(__always) static func bf16ToFloat(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

    /// f32 → bf16 rounding to nearest even (NaN stays NaN), as torch and ggml do.
    @inline(__always) static func floatToBF16(_ x: Float) -> UInt16 {
        let b = x.bitPattern
        if x.isNaN { return UInt16(b >> 16) | 0x40 }
        return UInt16((b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
    }

    /// Decodes `count` values of `type` at `p` into `out` (`count` is a whole number of blocks).
    package static func dequantize(_ type: GGMLType, _ p: UnsafeRawPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
        let nb = count / type.blockSize, bb = type.blockBytes
        switch type {
        case .f32:
            for i in 0..<count { out[i] = Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        case .f16:
            for i in 0..<count { out[i] = f16(p, 2 * i) }
        case .bf16:
            for i in 0..<count { out[i] = bf16ToFloat(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .q8_0:
            for b in 0..<nb {
                let blk = p + b * bb, d = f16(blk, 0), y = out + b * 32
                for j in 0..<32 { y[j] = Float(Int8(bitPattern: blk.load(fromByteOffset: 2 + j, as: UInt8.self))) * d }
            }
        case .q4_0:
            for b in 0..<nb {
                let blk = p + b * bb, d = f16(blk, 0), y = out + b * 32
                for j in 0..<16 {
                    let q = blk.load(fromByteOffset: 2 + j, as: UInt8.self)
                    y[j] = Float(Int(q & 0xF) - 8) * d
                    y[j + 16] = Float(Int(q >> 4) - 8) * d
                }
            }
        case .q6_K:
            for b in 0..<nb { dequantizeQ6K(p + b * bb, out + b * 256) }
        case .tq2_0:
            for b in 0..<nb {
                let blk = p + b * bb, d = f16(blk, 64), y = out + b * 256
                // 2-bit codes q+1: byte j+m of half j holds elements j*4 + l*32 + m in bits 2l..2l+1.
                for j in stride(from: 0, to: 64, by: 32) {
                    for l in 0..<4 {
                        for m in 0..<32 {
                            let q = (blk.load(fromByteOffset: j + m, as: UInt8.self) >> (2 * l)) & 3
                            y[j * 4 + l * 32 + m] = Float(Int(q) - 1) * d
                        }
                    }
                }
            }
        case .tq1_0:
            for b in 0..<nb {
                let blk = p + b * bb, d = f16(blk, 52)
                var codes = [Int8](repeating: 0, count: 256)
                tq1Codes(blk, &codes)
                for i in 0..<256 { out[b * 256 + i] = Float(codes[i]) * d }
            }
        case .i2_s:
            let scale = Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: count / 4, as: UInt32.self)))
            for b in 0..<nb {
                for j in 0..<128 { out[b * 128 + j] = Float(i2sCode(p, block: b, j)) * scale }
            }
        }
    }

    /// Q6_K super-block: 128 bytes low nibbles, 64 bytes high 2-bit pairs, 16 int8 scales, f16 d.
    static func dequantizeQ6K(_ blk: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = f16(blk, 208)
        for half in 0..<2 {
            let ql = blk + half * 64, qh = blk + 128 + half * 32, sc = blk + 192 + half * 8, yy = y + half * 128
            for l in 0..<32 {
                let lo0 = ql.load(fromByteOffset: l, as: UInt8.self), lo1 = ql.load(fromByteOffset: l + 32, as: UInt8.self)
                let h = qh.load(fromByteOffset: l, as: UInt8.self)
                let q1 = Int((lo0 & 0xF) | ((h >> 0) & 3) << 4) - 32
                let q2 = Int((lo1 & 0xF) | ((h >> 2) & 3) << 4) - 32
                let q3 = Int((lo0 >> 4) | ((h >> 4) & 3) << 4) - 32
                let q4 = Int((lo1 >> 4) | ((h >> 6) & 3) << 4) - 32
                let s = { (k: Int) in Float(Int8(bitPattern: sc.load(fromByteOffset: l / 16 + k, as: UInt8.self))) }
                yy[l] = d * s(0) * Float(q1)
                yy[l + 32] = d * s(2) * Float(q2)
                yy[l + 64] = d * s(4) * Float(q3)
                yy[l + 96] = d * s(6) * Float(q4)
            }
        }
    }

    /// The 256 codes of a TQ1_0 block: 48 bytes of five base-3 digits (as fixed-point fractions), 4 bytes of four.
    static func tq1Codes(_ blk: UnsafeRawPointer, _ codes: inout [Int8]) {
        @inline(__always) func digit(_ byte: UInt8, _ n: Int) -> Int8 {
            let q = byte &* pow3[n]
            return Int8((UInt16(q) * 3) >> 8) - 1
        }
        var k = 0
        for n in 0..<5 { for m in 0..<32 { codes[k] = digit(blk.load(fromByteOffset: m, as: UInt8.self), n); k += 1 } }
        for n in 0..<5 { for m in 0..<16 { codes[k] = digit(blk.load(fromByteOffset: 32 + m, as: UInt8.self), n); k += 1 } }
        for n in 0..<4 { for j in 0..<4 { codes[k] = digit(blk.load(fromByteOffset: 48 + j, as: UInt8.self), n); k += 1 } }
    }

    /// Code of element j of I2_S block b: byte j%32 holds elements j, j+32, j+64, j+96 in bits 7-6, 5-4, 3-2, 1-0; 0/1/2 = -1/0/+1.
    /// A field of 3 gives 2, which is no ternary code: the model loaders reject it (as for TQ2_0).
    @inline(__always) static func i2sCode(_ p: UnsafeRawPointer, block b: Int, _ j: Int) -> Int8 {
        let byte = p.load(fromByteOffset: b * 32 + j % 32, as: UInt8.self)
        return Int8((byte >> (6 - 2 * UInt8(j / 32))) & 3) - 1
    }

    /// Ternary codes and one scale per block (TQ1_0, TQ2_0: 256 elements; I2_S: one scale for the tensor).
    package static func ternary(_ type: GGMLType, _ p: UnsafeRawPointer, count: Int) -> (codes: [Int8], blockScales: [Float], blockSize: Int) {
        var codes = [Int8](repeating: 0, count: count)
        switch type {
        case .tq2_0:
            var scales: [Float] = []
            for b in 0..<count / 256 {
                let blk = p + b * 66
                scales.append(f16(blk, 64))
                for j in stride(from: 0, to: 64, by: 32) {
                    for l in 0..<4 { for m in 0..<32 {
                        codes[b * 256 + j * 4 + l * 32 + m] = Int8((blk.load(fromByteOffset: j + m, as: UInt8.self) >> (2 * l)) & 3) - 1
                    } }
                }
            }
            return (codes, scales, 256)
        case .tq1_0:
            var scales: [Float] = []
            var c = [Int8](repeating: 0, count: 256)
            for b in 0..<count / 256 {
                tq1Codes(p + b * 54, &c)
                scales.append(f16(p + b * 54, 52))
                for i in 0..<256 { codes[b * 256 + i] = c[i] }
            }
            return (codes, scales, 256)
        case .i2_s:
            for b in 0..<count / 128 { for j in 0..<128 { codes[b * 128 + j] = i2sCode(p, block: b, j) } }
            let s = Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: count / 4, as: UInt32.self)))
            return (codes, [s], count)
        default:
            preconditionFailure("ternary() called on \(type.name)")
        }
    }

    /// Encodes values as `type` (`values.count` a whole number of blocks).
    package static func quantize(_ type: GGMLType, _ x: [Float]) -> Data {
        let n = x.count, nb = n / type.blockSize
        var out = Data(count: type.byteCount(elements: n) ?? 0)
        out.withUnsafeMutableBytes { raw in
            let o = raw.baseAddress!
            func putF16(_ v: Float, _ off: Int) { o.storeBytes(of: Float16(v).bitPattern.littleEndian, toByteOffset: off, as: UInt16.self) }
            switch type {
            case .f32: for i in 0..<n { o.storeBytes(of: x[i].bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
            case .f16: for i in 0..<n { putF16(x[i], 2 * i) }
            case .bf16: for i in 0..<n { o.storeBytes(of: floatToBF16(x[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
            case .q8_0:
                for b in 0..<nb {
                    let blk = o + b * 34
                    var amax: Float = 0
                    for j in 0..<32 { amax = max(amax, abs(x[b * 32 + j])) }
                    let d = amax / 127, id: Float = d != 0 ? 1 / d : 0
                    putF16(d, b * 34)
                    for j in 0..<32 { blk.storeBytes(of: Int8((x[b * 32 + j] * id).rounded()), toByteOffset: 2 + j, as: Int8.self) }
                }
            case .q4_0:
                for b in 0..<nb {
                    let blk = o + b * 18
                    var amax: Float = 0, mx: Float = 0
                    for j in 0..<32 where abs(x[b * 32 + j]) > amax { amax = abs(x[b * 32 + j]); mx = x[b * 32 + j] }
                    let d = mx / -8, id: Float = d != 0 ? 1 / d : 0
                    putF16(d, b * 18)
                    for j in 0..<16 {
                        let x0 = UInt8(min(15, Int8(x[b * 32 + j] * id + 8.5)))
                        let x1 = UInt8(min(15, Int8(x[b * 32 + 16 + j] * id + 8.5)))
                        blk.storeBytes(of: x0 | x1 << 4, toByteOffset: 2 + j, as: UInt8.self)
                    }
                }
            case .q6_K:
                for b in 0..<nb { quantizeQ6K(x, b * 256, o + b * 210) }
            case .tq2_0:
                for b in 0..<nb {
                    let blk = o + b * 66, xb = b * 256
                    var d: Float = 0
                    for j in 0..<256 { d = max(d, abs(x[xb + j])) }
                    let id: Float = d != 0 ? 1 / d : 0
                    for j in stride(from: 0, to: 64, by: 32) {
                        for m in 0..<32 {
                            var q: UInt8 = 0
                            for l in 0..<4 {
                                let xi = Int((x[xb + j * 4 + l * 32 + m] * id).rounded(.toNearestOrAwayFromZero)) + 1
                                q |= UInt8(xi & 3) << (2 * l)
                            }
                            blk.storeBytes(of: q, toByteOffset: j + m, as: UInt8.self)
                        }
                    }
                    putF16(d, b * 66 + 64)
                }
            case .tq1_0:
                for b in 0..<nb { quantizeTQ1(x, b * 256, o + b * 54) }
            case .i2_s:
                // bitnet.cpp: the scale is max|x|; a code is the sign of x, 0 when |x| < 1e-6.
                var mx: Float = 0
                for v in x { mx = max(mx, abs(v)) }
                for b in 0..<nb {
                    for j in 0..<128 {
                        let v = x[b * 128 + j]
                        let q: UInt8 = abs(v) < 1e-6 ? 1 : (v > 0 ? 2 : 0)
                        let off = b * 32 + j % 32
                        o.storeBytes(of: o.load(fromByteOffset: off, as: UInt8.self) | q << (6 - 2 * UInt8(j / 32)), toByteOffset: off, as: UInt8.self)
                    }
                }
                o.storeBytes(of: mx.bitPattern.littleEndian, toByteOffset: n / 4, as: UInt32.self)
            }
        }
        return out
    }

    /// TQ1_0 block: digits −1/0/1 → 0/1/2, five per byte (four in qh) as base-3 fractions rounded up, then f16 d = max|x|.
    static func quantizeTQ1(_ x: [Float], _ xb: Int, _ blk: UnsafeMutableRawPointer) {
        var d: Float = 0
        for j in 0..<256 { d = max(d, abs(x[xb + j])) }
        let id: Float = d != 0 ? 1 / d : 0
        @inline(__always) func digit(_ i: Int) -> Int { Int((x[xb + i] * id).rounded(.toNearestOrAwayFromZero)) + 1 }
        @inline(__always) func pack(_ q: Int) -> UInt8 { UInt8((q * 256 + 242) / 243) }  // ceiling division by 3^5
        for m in 0..<32 {
            var q = 0
            for n in 0..<5 { q = q * 3 + digit(m + n * 32) }
            blk.storeBytes(of: pack(q), toByteOffset: m, as: UInt8.self)
        }
        for m in 0..<16 {
            var q = 0
            for n in 0..<5 { q = q * 3 + digit(160 + m + n * 16) }
            blk.storeBytes(of: pack(q), toByteOffset: 32 + m, as: UInt8.self)
        }
        for j in 0..<4 {
            var q = 0
            for m in 0..<4 { q = q * 3 + digit(240 + j + m * 4) }
            blk.storeBytes(of: pack(q * 3), toByteOffset: 48 + j, as: UInt8.self)
        }
        blk.storeBytes(of: Float16(d).bitPattern.littleEndian, toByteOffset: 52, as: UInt16.self)
    }

    /// Q6_K block: 16 sub-blocks of 16 with a signed 6-bit quant each, an int8 scale per sub-block and an f16 super-scale.
    /// Scales are absmax-based (sub-block scale = max|x|/32 with its sign as ggml picks it), a valid encoding that
    /// any Q6_K reader decodes; it does not run ggml's iterative scale search.
    static func quantizeQ6K(_ x: [Float], _ xb: Int, _ blk: UnsafeMutableRawPointer) {
        var sub = [Float](repeating: 0, count: 16)
        var maxScale: Float = 0, maxAbsScale: Float = 0
        for s in 0..<16 {
            var amax: Float = 0, mx: Float = 0
            for j in 0..<16 where abs(x[xb + s * 16 + j]) > amax { amax = abs(x[xb + s * 16 + j]); mx = x[xb + s * 16 + j] }
            sub[s] = mx / -32
            if abs(sub[s]) > maxAbsScale { maxAbsScale = abs(sub[s]); maxScale = sub[s] }
        }
        let iscale: Float = maxAbsScale != 0 ? -128 / maxScale : 0
        let d = maxAbsScale != 0 ? 1 / iscale : 0
        var L = [UInt8](repeating: 0, count: 256)
        for s in 0..<16 {
            let sc = Int8(clamping: Int((iscale * sub[s]).rounded()).clamped(-128, 127))
            blk.storeBytes(of: sc, toByteOffset: 192 + s, as: Int8.self)
            let ds = Float(Float16(d)) * Float(sc)
            for j in 0..<16 {
                let q = ds != 0 ? Int((x[xb + s * 16 + j] / ds).rounded()) : 0
                L[s * 16 + j] = UInt8(q.clamped(-32, 31) + 32)
            }
        }
        for half in 0..<2 {
            for l in 0..<32 {
                let base = half * 128
                let q1 = L[base + l], q2 = L[base + l + 32], q3 = L[base + l + 64], q4 = L[base + l + 96]
                blk.storeBytes(of: (q1 & 0xF) | (q3 & 0xF) << 4, toByteOffset: half * 64 + l, as: UInt8.self)
                blk.storeBytes(of: (q2 & 0xF) | (q4 & 0xF) << 4, toByteOffset: half * 64 + l + 32, as: UInt8.self)
                blk.storeBytes(of: (q1 >> 4) | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6, toByteOffset: 128 + half * 32 + l, as: UInt8.self)
            }
        }
        blk.storeBytes(of: Float16(d).bitPattern.littleEndian, toByteOffset: 208, as: UInt16.self)
    }
}

extension Int {
    /// The value limited to lo...hi.
    func clamped(_ lo: Int, _ hi: Int) -> Int { Swift.min(Swift.max(self, lo), hi) }
}
