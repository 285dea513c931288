#!/usr/bin/env bash
# End-to-end comparison: bits-load against one reference server directly, through
# bitsgate (with an empty session table, and with 10^6 pins restored at start) and
# through HAProxy (when installed), one proxy thread each (or E2E_PROXY_THREADS),
# alternating the targets in every round. See benches/e2e/README.md.
#
# Usage: benches/e2e/run.sh [ROUNDS]          (default 3; builds release binaries first)
# Environment:
#   CARGO_TARGET_DIR   where the release binaries are built (default: target)
#   PROXY_CPU          core(s) of the proxy under test (default 1; with
#                      E2E_PROXY_THREADS > 1: every core, 0-(nproc-1))
#   LOAD_CPU           core of bits-load and of the reference servers (default 0)
#   E2E_RESULTS        also copy the per-run JSON lines to this file
#   E2E_NICE           nice value of every process started here, when run as root
#                      (default -10, so that other work on the machine disturbs less);
#                      the proxies get it too when they do not run under SCHED_FIFO
#   E2E_PROXY_RT       1 (default when root and one proxy thread; 0 by default with
#                      E2E_PROXY_THREADS > 1): run the proxy under test with SCHED_FIFO
#                      priority 1 (chrt -f 1), so that it runs as soon as it wakes up
#                      although other work shares its core; the kernel's RT throttling
#                      (sched_rt_runtime_us) still leaves the core 5 % for others
#   E2E_PERF           1 (default when perf exists): after the rounds, one Ping and one
#                      1 MiB run per proxy under `perf stat` (syscalls, context switches)
#   E2E_PERF_SCENARIOS the scenarios of that `perf stat` pass (default "ping frag1m")
#   E2E_SCALE_PCT      scale every request/upload count, in percent (default 100)
#   E2E_PINS           pins written into the data dir of the second bitsgate instance,
#                      target `bitsgate-1m` (default 1000000; 0 leaves that target out)
#   E2E_PINGORA        1 (default): also target `bitsgate-pingora`, the same build with
#                      `[listener] fast_path = false` (every request through Pingora's
#                      proxy); 0 leaves it out
#   E2E_PROXY_THREADS  worker threads of each proxy: bitsgate `[server] threads`,
#                      HAProxy `nbthread` (default 1); a separate configuration, labelled
#                      as such in the output, not comparable with the 1-thread figures
#   E2E_BASE_BIN       another bitsgate binary (say, a build of the commit before a
#                      change), run as target `bitsgate-base` with the same configuration
#                      as `bitsgate`, so that the change's effect is measured in the
#                      same rounds (ratio bitsgate/bitsgate-base)
#   E2E_SCENARIOS      the scenarios to run, space-separated (default: all six,
#                      "ping pingrate frag4k frag1m upload8m tiny")
#   E2E_PING_RATE      Pings per second offered in scenario `pingrate` (default 10000:
#                      at 20,000 the load core itself is busy all the time, and its own
#                      queueing is most of every target's p99)
#   E2E_STORE          bitsgate's `[storage] mode` (default durable; memory keeps pins
#                      in memory only, as HAProxy's stick table does)
#   E2E_INSTALL        1 (default): when haproxy is missing and this runs as root on a
#                      Debian-like system, install it with apt-get first
#
# Everything listens on 127.0.0.1, every load is bounded by a request or upload count,
# and every process started here is stopped on exit (trap).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benches/e2e
rounds=${1:-3}
proxy_cpu=${PROXY_CPU:-1}
load_cpu=${LOAD_CPU:-0}
scale=${E2E_SCALE_PCT:-100}
target_dir=${CARGO_TARGET_DIR:-target}
pins=${E2E_PINS:-1000000}
if [ "${E2E_STORE:-durable}" != durable ] && [ "$pins" != 0 ]; then
  echo "E2E_STORE=${E2E_STORE} keeps no journal to restore pins from: set E2E_PINS=0 too" >&2
  exit 2
fi
threads=${E2E_PROXY_THREADS:-1}
export E2E_PING_RATE=${E2E_PING_RATE:-10000}
ping_rate=$E2E_PING_RATE
if [ "$threads" -gt 1 ]; then
  proxy_cpu=${PROXY_CPU:-0-$(( $(nproc) - 1 ))}
