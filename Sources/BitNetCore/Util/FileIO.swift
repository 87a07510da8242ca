import Foundation
import BitNetKernels

/// File helpers: atomic writes (temp file + rename) so a crash never leaves a half-written checkpoint.
package enum FileIO {
    /// Writes `data` to `url` atomically: a temporary file in the same folder, flushed, then renamed over the target.
    /// What is not a regular file is never replaced: a character device or FIFO (`/dev/null`, `/dev/stdout`, a pipe)
    /// is written in place, a symbolic link's target is written (the link stays), and a directory, block device or
    /// socket is refused.
    package static func writeAtomically(_ data: Data, to url: URL) throws {
        try writeAtomically([(data, url)])
    }

    /// Writes several files as one set: each to a temporary file first, and only when all of them are written and
    /// flushed are they renamed over their targets, in the order given. A failure (a full disk) leaves every target
    /// as it was, so a folder never holds files from two different saves.
    package static func writeAtomically(_ files: [(Data, URL)]) throws {
        var staged: [(tmp: String, target: String)] = [], inPlace: [(Data, String)] = []
        do {
            for (data, url) in files {
                switch try destination(url) {
                case .inPlace(let path): inPlace.append((data, path))
                case .replace(let path, let keepMode):
                    let tmp = temporaryName(for: path)
                    staged.append((tmp, path))
                    unlink(tmp)   // left by an earlier process that had this pid
                    try write(data, to: tmp, creating: keepMode ?? 0o666, reportAs: path)
                    if let keepMode { chmod(tmp, keepMode) }
                }
            }
        } catch {
            for s in staged { unlink(s.tmp) }
            throw error
        }
        for (i, s) in staged.enumerated() where rename(s.tmp, s.target) != 0 {
            let why = String(cString: strerror(errno))
            for r in staged[i...] { unlink(r.tmp) }
            throw BitNetError.unwritable(s.target, "cannot rename the written temporary file over it: \(why)")
        }
        for (data, path) in inPlace { try write(data, to: path, creating: nil, reportAs: path) }
    }

    /// The prefix of the temporary files this writer leaves only when killed mid-write (`.NAME.tmp-PID`).
    static func temporaryName(for path: String) -> String {
        let u = URL(fileURLWithPath: path)
        return u.deletingLastPathComponent().appendingPathComponent(".\(u.lastPathComponent).tmp-\(getpid())").path
    }

    /// Removes `.NAME.tmp-PID` files in `dir` whose writer is gone (a run killed mid-write); returns their names.
    @discardableResult
    package static func removeStaleTemporaries(in dir: URL) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        var removed: [String] = []
        for name in names where name.hasPrefix(".") {
            guard let r = name.range(of: ".tmp-", options: .backwards), let pid = Int32(name[r.upperBound...]), pid > 0 else { continue }
            if pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH { continue }   // its writer may still be running
            if unlink(dir.appendingPathComponent(name).path) == 0 { removed.append(name) }
        }
        return removed
    }

    /// `replace`: a new file renamed over the path, keeping the mode of the file it replaces (nil: a new file).
    enum Destination { case replace(String, keepMode: mode_t?), inPlace(String) }

    /// How a write to `url` proceeds, by what is there now (links followed).
    static func destination(_ url: URL) throws -> Destination {
        var path = url.path
        var st = stat()
        guard lstat(path, &st) == 0 else {
            try createDirectory(url.deletingLastPathComponent())
            return .replace(path, keepMode: nil)
        }
        if st.st_mode & S_IFMT == S_IFLNK {
            guard stat(path, &st) == 0 else { throw BitNetError.unwritable(path, "it is a symbolic link to nothing (\(String(cString: strerror(errno))))") }
            path = url.resolvingSymlinksInPath().path
        }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return .replace(path, keepMode: st.st_mode & 0o7777)
        case S_IFCHR, S_IFIFO: return .inPlace(path)
        case S_IFDIR: throw BitNetError.unwritable(path, "it is a directory, not a file")
        default: throw BitNetError.unwritable(path, "it is not a regular file (a block device or socket); refusing to replace it")
        }
    }

    /// Writes all of `data` with POSIX calls, so a failure carries the OS's reason (ENOSPC, EFBIG, EACCES). `creating`:
    /// a new file with that mode less the umask (flushed to disk), nil: an existing device or FIFO written in place.
    static func write(_ data: Data, to path: String, creating mode: mode_t?, reportAs target: String) throws {
        let fd = mode.map { open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, $0) } ?? open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let why = String(cString: strerror(errno))
            throw BitNetError.unwritable(target, mode == nil ? why : "cannot create \(path): \(why)")
        }
        var failure: String? = nil
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            var done = 0
            while done < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + done, min(raw.count - done, 1 << 30))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { failure = String(cString: strerror(n < 0 ? errno : EIO)); return }
                done += n
            }
        }
        if failure == nil, mode != nil, fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        if close(fd) != 0, failure == nil { failure = String(cString: strerror(errno)) }
        if let failure {
            if mode != nil { unlink(path) }
            throw BitNetError.unwritable(target, failure)
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
