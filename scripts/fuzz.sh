#!/usr/bin/env bash
# Fuzzes the GGUF and safetensors parsers with libFuzzer (swiftc -sanitize=fuzzer,address), run by hand:
#   scripts/fuzz.sh [SECONDS]   (default 120)
# Seeds: the committed fixtures and the kept corpus. New crashers are copied to Tests/BitNetTests/Fixtures/formats/
# crashers/ and the grown corpus to fuzz-corpus/; GGUFTests.testFixtureCorpusOfCrashersIsRejected replays both on
# every `swift test`. (LeakSanitizer is off: Foundation's Data(contentsOf:) leaks its read buffer on Linux.)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-120}
OUT=.build-fuzz
mkdir -p $OUT/corpus $OUT/artifacts Tests/BitNetTests/Fixtures/formats/crashers Tests/BitNetTests/Fixtures/formats/fuzz-corpus
cp Tests/BitNetTests/Fixtures/formats/fuzz-corpus/* $OUT/corpus/ 2>/dev/null || true
# The parsers and what they use, built as one module (their imports of the project's targets dropped).
mkdir -p $OUT/src
for f in Sources/BitNetFormats/{GGUF,GGMLQuants,Safetensors}.swift Sources/BitNetCore/Util/{Errors,FileIO,MappedFile}.swift; do
  grep -v '^import BitNet' "$f" > "$OUT/src/$(basename "$f")"
done
swiftc -O -sanitize=fuzzer,address -parse-as-library -package-name bitnet_fuzz -module-name BitNetFuzz $OUT/src/*.swift fuzz/FuzzParsers.swift -o $OUT/fuzz-parsers
# Seeds: a GGUF (prefix byte 0) and a safetensors file (prefix byte 1).
for f in Tests/BitNetTests/Fixtures/formats/vocab/*.gguf Tests/BitNetTests/Fixtures/formats/codecs.gguf; do
  { printf '\x00'; head -c 4096 "$f"; } > "$OUT/corpus/$(basename "$f")"
done
{ printf '\x01'; head -c 8192 Tests/BitNetTests/Fixtures/formats/codecs-ref.safetensors; } > $OUT/corpus/seed.safetensors
ASAN_OPTIONS=detect_leaks=0 $OUT/fuzz-parsers $OUT/corpus -max_total_time="$SECS" -artifact_prefix=$OUT/artifacts/ -max_len=8192 -detect_leaks=0 || true  # leaks: Foundation's Data(contentsOf:) on tiny files
for c in $OUT/artifacts/*; do [ -s "$c" ] && cp "$c" Tests/BitNetTests/Fixtures/formats/crashers/; done
cp $OUT/corpus/* Tests/BitNetTests/Fixtures/formats/fuzz-corpus/
ls Tests/BitNetTests/Fixtures/formats/crashers/
