#!/usr/bin/env bash
# The tests (the README's test command): `swift test`, then XCTest's totals as the last line. `swift test` itself ends
# with Swift Testing's summary, "0 tests", since this project's tests are XCTest. Arguments go to `swift test`
# (e.g. --filter InferenceTests). The exit status is swift test's.
set -uo pipefail
cd "$(dirname "$0")/.."
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
swift test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
summary=$(grep -E "Executed [0-9]+ tests?, with" "$log" | tail -1)
if [ -z "$summary" ]; then echo "tests: no XCTest summary (exit $status)"; exit "$status"; fi
total=$(echo "$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/')
skipped=$(echo "$summary" | sed -nE 's/.*with ([0-9]+) tests? skipped.*/\1/p')
failed=$(echo "$summary" | sed -E 's/.* ([0-9]+) failures?.*/\1/')
echo "tests: $((total - ${skipped:-0} - failed)) passed, ${skipped:-0} skipped, $failed failed"
exit "$status"
