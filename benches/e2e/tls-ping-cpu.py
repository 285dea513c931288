#!/usr/bin/env python3
"""CPU time per BITS Ping over a TLS client listener: bitsgate (fast path), bitsgate
with `[listener] fast_path = false` (Pingora's proxy) and HAProxy (`bind ... ssl crt`,
benches/e2e/haproxy.cfg.in), one thread each, in front of one reference server.

Every target gets a fresh process per round: CONNS client threads each open one TLS
connection (a self-signed ECDSA P-256 certificate) and send Pings on it, kept alive,
one at a time; a warm-up of 1,000 Pings, then PINGS Pings whose proxy CPU time (user
plus system, from /proc, 10 ms ticks) is divided by their count. The client is Python,
so the rate is the client's, far below what either proxy can do: this compares CPU per
Ping at the same modest load, not throughput. Targets alternate within each round.

With --bits-load the client is `bits-load --ping` instead (closed loop, CONNS kept-alive
TLS connections, default 64, one runtime thread), as in run.sh's `ping` scenario: the
proxy on core 1 (SCHED_FIFO priority 1 when root), bits-load and the reference server
on core 0 (nice -10 when root). Then requests/s and latency are the proxies' as well,
as far as the load core allows.

Usage: benches/e2e/tls-ping-cpu.py [--pings N] [--conns C] [--rounds R] [--bits-load]
Environment: CARGO_TARGET_DIR (default target); build first:
cargo build --release -p bitsgate -p bits-testkit --bins"""

import argparse
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import (bitsgate_config, cpu_seconds, free_port, haproxy_config, make_certificate, tls_pings,
                      wait_port)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
