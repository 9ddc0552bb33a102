#!/usr/bin/env bash
# Build the static `selur-demo` multi-call binary (the program inside the
# local stand-in Lago Grey images, see examples/images/README.md), check
# that it is statically linked, and print its absolute path on stdout
# (everything else goes to stderr, so `BIN=$(scripts/build-demo.sh)` works).
#
# The explicit --target keeps this build's RUSTFLAGS apart from the normal
# build: its artefacts live in target/x86_64-unknown-linux-gnu/, so the
# workspace's usual target/debug and target/release are not rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
# crt-static links glibc in; strip keeps the image small (no symbols).
export RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols"
cargo build --release -p selur-demo --target "$TARGET" >&2

TARGET_DIR=${CARGO_TARGET_DIR:-target}
case $TARGET_DIR in
  /*) ;;
  *) TARGET_DIR=$PWD/$TARGET_DIR ;;
esac
BIN=$TARGET_DIR/$TARGET/release/selur-demo
[ -x "$BIN" ] || { echo "build-demo: $BIN was not built" >&2; exit 1; }

# Static means: no program interpreter and no shared libraries needed.
if command -v readelf >/dev/null; then
  if readelf -lW "$BIN" | grep -q 'INTERP'; then
    echo "build-demo: $BIN has a program interpreter (dynamically linked)" >&2
    exit 1
  fi
  if readelf -dW "$BIN" | grep -q '(NEEDED)'; then
    echo "build-demo: $BIN needs shared libraries:" >&2
    readelf -dW "$BIN" | grep '(NEEDED)' >&2
    exit 1
  fi
elif command -v file >/dev/null; then
  if ! file -L "$BIN" | grep -Eq 'statically linked|static-pie linked'; then
    echo "build-demo: $BIN is not statically linked: $(file -L "$BIN")" >&2
    exit 1
  fi
else
  echo "build-demo: neither readelf nor file is installed; cannot check linking" >&2
  exit 1
fi
echo "build-demo: $BIN is static ($(stat -c %s "$BIN") bytes)" >&2
echo "$BIN"
