/// The phases of one decoded token's forward pass, in forward order.
package enum DecodePhase: Int, CaseIterable, Sendable {
    case embedding, qkv, ropeAndCache, attention, wo, ffnUp, activation, ffnDown, residual, head

    /// Short name for tables.
    package var name: String {
        switch self {
        case .embedding: return "embedding"
        case .qkv: return "norm+Wq/Wk/Wv"
        case .ropeAndCache: return "RoPE+KV store"
        case .attention: return "attention"
        case .wo: return "SubLN+Wo"
        case .ffnUp: return "norm+W1/W3"
        case .activation: return "ReLU²/SwiGLU"
        case .ffnDown: return "SubLN+W2"
        case .residual: return "residual adds"
        case .head: return "norm+head"
        }
    }
}

/// Told where a session's one-token forward passes are (`InferenceSession.phaseObserver`): `begin` at the start of
/// each, then `end` after each phase. Prompts and batched steps (several rows) are not reported. `bench --profile`
/// times the phases with one.
package protocol DecodePhaseObserver: AnyObject {
    func begin()
    func end(_ phase: DecodePhase)
}

extension InferenceModel {
    /// Weight bytes a decoded token reads in `phase` (the linears of every layer, or the head); 0 for phases
    /// without weights.
    package func bytesPerToken(in phase: DecodePhase) -> Int {
        switch phase {
        case .qkv: return layers.reduce(0) { $0 + $1.wq.packedBytes + $1.wk.packedBytes + $1.wv.packedBytes }
        case .wo: return layers.reduce(0) { $0 + $1.wo.packedBytes }
        case .ffnUp: return layers.reduce(0) { $0 + $1.w1.packedBytes + $1.w3.packedBytes }
        case .ffnDown: return layers.reduce(0) { $0 + $1.w2.packedBytes }
        case .head: return head.bytes
        default: return 0
        }
    }
}
