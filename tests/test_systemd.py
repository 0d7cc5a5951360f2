"""systemd: socket activation under Debian's `systemd-socket-activate` (which listens, and on the
first connection execs rsgi in its own process with LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES set),
and the notification protocol, received on a datagram socket of the test's own passed as
NOTIFY_SOCKET. Every wait is a receive with a timeout or a request, not a sleep.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, TESTS, Server, base_env, free_port, have
from rsgi import systemd

APP = "apps.deploy:app"
ASGI_APP = "apps.deploy:asgi_app"
ACTIVATE = "systemd-socket-activate"

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def needs(tool: str) -> None:
    """Skip locally without `tool`; fail in CI, where .ci/run installs it (Debian's systemd)."""
    if have(tool):
        return
    if IN_CI:
        pytest.fail(f"{tool} is not installed (CI=true: .ci/run is expected to install it)", pytrace=False)
    pytest.skip(f"{tool} is not installed (Debian's systemd package)")


class NotifySocket:
    """Stands in for systemd's notification socket: each datagram is a list of KEY=VALUE lines."""

    def __init__(self, tmp_path: Path, abstract: bool) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"rsgi-test-notify-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = str(tmp_path / "notify.sock")
            self.sock.bind(self.address)
        self.received: list[dict[str, str]] = []

    def close(self) -> None:
        self.sock.close()

    def next(self, timeout: float) -> dict[str, str] | None:
        """The next message, or None when none comes within `timeout` seconds."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        message = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.received.append(message)
        return message

    def expect(self, key: str, timeout: float = 30.0) -> dict[str, str]:
        """The first message from now on that sets `key`; the ones before it are kept in `received`."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.next(left)
            if message is not None and key in message:
                return message
        raise AssertionError(f"no {key} within {timeout}s; received {self.received}")


@pytest.fixture(params=["path", "abstract"])
def notify(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path, abstract=request.param == "abstract")
    yield sock
    sock.close()


def start(tmp_path: Path, app: str, *flags: str, **env: str) -> Server:
    port = free_port()
    args = [app, *flags, "--bind", f"127.0.0.1:{port}"]
    return Server(args, TESTS, base_env(**env), tmp_path / "rsgi.log", port)


# -- socket activation ---------------------------------------------------------------------------


class Activated:
    """rsgi under `systemd-socket-activate`, listening on `ports` (named `names`)."""

    def __init__(self, tmp_path: Path, ports: list[int], names: list[str], *args: str) -> None:
        self.ports = ports
        self.log_path = tmp_path / "activated.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        listen = [f"--listen=127.0.0.1:{p}" for p in ports]
        command = [ACTIVATE, *listen, f"--fdname={':'.join(names)}", sys.executable, "-m", "rsgi", *args]
        self.proc = subprocess.Popen(command, cwd=TESTS, env=base_env(), stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def get(self, port: int, path: str = "/") -> httpx.Response:
        # The first connection makes systemd-socket-activate exec rsgi; it waits in the backlog
        # of the passed socket until a worker serves.
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=30)

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


@pytest.mark.parametrize("app", [APP, ASGI_APP])
def test_serves_the_sockets_systemd_passes(tmp_path: Path, app: str) -> None:
    needs(ACTIVATE)
    ports = [free_port(), free_port()]
    server = Activated(tmp_path, ports, ["web", "admin"], app, "--workers", "2")
    try:
        for port in ports:
            r = server.get(port)
            assert (r.status_code, r.text) == (200, "ok"), server.log()
        # Neither the app nor its workers see the variables (nor could claim the sockets).
        assert server.get(ports[0], "/env").json() == {}
        out = server.log()
        assert f"listening on http://127.0.0.1:{ports[0]} (socket 'web' passed by systemd)" in out
        assert f"listening on http://127.0.0.1:{ports[1]} (socket 'admin' passed by systemd)" in out
        # Sockets were passed and no address given: the default 127.0.0.1:8000 is not bound.
        assert out.count("listening on") == 2, out
    finally:
        assert server.stop() == 0
    assert "stopped" in server.log()


def test_bind_adds_addresses_to_the_passed_sockets(tmp_path: Path) -> None:
    needs(ACTIVATE)
    passed, bound = free_port(), free_port()
    server = Activated(tmp_path, [passed], ["web"], APP, "--bind", f"127.0.0.1:{bound}")
    try:
        assert server.get(passed).status_code == 200, server.log()
        assert server.get(bound).status_code == 200
        out = server.log()
        assert f"listening on http://127.0.0.1:{passed} (socket 'web' passed by systemd)" in out
        assert f"listening on http://127.0.0.1:{bound}\n" in out
    finally:
        assert server.stop() == 0


def test_sockets_meant_for_another_process_are_left_alone(tmp_path: Path) -> None:
    # LISTEN_PID names a parent that did not unset the variables: not ours, nothing is taken
    # (fd 3 is not even open here), and the app still does not see them.
    server = start(tmp_path, APP, LISTEN_PID="1", LISTEN_FDS="1", LISTEN_FDNAMES="web")
    try:
        server.wait_ready()
        assert httpx.get(server.url + "/env", timeout=5).json() == {}
        assert "passed by systemd" not in server.log()
    finally:
        assert server.stop() == 0


def test_a_passed_descriptor_that_is_no_listening_socket_stops_the_start(tmp_path: Path) -> None:
    # LISTEN_PID must be the server's own pid, which only a wrapper that execs can set: this one
    # passes a pipe as fd 3, as a .socket unit with ListenFIFO= would.
    port = free_port()
    script = (
        "import os, sys\n"
        "read, _ = os.pipe()\n"
        "os.dup2(read, 3)\n"
        "os.set_inheritable(3, True)\n"
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1')\n"
        f"os.execv(sys.executable, [sys.executable, '-m', 'rsgi', '{APP}', '--bind', '127.0.0.1:{port}'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=TESTS, env=base_env(), capture_output=True, text=True, timeout=60
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "socket activation: file descriptor 3 is not a listening stream socket" in out


# -- notifications -------------------------------------------------------------------------------


def test_readiness_reload_watchdog_and_stop(tmp_path: Path, notify: NotifySocket) -> None:
    server = start(tmp_path, APP, "--workers", "2", NOTIFY_SOCKET=notify.address, WATCHDOG_USEC="300000")
    try:
        ready = notify.expect("READY")
        assert ready["READY"] == "1"
        assert ready["MAINPID"] == str(server.pid)
        # READY=1 means served: no readiness poll needed.
        assert httpx.get(server.url + "/", timeout=5).text == "ok"
        assert any(m.get("STATUS") == "2 of 2 workers serving" for m in notify.received), notify.received
        # WATCHDOG_USEC=300000: a ping every 0.15 s.
        pings = [notify.expect("WATCHDOG", timeout=2) for _ in range(3)]
        assert all(p == {"WATCHDOG": "1"} for p in pings)
        # Nothing leaks to the app.
        assert httpx.get(server.url + "/env", timeout=5).json() == {}

        server.signal(signal.SIGHUP)
        reloading = notify.expect("RELOADING")
        assert reloading["RELOADING"] == "1"
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert 0 <= now_usec - int(reloading["MONOTONIC_USEC"]) < 10_000_000
        assert notify.expect("READY")["READY"] == "1"  # once both new workers serve
        assert httpx.get(server.url + "/", timeout=5).status_code == 200

        server.signal(signal.SIGTERM)
        stopping = notify.expect("STOPPING")
        assert stopping["STOPPING"] == "1"
        assert server.wait(20) == 0
    finally:
        server.stop()


def test_no_watchdog_ping_before_a_worker_serves(tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path, abstract=False)
    # Workers take 1.5 s to import the app; pings would be due every 0.1 s.
    server = start(tmp_path, APP, NOTIFY_SOCKET=notify.address, WATCHDOG_USEC="200000", RSGI_TEST_IMPORT_DELAY="1.5")
    try:
        notify.expect("WATCHDOG")
        first = next(i for i, m in enumerate(notify.received) if "WATCHDOG" in m)
        assert any("READY" in m for m in notify.received[:first]), notify.received
    finally:
        server.stop()
        notify.close()


def test_watchdog_pid_of_another_process_means_no_pings(tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path, abstract=False)
    server = start(tmp_path, APP, NOTIFY_SOCKET=notify.address, WATCHDOG_USEC="200000", WATCHDOG_PID="1")
    try:
        notify.expect("READY")
        # A negative check: for 1 s (ten ping intervals) no WATCHDOG=1 arrives.
        deadline = time.monotonic() + 1.0
        while (left := deadline - time.monotonic()) > 0:
            message = notify.next(left)
            assert message is None or "WATCHDOG" not in message, notify.received
    finally:
        server.stop()
        notify.close()


# -- the example units ---------------------------------------------------------------------------

UNITS = ROOT / "examples" / "systemd"


def test_example_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    needs("systemd-analyze")
    # verify checks that ExecStart's program exists: point it at this interpreter's rsgi.
    rsgi = shutil.which("rsgi") or f"{sys.executable} -m rsgi"
    for name in ("rsgi.socket", "rsgi.service"):
        text = (UNITS / name).read_text()
        (tmp_path / name).write_text(text.replace("/srv/mysite/venv/bin/rsgi", rsgi))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / "rsgi.socket"), str(tmp_path / "rsgi.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = done.stdout + done.stderr
    if done.returncode != 0 and ("Failed to initialize manager" in out or "Failed to setup" in out):
        pytest.skip(f"systemd-analyze cannot run in this container: {out.strip()[:300]}")
    # Lines about other units on this machine are not the example's business.
    ours = [line for line in out.splitlines() if "rsgi." in line]
    assert done.returncode == 0 and not ours, out


def test_watchdog_pings_stop_while_no_worker_is_healthy(tmp_path: Path) -> None:
    # The decision alone (the supervisor passes what it read off the scoreboard): no ping while
    # unhealthy (no worker serving, or a crash loop holding restarts back), pings again after.
    notify = NotifySocket(tmp_path, abstract=False)
    try:
        notifier = systemd.Notifier({"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "1000000"})
        assert notifier.watchdog == 0.5
        booting = systemd.Workers(serving=0, target=2, starting=2, finishing=0)
        notifier.report(booting, healthy=False, now=100.0)
        assert notify.next(1) == {"STATUS": "0 of 2 workers serving (2 starting, 0 finishing)"}
        notifier.report(booting, healthy=False, now=100.2)
        assert notify.next(0.2) is None
        assert notifier.due_in(100.2) <= systemd.READY_POLL  # looked at again soon, not at 0.5 s
        serving = systemd.Workers(serving=2, target=2, starting=0, finishing=0)
        notifier.report(serving, healthy=True, now=100.4)
        assert notify.next(1) == {"READY": "1", "MAINPID": str(os.getpid()), "STATUS": "2 of 2 workers serving"}
        assert notify.next(1) == {"WATCHDOG": "1"}
        notifier.report(serving, healthy=True, now=100.6)  # not due before 100.9
        assert notify.next(0.2) is None
        notifier.report(serving, healthy=True, now=100.9)
        assert notify.next(1) == {"WATCHDOG": "1"}
        notifier.close()
    finally:
        notify.close()
