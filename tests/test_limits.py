"""--limit-concurrency: past the limit a worker answers 503 at once instead of queueing."""

from __future__ import annotations

import threading
import time

import httpx
from conftest import StartServer
from reliability.loadgen import wait_until


def test_requests_past_the_limit_get_503_at_once(serve: StartServer) -> None:
    server = serve("apps.basic:slow", "--limit-concurrency", "2", ready_path="/?0")
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    start = threading.Barrier(5)

    def client() -> None:
        start.wait()
        t0 = time.monotonic()
        r = httpx.get(server.url + "/?1", timeout=10)
        with lock:
            results.append((r.status_code, time.monotonic() - t0))

    threads = [threading.Thread(target=client) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    statuses = sorted(s for s, _ in results)
    assert statuses == [200, 200, 503, 503, 503], results
    assert all(elapsed < 0.9 for status, elapsed in results if status == 503), results
    # One warning (not one per refusal), handed to logging by the worker's log thread.
    wait_until(lambda: "--limit-concurrency 2 reached" in server.log(), 5, "the overload warning")
    assert server.log().count("--limit-concurrency 2 reached") == 1
    # Once the load is gone the worker answers normally again.
    assert httpx.get(server.url + "/?0", timeout=5).status_code == 200
