"""Connections spread across workers: a burst of keep-alive connections does not pile up on
the worker that happened to be on a CPU when it arrived (src/server/mod.rs, `wait_for_share`),
and a worker left holding more than its share hands keep-alive connections back
(src/http/service.rs, `SHED_SLACK`).

Without the first, the 100 connections below land like 15/32/53/0 on four workers of an idle
machine.
"""

from __future__ import annotations

import socket
import time
from collections import Counter

from conftest import Raw, StartServer, free_port
from test_metrics import scrape_until, value

WORKERS = 4
CONNECTIONS = 100


def pid_over(port: int) -> str:
    with Raw(port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return c.response().body.decode()


def every_worker_answers(port: int) -> None:
    """Readiness: every worker has answered (each is then accepting). Connections that close
    leave no imbalance behind, so this does not skew what follows."""
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while len(seen) < WORKERS and time.monotonic() < deadline:
        seen.add(pid_over(port))
    assert len(seen) == WORKERS, f"only {len(seen)} workers answered"


def get(s: socket.socket) -> tuple[str, bool]:
    """One keep-alive GET on `s`: the answering worker's pid, and whether it said `Connection: close`."""
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or not data.split(b"\r\n\r\n", 1)[1]:
        chunk = s.recv(4096)
        assert chunk, "the server closed the connection before answering"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return body.decode(), b"\r\nconnection: close" in head.lower()


def burst(port: int) -> list[socket.socket]:
    """The kernel completes every handshake into the listen backlog before any worker accepts,
    as when a load balancer or a benchmark opens its connection pool."""
    return [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(CONNECTIONS)]


def test_a_burst_of_keepalive_connections_is_spread_over_every_worker(serve: StartServer) -> None:
    server = serve("apps.basic:pid", "--workers", str(WORKERS))
    every_worker_answers(server.port)
    socks = burst(server.port)
    try:
        owners = Counter(get(s)[0] for s in socks)
    finally:
        for s in socks:
            s.close()
    counts = sorted(owners.values())
    assert len(owners) == WORKERS, f"some worker took none of the connections: {counts}"
    # A fair share is 25; a worker defers while it holds more than one over the mean, for at
    # most 20 ms per connection, so a loaded machine may leave some slack, but not 62/28/10/0.
    assert counts[-1] <= 40 and counts[0] >= 10, counts


def test_a_worker_left_with_more_than_its_share_hands_connections_back(serve: StartServer) -> None:
    metrics = free_port()
    server = serve("apps.basic:pid", "--workers", str(WORKERS), "--metrics-bind", f"127.0.0.1:{metrics}")
    every_worker_answers(server.port)
    socks = burst(server.port)
    try:
        by_worker: dict[str, list[socket.socket]] = {}
        for s in socks:
            by_worker.setdefault(get(s)[0], []).append(s)
        # Clients of every worker but one go away: that one now holds all the connections.
        kept_pid, kept = max(by_worker.items(), key=lambda kv: len(kv[1]))
        for pid, group in by_worker.items():
            if pid != kept_pid:
                for s in group:
                    s.close()
        scrape_until(
            metrics,
            lambda m: value(m, "rsgi_connections_open") == len(kept),
            f"the other workers to see their {CONNECTIONS - len(kept)} connections closed",
        )
        answers = [get(s) for s in kept]
        assert {pid for pid, _ in answers} == {kept_pid}, "a keep-alive connection changed worker"
        closed = sum(close for _, close in answers)
        # It hands connections back until it holds no more than two over the mean: 3 of its
        # n connections stay when the others hold none ((n·4 ≤ n + 2·4) ⇔ n ≤ 2, plus rounding).
        assert closed >= len(kept) - 3, f"{closed} of {len(kept)} connections handed back"
        # The clients reconnect: their connections go to the other workers.
        again = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(closed)]
        socks += again
        owners = Counter(get(s)[0] for s in again)
        # Spread again: the crowded worker ends with about its share, not all it had.
        holds = len(kept) - closed + owners[kept_pid]
        assert holds <= len(kept) / WORKERS + 3, f"the crowded worker holds {holds} of {len(kept)} again: {owners}"
    finally:
        for s in socks:
            s.close()


def test_one_worker_never_hands_connections_back(serve: StartServer) -> None:
    server = serve("apps.basic:pid", "--workers", "1")
    socks = burst(server.port)
    try:
        assert not any(get(s)[1] for s in socks for _ in range(2))
    finally:
        for s in socks:
            s.close()
