#!/usr/bin/env bash
# Checks that decoding allocates nothing per token: runs `bitnet bench` with 8 and with 40 decode tokens under a
# malloc-counting LD_PRELOAD interposer and compares the totals (equal totals: zero allocations per token).
# Usage: scripts/check_decode_allocs.sh [bench flags...]   (default: --preset small --head f32)
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
gcc -O2 -shared -fPIC -o "$out/count_mallocs.so" scripts/tools/count_mallocs.c
swift build -c release --product bitnet >/dev/null
flags=("$@"); [ ${#flags[@]} -eq 0 ] && flags=(--preset small --head f32)
count() { LD_PRELOAD="$out/count_mallocs.so" .build/release/bitnet bench "${flags[@]}" --decode-tokens "$1" --prompts 2 --no-twin 2>&1 | sed -n 's/^MALLOC_CALLS //p'; }
a=$(count 8); b=$(count 40)
echo "malloc calls: $a with 8 decode tokens, $b with 40 -> $(( (b - a) / 32 )) per token (integer part)"
[ "$a" = "$b" ]
