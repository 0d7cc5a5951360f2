"""rsgi's ASGI bridge over HTTP: the scope, request bodies, responses (whole, streamed, pathsend,
HEAD), app failures, http.disconnect, backpressure, ASGI 2 apps, event loops and concurrency.
Real server subprocesses, real clients (httpx and raw sockets)."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from apps.asgi_extra import BIG_CHUNK, big_body_sha256
from conftest import Server, marker_lines, raw_request, running

SPOOL_THRESHOLD = 65536


def probe(r: httpx.Response | bytes) -> dict[str, Any]:
    """What apps.asgi_extra:scope_probe saw: every scope value as the Python object it was."""
    data = r.json() if isinstance(r, httpx.Response) else json.loads(r)
    return {k: ast.literal_eval(v) for k, v in data.items()}


def wait_for(condition, timeout: float = 10.0, what: str = "condition"):
    """Polls `condition()` until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} not met within {timeout}s")


def assert_worker_survived(server: Server, pids: list[int]) -> None:
    assert server.worker_pids() == pids, "the worker was replaced"
    assert "starting a new one" not in server.log()


@pytest.fixture(scope="module")
def probe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """scope_probe with a small spool threshold, so that a 1 MB body is spooled."""
    log_dir = tmp_path_factory.mktemp("probe")
    with running(
        "apps.asgi_extra:scope_probe", "--body-spool-threshold", str(SPOOL_THRESHOLD), log_dir=log_dir
    ) as server:
        yield server


# -- the scope ------------------------------------------------------------------------------------


def test_scope_fields_over_a_raw_socket(probe_server: Server) -> None:
    with socket.create_connection(("127.0.0.1", probe_server.port), timeout=5) as s:
        s.sendall(
            b"GET /caf%C3%A9/a%2Fb%20c?q=%20x&y=%C3%A9 HTTP/1.1\r\n"
            b"Host: test.example:8080\r\n"
            b"X-Repeat: one\r\n"
            b"X-MiXed-Case: Value With Case\r\n"
            b"X-Repeat: two\r\n"
            b"Connection: close\r\n\r\n"
        )
        client_port = s.getsockname()[1]
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    scope = probe(body)
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    # path: percent-decoded, as text from UTF-8; raw_path: the exact bytes of the target's path.
    assert scope["path"] == "/café/a/b c"
    assert scope["raw_path"] == b"/caf%C3%A9/a%2Fb%20c"
    assert scope["query_string"] == b"q=%20x&y=%C3%A9"
    assert scope["root_path"] == ""
    # Names lowercased, values untouched, all bytes; a repeated header stays two entries, in the
    # order received (the spec leaves the order of different names open: the sort is stable).
    assert sorted(scope["headers"], key=lambda h: h[0]) == [
        (b"connection", b"close"),
        (b"host", b"test.example:8080"),
        (b"x-mixed-case", b"Value With Case"),
        (b"x-repeat", b"one"),
        (b"x-repeat", b"two"),
    ]
    assert all(type(name) is bytes and type(value) is bytes for name, value in scope["headers"])
    assert scope["client"] == ("127.0.0.1", client_port)
    assert scope["server"] == ("127.0.0.1", probe_server.port)
    assert "http.response.pathsend" in scope["extensions"]
    assert "state" not in scope  # the app does not speak lifespan


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_scope_method(probe_server: Server, method: str) -> None:
    r = httpx.request(method, probe_server.url + "/m", timeout=5)
    assert r.status_code == 200
    assert probe(r)["method"] == method


def test_scope_http_1_0(probe_server: Server) -> None:
    data = raw_request(probe_server.port, b"GET /ten?a=1 HTTP/1.0\r\nHost: test\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n")
    scope = probe(body)
    assert scope["http_version"] == "1.0"
    assert scope["path"] == "/ten"
    assert scope["query_string"] == b"a=1"


def test_invalid_utf8_in_the_path_is_replaced_but_raw_path_keeps_it(probe_server: Server) -> None:
    scope = probe(httpx.get(probe_server.url + "/bad%FFbyte", timeout=5))
    assert scope["path"] == "/bad\ufffdbyte"
    assert scope["raw_path"] == b"/bad%FFbyte"


def test_root_path(serve) -> None:
    server = serve("apps.asgi_extra:scope_probe", "--root-path", "/mount")
    scope = probe(httpx.get(server.url + "/mount/inner/page?z=1", timeout=5))
    assert scope["root_path"] == "/mount"
    assert scope["path"] == "/mount/inner/page"  # ASGI: path is the full path, root_path included
    assert scope["raw_path"] == b"/mount/inner/page"


