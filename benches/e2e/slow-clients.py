#!/usr/bin/env python3
"""Slow clients against bitsgate's [listener] limits (a measurement, not a test).

Starts one reference server and bitsgate (release binaries, one worker thread,
memory-only pins, health checks off, pooled upstream connections kept 5 s) with
header_timeout and body_timeout at
SLOW_TIMEOUT seconds, then at once:
  - SLOWLORIS connections that send a request line and one header line every
    5 seconds, never ending the header block;
  - STALLED connections that send a Fragment-sized POST header, 1 KiB of its body
    and then nothing;
  - UPLOADS real uploads (bits-upload, 4 MiB each, 256 KiB fragments).
It samples bitsgate's RSS and open descriptors every 0.25 s, waits until every slow
connection was closed by bitsgate, and prints baseline, peak and final figures, the
uploads' outcome and the closed-connection counters. See docs/testing.md
("Slow clients").

Usage: benches/e2e/slow-clients.py [SLOWLORIS] [STALLED] [UPLOADS]   (2000 200 50)
Environment: CARGO_TARGET_DIR (default target), SLOW_PROFILE (release or debug;
default release; build first: cargo build --release -p bitsgate -p bits-testkit
--bins), SLOW_TIMEOUT (default 10).
"""

import asyncio
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import bitsgate_config, fds, free_port, rss_kib, wait_port

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                   os.environ.get("SLOW_PROFILE", "release"))
SLOWLORIS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
STALLED = int(sys.argv[2]) if len(sys.argv) > 2 else 200
UPLOADS = int(sys.argv[3]) if len(sys.argv) > 3 else 50
TIMEOUT = int(os.environ.get("SLOW_TIMEOUT", "10"))


def metric(admin, name):
    text = urllib.request.urlopen(f"http://{admin}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(name):
            key, value = line.rsplit(" ", 1)
            out[key[len(name):] or "value"] = float(value)
    return out


async def slowloris(addr, stop):
    host, port = addr.rsplit(":", 1)
    try:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"BITS_POST /uploads/slow HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        while not stop.is_set():
            try:
                await asyncio.wait_for(reader.read(1), timeout=5)
                return "closed"  # EOF or an answer: bitsgate let go of it
            except asyncio.TimeoutError:
                writer.write(b"X-Drip: 1\r\n")
                await writer.drain()
        return "open"
    except OSError:
        return "closed"


PROTOCOL = "{7df0354d-249b-430f-820d-3d2a9bef4931}"


async def stalled(addr, stop, i):
    """A real session, then a 1 MiB Fragment of which 1 KiB is sent."""
    host, port = addr.rsplit(":", 1)
    try:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"BITS_POST /uploads/stalled{i}.bin HTTP/1.1\r\nHost: x\r\n"
            f"BITS-Packet-Type: Create-Session\r\nBITS-Supported-Protocols: {PROTOCOL}\r\n"
            "Content-Length: 0\r\n\r\n".encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
        session = re.search(rb"(?i)BITS-Session-Id: *(\S+)", head).group(1).decode()
        writer.write(
            f"BITS_POST /uploads/stalled{i}.bin HTTP/1.1\r\nHost: x\r\n"
            f"BITS-Packet-Type: Fragment\r\nBITS-Session-Id: {session}\r\n"
            "Content-Range: bytes 0-1048575/1048576\r\nContent-Length: 1048576\r\n\r\n".encode()
            + b"\0" * 1024
        )
        await writer.drain()
        while not stop.is_set():
            try:
                if not await asyncio.wait_for(reader.read(4096), timeout=1):
                    return "closed"
            except asyncio.TimeoutError:
                continue
        return "open"
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, AttributeError) as e:
        return f"failed: {e!r}"


