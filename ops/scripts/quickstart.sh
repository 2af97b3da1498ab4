#!/usr/bin/env bash
# Brings up a local Killswitch: etcd, one control replica serving TLS and three demo
# collectors of the program "demo", then shows the collectors' output. Ctrl-C stops
# everything. State lives in .dev/ (etcd on 127.0.0.1:2479, so it never touches a system
# etcd); .dev/pki/ holds a development CA and the certificates `killswitch certs init`
# made for the control plane, the collectors and the operators alice (admin) and bob
# (responder).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

ops/scripts/setup.sh
cargo build --workspace --bins --examples

bin="$root/target/debug"
dev="$root/.dev"
pki="$dev/pki"
mkdir -p "$dev"
if [ ! -f "$pki/ca.pem" ]; then
  "$bin/killswitch" certs init "$pki" >/dev/null
fi
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "quickstart: stopping"
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

etcd --name quickstart --data-dir "$dev/etcd" \
  --listen-client-urls http://127.0.0.1:2479 --advertise-client-urls http://127.0.0.1:2479 \
  --listen-peer-urls http://127.0.0.1:2480 --initial-advertise-peer-urls http://127.0.0.1:2480 \
  --initial-cluster quickstart=http://127.0.0.1:2480 \
  --logger zap --log-level warn >"$dev/etcd.log" 2>&1 &
pids+=($!)

"$bin/killswitch-control" --listen 127.0.0.1:7070 --etcd http://127.0.0.1:2479 \
  --replica-id local-1 --advertise-url https://localhost:7070 \
  --tls-cert "$pki/server.pem" --tls-key "$pki/server-key.pem" \
  --client-ca "$pki/ca.pem" --auth-file "$pki/auth.toml" >"$dev/control.log" 2>&1 &
pids+=($!)

endpoint=https://localhost:7070
ks() {
  "$bin/killswitch" --endpoint "$endpoint" --ca "$pki/ca.pem" \
    --cert "$pki/operator-alice.pem" --key "$pki/operator-alice-key.pem" "$@"
}
for _ in $(seq 100); do
  ks program list >/dev/null 2>&1 && break
  sleep 0.2
done
ks program list >/dev/null || { echo "quickstart: the control plane did not come up; see $dev/control.log" >&2; exit 1; }

if ! ks program show demo >/dev/null 2>&1; then
  ks program create demo --owner quickstart --description "synthetic events" --reason "quick start" >/dev/null
fi
ks resume demo --reason "quick start: let the demo collectors run" >/dev/null

for i in 1 2 3; do
  "$bin/examples/collector" --endpoint "$endpoint" --id "collector-$i" --program demo \
    --label region=local --ca "$pki/ca.pem" \
    --cert "$pki/collector-$i.pem" --key "$pki/collector-$i-key.pem" 2>"$dev/collector-$i.log" &
  pids+=($!)
done

cat <<MSG

Killswitch is running: etcd (127.0.0.1:2479), a control replica ($endpoint, TLS) and
three demo collectors of the program "demo", each with its own certificate. Logs are in
.dev/, certificates in .dev/pki/.

In another terminal, act as bob (a responder): stop collection everywhere and check who
confirmed:

  export KILLSWITCH_ENDPOINT=$endpoint KILLSWITCH_CA=$pki/ca.pem
  export KILLSWITCH_CERT=$pki/operator-bob.pem KILLSWITCH_KEY=$pki/operator-bob-key.pem
  $bin/killswitch pause demo --reason "quick start drill"
  $bin/killswitch status demo

A responder may pause but not resume (exit 4). As alice (an admin), let it run again:

  export KILLSWITCH_CERT=$pki/operator-alice.pem KILLSWITCH_KEY=$pki/operator-alice-key.pem
  $bin/killswitch resume demo --reason "drill over"

Or watch and act in a browser: with the same variables set, run
  $bin/killswitch console
and open the URL it prints (http://127.0.0.1:8080/).

The collectors' output follows (Ctrl-C stops everything):

MSG
wait "${pids[0]}"