# -- request bodies ---------------------------------------------------------------------------------


def test_small_body_arrives_in_one_message(probe_server: Server) -> None:
    data = os.urandom(1000)
    scope = probe(httpx.post(probe_server.url + "/small", content=data, timeout=5))
    assert scope["_messages"] == [("bytes", 1000, False)]
    assert scope["_sha256"] == hashlib.sha256(data).hexdigest()


def test_empty_body_is_one_empty_message(probe_server: Server) -> None:
    scope = probe(httpx.get(probe_server.url + "/", timeout=5))
    assert scope["_messages"] == [("bytes", 0, False)]


def test_chunked_request_body(probe_server: Server) -> None:
    parts = [os.urandom(n) for n in (1, 100, 7, 3000, 20_000)]

    def body() -> Iterator[bytes]:
        yield from parts

    r = httpx.post(probe_server.url + "/chunked", content=body(), timeout=5)
    assert r.request.headers["transfer-encoding"] == "chunked"
    scope = probe(r)
    whole = b"".join(parts)
    assert sum(n for _, n, _ in scope["_messages"]) == len(whole)
    assert scope["_sha256"] == hashlib.sha256(whole).hexdigest()
    assert (b"transfer-encoding", b"chunked") in scope["headers"]


def test_body_above_the_spool_threshold_arrives_in_several_messages(probe_server: Server) -> None:
    data = os.urandom(1_000_000 + 123)
    r = httpx.post(probe_server.url + "/big", content=data, timeout=10)
    assert r.status_code == 200
    messages = probe(r)["_messages"]
    assert len(messages) > 1, messages
    assert all(kind == "bytes" for kind, _, _ in messages)
    assert [more for _, _, more in messages] == [True] * (len(messages) - 1) + [False]
    assert sum(n for _, n, _ in messages) == len(data)
    assert probe(r)["_sha256"] == hashlib.sha256(data).hexdigest()


def test_chunked_body_above_the_spool_threshold(probe_server: Server) -> None:
    parts = [os.urandom(100_000) for _ in range(6)]

    def body() -> Iterator[bytes]:
        yield from parts

    scope = probe(httpx.post(probe_server.url + "/big-chunked", content=body(), timeout=10))
    whole = b"".join(parts)
    assert len(scope["_messages"]) > 1
    assert sum(n for _, n, _ in scope["_messages"]) == len(whole)
    assert scope["_sha256"] == hashlib.sha256(whole).hexdigest()


# -- responses --------------------------------------------------------------------------------------


