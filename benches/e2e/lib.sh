# shellcheck shell=bash
# Shared by the benchmark scripts in this directory (sourced, not run).

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port HOST:PORT LOG... : waits up to $WAIT_PORT_SECONDS (default 20) for a
# listener; on failure prints the tails of the given logs and returns 1.
wait_port() {
  local addr=$1; shift
  for _ in $(seq $(( ${WAIT_PORT_SECONDS:-20} * 20 ))); do
    (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $addr; logs:" >&2
  [ $# -gt 0 ] && tail -n 20 "$@" >&2
  return 1
}

# bench_config FILE LISTEN ADMIN STORAGE_MODE DATA_DIR THREADS ID=ADDR... : a bitsgate
# config for a measurement: health checks off (probes would add requests), its upgrade
# socket and pid file beside FILE.
bench_config() {
  local file=$1 listen=$2 admin=$3 mode=$4 data=$5 threads=$6 backend; shift 6
  {
    printf '[listener]\naddress = "%s"\n[admin]\naddress = "%s"\n' "$listen" "$admin"
    printf '[storage]\nmode = "%s"\ndata_dir = "%s"\n' "$mode" "$data"
    printf '[server]\nthreads = %s\nupgrade_sock = "%s.sock"\npid_file = "%s.pid"\n' "$threads" "$file" "$file"
    printf '[health_check]\nkind = "none"\n'
    for backend in "$@"; do
      printf '[[backends]]\nid = "%s"\naddress = "%s"\n' "${backend%%=*}" "${backend#*=}"
    done
  } >"$file"
}
