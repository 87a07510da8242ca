import Foundation
import Synchronization
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference
import BitNetTraining
import BitNetEvaluation
import BitNetServer
import BitNetKernels

/// Does the pool hold up when the machine is oversubscribed? A decode-like loop of ternary GEMVs (several
/// dim x dim layers, as one token of a small model) timed on 1 thread and on all threads with and without the
/// oversubscription guard, first on a quiet process, then with `spinners` busy threads competing for the cores.
package enum ThreadPoolBenchmark {
    package struct Row: Sendable {
        package let label: String
        /// Median seconds per round (one GEMV per layer) for: 1 thread, N threads unguarded, N threads guarded.
        package let serial: Double, unguarded: Double, guarded: Double
    }

    /// Runs `repeats` alternations of the three pools for each load; returns one row per load (quiet, oversubscribed).
    package static func run(threads: Int, dim: Int = 2560, layers: Int = 8, rounds: Int = 200, repeats: Int = 5,
                           spinners: Int) -> [Row] {
        var seed: UInt64 = 0x9E3779B97F4A7C15
        func next() -> UInt64 { seed &+= 0x9E3779B97F4A7C15; var z = seed; z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9; return z ^ (z >> 31) }
        let mats = (0..<layers).map { _ in
            TernaryKernels.pack2bit(codes: (0..<(dim * dim)).map { _ in Int8(Int(next() % 3) - 1) }, rows: dim, cols: dim)
        }
        let x = (0..<dim).map { _ in Int8(truncatingIfNeeded: Int(next() % 255) - 127) }
        var y = [Int32](repeating: 0, count: dim)
        let pools = [ThreadPool(threadCount: 1), ThreadPool(threadCount: threads, oversubscriptionGuard: false),
                     ThreadPool(threadCount: threads)]
        func time(_ pool: ThreadPool) -> Double {
            let t0 = DispatchTime.now().uptimeNanoseconds
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    for _ in 0..<rounds { for m in mats { TernaryKernels.gemv(m, x: xp.baseAddress!, y: yp.baseAddress!, pool: pool) } }
                }
            }
            return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 / Double(rounds)
        }
        func measure(_ label: String) -> Row {
            var samples = [[Double]](repeating: [], count: 3)
            for _ in 0..<repeats { for (i, p) in pools.enumerated() { samples[i].append(time(p)) } }
            let med = samples.map { $0.sorted()[$0.count / 2] }
            return Row(label: label, serial: med[0], unguarded: med[1], guarded: med[2])
        }
        var rows = [measure("quiet")]
        // Busy threads (no pause, no sleep) that take the cores away from the pool's workers at random moments.
        let stop = StopFlag()
        let group = DispatchGroup()
        for _ in 0..<spinners {
            let t = Thread {
                var z: UInt64 = 1
                while !stop.flag.load(ordering: .relaxed) { z = z &* 6364136223846793005 &+ 1 }
                if z == 42 { print("") }   // keeps the loop from being optimized away
                group.leave()
            }
            group.enter()
            t.start()
        }
        rows.append(measure("oversubscribed (+\(spinners) busy threads)"))
        stop.flag.store(true, ordering: .relaxed)
        group.wait()
        return rows
    }
}

private final class StopFlag: Sendable {
    let flag = Atomic<Bool>(false)
}
