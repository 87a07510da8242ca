/// Runs `body` once on every distinct path a kernel family can select on this CPU (`select` returns the path in
/// effect, so an unsupported name falls back to one already seen), then restores the path that was active.
func forEachSelectableISA(_ names: [String], active: String, select: (String) -> String, _ body: (String) -> Void) -> Set<String> {
    defer { _ = select(active) }
    var seen = Set<String>()
    for name in names {
        let got = select(name)
        if seen.insert(got).inserted { body(got) }
    }
    return seen
}
