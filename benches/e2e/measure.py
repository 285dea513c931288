#!/usr/bin/env python3
"""Run one bits-load command and record what it cost.

Usage: measure.py --out FILE --round N --scenario S --target T
                  [--proxy-pid PID] [--backend-pids PID,PID] -- COMMAND...

COMMAND must print a bits-load JSON report (`--json`) on stdout. Around it, the CPU
time (utime + stime, /proc/<pid>/stat) of the proxy process and of the backends, and the
busy time of every core (/proc/stat), are read before and after. One JSON object per
run is appended to FILE and a one-line summary is printed.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
PERF_EVENTS = "task-clock,context-switches,raw_syscalls:sys_enter"


def proc_cpu(pid):
    """(user, system) CPU seconds of a process, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of the man page): utime is field 14, stime 15
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def cores():
    """{core: (busy, total)} jiffies from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                vals = [int(v) for v in vals]
                total = sum(vals[:8])
                idle = vals[3] + vals[4]
                out[name] = (total - idle, total)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--round", required=True)
    p.add_argument("--perf-out", help="count syscalls and context switches of the proxy "
                   "with perf stat; the record goes to this file instead of --out")
    p.add_argument("--scenario", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--proxy-pid", type=int)
    p.add_argument("--backend-pids", default="")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    a = p.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    backends = [int(x) for x in a.backend_pids.split(",") if x]

    proxy0 = proc_cpu(a.proxy_pid) if a.proxy_pid else None
    back0 = [proc_cpu(b) for b in backends]
    perf = None
    if a.perf_out and a.proxy_pid:
        perf = subprocess.Popen(
            ["perf", "stat", "-x,", "-e", PERF_EVENTS, "-p", str(a.proxy_pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)  # let perf attach
    cores0 = cores()
    t0 = time.monotonic()
    run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - t0
    cores1 = cores()
    proxy1 = proc_cpu(a.proxy_pid) if a.proxy_pid else None
    back1 = [proc_cpu(b) for b in backends]
    counts = {}
    if perf:
        perf.send_signal(signal.SIGINT)
        for line in perf.communicate()[1].splitlines():
            f = line.split(",")
            if len(f) > 2 and f[2]:
                try:
                    counts[f[2]] = float(f[0])
                except ValueError:
                    pass

    try:
        report = json.loads(run.stdout)
    except ValueError:
        sys.stderr.write(f"bits-load gave no report (exit {run.returncode}): {run.stderr}\n")
        report = None
    rec = {
        "round": a.round,
        "scenario": a.scenario,
        "target": a.target,
        "exit": run.returncode,
        "wall_s": round(wall, 3),
        "report": report,
        "core_busy": {
            c: round((cores1[c][0] - cores0[c][0]) / max(1, cores1[c][1] - cores0[c][1]), 3)
            for c in cores1
        },
    }
    if proxy0:
        rec["proxy_cpu_s"] = {"user": proxy1[0] - proxy0[0], "sys": proxy1[1] - proxy0[1]}
    if backends:
        rec["backend_cpu_s"] = {
            "user": sum(b[0] for b in back1) - sum(b[0] for b in back0),
            "sys": sum(b[1] for b in back1) - sum(b[1] for b in back0),
        }
    if perf:
        rec["perf"] = counts
    with open(a.perf_out or a.out, "a") as f:
        f.write(json.dumps(rec) + "\n")

    if report is None:
        print(f"{a.scenario:9} {a.target:9} FAILED (exit {run.returncode})")
        return
    lat = report["latency_us"]
    reqs = max(1, report["requests"])
    line = (f"{a.scenario:9} {a.target:9} {report['requests_per_s']:9.0f} req/s "
            f"{report['throughput_mib_s']:8.1f} MiB/s "
            f"{report['uploads_ok'] / report['elapsed_s'] if report['elapsed_s'] else 0:7.1f} up/s  "
            f"p50 {lat['p50']} p99 {lat['p99']} p99.9 {lat['p999']} us  "
            f"err {report['errors']} restarts {report['restarts']}")
    if proxy0:
        cpu = rec["proxy_cpu_s"]
        line += f"  proxy {1e6 * (cpu['user'] + cpu['sys']) / reqs:.1f} us/req"
        line += f" ({1e6 * cpu['user'] / reqs:.1f} usr)"
    if backends:
        cpu = rec["backend_cpu_s"]
        line += f"  backends {1e6 * (cpu['user'] + cpu['sys']) / reqs:.1f} us/req"
    if perf and counts:
        line += "  perf: " + ", ".join(
            f"{k.split(':')[-1]} {v / reqs:.2f}/req" for k, v in counts.items()
            if k != "task-clock")
        if "task-clock" in counts:
            line += f", task-clock {1e3 * counts['task-clock'] / reqs:.1f} us/req"
    busy = " ".join(f"{c}={100 * v:.0f}%" for c, v in sorted(rec["core_busy"].items()))
    line += f"  busy {busy}"
    print(line, flush=True)


if __name__ == "__main__":
    main()
