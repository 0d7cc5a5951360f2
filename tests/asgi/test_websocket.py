"""WebSockets under rsgi's ASGI bridge: echo, subprotocols and accept headers, close codes both
ways, message size limits, handshake denial (close before accept, denial response), app failures,
500 concurrent connections, client disconnects, ping keep-alive, shutdown, and the same server
answering plain HTTP. Real server subprocesses (apps/asgi_ws.py), real clients (websockets and
raw sockets)."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import resource
import signal
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Server, StartServer, marker_lines, running
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

APP = "apps.asgi_ws:app"
MIB = 1024 * 1024
OP_CLOSE, OP_PING = 0x8, 0x9


def ws_url(server: Server, path: str, marker: Path | None = None) -> str:
    url = f"ws://127.0.0.1:{server.port}{path}"
    return f"{url}?marker={marker}" if marker else url


def ws_connect(url: str, **kwargs) -> ClientConnection:
    kwargs.setdefault("open_timeout", 5)
    kwargs.setdefault("close_timeout", 5)
    return connect(url, proxy=None, compression=None, **kwargs)


def wait_marker(path: Path, line: str, timeout: float = 5.0) -> list[str]:
    """Polls the app's marker file until `line` appears; returns all lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = marker_lines(path)
        if line in lines:
            return lines
        time.sleep(0.02)
    raise AssertionError(f"{line!r} not recorded within {timeout}s: {marker_lines(path)}")


def closed_by_server(ws: ClientConnection) -> ConnectionClosed:
    """Waits (bounded) for the server to close the connection; returns how it closed."""
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=5)
    return info.value


def raw_handshake(port: int, path: str, expect: bytes | None = b"101") -> tuple[socket.socket, bytes]:
    """A hand-made client that sends the opening handshake and (unless `expect` is None) reads the
    response head; returns the socket and any bytes that arrived after that head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path.encode(), port, key)
    )
    if expect is None:
        return sock, b""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed during the handshake: {data!r}"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 " + expect + b" "), head
    return sock, rest


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each unmasked frame in `data` (servers never mask)."""
    frames = []
    while data:
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if length == 126:
            (length,) = struct.unpack("!H", data[2:4])
            offset = 4
        elif length == 127:
            (length,) = struct.unpack("!Q", data[2:10])
            offset = 10
        assert not data[1] & 0x80, "server frames must not be masked"
        frames.append((opcode, data[offset : offset + length]))
        data = data[offset + length :]
    return frames


