"""Thread-sensitive `sync_to_async` calls of ASGI HTTP requests on the worker's own threads
(rsgi/sync_calls.py, `--sync-concurrency`), end to end with real servers and clients.

Covered: a request's calls all run on one thread (and see its `threading.local`), threads are
reused across requests, a call through `async_to_sync` back to sync code stays on the request's
thread, requests in flight at the same time never share a thread, a call blocked
for longer than the stall limit does not hold up other requests even with `--sync-concurrency 1`,
an exception in a call is a logged 500, a task that outlives its request still makes its calls (on
asgiref's executor), websockets and `--sync-concurrency 0` are left to asgiref, a negative value
is refused, and the Django example project still serves correctly under concurrent load.

The app is tests/apps/asgi_sync.py; threads are compared by native (kernel) id, since a new
thread often reuses the `get_ident()` of one that exited. One test drives the pool in process
instead, to count its stall-timer runs.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DJANGO_DIR, TESTS, Server, StartServer, base_env, free_port, wait_until
from websockets.sync.client import connect

APP = "apps.asgi_sync:app"
RSGI_THREAD = "rsgi-sync"


def start(serve: StartServer, *flags: str) -> Server:
    return serve(APP, "--interface", "asgi", *flags)


def request_thread(r: httpx.Response, token: str) -> tuple[int, str]:
    """The one thread (native id, name) all three sync calls of an /ident request ran on, after
    checking the request saw its own thread-local token."""
    assert r.status_code == 200, r.text
    body = r.json()
    threads = {tuple(t) for t in body["threads"]}
    assert len(threads) == 1, f"one request's sync calls ran on several threads: {body}"
    assert body["token_seen"] == token, f"the thread-local token was changed by another request: {body}"
    return threads.pop()  # type: ignore[return-value]


def ident(client: httpx.Client, token: str) -> tuple[int, str]:
    return request_thread(client.get("/ident", params={"token": token}), token)


def get_all(url: str, requests: list[tuple[str, dict[str, str]]]) -> list[httpx.Response]:
    """All requests at once, each on its own connection."""

    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=len(requests))
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as c:
            return await asyncio.gather(*(c.get(path, params=query) for path, query in requests))

    return asyncio.run(main())


def test_a_request_keeps_one_thread_and_threads_are_reused(serve: StartServer) -> None:
    server = start(serve)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        threads = [ident(client, f"token-{i}") for i in range(30)]
    assert {name for _, name in threads} == {RSGI_THREAD}
    # asgiref's own way starts a new thread per request: 30 native ids.
    assert len({native for native, _ in threads}) <= 3, threads


def test_requests_in_flight_together_never_share_a_thread(serve: StartServer) -> None:
    server = start(serve)
    n = 40
    # Each request waits after its first call until all n have made theirs: all hold a thread at once.
    tokens = [f"token-{i}" for i in range(n)]
    responses = get_all(server.url, [("/ident", {"token": t, "group": "g", "n": str(n)}) for t in tokens])
    threads = [request_thread(r, t) for r, t in zip(responses, tokens, strict=True)]
    assert {name for _, name in threads} == {RSGI_THREAD}
    assert len({native for native, _ in threads}) == n, threads
    # Afterwards those threads are reused rather than new ones started.
    with httpx.Client(base_url=server.url, timeout=10) as client:
        later = {ident(client, f"later-{i}") for i in range(10)}
    assert later <= set(threads), (later, threads)


def test_a_slow_call_does_not_hold_up_other_requests(serve: StartServer, tmp_path: Path) -> None:
    server = start(serve, "--sync-concurrency", "1")
    marker = tmp_path / "slow-running"
    with httpx.Client(base_url=server.url, timeout=10) as client, ThreadPoolExecutor(1) as pool:
        slow = pool.submit(httpx.get, server.url + "/slow", params={"secs": "1.0", "marker": str(marker)}, timeout=10)
        wait_until(marker.exists, 10, "the slow sync call to start")
        started = time.monotonic()
        for i in range(10):
            assert ident(client, f"token-{i}")[1] == RSGI_THREAD
        took = time.monotonic() - started
        # Were the slow call still counted against --sync-concurrency 1, none of these calls could
        # have run before it finished.
        assert not slow.done(), f"10 requests took {took:.2f}s, longer than the 1 s call they overlapped"
        assert slow.result().status_code == 200


def test_a_sync_call_through_async_to_sync_stays_on_the_request_thread(serve: StartServer) -> None:
    server = start(serve)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        r = client.get("/nested")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["outer"] == body["inner"], body
        assert body["outer"][1] == RSGI_THREAD
        assert ident(client, "after")[1] == RSGI_THREAD


def test_an_exception_in_a_sync_call_is_a_logged_500(serve: StartServer) -> None:
    server = start(serve)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        r = client.get("/raise")
        assert r.status_code == 500
        assert "boom" not in r.text
        log = server.wait_log("ValueError: boom from sync")
        assert "Traceback (most recent call last)" in log
        assert ident(client, "after")[1] == RSGI_THREAD
        assert client.get("/raise").status_code == 500
        assert ident(client, "again")[1] == RSGI_THREAD


def test_a_task_outliving_its_request_still_runs_its_sync_call(serve: StartServer, tmp_path: Path) -> None:
    server = start(serve)
    marker = tmp_path / "background"
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert ident(client, "first")[1] == RSGI_THREAD  # the request's own calls are rsgi's
        r = client.get("/background", params={"marker": str(marker)})
        assert r.status_code == 200
        assert r.json() == "started"
    name = wait_until(lambda: marker.exists() and marker.read_text(), 10, "the background task's sync call")
    assert not name.startswith("error"), name
    assert name != RSGI_THREAD, "after its request ended, the task's call should fall back to asgiref's executor"
    assert "RuntimeError" not in server.log()


def test_websocket_calls_are_left_to_asgiref(serve: StartServer) -> None:
    server = start(serve)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert ident(client, "http")[1] == RSGI_THREAD
    with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=10) as ws:
        _, name = json.loads(ws.recv(timeout=10))
    assert name != RSGI_THREAD


def test_sync_concurrency_0_leaves_threads_to_asgiref(serve: StartServer) -> None:
    server = start(serve, "--sync-concurrency", "0")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        threads = [ident(client, f"token-{i}") for i in range(5)]
    assert RSGI_THREAD not in {name for _, name in threads}
    # asgiref starts a new thread for each request (in ThreadSensitiveContext, as under Django).
    assert len({native for native, _ in threads}) == 5, threads


@pytest.mark.parametrize("check_config", [True, False], ids=["check-config", "startup"])
def test_negative_sync_concurrency_is_refused(check_config: bool) -> None:
    args = [APP, "--sync-concurrency", "-1", "--bind", f"127.0.0.1:{free_port()}"]
    cmd = [sys.executable, "-m", "rsgi", *args, *(["--check-config"] if check_config else [])]
    proc = subprocess.run(cmd, cwd=TESTS, env=base_env(), capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "rsgi: error: sync_concurrency must be 0" in proc.stderr, proc.stderr


def test_django_example_under_concurrency(serve: StartServer, django_db: dict[str, str]) -> None:
    server = serve("mysite.asgi:application", "--chdir", str(DJANGO_DIR), env=django_db, ready_path="/hello")
    paths = ["/ahello", "/aitems"] * 25
    responses = get_all(server.url, [(p, {}) for p in paths])
    assert [r.status_code for r in responses] == [200] * len(paths)
    items = [{"id": n, "name": f"Item {n:02d}"} for n in range(1, 21)]
    for path, r in zip(paths, responses, strict=True):
        body: Any = r.text if path == "/ahello" else [{k: i[k] for k in ("id", "name")} for i in r.json()]
        assert body == ("Hello, async world!" if path == "/ahello" else items), (path, r.text[:500])
    assert "Traceback" not in server.log()


def test_the_stall_timer_fires_once_per_stall() -> None:
    """In process, on the pool itself: a quick call waits behind one that stalls (limit 1)."""
    uvloop = pytest.importorskip("uvloop")
    from rsgi.sync_calls import STALL, SyncPool, _Lease

    loop = uvloop.new_event_loop()
    pool = SyncPool(loop, 1)
    fired: list[float] = []
    on_timer = pool._on_timer

    def counting() -> None:
        fired.append(loop.time())
        on_timer()

    pool._on_timer = counting  # type: ignore[method-assign]

    async def main() -> None:
        slow, quick = _Lease(pool), _Lease(pool)
        await asyncio.gather(slow.submit(time.sleep, 3 * STALL), quick.submit(time.sleep, 0))
        slow.end()
        quick.end()

    try:
        for _ in range(5):
            loop.run_until_complete(main())
    finally:
        for thread in pool.idle:
            thread.put(None)
        loop.close()
    assert 1 <= len(fired) / 5 <= 2, f"{len(fired)} timer runs for 5 stalls"


def test_a_call_cancelled_while_waiting_at_the_gate_never_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """In process: with the gate full, a waiting call whose coroutine is cancelled is dropped, as a
    queued executor item would be, and its request still gets its thread back."""
    from rsgi import sync_calls

    monkeypatch.setattr(sync_calls, "STALL", 60.0)  # the running call must keep its place
    loop = asyncio.new_event_loop()
    pool = sync_calls.SyncPool(loop, 1)
    ran: list[str] = []

    async def main() -> None:
        first, second = sync_calls._Lease(pool), sync_calls._Lease(pool)
        running = first.submit(time.sleep, 0.05)
        waiting = second.submit(ran.append, "the cancelled call")
        assert pool.waiting, "the second call should wait at the gate"
        waiting.cancel()
        await running
        first.end()
        second.end()
        assert not pool.waiting and pool.running == 0

    try:
        loop.run_until_complete(main())
    finally:
        for thread in pool.idle:
            thread.put(None)
        loop.close()
    assert ran == []
    assert len(pool.idle) == 2, "both requests' threads should be back in the pool"
