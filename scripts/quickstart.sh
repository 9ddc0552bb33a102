#!/usr/bin/env bash
# Quickstart: on a fresh Debian 12 machine (root, Rust toolchain present),
# install what Selur needs, build it, start an all-in-one `selur server`
# and apply every object manifest of the seed. The server keeps running
# (foreground) until Ctrl-C; state lives in $SELUR_DATA (default /var/lib/selur).
set -euo pipefail
cd "$(dirname "$0")/.."

SELUR_DATA=${SELUR_DATA:-/var/lib/selur}
SELUR_LISTEN=${SELUR_LISTEN:-127.0.0.1:6443}

bash scripts/install-deps.sh
cargo build --release -p selur
BIN=target/release/selur
install -m 0755 "$BIN" /usr/local/bin/selur

mkdir -p "$SELUR_DATA"
rm -f "$SELUR_DATA/kubeconfig"
selur server --data-dir "$SELUR_DATA" --listen "$SELUR_LISTEN" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 200); do
  [ -s "$SELUR_DATA/kubeconfig" ] && break
  sleep 0.05
done
export SELUR_CONFIG="$SELUR_DATA/kubeconfig"

echo "== selur apply -f examples/seed.yaml"
selur apply -f examples/seed.yaml
echo
echo "== selur get deploy,po,ds,job,cj,hpa,quota,psp,vs,smon -A"
selur get deploy,po,ds,job,cj,hpa,quota,psp,vs,smon -A
echo "Selur is running on http://$SELUR_LISTEN (client config: $SELUR_CONFIG)."
echo "Try: SELUR_CONFIG=$SELUR_CONFIG selur get deploy web-service -o yaml"
echo "Press Ctrl-C to stop."
wait $SERVER
