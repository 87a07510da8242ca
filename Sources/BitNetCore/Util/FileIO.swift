import Foundation
import BitNetKernels

/// File helpers: atomic writes (temp file + rename) so a crash never leaves a half-written checkpoint.
package enum FileIO {
    /// Writes `data` to `url` atomically: a temporary file in the same folder, flushed, then renamed over the target.
    package static func writeAtomically(_ data: Data, to url: URL) throws {
        let dir = url.deletingLastPathComponent()
        try createDirectory(dir)
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        _ = FileManager.default.createFile(atPath: tmp.path, contents: nil)
        guard let handle = try? FileHandle(forWritingTo: tmp) else {
            throw BitNetError.unwritable(url.path, "cannot create a file in \(dir.path)")
        }
        do {
            try handle.write(contentsOf: data)
            try handle.synchronize()
            try handle.close()
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw BitNetError.unwritable(url.path, "\(error.localizedDescription)")
        }
        if rename(tmp.path, url.path) != 0 {
            let why = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: tmp)
            throw BitNetError.unwritable(url.path, "rename failed: \(why)")
        }
    }

    /// Whether `dir` exists (false: nothing there yet); a file in its place is an error, so nothing replaces it.
    package static func isDirectory(_ dir: URL) throws -> Bool {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDirectory) else { return false }
        guard isDirectory.boolValue else { throw BitNetError.unwritable(dir.path, "it is a file, not a directory") }
        return true
    }

    /// Creates `dir` and its parents, or says why it cannot (a file in the way, no permission).
    package static func createDirectory(_ dir: URL) throws {
        if try isDirectory(dir) { return }
        do { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) }
        catch { throw BitNetError.unwritable(dir.path, "cannot create the directory (\(error.localizedDescription))") }
    }

    /// Writes a UTF-8 string atomically.
    package static func writeAtomically(_ text: String, to url: URL) throws {
        try writeAtomically(Data(text.utf8), to: url)
    }

    /// Reads a whole file, with a named error when it is missing or unreadable.
    package static func read(_ path: String) throws -> Data {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw BitNetError.fileNotFound(path) }
        if isDirectory.boolValue { throw BitNetError.unreadable(path, "it is a directory, not a file") }
        do { return try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) }
        catch { throw BitNetError.unreadable(path, "\(error.localizedDescription)") }
    }

    /// Reads a text file as UTF-8, failing on a missing or empty file and on one that is not text: invalid UTF-8
    /// or NUL bytes (a model, an archive, an image) would otherwise train or score on replacement characters.
    package static func readText(_ path: String) throws -> String {
        let data = try read(path)
        if data.isEmpty { throw BitNetError.emptyCorpus(path) }
        if let problem = notText(data) { throw BitNetError.invalidFormat(file: path, field: "text", problem: problem) }
        return String(decoding: data, as: UTF8.self)
    }

    /// Why `data` is not UTF-8 text (nil when it is): the count of invalid sequences and where the first one starts,
    /// or the first NUL byte.
    package static func notText(_ data: Data) -> String? {
        var invalid = 0, firstInvalid: Int?
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let bytes = raw.bindMemory(to: UInt8.self)
            var i = 0
            while i < bytes.count {
                let b = bytes[i]
                if b < 0x80 { i += 1; continue }
                // The length a lead byte announces, and the range its first continuation byte must fall in.
                let (n, lo, hi): (Int, UInt8, UInt8) = switch b {
                case 0xC2...0xDF: (2, 0x80, 0xBF)
                case 0xE0: (3, 0xA0, 0xBF)
                case 0xE1...0xEC, 0xEE...0xEF: (3, 0x80, 0xBF)
                case 0xED: (3, 0x80, 0x9F)
                case 0xF0: (4, 0x90, 0xBF)
                case 0xF1...0xF3: (4, 0x80, 0xBF)
                case 0xF4: (4, 0x80, 0x8F)
                default: (0, 0, 0)
                }
                var ok = n > 0 && i + n <= bytes.count && (lo...hi).contains(bytes[i + 1])
                if ok { for k in 2..<max(n, 2) where !(0x80...0xBF).contains(bytes[i + k]) { ok = false } }
                if ok { i += n } else { invalid += 1; firstInvalid = firstInvalid ?? i; i += 1 }
            }
        }
        if invalid > 0 {
            return "not UTF-8 text: \(invalid) invalid byte sequence\(invalid == 1 ? "" : "s"), the first at byte \(firstInvalid!)"
        }
        if let nul = data.firstIndex(of: 0) { return "not text: a NUL byte at byte \(nul - data.startIndex)" }
        return nil
    }
}

/// Writes to standard error (diagnostics never mix with generated text on standard output).
package func printError(_ s: String, terminator: String = "\n") {
    FileHandle.standardError.write(Data((s + terminator).utf8))
}
