#!/usr/bin/env bash
# Build Selur's release binaries (`selur` and `selur-shim`) statically
# linked (glibc's crt-static; the musl target cannot be installed here),
# with the release profile's fat LTO, one codegen unit and stripped
# symbols, check that they are static, and put them in target/release/
# (where `cargo build --release` puts the dynamic ones). Prints the path of
# `selur` on stdout.
#
# The explicit --target keeps RUSTFLAGS off build scripts and proc macros
# (which cannot be static); its artefacts live in target/<triple>/release.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
export RUSTFLAGS="-C target-feature=+crt-static"
cargo build --release -p selur --bins --target "$TARGET" >&2

TARGET_DIR=${CARGO_TARGET_DIR:-target}
case $TARGET_DIR in
  /*) ;;
  *) TARGET_DIR=$PWD/$TARGET_DIR ;;
esac
mkdir -p "$TARGET_DIR/release"
for bin in selur selur-shim; do
  BIN=$TARGET_DIR/$TARGET/release/$bin
  [ -x "$BIN" ] || { echo "build-release: $BIN was not built" >&2; exit 1; }
  if readelf -lW "$BIN" | grep -q 'INTERP' || readelf -dW "$BIN" | grep -q '(NEEDED)'; then
    echo "build-release: $BIN is dynamically linked" >&2
    exit 1
  fi
  install -m 0755 "$BIN" "$TARGET_DIR/release/$bin"
  echo "build-release: $TARGET_DIR/release/$bin is static ($(stat -c %s "$BIN") bytes)" >&2
done
echo "$TARGET_DIR/release/selur"
