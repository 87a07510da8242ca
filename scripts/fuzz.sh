#!/usr/bin/env bash
# Fuzzes every loader a user can point the tool at with libFuzzer (swiftc -sanitize=fuzzer,address), run by hand:
#   scripts/fuzz.sh [SECONDS_PER_HARNESS] [HARNESS...]   (default: 120 s, every harness)
# Harnesses (Tests/BitNetTests/Formats/FuzzTargets.swift, which docs/TESTING.md describes): parsers tokenizer-json
# hf-model llama2c-model llama2c-tokenizer model-file checkpoint gguf-vocab gguf-model chat-template.
# Build: the sources of BitNetKernels, BitNetCore, BitNetTokenizers, BitNetFormats, BitNetInference and BitNetTraining
# compiled as one Swift module (their `import BitNet…` lines dropped) with FuzzTargets.swift and fuzz/FuzzMain.swift;
# the C kernels by clang with ASan. Seeds: the repository's fixtures, ../shared/data/stories260K (small or truncated),
# the seeds FuzzTargets writes with the project's writers, and the kept corpus. After each run the corpus is merged
# (minimized) into Tests/BitNetTests/Fixtures/fuzz/<harness>/ (its smallest inputs, 64 KB each and 256 KB in all at
# most: the big fixtures seed every run) and crashers are copied to .../<harness>/crashers/; FuzzCorpusReplayTests replays both on `swift test`.
# Limits: -timeout=10 (a hang), -rss_limit_mb=2048 -malloc_limit_mb=2048 (a huge allocation). LeakSanitizer is off
# (Foundation keeps buffers alive on Linux).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
SECS=${1:-120}
shift || true
OUT=${BITNET_FUZZ_BUILD:-.build-fuzz}   # another folder (.build-fuzz-2) lets two runs share the machine, one harness list each
FIX=Tests/BitNetTests/Fixtures
KEEP=$FIX/fuzz
SHARED=../shared/data/stories260K
mkdir -p $OUT/src $OUT/cmod $OUT/obj

