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
#   CG_BITSGATE        the bitsgate binary to measure (default: the release build),
#                      e.g. an older build kept for a before/after comparison
#   CG_FAST_PATH       false: `[listener] fast_path = false`, every Ping through
#                      Pingora's proxy (default: the configuration's default, true)
#   CG_TLS             1: the client listener speaks TLS (a self-signed ECDSA P-256
#                      certificate made with openssl), and the Pings come from a
#                      Python client over one kept-alive TLS connection; needs
#                      openssl and python3
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

# shellcheck source=benches/e2e/lib.sh
. benches/e2e/lib.sh

backend=127.0.0.1:$(free_port)
mkdir -p "$work/root"
RUST_LOG=warn "$bin/bits-server" --listen "$backend" --root "$work/root" >"$work/server.log" 2>&1 &
pids+=($!)
proxy=127.0.0.1:$(free_port)
bench_config "$work/bitsgate.toml" "$proxy" "127.0.0.1:$(free_port)" memory "$work/data" 1 "b1=$backend"
if [ -n "${CG_FAST_PATH:-}" ]; then
  sed -i "s/^\[listener\]\$/[listener]\nfast_path = $CG_FAST_PATH/" "$work/bitsgate.toml"
fi
scheme=http
if [ "${CG_TLS:-0}" = 1 ]; then
  scheme=https
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
  printf '[listener.tls]\ncert_path = "%s"\nkey_path = "%s"\n' "$work/cert.pem" "$work/key.pem" \
    >>"$work/bitsgate.toml"
fi
# PINGS Pings (keep-alive); bits-load over plain HTTP, a Python client over TLS.
pings_to_proxy() {
  if [ "$scheme" = http ]; then
    "$bin/bits-load" "http://$proxy/" --ping --requests "$1" --concurrency "$2" --threads 1 >/dev/null
    return
  fi
  python3 - "$proxy" "$1" "$work/cert.pem" <<'PY'
import ssl, sys
sys.path.insert(0, "benches/e2e")
from benchlib import tls_pings
port, count, ca = int(sys.argv[1].rsplit(":", 1)[1]), int(sys.argv[2]), sys.argv[3]
tls_pings(port, ssl.create_default_context(cafile=ca), count)
PY
}
BITSGATE_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
  "${CG_BITSGATE:-$bin/bitsgate}" run --config "$work/bitsgate.toml" >"$work/bitsgate.log" 2>&1 &
pids+=($!); cg_pid=$!
wait_port "$backend" "$work"/*.log
WAIT_PORT_SECONDS=60 wait_port "$proxy" "$work"/*.log   # valgrind starts slowly

pings_to_proxy 200 4
callgrind_control -z "$cg_pid" >/dev/null 2>&1
pings_to_proxy "$pings" 8
callgrind_control -d "$cg_pid" >/dev/null 2>&1
dump=$(find "$work" -name "cg.out.*" | head -n 1)

total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1; exit}')
echo "== commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src crates || echo ' (+ local changes)'), $pings Pings, fast_path ${CG_FAST_PATH:-default}, $scheme"
echo "instructions: $total total, $(( total / pings )) per Ping"
# The function lines, without the thread and runtime frames every cost sits under.
listing() { sed -n '/file:function/,$p' | grep -E '^ *[0-9,]+ ' | grep -vE '\((100\.0|99\.[0-9]+)%\)' | head -n "$top"; }
echo "== top $top by exclusive cost"
callgrind_annotate --threshold=100 "$dump" 2>/dev/null | listing
echo "== top $top by inclusive cost"
callgrind_annotate --inclusive=yes --threshold=100 "$dump" 2>/dev/null | listing
