"""How rsgi turns what a WSGI app returns (or raises) into a response: bodies, streaming, close(),
errors, start_response rules, wsgi.file_wrapper and write(). Real server, real clients."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

import httpx
import pytest
from conftest import Server, raw_request


def wait_closes(marker: Path, count: int, timeout: float = 10.0) -> None:
    """Waits until the app's close() has run `count` times in all (one "closed" line each)."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        seen = marker.read_text().count("closed\n") if marker.exists() else 0
        assert seen <= count, f"close() ran {seen} times, expected {count}"
        if seen == count:
            return
        time.sleep(0.02)
    raise AssertionError(f"close() ran {seen} times within {timeout}s, expected {count}")


def wait_serving(server: Server) -> None:
    """Readiness for apps whose every response is aborted or endless: the worker's start-up line."""
    server.wait_log(" serving apps.", timeout=30)


def assert_still_serving(server: Server, path: str = "/") -> httpx.Response:
    r = httpx.get(server.url + path, timeout=5)
    assert "starting a new one" not in server.log(), "a worker died"
    return r


def raw_get(port: int, target: str = "/") -> tuple[bytes, bytes]:
    data = raw_request(port, f"GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


# -- bodies --------------------------------------------------------------------------------


def test_list_body(serve):
    server = serve("apps.basic:hello")
    head, body = raw_get(server.port)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\ncontent-length: 13" in head
    assert b"transfer-encoding" not in head
    assert body == b"Hello, world!"


def test_tuple_body(serve):
    server = serve("apps.extra:tuple_body")
    r = httpx.get(server.url, timeout=5)
    assert r.text == "tuple"
    assert r.headers["content-length"] == "5"


def test_generator_chunks_arrive_as_they_are_produced(serve):
    """apps.basic:stream yields 5 chunks and sleeps 0.3 s after each: about 1.5 s in all. The first
    chunk must reach the client long before the app has finished."""
    server = serve("apps.basic:stream")
    arrivals: dict[int, float] = {}
    received = b""
    with httpx.Client(timeout=10) as client:
        start = time.monotonic()
        with client.stream("GET", server.url + "/?0.3") as r:
            assert r.status_code == 200
            assert r.headers["transfer-encoding"] == "chunked"
            for data in r.iter_raw():
                received += data
                now = time.monotonic() - start
                for i in range(5):
                    if i not in arrivals and b"chunk %d\n" % i in received:
                        arrivals[i] = now
        end = time.monotonic() - start
    assert received == b"".join(b"chunk %d\n" % i for i in range(5))
    assert arrivals[0] < 1.0, f"first chunk only after {arrivals[0]:.2f}s: the response was buffered"
    assert arrivals[4] > 1.0, f"last chunk after {arrivals[4]:.2f}s: the app cannot have slept 4 x 0.3 s"
    assert arrivals[4] - arrivals[0] > 0.8
    assert end >= arrivals[4]


def test_empty_generator_204_has_no_body_or_length(serve):
    server = serve("apps.extra:empty_generator")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\nGET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    first, second, rest = data.split(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert second.startswith(b"HTTP/1.1 204 No Content\r\n")  # nothing stray between the two
    assert rest == b""
    for head in (first, second):
        assert b"content-length" not in head
        assert b"transfer-encoding" not in head


def test_start_response_called_inside_the_generator(serve):
    server = serve("apps.extra:lazy_start")
    r = httpx.get(server.url, timeout=5)
    assert r.status_code == 201
    assert r.headers["x-lazy"] == "yes"
    assert r.text == "lazy start"


def pipelined_two(port: int, first: str) -> bytes:
    """`first`, then a normal request on the same connection; everything until the server closes."""
    return raw_request(
        port,
        f"GET {first} HTTP/1.1\r\nHost: test\r\n\r\n".encode()
        + b"GET /?40 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )


FIVE_CHUNKS = b"".join(b"chunk %d\n" % i for i in range(5))


def test_generator_with_declared_length_is_not_chunked(serve):
    server = serve("apps.extra:gen_with_length")
    data = pipelined_two(server.port, "/?40")
    first, second = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    for response in (first, second):
        head, _, body = response.partition(b"\r\n\r\n")
        assert b"content-length: 40" in head
        assert b"transfer-encoding" not in head
        assert body == FIVE_CHUNKS


def test_generator_longer_than_its_declared_length_cannot_desync(serve):
    """The app declares 20 bytes and yields 40: the surplus must not be read as the next response."""
    server = serve("apps.extra:gen_with_length")
    data = pipelined_two(server.port, "/?20")
    assert data.count(b"HTTP/1.1 200 OK\r\n") == 2
    first, second = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert first.partition(b"\r\n\r\n")[2] == FIVE_CHUNKS[:20]
    assert second.partition(b"\r\n\r\n")[2] == FIVE_CHUNKS
    assert b"content-length: 40" in second


def test_generator_shorter_than_its_declared_length_is_never_complete(serve):
    server = serve("apps.extra:gen_with_length")
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(server.url + "/?50", timeout=5)
    assert assert_still_serving(server, "/?40").content == FIVE_CHUNKS


def test_declared_content_length_is_corrected_to_the_body(serve):
    server = serve("apps.extra:headers_echo")
    r = httpx.get(server.url + "/?Content-Length=100", timeout=5)
    assert r.text == "ok"
    assert r.headers["content-length"] == "2"
    server.wait_log("differs from its body")


def test_transfer_encoding_from_the_app_is_ignored(serve):
    server = serve("apps.extra:headers_echo")
    head, body = raw_get(server.port, "/?Transfer-Encoding=chunked")
    assert head.lower().count(b"transfer-encoding") == 0
    assert b"\r\ncontent-length: 2" in head
    assert body == b"ok"


def test_repeated_response_headers_stay_separate(serve):
    server = serve("apps.extra:headers_echo")
    head, body = raw_get(server.port, "/?Set-Cookie=a%3D1%3B+Path%3D%2F&Set-Cookie=b%3D2&X-Two=1&X-Two=2")
    lines = head.decode("latin-1").split("\r\n")
    assert [line for line in lines if line.lower().startswith("set-cookie:")] == [
        "set-cookie: a=1; Path=/",
        "set-cookie: b=2",
    ]
    assert [line for line in lines if line.lower().startswith("x-two:")] == ["x-two: 1", "x-two: 2"]
    assert body == b"ok"


def test_legacy_write_callable(serve):
    server = serve("apps.basic:write_legacy")
    r = httpx.get(server.url, timeout=5)
    assert r.status_code == 200
    assert r.text == "written returned"
    assert r.headers["content-length"] == str(len("written returned"))


# -- close() ------------------------------------------------------------------------------


def test_close_called_after_a_complete_response(serve, tmp_path):
    marker = tmp_path / "closed.txt"
    server = serve("apps.basic:closing", env={"RSGI_TEST_MARKER": str(marker)})
    r = httpx.get(server.url + "/c", timeout=5)
    assert r.text == "part 0\npart 1\npart 2\n"
    wait_closes(marker, 2)  # the readiness request's, and this one's


def test_close_called_when_the_client_disconnects_mid_stream(serve, tmp_path):
    marker = tmp_path / "closed.txt"
    server = serve("apps.extra:endless_closing", env={"RSGI_TEST_MARKER": str(marker)}, ready=False)
    wait_serving(server)  # a readiness request would stream the endless body
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        got = b""
        while len(got) < 200_000 and (data := s.recv(65536)):
            got += data
        assert got.startswith(b"HTTP/1.1 200 OK\r\n")
    # The app's iterable is ~1.3 GB long: only noticing the disconnect can close it soon.
    wait_closes(marker, 1)
    with httpx.Client(timeout=5) as client, client.stream("GET", server.url) as r:
        assert r.status_code == 200
        assert len(next(r.iter_raw())) > 0
    wait_closes(marker, 2)
    assert "starting a new one" not in server.log()


def test_iterable_raising_mid_stream_aborts_the_connection(serve, tmp_path):
    marker = tmp_path / "closed.txt"
    server = serve("apps.basic:closing", env={"RSGI_TEST_MARKER": str(marker)})
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.Client(timeout=5) as client,
        client.stream("GET", server.url + "/?fail=1") as r,
    ):
        assert r.status_code == 200  # the headers were already sent
        for data in r.iter_bytes():
            received += data
    # Whatever part of the body got out before the abort is a true prefix; it can't look complete.
    assert b"part 0\npart 1\n".startswith(received)
    wait_closes(marker, 2)  # the readiness request's, and this one's
    log = server.wait_log("failing mid-stream")
    assert "Traceback" in log
    assert "Error handling request GET /?fail=1" in log
    assert assert_still_serving(server).status_code == 200


def test_iterable_raising_mid_stream_on_the_wire(serve, tmp_path):
    """No terminating zero-size chunk may follow the cut-off body: the connection just ends."""
    marker = tmp_path / "closed.txt"
    server = serve("apps.basic:closing", env={"RSGI_TEST_MARKER": str(marker)})
    head, body = raw_get(server.port, "/?fail=2")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in head
    # Chunks already produced may or may not have been flushed before the abort; the final
    # zero-size chunk must never be sent.
    assert b"7\r\npart 0\n\r\n7\r\npart 1\n\r\n".startswith(body), body
    wait_closes(marker, 2)  # the readiness request's, and this one's


def test_iterable_raising_before_the_first_chunk_is_a_500(serve, tmp_path):
    marker = tmp_path / "closed.txt"
    server = serve("apps.basic:closing", env={"RSGI_TEST_MARKER": str(marker)})
    r = httpx.get(server.url + "/?fail=0", timeout=5)
    assert r.status_code == 500
    assert "part" not in r.text
    wait_closes(marker, 2)  # the readiness request's, and this one's
    server.wait_log("failing mid-stream")


# -- app errors ------------------------------------------------------------------------------


def test_app_raising_is_a_500_with_a_logged_traceback(serve):
    server = serve("apps.basic:raises", ready_path="/ready")
    r = httpx.get(server.url + "/boom", timeout=5)
    assert r.status_code == 500
    assert "boom" not in r.text  # no details leak to the client
    assert r.headers["content-type"].startswith("text/plain")
    log = server.wait_log("RuntimeError: boom before start_response")
    assert "Error handling request GET /boom" in log
    assert "Traceback (most recent call last)" in log
    # The worker keeps serving (the same app fails again, cleanly).
    assert assert_still_serving(server, "/again").status_code == 500
    server.wait_log("Error handling request GET /again")


@pytest.mark.parametrize(
    ("app", "logged"),
    [
        ("apps.basic:not_iterable", "not iterable"),
        ("apps.basic:no_start_response", "did not call start_response"),
        ("apps.extra:yields_str", "not bytes"),
        ("apps.extra:double_start", "start_response called a second time"),
    ],
)
def test_app_protocol_errors_are_500(serve, app, logged):
    server = serve(app, ready_path="/ready")
    r = httpx.get(server.url + "/x", timeout=5)
    assert r.status_code == 500
    assert r.headers["content-length"] == str(len(r.content))
    log = server.wait_log(logged)
    assert "Error handling request GET /x" in log
    assert "never sent" not in r.text and "forgot" not in r.text
    assert assert_still_serving(server).status_code == 500


def test_header_with_crlf_is_a_500_never_injected(serve):
    server = serve("apps.basic:bad_header", ready_path="/ready")
    data = raw_request(server.port, b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ")
    assert b"Injected" not in data
    assert b"X-Evil" not in data and b"x-evil" not in data
    server.wait_log("invalid value for header")


def test_exc_info_replaces_headers_not_yet_sent(serve):
    server = serve("apps.basic:exc_info_app")
    r = httpx.get(server.url, timeout=5)
    assert r.status_code == 500
    assert r.text == "replaced"
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["content-length"] == "8"


def test_exc_info_after_headers_were_sent_aborts(serve):
    server = serve("apps.extra:exc_info_after_headers_sent", ready=False)
    wait_serving(server)  # a readiness request would be aborted too
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.Client(timeout=5) as client,
        client.stream("GET", server.url + "/late") as r,
    ):
        assert r.status_code == 200
        for data in r.iter_bytes():
            received += data
    # hyper drops a data frame still in its write buffer when the body's next frame is an error
    # (here they follow each other at once), so the first part may or may not arrive.
    assert b"first part\n".startswith(received)
    log = server.wait_log("ValueError: too late to replace the headers")
    assert "Error handling request GET /late" in log


# -- wsgi.file_wrapper ---------------------------------------------------------------------


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "random.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    return path


def test_file_wrapper_sends_the_whole_file(serve, big_file):
    server = serve("apps.basic:file_wrapper", env={"RSGI_TEST_FILE": str(big_file)})
    content = big_file.read_bytes()
    r = httpx.get(server.url, timeout=30)
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(content))
    assert r.headers["content-type"] == "application/octet-stream"
    assert len(r.content) == len(content)
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(content).hexdigest()


def test_file_wrapper_from_the_current_position(serve, big_file):
    server = serve("apps.basic:file_wrapper", env={"RSGI_TEST_FILE": str(big_file)})
    content = big_file.read_bytes()
    with httpx.Client(timeout=30) as client:
        rest = client.get(server.url + "/?skip=1000")
        nearly_all = client.get(server.url + f"/?skip={len(content) - 5}")
        whole = client.get(server.url + "/")
    assert rest.headers["content-length"] == str(len(content) - 1000)
    assert rest.content == content[1000:]
    assert nearly_all.content == content[-5:]
    assert whole.content == content  # the same connection is still correctly framed


def test_file_wrapper_without_a_file_descriptor_is_iterated(serve):
    server = serve("apps.extra:file_wrapper_bytesio")
    r = httpx.get(server.url, timeout=10)
    assert r.status_code == 200
    assert r.content == b"".join(b"line %05d\n" % i for i in range(5000))
