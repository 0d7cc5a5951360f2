"""permessage-deflate (RFC 7692) on rsgi's websockets: the negotiation (browsers' offers, offers
declined for a bad parameter, `--no-ws-per-message-deflate`), compressed messages both ways with
the `websockets` library (which offers the extension by default) and with a raw client that
checks RSV1 and inflates the server's frames itself, fragmented compressed messages with a ping
between, and the limits: a deflate bomb closes with 1009, corrupt data with 1002. Autobahn's
groups 12 and 13 (tests/outside/test_autobahn.py) cover the rest."""

from __future__ import annotations

import base64
import os
import socket
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, StartServer, running
from websockets.sync.client import connect

from asgi.test_websocket import APP, server_frames, wait_marker, ws_url

CHROMIUM_OFFER = "permessage-deflate; client_max_window_bits"
AGREED = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


@pytest.fixture(scope="module")
def ws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(APP, log_dir=tmp_path_factory.mktemp("deflate")) as server:
        yield server


def handshake(port: int, offers: list[str], path: str = "/echo") -> tuple[socket.socket, dict[str, str], bytes]:
    """A raw client's handshake with these `Sec-WebSocket-Extensions` lines: the socket, the 101's
    headers (lower-case names), and any bytes after the head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16))
    lines = b"".join(b"Sec-WebSocket-Extensions: %s\r\n" % o.encode() for o in offers)
    sock.sendall(
        b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n" % (path.encode(), key, lines)
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101 "), head
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return sock, headers, rest


def client_frame(first: int, payload: bytes) -> bytes:
    """One masked client frame; `first` is the FIN/RSV/opcode byte."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def deflate(data: bytes) -> bytes:
    """As a client compresses a message: raw deflate, sync flush, the 4-byte tail removed."""
    c = zlib.compressobj(wbits=-15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate(data: bytes) -> bytes:
    return zlib.decompressobj(wbits=-15).decompress(data + b"\x00\x00\xff\xff")


def read_until_eof(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset, when it left our bytes unread, too)."""
    sock.settimeout(5)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """The next server frame: (first byte, payload)."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "closed mid-frame"
            data += chunk
        return data

    first, second = exactly(2)
    n = second & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", exactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", exactly(8))
    return first, exactly(n)


