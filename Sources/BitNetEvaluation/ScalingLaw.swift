import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference
import BitNetTraining
import BitNetKernels

/// The scaling law with an irreducible loss term, L(N) = a·N^b + c (Eq. 13), fitted by least squares.
package struct ScalingFit: Codable, Sendable, Equatable {
    package var a: Double
    package var b: Double
    package var c: Double
    /// Root-mean-square residual of the fit over its points.
    package var rmse: Double

    /// L(N) (Eq. 13).
    package func predict(_ n: Double) -> Double { a * pow(n, b) + c }

    /// "L(N) = 12.3·N^-0.201 + 1.05".
    package var formula: String { String(format: "L(N) = %.4g·N^%.3f + %.3f", a, b, c) }

    /// Fits (N, L) points, N > 0. For a fixed c the model is linear in log space, log(L − c) = log a + b·log N,
    /// so the fit profiles c over [0, min L): each c gets its log-space line, and c minimizes the squared error in L
    /// (grid, then golden-section refinement). Needs at least 3 points (3 unknowns).
    package static func fit(_ points: [(n: Double, loss: Double)]) throws -> ScalingFit {
        guard points.count >= 3 else { throw BitNetError.invalidArgument("the scaling fit needs at least 3 points, got \(points.count)") }
        guard points.allSatisfy({ $0.n > 0 && $0.loss.isFinite && $0.n.isFinite }) else {
            throw BitNetError.invalidArgument("scaling points need N > 0 and finite losses")
        }
        let minL = points.map(\.loss).min()!
        let span = max(minL, 1e-12)
        // (a, b, sse) for a given c.
        func line(_ c: Double) -> (Double, Double, Double) {
            let xs = points.map { log($0.n) }, ys = points.map { log(max($0.loss - c, 1e-300)) }
            let k = Double(xs.count), mx = xs.reduce(0, +) / k, my = ys.reduce(0, +) / k
            var sxy = 0.0, sxx = 0.0
            for (x, y) in zip(xs, ys) { sxy += (x - mx) * (y - my); sxx += (x - mx) * (x - mx) }
            let b = sxx > 0 ? sxy / sxx : 0, a = exp(my - b * mx)
            let sse = points.reduce(0.0) { acc, p in let r = p.loss - (a * pow(p.n, b) + c); return acc + r * r }
            return (a, b, sse)
        }
        let hi = minL - span * 1e-9
        let lo = min(0, hi)
        let grid = 400
        var bestC = lo, bestSSE = Double.infinity
        for i in 0...grid {
            let c = lo + (hi - lo) * Double(i) / Double(grid)
            let sse = line(c).2
            if sse < bestSSE { bestSSE = sse; bestC = c }
        }
        // Golden-section search around the best grid cell.
        let step = (hi - lo) / Double(grid)
        var x0 = max(lo, bestC - step), x1 = min(hi, bestC + step)
        let g = (5.0.squareRoot() - 1) / 2
        var c1 = x1 - g * (x1 - x0), c2 = x0 + g * (x1 - x0)
        var f1 = line(c1).2, f2 = line(c2).2
        for _ in 0..<100 {
            if f1 < f2 { x1 = c2; c2 = c1; f2 = f1; c1 = x1 - g * (x1 - x0); f1 = line(c1).2 }
            else { x0 = c1; c1 = c2; f1 = f2; c2 = x0 + g * (x1 - x0); f2 = line(c2).2 }
        }
        let cBest = f1 < bestSSE || f2 < bestSSE ? (f1 < f2 ? c1 : c2) : bestC
        let (a, b, sse) = line(cBest)
        return ScalingFit(a: a, b: b, c: cBest, rmse: (sse / Double(points.count)).squareRoot())
    }
}
