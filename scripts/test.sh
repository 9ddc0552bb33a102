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
cargo test --workspace -- --test-threads=4
