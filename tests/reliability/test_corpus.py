"""Replays the request corpus (tests/reliability/corpus/*.http, expectations in expected.json) against one
real WSGI server (apps.basic:environ_json) and one real ASGI server (apps.asgi_basic:echo_scope).

Every case is checked against the HTTP core in Rust first (tests/http_core/corpus.rs: the same
expectations, against a stub app that echoes the request the core hands over, in under a second).
Replayed here are only the cases that may reach the app (those whose expectation says what the app
must see): the bridges turn the core's request into environ and scope (the path decoded as latin-1
or UTF-8, repeated headers joined for WSGI, the Host of an absolute-form target, HTTP/1.0 without
Host), so those facts are checked through both interfaces. A case refused by the core never reaches
a bridge; all of them still run here once more through both interfaces at --log-level debug
(`test_no_input_panics`), where no worker log may say `panicked`.

Each case is sent on a fresh socket exactly as stored. The client reads every response until the server
closes or a 3 s deadline passes; when a response leaves the connection open it sends a probe request on
the same connection, so "kept open" is observed (the probe is answered) rather than waited for. Then:
the first final status is one the RFC allows, the connection was closed (or kept) as required, no hidden
request (/smuggled) was ever answered, and for a 200 the app saw exactly the request that was sent. After
every case (known bugs included) the server must still answer a normal request and no worker may have died.
"""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Server, running

from . import make_corpus

CORPUS = Path(__file__).resolve().parent / "corpus"
EXPECTED: dict[str, dict] = json.loads((CORPUS / "expected.json").read_text())
# The cases that may reach the app, replayed by `test_case` (see the module docstring).
APP_CASES = sorted(name for name, want in EXPECTED.items() if "app" in want)
APPS = {"wsgi": "apps.basic:environ_json", "asgi": "apps.asgi_basic:echo_scope"}
FLAGS = ("--body-timeout", "1", "--keepalive", "2")
DEADLINE = 3.0  # seconds per exchange, from connect to the last byte
PROBE = b"GET /__probe__ HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"

# Cases where rsgi (hyper underneath) does something the RFC or the project's rules forbid.
# Keys: (interface or "*", file name). Each is a real bug; see tests/reliability/README.md. The core's
# list is `KNOWN_BUGS` in tests/http_core/corpus.rs.
KNOWN_BUGS: dict[tuple[str, str], str] = {
    ("*", "124-te-empty-element-after.http"): (
        "bug: 'Transfer-Encoding: chunked,' gets 400; RFC 9110 5.6.1.2 says empty list elements MUST be "
        "ignored (hyper reads the text after the last comma as the final coding, before rsgi sees the request)"
    ),
}


def known_bug(interface: str, name: str) -> str | None:
    return KNOWN_BUGS.get((interface, name)) or KNOWN_BUGS.get(("*", name))


# -- a small HTTP/1.1 response reader with an overall deadline ------------------------------------


class DeadlinePassed(Exception):
    pass


@dataclass
class Response:
    status: int
    headers: dict[str, list[str]]
    body: bytes
    complete: bool

    def header(self, name: str) -> str:
        return ", ".join(self.headers.get(name, []))

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Exchange:
    responses: list[Response] = field(default_factory=list)
    interim: list[Response] = field(default_factory=list)
    received: bytes = b""
    closed: bool = False
    probe_answered: bool = False


class Conn:
    def __init__(self, port: int, deadline: float) -> None:
        self.deadline = deadline
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.buf = b""
        self.received = b""
        self.eof = False

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def _more(self) -> bool:
        """Reads what is available; False at EOF or reset."""
        if self.eof:
            return False
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlinePassed
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise DeadlinePassed from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        self.received += chunk
        return True

    def _until(self, sep: bytes) -> bytes | None:
        while sep not in self.buf:
            if not self._more():
                return None
        out, self.buf = self.buf.split(sep, 1)
        return out

    def _exact(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            if not self._more():
                return None
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self) -> Response | None:
        """The next response, None at EOF before a complete head."""
        head = self._until(b"\r\n\r\n")
        if head is None:
            return None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        assert len(parts) >= 2 and parts[0].startswith("HTTP/1."), f"not a status line: {lines[0]!r}"
        status = int(parts[1])
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        resp = Response(status, headers, b"", True)
        if 100 <= status < 200 or status in (204, 304):
            return resp
        if resp.header("transfer-encoding"):
            body = b""
            while True:
                size_line = self._until(b"\r\n")
                if size_line is None:
                    resp.complete = False
                    break
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    resp.complete = self._until(b"\r\n") == b""
                    break
                data = self._exact(size + 2)
                if data is None:
                    resp.complete = False
                    break
                body += data[:-2]
            resp.body = body
        elif resp.header("content-length"):
            data = self._exact(int(resp.header("content-length")))
            resp.body, resp.complete = (data, True) if data is not None else (self.buf, False)
        else:  # close-delimited
            while self._more():
                pass
            resp.body, self.buf = self.buf, b""
        return resp


