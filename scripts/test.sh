#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests, then
# a summary (tests passed/failed/ignored, each failed test by binary, wall
# time). The full output is kept in $SELUR_TEST_LOG (default
# target/test.log).
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
# Agents that tests start in this machine's own network namespace get no
# pod network (a bridge, routes and nftables rules there would change the
# host); the pod network tests pass --pod-network in namespaces of their own.
export SELUR_POD_NETWORK=none
bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The static demo program the stand-in images hold (tests that run the
# seed's manifests build the stand-ins from it).
bash scripts/build-demo.sh >/dev/null

LOG=${SELUR_TEST_LOG:-target/test.log}
mkdir -p "$(dirname "$LOG")"
# Every test binary runs even when one fails.
set +e
cargo test --workspace --no-fail-fast -- --test-threads=4 2>&1 | tee "$LOG"
RC=${PIPESTATUS[0]}
set -e

# The summary: totals from each binary's "test result:" line, and every
# failed test under the binary it belongs to.
awk -v rc="$RC" -v secs="$(($(date +%s) - START))" '
  /^ *Running / { bin = $NF; sub(/\)$/, "", bin); sub(/^.*\//, "", bin); sub(/-[0-9a-f]+$/, "", bin) }
  /^ *Doc-tests / { bin = "doc-tests " $2 }
  /^test .* \.\.\. FAILED$/ { sub(/^test /, ""); sub(/ \.\.\. FAILED$/, ""); failed[++nf] = bin ": " $0 }
  /^test result: / {
    for (i = 1; i <= NF; i++) {
      if ($(i+1) ~ /^passed/) p += $i
      if ($(i+1) ~ /^failed/) f += $i
      if ($(i+1) ~ /^ignored/) g += $i
    }
    bins++
  }
  /^error: .* target.* failed:/ { crashed = 1 }
  END {
    print ""
    print "== test summary"
    printf "%d binaries, %d passed, %d failed, %d ignored, %dm%02ds\n", bins, p, f, g, secs / 60, secs % 60
    for (i = 1; i <= nf; i++) print "FAILED " failed[i]
    if (rc != 0 && nf == 0) print "cargo test failed (exit " rc ") before or outside a test: see the log"
  }' "$LOG"
echo "(full output: $LOG)"
exit "$RC"
