#!/usr/bin/env bash
# Quickstart: on a fresh Debian 12 machine (root, Rust toolchain present),
# install what Selur needs, build it and the static demo program, start an
# all-in-one `selur server` (node "local"), build the local stand-ins for
# the seed's images into it, apply every object manifest of the seed and
# run the seed's Example 1 pod spec for real (examples/demo/web-pod.yaml).
# The server keeps running (foreground) until Ctrl-C; state lives in
# $SELUR_DATA (default /var/lib/selur).
set -euo pipefail
cd "$(dirname "$0")/.."

SELUR_DATA=${SELUR_DATA:-/var/lib/selur}
SELUR_LISTEN=${SELUR_LISTEN:-127.0.0.1:6443}

bash scripts/install-deps.sh
cargo build --release -p selur
BIN=target/release/selur
install -m 0755 "$BIN" /usr/local/bin/selur
install -m 0755 target/release/selur-shim /usr/local/bin/selur-shim
DEMO=$(bash scripts/build-demo.sh)

mkdir -p "$SELUR_DATA"
rm -f "$SELUR_DATA/kubeconfig"
selur server --data-dir "$SELUR_DATA" --listen "$SELUR_LISTEN" --node-name local &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 200); do
  [ -s "$SELUR_DATA/kubeconfig" ] && break
  sleep 0.05
done
export SELUR_CONFIG="$SELUR_DATA/kubeconfig"

echo "== building the local stand-ins for the seed's images (examples/images)"
SELUR=selur bash scripts/standins.sh "$DEMO"

echo "== selur apply -f examples/seed.yaml"
selur apply -f examples/seed.yaml
echo
echo "== selur get deploy,po,ds,job,cj,hpa,quota,psp,vs,smon -A"
selur get deploy,po,ds,job,cj,hpa,quota,psp,vs,smon -A
echo
echo "== the seed's Example 1 pod spec, running for real: selur apply -f examples/demo/web-pod.yaml"
selur apply -f examples/demo/web-pod.yaml
selur wait pod/web --for=condition=Ready --timeout=60s || true
selur get pod web -o wide
echo
echo "Selur is running on http://$SELUR_LISTEN (client config: $SELUR_CONFIG)."
echo "Try (in another shell, with SELUR_CONFIG=$SELUR_CONFIG):"
echo "  selur logs web -f"
echo "  selur port-forward web 8080:8080   # then: curl http://[::1]:8080/health"
echo "  selur exec web -- /usr/bin/obli-pkg status"
echo "  selur get deploy web-service -o yaml"
echo "Press Ctrl-C to stop."
wait $SERVER