fi
prio=()
proxy_prio=()
if [ "$(id -u)" = 0 ]; then
  prio=(nice -n "${E2E_NICE:--10}")
  # With more than one proxy thread the proxy shares the load core: SCHED_FIFO there
  # would let it preempt bits-load and the servers it waits for. Off by default then.
  if [ "${E2E_PROXY_RT:-$([ "$threads" -gt 1 ] && echo 0 || echo 1)}" = 1 ]; then
    proxy_prio=(chrt -f 1)
  else
    proxy_prio=("${prio[@]}")
  fi
fi
perf_on=${E2E_PERF:-$(command -v perf >/dev/null && echo 1 || echo 0)}

if ! command -v haproxy >/dev/null && [ "${E2E_INSTALL:-1}" = 1 ] && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null; then
  echo "== haproxy missing: apt-get install haproxy (E2E_INSTALL=0 skips this)"
  { apt-get install -y -qq haproxy || { apt-get update -qq && apt-get install -y -qq haproxy; }; } \
    >/dev/null 2>&1 || echo "   could not install haproxy: HAProxy is left out"
fi

build=(cargo build --release --locked --workspace --bins --example prepin)
echo "== build: ${build[*]}"
"${build[@]}" >/dev/null 2>&1 || "${build[@]}"
bin=$target_dir/release

