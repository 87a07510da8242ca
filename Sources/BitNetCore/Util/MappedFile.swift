import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
import BitNetKernels
#endif

/// A whole regular file mapped read-only (PROT_READ, MAP_PRIVATE), unmapped when the last holder goes away.
/// Models keep it alive to serve tensors straight from the page cache.
package final class MappedFile: @unchecked Sendable {
    package let path: String
    /// Size of the file in bytes.
    package let count: Int
    /// Start of the mapping (nil for an empty file).
    package let base: UnsafeRawPointer?

    /// Maps `path`; throws for a missing, unreadable or non-regular file.
    package init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            if errno == ENOENT { throw BitNetError.fileNotFound(path) }
            throw BitNetError.unreadable(path, String(cString: strerror(errno)))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw BitNetError.unreadable(path, String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw BitNetError.unreadable(path, "not a regular file") }
        self.path = path
        count = Int(st.st_size)
        if count == 0 { base = nil; return }
        let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw BitNetError.unreadable(path, "mmap failed: \(String(cString: strerror(errno)))") }
        base = UnsafeRawPointer(p)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), count) }
    }

    /// The file's bytes as Data that borrows the mapping (valid while this object lives).
    package var data: Data {
        guard let base else { return Data() }
        return Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: base), count: count, deallocator: .none)
    }
}
