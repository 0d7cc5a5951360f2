"""Fixtures that start the real rsgi server as a subprocess on a free 127.0.0.1 port.

`serve(app, *flags)` starts one and waits until it answers HTTP (a readiness check, not a sleep);
it is stopped (SIGTERM, then SIGKILL) at teardown. `django_server` serves the example project
with a private SQLite copy; `login_admin` logs its demo superuser into the admin. Test apps live
in tests/apps/. Clients for the exact bytes: `raw_request` (one exchange) and `Raw` (a connection
driven by hand: keep-alive, pipelining, chunked bodies, the server closing it).
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from reliability.loadgen import wait_until

T = TypeVar("T")
R = TypeVar("R", bound="Raw")
ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
DJANGO_DIR = ROOT / "examples" / "django_project"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running `python -m rsgi` subprocess."""

    def __init__(
        self,
        args: list[str],
        cwd: Path,
        env: dict[str, str],
        log_path: Path,
        port: int | None,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self.port = port
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.args = [sys.executable, "-m", "rsgi", *args]
        self.proc = subprocess.Popen(
            self.args, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, pass_fds=pass_fds
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0, path: str = "/") -> None:
        """Poll until the server answers any HTTP response on `path`."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rsgi exited with {self.proc.returncode}:\n{self.log()}")
            try:
                httpx.get(self.url + path, timeout=2.0)
                return
            except httpx.HTTPError as e:
                last = e
                time.sleep(0.05)
        raise RuntimeError(f"rsgi did not become ready: {last}\n{self.log()}")

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        """Wait until `text` appears in the server's output; returns the whole output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.log()
            if text in out:
                return out
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged within {timeout}s:\n{self.log()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def worker_pids(self) -> list[int]:
        import psutil

        return [c.pid for c in psutil.Process(self.pid).children()]


# Variables from the developer's shell that would change what a test server does.
AMBIENT = (
    "PORT",
    "WEB_CONCURRENCY",
    "FORWARDED_ALLOW_IPS",
    "DATABASE_URL",
    "REDIS_URL",
    "DJANGO_SETTINGS_MODULE",
    "DJANGO_ALLOWED_HOSTS",
)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSGI_") and k not in AMBIENT}
    env["PYTHONPATH"] = str(TESTS) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_rsgi(
    *args: str, cwd: Path = TESTS, env: dict[str, str] | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    """`python -m rsgi ARGS` to completion (--check-config, errors, --daemon's return)."""
    return subprocess.run(
        [sys.executable, "-m", "rsgi", *args],
        cwd=cwd,
        env=base_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


StartServer = Callable[..., Server]


@contextlib.contextmanager
def running(
    app: str, *flags: str, log_dir: Path, env: dict[str, str] | None = None, ready_path: str = "/"
) -> Iterator[Server]:
    """A server for a whole module (use from a module-scoped fixture), stopped on exit."""
    port = free_port()
    args = [app, *flags, "--bind", f"127.0.0.1:{port}"]
    server = Server(args, TESTS, base_env(**(env or {})), log_dir / "rsgi.log", port)
    try:
        server.wait_ready(path=ready_path)
        yield server
    finally:
        server.stop()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[StartServer]:
    """serve("apps.hello:app", "--workers", "2", env={...}, ready=True, bind=True) -> Server"""
    started: list[Server] = []

    def start(
        app: str,
        *flags: str,
        env: dict[str, str] | None = None,
        cwd: Path = TESTS,
        ready: bool = True,
        bind: bool = True,
        ready_path: str = "/",
    ) -> Server:
        port = free_port() if bind else None
        args = [app, *flags]
        if bind:
            args += ["--bind", f"127.0.0.1:{port}"]
        server = Server(args, cwd, base_env(**(env or {})), tmp_path / f"rsgi-{len(started)}.log", port)
        started.append(server)
        if ready and bind:
            server.wait_ready(path=ready_path)
        return server

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def django_db(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A migrated private SQLite database and collected static files for the example project."""
    db = tmp_path_factory.mktemp("django") / "db.sqlite3"
    env = base_env(RSGI_EXAMPLE_DB=str(db))
    manage = [sys.executable, "manage.py"]
    for cmd in (["migrate", "--noinput"], ["collectstatic", "--noinput"], ["createdemoadmin"]):
        subprocess.run(manage + cmd, cwd=DJANGO_DIR, env=env, check=True, capture_output=True)
    return {"RSGI_EXAMPLE_DB": str(db)}


@pytest.fixture
def django_server(serve: StartServer, django_db: dict[str, str]) -> Server:
    """The example project under rsgi's WSGI bridge, two workers."""
    return serve(
        "mysite.wsgi:application", "--chdir", str(DJANGO_DIR), "--workers", "2", env=django_db, ready_path="/hello"
    )


# The demo superuser the example's `manage.py createdemoadmin` creates (catalog/management/commands).
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-password-123"


def csrf_token(page: str) -> str:
    """The csrfmiddlewaretoken of the (first) form in a Django page."""
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, f"no csrfmiddlewaretoken in page:\n{page[:2000]}"
    return match.group(1)


def upload_file(client: httpx.Client, data: bytes, name: str, note: str) -> None:
    """Post `data` through the example's /upload form (with its CSRF token) and check the view's
    account of what arrived: the file's name, size and SHA-256, and the note field."""
    token = csrf_token(client.get("/upload").text)
    r = client.post(
        "/upload",
        data={"csrfmiddlewaretoken": token, "note": note},
        files={"file": (name, data, "application/octet-stream")},
    )
    assert r.status_code == 200, r.text[:2000]
    assert r.json() == {"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "note": note}


def login_admin(client: httpx.Client, next_path: str = "/admin/catalog/item/") -> str:
    """Log the demo superuser into the example's admin as a browser does, asserting each step:
    `next_path` redirects to the login page, whose form (with its CSRF token) is posted back and
    redirects to `next_path`. `client` has the server's base_url; returns the session cookie."""
    redirect = client.get(next_path)
    assert redirect.status_code == 302
    assert redirect.headers["location"].startswith("/admin/login/")
    login = f"/admin/login/?next={next_path}"
    page = client.get(login)
    assert page.status_code == 200
    assert 'name="username"' in page.text
    form = {"csrfmiddlewaretoken": csrf_token(page.text), "username": ADMIN_USER, "password": ADMIN_PASSWORD}
    r = client.post(login, data={**form, "next": next_path})
    assert r.status_code == 302, html.unescape(r.text)[:3000]
    assert r.headers["location"] == next_path
    session = client.cookies.get("sessionid")
    assert session, "login should set the session cookie"
    return session


def raw_request(port: int, data: bytes, timeout: float = 5.0, read_until_close: bool = True) -> bytes:
    """Send raw bytes and return everything the server sends back until it closes (or times out)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if not read_until_close:
                    break
        except TimeoutError:
            pass
        return b"".join(chunks)


@dataclass
class RawResponse:
    """One response as `Raw` read it off the wire."""

    version: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    head: bytes  # the status line and header block, exactly as received
    framing: bytes = b""  # the body bytes as they were framed on the wire (chunk sizes included)
    chunks: list[bytes] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, f"{name} sent {len(values)} times: {self.head!r}"
        return values[0] if values else None

    def json(self) -> dict:
        return json.loads(self.body)


class Raw:
    """One TCP connection driven by hand, for the tests where the exact bytes matter: sends bytes and
    reads the responses one by one (Content-Length, chunked or close-delimited), so one connection
    can carry keep-alive and pipelined requests, and tells when the server closes it."""

    def __init__(self, port: int, timeout: float = 5.0, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.eof = False

    def __enter__(self: R) -> R:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def get(self, path: str) -> RawResponse:
        """Send `GET path` on this connection and read its response."""
        self.send(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        return self.response()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            self.eof = True
            raise EOFError(f"connection closed; unparsed: {self.buf[:200]!r}")
        self.buf += chunk

    def _until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            self._fill()
        out, self.buf = self.buf.split(sep, 1)
        return out

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, head_request: bool = False) -> RawResponse:
        head = self._until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ")[:2]
        headers = [(k.strip(), v.strip()) for k, v in (line.split(":", 1) for line in lines[1:])]
        resp = RawResponse(version, int(status), headers, b"", head)
        if head_request or resp.status in (204, 304) or 100 <= resp.status < 200:
            return resp
        te = resp.header("transfer-encoding")
        length = resp.header("content-length")
        if te is not None:
            assert te.lower() == "chunked", te
            framing = b""
            while True:
                size_line = self._until(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                framing += size_line + b"\r\n"
                if size == 0:
                    break
                data = self._exact(size)
                crlf = self._exact(2)
                assert crlf == b"\r\n", f"chunk not followed by CRLF: {crlf!r}"
                framing += data + b"\r\n"
                resp.chunks.append(data)
            trailer = self._until(b"\r\n")
            assert trailer == b"", f"unexpected trailers {trailer!r}"
            resp.body = b"".join(resp.chunks)
            resp.framing = framing + b"\r\n"
        elif length is not None:
            resp.body = self._exact(int(length))
            resp.framing = resp.body
        else:  # close-delimited
            while not self.eof:
                try:
                    self._fill()
                except EOFError:
                    break
            resp.body, self.buf = self.buf, b""
            resp.framing = resp.body
        return resp

    def wait_closed(self, timeout: float) -> float | None:
        """Seconds until the server closed the connection (EOF or reset), None if it stayed open.
        Any bytes that arrive meanwhile are kept in `buf`."""
        start = time.monotonic()
        deadline = start + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                self._fill()
            except TimeoutError:
                return None
            except (EOFError, ConnectionResetError):
                break
        return time.monotonic() - start


def ipv6_loopback() -> bool:
    """Whether this machine can bind ::1 (containers often have IPv6 off)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def read_stream(client: httpx.Client, path: str) -> tuple[bytes, float, float]:
    """(body, seconds to the first chunk, seconds to the end) of a streamed response."""
    started = time.monotonic()
    first = None
    body = b""
    with client.stream("GET", path) as r:
        assert r.status_code == 200
        for chunk in r.iter_raw():
            if chunk and first is None:
                first = time.monotonic() - started
            body += chunk
    assert first is not None, f"{path} sent no body"
    return body, first, time.monotonic() - started


def marker_lines(path: Path) -> list[str]:
    """The lines test apps have appended to a marker file (none before it exists)."""
    return path.read_text().splitlines() if path.exists() else []


class Background:
    """One HTTP request on a thread, so the test can act (signal the server, send other requests)
    while it is in flight."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.response: httpx.Response | None = None
        self.error: Exception | None = None
        self.finished_at: float | None = None
        self._thread = threading.Thread(target=self._run, args=(url, timeout), daemon=True)
        self._thread.start()

    def _run(self, url: str, timeout: float) -> None:
        try:
            self.response = httpx.get(url, timeout=timeout)
        except httpx.HTTPError as e:
            self.error = e
        self.finished_at = time.monotonic()

    def join(self, timeout: float) -> None:
        """Wait for the request to end, however it ends."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the background request did not finish"

    def result(self, timeout: float = 20.0) -> httpx.Response:
        """Wait for the request to end, and return its response (it must have succeeded)."""
        self.join(timeout)
        assert self.error is None, f"the background request failed: {self.error!r}"
        assert self.response is not None
        return self.response


def start_slow(server: Server, marker: Path, seconds: float) -> Background:
    """Start `/slow?seconds` on a test app that appends to `marker` when entered (apps.supervision,
    apps.edge, apps.dual), and return once the app has been entered."""
    before = len(marker_lines(marker))
    request = Background(f"{server.url}/slow?{seconds}")
    wait_until(lambda: len(marker_lines(marker)) > before, 10, "the slow request to enter the app")
    return request
