"""--metrics-bind: a Prometheus endpoint in the supervisor that adds up every worker's counters.

The Rust core of each worker stores its counters in the shared scoreboard (src/server/metrics.rs);
this module reads them, keeps the totals of workers that have exited (so counters never go
backwards when a worker is replaced) and exposes everything through prometheus_client (the
official client library; `pip install rsgi[metrics]`) on its own small HTTP server thread."""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from .scoreboard import Scoreboard

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


def start(address: str, collector: Collector) -> socket.socket:
    """Serves /metrics on `address` (HOST:PORT) from a daemon thread; returns its listening
    socket so forked workers can close their copy."""
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        raise ImportError("--metrics-bind needs prometheus_client (pip install rsgi[metrics])") from None
    host, _, port = address.rpartition(":")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    server, _thread = start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=registry)
    return server.socket