# Backends' upload roots on tmpfs (the reference server writes every fragment to a
# file: on tmpfs the disk drops out of the measurement). bitsgate's pin journal, the
# configs, logs and results on the normal disk.
shm=$(mktemp -d /dev/shm/bitsgate-e2e.XXXXXX)
disk=$(mktemp -d /var/tmp/bitsgate-e2e.XXXXXX)
pids=()
cleanup() {
  # a target paused with SIGSTOP (bitsgate-1m) only acts on SIGTERM once continued
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$shm" "$disk"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=benches/e2e/lib.sh
. "$here/lib.sh"

# --- reference servers: b1 and b2 (both behind the proxies), b1 also the direct target
backend_pids=()
declare -A backend_addr
for b in b1 b2; do
  mkdir -p "$shm/$b"
  backend_addr[$b]=127.0.0.1:$(free_port)
  RUST_LOG=warn "${prio[@]}" taskset -c "$load_cpu" "$bin/bits-server" --listen "${backend_addr[$b]}" \
    --root "$shm/$b" --name "$b" >"$disk/$b.log" 2>&1 &
  pids+=($!); backend_pids+=($!)
done
backend_list=$(IFS=,; echo "${backend_pids[*]}")

# --- bitsgate: `threads` worker threads, health checks off, durable pins on the
# normal disk. Two instances with the same configuration but their own ports and data
# dirs: `bitsgate` starts with an empty journal, `bitsgate-1m` with E2E_PINS pins written
# beforehand by examples/prepin.rs (owners b1 and b2, round robin), which it restores
# into its session table before its listeners open.
ms_now() { echo $(( $(date +%s%N) / 1000000 )); }
rss_mib() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
declare -A target_addr target_pid admin_addr start_ms
start_bitsgate() { # name data-dir [fast_path [binary]]
  local name=$1 data=$2 exe=${4:-$bin/bitsgate} t0
  target_addr[$name]=127.0.0.1:$(free_port)
  admin_addr[$name]=127.0.0.1:$(free_port)
  bench_config "$disk/$name.toml" "${target_addr[$name]}" "${admin_addr[$name]}" "${E2E_STORE:-durable}" "$data" \
    "$threads" "b1=${backend_addr[b1]}" "b2=${backend_addr[b2]}"
  if [ -n "${3:-}" ]; then
    sed -i "s/^\[listener\]\$/[listener]\nfast_path = $3/" "$disk/$name.toml"
  fi
  t0=$(ms_now)
  BITSGATE_LOG=warn "${proxy_prio[@]}" taskset -c "$proxy_cpu" "$exe" run \
    --config "$disk/$name.toml" >"$disk/$name.log" 2>&1 &
  pids+=($!); target_pid[$name]=$!
  wait_port "${target_addr[$name]}" "$disk"/*.log
  start_ms[$name]=$(( $(ms_now) - t0 ))
}
pinned_sessions() { # admin address: bitsgate_pinned_sessions from /metrics
  python3 - "$1" <<'PY'
import sys, urllib.request
for line in urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=10).read().decode().splitlines():
    if line.startswith("bitsgate_pinned_sessions "):
        print(int(float(line.split()[1])))
PY
}

targets=(direct bitsgate)
target_addr[direct]=${backend_addr[b1]}
start_bitsgate bitsgate "$disk/bitsgate-data"
if [ -n "${E2E_BASE_BIN:-}" ]; then
  [ -x "$E2E_BASE_BIN" ] || { echo "E2E_BASE_BIN is not an executable: $E2E_BASE_BIN" >&2; exit 2; }
  start_bitsgate bitsgate-base "$disk/bitsgate-base-data" "" "$E2E_BASE_BIN"
  targets+=(bitsgate-base)
fi
if [ "${E2E_PINGORA:-1}" = 1 ]; then
  start_bitsgate bitsgate-pingora "$disk/bitsgate-pingora-data" false
  targets+=(bitsgate-pingora)
fi
if [ "$pins" -gt 0 ]; then
  echo "== pre-pin: $bin/examples/prepin --data-dir $disk/bitsgate-1m-data --count $pins --backend b1 --backend b2"
  "$bin/examples/prepin" --data-dir "$disk/bitsgate-1m-data" --count "$pins" --backend b1 --backend b2
  start_bitsgate bitsgate-1m "$disk/bitsgate-1m-data"
  got=$(pinned_sessions "${admin_addr[bitsgate-1m]}")
  if [ "$got" != "$pins" ]; then
    echo "bitsgate-1m holds $got pins after its start, not $pins" >&2
    exit 1
  fi
  echo "== bitsgate-1m: $got pins in the table (bitsgate_pinned_sessions); started and listening" \
    "after ${start_ms[bitsgate-1m]} ms (bitsgate, empty: ${start_ms[bitsgate]} ms);" \
    "RSS $(rss_mib "${target_pid[bitsgate-1m]}") MiB (bitsgate, empty: $(rss_mib "${target_pid[bitsgate]}") MiB)"
  targets+=(bitsgate-1m)
  # Only the instance under test runs: the other is stopped (SIGSTOP) so that its idle
  # sweep over 10^6 pins (every [sessions] sweep_interval, 60 s) never lands in another
  # target's run on the shared proxy core. See run_one.
  paused=(bitsgate-1m)
  kill -STOP "${target_pid[bitsgate-1m]}"
else
  paused=()
fi

# --- HAProxy: `threads` threads, stick table learnt from the Create-Session Ack
if command -v haproxy >/dev/null; then
  haproxy_addr=127.0.0.1:$(free_port)
  sed -e "s/@LISTEN@/$haproxy_addr/" -e "s/@B1@/${backend_addr[b1]}/" \
      -e "s/@B2@/${backend_addr[b2]}/" -e "s/@NBTHREAD@/$threads/" \
      "$here/haproxy.cfg.in" >"$disk/haproxy.cfg"
  haproxy -c -q -f "$disk/haproxy.cfg"
  "${proxy_prio[@]}" taskset -c "$proxy_cpu" haproxy -db -f "$disk/haproxy.cfg" >"$disk/haproxy.log" 2>&1 &
  pids+=($!); target_pid[haproxy]=$!
  targets+=(haproxy); target_addr[haproxy]=$haproxy_addr
else
  echo "haproxy not installed: HAProxy is left out"
fi
for t in "${targets[@]}"; do wait_port "${target_addr[$t]}" "$disk"/*.log; done

echo "== $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD)," \
  "$(nproc) cores, proxy on core(s) $proxy_cpu, bits-load + reference servers on core $load_cpu"
echo "== configuration: $threads proxy thread(s) (bitsgate [server] threads, HAProxy nbthread)" \
  "on core(s) $proxy_cpu$([ "$threads" -gt 1 ] && echo ", shared with bits-load and the servers")"
echo "== load average (1/5/15 min): $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== haproxy: $(command -v haproxy >/dev/null && haproxy -v 2>/dev/null | head -n 1)"
echo "== priority: servers and bits-load: ${prio[*]:-default}; proxies: ${proxy_prio[*]:-default}"
results=$disk/results.jsonl
: >"$results"

load() { "${prio[@]}" taskset -c "$load_cpu" "$bin/bits-load" "$@" --threads 1 --json; }
n() { local v=$(( $1 * scale / 100 )); echo $(( v > 0 ? v : 1 )); }

# Scenarios: name and bits-load arguments (URL appended by run_one)
declare -A scen_args=(
  [ping]="--ping --requests $(n 100000) --concurrency 64"
  [pingrate]="--ping --requests $(n 100000) --concurrency 64 --rate $ping_rate"
  [frag4k]="--uploads $(n 96) --size 2MiB --fragment-size 4KiB --concurrency 32"
  [frag1m]="--uploads $(n 16) --size 64MiB --fragment-size 1MiB --concurrency 4"
  [upload8m]="--uploads $(n 96) --size 8MiB --fragment-size 1MiB --concurrency 8 --new-connection-per-packet"
  [tiny]="--uploads $(n 10000) --size 1 --fragment-size 1 --concurrency 32"
)
read -r -a scenarios <<< "${E2E_SCENARIOS:-ping pingrate frag4k frag1m upload8m tiny}"
for scen in "${scenarios[@]}"; do
  [ -n "${scen_args[$scen]:-}" ] || { echo "unknown scenario in E2E_SCENARIOS: $scen" >&2; exit 2; }
done

# Continues the target under test if it is a paused one, and stops every other paused
# target. A stopped process keeps its sockets; a connection to it just waits.
only_running() { # target
  local p
  for p in "${paused[@]}"; do
    if [ "$p" = "$1" ]; then kill -CONT "${target_pid[$p]}"; else kill -STOP "${target_pid[$p]}"; fi
  done
}

run_one() { # round scenario target [extra measure.py arguments]
  local rnd=$1 scen=$2 t=$3 url="http://${target_addr[$3]}/"
  shift 3
  only_running "$t"
  # Uploads get a file name per upload; Pings the bare URL (bits-load fills in no
  # `{n}` there, and braces are not URL characters a client would send).
  case " ${scen_args[$scen]} " in
    *" --ping "*) ;;
    *) url="http://${target_addr[$t]}/r$rnd-$scen-$t/{n}.bin" ;;
  esac
  local pidarg=()
  [ -n "${target_pid[$t]:-}" ] && pidarg=(--proxy-pid "${target_pid[$t]}")
  # shellcheck disable=SC2086
  python3 "$here/measure.py" --out "$results" --round "$rnd" --scenario "$scen" \
    --target "$t" "${pidarg[@]}" --backend-pids "$backend_list" "$@" -- \
    "${prio[@]}" taskset -c "$load_cpu" "$bin/bits-load" "$url" ${scen_args[$scen]} --threads 1 --json
  # the uploaded files are not needed: keep tmpfs small
  rm -rf "$shm"/b1/r"$rnd"-* "$shm"/b2/r"$rnd"-*
}

echo "== warm-up: 5000 Pings per target (not recorded)"
for t in "${targets[@]}"; do
  only_running "$t"
  load "http://${target_addr[$t]}/" --ping --requests 5000 --concurrency 64 >/dev/null
done

for rnd in $(seq "$rounds"); do
  echo "== round $rnd"
  # rotate the target order every round, so no target is always first or last
  order=("${targets[@]:$(( (rnd - 1) % ${#targets[@]} ))}" \
         "${targets[@]:0:$(( (rnd - 1) % ${#targets[@]} ))}")
  for scen in "${scenarios[@]}"; do
    for t in "${order[@]}"; do run_one "$rnd" "$scen" "$t"; done
  done
done

if [ "$perf_on" = 1 ]; then
  read -r -a perf_scenarios <<< "${E2E_PERF_SCENARIOS:-ping frag1m}"
  echo "== perf stat on the proxy process (one more run each of: ${perf_scenarios[*]}; not in the summary)"
  for t in "${targets[@]}"; do
    [ -n "${target_pid[$t]:-}" ] || continue
    for scen in "${perf_scenarios[@]}"; do run_one perf "$scen" "$t" --perf-out "$disk/perf.jsonl"; done
  done
fi

echo "== $(date -u '+%H:%M:%S UTC') load average (1/5/15 min): $(cut -d' ' -f1-3 /proc/loadavg)"
for t in bitsgate bitsgate-base bitsgate-pingora bitsgate-1m; do
  if [ -n "${target_pid[$t]:-}" ]; then
    echo "== RSS of $t at the end: $(rss_mib "${target_pid[$t]}") MiB"
  fi
done
echo "== summary"
python3 "$here/report.py" --threads "$threads" "$results"
[ -z "${E2E_RESULTS:-}" ] || cp "$results" "$E2E_RESULTS"
