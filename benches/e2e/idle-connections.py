#!/usr/bin/env python3
"""Memory per waiting client connection, bitsgate next to HAProxy (a measurement).

Starts one reference server, bitsgate (release binary, one worker thread,
`[storage] mode = "memory"`, header and keep-alive timeouts at their 60 s maximum)
and, when `haproxy` is on the PATH, HAProxy (nbthread 1, benches/e2e/haproxy.cfg.in).
Then for each proxy and each of two kinds of waiting client:
  - `silent`: CONNS connections that never send a byte;
  - `kept`: CONNS connections that send one Ping, read its Ack and stay open;
it records the proxy's RSS before, with all CONNS open (after 2 s to settle), the
latency of 200 Pings on a fresh connection while they are open (p50, p99), and the
RSS 3 s and 15 s after all CONNS were closed. RSS per connection = (open - before) / CONNS.

Usage: benches/e2e/idle-connections.py [CONNS ...]   (default: 2000 8000)
Both this script and the proxies need CONNS + a few descriptors: the script raises
its soft limit to the hard one and the proxies inherit it.
Environment: CARGO_TARGET_DIR (default target); build first:
cargo build --release -p bitsgate -p bits-testkit --bins
"""

import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from benchlib import free_port, rss_kib, wait_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
COUNTS = [int(a) for a in sys.argv[1:]] or [2000, 8000]
PING = (b"BITS_POST /uploads/x HTTP/1.1\r\nHost: bench\r\nBITS-Packet-Type: Ping\r\n"
        b"Content-Length: 0\r\n\r\n")


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


def start_bitsgate(work, backend):
    proxy, admin = free_port(), free_port()
    config = os.path.join(work, "bitsgate.toml")
    with open(config, "w") as f:
        f.write(f'[listener]\naddress = "127.0.0.1:{proxy}"\nheader_timeout = "60s"\n'
                f'keepalive_timeout = "60s"\nmax_connections = {max(COUNTS) + 500}\n[admin]\naddress = "127.0.0.1:{admin}"\n'
                f'[storage]\nmode = "memory"\n[server]\nthreads = 1\n'
                f'upgrade_sock = "{work}/u.sock"\npid_file = "{work}/b.pid"\n'
                f'[health_check]\nkind = "none"\n'
                f'[[backends]]\nid = "b1"\naddress = "127.0.0.1:{backend}"\n')
    gate = subprocess.Popen([os.path.join(BIN, "bitsgate"), "run", "--config", config],
                            stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, "bitsgate.log"), "a"),
                            env=dict(os.environ, BITSGATE_LOG="warn"))
    wait_port(proxy)
    return gate, proxy


def haproxy_maxconn():
    """HAProxy reserves two descriptors per connection and will not start above the
    limit."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return min(max(COUNTS) + 1000, (hard - 200) // 2)


def start_haproxy(work, backend):
    port = free_port()
    with open(os.path.join(os.path.dirname(__file__), "haproxy.cfg.in")) as f:
        cfg = (f.read().replace("@LISTEN@", f"127.0.0.1:{port}")
               .replace("@B1@", f"127.0.0.1:{backend}")
               .replace("@B2@", f"127.0.0.1:{backend}")
               .replace("@NBTHREAD@", "1")
               .replace("maxconn 4096", f"maxconn {haproxy_maxconn()}"))
    path = os.path.join(work, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(cfg)
    proc = subprocess.Popen(["haproxy", "-db", "-f", path], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, "haproxy.log"), "a"))
    wait_port(port)
    return proc, port


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if max(COUNTS) + 200 > hard:
        sys.exit(f"{max(COUNTS)} connections need a descriptor limit above {hard}")
    work = tempfile.mkdtemp(prefix="bitsgate-idle.")
    server = None
    try:
        backend = free_port()
        os.makedirs(os.path.join(work, "root"))
        server = subprocess.Popen(
            [os.path.join(BIN, "bits-server"), "--listen", f"127.0.0.1:{backend}",
             "--root", os.path.join(work, "root")],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "w"))
        wait_port(backend)
        starters = [("bitsgate", start_bitsgate)]
        if shutil.which("haproxy"):
            starters.append(("haproxy", start_haproxy))
        else:
            print("haproxy is not on the PATH: bitsgate alone")
        print(f"== {time.strftime('%F %T', time.gmtime())} UTC, {os.cpu_count()} cores, "
              f"descriptor limit {hard}; a fresh proxy process for every line")
        for conns in COUNTS:
            for kind in ("silent", "kept"):
                for name, start in starters:
                    if name == "haproxy" and conns > haproxy_maxconn():
                        print(f"haproxy   {kind:6} {conns:6}  not measured: needs a descriptor "
                              f"limit above {2 * conns + 200}", flush=True)
                        continue
                    proc, port = start(work, backend)
                    try:
                        # Warm up: a served request's working set is in the baseline.
                        ping_latencies(port, 50)
                        measure(name, proc.pid, port, conns, kind)
                    finally:
                        proc.terminate()
                        proc.wait()
    finally:
        if server:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


main()
