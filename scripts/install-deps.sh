#!/usr/bin/env bash
# System packages Selur's build and tests need (Debian 12). Idempotent.
set -euo pipefail
PKGS="gcc make pkg-config ca-certificates curl protobuf-compiler skopeo umoci busybox-static runc iproute2 util-linux nftables python3 docker-registry apache2-utils openssl"
missing=""
for p in $PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq $missing
fi
