"""The HTTP/1.1 core through a real worker process, driven by real clients (httpx, curl, raw sockets).

What the core does by itself (keep-alive and pipelining, chunked bodies, 100-continue, HEAD,
HTTP/1.0, the Date and Server headers, every limit on both sides of its boundary, timeouts,
malformed and ambiguous requests, half-closed requests) is tested in Rust against a stub app, in
milliseconds: tests/http_core/ (framing.rs, limits.rs). Kept here: what a WSGI app sees of it
(environ, `wsgi.input` over a spooled body), what the bridge decides (a list has a length, a
generator is chunked, a HEAD keeps the app's length), one refusal and one limit through a real
worker, other clients, and unix/IPv6 binds."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import Raw, RawResponse, Server, have, ipv6_loopback, running

ENV_APP = "apps.basic:environ_json"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory):
    """One environ_json server with default settings for the tests that don't need flags."""
    with running(ENV_APP, log_dir=tmp_path_factory.mktemp("rsgi-shared")) as server:
        yield server


def get(path: str = "/", extra: str = "", version: str = "HTTP/1.1") -> bytes:
    return f"GET {path} {version}\r\nHost: test\r\n{extra}\r\n".encode()


def assert_serves(server: Server) -> None:
    """The worker is alive and answers a normal request on a fresh connection."""
    r = httpx.post(server.url + "/after", content=b"still here", timeout=5)
    assert r.status_code == 200
    data = r.json()
    assert data["PATH_INFO"] == "/after"
    assert data["body_len"] == len(b"still here")
    assert "starting a new one" not in server.log(), "a worker died"


def assert_refused_and_closed(conn: Raw, status: int) -> RawResponse:
    resp = conn.response()
    assert resp.status == status, resp.head
    assert conn.wait_closed(3) is not None, "the connection stayed open after an error reply"
    assert conn.buf == b"", f"bytes after the error reply: {conn.buf!r}"
    return resp


# -- keep-alive, and a refusal through a real worker -------------------------------------------


def test_keepalive_httpx_reuses_one_connection(shared):
    server = shared
    with httpx.Client(base_url=server.url, timeout=5) as client:
        ports = set()
        for i in range(4):
            r = client.post(f"/k{i}", content=b"x" * i) if i % 2 else client.get(f"/k{i}")
            assert r.status_code == 200
            assert r.json()["PATH_INFO"] == f"/k{i}"
            assert "connection" not in r.headers
            ports.add(r.json()["REMOTE_PORT"])
    assert len(ports) == 1, f"the requests came from several client ports: {ports}"


def test_pipeline_stops_at_a_malformed_request(shared):
    with Raw(shared.port) as conn:
        conn.send(get("/before") + b"GET /bad request HTTP/1.1\r\nHost: test\r\n\r\n" + get("/after"))
        assert conn.response().json()["PATH_INFO"] == "/before"
        assert_refused_and_closed(conn, 400)  # and /after is never answered
    assert_serves(shared)


# -- chunked bodies ----------------------------------------------------------------------------


def test_chunked_request_body_httpx_generator(shared):
    server = shared
    pieces = [os.urandom(n) for n in (1, 1000, 65536, 7, 100_000)]

    def body():
        yield from pieces

    r = httpx.post(server.url + "/gen", content=body(), timeout=10)
    assert r.status_code == 200
    data = r.json()
    whole = b"".join(pieces)
    # The body was read whole: its exact length, and no chunked framing left for the app.
    assert data["CONTENT_LENGTH"] == str(len(whole))
    assert "HTTP_TRANSFER_ENCODING" not in data
    assert data["body_len"] == len(whole)
    assert data["body_sha256"] == hashlib.sha256(whole).hexdigest()


def test_generator_response_is_chunked_on_the_wire(serve):
    server = serve("apps.basic:stream")
    with Raw(server.port) as conn:
        conn.send(get("/"))
        resp = conn.response()
        assert resp.status == 200
        assert resp.header("transfer-encoding") == "chunked"
        assert resp.header("content-length") is None
        assert resp.body == b"".join(b"chunk %d\n" % i for i in range(5))
        assert resp.framing == b"".join(b"8\r\nchunk %d\n\r\n" % i for i in range(5)) + b"0\r\n\r\n"
        # The connection stays usable after a chunked response.
        conn.send(get("/again"))
        assert conn.response().body.startswith(b"chunk 0")


def test_list_response_has_content_length_not_chunked(serve):
    server = serve("apps.basic:hello")
    with Raw(server.port) as conn:
        conn.send(get("/"))
        resp = conn.response()
    assert resp.header("content-length") == "13"
    assert resp.header("transfer-encoding") is None
    assert resp.body == b"Hello, world!"


# -- HEAD --------------------------------------------------------------------------------------


