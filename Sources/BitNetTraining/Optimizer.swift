import Foundation
import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetKernels

/// AdamW (decoupled weight decay), in PyTorch's formulation so a torch run takes the same steps.
package final class AdamW: @unchecked Sendable {
    package let beta1: Float, beta2: Float, eps: Float
    /// First and second moments, in parameter layout.
    package let m: FloatBuffer, v: FloatBuffer
    /// Number of updates taken (bias correction uses it).
    package var step = 0

    package init(count: Int, beta1: Float = 0.9, beta2: Float = 0.95, eps: Float = 1e-8) {
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps
        m = FloatBuffer(count); v = FloatBuffer(count)
    }

    /// One update of `params` from `grads` with learning rate `lr`; weight decay `wd` applies to the slots whose `decays` is set.
    package func update(params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, slots: [TensorSlot], lr: Float, wd: Float) {
        step += 1
        let bc1 = 1 - powf(beta1, Float(step)), bc2 = 1 - powf(beta2, Float(step))
        let stepSize = lr / bc1, bc2Sqrt = bc2.squareRoot()
        let (b1, b2, e) = (beta1, beta2, eps)
        let mp = m.ptr, vp = v.ptr
        // One parallel pass over all parameters (slots are contiguous); the decay factor comes from the slot.
        let total = slots.map { $0.offset + $0.count }.max() ?? 0
        let sorted = slots.sorted { $0.offset < $1.offset }
        let decayOf = sorted.map { $0.decays ? 1 - lr * wd : Float(1) }
        let bounds = sorted.map { $0.offset + $0.count }
        parallelRows(total, minRowsPerTask: 32768) { range in
            // The first slot overlapping this range.
            var si = 0
            while si < bounds.count && bounds[si] <= range.lowerBound { si += 1 }
            var i = range.lowerBound
            while i < range.upperBound && si < bounds.count {
                let end = min(bounds[si], range.upperBound), decay = decayOf[si]
                while i < end {
                    let g = grads[i]
                    let mi = b1 * mp[i] + (1 - b1) * g, vi = b2 * vp[i] + (1 - b2) * g * g
                    mp[i] = mi; vp[i] = vi
                    params[i] = params[i] * decay - stepSize * mi / (vi.squareRoot() / bc2Sqrt + e)
                    i += 1
                }
                si += 1
            }
        }
    }
}

/// Global gradient-norm clipping: scales all gradients so their L2 norm is at most `maxNorm`; returns the norm before.
@discardableResult
package func clipGradientNorm(_ grads: UnsafeMutablePointer<Float>, count: Int, maxNorm: Float) -> Float {
    var ss: Double = 0
    for i in 0..<count { ss += Double(grads[i]) * Double(grads[i]) }
    let norm = Float(ss.squareRoot())
    if maxNorm > 0 && norm > maxNorm {
        let s = maxNorm / (norm + 1e-6)
        for i in 0..<count { grads[i] *= s }
    }
    return norm
}

/// Learning-rate and weight-decay schedules (Sec. 2.2.3).
public enum Schedule: String, Codable, Sendable, CaseIterable {
    /// BitNet's two-stage recipe: stage 1 high LR with weight decay, stage 2 (second half) decayed LR and no weight decay.
    case twoStage = "two-stage"
    /// One stage: warm-up, cosine decay to 10 % of the peak, constant weight decay (the usual fp recipe).
    case cosine

    /// (learning rate, weight decay) at `step` (0-based) of `total`.
    /// Two-stage: linear warm-up to `lr`, linear decay to 0.8·lr at the midpoint; then from `lr2` linearly to 0, weight decay 0.
    package func values(step: Int, total: Int, warmup: Int, lr: Float, lr2: Float, weightDecay: Float) -> (lr: Float, wd: Float) {
        let t = Float(step)
        if step < warmup { return (lr * (t + 1) / Float(warmup), weightDecay) }
        switch self {
        case .twoStage:
            let mid = total / 2
            if step < mid {
                let frac = Float(step - warmup) / Float(max(mid - warmup, 1))
                return (lr * (1 - 0.2 * frac), weightDecay)
            }
            let frac = Float(step - mid) / Float(max(total - mid, 1))
            return (lr2 * (1 - frac), 0)
        case .cosine:
            let frac = Float(step - warmup) / Float(max(total - warmup, 1))
            let minLR = 0.1 * lr
            return (minLR + 0.5 * (lr - minLR) * (1 + cosf(Float.pi * min(frac, 1))), weightDecay)
        }
    }
}
