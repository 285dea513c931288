#!/usr/bin/env python3
"""Create-Session and Fragment latency through bitsgate with the Redis pin store next
to the durable journal, and pins per second one replica creates. See
docs/benchmarks.md ("Redis pin store").

Usage: benches/e2e/redis-store.py [BIN_DIR] [SAMPLES]
  BIN_DIR: where bitsgate, bits-server and bits-load are (default target/release)
  SAMPLES: sequential Create-Sessions and Fragments per mode (default 2000)

Starts one reference server (root on /dev/shm when there is one), a redis-server on a
free port (no persistence), then for each mode a bitsgate with one thread. Latency is
measured sequentially over one kept-alive connection from this script, so it includes
the script's own cost (the same in both modes); the difference between the modes is
what the store adds. Pins per second: bits-load with 1-byte uploads (Create-Session,
one Fragment, Close-Session: one pin and one unpin each), concurrency 32.
"""

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchlib import free_port, wait_port

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release"
SAMPLES = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
PROTOCOL = "{7df0354d-249b-430f-820d-3d2a9bef4931}"


def percentiles(samples):
    samples = sorted(samples)
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
    return {
        "p50_us": round(pick(0.50) * 1e6),
        "p99_us": round(pick(0.99) * 1e6),
        "mean_us": round(sum(samples) / len(samples) * 1e6),
    }


def bits(conn, path, headers, body=b""):
    start = time.perf_counter()
    conn.request("BITS_POST", path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - start
    return response, elapsed


def measure(port):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    creates = []
    sessions = []
    for i in range(SAMPLES):
        response, elapsed = bits(
            conn,
            f"/bench/c{i}.bin",
            {"BITS-Packet-Type": "Create-Session", "BITS-Supported-Protocols": PROTOCOL},
        )
        assert response.status == 200, (response.status, response.getheaders())
        creates.append(elapsed)
        sessions.append(response.getheader("BITS-Session-Id"))
    # One session, SAMPLES fragments of 1 KiB.
    fragments = []
    total = SAMPLES * 1024
    session = sessions[0]
    for i in range(SAMPLES):
        start = i * 1024
        response, elapsed = bits(
            conn,
            "/bench/c0.bin",
            {
                "BITS-Packet-Type": "Fragment",
                "BITS-Session-Id": session,
                "Content-Range": f"bytes {start}-{start + 1023}/{total}",
            },
            b"x" * 1024,
        )
        assert response.status == 200, response.status
        fragments.append(elapsed)
    for session in sessions:
        bits(conn, "/bench/x.bin", {"BITS-Packet-Type": "Cancel-Session", "BITS-Session-Id": session})
    return percentiles(creates), percentiles(fragments)


def pins_per_second(port, uploads=5000):
    out = subprocess.run(
        [f"{BIN}/bits-load", f"http://127.0.0.1:{port}/pins/", "--uploads", str(uploads),
         "--size", "1", "--fragment-size", "1", "--concurrency", "32", "--threads", "1", "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    report = json.loads(out)
    assert report["uploads_failed"] == 0, report
    return round(report["uploads_ok"] / report["elapsed_s"])


def main():
    work = tempfile.mkdtemp(prefix="redis-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    procs = []
    try:
        backend_port = free_port()
        os.makedirs(f"{work}/root")
        procs.append(subprocess.Popen(
            [f"{BIN}/bits-server", "--root", f"{work}/root", "--listen", f"127.0.0.1:{backend_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(backend_port, "bits-server")
        redis_port = free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
             "--appendonly", "no", "--dir", work],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(redis_port, "redis-server")
        # The durable journal goes to a real disk (target/), as in storage.md.
        disk = tempfile.mkdtemp(prefix="redis-bench-journal-", dir="target")
        modes = {
            "durable": f'[storage]\nmode = "durable"\ndata_dir = "{disk}"\n',
            "redis": f'[storage]\nmode = "redis"\nredis_url = "redis://127.0.0.1:{redis_port}/0"\n',
        }
        results = {}
        for mode, storage in modes.items():
            port, admin = free_port(), free_port()
            config = f"{work}/{mode}.toml"
            with open(config, "w") as f:
                f.write(
                    f'[listener]\naddress = "127.0.0.1:{port}"\n[admin]\naddress = "127.0.0.1:{admin}"\n'
                    f'[server]\nthreads = 1\nupgrade_sock = "{work}/{mode}.sock"\npid_file = "{work}/{mode}.pid"\n'
                    f'[health_check]\nkind = "none"\n{storage}'
                    f'[[backends]]\nid = "b1"\naddress = "127.0.0.1:{backend_port}"\n')
            proxy = subprocess.Popen([f"{BIN}/bitsgate", "run", "--config", config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_port(port, "bitsgate")
                create, fragment = measure(port)
                results[mode] = {"create_session": create, "fragment_1k": fragment,
                                 "pins_per_s": pins_per_second(port)}
            finally:
                proxy.terminate()
                proxy.wait()
            for entry in os.listdir(f"{work}/root"):
                if entry.startswith("."):
                    continue  # the server's own session data
                shutil.rmtree(f"{work}/root/{entry}", ignore_errors=True)
        shutil.rmtree(disk, ignore_errors=True)
        print(json.dumps(results, indent=2))
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
