"""--metrics-bind: a Prometheus endpoint in the supervisor that adds up every worker's counters.

The Rust core of each worker stores its counters in the shared scoreboard (src/scoreboard/metrics.rs);
this module reads them, keeps the totals of workers that have exited (so counters never go
backwards when a worker is replaced) and exposes everything through prometheus_client (the
official client library; `pip install rsgi[metrics]`). `Endpoint` answers `GET /metrics` from the
supervisor's own select loop, without a thread (the supervisor forks) and without ever waiting on
a client."""

from __future__ import annotations

import gzip
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from .scoreboard import Scoreboard

log = logging.getLogger("rsgi.metrics")

# The gauges among the scoreboard's named readings (src/scoreboard/metrics.rs `NAMES`); the
# others are counters, added up over live workers and those that have exited.
GAUGES = ("in_flight", "connections_open", "websockets_open")
REFUSAL_REASONS = (
    "malformed",
    "method",
    "body_too_large",
    "head_too_large",
    "transfer_coding",
    "body_timeout",
    "overload",
    "proxy_protocol",
    "rate_limited",
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def signed(v: int) -> int:
    """Gauges are stored with wrapping adds; a transient negative reads as a huge u64."""
    return v - (1 << 64) if v >= 1 << 63 else v


def proc_stats(pid: int) -> tuple[float, float]:
    """(resident bytes, CPU seconds) of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/statm") as f:
            rss_pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    return float(rss_pages * os.sysconf("SC_PAGE_SIZE")), cpu


class Totals:
    """Counters of workers that have exited, added to the live ones at every scrape."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.restarts = 0

    def worker_exited(self, readings: list[tuple[str, int]]) -> None:
        self.counters.update({name: v for name, v in readings if name not in GAUGES})


class Collector:
    """A prometheus_client custom collector over the scoreboard."""

    def __init__(self, scoreboard: Scoreboard, workers: Callable[[], list[tuple[int, int]]], totals: Totals) -> None:
        self.scoreboard = scoreboard
        self.workers = workers  # () -> [(pid, slot)] of live workers
        self.totals = totals

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        live = self.workers()
        words = Counter(self.totals.counters)
        gauges = dict.fromkeys(GAUGES, 0)
        depth = 0
        for _pid, slot in live:
            w = dict(self.scoreboard.metrics(slot))
            depth += max(0, w["jobs_submitted"] - w["jobs_taken"])
            for name, v in w.items():
                if name in GAUGES:
                    gauges[name] += signed(v)
                else:
                    words[name] += v

        c = CounterMetricFamily("rsgi_responses", "Responses sent, by status class.", labels=["status"])
        for k in range(1, 6):
            c.add_metric([f"{k}xx"], words[f"responses_{k}xx"])
        yield c
        cumulative, buckets = 0, []
        for name in [n for n in self.scoreboard.names() if n.startswith("latency_le_")]:
            cumulative += words[name]
            bound = name.removeprefix("latency_le_").removesuffix("ms")
            buckets.append(("+Inf" if bound == "inf" else repr(int(bound) / 1000), cumulative))
        yield HistogramMetricFamily(
            "rsgi_request_duration_seconds",
            "From the request's arrival to its last response byte handed to the socket.",
            buckets=buckets,
            sum_value=words["latency_sum_us"] / 1e6,
        )
        yield GaugeMetricFamily("rsgi_requests_in_flight", "Requests being served now.", value=gauges["in_flight"])
        refused = CounterMetricFamily(
            "rsgi_requests_refused", "Requests answered by the core without reaching the app.", labels=["reason"]
        )
        for reason in REFUSAL_REASONS:
            refused.add_metric([reason], words[f"refused_{reason}"])
        yield refused
        yield CounterMetricFamily(
            "rsgi_requests_timed_out",
            "Requests answered 504 by the core: no response had started within --request-timeout.",
            value=words["timed_out"],
        )
        yield GaugeMetricFamily(
            "rsgi_app_queue_depth",
            "Requests read and waiting for a Python thread (or the event loop).",
            value=depth,
        )
        yield CounterMetricFamily(
            "rsgi_app_queue_wait_seconds",
            "Time requests waited for a Python thread (includes waiting for the GIL).",
            value=words["queue_wait_sum_us"] / 1e6,
        )
        yield CounterMetricFamily("rsgi_app_queue_waits", "Requests handed to Python.", value=words["queue_waits"])
        yield CounterMetricFamily(
            "rsgi_request_body_bytes", "Request body bytes read.", value=words["request_body_bytes"]
        )
        yield CounterMetricFamily(
            "rsgi_response_body_bytes", "Response body bytes sent.", value=words["response_body_bytes"]
        )
        yield GaugeMetricFamily("rsgi_connections_open", "Open client connections.", value=gauges["connections_open"])
        yield CounterMetricFamily("rsgi_connections", "Client connections accepted.", value=words["connections"])
        yield GaugeMetricFamily("rsgi_websockets_open", "Open WebSocket connections.", value=gauges["websockets_open"])
        yield CounterMetricFamily("rsgi_websockets", "WebSocket connections accepted.", value=words["websockets"])
        yield GaugeMetricFamily("rsgi_workers", "Live worker processes.", value=len(live))
        yield CounterMetricFamily(
            "rsgi_worker_restarts", "Workers started to replace another.", value=self.totals.restarts
        )
        rss = GaugeMetricFamily("rsgi_worker_resident_memory_bytes", "Resident memory per worker.", labels=["pid"])
        cpu = CounterMetricFamily("rsgi_worker_cpu_seconds", "CPU time per worker.", labels=["pid"])
        for pid, _slot in live:
            mem, secs = proc_stats(pid)
            rss.add_metric([str(pid)], mem)
            cpu.add_metric([str(pid)], secs)
        yield rss
        yield cpu


# -- serving, from the supervisor's select loop ---------------------------------------------------

# A scraper has this long from connecting to sending its request and taking the answer; then its
# connection is closed, whatever state it is in.
CLIENT_DEADLINE = 5.0
# The request line and headers must fit in this (a scrape sends a few hundred bytes).
MAX_HEAD = 8192
# Connections open at once; past this, a new one replaces the oldest still sending its request.
MAX_CLIENTS = 32
# Connections accepted per turn of the loop, so a flood can't keep the loop accepting.
ACCEPTS_PER_TURN = 64


class _Client:
    __slots__ = ("deadline", "head", "out", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.head = bytearray()
        self.out: memoryview | None = None  # the answer, while it is being written


class Endpoint:
    """`--metrics-bind`: the listening socket and its connections, driven by the supervisor's
    loop. Every turn the loop waits for `readers()` to be readable and `writers()` writable (and
    no longer than `next_deadline()`), then hands what is ready to `serve()`. Sockets are
    non-blocking: a call reads or writes what is there and returns. Each connection gets one
    answer (`GET /metrics`, or an error) and is closed."""

    def __init__(self, address: str, collector: Collector, inherited: socket.socket | None = None) -> None:
        """Binds `address` (HOST:PORT; an empty host is 127.0.0.1), or listens on `inherited`, a
        socket already bound to it (passed by systemd or by the supervisor a USR2 replaced). Raises
        OSError (the address is unusable), ValueError (no port) or ImportError (no prometheus_client)."""
        try:
            from prometheus_client import CollectorRegistry
        except ImportError:
            raise ImportError("--metrics-bind needs prometheus_client (pip install rsgi[metrics])") from None
        self.listener = inherited if inherited is not None else _listen(address)
        self.listener.setblocking(False)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)  # type: ignore[arg-type]
        self.clients: dict[socket.socket, _Client] = {}

    def readers(self) -> list[socket.socket]:
        return [self.listener, *(c.sock for c in self.clients.values() if c.out is None)]

    def writers(self) -> list[socket.socket]:
        return [c.sock for c in self.clients.values() if c.out is not None]

    def next_deadline(self) -> float | None:
        return min((c.deadline for c in self.clients.values()), default=None)

    def serve(self, readable: set[int], writable: set[int], now: float) -> None:
        """Accepts, reads and writes what the loop found ready (file descriptors), then closes
        connections past their deadline. Never raises: a failure costs only its connection."""
        if self.listener.fileno() in readable:
            self._accept(now)
        for client in list(self.clients.values()):
            fd = client.sock.fileno()
            try:
                if client.out is None and fd in readable:
                    self._read(client)
                elif client.out is not None and fd in writable:
                    self._write(client)
            except Exception:
                log.exception("serving /metrics")
                self._close(client)
        for client in list(self.clients.values()):
            if now >= client.deadline:
                self._close(client)

    def close(self) -> None:
        """Closes the listener and every connection (in the supervisor at exit, and in each
        forked worker, which must not hold copies)."""
        for client in list(self.clients.values()):
            self._close(client)
        self.listener.close()

    def _accept(self, now: float) -> None:
        for _ in range(ACCEPTS_PER_TURN):
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # ECONNABORTED, EMFILE, ...: try again next turn
                log.warning("--metrics-bind: accept failed: %s", e)
                return
            if len(self.clients) >= MAX_CLIENTS:
                # Full: make room by dropping the oldest that has not finished its request (idle
                # connections must not lock a scraper out); if all are being answered, this one.
                waiting = [c for c in self.clients.values() if c.out is None]
                if not waiting:
                    sock.close()
                    continue
                self._close(min(waiting, key=lambda c: c.deadline))
            sock.setblocking(False)
            self.clients[sock] = _Client(sock, now + CLIENT_DEADLINE)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(MAX_HEAD)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(client)
            return
        if not data:  # the client went away before its request was complete
            self._close(client)
            return
        client.head += data
        end = _end_of_head(client.head)
        if end >= 0:
            client.out = memoryview(self._answer(bytes(client.head[:end])))
            self._write(client)  # most answers fit in the socket buffer at once
        elif len(client.head) > MAX_HEAD:
            client.out = memoryview(_response("431 Request Header Fields Too Large", b"request head too large\n"))
            self._write(client)

    def _write(self, client: _Client) -> None:
        assert client.out is not None
        try:
            sent = client.sock.send(client.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(client)
            return
        client.out = client.out[sent:]
        if not client.out:
            self._close(client)

    def _close(self, client: _Client) -> None:
        self.clients.pop(client.sock, None)
        client.sock.close()

    def _answer(self, head: bytes) -> bytes:
        lines = head.decode("latin-1").split("\n")
        request = lines[0].split()
        if len(request) != 3 or not request[2].startswith("HTTP/"):
            return _response("400 Bad Request", b"bad request\n")
        method, target, _ = request
        if target.partition("?")[0] != "/metrics":
            return _response("404 Not Found", b"only /metrics is served here\n")
        if method not in ("GET", "HEAD"):
            return _response("405 Method Not Allowed", b"GET /metrics\n", extra=(("Allow", "GET, HEAD"),))
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        from prometheus_client.exposition import choose_encoder, gzip_accepted

        # As prometheus_client's own server: the format Accept asks for, gzip if accepted.
        encoder, content_type = choose_encoder(headers.get("accept", ""))
        try:
            body = encoder(self.registry)
        except Exception:
            log.exception("collecting the metrics failed")
            return _response("500 Internal Server Error", b"collecting the metrics failed\n")
        extra: tuple[tuple[str, str], ...] = ()
        if gzip_accepted(headers.get("accept-encoding", "")):
            body = gzip.compress(body)
            extra = (("Content-Encoding", "gzip"),)
        return _response("200 OK", body, content_type, extra, head_only=method == "HEAD")


def _end_of_head(buf: bytearray) -> int:
    """Where the request head ends (the blank line), or -1 while it is incomplete."""
    ends = [i for i in (buf.find(b"\r\n\r\n"), buf.find(b"\n\n")) if i >= 0]
    return min(ends) if ends else -1


def _response(
    status: str,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    extra: tuple[tuple[str, str], ...] = (),
    head_only: bool = False,
) -> bytes:
    fields = [("Content-Type", content_type), *extra, ("Content-Length", str(len(body))), ("Connection", "close")]
    head = "".join(f"{k}: {v}\r\n" for k, v in fields)
    return f"HTTP/1.1 {status}\r\n{head}\r\n".encode("latin-1") + (b"" if head_only else body)


def _listen(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    infos = socket.getaddrinfo(
        host.strip("[]") or "127.0.0.1", int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, kind, proto, _, sockaddr = infos[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(sockaddr)
        listener.listen(MAX_CLIENTS)
    except OSError:
        listener.close()
        raise
    return listener