def exchange(port: int, data: bytes) -> Exchange:
    """Sends `data`, collects every response; probes the connection when a response leaves it open."""
    out = Exchange()
    conn = Conn(port, time.monotonic() + DEADLINE)
    try:
        conn.send(data)  # the server may refuse (and close) before it has read everything
        probe_sent = False
        while True:
            resp = conn.response()
            if resp is None:
                break
            if 100 <= resp.status < 200:
                out.interim.append(resp)
                continue
            if probe_sent and b"__probe__" in resp.body:
                out.probe_answered = True
                break
            out.responses.append(resp)
            if not probe_sent and not conn.buf and "close" not in resp.header("connection").lower():
                probe_sent = conn.send(PROBE)
    except DeadlinePassed:
        pass
    finally:
        conn.close()
    out.received = conn.received
    out.closed = conn.eof and not out.probe_answered
    return out


# -- what the app saw, in one shape for both interfaces ---------------------------------------------


def seen_by_app(interface: str, data: dict) -> dict:
    """method, path, query, hosts, protocol, body facts and headers {name: [values]} as the app saw them."""
    if interface == "wsgi":
        headers = {k[5:].lower().replace("_", "-"): [v] for k, v in data.items() if k.startswith("HTTP_")}
        return {
            "method": data["REQUEST_METHOD"],
            "path": data["PATH_INFO"],
            "query": data["QUERY_STRING"],
            "protocol": data["SERVER_PROTOCOL"],
            "headers": headers,
            "body_len": data["body_len"],
            "body_sha256": data["body_sha256"],
        }
    headers: dict[str, list[str]] = {}
    for name, value in data["headers"]:
        headers.setdefault(name, []).append(value)
    return {
        "method": data["method"],
        "path": data["path"],
        "query": data["query_string"],
        "protocol": "HTTP/" + data["http_version"],
        "headers": headers,
        "body_len": data["body_len"],
        "body_sha256": data["body_sha256"],
    }


def expected_values(interface: str, values: list[str]) -> list[str]:
    """WSGI joins repeated header lines with ', '; ASGI keeps each line."""
    return [", ".join(values)] if interface == "wsgi" else values


def check_app(interface: str, resp: Response, want: dict) -> None:
    got = seen_by_app(interface, resp.json())
    for key in ("method", "query", "protocol", "body_len", "body_sha256"):
        if key in want:
            assert got[key] == want[key], f"the app saw {key}={got[key]!r}, expected {want[key]!r}"
    if "path" in want:
        path = want["path"]
        if interface == "asgi":  # the same decoded bytes, as UTF-8 text
            path = path.encode("latin-1").decode("utf-8", "replace")
        assert got["path"] == path, f"the app saw path {got['path']!r}, expected {path!r}"
    if "path_len" in want:
        assert len(got["path"]) == want["path_len"]
    if "host" in want:
        hosts = got["headers"].get("host", [])
        assert hosts == ([] if want["host"] is None else [want["host"]]), f"the app saw Host {hosts!r}"
    for name, values in want.get("headers", {}).items():
        assert got["headers"].get(name) == expected_values(interface, values), f"header {name}: {got['headers']}"
    for name, value in want.get("headers_ws", {}).items():
        joined = " ".join(got["headers"].get(name, []))
        assert " ".join(joined.split()) == value, f"header {name}: {joined!r}"
    for name in want.get("absent_headers", []):
        assert name not in got["headers"], f"header {name} reached the app: {got['headers'][name]!r}"