def load(port, context, total, conns):
    """`total` Pings over `conns` connections at once; the seconds they took."""
    errors = []

    def one(count):
        try:
            tls_pings(port, context, count)
        except Exception as e:  # reported below, after every thread ended
            errors.append(e)

    threads = [threading.Thread(target=one, args=(total // conns,)) for _ in range(conns)]
    started = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit(f"Pings failed: {errors[0]}")
    return time.time() - started


def pinned(core, argv, proxy=False):
    """`argv` on `core` with run.sh's priorities (when root): SCHED_FIFO 1 for a proxy,
    nice -10 for the load and the server."""
    prio = []
    if os.geteuid() == 0:
        prio = ["chrt", "-f", "1"] if proxy else ["nice", "-n", "-10"]
    return prio + ["taskset", "-c", str(core)] + argv


PIN = {"on": False}


def spawn(argv, proxy=False, **kwargs):
    """Starts `argv`, pinned as run.sh pins it when --bits-load asked for that."""
    if PIN["on"]:
        argv = pinned(1 if proxy else 0, argv, proxy)
    return subprocess.Popen(argv, **kwargs)


def bits_load(port, cert, total, conns):
    """`total` Pings with bits-load over `conns` TLS connections: its JSON report."""
    out = subprocess.run(
        pinned(0, [os.path.join(BIN, "bits-load"), "--ping", "--requests", str(total),
                   "--concurrency", str(conns), "--threads", "1", "--json",
                   "--ca-file", cert, f"https://127.0.0.1:{port}/"]),
        check=False, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bits-load failed: {out.stderr.strip() or out.stdout.strip()}")
    return json.loads(out.stdout)


def start_bitsgate(work, backend, cert, fast_path):
    proxy, admin = free_port(), free_port()
    config = bitsgate_config(
        work, proxy, admin, [backend],
        listener=f'fast_path = {str(fast_path).lower()}\n'
                 f'[listener.tls]\ncert_path = "{cert[0]}"\nkey_path = "{cert[1]}"\n')
    proc = spawn([os.path.join(BIN, "bitsgate"), "run", "--config", config], proxy=True,
                 stdout=subprocess.DEVNULL,
                 stderr=open(os.path.join(work, "bitsgate.log"), "a"),
                 env=dict(os.environ, BITSGATE_LOG="warn"))
    wait_port(proxy, "bitsgate")
    return proc, proxy


def start_haproxy(work, backend, cert):
    port = free_port()
    path = haproxy_config(work, port, [backend], cert[2])
    proc = spawn(["haproxy", "-db", "-f", path], proxy=True, stdout=subprocess.DEVNULL,
                 stderr=open(os.path.join(work, "haproxy.log"), "a"))
    wait_port(port, "haproxy")
    return proc, port


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pings", type=int, default=20000)
    parser.add_argument("--conns", type=int)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bits-load", action="store_true",
                        help="bits-load as the client, closed loop, pinned as in run.sh")
    args = parser.parse_args()
    args.conns = args.conns or (64 if args.bits_load else 4)
    PIN["on"] = args.bits_load
    if args.bits_load and os.cpu_count() < 2:
        sys.exit("--bits-load pins the proxy and the load to two cores: this machine has one")
    if not shutil.which("haproxy"):
        sys.exit("needs haproxy (apt-get install haproxy)")
    work = tempfile.mkdtemp(prefix="bitsgate-tls-cpu.")
    server = None
    try:
        cert = make_certificate(work)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cert[0])
        backend = free_port()
        os.makedirs(os.path.join(work, "root"))
        server = spawn(
            [os.path.join(BIN, "bits-server"), "--listen", f"127.0.0.1:{backend}",
             "--root", os.path.join(work, "root")],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "w"))
        wait_port(backend, "bits-server")
        targets = [
            ("bitsgate", lambda: start_bitsgate(work, backend, cert, True)),
            ("bitsgate-pingora", lambda: start_bitsgate(work, backend, cert, False)),
            ("haproxy", lambda: start_haproxy(work, backend, cert)),
        ]
        print(f"== {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, "
              f"{os.cpu_count()} cores, {args.pings} Pings over {args.conns} TLS connections "
              f"per target and round; load average {os.getloadavg()[0]:.2f}", flush=True)
        results = {name: [] for name, _ in targets}
        rates = {name: [] for name, _ in targets}
        p99s = {name: [] for name, _ in targets}
        for round_ in range(args.rounds):
            order = targets[round_ % len(targets):] + targets[:round_ % len(targets)]
            for name, start in order:
                proc, port = start()
                report = None
                try:
                    if args.bits_load:
                        bits_load(port, cert[0], 1000, args.conns)
                        before = cpu_seconds(proc.pid)
                        report = bits_load(port, cert[0], args.pings, args.conns)
                        seconds = report["elapsed_s"]
                    else:
                        load(port, context, 1000, args.conns)
                        before = cpu_seconds(proc.pid)
                        seconds = load(port, context, args.pings, args.conns)
                    used = cpu_seconds(proc.pid) - before
                finally:
                    proc.terminate()
                    proc.wait()
                per_ping = used / args.pings * 1e6
                results[name].append(per_ping)
                if report:
                    latency = report["latency_us"]
                    rates[name].append(report["requests_per_s"])
                    p99s[name].append(latency["p99"])
                    print(f"round {round_ + 1}  {name:17} {per_ping:6.1f} us CPU per Ping  "
                          f"{report['requests_per_s']:8.0f} Pings/s  p50 {latency['p50']} "
                          f"p99 {latency['p99']} p99.9 {latency['p999']} us", flush=True)
                else:
                    print(f"round {round_ + 1}  {name:17} {per_ping:6.1f} us CPU per Ping  "
                          f"({args.pings / seconds:7.0f} Pings/s, the client's rate)",
                          flush=True)
        print("== median CPU per Ping over the rounds (min-max)")
        haproxy = statistics.median(results["haproxy"])
        for name, values in results.items():
            median = statistics.median(values)
            print(f"{name:17} {median:6.1f} us ({min(values):.1f}-{max(values):.1f}), "
                  f"{median / haproxy:.2f}x HAProxy's")
        if args.bits_load:
            for label, table in (("Pings/s", rates), ("p99 us", p99s)):
                print(f"== {label}, median over the rounds (min-max) and x HAProxy's "
                      "(median of the per-round ratios)")
                for name, values in table.items():
                    ratios = [v / h for v, h in zip(values, table["haproxy"])]
                    print(f"{name:17} {statistics.median(values):9.0f} "
                          f"({min(values):.0f}-{max(values):.0f}), "
                          f"{statistics.median(ratios):.2f}x "
                          f"({min(ratios):.2f}-{max(ratios):.2f})")
    finally:
        if server:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
