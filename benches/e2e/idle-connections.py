#!/usr/bin/env python3
"""Memory per waiting client connection, bitsgate next to HAProxy (a measurement).

Starts one reference server, bitsgate (release binary, one worker thread,
`[storage] mode = "memory"` unless told otherwise below, header and keep-alive
timeouts at their 60 s maximum) and, when `haproxy` is on the PATH, HAProxy
(nbthread 1, benches/e2e/haproxy.cfg.in).
Then for each proxy and each of two kinds of waiting client:
  - `silent`: CONNS connections that never send a byte (with --tls: that completed
    their TLS handshake and then sent nothing);
  - `kept`: CONNS connections that send one Ping, read its Ack and stay open;
it records the proxy's RSS before, with all CONNS open (after 2 s to settle), the
latency of 200 Pings on a fresh connection while they are open (p50, p99), and the
RSS 3 s and 15 s after all CONNS were closed. RSS per connection = (open - before) / CONNS.

Usage: benches/e2e/idle-connections.py [--pins N] [--store memory|durable] [--tls] [CONNS ...]
  CONNS         counts of waiting connections (default: 2000 8000)
  --store       bitsgate's `[storage] mode`: `memory` (the default) or `durable`, with
                its `data_dir` in the script's temporary directory
  --pins N      bitsgate starts with N pins in its table: the durable store (implied;
                `--store memory` is refused) on a data dir that target/release/examples/
                prepin filled once (owners b1 and b2, two reference servers, as the
                `bitsgate-1m` target of run.sh). The pins are checked through
                `bitsgate_pinned_sessions` at every start, and "before" is the RSS once it
                has settled with the pins loaded (it moved less than 1 MiB in 2 s)
  --tls         the client listener speaks TLS: a self-signed ECDSA P-256 certificate
                made with `openssl req` in the temporary directory, bitsgate's
                `[listener.tls]` and HAProxy's `bind ... ssl crt`; every client
                connection (waiting ones, the Pings) completes a TLS handshake first
HAProxy runs next to bitsgate in every configuration (empty stick table; with --tls
only if it was built with OpenSSL, `haproxy -vv`).

Both this script and the proxies need CONNS + a few descriptors: the script raises
its soft limit to the hard one and the proxies inherit it.
Environment: CARGO_TARGET_DIR (default target); build first:
cargo build --release -p bitsgate -p bits-testkit --bins
and, for --pins: cargo build --release -p bitsgate --example prepin
"""

import argparse
import os
import re
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import (PING, bitsgate_config, free_port, haproxy_config, haproxy_has_openssl, make_certificate,
                      rss_kib, wait_port)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")


def arguments():
    parser = argparse.ArgumentParser(
        description="Memory per waiting client connection, bitsgate next to HAProxy.")
    parser.add_argument("counts", metavar="CONNS", type=int, nargs="*", default=[2000, 8000],
                        help="counts of waiting connections (default: 2000 8000)")
    parser.add_argument("--store", choices=["memory", "durable"], default=None,
                        help="bitsgate's [storage] mode (default: memory; durable with --pins)")
    parser.add_argument("--pins", type=int, default=0, metavar="N",
                        help="start bitsgate with N pins restored from a journal prepin filled")
    parser.add_argument("--tls", action="store_true",
                        help="a TLS client listener (self-signed certificate) for both proxies")
    args = parser.parse_args()
    if args.pins and args.store == "memory":
        parser.error("--pins needs the durable store (bitsgate restores pins from its journal)")
    if args.store is None:
        args.store = "durable" if args.pins else "memory"
    return args


ARGS = arguments()
COUNTS = ARGS.counts
# With --tls: the certificate's files (cert, key, cert + key) and the client side's
# context, set in main once the certificate exists.
CERT = None
CLIENT_TLS = None


def client_socket(sock):
    """`sock` (connected) as the proxy's client uses it: over TLS, after the handshake,
    with --tls."""
    if CLIENT_TLS is None:
        return sock
    return CLIENT_TLS.wrap_socket(sock, server_hostname="127.0.0.1")


