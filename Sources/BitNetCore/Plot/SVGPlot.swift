import Foundation
import BitNetKernels

/// Minimal SVG line charts (loss curves, scaling curves): axes with ticks, one coloured line per series, a legend.
package enum SVGPlot {
    /// One named line.
    package struct Series: Sendable {
        package let name: String
        package let points: [(x: Double, y: Double)]
        package init(name: String, points: [(x: Double, y: Double)]) { self.name = name; self.points = points }
    }

    /// 1234567 → "1.23M", 81920 → "81.9k": tick labels people read at a glance.
    package static func human(_ v: Double) -> String {
        let a = abs(v)
        if a >= 1e9 { return String(format: "%.3gG", v / 1e9) }
        if a >= 1e6 { return String(format: "%.3gM", v / 1e6) }
        if a >= 1e4 { return String(format: "%.3gk", v / 1e3) }
        return String(format: "%.4g", v)
    }

    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

    /// Renders the series as an SVG document; `logX` uses a log10 x axis (for scaling plots).
    package static func lineChart(title: String, xLabel: String, yLabel: String, series: [Series],
                                 width: Double = 720, height: Double = 440, logX: Bool = false) -> String {
        let pts = series.flatMap { $0.points }.filter { $0.y.isFinite && $0.x.isFinite && (!logX || $0.x > 0) }
        let fx: (Double) -> Double = logX ? { log10($0) } : { $0 }
        var x0 = pts.map { fx($0.x) }.min() ?? 0, x1 = pts.map { fx($0.x) }.max() ?? 1
        var y0 = pts.map(\.y).min() ?? 0, y1 = pts.map(\.y).max() ?? 1
        if x1 <= x0 { x1 = x0 + 1 }
        if y1 <= y0 { y1 = y0 + 1 }
        let pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad
        if !logX { x0 = min(x0, 0) }
        let (l, r, t, b) = (70.0, 40.0, 40.0, 55.0)
        let pw = width - l - r, ph = height - t - b
        func sx(_ x: Double) -> Double { l + (fx(x) - x0) / (x1 - x0) * pw }
        func sy(_ y: Double) -> Double { t + (1 - (y - y0) / (y1 - y0)) * ph }
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(width / 2)" y="22" text-anchor="middle" font-size="15">\(esc(title))</text>
        <rect x="\(l)" y="\(t)" width="\(pw)" height="\(ph)" fill="none" stroke="#444"/>

        """
        for i in 0...5 {
            let yv = y0 + (y1 - y0) * Double(i) / 5, yy = sy(yv)
            s += "<line x1=\"\(l)\" y1=\"\(yy)\" x2=\"\(l + pw)\" y2=\"\(yy)\" stroke=\"#ddd\"/>"
            s += "<text x=\"\(l - 6)\" y=\"\(yy + 4)\" text-anchor=\"end\">\(String(format: "%.3g", yv))</text>\n"
            let xv = x0 + (x1 - x0) * Double(i) / 5, xx = l + Double(i) / 5 * pw
            let label = human(logX ? pow(10, xv) : xv)
            s += "<line x1=\"\(xx)\" y1=\"\(t + ph)\" x2=\"\(xx)\" y2=\"\(t + ph + 5)\" stroke=\"#444\"/>"
            s += "<text x=\"\(xx)\" y=\"\(t + ph + 18)\" text-anchor=\"middle\">\(label)</text>\n"
        }
        s += "<text x=\"\(l + pw / 2)\" y=\"\(height - 12)\" text-anchor=\"middle\">\(esc(xLabel))</text>\n"
        s += "<text transform=\"translate(18,\(t + ph / 2)) rotate(-90)\" text-anchor=\"middle\">\(esc(yLabel))</text>\n"
        for (i, ser) in series.enumerated() {
            let c = colors[i % colors.count]
            let p = ser.points.filter { $0.y.isFinite && (!logX || $0.x > 0) }
                .map { String(format: "%.1f,%.1f", sx($0.x), sy($0.y)) }.joined(separator: " ")
            s += "<polyline fill=\"none\" stroke=\"\(c)\" stroke-width=\"1.6\" points=\"\(p)\"/>\n"
            if ser.points.count <= 20 {
                for q in ser.points where q.y.isFinite { s += "<circle cx=\"\(sx(q.x))\" cy=\"\(sy(q.y))\" r=\"3\" fill=\"\(c)\"/>" }
            }
            let ly = t + 16 + Double(i) * 18
            s += "<line x1=\"\(l + pw - 190)\" y1=\"\(ly - 4)\" x2=\"\(l + pw - 165)\" y2=\"\(ly - 4)\" stroke=\"\(c)\" stroke-width=\"3\"/>"
            s += "<text x=\"\(l + pw - 160)\" y=\"\(ly)\">\(esc(ser.name))</text>\n"
        }
        s += "</svg>\n"
        return s
    }
}

extension SVGPlot {
    /// Grouped bar chart: one group per category, one bar per series value; `logY` draws log10 heights (energies).
    package static func barChart(title: String, yLabel: String, categories: [String], series: [(name: String, values: [Double])],
                                width: Double = 720, height: Double = 440, logY: Bool = false) -> String {
        let all = series.flatMap(\.values).filter { $0.isFinite && (!logY || $0 > 0) }
        let fy: (Double) -> Double = logY ? { log10($0) } : { $0 }
        var y0 = logY ? floor(all.map(fy).min() ?? 0) : 0, y1 = all.map(fy).max() ?? 1
        if y1 <= y0 { y1 = y0 + 1 }
        y1 += (y1 - y0) * 0.05
        if !logY { y0 = min(y0, 0) }
        let (l, r, t, b) = (80.0, 40.0, 40.0, 55.0)
        let pw = width - l - r, ph = height - t - b
        func sy(_ v: Double) -> Double { t + (1 - (fy(v) - y0) / (y1 - y0)) * ph }
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(width / 2)" y="22" text-anchor="middle" font-size="15">\(title)</text>
        <rect x="\(l)" y="\(t)" width="\(pw)" height="\(ph)" fill="none" stroke="#444"/>

        """
        for i in 0...5 {
            let yv = y0 + (y1 - y0) * Double(i) / 5, yy = t + (1 - Double(i) / 5) * ph
            s += "<line x1=\"\(l)\" y1=\"\(yy)\" x2=\"\(l + pw)\" y2=\"\(yy)\" stroke=\"#ddd\"/>"
            s += "<text x=\"\(l - 6)\" y=\"\(yy + 4)\" text-anchor=\"end\">\(String(format: "%.3g", logY ? pow(10, yv) : yv))</text>\n"
        }
        let groupW = pw / Double(max(categories.count, 1)), barW = groupW * 0.8 / Double(max(series.count, 1))
        for (ci, cat) in categories.enumerated() {
            let gx = l + Double(ci) * groupW + groupW * 0.1
            for (si, ser) in series.enumerated() where ci < ser.values.count && ser.values[ci].isFinite && (!logY || ser.values[ci] > 0) {
                let top = sy(ser.values[ci])
                s += "<rect x=\"\(gx + Double(si) * barW)\" y=\"\(top)\" width=\"\(barW * 0.95)\" height=\"\(max(t + ph - top, 0))\" fill=\"\(colors[si % colors.count])\"/>\n"
            }
            s += "<text x=\"\(gx + groupW * 0.4)\" y=\"\(t + ph + 18)\" text-anchor=\"middle\">\(cat)</text>\n"
        }
        s += "<text transform=\"translate(18,\(t + ph / 2)) rotate(-90)\" text-anchor=\"middle\">\(yLabel)</text>\n"
        for (i, ser) in series.enumerated() {
            let ly = t + 16 + Double(i) * 18
            s += "<rect x=\"\(l + 10)\" y=\"\(ly - 10)\" width=\"14\" height=\"10\" fill=\"\(colors[i % colors.count])\"/>"
            s += "<text x=\"\(l + 30)\" y=\"\(ly)\">\(ser.name)</text>\n"
        }
        return s + "</svg>\n"
    }
}
