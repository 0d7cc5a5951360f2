"""The PEP 3333 environ rsgi builds, seen by real apps (apps.basic:environ_json echoes it back)."""

from __future__ import annotations

import hashlib
import json
import socket

import httpx
import pytest
from conftest import running

ENV_APP = "apps.basic:environ_json"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory):
    """One environ_json server with default settings, shared by the tests that need no flags."""
    with running(ENV_APP, log_dir=tmp_path_factory.mktemp("rsgi-environ")) as server:
        yield server


def raw_environ(port: int, request: bytes) -> tuple[dict, int]:
    """Sends one raw request (the connection is closed after it); returns the app's environ and the
    client's own port."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        client_port = s.getsockname()[1]
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") or head.startswith(b"HTTP/1.0 200 "), head
    return json.loads(body), client_port


def raw_get(port: int, target: str | bytes, headers: bytes = b"") -> dict:
    if isinstance(target, str):
        target = target.encode()
    request = b"GET " + target + b" HTTP/1.1\r\nHost: test\r\n" + headers + b"Connection: close\r\n\r\n"
    return raw_environ(port, request)[0]


# -- request line -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE"])
def test_request_method(shared, method):
    r = httpx.request(method, shared.url + "/m", timeout=5)
    assert r.status_code == 200
    assert r.json()["REQUEST_METHOD"] == method


PATHS = [
    ("/plain/path", "/plain/path"),
    ("/a%20b", "/a b"),
    ("/a%2Fb", "/a/b"),
    ("/%25", "/%"),
    ("/caf%C3%A9", "/café".encode().decode("latin-1")),  # UTF-8 bytes as latin-1 code points
    ("/%FF%FE", "/\xff\xfe"),  # not UTF-8: still one code point per byte
    ("/a;b=c/d", "/a;b=c/d"),
    ("/", "/"),
]


@pytest.mark.parametrize(("target", "path_info"), PATHS, ids=[p for p, _ in PATHS])
def test_path_info_is_percent_decoded_latin1(shared, target, path_info):
    env = raw_get(shared.port, target + "?x=%FF")
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == path_info
    assert env["RAW_URI"] == target + "?x=%FF"
    assert env["QUERY_STRING"] == "x=%FF"


ROOT_PATH_CASES = [
    ("/mnt/x/y", "/x/y"),
    ("/mnt/", "/"),
    ("/mnt", ""),
    ("/mntx/y", "/mntx/y"),  # only a whole path segment is the mount point
    ("/other", "/other"),  # already stripped by a proxy: kept as is
    ("/m%6Et/z", "/z"),  # matched after percent-decoding, like PATH_INFO itself
]


def test_root_path_is_script_name_and_stripped_from_path_info(serve):
    server = serve(ENV_APP, "--root-path", "/mnt/")  # a trailing slash is not part of the mount point
    seen = [(target, raw_get(server.port, target)) for target, _ in ROOT_PATH_CASES]
    assert [env["SCRIPT_NAME"] for _, env in seen] == ["/mnt"] * len(ROOT_PATH_CASES)
    assert [(target, env["PATH_INFO"]) for target, env in seen] == ROOT_PATH_CASES


def test_non_ascii_root_path_is_a_latin1_native_string(serve):
    # Found by fuzz/ (wsgi_environ): SCRIPT_NAME was the root path's text, so a character above
    # U+00FF broke PEP 3333 (Django's get_script_name() raised UnicodeEncodeError) and "é" gave
    # the wrong bytes. Like PATH_INFO, it must carry the path's UTF-8 bytes as latin-1.
    server = serve(ENV_APP, "--root-path", "/č/é")
    env = raw_get(server.port, "/%C4%8D/%C3%A9/x")
    assert env["SCRIPT_NAME"] == "/č/é".encode().decode("latin-1")
    assert env["PATH_INFO"] == "/x"
    assert (env["SCRIPT_NAME"] + env["PATH_INFO"]).encode("latin-1").decode() == "/č/é/x"


@pytest.mark.parametrize(
    "query",
    ["a=1&b=%20x&c=%FF&d=caf%C3%A9&e=a+b&&f", "x=%2F%3F%23", "", "just-text", "a=1?b=2"],
)
def test_query_string_is_raw(shared, query):
    env = raw_get(shared.port, "/q?" + query)
    assert env["QUERY_STRING"] == query
    assert env["PATH_INFO"] == "/q"


def test_query_string_present_and_empty_without_query(shared):
    env = raw_get(shared.port, "/noquery")
    assert env["QUERY_STRING"] == ""


# -- body-related keys -----------------------------------------------------------------------


def test_content_type_and_length(shared):
    r = httpx.post(
        shared.url + "/ct",
        content=b'{"a": 1}',
        headers={"Content-Type": "application/json; charset=utf-8"},
        timeout=5,
    )
    env = r.json()
    assert env["CONTENT_TYPE"] == "application/json; charset=utf-8"
    assert env["CONTENT_LENGTH"] == "8"
    assert env["body_len"] == 8
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


def test_no_body_means_no_content_length_or_type(shared):
    env = raw_get(shared.port, "/")
    assert "CONTENT_LENGTH" not in env
    assert "CONTENT_TYPE" not in env


def test_explicit_zero_content_length(shared):
    request = b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    env, _ = raw_environ(shared.port, request)
    assert env["CONTENT_LENGTH"] == "0"
    assert env["body_len"] == 0


# -- server and client addresses ---------------------------------------------------------------


def test_server_name_port_protocol(shared):
    env = raw_get(shared.port, "/")
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(shared.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_SOFTWARE"].startswith("rsgi/")
    env10, _ = raw_environ(shared.port, b"GET / HTTP/1.0\r\n\r\n")
    assert env10["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_remote_addr_and_port_are_the_clients(shared):
    env, client_port = raw_environ(shared.port, b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(client_port)


# -- HTTP_* headers ----------------------------------------------------------------------------


def test_headers_become_http_keys(shared):
    env = raw_get(shared.port, "/", b"X-Custom-Thing: v1\r\nAccept: text/html\r\nUser-Agent: raw/1\r\nX-Empty:\r\n")
    assert env["HTTP_X_CUSTOM_THING"] == "v1"
    assert env["HTTP_X_EMPTY"] == ""
    assert env["HTTP_ACCEPT"] == "text/html"
    assert env["HTTP_USER_AGENT"] == "raw/1"
    assert env["HTTP_HOST"] == "test"
    assert env["HTTP_CONNECTION"] == "close"


def test_repeated_headers_are_joined(shared):
    env = raw_get(
        shared.port,
        "/",
        b"X-Multi: a\r\nAccept: text/html\r\nx-multi: b\r\nX-MULTI: c, d\r\nCookie: a=1\r\nCookie: b=2\r\n",
    )
    assert env["HTTP_X_MULTI"] == "a, b, c, d"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_ACCEPT"] == "text/html"


def test_header_values_are_latin1(shared):
    env = raw_get(shared.port, "/", b"X-Latin: caf\xe9 \xff\r\n")
    assert env["HTTP_X_LATIN"] == "caf\xe9 \xff"


def test_headers_with_underscores_are_dropped(shared):
    env = raw_get(shared.port, "/", b"X_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 10.0.0.1\r\nX_Only: spoof\r\n")
    assert env["HTTP_X_FORWARDED_FOR"] == "10.0.0.1"
    assert "HTTP_X_ONLY" not in env
    assert not [k for k, v in env.items() if v in ("6.6.6.6", "spoof")]


def test_underscore_header_alone_cannot_fake_a_proxy_header(shared):
    env = raw_get(shared.port, "/", b"X_Forwarded_Proto: https\r\n")
    assert "HTTP_X_FORWARDED_PROTO" not in env


# -- wsgi.* keys -----------------------------------------------------------------------------


def test_wsgi_constants(shared):
    env = raw_get(shared.port, "/")
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.run_once"] is False
    assert env["wsgi.multithread"] is False
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.input_terminated"] is True


def test_multithread_with_threads(serve):
    server = serve(ENV_APP, "--threads", "4")
    env = httpx.get(server.url, timeout=5).json()
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is False


def test_multiprocess_with_workers(serve):
    server = serve(ENV_APP, "--workers", "2")
    env = httpx.get(server.url, timeout=5).json()
    assert env["wsgi.multiprocess"] is True
    assert env["wsgi.multithread"] is False


BODY = b"first line\nsecond line\r\nthird \xff line\nno newline at the end"


@pytest.mark.parametrize("spool", [False, True], ids=["in-memory", "spooled"])
def test_wsgi_input_read_readline_seek(serve, spool):
    flags = ("--body-spool-threshold", "16") if spool else ()
    server = serve("apps.extra:input_ops", *flags)
    r = httpx.post(server.url, content=BODY, timeout=5)
    assert r.status_code == 200
    out = r.json()
    assert out["seekable"] is True
    assert out["content_length"] == str(len(BODY))
    assert out["first_line"] == "first line\n"
    assert out["five"] == "secon"
    assert out["tell_after_five"] == len("first line\nsecon")
    assert out["rest_len"] == len(BODY) - len("first line\nsecon")
    assert out["at_end"] == ""
    assert out["reread_len"] == len(BODY)
    assert out["reread_sha256"] == hashlib.sha256(BODY).hexdigest()
    assert out["line_count"] == 4
    assert out["lines_sha256"] == hashlib.sha256(BODY).hexdigest()


def test_wsgi_input_of_a_chunked_body(serve):
    server = serve("apps.extra:input_ops")
    r = httpx.post(server.url, content=iter([BODY[:7], BODY[7:30], BODY[30:]]), timeout=5)
    out = r.json()
    assert out["content_length"] == str(len(BODY))
    assert out["first_line"] == "first line\n"
    assert out["reread_sha256"] == hashlib.sha256(BODY).hexdigest()


def test_wsgi_errors_goes_to_the_log(serve):
    server = serve("apps.basic:errors_stream")
    r = httpx.get(server.url + "/e", timeout=5)
    assert r.status_code == 200
    assert r.text == "ok"
    log = server.wait_log("message to wsgi.errors")
    line = next(line for line in log.splitlines() if "message to wsgi.errors" in line)
    assert "rsgi.app" in line


def test_validator_wrapped_app_reports_no_violation(serve):
    """wsgiref.validate checks environ types, wsgi.input/errors, start_response and close() use.
    (apps.extra:validated_sized rather than apps.basic:validated: environ_json calls
    wsgi.input.read() without a size, which the validator itself forbids.)"""
    server = serve("apps.extra:validated_sized", "--factory")
    with httpx.Client(base_url=server.url, timeout=5) as client:
        get = client.get("/v?q=1", headers={"X-Thing": "1"})
        post = client.post("/v", content=b"payload", headers={"Content-Type": "text/plain"})
        head = client.head("/v")
    assert (get.status_code, post.status_code, head.status_code) == (200, 200, 200)
    assert post.json()["body_len"] == len(b"payload")
    assert get.json()["QUERY_STRING"] == "q=1"
    # One more request after the others completed, so the previous iterables are surely closed.
    assert httpx.get(server.url + "/last", timeout=5).status_code == 200
    log = server.log()
    for bad in ("[ERROR]", "Traceback", "WSGIWarning", "AssertionError", "without being closed"):
        assert bad not in log, log
