"""Helpers the Python benchmark scripts of this directory share: free loopback ports,
waiting for a listener, and a process's resident memory and open descriptors."""

import os
import re
import socket
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