def test_head_sends_no_body_and_keeps_declared_length(serve):
    server = serve("apps.extra:head_aware")
    with Raw(server.port) as conn:
        conn.send(b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n")
        head = conn.response(head_request=True)
        assert head.status == 200
        assert head.header("content-length") == "13"
        assert head.header("transfer-encoding") is None
        assert conn.wait_closed(0.3) is None
        assert conn.buf == b"", f"body bytes after a HEAD response: {conn.buf!r}"
        # The next response on the connection starts right where it should.
        conn.send(get("/"))
        assert conn.response().body == b"Hello, world!"


# -- limits, and what the app sees of a body ---------------------------------------------------


def test_max_body_size_by_content_length_before_reading(serve):
    server = serve(ENV_APP, "--max-body-size", "1000")
    with Raw(server.port) as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000)
        assert conn.response().json()["body_len"] == 1000
        # Only the head is sent: the answer must come without waiting for the body.
        conn.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1001\r\n\r\n")
        assert_refused_and_closed(conn, 413)
    assert_serves(server)


def test_large_upload_spooled_to_disk_hashes_correctly(shared):
    server = shared  # default --body-spool-threshold: 1 MiB
    body = os.urandom(5 * 1024 * 1024 + 17)
    r = httpx.post(server.url + "/upload", content=body, timeout=30)
    assert r.status_code == 200
    data = r.json()
    assert data["body_len"] == len(body)
    assert data["CONTENT_LENGTH"] == str(len(body))
    assert data["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_absolute_form_target_sets_the_host(shared):
    """RFC 9112 3.2.2: with an absolute-form target, its authority is the host, not Host:."""
    with Raw(shared.port) as conn:
        conn.send(b"GET http://target.example/p?q=1 HTTP/1.1\r\nHost: header.example\r\n\r\n")
        data = conn.response().json()
    assert (data["HTTP_HOST"], data["PATH_INFO"], data["QUERY_STRING"]) == ("target.example", "/p", "q=1")


# -- other clients and transports --------------------------------------------------------------


@pytest.mark.skipif(not have("curl"), reason="curl is not installed")
def test_curl_get_and_post(shared, tmp_path):
    server = shared
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-i", server.url + "/curl?x=1"],
        capture_output=True,
        check=True,
        timeout=20,
    ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    data = json.loads(body)
    assert (data["PATH_INFO"], data["QUERY_STRING"]) == ("/curl", "x=1")
    assert data["HTTP_USER_AGENT"].startswith("curl/")

    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(300_000))
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--data-binary", f"@{payload}", server.url + "/post"],
        capture_output=True,
        check=True,
        timeout=20,
    ).stdout
    data = json.loads(out)
    assert data["REQUEST_METHOD"] == "POST"
    assert data["body_sha256"] == hashlib.sha256(payload.read_bytes()).hexdigest()
    assert data["CONTENT_TYPE"] == "application/x-www-form-urlencoded"

    out = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-H", "Transfer-Encoding: chunked", "--data-binary", "@-", server.url],
        input=b"chunked via curl",
        capture_output=True,
        check=True,
        timeout=20,
    ).stdout
    assert json.loads(out)["body_sha256"] == hashlib.sha256(b"chunked via curl").hexdigest()


def wait_ready_with(server: Server, client: httpx.Client, url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise AssertionError(f"rsgi exited with {server.proc.returncode}:\n{server.log()}")
        try:
            client.get(url)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wait_unix_listening(server: Server, path: Path, timeout: float = 30.0) -> None:
    """Readiness for a Unix socket (httpx leaks the socket of a failed Unix connect, so probe here)."""
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise AssertionError(f"rsgi exited with {server.proc.returncode}:\n{server.log()}")
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            try:
                s.connect(str(path))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.05)


def test_unix_socket_bind(serve, tmp_path):
    path = tmp_path / "rsgi.sock"
    assert len(str(path)) < 100
    server = serve(ENV_APP, "--bind", f"unix:{path}", bind=False, ready=False)
    wait_unix_listening(server, path)
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=5) as client:
        r1 = client.post("http://localhost/uds", content=b"over a unix socket")
        r2 = client.get("http://localhost/again")
    assert Path(path).is_socket()
    data = r1.json()
    assert data["PATH_INFO"] == "/uds"
    assert data["body_sha256"] == hashlib.sha256(b"over a unix socket").hexdigest()
    assert data["REMOTE_ADDR"] == ""
    assert data["HTTP_HOST"] == "localhost"
    assert r2.json()["PATH_INFO"] == "/again"


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_bind(serve):
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    server = serve(ENV_APP, "--bind", f"[::1]:{port}", bind=False, ready=False)
    url = f"http://[::1]:{port}"
    with httpx.Client(timeout=5) as client:
        wait_ready_with(server, client, url + "/")
        data = client.get(url + "/six?x=1").json()
    assert data["PATH_INFO"] == "/six"
    assert data["REMOTE_ADDR"] == "::1"
    assert data["SERVER_NAME"] == "::1"
    assert data["SERVER_PORT"] == str(port)
    assert data["HTTP_HOST"] == f"[::1]:{port}"
