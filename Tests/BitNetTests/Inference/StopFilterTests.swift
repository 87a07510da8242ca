import XCTest
@testable import BitNetInference

final class StopFilterTests: XCTestCase {
    /// Pushes pieces and returns what was released after each push, then the flush.
    func run(_ stops: [String], _ pieces: [String]) -> (out: [String], flush: String, matched: Bool) {
        var f = StopFilter(stops: stops)
        let out = pieces.map { f.push($0) }
        let flush = f.flush()
        return (out, flush, f.matched)
    }

    func testNoStopsPassesThrough() {
        let r = run([], ["a", "bc", ""])
        XCTAssertEqual(r.out, ["a", "bc", ""])
        XCTAssertEqual(r.flush, "")
    }

    func testCutsAtStopSplitOverPieces() {
        // "Hello\nUser: x": "\nUser:" arrives over three pieces; text before it is released, the stop never is.
        let r = run(["\nUser:"], ["Hello", "\nUs", "er: x"])
        XCTAssertEqual(r.out, ["Hello", "", ""])
        XCTAssertTrue(r.matched)
        XCTAssertEqual(r.flush, "")
    }

    func testHeldBackPrefixIsReleasedWhenItDoesNotMatch() {
        let r = run(["END"], ["abcE", "N", "x", "yz"])
        XCTAssertEqual(r.out, ["abc", "", "ENx", "yz"])
        XCTAssertFalse(r.matched)
        let r2 = run(["END"], ["abE"])
        XCTAssertEqual(r2.out, ["ab"])
        XCTAssertEqual(r2.flush, "E")
    }

    func testEarliestOfSeveralStopsWins() {
        let r = run(["cd", "b"], ["abcd"])
        XCTAssertEqual(r.out, ["a"])
        XCTAssertTrue(r.matched)
        let r2 = run(["xyz", "é!"], ["caf", "é!", "after"])
        XCTAssertEqual(r2.out, ["caf", "", ""])
        XCTAssertTrue(r2.matched)
    }
}
