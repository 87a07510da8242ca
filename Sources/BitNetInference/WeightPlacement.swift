import Foundation
import BitNetKernels
import BitNetCore

// Where a model's weights live in memory (arenas on 2 MiB pages), and the copies A/B benchmarks switch between.

extension InferenceModel {
    /// Whether `placeWeights` advises its arenas for 2 MiB pages: on unless BITNET_HUGE_PAGES=0.
    package static let hugePagesByDefault = ProcessInfo.processInfo.environment["BITNET_HUGE_PAGES"] != "0"

    /// Copies the weights that decoding streams (ternary and f16 linears, and the head and embedding in f16 or a
    /// block format) out of their arrays into `WeightArena`s: one per layer, in decode order, and one for the
    /// head/embedding, on 2 MiB pages with `hugePages`. Weights read from a file mapping stay there; f32 weights stay
    /// in arrays. With `moveArenas`, weights already in arenas are copied again (to switch page sizes). Every
    /// initializer, `setHeadFormat` and `setTernaryLayout` call this, so only a change of page size needs it. Not
    /// thread-safe: no session may decode meanwhile.
    package func placeWeights(hugePages: Bool = InferenceModel.hugePagesByDefault, moveArenas: Bool = false) {
        self.hugePages = hugePages
        for i in layers.indices { placeWeights(layer: i, moveArenas: moveArenas) }
        let tied = head === embedding
        let movable = [head, tied ? nil : embedding].compactMap { $0 }.filter { $0.isMovable(moveArenas) }
        guard !movable.isEmpty,
              let arena = WeightArena(capacity: WeightArena.bytesNeeded(movable.map(\.bytes)), hugePages: hugePages) else { return }
        if head.isMovable(moveArenas) { head = head.placed(in: arena) }
        if tied { embedding = head }
        else if embedding.isMovable(moveArenas) { embedding = embedding.placed(in: arena) }
    }

    /// `placeWeights` for the linears of layer i, into an arena of their own.
    func placeWeights(layer i: Int, moveArenas: Bool = false) {
        layers[i] = layers[i].placedInOwnArena(hugePages: hugePages, moveArenas: moveArenas)
    }

    /// Where the weights are: the arrays and arenas of every layer, the head and the embedding (see `restore`).
    package struct Placement {
        fileprivate let layers: [Layer], embedding: DenseMatrix, head: DenseMatrix
    }

    /// The current placement, to come back to with `restore` (A/B benchmarks of placements keep both in memory).
    package var placement: Placement { Placement(layers: layers, embedding: embedding, head: head) }

    /// Switches to a placement taken from this model (O(1): no copy).
    package func restore(_ p: Placement) {
        layers = p.layers; embedding = p.embedding; head = p.head
    }

    /// Bytes of weights in arenas, and how many of them the system backs with huge pages (from /proc/self/smaps).
    package var arenaStats: (bytes: Int, hugePageBytes: Int) {
        var seen = Set<ObjectIdentifier>(), bytes = 0, huge = 0
        for a in layers.flatMap({ $0.linears.flatMap(\.arenas) }) + [head.arena, embedding.arena].compactMap({ $0 })
        where seen.insert(ObjectIdentifier(a)).inserted {
            bytes += a.used; huge += a.hugePageBytes
        }
        return (bytes, huge)
    }

    /// Converts the ternary linears once into each of `layouts` and keeps every copy, so that `setTernaryLayout`
    /// then switches between them in O(1) (an A/B benchmark alternating layouts step by step). Costs the memory of
    /// each kept copy; the current layout stays set.
    package func keepTernaryLayouts(_ layouts: [TernaryLayout]) {
        let current = ternaryLayout
        keptLayouts = [current: layers]
        for layout in layouts where keptLayouts[layout] == nil {
            setTernaryLayout(layout)
            keptLayouts[layout] = layers
        }
        layers = keptLayouts[current]!
    }
}

extension InferenceModel.Layer {
    /// This layer with its linears copied into an arena of their own, as `placeWeights` does: a builder that places
    /// each layer as it makes it drops that layer's arrays at once instead of holding every layer twice.
    package func placedInOwnArena(hugePages: Bool = InferenceModel.hugePagesByDefault, moveArenas: Bool = false) -> InferenceModel.Layer {
        let sizes = linears.flatMap { $0.placeableSizes(moveArenas: moveArenas) }
        guard !sizes.isEmpty, let arena = WeightArena(capacity: WeightArena.bytesNeeded(sizes), hugePages: hugePages) else { return self }
        return with { $0.placed(in: arena, moveArenas: moveArenas) }
    }
}
