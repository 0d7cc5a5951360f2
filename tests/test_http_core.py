"""The HTTP/1.1 core (hyper under rsgi's limits and timeouts), driven by real clients: raw sockets
when the exact bytes matter, httpx and curl otherwise. Every server-side limit is checked on both
sides of its boundary, and every test that breaks a connection checks the worker still serves."""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import socket
import subprocess
import time
from datetime import datetime, timezone
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


# -- keep-alive and pipelining ---------------------------------------------------------------


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


def test_keepalive_raw_socket_sequential_requests(shared):
    server = shared
    with Raw(server.port) as conn:
        for i in range(3):
            conn.send(get(f"/seq{i}"))
            resp = conn.response()
            assert resp.status == 200
            assert resp.json()["PATH_INFO"] == f"/seq{i}"
        assert conn.wait_closed(0.3) is None, "a kept-alive connection was closed between requests"
        conn.send(get("/last", "Connection: close\r\n"))
        last = conn.response()
        assert last.json()["PATH_INFO"] == "/last"
        assert last.header("connection") == "close"
        assert conn.wait_closed(3) is not None


def test_pipelined_requests_answered_in_order(shared):
    server = shared
    pipeline = (
        get("/first")
        + b"POST /second HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello"
        + b"POST /third HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        + get("/fourth", "Connection: close\r\n")
    )
    with Raw(server.port) as conn:
        conn.send(pipeline)
        got = [conn.response().json() for _ in range(4)]
        assert conn.wait_closed(3) is not None
        assert conn.buf == b""
    assert [g["PATH_INFO"] for g in got] == ["/first", "/second", "/third", "/fourth"]
    assert [g["body_len"] for g in got] == [0, 5, 3, 0]
    assert got[1]["body_sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert got[2]["body_sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert len({g["REMOTE_PORT"] for g in got}) == 1


def test_many_pipelined_requests_in_one_packet(shared):
    with Raw(shared.port) as conn:
        conn.send(b"".join(get(f"/p{i}?n={i}") for i in range(20)))
        got = [conn.response().json() for _ in range(20)]
        assert conn.wait_closed(0.2) is None
    assert [g["PATH_INFO"] for g in got] == [f"/p{i}" for i in range(20)]
    assert [g["QUERY_STRING"] for g in got] == [f"n={i}" for i in range(20)]


def test_pipeline_stops_at_a_malformed_request(shared):
    with Raw(shared.port) as conn:
        conn.send(get("/before") + b"GET /bad request HTTP/1.1\r\nHost: test\r\n\r\n" + get("/after"))
        assert conn.response().json()["PATH_INFO"] == "/before"
        assert_refused_and_closed(conn, 400)  # and /after is never answered
    assert_serves(shared)


# -- chunked bodies ----------------------------------------------------------------------------


def test_chunked_request_body_raw(shared):
    server = shared
    # The last chunk's data looks like chunk framing: only the declared sizes may delimit it.
    parts = [b"a" * 10, b"b" * 300, b"\r\n0\r\n\r\n" * 3]
    body = b"".join(parts)
    framed = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\nX-Trailer: t\r\n\r\n"
    with Raw(server.port) as conn:
        conn.send(b"POST /chunked HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n" + framed)
        data = conn.response().json()
    assert data["body_len"] == len(body)
    assert data["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert data["CONTENT_LENGTH"] == str(len(body))
    assert "HTTP_TRANSFER_ENCODING" not in data


def test_chunked_request_body_split_across_packets(shared):
    server = shared
    with Raw(server.port) as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
        assert conn.wait_closed(0.2) is None and conn.buf == b"", "answered before the body was complete"
        conn.send(b"lo\r\n6\r\n world\r\n")
        assert conn.wait_closed(0.2) is None and conn.buf == b""
        conn.send(b"0\r\n\r\n")
        data = conn.response().json()
    assert data["body_len"] == 11
    assert data["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
    assert data["CONTENT_LENGTH"] == "11"


def test_chunked_request_body_httpx_generator(shared):
    server = shared
    pieces = [os.urandom(n) for n in (1, 1000, 65536, 7, 100_000)]

    def body():
        yield from pieces

    r = httpx.post(server.url + "/gen", content=body(), timeout=10)
    assert r.status_code == 200
    data = r.json()
    whole = b"".join(pieces)
    assert data["CONTENT_LENGTH"] == str(len(whole))
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


# -- Expect: 100-continue ------------------------------------------------------------------------


def test_expect_100_continue(shared):
    server = shared
    with Raw(server.port) as conn:
        conn.send(b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
        interim = conn.response()
        assert (interim.version, interim.status) == ("HTTP/1.1", 100)
        assert interim.head == b"HTTP/1.1 100 Continue"
        conn.send(b"hello world")
        final = conn.response()
        assert final.status == 200
        data = final.json()
        assert data["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
        assert data["HTTP_EXPECT"] == "100-continue"


def test_expect_100_continue_refused_when_too_large(serve):
    server = serve(ENV_APP, "--max-body-size", "1000")
    with Raw(server.port) as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n")
        resp = assert_refused_and_closed(conn, 413)
    assert b"100 Continue" not in resp.head
    assert_serves(server)


# -- HEAD -------------------------------------------------------------------------------------


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


def test_head_drops_the_body_the_app_produced(serve):
    server = serve("apps.basic:hello")  # returns its body to HEAD too
    with Raw(server.port) as conn:
        conn.send(b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n" + get("/"))
        head = conn.response(head_request=True)
        assert head.header("content-length") == "13"
        following = conn.response()
        assert following.status == 200
        assert following.body == b"Hello, world!"
        assert conn.wait_closed(0.3) is None
        assert conn.buf == b""


def test_head_on_a_streaming_app(serve):
    server = serve("apps.basic:stream")
    with Raw(server.port) as conn:
        conn.send(b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n" + get("/"))
        head = conn.response(head_request=True)
        assert head.status == 200
        following = conn.response()
        assert following.body.startswith(b"chunk 0\n")
        assert conn.buf == b""


# -- Date and Server ---------------------------------------------------------------------------


def test_date_and_server_headers_by_default(serve):
    server = serve("apps.basic:hello")
    r = httpx.get(server.url, timeout=5)
    assert r.headers["server"] == "rsgi"
    sent = email.utils.parsedate_to_datetime(r.headers["date"])
    assert r.headers["date"].endswith(" GMT")
    assert abs((datetime.now(timezone.utc) - sent).total_seconds()) < 60


def test_no_date_and_no_server_header(serve):
    server = serve(ENV_APP, "--no-date-header", "--no-server-header", "--max-body-size", "10")
    with Raw(server.port) as conn:
        conn.send(get("/"))
        ok = conn.response()
        conn.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\n\r\n")  # rsgi's own 413
        too_large = conn.response()
    with Raw(server.port) as conn:
        conn.send(b"garbage\r\n\r\n")  # hyper's own 400
        bad = conn.response()
    assert (ok.status, too_large.status, bad.status) == (200, 413, 400)
    for resp in (ok, too_large, bad):
        assert resp.header("date") is None, resp.head
        assert resp.header("server") is None, resp.head


def test_server_header_set_by_the_app_wins(serve):
    server = serve("apps.extra:headers_echo")
    with Raw(server.port) as conn:
        conn.send(get("/?Server=custom%2F1.0"))
        resp = conn.response()
    assert resp.header("server") == "custom/1.0"  # header() also asserts it is not sent twice


# -- HTTP/1.0 ---------------------------------------------------------------------------------


def test_http10_request_closes_the_connection(shared):
    server = shared
    with Raw(server.port) as conn:
        conn.send(b"GET /old HTTP/1.0\r\n\r\n")
        resp = conn.response()
        assert resp.version == "HTTP/1.0"
        data = resp.json()
        assert data["SERVER_PROTOCOL"] == "HTTP/1.0"
        assert "HTTP_HOST" not in data
        assert conn.wait_closed(3) is not None


def test_http10_keepalive_keeps_the_connection(shared):
    server = shared
    with Raw(server.port) as conn:
        conn.send(b"GET /one HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = conn.response()
        assert first.header("connection").lower() == "keep-alive"
        assert conn.wait_closed(0.3) is None
        conn.send(b"GET /two HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        second = conn.response()
        assert second.json()["PATH_INFO"] == "/two"
        assert second.json()["REMOTE_PORT"] == first.json()["REMOTE_PORT"]


def test_http10_streaming_response_is_close_delimited(serve):
    server = serve("apps.basic:stream")
    with Raw(server.port) as conn:
        conn.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        resp = conn.response()
        # HTTP/1.0 has no chunked coding: the body must be raw and end with the connection.
        assert resp.header("transfer-encoding") is None
        assert resp.header("content-length") is None
        assert resp.body == b"".join(b"chunk %d\n" % i for i in range(5))
        assert conn.eof


# -- malformed requests -------------------------------------------------------------------------

POST = b"POST / HTTP/1.1\r\nHost: test\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"
MALFORMED = {
    "garbage request line": b"garbage\r\n\r\n",
    "bad header line": b"GET / HTTP/1.1\r\nHost: test\r\nthis is not a header\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost : test\r\n\r\n",
    "obsolete line folding": b"GET / HTTP/1.1\r\nHost: test\r\nX-A: a\r\n b\r\n\r\n",
    "NUL in a header value": b"GET / HTTP/1.1\r\nHost: test\r\nX-A: a\x00b\r\n\r\n",
    "unknown HTTP version": b"GET / HTTP/1.2\r\nHost: test\r\n\r\n",
    "space in the target": b"GET /a b HTTP/1.1\r\nHost: test\r\n\r\n",
    "raw non-ASCII in the target": b"GET /\xff HTTP/1.1\r\nHost: test\r\n\r\n",
    "non-numeric Content-Length": POST + b"Content-Length: abc\r\n\r\n",
    "negative Content-Length": POST + b"Content-Length: -1\r\n\r\n",
    "conflicting Content-Lengths": POST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "unknown transfer coding": POST + b"Transfer-Encoding: gzip\r\n\r\nabc",
    "chunked not last": POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "chunked in HTTP/1.0": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "invalid chunk size": CHUNKED + b"zz\r\nabc\r\n0\r\n\r\n",
    "chunk size overflow": CHUNKED + b"fffffffffffffffff1\r\nabc\r\n0\r\n\r\n",
    "chunk data too long": CHUNKED + b"3\r\nabcXX\r\n0\r\n\r\n",
    "bare LF in chunk framing": CHUNKED + b"3\nabc\n0\n\n",
}


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_gets_400_and_close(shared, request_bytes):
    server = shared
    with Raw(server.port) as conn:
        conn.send(request_bytes)
        assert_refused_and_closed(conn, 400)
    assert_serves(server)


def test_http2_preface_gets_the_http2_server(shared):
    """h2c is on by default (--http auto): the preface is answered with HTTP/2 SETTINGS, never
    with an HTTP/1 parse of it (tests/test_http2.py covers HTTP/2 itself)."""
    with Raw(shared.port) as conn:
        conn.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        frame_head = conn._exact(9)  # the socket has a 5 s timeout
        assert frame_head[3:4] == b"\x04", frame_head  # frame type 4: SETTINGS
        assert not frame_head.startswith(b"HTTP/1.1")
    assert_serves(shared)


@pytest.mark.parametrize(
    "headers",
    [b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", b"Transfer-Encoding: chunked\r\nContent-Length: 30\r\n"],
    ids=["CL-then-TE", "TE-then-CL"],
)
def test_content_length_with_chunked_is_refused(shared, headers):
    """RFC 9112 6.1 lets a server either read such a request as chunked and close, or refuse it;
    rsgi refuses it (as nginx and gunicorn >= 22 do): a proxy in front may have framed the body
    by its length, so no reading of it is safe. Nothing behind the disputed body is served."""
    server = shared
    smuggled = get("/smuggled")
    with Raw(server.port) as conn:
        conn.send(b"POST /front HTTP/1.1\r\nHost: test\r\n" + headers + b"\r\n3\r\nabc\r\n0\r\n\r\n" + smuggled)
        assert_refused_and_closed(conn, 400)
        assert b"smuggled" not in conn.buf
    assert_serves(server)


@pytest.mark.parametrize(
    "head",
    [
        b"GET /lf HTTP/1.1\r\nHost: test\nX-Hidden: 1\r\n\r\n",
        b"GET /lf HTTP/1.1\nHost: test\r\n\r\n",
        b"GET /lf HTTP/1.1\r\nHost: test\r\n\n",
    ],
    ids=["in-a-field", "after-the-request-line", "ending-the-head"],
)
def test_bare_lf_in_a_head_is_refused(shared, head):
    """RFC 9112 2.2 allows a server to refuse a bare LF as a line terminator; a proxy in front
    that splits only on CRLF would read different fields than the app."""
    with Raw(shared.port) as conn:
        conn.send(head)
        assert_refused_and_closed(conn, 400)
    assert_serves(shared)


def test_repeated_content_type_is_refused(shared):
    """The app would see the first Content-Type, a proxy or WAF in front may have used the last."""
    with Raw(shared.port) as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Type: a/b\r\nContent-Type: c/d\r\nContent-Length: 0\r\n\r\n")
        assert_refused_and_closed(conn, 400)
    assert_serves(shared)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /half HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /half HTTP/1.0\r\n\r\n",
        b"POST /half HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /half HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /half HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ],
    ids=["1.1", "1.0", "1.1-length", "1.0-length", "1.1-chunked"],
)
def test_half_closed_request_is_answered(shared, request_bytes):
    """A client that sends its request and shuts down its write side (SHUT_WR, `nc -N`, some
    health checkers) still gets the response (RFC 9112 9.6)."""
    with socket.create_connection(("127.0.0.1", shared.port), timeout=5) as s:
        s.sendall(request_bytes)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"200", data
    environ = json.loads(body)
    assert environ["PATH_INFO"] == "/half"
    want = b"abc" if request_bytes.startswith(b"POST") else b""
    assert environ["body_sha256"] == hashlib.sha256(want).hexdigest()


def test_connect_is_refused(shared):
    server = shared
    with Raw(server.port) as conn:
        conn.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        assert_refused_and_closed(conn, 405)
    assert_serves(server)


def test_http11_without_host_is_rejected(shared):
    server = shared
    with Raw(server.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\n\r\n")
        assert_refused_and_closed(conn, 400)


def test_two_host_headers_are_rejected(shared):
    server = shared
    with Raw(server.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n")
        assert_refused_and_closed(conn, 400)


# -- limits ---------------------------------------------------------------------------------


def test_limit_request_line_414(serve):
    server = serve(ENV_APP, "--limit-request-line", "100")
    target_ok = "/" + "a" * 90 + "?q=" + "b" * 6  # exactly 100 bytes
    assert len(target_ok) == 100
    with Raw(server.port) as conn:
        conn.send(get(target_ok))
        assert conn.response().json()["QUERY_STRING"] == "q=" + "b" * 6
        conn.send(get(target_ok + "b"))
        resp = assert_refused_and_closed(conn, 414)
    assert resp.header("server") == "rsgi"
    assert_serves(server)


def test_very_long_request_target_is_414(shared):
    server = shared
    with Raw(server.port) as conn:
        conn.send(get("/" + "a" * 70_000))
        assert_refused_and_closed(conn, 414)


def test_limit_request_fields_431(serve):
    server = serve(ENV_APP, "--limit-request-fields", "10")
    nine = "".join(f"X-H{i}: v\r\n" for i in range(9))  # + Host = 10 fields
    with Raw(server.port) as conn:
        conn.send(get("/", nine))
        assert conn.response().json()["HTTP_X_H8"] == "v"
        conn.send(get("/", nine + "X-H9: v\r\n"))
        assert_refused_and_closed(conn, 431)
    assert_serves(server)


def test_limit_request_field_size_431(serve):
    server = serve(ENV_APP, "--limit-request-field-size", "100")
    name = "X-Big"
    fits = "v" * (100 - len(name))  # name + value = 100 bytes
    with Raw(server.port) as conn:
        conn.send(get("/", f"{name}: {fits}\r\n"))
        assert conn.response().json()["HTTP_X_BIG"] == fits
        conn.send(get("/", f"{name}: {fits}v\r\n"))
        assert_refused_and_closed(conn, 431)
    assert_serves(server)


def test_max_body_size_by_content_length_before_reading(serve):
    server = serve(ENV_APP, "--max-body-size", "1000")
    with Raw(server.port) as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000)
        assert conn.response().json()["body_len"] == 1000
        # Only the head is sent: the answer must come without waiting for the body.
        conn.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1001\r\n\r\n")
        assert_refused_and_closed(conn, 413)
    assert_serves(server)


def test_max_body_size_for_a_growing_chunked_body(serve):
    server = serve(ENV_APP, "--max-body-size", "1000")
    with Raw(server.port) as conn:
        head = b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        conn.send(head + b"3e8\r\n" + b"x" * 1000 + b"\r\n0\r\n\r\n")  # exactly the limit
        assert conn.response().json()["body_len"] == 1000
        conn.send(head + b"190\r\n" + b"x" * 400 + b"\r\n")
        conn.send(b"190\r\n" + b"x" * 400 + b"\r\n")
        assert conn.wait_closed(0.2) is None and conn.buf == b""  # 800 bytes: still reading
        conn.send(b"190\r\n" + b"x" * 400 + b"\r\n")  # 1200 bytes: over, before the body ends
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


def test_large_chunked_upload_spooled_to_disk(serve):
    server = serve(ENV_APP, "--body-spool-threshold", "4096")
    pieces = [os.urandom(300_000) for _ in range(10)]
    r = httpx.post(server.url + "/upload", content=iter(pieces), timeout=30)
    whole = b"".join(pieces)
    assert r.json()["body_len"] == len(whole)
    assert r.json()["CONTENT_LENGTH"] == str(len(whole))
    assert r.json()["body_sha256"] == hashlib.sha256(whole).hexdigest()


# -- timeouts --------------------------------------------------------------------------------


def test_keepalive_idle_timeout_closes_the_connection(serve):
    server = serve(ENV_APP, "--keepalive", "1")
    with Raw(server.port, timeout=10) as conn:
        conn.send(get("/"))
        assert conn.response().status == 200
        closed_after = conn.wait_closed(5)
    assert closed_after is not None, "an idle keep-alive connection was not closed within 5 s (timeout 1 s)"
    assert closed_after > 0.5, f"closed after {closed_after:.2f}s, before the 1 s idle timeout"
    assert conn.buf == b""
    assert_serves(server)


def test_connection_that_never_sends_a_request_is_closed(serve):
    server = serve(ENV_APP, "--keepalive", "1")
    with Raw(server.port, timeout=10) as conn:
        closed_after = conn.wait_closed(5)
    assert closed_after is not None, "a silent connection was not closed within 5 s (timeout 1 s)"
    assert closed_after > 0.5
    assert_serves(server)


def test_slow_client_that_never_finishes_its_head_is_disconnected(serve):
    server = serve(ENV_APP, "--keepalive", "1")
    with Raw(server.port, timeout=10) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: test\r\n")  # no blank line: the head never ends
        closed_after = conn.wait_closed(5)
        assert closed_after is not None, "a stalled request head was not cut off within 5 s (timeout 1 s)"
        assert b"200" not in conn.buf
    assert_serves(server)


def test_trickling_head_is_cut_off_despite_progress(serve):
    """A slowloris client keeps sending a header line every 0.3 s: the timeout covers the whole
    head, not each read, so the connection still ends about a second after it began."""
    server = serve(ENV_APP, "--keepalive", "1")
    start = time.monotonic()
    with Raw(server.port, timeout=10) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: test\r\n")
        closed = False
        for i in range(20):  # would go on for 6 s
            if conn.wait_closed(0.3) is not None:
                closed = True
                break
            try:
                conn.send(b"X-Trickle-%d: x\r\n" % i)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
    elapsed = time.monotonic() - start
    assert closed, "a trickling request head was never cut off"
    assert elapsed < 5, f"cut off only after {elapsed:.1f}s"
    assert_serves(server)


def test_slow_app_is_not_cut_off_by_the_keepalive_timeout(serve):
    server = serve("apps.basic:slow", "--keepalive", "0.5")
    with Raw(server.port, timeout=10) as conn:
        conn.send(get("/?1.5"))
        resp = conn.response()
        assert resp.body == b"slept 1.5"
        conn.send(get("/?0"))  # and the connection is still usable
        assert conn.response().body == b"slept 0.0"


def test_slow_upload_is_not_cut_off_by_the_keepalive_timeout(serve):
    """The timeout covers the request head only: a body trickling in for longer still arrives."""
    server = serve(ENV_APP, "--keepalive", "0.5")
    with Raw(server.port, timeout=10) as conn:
        conn.send(b"POST /slow HTTP/1.1\r\nHost: test\r\nContent-Length: 40\r\n\r\n")
        for _ in range(4):
            assert conn.wait_closed(0.4) is None, "closed during the upload"
            conn.send(b"x" * 10)
        data = conn.response().json()
    assert data["body_len"] == 40


def test_stalled_request_body_does_not_hold_the_app_thread(shared):
    """Bodies are read by tokio before the app is called: a client stuck halfway through its body
    must not keep the (single) Python thread from serving others."""
    with Raw(shared.port) as stalled:
        stalled.send(b"POST /stalled HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\nonly part")
        start = time.monotonic()
        assert_serves(shared)
        assert time.monotonic() - start < 3
        stalled.send(b"x" * (1000 - len(b"only part")))
        data = stalled.response().json()
    assert (data["PATH_INFO"], data["body_len"]) == ("/stalled", 1000)


def test_stalled_request_body_is_cut_off_with_408(serve):
    """A body that stops arriving for --body-timeout gets 408 and the connection closed, so a
    slow-body client can't hold a connection slot forever."""
    server = serve(ENV_APP, "--body-timeout", "1")
    start = time.monotonic()
    with Raw(server.port, timeout=10) as conn:
        conn.send(b"POST /stalled HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\nonly part")
        resp = conn.response()
        assert resp.status == 408
        assert conn.wait_closed(5) is not None
    assert time.monotonic() - start < 5
    assert_serves(server)


def test_absolute_form_target_sets_the_host(shared):
    """RFC 9112 3.2.2: with an absolute-form target, its authority is the host, not Host:."""
    with Raw(shared.port) as conn:
        conn.send(b"GET http://target.example/p?q=1 HTTP/1.1\r\nHost: header.example\r\n\r\n")
        data = conn.response().json()
    assert (data["HTTP_HOST"], data["PATH_INFO"], data["QUERY_STRING"]) == ("target.example", "/p", "q=1")


# -- other clients and transports ----------------------------------------------------------------


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