@pytest.mark.parametrize(
    ("offers", "agreed"),
    [
        ([CHROMIUM_OFFER], AGREED),  # Chromium and Firefox
        (["permessage-deflate"], AGREED),  # the websockets library without parameters
        (["permessage-deflate; client_no_context_takeover; server_no_context_takeover"], AGREED),
        (["permessage-deflate; server_max_window_bits=10"], AGREED + "; server_max_window_bits=10"),
        (["x-webkit-deflate-frame", CHROMIUM_OFFER], AGREED),  # an unknown extension is passed over
        (["permessage-deflate; server_max_window_bits=7, permessage-deflate"], AGREED),  # the next offer
        (["permessage-deflate; server_max_window_bits"], None),  # needs a value
        (["permessage-deflate; client_max_window_bits=16"], None),  # out of range
        (["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], None),  # repeated
        (["permessage-deflate; unknown_parameter"], None),
        (["permessage-deflate; server_no_context_takeover=yes"], None),
        (["deflate-frame"], None),
        ([], None),
    ],
)
def test_negotiation(ws_server: Server, offers: list[str], agreed: str | None) -> None:
    """A declined offer is no error: the socket opens uncompressed (RFC 7692 §5)."""
    sock, headers, _ = handshake(ws_server.port, offers)
    with sock:
        assert headers.get("sec-websocket-extensions") == agreed
        assert headers["x-accepted"] == "yes"  # the app's own accept headers are still there


def test_off_with_no_ws_per_message_deflate(serve: StartServer) -> None:
    server = serve(APP, "--no-ws-per-message-deflate")
    sock, headers, _ = handshake(server.port, [CHROMIUM_OFFER])
    with sock:
        assert "sec-websocket-extensions" not in headers
    with connect(ws_url(server, "/echo"), proxy=None, open_timeout=5) as ws:
        assert ws.response.headers.get("sec-websocket-extensions") is None
        ws.send("still works")
        assert ws.recv(timeout=5) == "still works"


def test_websockets_library_echo_compressed(ws_server: Server) -> None:
    text = '{"user": "ana", "text": "hello again", "room": "lobby"} ' * 2000
    blob = bytes(range(256)) * 4096  # 1 MiB, compressible
    with connect(ws_url(ws_server, "/echo"), proxy=None, open_timeout=5, max_size=4 * 1024 * 1024) as ws:
        assert ws.response.headers["sec-websocket-extensions"] == AGREED
        for _ in range(3):  # no context carried over between messages, either way
            ws.send(text)
            assert ws.recv(timeout=10) == text
        ws.send(blob)
        assert ws.recv(timeout=10) == blob
        ws.send("short")
        assert ws.recv(timeout=5) == "short"
        ws.send(os.urandom(5000))  # incompressible
        assert len(ws.recv(timeout=5)) == 5000


def test_raw_client_sees_rsv1_and_inflates_the_echo(ws_server: Server) -> None:
    message = b"the quick brown fox jumps over the lazy dog; " * 100
    sock, headers, rest = handshake(ws_server.port, [CHROMIUM_OFFER])
    assert rest == b""
    with sock:
        assert headers["sec-websocket-extensions"] == AGREED
        # Compressed, in three fragments, with a ping between the first two.
        body = deflate(message)
        a, b, c = body[:10], body[10:20], body[20:]
        sock.sendall(
            client_frame(0x41, a) + client_frame(0x89, b"ping!") + client_frame(0x00, b) + client_frame(0x80, c)
        )
        first, payload = read_frame(sock)
        assert (first, payload) == (0x8A, b"ping!")  # the pong
        first, payload = read_frame(sock)
        assert first == 0xC1, hex(first)  # FIN, RSV1, text: the server compressed its echo
        assert len(payload) < len(message) // 5
        # One inflater kept across messages, as Chromium does (server_no_context_takeover lets it
        # reset, but it need not).
        kept = zlib.decompressobj(wbits=-15)
        assert kept.decompress(payload + b"\x00\x00\xff\xff") == message
        # An uncompressed message is still fine; every echo is compressed (short ones as stored
        # blocks), as clients such as Autobahn's expect once the extension is agreed.
        sock.sendall(client_frame(0x81, b"plain"))
        first, payload = read_frame(sock)
        assert (first, kept.decompress(payload + b"\x00\x00\xff\xff")) == (0xC1, b"plain")
        sock.sendall(client_frame(0x88, struct.pack("!H", 1000)))
        first, payload = read_frame(sock)
        assert first == 0x88


def test_deflate_bomb_closes_with_1009(serve: StartServer, tmp_path: Path) -> None:
    server = serve(APP, "--ws-max-size", "65536")
    marker = tmp_path / "marker"
    sock, _, _ = handshake(server.port, [CHROMIUM_OFFER], f"/echo?marker={marker}")
    with sock:
        bomb = deflate(bytes(16 * 1024 * 1024))  # 16 MiB of zeros in about 16 KiB
        sock.sendall(client_frame(0xC2, bomb))
        frames = server_frames(read_until_eof(sock))
    assert frames and frames[-1][0] == 0x8, frames
    assert struct.unpack("!H", frames[-1][1][:2]) == (1009,)
    assert wait_marker(marker, "disconnect 1009") == ["connect", "disconnect 1009"]
    assert "panicked" not in server.log()


def test_corrupt_data_closes_with_1002(ws_server: Server) -> None:
    sock, _, _ = handshake(ws_server.port, [CHROMIUM_OFFER])
    with sock:
        sock.sendall(client_frame(0xC1, b"\xff\xfe\xfd\xfc not deflate"))
        frames = server_frames(read_until_eof(sock))
    assert frames and frames[-1][0] == 0x8, frames
    assert struct.unpack("!H", frames[-1][1][:2]) == (1002,)


def test_rsv1_without_the_extension_is_a_protocol_error(serve: StartServer) -> None:
    server = serve(APP, "--no-ws-per-message-deflate")
    sock, _, _ = handshake(server.port, [CHROMIUM_OFFER])
    with sock:
        sock.sendall(client_frame(0xC1, deflate(b"hello")))
        data = read_until_eof(sock)
    # tungstenite fails the connection (a close frame, or just the end of the stream).
    assert all(opcode == 0x8 for opcode, _ in server_frames(data))
    assert "panicked" not in server.log()
