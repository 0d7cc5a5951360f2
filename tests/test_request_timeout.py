"""--request-timeout through real servers and real clients: the core answers 504 when no response
has started within the limit, counted from the request's hand-over to the app.

- WSGI: the 504 comes at once although the thread is still busy; the thread's late response goes
  nowhere (the next request on the same connection gets its own); a request still queued behind
  the busy thread never runs; a thread still busy past --timeout gets its worker recycled, and a
  fresh worker serves the next request.
- ASGI: the request's task is cancelled (the app sees CancelledError); what an app that swallows
  the cancellation sends afterwards is dropped without an error in the log.
- Streams that outlast the limit are not cut (WSGI generator, ASGI more_body, Django on both
  sides of --django); the 504s are counted in rsgi_requests_timed_out_total, logged once.

The core's side in detail (timing, the reply slot, the counter, the log's rate limit):
tests/request_timeout.rs. Apps: tests/apps/request_timeout.py."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from conftest import DJANGO_DIR, Raw, StartServer, free_port, wait_until
from prometheus_client.parser import text_string_to_metric_families
from rsgi.cli import parse
from rsgi.config import ConfigError, CoreConfig, build

WSGI, ASGI = "apps.request_timeout:wsgi", "apps.request_timeout:asgi"
GATEWAY_TIMEOUT = "504 Gateway Timeout\n"


def marks(marker: Path) -> list[str]:
    return marker.read_text().splitlines() if marker.exists() else []


def timed_out(metrics_port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "rsgi_requests_timed_out_total":
                return s.value
    raise AssertionError(f"no rsgi_requests_timed_out_total in:\n{text}")


def _get(url: str) -> str | None:
    try:
        return httpx.get(url, timeout=5).text
    except httpx.TransportError:
        return None


def core(*argv: str) -> CoreConfig:
    flags, _ = parse([WSGI, *argv])
    return build(flags, {}).core()


def test_the_setting_comes_from_every_source_and_is_off_by_default(tmp_path: Path) -> None:
    assert core().request_timeout is None
    assert core("--request-timeout", "2.5").request_timeout == 2.5
    assert core("--request-timeout", "0").request_timeout is None
    assert build({"app": WSGI}, {"RSGI_REQUEST_TIMEOUT": "7"}).core().request_timeout == 7.0
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("request_timeout = 3\n")
    assert build({"app": WSGI, "config": str(conf)}, {}).core().request_timeout == 3.0
    with pytest.raises(ConfigError, match="request_timeout must be a finite number"):
        core("--request-timeout", "inf")


def test_wsgi_504_at_once_the_late_response_is_discarded_and_a_queued_request_never_runs(
    serve: StartServer, tmp_path: Path
) -> None:
    marker, metrics_port = tmp_path / "marker", free_port()
    server = serve(
        WSGI,
        *("--request-timeout", "0.5", "--timeout", "30", "--metrics-bind", f"127.0.0.1:{metrics_port}"),
        env={"RSGI_TEST_MARKER": str(marker)},
    )
    pid = int(httpx.get(server.url + "/", timeout=5).text)
    with Raw(server.port) as conn:
        started = time.monotonic()
        conn.send(b"GET /sleep/2/first HTTP/1.1\r\nHost: test\r\n\r\n")
        wait_until(lambda: "enter first" in marks(marker), 5, "the first request in the app")
        # The only thread is busy: this one waits in the queue, and its time there counts.
        queued = httpx.get(server.url + "/sleep/0/queued", timeout=5)
        first = conn.response()
        assert (first.status, first.body) == (504, GATEWAY_TIMEOUT.encode())
        assert time.monotonic() - started < 1.5, "the 504 waited for the thread"
        assert (queued.status_code, queued.text) == (504, GATEWAY_TIMEOUT)
        # The thread finishes later; its "slept first" goes nowhere: the next request on the same
        # connection gets its own answer, from the same worker (2 s is well within --timeout).
        wait_until(lambda: "done first" in marks(marker), 5, "the thread to finish")
        after = conn.get("/")
        assert (after.status, after.body) == (200, str(pid).encode())
    # The queued request was skipped when the thread got to it (it was taken before "/").
    assert marks(marker) == ["enter first", "done first"]
    # A response that started is not cut: a generator streaming for 1.2 s.
    with httpx.Client(base_url=server.url, timeout=10) as c:
        started = time.monotonic()
        r = c.get("/stream/4/0.4")
        assert (r.status_code, r.text) == (200, "chunk 0\nchunk 1\nchunk 2\nchunk 3\n")
        assert time.monotonic() - started > 1.0
    wait_until(lambda: timed_out(metrics_port) == 2 or None, 5, "the two 504s to be counted")
    log = server.wait_log("GET /sleep/2/first: answered 504")
    assert "--request-timeout 0.5s" in log
    # At most one line every 10 s: a stuck app must not flood the log.
    assert "GET /sleep/0/queued" not in log


def test_wsgi_thread_still_busy_past_timeout_gets_its_worker_recycled(serve: StartServer, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    server = serve(
        WSGI,
        *("--request-timeout", "0.5", "--timeout", "2", "--graceful-timeout", "1"),
        env={"RSGI_TEST_MARKER": str(marker)},
    )
    first = int(httpx.get(server.url + "/", timeout=5).text)
    started = time.monotonic()
    r = httpx.get(server.url + "/sleep/60/stuck", timeout=10)
    assert (r.status_code, r.text) == (504, GATEWAY_TIMEOUT)
    assert time.monotonic() - started < 1.5
    # --timeout still watches the thread: past it, SIGABRT (stacks in the log), then a new worker.
    log = server.wait_log("was killed by SIGABRT", timeout=15)
    assert "timed out: busy" in log and "GET /sleep/60/stuck" in log, log

    def new_worker() -> int | None:
        text = _get(server.url + "/")
        return int(text) if text and text.isdigit() and int(text) != first else None

    wait_until(new_worker, 15, "a fresh worker answering")
    assert marks(marker) == ["enter stuck"]


def test_asgi_the_task_is_cancelled_and_what_it_sends_afterwards_is_dropped_quietly(
    serve: StartServer, tmp_path: Path
) -> None:
    marker, metrics_port = tmp_path / "marker", free_port()
    server = serve(
        ASGI,
        *("--request-timeout", "0.5", "--metrics-bind", f"127.0.0.1:{metrics_port}"),
        env={"RSGI_TEST_MARKER": str(marker)},
    )
    with httpx.Client(base_url=server.url, timeout=10) as c:
        started = time.monotonic()
        r = c.get("/sleep/30/plain")
        assert (r.status_code, r.text) == (504, GATEWAY_TIMEOUT)
        assert time.monotonic() - started < 1.5
        wait_until(lambda: "cancelled plain" in marks(marker), 5, "the app to see CancelledError")
        r = c.get("/stubborn/30/stubborn")
        assert (r.status_code, r.text) == (504, GATEWAY_TIMEOUT)
        wait_until(lambda: "sent stubborn" in marks(marker), 5, "the stubborn app's late answer")
        # The connection and the loop serve on.
        assert c.get("/").text.isdigit()
        # A response that started is not cut: more_body messages for 1.2 s.
        started = time.monotonic()
        r = c.get("/stream/4/0.4")
        assert (r.status_code, r.text) == (200, "chunk 0\nchunk 1\nchunk 2\nchunk 3\n")
        assert time.monotonic() - started > 1.0
    assert marks(marker) == ["enter plain", "cancelled plain", "enter stubborn", "cancelled stubborn", "sent stubborn"]
    wait_until(lambda: timed_out(metrics_port) == 2 or None, 5, "the two 504s to be counted")
    log = server.log()
    # The cancellation is rsgi's doing, and the late sends are nobody's error.
    for noise in ("Traceback", "Exception in ASGI application", "sent after", "without sending a response"):
        assert noise not in log, log


def test_django_dual_pages_and_streams_from_both_sides_outlast_the_limit(
    serve: StartServer, django_db: dict[str, str]
) -> None:
    server = serve(
        "--django",
        *("mysite", "--asgi-path", "/astream", "--chdir", str(DJANGO_DIR)),
        env={**django_db, "RSGI_REQUEST_TIMEOUT": "1"},
        ready_path="/hello",
    )
    expected = "".join(f"chunk {n}\n" for n in range(1, 6))
    with httpx.Client(base_url=server.url, timeout=20) as c:
        assert c.get("/hello").status_code == 200
        # /stream through WSGI (a generator), /astream through ASGI: 1.6 s each, uncut.
        for path in ("/stream?delay=0.4", "/astream?delay=0.4"):
            started = time.monotonic()
            r = c.get(path)
            assert (r.status_code, r.text) == (200, expected), path
            assert time.monotonic() - started > 1.5, path
    assert "--request-timeout" not in server.log()
