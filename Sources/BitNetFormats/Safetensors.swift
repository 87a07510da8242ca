import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetKernels

/// Reader and writer of the safetensors format: u64 little-endian header length, a JSON header
/// {name: {dtype, shape, data_offsets}, "__metadata__": {string: string}}, then the raw little-endian data.
package enum Safetensors {
    /// One tensor's entry in the header.
    package struct Entry: Sendable {
        package let name: String
        package let dtype: String
        package let shape: [Int]
        package let begin: Int, end: Int
    }

    /// A parsed file: its entries, metadata and the bytes (memory-mapped).
    package struct File: @unchecked Sendable {
        package let path: String
        package let entries: [String: Entry]
        package let metadata: [String: String]
        let data: Data
        let dataStart: Int

        /// The tensor `name` as f32 (F32, F16 and BF16 are converted), with a named error when absent or mistyped.
        package func floats(_ name: String) throws -> [Float] {
            guard let e = entries[name] else { throw BitNetError.invalidFormat(file: path, field: name, problem: "tensor missing") }
            guard ["F32", "F16", "BF16", "I32", "U8"].contains(e.dtype) else {
                throw BitNetError.invalidFormat(file: path, field: name, problem: "dtype \(e.dtype) cannot be read as numbers here")
            }
            let count = e.shape.reduce(1, *)
            return data.withUnsafeBytes { raw -> [Float] in
                let base = raw.baseAddress! + dataStart + e.begin
                var out = [Float](repeating: 0, count: count)
                switch e.dtype {
                case "F32":
                    for i in 0..<count { out[i] = Float(bitPattern: base.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian) }
                case "F16":
                    for i in 0..<count { out[i] = Float(Float16(bitPattern: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian)) }
                case "BF16":
                    for i in 0..<count { out[i] = Float(bitPattern: UInt32(base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) << 16) }
                case "I32":
                    for i in 0..<count { out[i] = Float(Int32(bitPattern: base.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian)) }
                case "U8":
                    for i in 0..<count { out[i] = Float(base.load(fromByteOffset: i, as: UInt8.self)) }
                default: break
                }
                return out
            }
        }

        /// The raw little-endian bytes of tensor `name`.
        package func rawBytes(_ name: String) throws -> Data {
            guard let e = entries[name] else { throw BitNetError.invalidFormat(file: path, field: name, problem: "tensor missing") }
            let start = data.startIndex + dataStart + e.begin
            return data.subdata(in: start..<(start + e.end - e.begin))
        }

        /// The tensor `name` as Int32 values (I32 only).
        package func ints(_ name: String) throws -> [Int32] {
            guard let e = entries[name], e.dtype == "I32" else {
                throw BitNetError.invalidFormat(file: path, field: name, problem: "I32 tensor missing")
            }
            let count = e.shape.reduce(1, *)
            return data.withUnsafeBytes { raw in
                (0..<count).map { Int32(bitPattern: raw.loadUnaligned(fromByteOffset: dataStart + e.begin + 4 * $0, as: UInt32.self).littleEndian) }
            }
        }
    }

    static let dtypeSizes: [String: Int] = ["F32": 4, "F16": 2, "BF16": 2, "I32": 4, "I64": 8, "U8": 1, "I8": 1, "F64": 8, "I16": 2, "U16": 2, "BOOL": 1]

    /// Parses and validates a safetensors file: header size, JSON, dtypes, shapes and offsets against the file size.
    /// Whether the file starts as safetensors does: an 8-byte little-endian header length that fits the file, then
    /// `{` (the JSON header). Tells a model file from any other file before it is parsed.
    package static func hasHeader(path: String) -> Bool {
        guard let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        guard let head = try? h.read(upToCount: 9), head.count == 9, let size = try? h.seekToEnd() else { return false }
        let length = head.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        return length <= size - 8 && head[head.startIndex + 8] == UInt8(ascii: "{")
    }

    package static func read(path: String) throws -> File {
        let data = try FileIO.read(path)
        func bad(_ field: String, _ problem: String) -> BitNetError { .invalidFormat(file: path, field: field, problem: problem) }
        guard data.count >= 8 else { throw bad("header", "file is \(data.count) bytes, shorter than the 8-byte header length") }
        let headerLen = data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self).littleEndian }
        guard headerLen <= UInt64(data.count - 8) else { throw bad("header length", "\(headerLen) exceeds the file size \(data.count)") }
        guard headerLen <= 100_000_000 else { throw bad("header length", "\(headerLen) bytes is implausibly large") }
        let hl = Int(headerLen)
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + hl))) }
        catch { throw bad("header", "not valid JSON (\(error.localizedDescription))") }
        guard let dict = json as? [String: Any] else { throw bad("header", "not a JSON object") }
        let dataStart = 8 + hl
        let dataLen = data.count - dataStart
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in dict {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw bad("__metadata__", "not an object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw bad("__metadata__.\(k)", "value is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let t = value as? [String: Any], let dtype = t["dtype"] as? String,
                  let shapeAny = t["shape"] as? [Any], let offAny = t["data_offsets"] as? [Any], offAny.count == 2
            else { throw bad(name, "entry lacks dtype, shape or data_offsets") }
            guard let size = dtypeSizes[dtype] else { throw bad(name, "unknown dtype \(dtype)") }
            var shape: [Int] = []
            for d in shapeAny {
                guard let n = (d as? NSNumber)?.intValue, n >= 0, n < 1 << 40 else { throw bad(name, "bad dimension \(d)") }
                shape.append(n)
            }
            guard let b = (offAny[0] as? NSNumber)?.intValue, let e = (offAny[1] as? NSNumber)?.intValue,
                  b >= 0, e >= b, e <= dataLen else { throw bad(name, "data_offsets \(offAny) outside the \(dataLen) data bytes") }
            var elements = 1
            for d in shape {
                let (p, o) = elements.multipliedReportingOverflow(by: d)
                guard !o else { throw bad(name, "shape \(shape) overflows") }
                elements = p
            }
            let (bytes, o) = elements.multipliedReportingOverflow(by: size)
            guard !o, bytes == e - b else { throw bad(name, "shape \(shape) of \(dtype) needs \(bytes) bytes, offsets give \(e - b)") }
            entries[name] = Entry(name: name, dtype: dtype, shape: shape, begin: b, end: e)
        }
        return File(path: path, entries: entries, metadata: metadata, data: data, dataStart: dataStart)
    }

    /// A tensor to write: F32 from floats or I32 from ints.
    package enum Payload {
        case f32([Float])
        case f32Pointer(UnsafePointer<Float>, Int)
        case i32([Int32])
        /// Already encoded bytes of a dtype ("BF16", "U8", ...).
        case raw(String, Data)
    }

    /// Serializes tensors (in the given order) and string metadata; the header is padded to 8 bytes.
    package static func serialize(_ tensors: [(name: String, shape: [Int], payload: Payload)], metadata: [String: String]) -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for t in tensors {
            let (dtype, bytes): (String, Int)
            switch t.payload {
            case .f32(let a): (dtype, bytes) = ("F32", a.count * 4)
            case .f32Pointer(_, let n): (dtype, bytes) = ("F32", n * 4)
            case .i32(let a): (dtype, bytes) = ("I32", a.count * 4)
            case .raw(let d, let b): (dtype, bytes) = (d, b.count)
            }
            header[t.name] = ["dtype": dtype, "shape": t.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
            offset += bytes
        }
        var json = (try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])) ?? Data("{}".utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for t in tensors {
            switch t.payload {
            case .f32(let a): a.withUnsafeBytes { out.append(contentsOf: $0) }
            case .f32Pointer(let p, let n): out.append(UnsafeBufferPointer(start: p, count: n))
            case .i32(let a): a.withUnsafeBytes { out.append(contentsOf: $0) }
            case .raw(_, let b): out.append(b)
            }
        }
        return out
    }
}
