"""--metrics-bind: the supervisor's Prometheus endpoint, adding up the counters every worker's
Rust core keeps in the shared scoreboard (src/scoreboard/metrics.rs, python/rsgi/metrics.py)."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import websockets.sync.client
from conftest import Server, StartServer, free_port, wait_until
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def scrape_until(port: int, ok: Callable[[dict], bool], what: str, timeout: float = 5.0) -> dict:
    """Scrape until `ok(samples)` holds (counters land when responses finish)."""

    def attempt() -> dict | None:
        samples = scrape(port)
        return samples if ok(samples) else None

    return wait_until(attempt, timeout, what)


def start(serve: StartServer, app: str, *flags: str, **kw) -> tuple[Server, int]:
    port = free_port()
    server = serve(app, "--metrics-bind", f"127.0.0.1:{port}", *flags, **kw)
    return server, port


def test_counters_add_up_across_workers(serve: StartServer, tmp_path: Path) -> None:
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "a.txt").write_bytes(b"x" * 1000)
    server, port = start(serve, "apps.supervision:app", "--workers", "2", "--static", f"/static/={tmp_path / 'static'}")
    wait_until(lambda: len(server.worker_pids()) == 2, 10, "two workers")
    before = scrape(port)
    ok, missing = 40, 3
    with httpx.Client(timeout=5) as c:
        for _ in range(ok):
            # A new connection each time, so both workers get requests.
            assert c.get(server.url + "/pid", headers={"Connection": "close"}).status_code == 200
        for _ in range(missing):
            assert c.get(server.url + "/static/nope.txt").status_code == 404
        assert c.post(server.url + "/", content=b"y" * 5000).status_code == 200

    # Responses are counted when their last byte has gone out; poll until all are in.
    base = value(before, "rsgi_responses_total", status="2xx")
    after = scrape_until(port, lambda s: value(s, "rsgi_responses_total", status="2xx") - base >= ok + 1, "counts")
    assert (
        value(after, "rsgi_responses_total", status="2xx") - value(before, "rsgi_responses_total", status="2xx")
        == ok + 1
    )
    assert (
        value(after, "rsgi_responses_total", status="4xx") - value(before, "rsgi_responses_total", status="4xx")
        == missing
    )
    assert value(after, "rsgi_responses_total", status="5xx") == 0
    count = value(after, "rsgi_request_duration_seconds_count")
    assert count == sum(value(after, "rsgi_responses_total", status=f"{k}xx") for k in range(1, 6))
    assert value(after, "rsgi_request_duration_seconds_bucket", le="+Inf") == count
    assert 0 < value(after, "rsgi_request_duration_seconds_sum") < count * 1.0
    assert value(after, "rsgi_request_body_bytes_total") - value(before, "rsgi_request_body_bytes_total") == 5000
    assert value(after, "rsgi_response_body_bytes_total") > ok * 3
    # Static 404s never reach Python: only the app's requests waited for a Python thread.
    assert value(after, "rsgi_app_queue_waits_total") - value(before, "rsgi_app_queue_waits_total") == ok + 1
    assert value(after, "rsgi_workers") == 2
    pids = {str(p) for p in server.worker_pids()}
    rss = {dict(k[1])["pid"]: v for k, v in after.items() if k[0] == "rsgi_worker_resident_memory_bytes"}
    assert set(rss) == pids and all(v > 1e6 for v in rss.values())
    assert value(after, "rsgi_requests_in_flight") == 0
    assert value(after, "rsgi_connections_total") >= ok + 1  # one per /pid request, then one kept alive


def test_counters_survive_a_worker_being_replaced(serve: StartServer) -> None:
    server, port = start(serve, "apps.supervision:app")
    with httpx.Client(timeout=5) as c:
        for _ in range(10):
            c.get(server.url + "/pid")
    before = scrape_until(port, lambda s: value(s, "rsgi_responses_total", status="2xx") >= 10, "10 responses")
    (victim,) = server.worker_pids()
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: (p := server.worker_pids()) and victim not in p, 15, "a replacement worker")
    server.wait_ready()
    after = scrape(port)
    assert value(after, "rsgi_responses_total", status="2xx") >= value(before, "rsgi_responses_total", status="2xx")
    assert value(after, "rsgi_worker_restarts_total") == 1


def test_in_flight_and_queue_depth_show_a_busy_worker(serve: StartServer, tmp_path: Path) -> None:
    marker = tmp_path / "entered"
    server, port = start(serve, "apps.supervision:app", env={"RSGI_TEST_MARKER": str(marker)})
    results: list[int] = []
    slow = [
        threading.Thread(target=lambda: results.append(httpx.get(server.url + "/slow?1.5", timeout=10).status_code))
        for _ in range(2)
    ]
    for t in slow:
        t.start()
    # One request is inside the app (one Python thread); the other waits in the queue.
    busy = scrape_until(
        port,
        lambda s: value(s, "rsgi_requests_in_flight") == 2 and value(s, "rsgi_app_queue_depth") == 1,
        "two requests in flight, one of them queued",
    )
    assert busy
    for t in slow:
        t.join(10)
    assert results == [200, 200]
    idle = scrape_until(port, lambda s: value(s, "rsgi_requests_in_flight") == 0, "nothing in flight")
    assert value(idle, "rsgi_app_queue_depth") == 0
    # The queued request waited about as long as the first one ran.
    assert value(idle, "rsgi_app_queue_wait_seconds_total") > 1.0


def test_websocket_gauge(serve: StartServer) -> None:
    server, port = start(serve, "apps.asgi_ws:app")
    url = f"ws://127.0.0.1:{server.port}/echo"
    with websockets.sync.client.connect(url) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
        opened = scrape(port)
        assert value(opened, "rsgi_websockets_open") == 1
        assert value(opened, "rsgi_websockets_total") == 1
    closed = scrape_until(port, lambda s: value(s, "rsgi_websockets_open") == 0, "the socket to close")
    assert value(closed, "rsgi_websockets_total") == 1


def test_an_unusable_metrics_address_stops_the_server(serve: StartServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = serve("apps.supervision:app", "--metrics-bind", f"127.0.0.1:{port}", ready=False)
        assert server.wait(15) == 1
    assert "--metrics-bind" in server.log()
