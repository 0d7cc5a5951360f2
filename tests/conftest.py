"""Fixtures that start the real rsgi server as a subprocess on a free 127.0.0.1 port.

`serve(app, *flags)` starts one and waits until it answers HTTP (a readiness check, not a sleep);
it is stopped (SIGTERM, then SIGKILL) at teardown. `django_server` serves the example project
with a private SQLite copy. Test apps live in tests/apps/.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from reliability.loadgen import wait_until  # noqa: F401 - re-exported: the one polling helper the suites share

T = TypeVar("T")
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
AMBIENT = ("PORT", "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSGI_") and k not in AMBIENT}
    env["PYTHONPATH"] = str(TESTS) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


StartServer = Callable[..., Server]


@contextlib.contextmanager
def running(app: str, *flags: str, log_dir: Path) -> Iterator[Server]:
    """A server for a whole module (use from a module-scoped fixture), stopped on exit."""
    port = free_port()
    server = Server([app, *flags, "--bind", f"127.0.0.1:{port}"], TESTS, base_env(), log_dir / "rsgi.log", port)
    try:
        server.wait_ready()
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


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
