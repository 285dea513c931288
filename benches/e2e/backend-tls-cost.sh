#!/usr/bin/env bash
# What HTTPS to the backend costs per proxied Ping, against plain HTTP, two ways:
#  1. instructions per Ping counted by callgrind (bitsgate, all its threads):
#     repeatable on a busy machine;
#  2. CPU time of the bitsgate process (utime + stime from /proc) per Ping under
#     bits-load, rounds alternating between plain and TLS: real time, but noisy.
# One reference server serving HTTP and one serving HTTPS (a certificate from a CA made
# here with openssl), bitsgate with one thread, memory-only pins, health checks off,
# clients with keep-alive (so upstream connections are pooled and the handshake is
# paid once per pooled connection). See docs/benchmarks.md ("HTTPS to the backends").
#
# Usage: benches/e2e/backend-tls-cost.sh [PINGS_CALLGRIND] [PINGS_CPU] [ROUNDS]
#        (defaults 3000, 30000, 2); PINGS_CALLGRIND=0 skips callgrind.
#        BENCH_BIN=DIR uses the binaries in DIR as they are (no release build).
set -euo pipefail
cd "$(dirname "$0")/../.."
cg_pings=${1:-3000}
cpu_pings=${2:-30000}
rounds=${3:-2}
bin=${BENCH_BIN:-${CARGO_TARGET_DIR:-target}/release}
[ "$cg_pings" = 0 ] || command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "needs openssl (the command)" >&2; exit 1; }
if [ -z "${BENCH_BIN:-}" ]; then
  cargo build --release --locked -p bitsgate -p bits-testkit --bins >/dev/null 2>&1 \
    || cargo build --release --locked -p bitsgate -p bits-testkit --bins
fi

work=$(mktemp -d /tmp/bitsgate-btls.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=benches/e2e/lib.sh
. benches/e2e/lib.sh

# A CA and a leaf for 127.0.0.1 (ECDSA P-256, as a current IIS certificate might be).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=bench CA" -keyout "$work/ca-key.pem" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=127.0.0.1" -keyout "$work/leaf-key.pem" -out "$work/leaf.csr" 2>/dev/null
printf 'subjectAltName = IP:127.0.0.1\n' >"$work/leaf.ext"
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca-key.pem" \
  -CAcreateserial -days 2 -extfile "$work/leaf.ext" -out "$work/leaf.pem" 2>/dev/null

plain=127.0.0.1:$(free_port)
tls=127.0.0.1:$(free_port)
mkdir -p "$work/root-plain" "$work/root-tls"
RUST_LOG=warn "$bin/bits-server" --listen "$plain" --root "$work/root-plain" >"$work/plain.log" 2>&1 &
pids+=($!)
RUST_LOG=warn "$bin/bits-server" --listen "$tls" --root "$work/root-tls" \
  --tls-cert "$work/leaf.pem" --tls-key "$work/leaf-key.pem" >"$work/tls.log" 2>&1 &
pids+=($!)
wait_port "$plain" "$work/plain.log"
wait_port "$tls" "$work/tls.log"

# config SETTING: writes $work/bitsgate.toml for plain | tls; sets $proxy.
config() {
  proxy=127.0.0.1:$(free_port)
  case $1 in
    plain) bench_config "$work/bitsgate.toml" "$proxy" "127.0.0.1:$(free_port)" memory "$work/data" 1 "b1=$plain" ;;
    tls)
      bench_config "$work/bitsgate.toml" "$proxy" "127.0.0.1:$(free_port)" memory "$work/data" 1 "b1=$tls"
      printf 'tls = true\n[upstream]\nca_file = "%s"\n' "$work/ca.pem" >>"$work/bitsgate.toml"
      ;;
  esac
  printf '[log]\naccess = "off"\n' >>"$work/bitsgate.toml"
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

echo "== $(date -u '+%F %T') UTC, commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' (+ local changes)'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$cg_pings" = 0 ] || echo "== instructions per Ping (callgrind, $cg_pings Pings, keep-alive, concurrency 8)"
for setting in plain tls; do
  [ "$cg_pings" = 0 ] && break
  config "$setting"
  BITSGATE_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "$bin/bitsgate" run --config "$work/bitsgate.toml" >"$work/bitsgate.log" 2>&1 &
  cg_pid=$!; pids+=("$cg_pid")
  WAIT_PORT_SECONDS=60 wait_port "$proxy" "$work/bitsgate.log"
  "$bin/bits-load" "http://$proxy/" --ping --requests 200 --concurrency 4 --threads 1 >/dev/null
  callgrind_control -z "$cg_pid" >/dev/null 2>&1
  "$bin/bits-load" "http://$proxy/" --ping --requests "$cg_pings" --concurrency 8 --threads 1 >/dev/null
  callgrind_control -d "$cg_pid" >/dev/null 2>&1
  dump=$(find "$work" -name "cg.out.*" | head -n 1)
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}')
  printf '%-5s %12d instructions, %7d per Ping\n' "$setting" "$total" $(( total / cg_pings ))
  stop "$cg_pid"
  rm -f "$work"/cg.out*
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "== CPU per Ping (bits-load --ping --requests $cpu_pings --concurrency 32 --threads 1; $rounds rounds, settings alternating)"
hz=$(getconf CLK_TCK)
for round in $(seq "$rounds"); do
  for setting in plain tls; do
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
    python3 - "$setting" "$round" "$ticks" "$cpu_pings" "$hz" <<PY
import json, sys
setting, round_, ticks, pings, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
r = json.loads('''$report''')
cpu = ticks / hz
print(f"round {round_} {setting:<5} {r['requests_per_s']:8.0f} req/s  errors {r['errors']}  CPU {cpu:5.2f} s  ({cpu / pings * 1e6:5.1f} µs/Ping)")
PY
    stop "$pid"
  done
done
