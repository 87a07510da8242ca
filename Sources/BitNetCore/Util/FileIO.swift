import Foundation
import BitNetKernels

/// File helpers: atomic writes (temp file + rename) so a crash never leaves a half-written checkpoint.
package enum FileIO {
    /// Writes `data` to `url` atomically: a temporary file in the same folder, flushed, then renamed over the target.
    package static func writeAtomically(_ data: Data, to url: URL) throws {
        let dir = url.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        _ = FileManager.default.createFile(atPath: tmp.path, contents: nil)
        guard let handle = try? FileHandle(forWritingTo: tmp) else {
            throw BitNetError.unreadable(tmp.path, "cannot create temporary file")
        }
        do {
            try handle.write(contentsOf: data)
            try handle.synchronize()
            try handle.close()
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw BitNetError.unreadable(url.path, "write failed: \(error)")
        }
        if rename(tmp.path, url.path) != 0 {
            let why = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: tmp)
            throw BitNetError.unreadable(url.path, "rename failed: \(why)")
        }
    }

    /// Writes a UTF-8 string atomically.
    package static func writeAtomically(_ text: String, to url: URL) throws {
        try writeAtomically(Data(text.utf8), to: url)
    }

    /// Reads a whole file, with a named error when it is missing or unreadable.
    package static func read(_ path: String) throws -> Data {
        guard FileManager.default.fileExists(atPath: path) else { throw BitNetError.fileNotFound(path) }
        do { return try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) }
        catch { throw BitNetError.unreadable(path, "\(error.localizedDescription)") }
    }

    /// Reads a text corpus as UTF-8 (invalid sequences replaced), failing on a missing or empty file.
    package static func readText(_ path: String) throws -> String {
        let data = try read(path)
        if data.isEmpty { throw BitNetError.emptyCorpus(path) }
        return String(decoding: data, as: UTF8.self)
    }
}

/// Writes to standard error (diagnostics never mix with generated text on standard output).
package func printError(_ s: String, terminator: String = "\n") {
    FileHandle.standardError.write(Data((s + terminator).utf8))
}