def read_ack(sock):
    """Reads one response head and its (Content-Length) body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the Ack")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    want = int(length.group(1)) if length else 0
    while len(rest) < want:
        rest += sock.recv(4096)
    return head


def ping_latencies(port, count=200):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock = client_socket(sock)
    out = []
    for _ in range(count):
        start = time.perf_counter()
        sock.sendall(PING)
        head = read_ack(sock)
        out.append((time.perf_counter() - start) * 1e6)
        if not head.startswith(b"HTTP/1.1 200"):
            sys.exit(f"a Ping was answered {head[:40]!r}")
    sock.close()
    out.sort()
    return out[len(out) // 2], out[int(len(out) * 0.99) - 1]


def open_waiting(port, conns, kind):
    socks = []
    for i in range(conns):
        # Several source addresses: more connections than one address has ports.
        sock = socket.socket()
        sock.bind((f"127.0.{1 + i // 20000}.{1 + (i // 250) % 250}", 0))
        sock.connect(("127.0.0.1", port))
        sock = client_socket(sock)
        if kind == "kept":
            sock.sendall(PING)
            read_ack(sock)
        socks.append(sock)
    return socks


def measure(name, pid, port, conns, kind):
    before = rss_kib(pid)
    started = time.time()
    socks = open_waiting(port, conns, kind)
    opened = time.time() - started
    time.sleep(2)
    with_open = rss_kib(pid)
    p50, p99 = ping_latencies(port)
    for s in socks:
        s.close()
    time.sleep(3)
    after = rss_kib(pid)
    time.sleep(12)
    later = rss_kib(pid)
    per = (with_open - before) / conns
    print(f"{name:9} {kind:6} {conns:6}  RSS {before / 1024:6.1f} -> {with_open / 1024:6.1f} MiB"
          f" ({per:6.2f} KiB/conn), after close: 3 s {after / 1024:6.1f}, 15 s {later / 1024:6.1f} MiB;"
          f" Ping p50 {p50:5.0f} us p99 {p99:5.0f} us; opened in {opened:.1f} s", flush=True)


def pinned_sessions(admin):
    """bitsgate_pinned_sessions from the admin listener's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=30).read().decode()
    for line in text.splitlines():
        if line.startswith("bitsgate_pinned_sessions "):
            return int(float(line.split()[1]))
    return None


def settle(pid, limit=60):
    """Waits until the RSS of `pid` moved less than 1 MiB in 2 s (at most `limit` s);
    returns the seconds waited."""
    started = time.time()
    last = rss_kib(pid)
    while time.time() - started < limit:
        time.sleep(2)
        now = rss_kib(pid)
        if abs(now - last) < 1024:
            break
        last = now
    return time.time() - started


def start_bitsgate(work, backends):
    proxy, admin = free_port(), free_port()
    storage = f'[storage]\nmode = "{ARGS.store}"\n'
    if ARGS.store == "durable":
        storage += f'data_dir = "{work}/data"\n'
    tls = ""
    if CERT:
        tls = f'[listener.tls]\ncert_path = "{CERT[0]}"\nkey_path = "{CERT[1]}"\n'
    config = bitsgate_config(
        work, proxy, admin, backends, storage=storage,
        listener=f'header_timeout = "60s"\nkeepalive_timeout = "60s"\n'
                 f'max_connections = {max(COUNTS) + 500}\n{tls}')
    started = time.time()
    gate = subprocess.Popen([os.path.join(BIN, "bitsgate"), "run", "--config", config],
                            stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, "bitsgate.log"), "a"),
                            env=dict(os.environ, BITSGATE_LOG="warn"))
    wait_port(proxy, "bitsgate", limit=120)
    if ARGS.pins:
        listening = time.time() - started
        peak = rss_kib(gate.pid)
        pins = pinned_sessions(admin)
        if pins != ARGS.pins:
            gate.terminate()
            sys.exit(f"bitsgate holds {pins} pins after its start, not {ARGS.pins}")
        waited = settle(gate.pid)
        print(f"== bitsgate: {pins} pins in the table (bitsgate_pinned_sessions), listening "
              f"after {listening:.1f} s with RSS {peak / 1024:.1f} MiB, settled at "
              f"{rss_kib(gate.pid) / 1024:.1f} MiB {waited:.0f} s later", flush=True)
    return gate, proxy


