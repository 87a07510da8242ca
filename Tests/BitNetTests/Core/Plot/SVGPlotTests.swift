import XCTest
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

final class SVGPlotTests: XCTestCase {
    final class Counter: NSObject, XMLParserDelegate {
        var polylines = 0, texts: [String] = [], inText = false
        func parser(_ p: XMLParser, didStartElement e: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String]) {
            if e == "polyline" { polylines += 1 }
            if e == "text" { inText = true; texts.append("") }
        }
        func parser(_ p: XMLParser, foundCharacters s: String) { if inText { texts[texts.count - 1] += s } }
        func parser(_ p: XMLParser, didEndElement e: String, namespaceURI: String?, qualifiedName: String?) { if e == "text" { inText = false } }
    }

    func testLossPlotIsWellFormedWithOneLinePerSeries() {
        let rows = (1...50).map { LogRow(step: $0, tokens: $0 * 1000, lr: 1e-3, wd: 0.1, trainLoss: 5 - Float($0) * 0.05,
                                         valLoss: $0 % 10 == 0 ? 4.9 - Float($0) * 0.04 : nil, gradNorm: 1, tokensPerSecond: 1) }
        let svg = Trainer.lossPlot(runs: [(name: "bitnet-b1.58 <&>", log: rows), (name: "fp", log: rows)])
        let parser = XMLParser(data: Data(svg.utf8))
        let counter = Counter()
        parser.delegate = counter
        XCTAssertTrue(parser.parse(), "valid XML even with <&> in a name")
        XCTAssertEqual(counter.polylines, 4, "train + held-out for each run")
        XCTAssertTrue(counter.texts.contains("bitnet-b1.58 <&> held-out"))
        XCTAssertTrue(counter.texts.contains("50k"), "tick labels are human-readable: \(counter.texts)")
    }

    func testHumanNumbers() {
        XCTAssertEqual(SVGPlot.human(1_234_567), "1.23M")
        XCTAssertEqual(SVGPlot.human(81_920), "81.9k")
        XCTAssertEqual(SVGPlot.human(3.5), "3.5")
    }
}
