import XCTest
import Foundation
@testable import BitNetCore

/// Writes never replace what is not a regular file, keep a replaced file's mode, write a set all or nothing, and
/// name the path and the OS's reason when they fail.
final class FileIOTests: XCTestCase {
    func fileType(_ path: String) -> mode_t {
        var st = stat()
        XCTAssertEqual(lstat(path, &st), 0, path)
        return st.st_mode & S_IFMT
    }

    func testDevicesAreWrittenInPlaceAndLinksKept() throws {
        try FileIO.writeAtomically(Data("discarded".utf8), to: URL(fileURLWithPath: "/dev/null"))
        XCTAssertEqual(fileType("/dev/null"), S_IFCHR, "/dev/null is still a device")
        XCTAssertThrowsError(try FileIO.writeAtomically(Data("x".utf8), to: URL(fileURLWithPath: "/dev/full"))) { error in
            XCTAssertEqual("\(error)", "cannot write /dev/full: No space left on device")
        }
        XCTAssertEqual(fileType("/dev/full"), S_IFCHR)

        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let target = dir.appendingPathComponent("target.bin"), link = dir.appendingPathComponent("link.bin")
        try Data("old".utf8).write(to: target)
        XCTAssertEqual(chmod(target.path, 0o600), 0)
        XCTAssertEqual(symlink(target.path, link.path), 0)
        try FileIO.writeAtomically(Data("new".utf8), to: link)
        XCTAssertEqual(fileType(link.path), S_IFLNK, "the link stays a link")
        XCTAssertEqual(try String(contentsOf: target, encoding: .utf8), "new", "its target gets the data")
        var st = stat()
        XCTAssertEqual(stat(target.path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600, "the replaced file keeps its mode")

        XCTAssertThrowsError(try FileIO.writeAtomically(Data("x".utf8), to: dir)) { error in
            XCTAssertEqual("\(error)", "cannot write \(dir.path): it is a directory, not a file")
        }
        let dangling = dir.appendingPathComponent("dangling")
        XCTAssertEqual(symlink(dir.appendingPathComponent("nowhere/x").path, dangling.path), 0)
        XCTAssertThrowsError(try FileIO.writeAtomically(Data("x".utf8), to: dangling)) { error in
            XCTAssertTrue("\(error)".contains("a symbolic link to nothing"), "\(error)")
        }
    }

    /// A set is all or nothing: when one file cannot be written, none of the others is replaced and no temporary stays.
    func testASetIsWrittenWhole() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a.txt"), b = dir.appendingPathComponent("b.txt")
        try Data("a0".utf8).write(to: a)
        try Data("b0".utf8).write(to: b)
        let blocked = dir.appendingPathComponent("a.txt/inside.txt")   // a file where a folder would be
        XCTAssertThrowsError(try FileIO.writeAtomically([(Data("a1".utf8), a), (Data("x".utf8), blocked), (Data("b1".utf8), b)]))
        XCTAssertEqual(try String(contentsOf: a, encoding: .utf8), "a0")
        XCTAssertEqual(try String(contentsOf: b, encoding: .utf8), "b0")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["a.txt", "b.txt"])
        try FileIO.writeAtomically([(Data("a1".utf8), a), (Data("b1".utf8), b)])
        XCTAssertEqual(try String(contentsOf: a, encoding: .utf8) + (try String(contentsOf: b, encoding: .utf8)), "a1b1")
    }

    /// Temporary files of a writer that is gone are removed; a live writer's (this process's) are left alone.
    func testStaleTemporariesAreRemoved() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let deadPid = pidOfNoProcess()
        let names = [".model.safetensors.tmp-\(deadPid)", ".log.csv.tmp-\(getpid())", "model.safetensors", ".hidden"]
        for n in names { try Data("x".utf8).write(to: dir.appendingPathComponent(n)) }
        XCTAssertEqual(FileIO.removeStaleTemporaries(in: dir), [".model.safetensors.tmp-\(deadPid)"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), Array(names.dropFirst()).sorted())
    }
}