def read_until_eof(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def ws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(APP, log_dir=tmp_path_factory.mktemp("ws")) as server:
        yield server


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "marker"


def test_echo_text_and_binary(ws_server: Server) -> None:
    with ws_connect(ws_url(ws_server, "/echo")) as ws:
        ws.send("héllo, wörld ✓")
        assert ws.recv(timeout=5) == "héllo, wörld ✓"
        ws.send(b"\x00\xffbinary\x80")
        assert ws.recv(timeout=5) == b"\x00\xffbinary\x80"
        ws.send("")
        assert ws.recv(timeout=5) == ""


def test_subprotocol_and_accept_headers(ws_server: Server) -> None:
    with ws_connect(ws_url(ws_server, "/echo"), subprotocols=["chat.v2", "chat.v1"]) as ws:
        assert ws.subprotocol == "chat.v2"
        assert ws.response.status_code == 101
        assert ws.response.headers["x-accepted"] == "yes"
        assert ws.response.headers["sec-websocket-protocol"] == "chat.v2"
        assert ws.response.headers["upgrade"].lower() == "websocket"


def test_no_subprotocol_header_when_none_offered(ws_server: Server) -> None:
    with ws_connect(ws_url(ws_server, "/echo")) as ws:
        assert ws.subprotocol is None
        assert "sec-websocket-protocol" not in ws.response.headers


def test_non_ascii_subprotocols_are_not_a_crash(ws_server: Server) -> None:
    """Granian CVE-2026-42544: raw non-ASCII bytes in Sec-WebSocket-Protocol hit an unwrap and
    aborted the worker. Here such a list reaches the app as no subprotocols at all."""
    key = base64.b64encode(os.urandom(16))
    with socket.create_connection(("127.0.0.1", ws_server.port), timeout=5) as s:
        s.sendall(
            b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n"
            b"Sec-WebSocket-Protocol: chat.v2, caf\xc3\xa9, \xff\xfe\r\n\r\n"
        )
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert b"sec-websocket-protocol" not in head.lower()
    assert "panicked" not in ws_server.log()
    with ws_connect(ws_url(ws_server, "/echo")) as ws:  # the worker is still there
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"


def test_server_initiated_close_code_and_reason(ws_server: Server, marker: Path) -> None:
    with ws_connect(ws_url(ws_server, "/echo", marker)) as ws:
        ws.send("close 7")
        closed = closed_by_server(ws)
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (4007, "asked")
    # The app, still receiving after its close, hears that the connection is over.
    lines = wait_for_disconnect(marker)
    assert lines[0] == "connect"
    assert len(lines) == 2, lines


def wait_for_disconnect(path: Path, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = marker_lines(path)
        if any(line.startswith("disconnect") for line in lines):
            return lines
        time.sleep(0.02)
    raise AssertionError(f"no disconnect recorded within {timeout}s: {marker_lines(path)}")


def test_client_close_code_reaches_the_app(ws_server: Server, marker: Path) -> None:
    with ws_connect(ws_url(ws_server, "/echo", marker)) as ws:
        ws.send("ping")
        assert ws.recv(timeout=5) == "ping"
        ws.close(code=4321, reason="bye now")
        assert ws.close_code == 4321  # the server echoed our close frame
    assert wait_marker(marker, "disconnect 4321 bye now") == ["connect", "disconnect 4321 bye now"]


def test_one_megabyte_messages_echo_intact(ws_server: Server) -> None:
    payload = os.urandom(MIB)
    text = "ü" * (MIB // 2)  # 1 MiB of UTF-8
    with ws_connect(ws_url(ws_server, "/echo"), max_size=2 * MIB) as ws:
        ws.send(payload)
        assert ws.recv(timeout=10) == payload
        ws.send(text)
        assert ws.recv(timeout=10) == text


def test_message_over_ws_max_size_closes_with_1009(serve: StartServer, marker: Path) -> None:
    server = serve(APP, "--ws-max-size", "65536")
    with ws_connect(ws_url(server, "/echo", marker)) as ws:
        at_limit = os.urandom(65536)
        ws.send(at_limit)
        assert ws.recv(timeout=5) == at_limit
        ws.send(os.urandom(65537))
        closed = closed_by_server(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1009
    assert wait_marker(marker, "disconnect 1009") == ["connect", "disconnect 1009"]


def test_close_before_accept_rejects_the_handshake_with_403(ws_server: Server) -> None:
    with pytest.raises(InvalidStatus) as info:
        ws_connect(ws_url(ws_server, "/deny"))
    assert info.value.response.status_code == 403


def test_denial_response_reaches_the_client(ws_server: Server) -> None:
    with pytest.raises(InvalidStatus) as info:
        ws_connect(ws_url(ws_server, "/denial-response"))
    response = info.value.response
    assert response.status_code == 401
    assert response.headers["x-denied"] == "by the app"
    assert response.headers["content-type"] == "text/plain"
    assert response.body == b"no websocket for you"


def test_denial_response_body_in_parts(ws_server: Server) -> None:
    with pytest.raises(InvalidStatus) as info:
        ws_connect(ws_url(ws_server, "/denial-in-parts"))
    assert info.value.response.status_code == 403
    assert info.value.response.body == b"part one, part two"


def test_client_leaving_before_the_app_decides_reaches_the_app(ws_server: Server, marker: Path) -> None:
    sock, _ = raw_handshake(ws_server.port, f"/undecided?marker={marker}", expect=None)
    with sock:
        wait_marker(marker, "connect")
    assert wait_marker(marker, "websocket.disconnect 1006") == ["connect", "websocket.disconnect 1006"]


def test_request_timeout_bounds_a_handshake_the_app_never_decides(serve: StartServer, marker: Path) -> None:
    """--request-timeout covers the handshake: the client gets 504, the app a disconnect."""
    server = serve(APP, "--request-timeout", "0.5")
    started = time.monotonic()
    sock, _ = raw_handshake(server.port, f"/undecided?marker={marker}", expect=b"504")
    sock.close()
    assert time.monotonic() - started < 5
    assert wait_marker(marker, "websocket.disconnect 1006") == ["connect", "websocket.disconnect 1006"]


def test_app_returning_without_close_closes_with_1000(ws_server: Server) -> None:
    with ws_connect(ws_url(ws_server, "/accept-and-return")) as ws:
        closed = closed_by_server(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1000


def test_app_raising_after_accept_closes_with_1011(ws_server: Server) -> None:
    with ws_connect(ws_url(ws_server, "/raise-after-accept")) as ws:
        ws.send("trigger")
        closed = closed_by_server(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1011
    log = ws_server.wait_log("RuntimeError: websocket boom after accept")
    assert "Traceback (most recent call last)" in log


def test_app_raising_before_accept_is_http_500(ws_server: Server) -> None:
    with pytest.raises(InvalidStatus) as info:
        ws_connect(ws_url(ws_server, "/raise-before-accept"))
    assert info.value.response.status_code == 500
    log = ws_server.wait_log("RuntimeError: websocket boom before accept")
    assert "Traceback (most recent call last)" in log


def test_plain_http_on_the_same_server(ws_server: Server) -> None:
    with ws_connect(ws_url(ws_server, "/echo")) as ws:
        r = httpx.get(ws_server.url + "/echo", timeout=5)
        assert (r.status_code, r.text) == (200, "plain HTTP still works")
        ws.send("still open")
        assert ws.recv(timeout=5) == "still open"


def test_five_hundred_concurrent_connections_on_one_worker(serve: StartServer) -> None:
    n = 500
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * n
    if soft < wanted:  # the server inherits the raised limit as well
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    server = serve(APP, "--workers", "1")
    assert len(server.worker_pids()) == 1
    url = ws_url(server, "/echo")

    async def main() -> list[str]:
        conns = await asyncio.gather(
            *(async_connect(url, proxy=None, compression=None, open_timeout=20, ping_interval=None) for _ in range(n))
        )
        try:
            # All n are open at once; each now exchanges a message.
            async def exchange(i: int) -> str:
                await conns[i].send(f"message {i}")
                return await asyncio.wait_for(conns[i].recv(), 20)

            return await asyncio.gather(*(exchange(i) for i in range(n)))
        finally:
            await asyncio.gather(*(c.close() for c in conns))

    assert asyncio.run(main()) == [f"message {i}" for i in range(n)]


def test_open_websockets_count_against_max_connections(serve: StartServer) -> None:
    """An upgraded connection keeps its place under --max-connections: with the cap taken by two
    websockets a third client waits in the backlog, and is served once a websocket closes."""
    server = serve(APP, "--workers", "1", "--max-connections", "2")
    url = ws_url(server, "/echo")
    with (
        ws_connect(url) as first,
        ws_connect(url) as second,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as waiting,
    ):
        waiting.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        waiting.settimeout(1.0)
        with pytest.raises(TimeoutError):  # not accepted: both places are held by the websockets
            waiting.recv(1)
        second.send("still served")
        assert second.recv(timeout=5) == "still served"
        first.close()
        # The closed websocket's place goes to the waiting client.
        answer = read_until_eof(waiting)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"plain HTTP still works"), answer


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_abrupt_client_disconnect_reaches_the_app(ws_server: Server, marker: Path, how: str) -> None:
    sock, _ = raw_handshake(ws_server.port, f"/echo?marker={marker}")
    wait_marker(marker, "connect")
    if how == "rst":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # no close frame
    assert wait_marker(marker, "disconnect 1006") == ["connect", "disconnect 1006"]


def test_ping_keeps_a_responsive_idle_client_connected(serve: StartServer, marker: Path) -> None:
    server = serve(APP, "--ws-ping-interval", "0.5", "--ws-ping-timeout", "0.5")
    frames: list[str] = []

    class Frames(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            frames.append(record.getMessage())

    logger = logging.getLogger("test_websocket.client")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = Frames()
    logger.addHandler(handler)
    try:
        # The client never pings by itself: only the server's pings (and its automatic pongs) flow.
        with ws_connect(ws_url(server, "/echo", marker), ping_interval=None, logger=logger) as ws:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                ws.recv(timeout=2.5)  # idle, well past ping interval + timeout (1 s)
            assert time.monotonic() - started >= 2.5
            ws.send("still here")
            assert ws.recv(timeout=5) == "still here"
    finally:
        logger.removeHandler(handler)
    pings = [f for f in frames if f.startswith("< PING")]
    assert len(pings) >= 3, frames
    assert marker_lines(marker)[0] == "connect"
    assert "disconnect 1006" not in marker_lines(marker)


def test_unresponsive_client_is_closed_by_the_ping_timeout(serve: StartServer, marker: Path) -> None:
    server = serve(APP, "--ws-ping-interval", "0.5", "--ws-ping-timeout", "0.5")
    sock, early = raw_handshake(server.port, f"/echo?marker={marker}")
    with sock:
        started = time.monotonic()
        # Never read, never answer: the server must give up on its own.
        lines = wait_for_disconnect(marker, timeout=6)
        elapsed = time.monotonic() - started
        assert lines == ["connect", "disconnect 1006"]
        assert 0.9 <= elapsed <= 5, elapsed
        frames = server_frames(early + read_until_eof(sock))
    opcodes = [op for op, _ in frames]
    assert OP_PING in opcodes
    assert opcodes[-1] == OP_CLOSE, opcodes
    (code,) = struct.unpack("!H", frames[-1][1][:2])
    assert code == 1011


def test_sigterm_closes_open_websockets_with_1001(serve: StartServer, marker: Path) -> None:
    server = serve(APP)
    with ws_connect(ws_url(server, "/echo", marker)) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
        server.signal(signal.SIGTERM)
        closed = closed_by_server(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1001
    assert server.wait(15) == 0
    assert marker_lines(marker) == ["connect", "disconnect 1001"]


@pytest.mark.parametrize(
    ("app", "flags", "body"),
    [("apps.basic:hello", (), b"Hello, world!"), ("apps.asgi_basic:hello", ("--ws", "none"), b"Hello, ASGI!")],
    ids=["wsgi-app", "asgi-app-ws-none"],
)
def test_upgrade_is_answered_as_plain_http(serve: StartServer, app: str, flags: tuple[str, ...], body: bytes) -> None:
    """A WSGI app, or an ASGI app under uvicorn's `--ws none`, gets the handshake as an ordinary
    HTTP request (apps.asgi_basic:hello asserts its scope is http)."""
    server = serve(app, *flags)
    with pytest.raises(InvalidStatus) as info:
        ws_connect(ws_url(server, "/"))
    response = info.value.response
    assert response.status_code == 200
    assert response.body == body
    assert "sec-websocket-accept" not in response.headers
