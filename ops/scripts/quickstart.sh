#!/usr/bin/env bash
# Brings up a local Killswitch: etcd, one control replica and three demo collectors of the
# program "demo", then shows the collectors' output. Ctrl-C stops everything.
# State lives in .dev/ (etcd on 127.0.0.1:2479, so it never touches a system etcd).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

ops/scripts/setup.sh
cargo build --workspace --bins --examples

bin="$root/target/debug"
dev="$root/.dev"
mkdir -p "$dev"
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
  --replica-id local-1 >"$dev/control.log" 2>&1 &
pids+=($!)

ks() { "$bin/killswitch" --endpoint http://127.0.0.1:7070 "$@"; }
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
  "$bin/examples/collector" --endpoint http://127.0.0.1:7070 --id "collector-$i" --program demo \
    --label region=local 2>"$dev/collector-$i.log" &
  pids+=($!)
done

cat <<MSG

Killswitch is running: etcd (127.0.0.1:2479), a control replica (127.0.0.1:7070) and
three demo collectors of the program "demo". Logs are in .dev/.

In another terminal, stop collection everywhere and check who confirmed:

  $bin/killswitch pause demo --reason "quick start drill"
  $bin/killswitch status demo

then let it run again:

  $bin/killswitch resume demo --reason "drill over"

The collectors' output follows (Ctrl-C stops everything):

MSG
wait "${pids[0]}"