# -- the servers and the test ------------------------------------------------------------------------


@pytest.fixture(scope="module", params=list(APPS))
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One server per interface for the whole module (the corpus runs against each)."""
    interface = request.param
    with running(APPS[interface], *FLAGS, log_dir=tmp_path_factory.mktemp(f"rsgi-{interface}")) as srv:
        srv.interface = interface  # type: ignore[attr-defined]
        yield srv


class ServerBroken(Exception):
    """Not an AssertionError, so a known-bug xfail (raises=AssertionError) can never hide it."""


def assert_still_serving(server: Server) -> None:
    """A normal request on a fresh connection is answered and no worker died."""
    result = exchange(server.port, b"GET /__health__ HTTP/1.1\r\nHost: health\r\nConnection: close\r\n\r\n")
    if [r.status for r in result.responses] != [200] or b"__health__" not in result.responses[0].body:
        raise ServerBroken(f"the server stopped serving: {result.received[:300]!r}")
    if "starting a new one" in server.log():
        raise ServerBroken("a worker died:\n" + server.log()[-3000:])


def test_corpus_is_complete():
    files = sorted(p.name for p in CORPUS.glob("*.http"))
    assert files == sorted(EXPECTED), "corpus files and expected.json disagree: run make_corpus.py"
    assert len(files) >= 80
    for _, name in KNOWN_BUGS:
        assert name in EXPECTED, f"KNOWN_BUGS names a case that does not exist: {name}"


@pytest.mark.parametrize("name", APP_CASES)
def test_case(server: Server, name: str, request: pytest.FixtureRequest) -> None:
    want = EXPECTED[name]
    interface = server.interface  # type: ignore[attr-defined]
    reason = known_bug(interface, name)
    if reason:
        request.applymarker(pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason))
    result = exchange(server.port, (CORPUS / name).read_bytes())
    assert_still_serving(server)
    statuses = [r.status for r in result.responses]
    summary = f"responses {statuses}, closed={result.closed}, received {result.received[:400]!r}"

    status = statuses[0] if statuses else 0
    assert status in want["status"], f"status {status}, expected one of {want['status']}; {summary}"
    assert b"smuggled" not in result.received, f"a hidden request was answered; {summary}"
    expected_count = want.get("responses", 0 if status == 0 else 1)
    assert len(statuses) == expected_count, f"expected {expected_count} response(s); {summary}"
    if want["close"] == "yes":
        assert result.closed, f"the connection stayed open; {summary}"
    elif want["close"] == "no":
        assert result.probe_answered, f"the connection was not kept open; {summary}"
    if want.get("no_interim"):
        assert not result.interim, f"a 1xx response was sent: {[r.status for r in result.interim]}"
    for resp in result.responses:
        assert resp.complete, f"a response was cut short; {summary}"
    if status == 200 and "app" in want:
        check_app(interface, result.responses[0], want["app"])
    if "paths" in want:
        assert [seen_by_app(interface, r.json())["path"] for r in result.responses] == want["paths"]


def test_corpus_matches_its_generator():
    """The stored bytes and expectations are exactly what make_corpus.py produces (nothing hand-edited)."""
    for case in make_corpus.CASES:
        assert (CORPUS / case.file).read_bytes() == case.data, f"{case.file} differs: run make_corpus.py"
        assert EXPECTED[case.file] == json.loads(json.dumps(case.expectation())), f"{case.file}: stale expectation"
    assert len(make_corpus.CASES) == len(EXPECTED)


@pytest.mark.parametrize("interface", list(APPS))
def test_no_input_panics(interface: str, tmp_path: Path) -> None:
    """Every corpus case once more, at --log-level debug so the core formats every log argument
    (a request target cut inside a character once panicked only there): no worker log line may
    say `panicked`, and the server still serves. The cases are sent 16 at a time, unchecked."""
    with running(APPS[interface], *FLAGS, "--log-level", "debug", log_dir=tmp_path) as server:
        files = sorted(CORPUS.glob("*.http"))
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda f: exchange(server.port, f.read_bytes()), files))
        assert_still_serving(server)
        log = server.log()
    assert "panicked" not in log, log[log.find("panicked") - 500 :][:3000]
    assert "refused" in log  # the debug lines were written, so their arguments were formatted
