/// The time a training run still needs, all of it: the steps left at the measured step time, the curve evaluations
/// and checkpoints still due at their measured costs, and the final whole-set evaluation. Progress lines that divide
/// the steps left by the rate so far miss the evaluations and checkpoints not yet seen (and the last ones always).
package struct TrainingETA: Sendable {
    package let lastStep: Int           // where this call stops (`--stop-after`, else the schedule's end)
    package let scheduleSteps: Int      // the schedule's end: the final whole-set evaluation runs only there
    package let evalEvery: Int, checkpointEvery: Int
    package let curveWindows: Int       // windows of one curve point
    package let heldOutWindows: Int     // windows of the final evaluation
    package let checkpointBytes: Int    // what one checkpoint writes (model, optimizer state, log)
    package let batchSize: Int

    private var stepSeconds = 0.0, stepsTimed = 0
    /// Measured by the first curve evaluation; until then a window is taken to cost a third of a training sequence.
    package var secondsPerWindow: Double?
    /// Measured by the first checkpoint; until then the bytes at 200 MB/s, a slow disk's rate.
    package var checkpointSeconds: Double?

    package init(lastStep: Int, scheduleSteps: Int, evalEvery: Int, checkpointEvery: Int, curveWindows: Int,
                 heldOutWindows: Int, checkpointBytes: Int, batchSize: Int) {
        self.lastStep = lastStep; self.scheduleSteps = scheduleSteps; self.evalEvery = evalEvery
        self.checkpointEvery = checkpointEvery; self.curveWindows = min(curveWindows, heldOutWindows)
        self.heldOutWindows = heldOutWindows; self.checkpointBytes = checkpointBytes; self.batchSize = batchSize
    }

    package mutating func recordStep(seconds: Double) { stepSeconds += seconds; stepsTimed += 1 }

    /// Multiples of `every` in (step, last].
    static func due(every: Int, after step: Int, through last: Int) -> Int { every > 0 ? last / every - step / every : 0 }

    /// Seconds from the end of `step` to the end of the call (0 before any step is timed).
    package func remaining(after step: Int) -> Double {
        guard stepsTimed > 0, step < lastStep else { return 0 }
        let perStep = stepSeconds / Double(stepsTimed)
        let perWindow = secondsPerWindow ?? perStep / Double(max(batchSize, 1)) / 3
        let perCheckpoint = checkpointSeconds ?? Double(checkpointBytes) / 200e6
        let reachesEnd = lastStep == scheduleSteps
        // A curve point at every multiple of evalEvery and at the schedule's last step; a checkpoint at every multiple
        // of checkpointEvery and at the call's last step.
        var evals = Self.due(every: evalEvery, after: step, through: lastStep)
        if reachesEnd && !(evalEvery > 0 && scheduleSteps % evalEvery == 0) { evals += 1 }
        var checkpoints = Self.due(every: checkpointEvery, after: step, through: lastStep)
        if !(checkpointEvery > 0 && lastStep % checkpointEvery == 0) { checkpoints += 1 }
        return Double(lastStep - step) * perStep + Double(evals * curveWindows) * perWindow
            + (reachesEnd ? Double(heldOutWindows) * perWindow : 0) + Double(checkpoints) * perCheckpoint
    }
}
