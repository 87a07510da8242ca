import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetKernels

/// One GGUF metadata value (the 13 value types of the GGUF spec; arrays hold values of one type).
package enum GGUFValue: Equatable, Sendable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case float32(Float), bool(Bool), string(String), uint64(UInt64), int64(Int64), float64(Double)
    /// An array: the element type id and the elements.
    case array(elementType: UInt32, [GGUFValue])

    /// GGUF value type ids.
    package enum TypeID: UInt32, Sendable {
        case uint8 = 0, int8, uint16, int16, uint32, int32, float32, bool, string, array, uint64, int64, float64
    }

    /// This value's type id.
    package var typeID: UInt32 {
        switch self {
        case .uint8: 0
        case .int8: 1
        case .uint16: 2
        case .int16: 3
        case .uint32: 4
        case .int32: 5
        case .float32: 6
        case .bool: 7
        case .string: 8
        case .array: 9
        case .uint64: 10
        case .int64: 11
        case .float64: 12
        }
    }

    /// Any integer value as Int (nil for other types or a UInt64 beyond Int.max).
    package var int: Int? {
        switch self {
        case .uint8(let v): Int(v)
        case .int8(let v): Int(v)
        case .uint16(let v): Int(v)
        case .int16(let v): Int(v)
        case .uint32(let v): Int(v)
        case .int32(let v): Int(v)
        case .uint64(let v): v <= UInt64(Int.max) ? Int(v) : nil
        case .int64(let v): Int(v)
        default: nil
        }
    }

    /// Any numeric value as Double.
    package var double: Double? {
        switch self {
        case .float32(let v): Double(v)
        case .float64(let v): v
        default: int.map(Double.init)
        }
    }

    /// The string of a string value.
    package var string: String? { if case .string(let s) = self { s } else { nil } }

    /// The elements of an array value.
    package var array: [GGUFValue]? { if case .array(_, let a) = self { a } else { nil } }
}

/// ggml tensor types that bitnet-swift reads and writes (ids of ggml.h; I2_S = 36 is bitnet.cpp's).
package enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q8_0 = 8, q6_K = 14, bf16 = 30, tq1_0 = 34, tq2_0 = 35, i2_s = 36

    /// The name llama.cpp prints (and `--type` accepts in lower case).
    package var name: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .q4_0: "Q4_0"
        case .q8_0: "Q8_0"
        case .q6_K: "Q6_K"
        case .bf16: "BF16"
        case .tq1_0: "TQ1_0"
        case .tq2_0: "TQ2_0"
        case .i2_s: "I2_S"
        }
    }

    /// Parses a user's spelling ("tq2_0", "F16", ...).
    package static func parse(_ s: String) -> GGMLType? { allCases.first { $0.name.lowercased() == s.lowercased() } }

    /// Elements per block.
    package var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: 1
        case .q4_0, .q8_0: 32
        case .q6_K, .tq1_0, .tq2_0: 256
        case .i2_s: 128
        }
    }

    /// Bytes per block (I2_S: the 32 bytes of 128 codes; its tensor adds one 32-byte scale record).
    package var blockBytes: Int {
        switch self {
        case .f32: 4
        case .f16, .bf16: 2
        case .q4_0: 18
        case .q8_0: 34
        case .q6_K: 210
        case .tq1_0: 54
        case .tq2_0: 66
        case .i2_s: 32
        }
    }

    /// True for the ternary types (codes in {-1, 0, 1} times a scale).
    package var isTernary: Bool { self == .tq1_0 || self == .tq2_0 || self == .i2_s }

    /// Bytes of a tensor of `elements` values; nil when `elements` is not a whole number of blocks.
    package func byteCount(elements: Int) -> Int? {
        guard elements >= 0, elements % blockSize == 0 else { return nil }
        let (b, o) = (elements / blockSize).multipliedReportingOverflow(by: blockBytes)
        guard !o else { return nil }
        // bitnet.cpp stores I2_S's float32 scale after the codes, padded to 32 bytes.
        return self == .i2_s ? b + 32 : b
    }
}

/// One tensor's entry in a GGUF file.
package struct GGUFTensorInfo: Sendable, Equatable {
    package let name: String
    /// ggml dimensions: `dims[0]` is the contiguous one (a [rows, cols] matrix has dims [cols, rows]).
    package let dims: [Int]
    package let type: GGMLType
    /// Offset of the data from the start of the data section.
    package let offset: Int
    /// Elements and bytes.
    package let count: Int, byteCount: Int
    /// Row-major shape (outermost first), as the rest of bitnet-swift writes shapes.
    package var shape: [Int] { dims.reversed() }
}

