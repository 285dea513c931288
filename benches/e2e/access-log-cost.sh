#!/usr/bin/env bash
# What the access log costs per proxied Ping, two ways:
#  1. instructions per Ping counted by callgrind (bitsgate, all its threads, the
#     access-log writer included): repeatable on a busy machine;
#  2. CPU time of the bitsgate process (utime + stime from /proc) per Ping under
#     bits-load, rounds alternating between the settings: real time, but noisy.
# Each with [log] access = "off", a file in text, and a file in JSON. One reference
# server, bitsgate with one thread, memory-only pins, health checks off. See
# docs/benchmarks.md ("Access log cost").
#
# Usage: benches/e2e/access-log-cost.sh [PINGS_CALLGRIND] [PINGS_CPU] [ROUNDS]
#        (defaults 3000, 100000, 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
cg_pings=${1:-3000}
cpu_pings=${2:-100000}
rounds=${3:-3}
bin=${CARGO_TARGET_DIR:-target}/release
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo build --release --locked -p bitsgate -p bits-testkit --bins >/dev/null 2>&1 \
  || cargo build --release --locked -p bitsgate -p bits-testkit --bins

work=$(mktemp -d /tmp/bitsgate-alog.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=benches/e2e/lib.sh
. benches/e2e/lib.sh

backend=127.0.0.1:$(free_port)
mkdir -p "$work/root"
RUST_LOG=warn "$bin/bits-server" --listen "$backend" --root "$work/root" >"$work/server.log" 2>&1 &
pids+=($!)
wait_port "$backend" "$work/server.log"

# config SETTING: writes $work/bitsgate.toml for off | text | json; sets $proxy.
config() {
  proxy=127.0.0.1:$(free_port)
  bench_config "$work/bitsgate.toml" "$proxy" "127.0.0.1:$(free_port)" memory "$work/data" 1 "b1=$backend"
  rm -f "$work/access.log"
  case $1 in
    off) printf '[log]\naccess = "off"\n' ;;
    *) printf '[log]\naccess = "%s"\nformat = "%s"\n' "$work/access.log" "$1" ;;
  esac >>"$work/bitsgate.toml"
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

echo "== $(date -u '+%F %T') UTC, commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' (+ local changes)'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== instructions per Ping (callgrind, $cg_pings Pings, keep-alive, concurrency 8)"
for setting in off text json; do
  config "$setting"
  BITSGATE_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "$bin/bitsgate" run --config "$work/bitsgate.toml" >"$work/bitsgate.log" 2>&1 &
  cg_pid=$!; pids+=("$cg_pid")
  WAIT_PORT_SECONDS=60 wait_port "$proxy" "$work/bitsgate.log"
  "$bin/bits-load" "http://$proxy/" --ping --requests 200 --concurrency 4 --threads 1 >/dev/null
  callgrind_control -z "$cg_pid" >/dev/null 2>&1
  "$bin/bits-load" "http://$proxy/" --ping --requests "$cg_pings" --concurrency 8 --threads 1 >/dev/null
  # The writer thread flushes when its queue runs empty; give it that moment.
  sleep 1
  callgrind_control -d "$cg_pid" >/dev/null 2>&1
  dump=$(find "$work" -name "cg.out.*" | head -n 1)
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}')
  lines=$( [ -f "$work/access.log" ] && wc -l <"$work/access.log" || echo 0)
  printf '%-5s %12d instructions, %7d per Ping, %d access-log lines\n' "$setting" "$total" $(( total / cg_pings )) "$lines"
  stop "$cg_pid"
  rm -f "$work"/cg.out*
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "== CPU per Ping (bits-load --ping --requests $cpu_pings --concurrency 32 --threads 1; $rounds rounds, settings alternating)"
for round in $(seq "$rounds"); do
  for setting in off text json; do
    config "$setting"
    BITSGATE_LOG=warn "$bin/bitsgate" run --config "$work/bitsgate.toml" >"$work/bitsgate.log" 2>&1 &
    pid=$!; pids+=("$pid")
    wait_port "$proxy" "$work/bitsgate.log"
    "$bin/bits-load" "http://$proxy/" --ping --requests 2000 --concurrency 8 --threads 1 >/dev/null
    before=$(cpu_ticks "$pid")
    report=$("$bin/bits-load" "http://$proxy/" --ping --requests "$cpu_pings" --concurrency 32 --threads 1 --json)
    sleep 0.5
    after=$(cpu_ticks "$pid")
    ticks=$(( after - before ))
    python3 - "$setting" "$round" "$ticks" "$cpu_pings" "$(getconf CLK_TCK)" <<PY
import json, sys
setting, round_, ticks, pings, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
r = json.loads('''$report''')
cpu = ticks / hz
print(f"round {round_} {setting:<5} {r['requests_per_s']:8.0f} req/s  errors {r['errors']}  CPU {cpu:5.2f} s  ({cpu / pings * 1e6:5.1f} µs/Ping)")
PY
    stop "$pid"
  done
done
