"""WebSockets over HTTP/2 (RFC 8441, extended CONNECT): the server announces
SETTINGS_ENABLE_CONNECT_PROTOCOL, a CONNECT with `:protocol websocket` reaches the app as the
same ASGI websocket scope (http_version "2"), the stream then carries WebSocket frames both ways
(permessage-deflate too), plain requests share the connection, and closing either way ends the
stream only. The client is the `h2` library over a raw socket (h2c, prior knowledge)."""

from __future__ import annotations

import os
import socket
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from conftest import Server, StartServer, running

from asgi.test_websocket import APP, wait_marker

ENABLE_CONNECT_PROTOCOL = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL


@pytest.fixture(scope="module")
def ws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(APP, log_dir=tmp_path_factory.mktemp("wsh2")) as server:
        yield server


def masked(first: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    head = struct.pack("!BB", first, 0x80 | n) if n < 126 else struct.pack("!BBH", first, 0x80 | 126, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class H2Client:
    """One h2c connection; `events` collects what arrived, stream data is gathered per stream."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()
        self.remote_settings: dict[int, int] = {}
        self.data: dict[int, bytearray] = {}
        self.responses: dict[int, dict[str, str]] = {}
        self.ended: set[int] = set()
        self.settings_seen = False
        self.pump(lambda: self.settings_seen)

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def pump(self, done: Callable[[], object], timeout: float = 5.0) -> None:
        self.sock.settimeout(timeout)
        while not done():
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            for ev in self.conn.receive_data(chunk):
                if isinstance(ev, h2.events.RemoteSettingsChanged):
                    self.remote_settings.update({k: v.new_value for k, v in ev.changed_settings.items()})
                    self.settings_seen = True
                elif isinstance(ev, h2.events.ResponseReceived):
                    self.responses[ev.stream_id] = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    self.data.setdefault(ev.stream_id, bytearray()).extend(ev.data)
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    self.ended.add(ev.stream_id)
            self.flush()

    def connect(self, path: str, extra: Sequence[tuple[str, str]] = ()) -> int:
        sid = self.conn.get_next_available_stream_id()
        headers = [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "127.0.0.1"),
            ("sec-websocket-version", "13"),
            *extra,
        ]
        self.conn.send_headers(sid, headers)
        self.flush()
        self.pump(lambda: sid in self.responses or sid in self.ended)
        return sid

    def send(self, sid: int, data: bytes) -> None:
        self.conn.send_data(sid, data)
        self.flush()

    def frame(self, sid: int) -> tuple[int, bytes]:
        """The next server frame on the stream: (first byte, payload)."""

        def parsed() -> tuple[int, int, int] | None:
            buf = self.data.get(sid, b"")
            if len(buf) < 2:
                return None
            n, off = buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return None
                (n,), off = struct.unpack("!H", buf[2:4]), 4
            elif n == 127:
                if len(buf) < 10:
                    return None
                (n,), off = struct.unpack("!Q", buf[2:10]), 10
            return (buf[0], off, n) if len(buf) >= off + n else None

        self.pump(lambda: parsed() is not None or sid in self.ended)
        got = parsed()
        assert got is not None, f"stream {sid} ended without a frame"
        first, off, n = got
        payload = bytes(self.data[sid][off : off + n])
        del self.data[sid][: off + n]
        return first, payload

    def close(self) -> None:
        self.sock.close()


def test_extended_connect_is_announced_and_echoes(ws_server: Server, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    client = H2Client(ws_server.port)
    try:
        assert client.remote_settings[ENABLE_CONNECT_PROTOCOL] == 1
        sid = client.connect(f"/echo?marker={marker}")
        response = client.responses[sid]
        assert response[":status"] == "200", response
        assert response["x-accepted"] == "yes"
        assert "sec-websocket-accept" not in response and "upgrade" not in response
        client.send(sid, masked(0x81, "héllo over h2".encode()))
        assert client.frame(sid) == (0x81, "héllo over h2".encode())
        client.send(sid, masked(0x82, b"\x00\xffbinary"))
        assert client.frame(sid) == (0x82, b"\x00\xffbinary")
        # A second websocket and a plain request on the same connection.
        other = client.connect("/echo")
        client.send(other, masked(0x81, b"second"))
        assert client.frame(other) == (0x81, b"second")
        # The client closes: the close is echoed and the app hears 1000.
        client.send(sid, masked(0x88, struct.pack("!H", 1000) + b"bye"))
        first, payload = client.frame(sid)
        assert first == 0x88 and payload[:2] == struct.pack("!H", 1000)
        assert wait_marker(marker, "disconnect 1000 bye") == ["connect", "disconnect 1000 bye"]
        # The other stream still works after the first one ended.
        client.send(other, masked(0x81, b"still here"))
        assert client.frame(other) == (0x81, b"still here")
    finally:
        client.close()


def test_the_scope_says_http_2(ws_server: Server) -> None:
    client = H2Client(ws_server.port)
    try:
        sid = client.connect("/scope")
        assert client.responses[sid][":status"] == "200"
        first, payload = client.frame(sid)
        assert first == 0x81
        assert payload.decode() == "websocket 2 ws /scope"
    finally:
        client.close()


def test_deflate_over_h2(ws_server: Server) -> None:
    client = H2Client(ws_server.port)
    try:
        sid = client.connect("/echo", [("sec-websocket-extensions", "permessage-deflate; client_max_window_bits")])
        assert client.responses[sid]["sec-websocket-extensions"].startswith("permessage-deflate")
        message = b"compressed over an h2 stream " * 50
        c = zlib.compressobj(wbits=-15)
        body = (c.compress(message) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
        client.send(sid, masked(0xC1, body))
        first, payload = client.frame(sid)
        assert first == 0xC1
        assert zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff") == message
    finally:
        client.close()


def test_close_before_accept_is_403_and_other_connects_are_refused(ws_server: Server) -> None:
    client = H2Client(ws_server.port)
    try:
        sid = client.connect("/deny")
        assert client.responses[sid][":status"] == "403"
        # A CONNECT for another protocol, or without one, is not a websocket.
        sid = client.conn.get_next_available_stream_id()
        client.conn.send_headers(
            sid,
            [
                (":method", "CONNECT"),
                (":protocol", "other"),
                (":scheme", "http"),
                (":path", "/echo"),
                (":authority", "127.0.0.1"),
            ],
        )
        client.flush()
        client.pump(lambda: sid in client.responses or sid in client.ended)
        assert client.responses.get(sid, {}).get(":status") in (None, "405", "400"), client.responses.get(sid)
    finally:
        client.close()


def test_off_with_ws_none(serve: StartServer) -> None:
    server = serve("apps.asgi_basic:hello", "--ws", "none")
    client = H2Client(server.port)
    try:
        assert client.remote_settings.get(ENABLE_CONNECT_PROTOCOL, 0) == 0
    finally:
        client.close()


def test_extended_connect_to_a_wsgi_app_is_refused(serve: StartServer) -> None:
    """A WSGI app takes no websockets: its extended CONNECT gets 405 from the core, never the app."""
    server = serve("apps.basic:hello")
    client = H2Client(server.port)
    try:
        sid = client.connect("/")
        assert client.responses[sid][":status"] == "405"
    finally:
        client.close()