/// A parsed, validated GGUF file (versions 2 and 3, little-endian), its data memory-mapped.
package struct GGUFFile: @unchecked Sendable {
    package let path: String
    package let version: Int
    /// Metadata in file order.
    package let metadata: [(key: String, value: GGUFValue)]
    package let tensors: [GGUFTensorInfo]
    package let alignment: Int
    let data: Data
    package let dataStart: Int
    /// The mapping `data` borrows (files opened with `read`; nil for bytes parsed from memory).
    package private(set) var mapping: MappedFile?
    /// Long arrays under keys nothing reads: validated, then dropped from `metadata` (key, length).
    package fileprivate(set) var skippedArrays: [(key: String, count: Int)] = []
    private let keyIndex: [String: Int]
    private let tensorIndex: [String: Int]

    /// The value of a metadata key.
    package subscript(key: String) -> GGUFValue? { keyIndex[key].map { metadata[$0].value } }

    /// The entry of a named tensor.
    package func tensor(_ name: String) -> GGUFTensorInfo? { tensorIndex[name].map { tensors[$0] } }

    package func bad(_ field: String, _ problem: String) -> BitNetError { .invalidFormat(file: path, field: field, problem: problem) }

    /// Runs `body` on the raw bytes of a tensor (bounds were checked when the file was read).
    package func withBytes<R>(_ t: GGUFTensorInfo, _ body: (UnsafeRawPointer) throws -> R) rethrows -> R {
        try data.withUnsafeBytes { raw in try body(raw.baseAddress! + dataStart + t.offset) }
    }

    /// The raw bytes of a tensor.
    package func bytes(_ name: String) throws -> Data {
        guard let t = tensor(name) else { throw bad(name, "tensor missing") }
        let start = data.startIndex + dataStart + t.offset
        return data.subdata(in: start..<(start + t.byteCount))
    }

    /// A tensor dequantized to f32, in ggml order (row-major over `shape`).
    package func floats(_ name: String) throws -> [Float] {
        guard let t = tensor(name) else { throw bad(name, "tensor missing") }
        var out = [Float](repeating: 0, count: t.count)
        withBytes(t) { p in out.withUnsafeMutableBufferPointer { GGMLQuants.dequantize(t.type, p, count: t.count, into: $0.baseAddress!) } }
        return out
    }

    /// Parses and validates a GGUF file: magic, version, every count, string length, type, shape, offset and size
    /// against the file size. `maxMetadataBytes` bounds what metadata may allocate.
    package static func read(path: String) throws -> GGUFFile {
        let m = try MappedFile(path: path)
        var f = try parse(m.data, path: path)
        f.mapping = m
        return f
    }

    /// Parses GGUF bytes held in memory (`path` names them in errors).
    package static func parse(_ data: Data, path: String) throws -> GGUFFile {
        try data.withUnsafeBytes { raw in
            var parser = Parser(raw: raw, path: path)
            return try parser.parseFile(data: data)
        }
    }

    fileprivate init(path: String, version: Int, metadata: [(key: String, value: GGUFValue)], tensors: [GGUFTensorInfo],
                     alignment: Int, data: Data, dataStart: Int) {
        self.path = path; self.version = version; self.metadata = metadata; self.tensors = tensors
        self.alignment = alignment; self.data = data; self.dataStart = dataStart
        var ki: [String: Int] = [:]
        for (i, kv) in metadata.enumerated() { ki[kv.key] = i }
        keyIndex = ki
        var ti: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { ti[t.name] = i }
        tensorIndex = ti
    }
}

/// A bounds-checked little-endian cursor over the file; every read names the field it reads in errors.
private struct Parser {
    let raw: UnsafeRawBufferPointer
    let path: String
    var pos = 0
    static let maxArrayNesting = 3

    init(raw: UnsafeRawBufferPointer, path: String) { self.raw = raw; self.path = path }

    package func bad(_ field: String, _ problem: String) -> BitNetError { .invalidFormat(file: path, field: field, problem: problem) }
    var remaining: Int { raw.count - pos }

    // Field names are autoclosures: they are built only for an error message, not for each of a million array items.
    mutating func need(_ n: Int, _ field: @autoclosure () -> String) throws {
        guard n >= 0, n <= remaining else {
            throw bad(field(), "needs \(n) bytes at offset \(pos), the file has \(remaining) left (truncated?)")
        }
    }

    mutating func load<T: FixedWidthInteger>(_: T.Type, _ field: @autoclosure () -> String) throws -> T {
        try need(MemoryLayout<T>.size, field())
        let v = T(littleEndian: raw.loadUnaligned(fromByteOffset: pos, as: T.self))
        pos += MemoryLayout<T>.size
        return v
    }