async def upload(proxy, path, work, i):
    proc = await asyncio.create_subprocess_exec(
        os.path.join(BIN, "bits-upload"), "--fragment-size", "256KiB", "--json",
        f"http://{proxy}/uploads/up{i}.bin", path,
        stdout=asyncio.subprocess.DEVNULL, stderr=open(os.path.join(work, f"up{i}.err"), "w"),
    )
    return await proc.wait()


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = tempfile.mkdtemp(prefix="bitsgate-slow.")
    procs = []
    try:
        backend_port = free_port()
        backend = f"127.0.0.1:{backend_port}"
        os.makedirs(os.path.join(work, "root"))
        procs.append(subprocess.Popen(
            [os.path.join(BIN, "bits-server"), "--listen", backend, "--root", os.path.join(work, "root")],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "w")))
        wait_port(backend_port, "bits-server")
        proxy_port, admin_port = free_port(), free_port()
        proxy, admin = f"127.0.0.1:{proxy_port}", f"127.0.0.1:{admin_port}"
        config = bitsgate_config(
            work, proxy_port, admin_port, [backend_port],
            listener=f'header_timeout = "{TIMEOUT}s"\nbody_timeout = "{TIMEOUT}s"\n'
                     f'[upstream]\nidle_timeout = "5s"\n')
        env = dict(os.environ, BITSGATE_LOG="warn")
        gate = subprocess.Popen([os.path.join(BIN, "bitsgate"), "run", "--config", config],
                                stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(work, "bitsgate.log"), "w"), env=env)
        procs.append(gate)
        wait_port(proxy_port, "bitsgate")
        data = os.path.join(work, "data.bin")
        with open(data, "wb") as f:
            f.write(os.urandom(4 * 1024 * 1024))
        # Warm up: one upload, so the baseline holds the allocator's working set.
        assert await upload(proxy, data, work, "warm") == 0
        await asyncio.sleep(1)
        base_rss, base_fds = rss_kib(gate.pid), fds(gate.pid)
        print(f"== {time.strftime('%F %T', time.gmtime())} UTC, {os.cpu_count()} cores, "
              f"limits: header_timeout={TIMEOUT}s body_timeout={TIMEOUT}s (body_min_bytes 1KiB), "
              f"max_connections default, fd limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}")
        print(f"baseline: RSS {base_rss / 1024:.1f} MiB, {base_fds} fds")

        stop = asyncio.Event()
        peak = {"rss": base_rss, "fds": base_fds, "open": 0}

        async def sampler():
            while not stop.is_set():
                peak["rss"] = max(peak["rss"], rss_kib(gate.pid))
                peak["fds"] = max(peak["fds"], fds(gate.pid))
                peak["open"] = max(peak["open"], metric(admin, "bitsgate_client_connections").get("value", 0))
                await asyncio.sleep(0.25)

        started = time.time()
        sampling = asyncio.create_task(sampler())
        slow = [asyncio.create_task(slowloris(proxy, stop)) for _ in range(SLOWLORIS)]
        stall = [asyncio.create_task(stalled(proxy, stop, i)) for i in range(STALLED)]
        await asyncio.sleep(1)
        ups = await asyncio.gather(*(upload(proxy, data, work, i) for i in range(UPLOADS)))
        uploads_done = time.time() - started
        # Every slow connection must be let go of by bitsgate itself.
        results = await asyncio.wait_for(asyncio.gather(*slow, *stall), timeout=TIMEOUT * 6 + 30)
        closed_after = time.time() - started
        stop.set()
        await sampling
        await asyncio.sleep(2)
        final_rss, final_fds = rss_kib(gate.pid), fds(gate.pid)
        await asyncio.sleep(13)
        later_rss, later_fds = rss_kib(gate.pid), fds(gate.pid)
        ok = sum(1 for r in ups if r == 0)
        print(f"uploads: {ok}/{UPLOADS} complete in {uploads_done:.1f} s (4 MiB each, 256 KiB fragments)")
        print(f"slow connections closed by bitsgate: {results.count('closed')}/{len(results)} "
              f"after {closed_after:.1f} s")
        print(f"peak: RSS {peak['rss'] / 1024:.1f} MiB, {peak['fds']} fds, "
              f"{int(peak['open'])} client connections open")
        print(f"after (2 s / 15 s later): RSS {final_rss / 1024:.1f} / {later_rss / 1024:.1f} MiB, "
              f"{final_fds} / {later_fds} fds")
        closed = metric(admin, "bitsgate_client_connections_closed_total")
        reasons = [(k.split('"')[1], int(v)) for k, v in sorted(closed.items()) if v]
        print("closed by reason: " + ", ".join(f"{k}={v}" for k, v in reasons))
        failed = [r for r in results if r not in ("closed", "open")]
        if failed:
            print(f"slow clients that failed to start: {len(failed)}, e.g. {failed[0]}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


asyncio.run(main())
