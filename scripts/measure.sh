#!/usr/bin/env bash
# Reproduces the numbers in docs/PERFORMANCE.md: shoal bench against a 3-node shoal dev cluster
# (N=3, R=2, W=2, fsync'd writes), against one node with N=1, and against the in-memory
# baseline, each with 1 KiB values, 10,000 keys, 64 clients, 50% reads. Usage:
#   scripts/measure.sh [SECONDS]        (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
cargo build --release -p shoal >/dev/null
shoal=$PWD/target/release/shoal
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
bench() {
  "$shoal" bench --nodes "$1" --duration "${secs}s" --concurrency 64 --value-size 1024 \
    --keys 10000 --read-ratio 0.5 --seed 42 --json
}
row() {
  python3 - "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))
g, p = d["get"], d["put"]
ms = lambda us: f"{us / 1000:.2f}"
print(f"| {sys.argv[1]} | {d['throughput_ops_s']:.0f} | {ms(g['p50_us'])} / {ms(g['p99_us'])} / {ms(g['p999_us'])} "
      f"| {ms(p['p50_us'])} / {ms(p['p99_us'])} / {ms(p['p999_us'])} | {d['errors']} | {d['generator_cores']:.2f} |")
PY
}
wait_port() { for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

echo "| run | ops/s | get p50 / p99 / p99.9 ms | put p50 / p99 / p99.9 ms | errors | generator cores |"
echo "|---|---|---|---|---|---|"

(cd "$work" && exec "$shoal" dev --nodes 3 --data three >/dev/null 2>&1) & pids+=($!)
wait_port 8701 && wait_port 8702 && wait_port 8703
bench 127.0.0.1:8701,127.0.0.1:8702,127.0.0.1:8703 > "$work/three.json"
row "3 nodes, N=3 R=2 W=2, fsync" "$work/three.json"
kill -INT "${pids[-1]}"; wait "${pids[-1]}" || true; unset 'pids[-1]'

(cd "$work" && exec "$shoal" dev --nodes 1 --data one --http-port 8711 --peer-port 9711 >/dev/null 2>&1) & pids+=($!)
wait_port 8711
bench 127.0.0.1:8711 > "$work/one.json"
row "1 node, N=1, fsync" "$work/one.json"
kill -INT "${pids[-1]}"; wait "${pids[-1]}" || true; unset 'pids[-1]'

"$shoal" baseline --listen 127.0.0.1:8720 >/dev/null 2>&1 & pids+=($!)
wait_port 8720
bench 127.0.0.1:8720 > "$work/baseline.json"
row "in-memory baseline (no replication, no disk)" "$work/baseline.json"