# --- build (one binary; BITNET_FUZZ_HARNESS picks the harness) ---
rm -f $OUT/src/*.swift $OUT/obj/*.o
for t in BitNetKernels BitNetCore BitNetTokenizers BitNetFormats BitNetInference BitNetTraining; do
  for f in $(find Sources/$t -name '*.swift'); do grep -v '^\(@testable \)\?import BitNet' "$f" > "$OUT/src/${t}_$(basename "$f")"; done
done
grep -v '^\(@testable \)\?import BitNet' Tests/BitNetTests/Formats/FuzzTargets.swift > $OUT/src/FuzzTargets.swift
printf 'module CBitNetKernels {\n  umbrella "%s/Sources/CBitNetKernels/include"\n  export *\n}\n' "$PWD" > $OUT/cmod/module.modulemap
for c in Sources/CBitNetKernels/*.c; do
  clang -O2 -fno-math-errno -fsanitize=address -I Sources/CBitNetKernels/include -c "$c" -o "$OUT/obj/$(basename "$c" .c).o"
done
swiftc -O -wmo -num-threads 2 -sanitize=fuzzer,address -parse-as-library -package-name bitnet_fuzz -module-name BitNetFuzz \
  -I $OUT/cmod $OUT/src/*.swift fuzz/FuzzMain.swift $OUT/obj/*.o -o $OUT/fuzz-loaders
BIN=$OUT/fuzz-loaders
export ASAN_OPTIONS=detect_leaks=0 SWIFT_BACKTRACE=enable=no

if [ $# -eq 0 ]; then set -- $(BITNET_FUZZ_LIST=1 $BIN | cut -d' ' -f1); fi

# Copies the first MAX bytes of each file after PREFIX (printf format, may be empty) into DIR.
seed() { local dir=$1 max=$2 prefix=$3; shift 3
  for f in "$@"; do [ -f "$f" ] || continue
    { printf "$prefix"; head -c "$max" "$f"; } > "$dir/$(basename "$(dirname "$f")")-$(basename "$f")"; done; }

# Keeps the smallest inputs of corpus FROM in folder TO: each at most 64 KB, together at most 256 KB.
keep() { local from=$1 to=$2 used=0 size
  find "$to" -maxdepth 1 -type f ! -name '.*' -delete
  for f in $(ls -Sr "$from"); do
    size=$(stat -c %s "$from/$f")
    [ "$size" -le 65536 ] && [ $((used + size)) -le 262144 ] || break
    cp "$from/$f" "$to/"; used=$((used + size))
  done; }

SUMMARY=()
for H in "$@"; do
  MAX=$(BITNET_FUZZ_LIST=1 $BIN | awk -v h="$H" '$1 == h { print $2 }')
  [ -n "$MAX" ] || { echo "unknown harness $H" >&2; exit 2; }
  C=$OUT/$H/corpus A=$OUT/$H/artifacts
  rm -rf "$OUT/$H"; mkdir -p "$C" "$A" "$KEEP/$H/crashers"
  find "$KEEP/$H" -maxdepth 1 -type f ! -name '.*' -exec cp {} "$C/" \;
  BITNET_FUZZ_HARNESS=$H BITNET_FUZZ_SEEDS=$C $BIN
  case $H in
    parsers)
      seed "$C" 4096 '\x00' $FIX/formats/vocab/*.gguf $FIX/formats/codecs.gguf
      seed "$C" 8192 '\x01' $FIX/formats/codecs-ref.safetensors $FIX/torch/fp.safetensors ;;
    tokenizer-json) seed "$C" "$MAX" '' $FIX/tokenizer/tokenizer.json $FIX/formats/vocab/llama3-tokenizer.json ;;
    hf-model)
      for d in $FIX/formats/hf-packed $FIX/formats/hf-bf16; do
        n=$(stat -c %s $d/config.json)
        { printf "\\x$(printf %02x $((n % 256)))\\x$(printf %02x $((n / 256)))"; cat $d/config.json; head -c $((MAX - n - 2)) $d/model.safetensors; } > "$C/$(basename $d)"
      done ;;
    llama2c-model) seed "$C" "$MAX" '' $SHARED/stories260K.bin ;;
    llama2c-tokenizer) seed "$C" "$MAX" '\x00\x02' $SHARED/tok512.bin ;;  # vocab size 512
    model-file) seed "$C" "$MAX" '' $FIX/torch/fp.safetensors $FIX/torch/bitnet-b1.58.safetensors $FIX/torch/bitnet-b1.safetensors ;;
    checkpoint) ;;
    gguf-vocab) seed "$C" "$MAX" '' $FIX/formats/vocab/*.gguf ;;
    gguf-model) seed "$C" "$MAX" '' $FIX/formats/model-tq1_0.gguf $FIX/formats/vocab/llama-spm.gguf ;;
    chat-template) seed "$C" 8192 '\x01' $FIX/formats/vocab/llama-bpe.gguf ;;
  esac
  LOG=$OUT/$H/log.txt
  echo "== $H: $(ls "$C" | wc -l) seeds, ${SECS}s"
  BITNET_FUZZ_HARNESS=$H $BIN "$C" -max_total_time="$SECS" -max_len="$MAX" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -detect_leaks=0 -artifact_prefix="$A/" -print_final_stats=1 > "$LOG" 2>&1 || true
  # Minimized corpus → the kept folder (small inputs only).
  M=$OUT/$H/merged; mkdir -p "$M"
  BITNET_FUZZ_HARNESS=$H $BIN -merge=1 -max_len="$MAX" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -detect_leaks=0 \
    "$M" "$C" > "$OUT/$H/merge.txt" 2>&1 || true
  keep "$M" "$KEEP/$H"
  crashes=0
  for c in "$A"/*; do [ -s "$c" ] || continue; cp "$c" "$KEEP/$H/crashers/"; crashes=$((crashes + 1)); done
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$LOG" | grep -o '[0-9]*$' || echo 0)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$LOG" | grep -o '[0-9]*$' || echo 0)
  kept=$(find "$KEEP/$H" -maxdepth 1 -type f ! -name '.*' | wc -l)
  line="$H: ${runs:-0} executions, ${rate:-0} exec/s, $crashes crashes, corpus $(ls "$M" | wc -l) inputs ($kept kept, $(find "$KEEP/$H" -maxdepth 1 -type f ! -name '.*' -exec cat {} + | wc -c) bytes)"
  echo "$line"; SUMMARY+=("$line")
  grep -E '^==[0-9]+==ERROR|^SUMMARY|Fatal error|ERROR: libFuzzer' "$LOG" | head -5 || true
done
echo; printf '%s\n' "${SUMMARY[@]}"