    /// A u64 count that must fit the bytes left, `minBytesEach` per item.
    mutating func count(_ field: @autoclosure () -> String, minBytesEach: Int) throws -> Int {
        let n = try load(UInt64.self, field())
        guard n <= UInt64(remaining / max(minBytesEach, 1)) else {
            throw bad(field(), "count \(n) cannot fit in the \(remaining) bytes left")
        }
        return Int(n)
    }

    mutating func string(_ field: @autoclosure () -> String) throws -> String {
        let n = try load(UInt64.self, field() + " (string length)")
        guard n <= UInt64(remaining) else { throw bad(field(), "string length \(n) exceeds the \(remaining) bytes left") }
        let len = Int(n)
        let bytes = UnsafeRawBufferPointer(rebasing: raw[pos..<(pos + len)])
        pos += len
        guard let s = String(validating: bytes, as: UTF8.self) else { throw bad(field(), "string is not valid UTF-8") }
        return s
    }

    /// Steps over one value without keeping it (an unknown key's large array), checking its bounds and encoding.
    mutating func skip(type: UInt32, field: @autoclosure () -> String, depth: Int) throws {
        switch type {
        case 8: _ = try string(field())
        case 9: _ = try array(field: field(), depth: depth, keep: false)
        default:
            let size = Self.minBytes(type)
            try need(size, field())
            if type == 7, raw[pos] > 1 { throw bad(field(), "bool byte is \(raw[pos]), not 0 or 1") }
            pos += size
        }
    }