def haproxy_maxconn():
    """HAProxy reserves two descriptors per connection and will not start above the
    limit."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return min(max(COUNTS) + 1000, (hard - 200) // 2)


def start_haproxy(work, backends):
    port = free_port()
    path = haproxy_config(work, port, backends, CERT[2] if CERT else None, haproxy_maxconn())
    proc = subprocess.Popen(["haproxy", "-db", "-f", path], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, "haproxy.log"), "a"))
    wait_port(port)
    return proc, port


def main():
    global CERT, CLIENT_TLS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if max(COUNTS) + 200 > hard:
        sys.exit(f"{max(COUNTS)} connections need a descriptor limit above {hard}")
    work = tempfile.mkdtemp(prefix="bitsgate-idle.")
    servers = []
    try:
        if ARGS.tls:
            CERT = make_certificate(work)
            CLIENT_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            CLIENT_TLS.load_verify_locations(CERT[0])
        if ARGS.pins:
            prepin = [os.path.join(BIN, "examples", "prepin"), "--data-dir",
                      os.path.join(work, "data"), "--count", str(ARGS.pins),
                      "--backend", "b1", "--backend", "b2"]
            print("== pre-pin: " + " ".join(prepin[:1] + ["--data-dir", "TMP/data"] + prepin[3:]))
            subprocess.run(prepin, check=True)
        backends = []
        for name in ("b1", "b2") if ARGS.pins else ("b1",):
            port = free_port()
            os.makedirs(os.path.join(work, "root", name))
            servers.append(subprocess.Popen(
                [os.path.join(BIN, "bits-server"), "--listen", f"127.0.0.1:{port}",
                 "--root", os.path.join(work, "root", name), "--name", name],
                stdout=subprocess.DEVNULL,
                stderr=open(os.path.join(work, f"server-{name}.log"), "w")))
            wait_port(port)
            backends.append(port)
        starters = [("bitsgate", start_bitsgate)]
        if not shutil.which("haproxy"):
            print("haproxy is not on the PATH: bitsgate alone")
        elif ARGS.tls and not haproxy_has_openssl():
            print("haproxy was built without OpenSSL (haproxy -vv): bitsgate alone")
        else:
            starters.append(("haproxy", start_haproxy))
        print(f"== {time.strftime('%F %T', time.gmtime())} UTC, {os.cpu_count()} cores, "
              f"descriptor limit {hard}; a fresh proxy process for every line")
        print(f"== bitsgate: [storage] mode = \"{ARGS.store}\""
              + (f", {ARGS.pins} pins restored at every start" if ARGS.pins else "")
              + ("; client listener over TLS (ECDSA P-256, self-signed), HAProxy "
                 "`bind ... ssl crt`" if ARGS.tls else "; plain client listener")
              + f"; load average {' '.join(open('/proc/loadavg').read().split()[:3])}",
              flush=True)
        for conns in COUNTS:
            for kind in ("silent", "kept"):
                for name, start in starters:
                    if name == "haproxy" and conns > haproxy_maxconn():
                        print(f"haproxy   {kind:6} {conns:6}  not measured: needs a descriptor "
                              f"limit above {2 * conns + 200}", flush=True)
                        continue
                    proc, port = start(work, backends)
                    try:
                        # Warm up: a served request's working set is in the baseline.
                        ping_latencies(port, 50)
                        measure(name, proc.pid, port, conns, kind)
                    finally:
                        proc.terminate()
                        proc.wait()
    finally:
        for server in servers:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


main()
