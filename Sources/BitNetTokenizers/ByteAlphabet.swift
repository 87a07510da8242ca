import Foundation

// MARK: - GPT-2 byte <-> unicode alphabet

extension ByteLevelBPE {
    /// GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes map to
    /// themselves, the others (in byte order) to U+0100, U+0101, ...
    fileprivate static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// Inverse of `byteToScalar`, indexed by scalar value (-1: not in the alphabet).
    fileprivate static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 512)
        for (b, s) in byteToScalar.enumerated() { table[Int(s.value)] = Int16(b) }
        return table
    }()

    static func byteLevelString(_ bytes: [UInt8]) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(byteToScalar[Int(b)]) }
        return String(s)
    }

    static func bytes(ofByteLevelString s: String) -> [UInt8]? {
        var out: [UInt8] = []
        for u in s.unicodeScalars {
            guard u.value < 512 else { return nil }
            let b = scalarToByte[Int(u.value)]
            guard b >= 0 else { return nil }
            out.append(UInt8(b))
        }
        return out
    }
}
