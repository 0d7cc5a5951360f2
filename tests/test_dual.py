"""Both interfaces in one process: `rsgi APP --wsgi MODULE:ATTR` and `rsgi --django PROJECT`.

Plain HTTP goes to the WSGI app on the worker's `--threads` threads; WebSocket handshakes,
lifespan and HTTP paths under an `--asgi-path` prefix go to the ASGI app on the worker's event
loop, on the same port in the same process. Real server subprocesses and real clients (httpx,
websockets, raw sockets); every wait polls a condition with a deadline. Test apps:
tests/apps/dual.py (each answer names the app that gave it), tests/apps/import_probe.py and the
Django example project (examples/django_project, with its Channels consumers).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from conftest import (
    DJANGO_DIR,
    Raw,
    Server,
    StartServer,
    csrf_token,
    login_admin,
    marker_lines,
    read_stream,
    running,
    start_slow,
    upload_file,
    wait_until,
)
from reliability import loadgen
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

ASGI, WSGI = "apps.dual:asgi", "apps.dual:wsgi"
DUAL = (ASGI, "--wsgi", WSGI)
T = TypeVar("T")


# -- helpers ---------------------------------------------------------------------------------


def wait_workers(server: Server, count: int, timeout: float = 15.0, exclude: frozenset[int] = frozenset()) -> set[int]:
    return loadgen.wait_workers(server.pid, count, timeout, exclude)


def ws_connect(server: Server, path: str = "/ws", **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("open_timeout", 5)
    kwargs.setdefault("close_timeout", 5)
    return connect(f"ws://127.0.0.1:{server.port}{path}", proxy=None, compression=None, **kwargs)


def who(text: str) -> tuple[str, int]:
    """("wsgi" | "asgi", pid) from an answer of apps.dual."""
    match = re.match(r"(wsgi|asgi) pid=(\d+)", text)
    assert match, f"not an answer of apps.dual: {text!r}"
    return match.group(1), int(match.group(2))


def ws_whoami(ws: ClientConnection) -> tuple[str, int]:
    ws.send("whoami")
    answer = ws.recv(timeout=5)
    assert isinstance(answer, str)
    return who(answer)


def echo_round_trip(ws: ClientConnection, text: str) -> float:
    """Seconds for one echo through the ASGI app."""
    started = time.monotonic()
    ws.send(text)
    assert ws.recv(timeout=5) == text
    return time.monotonic() - started


class RawWebSocket(Raw):
    """A keep-alive HTTP/1.1 connection driven by hand (conftest's Raw), which can then become a WebSocket."""

    def get_text(self, path: str) -> str:
        """The body of a 200 with Content-Length that keeps the connection open."""
        r = self.get(path)
        assert r.status == 200, (path, r.head)
        assert r.header("content-length") is not None, r.head
        assert (r.header("connection") or "").lower() != "close", r.head
        return r.body.decode()

    def upgrade(self, path: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self.send(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        r = self.response()
        assert r.status == 101, r.head
        accept = base64.b64encode(hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        assert r.header("sec-websocket-accept") == accept.decode(), r.head

    def ws_text(self, text: str) -> str:
        """Send one masked text frame, return the text of the frame that comes back."""
        payload, mask = text.encode(), os.urandom(4)
        assert len(payload) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.send(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        first, second = self._exact(2)
        assert first == 0x81, f"expected a final text frame, got opcode byte {first:#x}"
        length = second & 0x7F
        assert not second & 0x80, "frames from the server must not be masked"
        if length == 126:
            length = int.from_bytes(self._exact(2), "big")
        return self._exact(length).decode()


# -- 1. routing ------------------------------------------------------------------------------


def test_http_goes_to_wsgi_websockets_lifespan_and_prefixes_to_asgi(serve: StartServer) -> None:
    server = serve(*DUAL, "--asgi-path", "/sse/", "--asgi-path", "/events")
    (worker,) = wait_workers(server, 1)
    server.wait_log("worker serving apps.dual:wsgi (WSGI, 1 thread) and apps.dual:asgi (ASGI, websockets, /sse/")
    to_wsgi = ["/", "/index.html", "/ws/echo", "/ssex", "/ss", "/api/sse/x", "/SSE/x", "/eventsx", "/event"]
    to_asgi = ["/sse", "/sse/", "/sse/x", "/sse/x/y?q=1", "/sse?q=1", "/events", "/events/", "/events/1"]
    seen: dict[str, str] = {}
    with httpx.Client(base_url=server.url, timeout=5) as c:
        for path in to_wsgi + to_asgi:
            r = c.get(path)
            assert r.status_code == 200, (path, r.status_code, r.text)
            seen[path] = r.text
            assert who(r.text) == ("asgi" if path in to_asgi else "wsgi", worker), (path, r.text)
        # The method does not matter, only the path.
        assert who(c.post("/sse/x", content=b"x").text) == ("asgi", worker)
        assert who(c.post("/x", content=b"x").text) == ("wsgi", worker)
    # The ASGI app's lifespan ran (its startup state reaches the requests it serves).
    assert all(seen[p].endswith("lifespan=yes") for p in to_asgi), seen
    # WSGI runs on a worker thread, ASGI on the thread running the event loop.
    wsgi_threads = {re.search(r"thread=(\S+)", seen[p]).group(1) for p in to_wsgi}  # type: ignore[union-attr]
    asgi_threads = {re.search(r"thread=(\S+)", seen[p]).group(1) for p in to_asgi}  # type: ignore[union-attr]
    assert len(wsgi_threads) == len(asgi_threads) == 1 and not wsgi_threads & asgi_threads, seen
    # WebSocket handshakes go to the ASGI app whatever their path, including WSGI-routed ones.
    for path in ("/ws", "/", "/ssex", "/sse/x"):
        with ws_connect(server, path) as ws:
            assert ws_whoami(ws) == ("asgi", worker)
            ws.send("über ✓")
            assert ws.recv(timeout=5) == "über ✓"
            ws.send(b"\x00\xff")
            assert ws.recv(timeout=5) == b"\x00\xff"


def test_without_asgi_path_every_plain_http_request_goes_to_wsgi(serve: StartServer) -> None:
    server = serve(*DUAL)
    with httpx.Client(base_url=server.url, timeout=5) as c:
        for path in ("/", "/sse", "/sse/x", "/ws"):
            assert who(c.get(path).text)[0] == "wsgi", path
    with ws_connect(server) as ws:
        assert ws_whoami(ws)[0] == "asgi"


def test_one_keepalive_connection_reaches_both_apps_then_upgrades(serve: StartServer) -> None:
    server = serve(*DUAL, "--asgi-path", "/sse/")
    (worker,) = wait_workers(server, 1)
    assert server.port is not None
    with RawWebSocket(server.port) as conn:
        answers = [conn.get_text(path) for path in ("/", "/sse/a", "/b", "/sse", "/")]
        assert [who(a) for a in answers] == [
            ("wsgi", worker),
            ("asgi", worker),
            ("wsgi", worker),
            ("asgi", worker),
            ("wsgi", worker),
        ]
        conn.upgrade("/chat")  # the same TCP connection becomes a WebSocket to the ASGI app
        assert who(conn.ws_text("whoami")) == ("asgi", worker)
        assert conn.ws_text("same socket") == "same socket"


def test_a_percent_encoded_path_under_the_prefix_still_goes_to_asgi(serve: StartServer) -> None:
    server = serve(*DUAL, "--asgi-path", "/sse/")
    assert server.port is not None
    with RawWebSocket(server.port) as conn:
        answer = conn.get_text("/%73se/x")  # %73 is "s": both apps see the path /sse/x
    assert "path=/sse/x " in answer, answer
    assert who(answer)[0] == "asgi", answer


def test_with_two_workers_each_worker_serves_both_apps(serve: StartServer) -> None:
    server = serve(*DUAL, "--workers", "2", "--asgi-path", "/sse/")
    workers = wait_workers(server, 2)
    server.wait_log("starting 2 workers")
    wait_until(lambda: server.log().count("worker serving apps.dual:wsgi") == 2, 10, "both workers serving")
    by_app: dict[str, set[int]] = {"wsgi": set(), "asgi": set(), "asgi-http": set()}

    def sample() -> bool:
        # New connections each time, so that the kernel spreads them over both workers.
        r = httpx.get(server.url + "/", headers={"Connection": "close"}, timeout=5)
        app, pid = who(r.text)
        assert app == "wsgi" and pid in workers, r.text
        by_app["wsgi"].add(pid)
        r = httpx.get(server.url + "/sse/x", headers={"Connection": "close"}, timeout=5)
        app, pid = who(r.text)
        assert app == "asgi" and pid in workers, r.text
        by_app["asgi-http"].add(pid)
        with ws_connect(server) as ws:
            app, pid = ws_whoami(ws)
        assert app == "asgi" and pid in workers
        by_app["asgi"].add(pid)
        return all(seen == workers for seen in by_app.values())

    wait_until(sample, 20, f"answers from both workers {sorted(workers)} for both apps; saw {by_app}")


# -- 2. the Django example with --django -------------------------------------------------------


@pytest.fixture(scope="module")
def django_dual(django_db: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`rsgi --django mysite` in the example project, one worker (Channels' in-memory layer),
    with the async streaming view /astream routed to ASGI."""
    flags = ("mysite", "--asgi-path", "/astream", "--chdir", str(DJANGO_DIR))
    log_dir = tmp_path_factory.mktemp("django-dual")
    with running("--django", *flags, log_dir=log_dir, env=django_db, ready_path="/hello") as server:
        yield server


class EchoLoop:
    """A WebSocket to /ws/echo/ exchanging numbered messages on a thread until stopped."""

    def __init__(self, server: Server) -> None:
        self.count = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(server,), daemon=True)
        self._thread.start()

    def _run(self, server: Server) -> None:
        try:
            with ws_connect(server, "/ws/echo/") as ws:
                while not self._stop.is_set():
                    text = f"message {self.count}"
                    ws.send(text)
                    answer = ws.recv(timeout=5)
                    if answer != text:
                        self.errors.append(f"sent {text!r}, got {answer!r}")
                    self.count += 1
        except Exception as e:  # collected and asserted by the test
            self.errors.append(repr(e))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the echo loop hung"
        return self.count


def test_django_pages_forms_admin_uploads_over_wsgi_while_channels_websockets_run(django_dual: Server) -> None:
    assert len(wait_workers(django_dual, 1)) == 1
    log = django_dual.wait_log("worker serving mysite.wsgi:application (WSGI, 1 thread)")
    assert "and mysite.asgi:application (ASGI, websockets, /astream)" in log
    echo = EchoLoop(django_dual)
    wait_until(lambda: echo.count >= 3 or echo.errors, 10, "the echo loop to get going")
    at_start = echo.count
    with httpx.Client(base_url=django_dual.url, timeout=10) as c:
        assert c.get("/").status_code == 200
        r = c.get("/hello")
        assert (r.status_code, r.text, r.headers["server"]) == (200, "Hello, world!", "rsgi")
        r = c.get("/ahello")  # an async view: Django runs it inside its WSGI handler
        assert (r.status_code, r.text) == (200, "Hello, async world!")
        items = c.get("/items").json()
        assert [item["name"] for item in items] == [f"Item {n:02d}" for n in range(1, 21)]
        assert c.get("/api/item/3").json()["name"] == "Item 03"
        assert "/ws/chat/" in c.get("/chat/lobby/").text

        # A form POST with CSRF (cookie + token), and the refusal without the token.
        token = csrf_token(c.get("/form").text)
        r = c.post("/form", data={"name": "Ada", "message": "hi", "csrfmiddlewaretoken": token})
        assert r.status_code == 200 and "Thanks, Ada" in r.text, r.text[:2000]
        assert httpx.post(django_dual.url + "/form", data={"name": "Eve", "message": "x"}).status_code == 403

        # A multipart upload.
        upload_file(c, os.urandom(512 * 1024 + 7), "blob.bin", "dual")

        # Admin login: CSRF token, then a session cookie that opens the changelist.
        session = login_admin(c)
        listing = c.get("/admin/catalog/item/")
        assert listing.status_code == 200 and "50 items" in listing.text

        # The logged-in session also reaches Channels (AuthMiddlewareStack reads the same cookie).
        cookie = f"sessionid={session}"
        with ws_connect(django_dual, "/ws/echo/", additional_headers={"Cookie": cookie}) as ws:
            ws.send("with a session")
            assert ws.recv(timeout=5) == "with a session"

    # The echo WebSocket kept exchanging messages while all of that was served.
    during = echo.count - at_start
    total = echo.stop()
    assert echo.errors == []
    assert during > 0 and total > at_start, f"no echo round trips during the HTTP requests ({at_start} → {total})"

    # Chat: two members of a room see each other's messages; another room sees none of them.
    with (
        ws_connect(django_dual, "/ws/chat/dual/") as alice,
        ws_connect(django_dual, "/ws/chat/dual/") as bob,
        ws_connect(django_dual, "/ws/chat/elsewhere/") as carol,
    ):
        alice.send(json.dumps({"message": "hi from alice"}))
        from_alice = json.loads(alice.recv(timeout=5))
        assert from_alice["message"] == "hi from alice"
        assert json.loads(bob.recv(timeout=5)) == from_alice
        bob.send(json.dumps({"message": "hi from bob"}))
        from_bob = json.loads(alice.recv(timeout=5))
        assert from_bob["message"] == "hi from bob" and from_bob["from"] != from_alice["from"]
        assert json.loads(bob.recv(timeout=5)) == from_bob
        carol.send(json.dumps({"message": "anyone?"}))
        assert json.loads(carol.recv(timeout=5))["message"] == "anyone?"


def test_django_streams_from_both_sides_and_the_wsgi_stream_does_not_block_websockets(django_dual: Server) -> None:
    expected = b"".join(b"chunk %d\n" % n for n in range(1, 6))
    with httpx.Client(base_url=django_dual.url, timeout=20) as c:
        # /stream yields from a sync iterator: only WSGI streams it (Django under ASGI buffers it
        # whole), so chunks arriving one by one show the page came through the WSGI side.
        body, first, total = read_stream(c, "/stream?delay=0.3")
        assert body == expected
        assert total >= 1.0 and first < total - 0.6, f"/stream was buffered: first {first:.2f}s of {total:.2f}s"
        # /astream (an async iterator) is under --asgi-path: streamed by Django's ASGI handler.
        body, first, total = read_stream(c, "/astream?delay=0.3")
        assert body == expected
        assert total >= 1.0 and first < total - 0.6, f"/astream was buffered: first {first:.2f}s of {total:.2f}s"

        # While the only WSGI thread is busy streaming, the ASGI side still answers at once.
        with ws_connect(django_dual, "/ws/echo/") as ws, c.stream("GET", "/stream?delay=0.4") as r:
            chunks = r.iter_raw()
            assert next(chunks) == b"chunk 1\n"
            assert echo_round_trip(ws, "while the WSGI thread streams") < 0.5
            assert b"".join(chunks) == expected[len(b"chunk 1\n") :]
    # Django warns when a server makes it buffer a stream: under ASGI for a sync iterator, under
    # WSGI for an async one (what /astream gets without --asgi-path). Neither happened.
    log = django_dual.log()
    assert "must consume synchronous iterators" not in log
    assert "must consume asynchronous iterators" not in log


# -- 3. imports --------------------------------------------------------------------------------


def test_each_worker_imports_each_app_once(serve: StartServer, tmp_path: Path) -> None:
    asgi_log, wsgi_log = tmp_path / "asgi-imports", tmp_path / "wsgi-imports"
    env = {"RSGI_TEST_DUAL_IMPORT_LOG": str(asgi_log), "RSGI_TEST_IMPORT_LOG": str(wsgi_log)}
    server = serve(ASGI, "--wsgi", "apps.import_probe:app", "--workers", "2", env=env)
    workers = wait_workers(server, 2)
    wait_until(lambda: server.log().count("worker serving apps.import_probe:app") == 2, 10, "both workers serving")
    assert sorted(marker_lines(asgi_log)) == sorted(f"dual {pid}" for pid in workers)
    assert sorted(marker_lines(wsgi_log)) == sorted(str(pid) for pid in workers)
    r = httpx.get(server.url + "/", timeout=5)
    assert int(r.text) in workers  # import_probe's WSGI app answers its pid
    with ws_connect(server) as ws:
        assert ws_whoami(ws)[1] in workers


def test_preload_imports_both_apps_once_in_the_supervisor(serve: StartServer, tmp_path: Path) -> None:
    asgi_log, wsgi_log = tmp_path / "asgi-imports", tmp_path / "wsgi-imports"
    env = {"RSGI_TEST_DUAL_IMPORT_LOG": str(asgi_log), "RSGI_TEST_IMPORT_LOG": str(wsgi_log)}
    server = serve(ASGI, "--wsgi", "apps.import_probe:app", "--preload", "--workers", "2", env=env)
    workers = wait_workers(server, 2)
    wait_until(lambda: server.log().count("worker serving apps.import_probe:app") == 2, 10, "both workers serving")
    assert marker_lines(asgi_log) == [f"dual {server.pid}"]
    assert marker_lines(wsgi_log) == [str(server.pid)]
    assert int(httpx.get(server.url + "/", timeout=5).text) in workers
    with ws_connect(server) as ws:
        assert ws_whoami(ws)[1] in workers


# -- 4. graceful stop --------------------------------------------------------------------------


class StreamReader:
    """Reads a streamed response on a thread, keeping the chunks as they arrive."""

    def __init__(self, url: str) -> None:
        self.chunks: list[bytes] = []
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()

    def _run(self, url: str) -> None:
        try:
            with httpx.stream("GET", url, timeout=15) as r:
                self.chunks.extend(chunk for chunk in r.iter_raw() if chunk)
        except httpx.HTTPError as e:
            self.error = e

    def join(self, timeout: float) -> bytes:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream did not finish"
        assert self.error is None, f"the stream failed: {self.error!r}"
        return b"".join(self.chunks)


def test_sigterm_drains_http_on_both_sides_closes_websockets_with_1001_and_exits_0(
    serve: StartServer, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    flags = ("--graceful-timeout", "10", "--asgi-path", "/sse/")
    server = serve(*DUAL, *flags, env={"RSGI_TEST_MARKER": str(marker)})
    (worker,) = wait_workers(server, 1)
    with ws_connect(server, "/live") as ws:
        assert ws_whoami(ws) == ("asgi", worker)
        stream = StreamReader(server.url + "/sse/ticks?4")  # an ASGI response lasting 1.5 s
        wait_until(lambda: stream.chunks, 10, "the first tick of the ASGI stream")
        slow = start_slow(server, marker, 2)  # a WSGI request lasting 2 s
        stopped_at = time.monotonic()
        server.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        ws_closed_at = time.monotonic()
    assert closed.value.rcvd is not None, "the server did not send a close frame"
    assert closed.value.rcvd.code == 1001
    response = slow.result(15)
    assert (response.status_code, response.text) == (200, "wsgi slept 2.0")
    assert stream.join(15) == b"".join(b"tick %d\n" % i for i in range(4))
    assert server.wait(12) == 0
    assert time.monotonic() - stopped_at < 10, "the stop took longer than the graceful timeout"
    # The WebSocket was told at once, not after the WSGI request had drained.
    assert slow.finished_at is not None and ws_closed_at < slow.finished_at
    assert "closing a connection still busy" not in server.log()
    # The ASGI app saw the close, then ran its lifespan shutdown (last, in the worker).
    marks = marker_lines(marker)
    assert "ws closed 1001" in marks, marks
    assert marks[-1] == f"lifespan shutdown {worker}", marks


# -- 5. clear errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((ASGI, "--asgi-path", "/x/"), "asgi_path only applies with --wsgi or --django"),
        ((*DUAL, "--asgi-path", "x/"), "asgi_path 'x/' must start with /"),
        ((*DUAL, "--interface", "wsgi"), "with --wsgi, APP is the ASGI app"),
        (("--django", "mysite", "--interface", "wsgi"), "with --wsgi, APP is the ASGI app"),
    ],
    ids=["asgi-path-without-wsgi", "asgi-path-not-absolute", "interface-wsgi", "django-interface-wsgi"],
)
def test_configuration_errors_exit_2_before_serving(serve: StartServer, args: tuple[str, ...], message: str) -> None:
    server = serve(*args, ready=False)
    assert server.wait(20) == 2
    log = server.log()
    assert f"rsgi: error: {message}" in log, log
    assert "listening on" not in log


@pytest.mark.parametrize("preload", [False, True], ids=["workers", "preload"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((WSGI, "--wsgi", WSGI), "with --wsgi, apps.dual:wsgi must be an ASGI app (e.g. mysite.asgi:application)"),
        ((ASGI, "--wsgi", "apps.no_such_module:app"), "could not import module 'apps.no_such_module'"),
        ((ASGI, "--wsgi", "apps.dual:no_such_app"), "module 'apps.dual' has no attribute 'no_such_app'"),
        (("--django", "no_such_project"), "could not import module 'no_such_project.asgi'"),
    ],
    ids=["app-is-wsgi", "missing-wsgi-module", "missing-wsgi-attribute", "missing-django-project"],
)
def test_boot_errors_exit_3_with_a_clear_message(
    serve: StartServer, args: tuple[str, ...], message: str, preload: bool
) -> None:
    server = serve(*args, *(["--preload"] if preload else []), "--workers", "2", ready=False)
    assert server.wait(20) == 3
    log = server.log()
    assert message in log, log
    assert "worker serving" not in log


# -- 6. threads --------------------------------------------------------------------------------


def test_two_threads_run_two_slow_wsgi_requests_in_parallel_while_websockets_echo(
    serve: StartServer, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    server = serve(*DUAL, "--threads", "2", "--asgi-path", "/sse/", env={"RSGI_TEST_MARKER": str(marker)})
    server.wait_log("(WSGI, 2 threads)")
    with ws_connect(server) as ws:
        started = time.monotonic()
        first = start_slow(server, marker, 2)
        second = start_slow(server, marker, 2)
        # Both are inside the app at the same time: two threads.
        assert first.finished_at is None and second.finished_at is None
        assert len(marker_lines(marker)) == 2
        # With both WSGI threads busy the event loop still answers at once.
        for n in range(5):
            assert echo_round_trip(ws, f"busy {n}") < 0.5
        quick = time.monotonic()
        assert who(httpx.get(server.url + "/sse/now", timeout=5).text)[0] == "asgi"
        assert time.monotonic() - quick < 0.5
        assert first.finished_at is None and second.finished_at is None, "the slow requests ended too early"
        for request in (first, second):
            assert request.result(10).text == "wsgi slept 2.0"
        assert time.monotonic() - started < 3.9, "the two slow requests ran one after the other"
        assert echo_round_trip(ws, "after") < 1.0


# -- 7. --timeout --------------------------------------------------------------------------------


def test_timeout_spares_long_lived_asgi_traffic_and_kills_a_stuck_wsgi_request(
    serve: StartServer, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    flags = ("--timeout", "2", "--graceful-timeout", "1", "--asgi-path", "/sse/")
    server = serve(*DUAL, *flags, env={"RSGI_TEST_MARKER": str(marker)})
    (first,) = wait_workers(server, 1)
    # A WebSocket and a streamed ASGI response both outlive --timeout: that is not "stuck".
    with ws_connect(server) as ws:
        with httpx.stream("GET", server.url + "/sse/ticks?7", timeout=10) as r:
            assert b"".join(r.iter_raw()) == b"".join(b"tick %d\n" % i for i in range(7))
        assert ws_whoami(ws) == ("asgi", first)
    assert wait_workers(server, 1) == {first}
    assert "timed out" not in server.log()

    # A WSGI request stuck past --timeout gets the worker killed and replaced.
    with ws_connect(server) as ws:
        assert ws_whoami(ws) == ("asgi", first)
        started = time.monotonic()
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url + "/slow?30", timeout=15)
        assert time.monotonic() - started < 8, "the stuck request was not cut off by --timeout"
        with pytest.raises(ConnectionClosed):  # the WebSocket went down with its worker
            ws.recv(timeout=5)
    log = server.wait_log("was killed by SIGABRT")
    assert "timed out: busy" in log and "GET /slow?30" in log, log
    (second,) = wait_workers(server, 1, exclude=frozenset({first}))
    assert who(httpx.get(server.url + "/", timeout=5).text) == ("wsgi", second)
    with ws_connect(server) as ws:
        assert ws_whoami(ws) == ("asgi", second)


def test_timeout_kills_a_dual_worker_whose_event_loop_is_blocked(serve: StartServer) -> None:
    server = serve(*DUAL, "--timeout", "2", "--graceful-timeout", "1", "--asgi-path", "/sse/")
    (first,) = wait_workers(server, 1)
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/sse/block?60", timeout=15)
    log = server.wait_log("timed out")
    assert "(event loop)" in log, log
    (second,) = wait_workers(server, 1, exclude=frozenset({first}))
    assert who(httpx.get(server.url + "/sse/x", timeout=5).text) == ("asgi", second)
    assert who(httpx.get(server.url + "/", timeout=5).text) == ("wsgi", second)
