#!/usr/bin/env bash
# Instructions per proxied Ping, counted by callgrind: the one cost figure that repeats
# on a shared, noisy machine. Starts one reference server and bitsgate (one thread,
# memory-only pins, health checks off) under callgrind, warms up, resets the counters,
# sends PINGS Pings (keep-alive) and prints the total, the count per Ping and the top
# functions by exclusive and by inclusive cost. See docs/benchmarks.md.
#
# Usage: benches/e2e/callgrind-ping.sh [PINGS]     (default 3000)
# Environment:
#   CARGO_TARGET_DIR   where the release binaries are (built first; default target)
#   CG_OUT             keep the callgrind output here (default: a temp dir, removed)
#   CG_TOP             how many functions to list (default 25)
set -euo pipefail
cd "$(dirname "$0")/../.."
pings=${1:-3000}
target_dir=${CARGO_TARGET_DIR:-target}
top=${CG_TOP:-25}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }

cargo build --release --locked -p bitsgate -p bits-testkit --bins >/dev/null 2>&1 \
  || cargo build --release --locked -p bitsgate -p bits-testkit --bins
bin=$target_dir/release

work=$(mktemp -d /tmp/bitsgate-cg.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "${CG_OUT:-}" ] && mkdir -p "$CG_OUT" && cp "$work"/cg.out* "$CG_OUT"/ 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; tail -n 20 "$work"/*.log >&2; return 1
}

backend=127.0.0.1:$(port)
mkdir -p "$work/root"
RUST_LOG=warn "$bin/bits-server" --listen "$backend" --root "$work/root" >"$work/server.log" 2>&1 &
pids+=($!)
proxy=127.0.0.1:$(port)
cat >"$work/bitsgate.toml" <<TOML
[listener]
address = "$proxy"
[admin]
address = "127.0.0.1:$(port)"
[storage]
mode = "memory"
[server]
threads = 1
upgrade_sock = "$work/bitsgate.sock"
[health_check]
kind = "none"
[[backends]]
id = "b1"
address = "$backend"
TOML
BITSGATE_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
  "$bin/bitsgate" run --config "$work/bitsgate.toml" >"$work/bitsgate.log" 2>&1 &
pids+=($!); cg_pid=$!
wait_port "$backend"
wait_port "$proxy"

"$bin/bits-load" "http://$proxy/" --ping --requests 200 --concurrency 4 --threads 1 >/dev/null
callgrind_control -z "$cg_pid" >/dev/null
"$bin/bits-load" "http://$proxy/" --ping --requests "$pings" --concurrency 8 --threads 1 >/dev/null
callgrind_control -d "$cg_pid" >/dev/null
dump=$(ls "$work"/cg.out.* | head -n 1)

total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}')
echo "== commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src crates || echo ' (+ local changes)'), $pings Pings"
echo "instructions: $total total, $(( total / pings )) per Ping"
echo "== top $top by exclusive cost"
callgrind_annotate --threshold=100 "$dump" 2>/dev/null | sed -n '/file:function/,$p' | sed -n "2,$((top + 1))p"
echo "== top $top by inclusive cost"
callgrind_annotate --inclusive=yes --threshold=100 "$dump" 2>/dev/null | sed -n '/file:function/,$p' | sed -n "2,$((top + 1))p"
