#!/usr/bin/env bash
# Build the local stand-ins for the images the seed names, into a running
# Selur node's image store (see examples/images/README.md):
#   ghcr.io/hyperpolymath/lago-grey:minimal
#   ghcr.io/hyperpolymath/svalinn:latest
#   ghcr.io/hyperpolymath/vordr:latest
#
# Usage: SELUR_CONFIG=<kubeconfig> scripts/standins.sh [SELUR_DEMO_BINARY]
#   SELUR           the selur binary (default: selur on PATH)
#   SELUR_NODE      build on this node (default: the only node)
#   SELUR_MIRROR    host:port of a plain-HTTP registry (Debian's
#                   docker-registry) to push each image to as well, under
#                   its repository path (hyperpolymath/NAME:TAG), for a
#                   node whose registry settings mirror ghcr.io there
#   the binary      default: built with scripts/build-demo.sh
# Prints the names of the images built, one a line, on stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGES=$ROOT/examples/images

SELUR=${SELUR:-selur}
if ! command -v "$SELUR" >/dev/null; then
  echo "standins: no selur binary ($SELUR); set SELUR=path/to/selur" >&2
  exit 1
fi
if [ -z "${SELUR_CONFIG:-}" ] && [ -z "${SELUR_SERVER:-}" ]; then
  echo "standins: set SELUR_CONFIG to the kubeconfig of a running selur server" >&2
  exit 1
fi
NODE_ARGS=()
[ -n "${SELUR_NODE:-}" ] && NODE_ARGS=(--node "$SELUR_NODE")

BIN=${1:-}
if [ -z "$BIN" ]; then
  BIN=$(bash "$ROOT/scripts/build-demo.sh")
fi
[ -f "$BIN" ] || { echo "standins: $BIN does not exist" >&2; exit 1; }

# Every name the seed's manifests run, plus the two sidecar/monitor names.
NAMES=(web-server frontend-service backend-service my-service
       process-data backup-script obli-pkg svalinn vordr)

CTX=$(mktemp -d "${TMPDIR:-/tmp}/selur-standins.XXXXXX")
trap 'rm -rf "$CTX"' EXIT
install -d -m 0755 "$CTX/rootfs/usr/bin" "$CTX/empty"
install -m 0755 "$BIN" "$CTX/rootfs/usr/bin/selur-demo"
for n in "${NAMES[@]}"; do
  ln -s selur-demo "$CTX/rootfs/usr/bin/$n"
done

build() { # TAG CONTAINERFILE
  echo "standins: building $1" >&2
  "$SELUR" image build "${NODE_ARGS[@]}" -f "$IMAGES/$2" -t "$1" "$CTX" >&2
  if [ -n "${SELUR_MIRROR:-}" ]; then
    echo "standins: pushing $1 to $SELUR_MIRROR" >&2
    "$SELUR" image save "${NODE_ARGS[@]}" "$1" -o "$CTX/image.tar" >&2
    skopeo copy -q --dest-tls-verify=false "oci-archive:$CTX/image.tar" \
      "docker://$SELUR_MIRROR/${1#ghcr.io/}" >&2
    rm -f "$CTX/image.tar"
  fi
  echo "$1"
}
# The base first: svalinn and vordr are built FROM it.
build ghcr.io/hyperpolymath/lago-grey:minimal lago-grey-minimal.Containerfile
build ghcr.io/hyperpolymath/svalinn:latest svalinn.Containerfile
build ghcr.io/hyperpolymath/vordr:latest vordr.Containerfile
