#!/usr/bin/env bash
# First end-to-end numbers: bits-load direct to one reference server and through
# bitsgate (one proxy thread), same machine, same run, alternating the targets.
#   - Ping, keep-alive, concurrency 32
#   - 1 MiB fragments (64 MiB uploads), concurrency 4
#   - tiny uploads (Create-Session + 1-byte Fragment + Close-Session), through bitsgate
#     with durable pins and with memory-only pins: what the journal costs
# Every process is bounded (request counts) and everything listens on 127.0.0.1.
# Usage: benches/e2e/first-numbers.sh [ROUNDS]   (builds release binaries first)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked --workspace --bins >/dev/null
bin=$target/release
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=benches/e2e/lib.sh
. benches/e2e/lib.sh

mkdir -p "$work/root"
backend=127.0.0.1:$(free_port)
taskset -c 1 "$bin/bits-server" --listen "$backend" --root "$work/root" --name b1 \
  --max-fragment 2147483648 >/dev/null 2>&1 &
pids+=($!)

# Sets $listen; not called in $(...), so that the pid it records reaches cleanup.
start_proxy() { # name mode
  listen=127.0.0.1:$(free_port)
  bench_config "$work/$1.toml" "$listen" "127.0.0.1:$(free_port)" "$2" "$work/$1-data" 1 "b1=$backend"
  BITSGATE_LOG=warn taskset -c 1 "$bin/bitsgate" run --config "$work/$1.toml" >/dev/null 2>&1 &
  pids+=($!)
}
start_proxy durable durable; durable=$listen
start_proxy memory memory; memory=$listen
for addr in "$backend" "$durable" "$memory"; do wait_port "$addr"; done

load() { taskset -c 0 "$bin/bits-load" "$@" --threads 1 --json; }
summary() {
  python3 -c '
import json, sys
r = json.load(sys.stdin)
l = r["latency_us"]
print("%.0f req/s  %.1f MiB/s  p50 %s us  p99 %s us  p99.9 %s us  errors %s"
      % (r["requests_per_s"], r["throughput_mib_s"], l["p50"], l["p99"], l["p999"], r["errors"]))'
}

for round in $(seq "$rounds"); do
  echo "== round $round"
  for target in direct:$backend bitsgate:$durable; do
    name=${target%%:*} addr=${target#*:}
    echo "ping      $name: $(load "http://$addr/" --ping --requests 100000 --concurrency 32 | summary)"
    echo "1MiB frag $name: $(load "http://$addr/r$round-$name/" --uploads 8 --size 64MiB --fragment-size 1MiB --concurrency 4 | summary)"
  done
  for target in durable:$durable memory:$memory; do
    name=${target%%:*} addr=${target#*:}
    echo "tiny      $name: $(load "http://$addr/t$round-$name/" --uploads 3000 --size 1 --fragment-size 1 --concurrency 8 | summary)"
  done
done
