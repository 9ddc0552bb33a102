#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The static demo program the stand-in images hold (tests that run the
# seed's manifests build the stand-ins from it).
bash scripts/build-demo.sh >/dev/null
# Every test binary runs even when one fails (the summary at the end
# lists each failure).
cargo test --workspace --no-fail-fast -- --test-threads=4
