"""Connections spread across workers: a burst of keep-alive connections does not pile up on
the worker that happened to be on a CPU when it arrived (src/server/mod.rs, `wait_for_share`).

Without it, the 100 connections below land like 15/32/53/0 on four workers of an idle machine.
"""

from __future__ import annotations

import socket
import time
from collections import Counter

from conftest import Raw, StartServer

WORKERS = 4
CONNECTIONS = 100


def pid_over(port: int) -> str:
    with Raw(port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return c.response().body.decode()


def test_a_burst_of_keepalive_connections_is_spread_over_every_worker(serve: StartServer) -> None:
    server = serve("apps.basic:pid", "--workers", str(WORKERS))
    # Readiness: every worker has answered (each is then accepting). Connections that close
    # leave no imbalance behind, so this does not skew what follows.
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while len(seen) < WORKERS and time.monotonic() < deadline:
        seen.add(pid_over(server.port))
    assert len(seen) == WORKERS, f"only {len(seen)} workers answered: {server.log()}"

    # The burst: the kernel completes every handshake into the listen backlog before any
    # worker accepts, as when a load balancer or a benchmark opens its connection pool.
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(CONNECTIONS)]
    try:
        for s in socks:
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        owners: Counter[str] = Counter()
        for s in socks:
            data = b""
            while b"\r\n\r\n" not in data or not data.split(b"\r\n\r\n", 1)[1]:
                chunk = s.recv(4096)
                assert chunk, "the server closed a keep-alive connection"
                data += chunk
            owners[data.split(b"\r\n\r\n", 1)[1].decode()] += 1
    finally:
        for s in socks:
            s.close()
    counts = sorted(owners.values())
    assert len(owners) == WORKERS, f"some worker took none of the connections: {counts}"
    # A fair share is 25; a worker defers while it holds more than one over the mean, for at
    # most 20 ms per connection, so a loaded machine may leave some slack, but not 62/28/10/0.
    assert counts[-1] <= 40 and counts[0] >= 10, counts
