"""`--health-path`: answered by the Rust core without calling the app, 200 while the worker accepts
requests (also when every Python thread is busy), 503 once it drains.

The drain is observed on a keep-alive connection opened before SIGTERM: a draining worker no
longer accepts connections, but keeps serving the ones it has (each response then says
`Connection: close`), so the first health request it answers after the stop began is a 503.
Apps write each call's path to $RSGI_TEST_CALLS, so a test can tell the app was not called.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from conftest import Raw, StartServer, marker_lines, start_slow

WSGI_APP = "apps.edge:app"
ASGI_APP = "apps.edge:asgi_app"
HEALTH = "/-/health"
T = TypeVar("T")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    return {"RSGI_TEST_CALLS": str(tmp_path / "calls"), "RSGI_TEST_MARKER": str(tmp_path / "entered")}


def calls(files: dict[str, str]) -> list[str]:
    return marker_lines(Path(files["RSGI_TEST_CALLS"]))


# -- answered by the core ------------------------------------------------------------------------


@pytest.mark.parametrize("app", [WSGI_APP, ASGI_APP])
def test_health_path_is_answered_without_the_app(serve: StartServer, files: dict[str, str], app: str) -> None:
    server = serve(app, "--health-path", HEALTH, env=files)
    with httpx.Client(base_url=server.url, timeout=5) as client:
        r = client.get(HEALTH)
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"
        assert not r.text.startswith("app saw")
        assert client.get(HEALTH + "?probe=lb").status_code == 200  # the path decides, not the query
        head = client.head(HEALTH)
        assert (head.status_code, head.content) == (200, b"")
        # Only the exact path: these go to the app.
        assert client.get(HEALTH + "z").text == "app saw /-/healthz"
        assert client.get(HEALTH + "/deeper").text == "app saw /-/health/deeper"
        assert client.get("/other").text == "app saw /other"
    assert calls(files) == ["/", "/-/healthz", "/-/health/deeper", "/other"]  # "/": the readiness probe


def test_without_the_flag_the_path_goes_to_the_app(serve: StartServer, files: dict[str, str]) -> None:
    server = serve(WSGI_APP, env=files)
    r = httpx.get(server.url + HEALTH, timeout=5)
    assert r.status_code == 200
    assert r.text == "app saw /-/health"
    assert "cache-control" not in r.headers
    assert calls(files)[-1] == HEALTH


def test_health_over_http2(serve: StartServer, files: dict[str, str]) -> None:
    server = serve(ASGI_APP, "--health-path", HEALTH, env=files)
    with httpx.Client(http1=False, http2=True, timeout=5) as client:
        r = client.get(server.url + HEALTH)
        other = client.get(server.url + "/other")
    assert r.http_version == "HTTP/2"
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    assert other.text == "app saw /other"
    assert HEALTH not in calls(files)


def test_health_answers_while_every_python_thread_is_busy(serve: StartServer, files: dict[str, str]) -> None:
    # One Python thread, busy for 3 s; --limit-concurrency 1 turns app requests away meanwhile.
    server = serve(WSGI_APP, "--health-path", HEALTH, "--limit-concurrency", "1", env=files)
    slow = start_slow(server, Path(files["RSGI_TEST_MARKER"]), 3)
    started = time.monotonic()
    r = httpx.get(server.url + HEALTH, timeout=2)
    elapsed = time.monotonic() - started
    assert r.status_code == 200
    assert elapsed < 1.0, f"the health check waited {elapsed:.2f}s for the app"
    assert httpx.get(server.url + "/other", timeout=2).status_code == 503  # the app is saturated
    assert slow.result().text == "slept 3.0"


# -- draining ------------------------------------------------------------------------------------


@pytest.mark.parametrize("app", [WSGI_APP, ASGI_APP])
def test_health_is_503_while_draining(serve: StartServer, files: dict[str, str], app: str) -> None:
    server = serve(app, "--health-path", HEALTH, env=files)
    with Raw(server.port) as conn:
        r = conn.get(HEALTH)
        assert r.status == 200
        assert r.header("connection") != "close"
        slow = start_slow(server, Path(files["RSGI_TEST_MARKER"]), 2)
        server.signal(signal.SIGTERM)
        # Until the worker has seen the stop, the answer may still be 200 (and the connection
        # stays open); the first answer after it must be 503, closing the connection.
        deadline = time.monotonic() + 5
        seen = []
        while True:
            r = conn.get(HEALTH)
            seen.append(r.status)
            if r.status != 200 or time.monotonic() > deadline:
                break
            assert r.header("connection") != "close"
            time.sleep(0.01)
        assert r.status == 503, seen
        assert r.header("cache-control") == "no-store"
        assert r.header("connection") == "close"
        assert conn.wait_closed(5) is not None, "the connection stayed open after the 503"
        assert conn.buf == b"", f"bytes after the 503: {conn.buf!r}"
    # The drain still lets the in-flight request finish, and the server exits cleanly.
    assert slow.result().text == "slept 2.0"
    assert server.wait(20) == 0, server.log()
    assert HEALTH not in calls(files)
