#!/usr/bin/env bash
# Quickstart: on a fresh Debian 12 machine (root, Rust toolchain present),
# install what Selur needs, build the static release binaries
# (scripts/build-release.sh) and the static demo program, start a local
# registry mirror for ghcr.io (Debian's docker-registry on 127.0.0.1), start
# an all-in-one `selur server` (node "local") whose registry settings send
# ghcr.io to that mirror, build the local stand-ins for the seed's images
# and push them to the mirror, apply every object manifest of the seed as
# written and run the seed's Example 1 pod spec (examples/demo/web-pod.yaml).
# The server keeps running (foreground) until Ctrl-C; state lives in
# $SELUR_DATA.
#
#   SELUR_DATA     state directory (default /var/lib/selur)
#   SELUR_LISTEN   API address (default 127.0.0.1:6443)
#   SELUR_MIRROR   the mirror's address (default 127.0.0.1:5000)
#   SELUR_BIN      use this selur binary (and the selur-shim next to it)
#                  instead of building the release (for development)
set -euo pipefail
cd "$(dirname "$0")/.."

SELUR_DATA=${SELUR_DATA:-/var/lib/selur}
SELUR_LISTEN=${SELUR_LISTEN:-127.0.0.1:6443}
SELUR_MIRROR=${SELUR_MIRROR:-127.0.0.1:5000}

bash scripts/install-deps.sh
if [ -n "${SELUR_BIN:-}" ]; then
  BIN=$SELUR_BIN
else
  echo "== building the static release binaries (scripts/build-release.sh; fat LTO takes a while)"
  BIN=$(bash scripts/build-release.sh)
fi
install -m 0755 "$BIN" /usr/local/bin/selur
install -m 0755 "$(dirname "$BIN")/selur-shim" /usr/local/bin/selur-shim
DEMO=$(bash scripts/build-demo.sh)

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

echo "== a registry mirror for ghcr.io on $SELUR_MIRROR ($SELUR_DATA/mirror)"
if (exec 3<>"/dev/tcp/${SELUR_MIRROR%:*}/${SELUR_MIRROR##*:}") 2>/dev/null; then
  echo "quickstart: $SELUR_MIRROR is already in use; set SELUR_MIRROR=127.0.0.1:PORT to a free port" >&2
  exit 1
fi
mkdir -p "$SELUR_DATA/mirror"
cat > "$SELUR_DATA/mirror/config.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $SELUR_DATA/mirror/storage
  delete:
    enabled: true
http:
  addr: $SELUR_MIRROR
EOF
docker-registry serve "$SELUR_DATA/mirror/config.yml" >"$SELUR_DATA/mirror/registry.log" 2>&1 &
PIDS+=($!)
# ghcr.io is served by the mirror only: the machine may be offline, so the
# node never waits on the real ghcr.io (README "Registries" has the fields).
cat > "$SELUR_DATA/registries.yaml" <<EOF
mirrors:
  ghcr.io:
    endpoint: ["http://$SELUR_MIRROR"]
    upstream: false
configs:
  "$SELUR_MIRROR":
    insecure: true
EOF

rm -f "$SELUR_DATA/kubeconfig"
selur server --data-dir "$SELUR_DATA" --listen "$SELUR_LISTEN" --node-name local \
  --registry-config "$SELUR_DATA/registries.yaml" &
SERVER=$!
PIDS+=("$SERVER")
for _ in $(seq 1 200); do
  [ -s "$SELUR_DATA/kubeconfig" ] && break
  sleep 0.05
done
export SELUR_CONFIG="$SELUR_DATA/kubeconfig"

echo "== building the local stand-ins for the seed's images (examples/images) and pushing them to the mirror"
SELUR=selur SELUR_MIRROR=$SELUR_MIRROR bash scripts/standins.sh "$DEMO"
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
echo "== the Deployment behind a Service: selur apply -f examples/demo/web-service.yaml"
selur apply -f examples/demo/web-service.yaml
selur get svc,endpointslices -o wide
CLUSTER_IP=$(selur get svc web-service -o json | sed -n 's/^ *"clusterIP": "\([^"]*\)".*/\1/p' | head -n 1)
if [ -n "$CLUSTER_IP" ]; then
  for _ in $(seq 1 50); do
    curl -6 -sS --max-time 2 "http://[$CLUSTER_IP]/api" 2>/dev/null && break
    sleep 0.2
  done
  echo
fi
echo
echo "Selur is running on http://$SELUR_LISTEN (client config: $SELUR_CONFIG)."
echo "Try (in another shell, with SELUR_CONFIG=$SELUR_CONFIG):"
echo "  selur logs web -f"
echo "  selur port-forward web 8080:8080   # then: curl http://[::1]:8080/health"
echo "  curl -6 http://[$CLUSTER_IP]/api   # the Service web-service (selur get svc -o wide)"
echo "  selur exec web -- /usr/bin/obli-pkg status"
echo "  selur get deploy web-service -o yaml"
echo "Press Ctrl-C to stop."
wait $SERVER
