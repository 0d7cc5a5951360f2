"""HTTP/2 through the real server: h2c with prior knowledge on the `--http auto` port (httpx,
curl, h2load and raw frames from the `h2` library), `--http 1` / `--http 2`, the stream limit,
and a graceful stop with an HTTP/2 request in flight.

Apps: apps.edge (``/environ``, ``/scope``, ``/echo``, ``/big``, ``/slow``). Every wait is a poll
with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
import httpx
import pytest
from apps.edge import pattern
from conftest import Server, StartServer, have, raw_request, running, wait_until

WSGI_APP = "apps.edge:app"
ASGI_APP = "apps.edge:asgi_app"
T = TypeVar("T")


def h2_client(**kwargs) -> httpx.Client:
    """HTTP/2 with prior knowledge over cleartext: httpx never falls back to HTTP/1.1 here."""
    return httpx.Client(http1=False, http2=True, timeout=10, **kwargs)


@pytest.fixture(scope="module")
def wsgi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(WSGI_APP, log_dir=tmp_path_factory.mktemp("h2-wsgi")) as server:
        yield server


@pytest.fixture(scope="module")
def asgi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(ASGI_APP, log_dir=tmp_path_factory.mktemp("h2-asgi")) as server:
        yield server


# -- raw frames ----------------------------------------------------------------------------------


def h2_exchange(port: int, requests: list[str], timeout: float = 10.0) -> tuple[list[h2.events.Event], bytes]:
    """Sends the client preface and one GET per path at once (before reading anything), then
    collects events until every stream has ended or been reset, or the server closes. Returns the
    events and the raw bytes the server sent."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    open_streams = set()
    for path in requests:
        sid = conn.get_next_available_stream_id()
        headers = [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", f"127.0.0.1:{port}")]
        conn.send_headers(sid, headers, end_stream=True)
        open_streams.add(sid)
    events: list[h2.events.Event] = []
    raw = b""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(conn.data_to_send())
        while open_streams and time.monotonic() < deadline:
            try:
                data = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            raw += data
            try:
                new = conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                break
            events += new
            for ev in new:
                if isinstance(ev, h2.events.StreamEnded | h2.events.StreamReset):
                    open_streams.discard(ev.stream_id)
            s.sendall(conn.data_to_send())
    return events, raw


def server_settings(port: int, timeout: float = 5.0) -> dict[int, int]:
    """The settings in the server's first SETTINGS frame, read from a raw h2c connection."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(conn.data_to_send())
        while time.monotonic() < deadline:
            data = s.recv(65536)
            assert data, "the server closed the connection before sending SETTINGS"
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RemoteSettingsChanged):
                    return {int(k): v.new_value for k, v in ev.changed_settings.items()}
    raise AssertionError("no SETTINGS frame from the server")


def responses(events: list[h2.events.Event]) -> dict[int, int]:
    """stream id -> status of every response in `events`."""
    out = {}
    for ev in events:
        if isinstance(ev, h2.events.ResponseReceived):
            out[ev.stream_id] = int(dict(ev.headers)[b":status"])
    return out


# -- h2c on the auto port ------------------------------------------------------------------------


def test_h2c_get_with_prior_knowledge(wsgi: Server) -> None:
    with h2_client() as client:
        r = client.get(wsgi.url + "/environ?x=1")
    assert r.status_code == 200
    assert r.http_version == "HTTP/2"
    env = r.json()
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == "x=1"
    assert env["HTTP_HOST"] == f"127.0.0.1:{wsgi.port}"  # from :authority
    assert env["wsgi.url_scheme"] == "http"
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_h2c_post_body_is_echoed_intact(wsgi: Server) -> None:
    # Larger than HTTP/2's initial 64 KiB flow-control window: needs WINDOW_UPDATEs both ways.
    body = os.urandom(300_000)
    with h2_client() as client:
        r = client.post(wsgi.url + "/echo", content=body)
        env = client.post(wsgi.url + "/environ", content=b"abc").json()
    assert r.status_code == 200
    assert r.http_version == "HTTP/2"
    assert len(r.content) == len(body)
    assert r.content == body
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_LENGTH"] == "3"
    assert env["body_len"] == 3


def test_h2c_one_megabyte_response_is_intact(wsgi: Server) -> None:
    with h2_client() as client:
        r = client.get(wsgi.url + "/big")
    assert r.status_code == 200
    assert r.http_version == "HTTP/2"
    assert len(r.content) == 1 << 20
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(pattern(1 << 20)).digest()


def test_many_concurrent_streams_share_one_connection(asgi: Server) -> None:
    """40 one-second requests on one HTTP/2 connection run at once (the ASGI app sleeps with
    asyncio); and every stream is seen by the app as coming from the same client port."""

    async def run() -> tuple[list[httpx.Response], list[httpx.Response], float]:
        async with httpx.AsyncClient(http1=False, http2=True, timeout=20) as client:
            started = time.monotonic()
            slow = await asyncio.gather(*(client.get(asgi.url + "/slow?1") for _ in range(40)))
            elapsed = time.monotonic() - started
            scopes = await asyncio.gather(*(client.get(asgi.url + f"/scope?i={i}") for i in range(40)))
            return slow, scopes, elapsed

    slow, scopes, elapsed = asyncio.run(run())
    assert [r.status_code for r in slow] == [200] * 40
    assert {r.text for r in slow} == {"slept 1.0"}
    assert {r.http_version for r in slow + scopes} == {"HTTP/2"}
    assert elapsed < 6.0, f"40 x 1 s streams took {elapsed:.1f}s: not concurrent"
    assert sorted(r.json()["query_string"] for r in scopes) == sorted(f"i={i}" for i in range(40))
    client_ports = {tuple(r.json()["client"]) for r in scopes}
    assert len(client_ports) == 1, f"streams came over several connections: {client_ports}"


def test_asgi_http_version_is_2_over_h2_and_1_1_over_http1(asgi: Server) -> None:
    with h2_client() as client:
        scope = client.get(asgi.url + "/scope").json()
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "http"
    assert scope["method"] == "GET"
    # No Host header on HTTP/2: the :authority is the host the app sees.
    assert ["host", f"127.0.0.1:{asgi.port}"] in scope["headers"]
    scope = httpx.get(asgi.url + "/scope", timeout=5).json()
    assert scope["http_version"] == "1.1"


def test_http1_still_works_on_the_auto_port(wsgi: Server) -> None:
    r = httpx.get(wsgi.url + "/environ", timeout=5)
    assert r.status_code == 200
    assert r.http_version == "HTTP/1.1"
    assert r.json()["SERVER_PROTOCOL"] == "HTTP/1.1"
    # A first line that starts like the preface but is not it stays HTTP/1.1.
    raw = raw_request(wsgi.port, b"PRIVATE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:200]


@pytest.mark.skipif(not have("curl"), reason="curl not installed")
def test_curl_prior_knowledge(wsgi: Server) -> None:
    out = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}", wsgi.url + "/big?1000"],
        capture_output=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    body, _, status = out.stdout.rpartition(b"\n")
    assert status == b"2 200"
    assert body == pattern(1000)


@pytest.mark.skipif(not have("curl"), reason="curl not installed")
def test_curl_h2c_upgrade_is_answered_in_http1(wsgi: Server) -> None:
    """`Upgrade: h2c` (curl --http2 on http://) is not supported: the answer is plain HTTP/1.1."""
    out = subprocess.run(
        ["curl", "-sS", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", wsgi.url + "/"],
        capture_output=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"1.1 200"


@pytest.mark.skipif(not have("h2load"), reason="h2load not installed")
def test_h2load_2000_requests_none_failed(wsgi: Server) -> None:
    out = subprocess.run(
        ["h2load", "-n", "2000", "-c", "4", "-m", "10", wsgi.url + "/big?100"],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    m = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out.stdout
    )
    assert m, out.stdout
    total, _started, done, succeeded, failed, errored = map(int, m.groups())
    assert (total, done, succeeded, failed, errored) == (2000, 2000, 2000, 0, 0), out.stdout
    assert re.search(r"status codes: 2000 2xx", out.stdout), out.stdout
    assert "Application protocol: h2c" in out.stdout


def h2_get_json(port: int, path: str, extra_headers: list[tuple[str, str]]) -> dict:
    """One GET over a raw h2c connection, with header fields httpx would not send (repeated ones)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    headers = [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", f"127.0.0.1:{port}")]
    conn.send_headers(1, headers + extra_headers, end_stream=True)
    body = b""
    status = None
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(conn.data_to_send())
        ended = False
        while not ended:
            data = s.recv(65536)
            assert data, "the server closed the connection"
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = dict(ev.headers)[b":status"]
                elif isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded | h2.events.StreamReset):
                    ended = True
            s.sendall(conn.data_to_send())
    assert status == b"200", (status, body)
    return json.loads(body)


SPLIT_COOKIES = [("cookie", "a=1"), ("cookie", "b=2"), ("x-repeated", "one"), ("x-repeated", "two")]


def test_split_cookie_fields_are_joined_for_wsgi(wsgi: Server) -> None:
    """RFC 9113 §8.2.3: HTTP/2 clients may send each cookie as its own field; they are joined
    with "; " before reaching an application."""
    env = h2_get_json(wsgi.port, "/environ", SPLIT_COOKIES)
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_REPEATED"] == "one, two"


def test_split_cookie_fields_are_joined_for_asgi(asgi: Server) -> None:
    scope = h2_get_json(asgi.port, "/scope", SPLIT_COOKIES)
    assert scope["http_version"] == "2"
    assert [v for k, v in scope["headers"] if k == "cookie"] == ["a=1; b=2"]


def test_body_limit_applies_over_h2(serve: StartServer) -> None:
    server = serve(WSGI_APP, "--max-body-size", "1000")

    def chunks() -> Iterator[bytes]:
        yield b"x" * 600
        yield b"y" * 600

    with h2_client() as client:
        assert client.post(server.url + "/echo", content=b"x" * 5000).status_code == 413  # declared
        assert client.post(server.url + "/echo", content=chunks()).status_code == 413  # streamed
        r = client.post(server.url + "/echo", content=b"z" * 1000)
        assert (r.status_code, r.content) == (200, b"z" * 1000)
        head = client.head(server.url + "/big")
        assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", str(1 << 20))


# -- --http 1 / --http 2 -------------------------------------------------------------------------


def test_http_1_refuses_the_h2_preface(serve: StartServer) -> None:
    server = serve(WSGI_APP, "--http", "1")
    events, raw = h2_exchange(server.port, ["/"], timeout=5)
    assert responses(events) == {}, events
    assert not any(isinstance(ev, h2.events.RemoteSettingsChanged) for ev in events), events
    assert b"HTTP/1.1 200" not in raw
    r = httpx.get(server.url + "/environ", timeout=5)
    assert r.status_code == 200
    assert r.json()["SERVER_PROTOCOL"] == "HTTP/1.1"
    with h2_client() as client, pytest.raises(httpx.HTTPError):
        client.get(server.url + "/")


def test_http_2_serves_h2c_and_not_http1(serve: StartServer) -> None:
    server = serve(WSGI_APP, "--http", "2", ready=False)
    port = server.port

    def h2_ready() -> httpx.Response | None:
        try:
            with h2_client() as client:
                return client.get(server.url + "/environ")
        except httpx.HTTPError:
            assert server.proc.poll() is None, server.log()
            return None

    r = wait_until(h2_ready, 30, "the --http 2 server to answer h2c")
    assert r.status_code == 200
    assert r.json()["SERVER_PROTOCOL"] == "HTTP/2"
    try:
        raw = raw_request(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    except ConnectionResetError:
        raw = b""
    assert not raw.startswith(b"HTTP/1."), raw[:200]
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url + "/", timeout=5)


# -- stream limit --------------------------------------------------------------------------------


def test_default_stream_limit_is_advertised(wsgi: Server) -> None:
    settings = server_settings(wsgi.port)
    assert settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 100


def test_h2_max_concurrent_streams_is_advertised_and_enforced(serve: StartServer) -> None:
    server = serve(ASGI_APP, "--h2-max-concurrent-streams", "2")
    settings = server_settings(server.port)
    assert settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 2
    # Three streams sent at once, before the client has seen the limit: the third is refused
    # (RST_STREAM REFUSED_STREAM, safe to retry), the first two are answered.
    events, _ = h2_exchange(server.port, ["/slow?0.3"] * 3)
    assert responses(events) == {1: 200, 3: 200}
    resets = {ev.stream_id: ev.error_code for ev in events if isinstance(ev, h2.events.StreamReset)}
    assert resets == {5: h2.errors.ErrorCodes.REFUSED_STREAM}


@pytest.mark.skipif(not have("h2load"), reason="h2load not installed")
def test_h2load_respects_a_limit_of_two_streams(serve: StartServer) -> None:
    server = serve(WSGI_APP, "--h2-max-concurrent-streams", "2")
    out = subprocess.run(
        ["h2load", "-n", "200", "-c", "2", "-m", "2", server.url + "/"],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert re.search(r"200 succeeded, 0 failed, 0 errored", out.stdout), out.stdout + out.stderr


# -- graceful stop -------------------------------------------------------------------------------


def test_sigterm_lets_an_in_flight_h2_request_finish(serve: StartServer, tmp_path: Path) -> None:
    """curl, because python-h2 (under httpx) fails on the PING the server sends after its first
    GOAWAY (python-hyper/h2 issue 1199), which RFC 9113 §6.8 recommends for a graceful close."""
    if not have("curl"):
        pytest.skip("curl not installed")
    marker = tmp_path / "entered"
    server = serve(WSGI_APP, env={"RSGI_TEST_MARKER": str(marker)})
    curl = subprocess.Popen(
        ["curl", "-sS", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}", server.url + "/slow?1.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: marker.exists() and marker.read_text().strip(), 10, "the slow request to enter the app")
        server.signal(signal.SIGTERM)
        out, err = curl.communicate(timeout=20)
    finally:
        if curl.poll() is None:
            curl.kill()
            curl.wait()
    assert curl.returncode == 0, err
    assert out == b"slept 1.5\n2 200"
    assert server.wait(20) == 0, server.log()


def read_frames(s: socket.socket, until: Callable[[list[tuple[int, int, int, bytes]]], bool], timeout: float):
    """Reads raw HTTP/2 frames (type, flags, stream, payload) until `until(frames)` or EOF; answers
    PINGs so the server's graceful close can proceed."""
    frames: list[tuple[int, int, int, bytes]] = []
    buf = b""
    deadline = time.monotonic() + timeout
    while not until(frames) and time.monotonic() < deadline:
        try:
            data = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
        buf += data
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            length = int.from_bytes(buf[:3], "big")
            ftype, flags = buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            payload = buf[9 : 9 + length]
            buf = buf[9 + length :]
            frames.append((ftype, flags, stream, payload))
            if ftype == 6 and not flags & 1:  # PING: ack it
                s.sendall(b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + payload)
    return frames


def test_graceful_stop_sends_goaway_and_finishes_the_open_stream(serve: StartServer, tmp_path: Path) -> None:
    marker = tmp_path / "entered"
    server = serve(WSGI_APP, env={"RSGI_TEST_MARKER": str(marker)})
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    headers = [(":method", "GET"), (":path", "/slow?1"), (":scheme", "http"), (":authority", "127.0.0.1")]
    conn.send_headers(1, headers, end_stream=True)
    GOAWAY, HEADERS, DATA, END_STREAM = 7, 1, 0, 1
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(conn.data_to_send())
        wait_until(lambda: marker.exists() and marker.read_text().strip(), 10, "the slow request to enter the app")
        server.signal(signal.SIGTERM)

        def stream_1_ended(frames: list[tuple[int, int, int, bytes]]) -> bool:
            return any(f[0] in (HEADERS, DATA) and f[2] == 1 and f[1] & END_STREAM for f in frames)

        frames = read_frames(s, stream_1_ended, timeout=15)
    goaways = [f for f in frames if f[0] == GOAWAY]
    assert goaways, [f[:3] for f in frames]
    # Every GOAWAY says NO_ERROR and keeps stream 1 (the in-flight request) among those answered.
    for _, _, _, payload in goaways:
        last_stream = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
        assert last_stream >= 1
        assert int.from_bytes(payload[4:8], "big") == 0
    response_headers = [f for f in frames if f[0] == HEADERS and f[2] == 1]
    assert response_headers, [f[:3] for f in frames]
    status = dict(hpack.Decoder().decode(response_headers[0][3]))[":status"]
    assert status == "200"
    body = b"".join(f[3] for f in frames if f[0] == DATA and f[2] == 1)
    assert body == b"slept 1.0"
    assert stream_1_ended(frames)
    assert server.wait(20) == 0, server.log()