    /// Kept arrays longer than this are refused: the largest real ones (a 256k-token vocabulary, its merges) are well below.
    static let maxArrayLength = 1 << 21
    /// An array under a key nothing reads is skipped, not kept, when it is longer than this.
    static let maxUnusedArrayLength = 4096
    /// The keys whose arrays are read (the vocabulary); every other array is metadata nobody needs in bulk.
    static let usedArrayKeys: Set<String> = ["tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                                             "tokenizer.ggml.merges"]

    /// An array value: its element type, length and elements; `keep` false validates them and keeps none (nil).
    mutating func array(field: @autoclosure () -> String, depth: Int, keep: Bool) throws -> GGUFValue? {
        guard depth < Self.maxArrayNesting else { throw bad(field(), "arrays nested deeper than \(Self.maxArrayNesting)") }
        let et = try load(UInt32.self, field() + " (array type)")
        guard et <= 12 else { throw bad(field(), "unknown array element type \(et)") }
        let n = try count(field() + " (array length)", minBytesEach: Self.minBytes(et))
        guard keep else {
            for i in 0..<n { try skip(type: et, field: "\(field())[\(i)]", depth: depth + 1) }
            return nil
        }
        guard n <= Self.maxArrayLength else {
            throw bad(field(), "array of \(n) elements is longer than the \(Self.maxArrayLength) this reader accepts")
        }
        var items: [GGUFValue] = []
        items.reserveCapacity(n)
        for i in 0..<n { items.append(try value(type: et, field: "\(field())[\(i)]", depth: depth + 1)) }
        return .array(elementType: et, items)
    }

    /// Smallest encoding of one value of a type (bounds array counts before allocating).
    static func minBytes(_ type: UInt32) -> Int {
        switch type {
        case 0, 1, 7: 1
        case 2, 3: 2
        case 4, 5, 6: 4
        case 8: 8
        case 9: 12
        default: 8
        }
    }

    mutating func value(type: UInt32, field: @autoclosure () -> String, depth: Int = 0) throws -> GGUFValue {
        switch type {
        case 0: return .uint8(try load(UInt8.self, field()))
        case 1: return .int8(try load(Int8.self, field()))
        case 2: return .uint16(try load(UInt16.self, field()))
        case 3: return .int16(try load(Int16.self, field()))
        case 4: return .uint32(try load(UInt32.self, field()))
        case 5: return .int32(try load(Int32.self, field()))
        case 6: return .float32(Float(bitPattern: try load(UInt32.self, field())))
        case 7:
            let b = try load(UInt8.self, field())
            guard b <= 1 else { throw bad(field(), "bool byte is \(b), not 0 or 1") }
            return .bool(b == 1)
        case 8: return .string(try string(field()))
        case 9: return try array(field: field(), depth: depth, keep: true)!
        case 10: return .uint64(try load(UInt64.self, field()))
        case 11: return .int64(try load(Int64.self, field()))
        case 12: return .float64(Double(bitPattern: try load(UInt64.self, field())))
        default: throw bad(field(), "unknown value type \(type)")
        }
    }

    mutating func parseFile(data: Data) throws -> GGUFFile {
        guard raw.count >= 4 else { throw bad("magic", "file is \(raw.count) bytes, too short for a GGUF header") }
        let magic = try load(UInt32.self, "magic")
        guard magic == 0x4655_4747 else {  // "GGUF" read little-endian
            throw bad("magic", String(format: "0x%08x is not GGUF", magic))
        }
        let version = try load(UInt32.self, "version")
        if version == 1 { throw bad("version", "GGUF version 1 (32-bit counts) is not supported; re-save as version 3") }
        if version.byteSwapped == 2 || version.byteSwapped == 3 { throw bad("version", "big-endian GGUF is not supported") }
        guard version == 2 || version == 3 else { throw bad("version", "\(version) is not 2 or 3") }
        // Each tensor info takes at least 24 bytes, each key/value pair at least 12.
        let nTensors = try load(UInt64.self, "tensor_count")
        let nKV = try count("metadata_kv_count", minBytesEach: 12)
        guard nTensors <= UInt64(remaining / 24) else { throw bad("tensor_count", "\(nTensors) tensors cannot fit in the file") }
        var metadata: [(key: String, value: GGUFValue)] = []
        var skipped: [(key: String, count: Int)] = []
        var seen = Set<String>()
        for i in 0..<nKV {
            let key = try string("metadata key #\(i)")
            guard seen.insert(key).inserted else { throw bad(key, "duplicate metadata key") }
            let type = try load(UInt32.self, key + " (type)")
            if type == 9 && !Self.usedArrayKeys.contains(key) {
                // Peek at the length: a long array nothing reads is validated and dropped, not kept (~24 bytes an item).
                let start = pos
                _ = try load(UInt32.self, key + " (array type)")
                let n = try load(UInt64.self, key + " (array length)")
                pos = start
                if n > UInt64(Self.maxUnusedArrayLength) {
                    _ = try array(field: key, depth: 0, keep: false)
                    skipped.append((key, Int(n)))
                    continue
                }
            }
            metadata.append((key, try value(type: type, field: key)))
        }
        var alignment = 32
        if let a = metadata.first(where: { $0.key == "general.alignment" })?.value {
            guard let v = a.int, v > 0, v <= 1 << 16, v & (v - 1) == 0 else {
                throw bad("general.alignment", "\(a) is not a power of two up to 65536")
            }
            alignment = v
        }
        var infos: [(String, [Int], GGMLType, UInt64)] = []
        var names = Set<String>()
        for i in 0..<Int(nTensors) {
            let name = try string("tensor #\(i) name")
            guard names.insert(name).inserted else { throw bad(name, "duplicate tensor name") }
            let nd = try load(UInt32.self, name + " (n_dims)")
            guard (1...4).contains(nd) else { throw bad(name, "n_dims \(nd) is not in 1...4") }
            var dims: [Int] = []
            for d in 0..<Int(nd) {
                let v = try load(UInt64.self, "\(name) (dim \(d))")
                guard v >= 1, v <= 1 << 40 else { throw bad(name, "dimension \(d) is \(v)") }
                dims.append(Int(v))
            }
            let tRaw = try load(UInt32.self, name + " (type)")
            guard let type = GGMLType(rawValue: tRaw) else { throw bad(name, "ggml type \(tRaw) is not supported (F32, F16, BF16, Q8_0, Q6_K, Q4_0, TQ1_0, TQ2_0, I2_S are)") }
            let off = try load(UInt64.self, name + " (offset)")
            infos.append((name, dims, type, off))
        }
        // The data section starts at the next multiple of the alignment.
        let dataStart = (pos + alignment - 1) / alignment * alignment
        guard dataStart <= raw.count else { throw bad("data section", "starts at \(dataStart), past the end of the \(raw.count)-byte file") }
        let dataLen = raw.count - dataStart
        var tensors: [GGUFTensorInfo] = []
        for (name, dims, type, off) in infos {
            var count = 1
            for d in dims {
                let (p, o) = count.multipliedReportingOverflow(by: d)
                guard !o, p <= 1 << 40 else { throw bad(name, "shape \(dims) overflows") }
                count = p
            }
            guard dims[0] % type.blockSize == 0 else {
                throw bad(name, "row length \(dims[0]) is not a multiple of \(type.name)'s block of \(type.blockSize)")
            }
            guard let bytes = type.byteCount(elements: count) else { throw bad(name, "size of \(dims) \(type.name) overflows") }
            guard off % UInt64(alignment) == 0 else { throw bad(name, "offset \(off) is not aligned to \(alignment)") }
            guard off <= UInt64(dataLen), UInt64(bytes) <= UInt64(dataLen) - off else {
                // The end is named as offset + size: their sum can overflow (a hostile offset near 2^64).
                throw bad(name, "data at offset \(off), \(bytes) bytes, runs past the \(dataLen)-byte data section (truncated?)")
            }
            tensors.append(GGUFTensorInfo(name: name, dims: dims, type: type, offset: Int(off), count: count, byteCount: bytes))
        }
        var file = GGUFFile(path: path, version: Int(version), metadata: metadata, tensors: tensors, alignment: alignment,
                            data: data, dataStart: dataStart)
        file.skippedArrays = skipped
        return file
    }
}

/// Builds a GGUF version 3 file: metadata in insertion order, then tensor infos and aligned tensor data.
package struct GGUFWriter {
    package private(set) var metadata: [(key: String, value: GGUFValue)] = []
    private var tensors: [(name: String, dims: [Int], type: GGMLType, bytes: Data)] = []
    package let alignment: Int

    /// A writer whose data section is aligned to `alignment` bytes (written as `general.alignment` when not 32).
    package init(alignment: Int = 32) {
        self.alignment = alignment
        if alignment != 32 { metadata.append(("general.alignment", .uint32(UInt32(alignment)))) }
    }

    /// Adds (or replaces) a metadata value.
    package mutating func set(_ key: String, _ value: GGUFValue) {
        if let i = metadata.firstIndex(where: { $0.key == key }) { metadata[i].value = value } else { metadata.append((key, value)) }
    }

    /// Adds a tensor of row-major `shape` whose encoded bytes are `bytes` (checked against the type's size).
    package mutating func addTensor(name: String, shape: [Int], type: GGMLType, bytes: Data) throws {
        let count = shape.reduce(1, *)
        guard let need = type.byteCount(elements: count), need == bytes.count, let inner = shape.last, inner % type.blockSize == 0 else {
            throw BitNetError.shapeMismatch("\(name): \(shape) as \(type.name) needs rows of whole \(type.blockSize)-element blocks")
        }
        tensors.append((name, shape.reversed(), type, bytes))
    }

    /// Quantizes f32 values (row-major `shape`) to `type` and adds them.
    package mutating func addTensor(name: String, shape: [Int], type: GGMLType, values: [Float]) throws {
        guard let inner = shape.last, inner % type.blockSize == 0 else {
            throw BitNetError.shapeMismatch("\(name): row length \(shape.last ?? 0) is not a multiple of \(type.name)'s block of \(type.blockSize)")
        }
        try addTensor(name: name, shape: shape, type: type, bytes: GGMLQuants.quantize(type, values))
    }

    /// The file's bytes.
    package func serialize() -> Data {
        var out = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func str(_ s: String) { u64(UInt64(s.utf8.count)); out.append(contentsOf: Array(s.utf8)) }
        func val(_ v: GGUFValue) {
            switch v {
            case .uint8(let x): out.append(x)
            case .int8(let x): out.append(UInt8(bitPattern: x))
            case .uint16(let x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case .int16(let x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case .uint32(let x): u32(x)
            case .int32(let x): u32(UInt32(bitPattern: x))
            case .float32(let x): u32(x.bitPattern)
            case .bool(let x): out.append(x ? 1 : 0)
            case .string(let s): str(s)
            case .uint64(let x): u64(x)
            case .int64(let x): u64(UInt64(bitPattern: x))
            case .float64(let x): u64(x.bitPattern)
            case .array(let et, let items):
                u32(et); u64(UInt64(items.count))
                for i in items { val(i) }
            }
        }
        out.append(contentsOf: Array("GGUF".utf8))
        u32(3)
        u64(UInt64(tensors.count)); u64(UInt64(metadata.count))
        for kv in metadata { str(kv.key); u32(kv.value.typeID); val(kv.value) }
        var offset = 0
        for t in tensors {
            str(t.name); u32(UInt32(t.dims.count))
            for d in t.dims { u64(UInt64(d)) }
            u32(t.type.rawValue); u64(UInt64(offset))
            offset = (offset + t.bytes.count + alignment - 1) / alignment * alignment
        }
        func pad() { while out.count % alignment != 0 { out.append(0) } }
        pad()
        for t in tensors { out.append(t.bytes); pad() }
        return out
    }

    /// Writes the file atomically.
    package func write(to url: URL) throws { try FileIO.writeAtomically(serialize(), to: url) }
}