def test_complete_body_gets_a_content_length(serve) -> None:
    server = serve("apps.asgi_basic:hello")  # sends no Content-Length
    data = raw_request(server.port, b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\ncontent-length: 12" in head
    assert b"transfer-encoding" not in head.lower()
    assert b"\r\ncontent-type: text/plain" in head
    assert body == b"Hello, ASGI!"


def test_head_has_no_body_bytes(serve) -> None:
    """HEAD then GET on one connection: nothing may sit between the HEAD's head and the next response."""
    server = serve("apps.asgi_basic:hello")
    data = raw_request(
        server.port,
        b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\nGET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    first, second, body = data.split(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\ncontent-length: 12" in first  # what a GET would carry
    assert second.startswith(b"HTTP/1.1 200 OK\r\n"), data
    assert body == b"Hello, ASGI!"


def test_streamed_chunks_arrive_as_they_are_sent(serve) -> None:
    """apps.asgi_basic:stream sends 5 chunks, awaiting 0.3 s after each."""
    server = serve("apps.asgi_basic:stream")
    arrivals: dict[int, float] = {}
    received = b""
    with httpx.Client(timeout=10) as client:
        start = time.monotonic()
        with client.stream("GET", server.url + "/?0.3") as r:
            assert r.status_code == 200
            assert r.headers["transfer-encoding"] == "chunked"
            assert "content-length" not in r.headers
            for data in r.iter_raw():
                received += data
                now = time.monotonic() - start
                for i in range(5):
                    if i not in arrivals and b"chunk %d\n" % i in received:
                        arrivals[i] = now
    assert received == b"".join(b"chunk %d\n" % i for i in range(5))
    assert arrivals[0] < 1.0, f"first chunk only after {arrivals[0]:.2f}s: the response was buffered"
    assert arrivals[4] > 1.0, f"last chunk after {arrivals[4]:.2f}s: the app cannot have slept 4 x 0.3 s"
    assert arrivals[4] - arrivals[0] > 0.8


def test_pathsend(serve, tmp_path: Path) -> None:
    path = tmp_path / "random.bin"
    content = os.urandom(3 * 1024 * 1024 + 17)
    path.write_bytes(content)
    server = serve("apps.asgi_extra:pathsend", env={"RSGI_TEST_FILE": str(path)})
    with httpx.Client(timeout=10) as client:
        r = client.get(server.url + "/file")
        again = client.get(server.url + "/file")  # the connection is still correctly framed
    assert r.status_code == 200
    assert "http.response.pathsend" in r.headers["x-extensions"].split(",")
    assert r.headers["content-length"] == str(len(content))
    assert r.headers["content-type"] == "application/octet-stream"
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(content).digest()
    assert again.content == content


# -- app failures ------------------------------------------------------------------------------------


def test_raising_before_start_is_a_500_and_the_worker_keeps_serving(serve) -> None:
    server = serve("apps.asgi_extra:raises_before_start", ready_path="/ready")
    pids = server.worker_pids()
    r = httpx.get(server.url + "/boom", timeout=5)
    assert r.status_code == 500
    assert "boom" not in r.text
    assert r.headers["content-length"] == str(len(r.content))
    log = server.wait_log("RuntimeError: boom before http.response.start")
    assert "Exception in ASGI application" in log
    assert "Traceback (most recent call last)" in log
    assert httpx.get(server.url + "/again", timeout=5).status_code == 500
    assert httpx.get(server.url + "/ready", timeout=5).text == "Hello, ASGI!"
    assert_worker_survived(server, pids)


def test_raising_after_start_before_any_body_is_a_500(serve) -> None:
    server = serve("apps.asgi_extra:raises_after_start", ready_path="/ready")
    r = httpx.get(server.url + "/started", timeout=5)
    assert r.status_code == 500
    assert "x-started" not in r.headers
    log = server.wait_log("RuntimeError: boom between start and body")
    assert "Exception in ASGI application" in log


def test_raising_mid_stream_aborts_the_connection(serve) -> None:
    server = serve("apps.asgi_extra:raises_mid_stream", ready_path="/ready")
    pids = server.worker_pids()
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.Client(timeout=5) as client,
        client.stream("GET", server.url + "/late") as r,
    ):
        assert r.status_code == 200  # the head was already sent
        for data in r.iter_bytes():
            received += data
    assert b"first part\n".startswith(received)
    log = server.wait_log("RuntimeError: boom mid-stream")
    assert "Exception in ASGI application" in log
    assert httpx.get(server.url + "/ready", timeout=5).status_code == 200
    assert_worker_survived(server, pids)


def test_raising_mid_stream_on_the_wire_has_no_final_chunk(serve) -> None:
    server = serve("apps.asgi_extra:raises_mid_stream", ready_path="/ready")
    data = raw_request(server.port, b"GET /late HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in head
    # The first chunk may or may not have been flushed; the terminating 0-size chunk never is.
    assert b"b\r\nfirst part\n\r\n".startswith(body.lower()), body  # hyper writes the size as "B"
    server.wait_log("RuntimeError: boom mid-stream")


def test_returning_without_a_response_is_a_500(serve) -> None:
    server = serve("apps.asgi_extra:no_response", ready_path="/ready")
    pids = server.worker_pids()
    r = httpx.get(server.url + "/nothing", timeout=5)
    assert r.status_code == 500
    server.wait_log("returned without sending a response")
    assert httpx.get(server.url + "/ready", timeout=5).status_code == 200
    assert_worker_survived(server, pids)


def test_header_with_crlf_is_a_500_never_injected(serve) -> None:
    server = serve("apps.asgi_extra:bad_header", ready_path="/ready")
    data = raw_request(server.port, b"GET /evil HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ")
    assert b"Injected" not in data
    assert b"x-evil" not in data.lower()
    assert b"should never be sent" not in data
    log = server.wait_log("invalid value for header x-ok")
    assert "Exception in ASGI application" in log


# -- http.disconnect ----------------------------------------------------------------------------------


def test_client_resetting_mid_request_wakes_receive_with_disconnect(serve, tmp_path: Path) -> None:
    """A client that aborts its connection (RST) is gone: receive() says so at once. (A FIN alone
    is a half-close the response is still owed to; see the next test.)"""
    marker = tmp_path / "marker.txt"
    server = serve("apps.asgi_extra:wait_disconnect", env={"RSGI_TEST_MARKER": str(marker)}, ready_path="/ready")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /wait HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello")
        # The app has read the body and now waits in receive() with no response sent.
        wait_for(lambda: marker_lines(marker) == ["body 5"], what="the app to read the body")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close() sends RST
    wait_for(lambda: "http.disconnect" in marker_lines(marker), timeout=5, what="http.disconnect")
    assert marker_lines(marker) == ["body 5", "http.disconnect"]
    assert httpx.get(server.url + "/ready", timeout=5).status_code == 200


def test_half_closed_request_is_answered(serve) -> None:
    """RFC 9112 9.6: a client may shut down its write side after the request and read the answer."""
    server = serve("apps.asgi_basic:echo_scope")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /half HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data
    assert b'"/half"' in data


def test_receive_after_a_complete_response_is_disconnect(serve, tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    server = serve("apps.asgi_extra:receive_after_response", env={"RSGI_TEST_MARKER": str(marker)}, ready_path="/ready")
    with httpx.Client(timeout=5) as client:
        r = client.get(server.url + "/x")
        assert r.text == "done"
        # The keep-alive connection stays open: the disconnect is due to the finished response alone.
        wait_for(lambda: marker_lines(marker), timeout=5, what="the second receive() to return")
        assert marker_lines(marker) == ["http.disconnect"]
        assert client.get(server.url + "/ready").status_code == 200  # same connection, still usable


# -- backpressure -------------------------------------------------------------------------------------


def dechunk(data: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end], 16)
        if size == 0:
            assert data[end + 2 :] == b"\r\n", "trailing bytes after the last chunk"
            return bytes(out)
        out += data[end + 2 : end + 2 + size]
        assert data[end + 2 + size : end + 4 + size] == b"\r\n"
        pos = end + 4 + size


def test_slow_reader_backpressure_bounds_memory(serve) -> None:
    """The app streams 50 MiB; the client reads only the head and then stops. send() must make
    the app wait, so the worker neither buffers the body nor runs the app ahead of the client."""
    server = serve("apps.asgi_extra:big_stream")
    (pid,) = server.worker_pids()
    worker = psutil.Process(pid)
    rss_before = worker.memory_info().rss

    with httpx.Client(base_url=server.url, timeout=5) as monitor, socket.socket() as s:

        def progress() -> dict[str, Any]:
            return monitor.get("/progress").json()

        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.settimeout(10)
        s.connect(("127.0.0.1", server.port))
        s.sendall(b"GET /big HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        data = bytearray(s.recv(1024))
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")

        # Wait until the app stalls: `sent` unchanged over 0.5 s (or the app finished: a failure).
        history: list[tuple[float, dict[str, Any]]] = []

        def stalled() -> bool:
            now = time.monotonic()
            history.append((now, progress()))
            if history[-1][1]["done"]:
                return True
            recent = [p["sent"] for t, p in history if t >= now - 0.5]
            return history[0][0] < now - 0.5 and len(set(recent)) == 1

        wait_for(stalled, timeout=20, what="the app to stall")
        stall = history[-1][1]
        rss_grew = worker.memory_info().rss - rss_before
        assert not stall["done"], "the app sent all 50 MiB to a client that read 1 KiB: no backpressure"
        assert stall["sent"] * BIG_CHUNK < 16 * 1024 * 1024, f"{stall['sent']} chunks accepted before blocking"
        assert rss_grew < 30 * 1024 * 1024, f"worker RSS grew by {rss_grew / 1e6:.0f} MB"

        while chunk := s.recv(1 << 20):
            data += chunk
        wait_for(lambda: progress()["done"], timeout=5, what="the app to finish")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert hashlib.sha256(dechunk(bytes(body))).hexdigest() == big_body_sha256()


# -- app styles, loops, concurrency ----------------------------------------------------------------


def test_asgi2_class_app(serve) -> None:
    server = serve("apps.asgi_extra:Asgi2")
    with httpx.Client(timeout=5) as client:
        r = client.post(server.url + "/two", content=b"x" * 100)
        assert r.status_code == 200
        assert r.text == "asgi2 /two"
        assert client.get(server.url + "/again").text == "asgi2 /again"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_event_loop_choice(serve, loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    server = serve("apps.asgi_extra:loop_name", "--loop", loop)
    r = httpx.get(server.url + "/", timeout=5)
    assert r.status_code == 200
    assert r.text.split(".")[0] == loop
    server.wait_log(f"worker serving apps.asgi_extra:loop_name on {loop}")


def test_many_concurrent_requests_on_one_worker(serve) -> None:
    """apps.asgi_extra:barrier holds every request until 200 are inside the app at the same time."""
    server = serve("apps.asgi_extra:barrier")
    assert len(server.worker_pids()) == 1

    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=server.url, timeout=20, limits=limits) as client:
            return await asyncio.gather(*(client.get("/wait?200") for _ in range(200)))

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * 200, {r.text for r in responses}
    assert {r.text for r in responses} == {"all 200 at once"}
    assert len(server.worker_pids()) == 1
