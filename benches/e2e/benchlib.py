"""Helpers the benchmark scripts of this directory share: free loopback ports, waiting
for a listener, a process's resident memory, open descriptors and CPU time, a
self-signed certificate, HAProxy's configuration, and Pings over one TLS connection."""

import os
import re
import socket
import subprocess
import sys
import time


def free_port():
    """A loopback port nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what="a server", limit=30):
    """Waits until something accepts on 127.0.0.1:`port`; exits the script if nothing
    does within `limit` seconds."""
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", int(port)), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on port {port}")


def rss_kib(pid):
    """Resident memory of process `pid`, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def fds(pid):
    """Open descriptors of process `pid`."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid):
    """User plus system CPU time of process `pid` so far, in seconds (10 ms ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_certificate(work):
    """A self-signed ECDSA P-256 certificate for 127.0.0.1: (cert, key, cert + key)."""
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "7",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    # Not a CA: rustls clients (bits-load) refuse a CA as end entity.
                    "-addext", "basicConstraints=critical,CA:FALSE",
                    "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    both = os.path.join(work, "cert-and-key.pem")
    with open(both, "w") as out:
        for path in (cert, key):
            with open(path) as f:
                out.write(f.read())
    return cert, key, both


def bitsgate_config(work, port, admin, backends, listener="", storage=""):
    """Writes a configuration for one bitsgate with one thread to WORK/bitsgate.toml:
    the client listener on 127.0.0.1:`port` (`listener`: more of its lines, then any
    tables to follow them, such as [listener.tls] or [upstream]), the admin API on
    127.0.0.1:`admin`, `storage` (default: pins in memory only), health checks off,
    backends b1, b2, ... on the `backends` ports; returns its path."""
    storage = storage or '[storage]\nmode = "memory"\n'
    path = os.path.join(work, "bitsgate.toml")
    with open(path, "w") as f:
        f.write(f'[listener]\naddress = "127.0.0.1:{port}"\n{listener}'
                f'[admin]\naddress = "127.0.0.1:{admin}"\n'
                f'{storage}'
                f'[server]\nthreads = 1\nupgrade_sock = "{work}/u.sock"\npid_file = "{work}/b.pid"\n'
                f'[health_check]\nkind = "none"\n')
        for i, backend in enumerate(backends):
            f.write(f'[[backends]]\nid = "b{i + 1}"\naddress = "127.0.0.1:{backend}"\n')
    return path


def haproxy_config(work, port, backends, cert_and_key=None, maxconn=4096):
    """Writes HAProxy's configuration (haproxy.cfg.in, one thread) for a listener on
    127.0.0.1:`port`, with TLS when `cert_and_key` names a PEM of both, in front of the
    `backends` ports; returns its path."""
    with open(os.path.join(os.path.dirname(__file__), "haproxy.cfg.in")) as f:
        cfg = f.read()
    if cert_and_key:
        cfg = cfg.replace("bind @LISTEN@", f"bind @LISTEN@ ssl crt {cert_and_key}")
    cfg = (cfg.replace("@LISTEN@", f"127.0.0.1:{port}")
           .replace("@B1@", f"127.0.0.1:{backends[0]}")
           .replace("@B2@", f"127.0.0.1:{backends[-1]}")
           .replace("@NBTHREAD@", "1")
           .replace("maxconn 4096", f"maxconn {maxconn}"))
    path = os.path.join(work, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(cfg)
    return path


def haproxy_has_openssl():
    out = subprocess.run(["haproxy", "-vv"], capture_output=True, text=True).stdout
    return "USE_OPENSSL=1" in out or "Built with OpenSSL" in out


PING = (b"BITS_POST /uploads/x HTTP/1.1\r\nHost: bench\r\nBITS-Packet-Type: Ping\r\n"
        b"Content-Length: 0\r\n\r\n")


def tls_pings(port, context, count):
    """Sends `count` Pings on one TLS connection, each after the last one's answer."""
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                             server_hostname="127.0.0.1") as tls:
        pending = b""
        for _ in range(count):
            tls.sendall(PING)
            while b"\r\n\r\n" not in pending:
                chunk = tls.recv(65536)
                if not chunk:
                    raise RuntimeError("the proxy closed the connection")
                pending += chunk
            head, _, pending = pending.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError("unexpected answer: " + head.decode(errors="replace"))
