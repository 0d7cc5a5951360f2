"""USR2: rsgi replaces itself (supervisor and workers) with a new one started from the code on disk,
on the same listening sockets, without failing a request; a new one that cannot serve leaves the
old one serving. And the rule that makes the hand-over work, also for systemd users: a --bind
address that a passed socket already has is served from that socket, not bound again.

The app is a small module written into tmp_path, which rsgi is started from; the tests rewrite it
and send USR2 under continuous load (client threads on keep-alive and fresh connections). The new
supervisor outlives the old one, which the test started; the test makes itself a child subreaper,
so the new one is re-parented to it, and it can wait for its exit status. Every wait is on a log
line, a process or the answers changing, never a sleep.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import Server, StartServer, base_env, free_port
from reliability.loadgen import wait_until
from rsgi import sockets, upgrade
from rsgi.upgrade import Listener

PR_SET_CHILD_SUBREAPER = 36
ENV = {"PYTHONDONTWRITEBYTECODE": "1"}  # the rewritten module is the same size within the same second

WSGI = """\
import os

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%(version)s"]
"""

ASGI = """\
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"%(version)s"})
"""

BROKEN = 'raise RuntimeError("broken deploy")\n'
# Import blocks until the file named by RSGI_TEST_GATE exists: workers that never get ready.
GATED = """\
import os, time
while not os.path.exists(os.environ["RSGI_TEST_GATE"]):
    time.sleep(0.05)
"""


PASS_AS_3_AND_4 = """\
import fcntl, os, sys
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (%d, %d)]
for target, fd in zip((3, 4), high):
    os.dup2(fd, target)
os.closerange(5, 1000)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="2")
os.execv(sys.executable, [sys.executable, "-m", "rsgi", *sys.argv[1:]])
"""


def write_app(directory: Path, source: str, version: str = "") -> None:
    (directory / "upgrade_app.py").write_text(source % {"version": version} if version else source)


@pytest.fixture
def subreaper() -> Iterator[set[int]]:
    """Makes this process the child subreaper (Linux) while the test runs, so a supervisor whose
    parent exits is re-parented here; yields a set the test adds such pids to, which are stopped
    (TERM, then KILL) and reaped at teardown."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip("prctl(PR_SET_CHILD_SUBREAPER) is not available")
    adopted: set[int] = set()
    try:
        yield adopted
    finally:
        for pid in adopted:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(ChildProcessError, AssertionError):
                reap(pid, 20)
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def started(log: str) -> int:
    """The pid of the last new supervisor a USR2 started, from the old one's log."""
    return int(re.findall(r"USR2: started a new supervisor \(pid (\d+)\)", log)[-1])


def reap(pid: int, timeout: float) -> int:
    """Waits for `pid`, a child of this process (directly or as subreaper); its exit code."""
    waited = wait_until(lambda: (w := os.waitpid(pid, os.WNOHANG))[0] and w, timeout, f"process {pid} to exit")
    return os.waitstatus_to_exitcode(waited[1])


@dataclass(frozen=True)
class Answer:
    start: float
    end: float
    text: str | None  # None: the request failed
    error: str = ""


class Load:
    """Client threads looping GET / until stopped: half keep one connection (keep-alive), half
    open a fresh one per request. Every answer or failure is recorded."""

    def __init__(self, url: str, clients: int = 4, verify: ssl.SSLContext | bool = True, uds: str = "") -> None:
        self.url = url
        self.verify = verify
        self.uds = uds
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i % 2 == 0,), daemon=True) for i in range(clients)]
        for t in self._threads:
            t.start()

    def _client(self) -> httpx.Client:
        transport = httpx.HTTPTransport(uds=self.uds, verify=self.verify) if self.uds else None
        return httpx.Client(timeout=10, verify=self.verify, transport=transport)

    def _run(self, keep_alive: bool) -> None:
        client = self._client()
        try:
            while not self._done.is_set():
                if not keep_alive:
                    client.close()
                    client = self._client()
                start = time.monotonic()
                try:
                    r = client.get(self.url)
                    answer = Answer(
                        start, time.monotonic(), r.text if r.status_code == 200 else None, str(r.status_code)
                    )
                except httpx.HTTPError as e:
                    answer = Answer(start, time.monotonic(), None, repr(e))
                with self._lock:
                    self.answers.append(answer)
        finally:
            client.close()

    def seen(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def count(self, text: str, after: float = 0.0) -> int:
        return sum(1 for a in self.seen() if a.text == text and a.start >= after)

    def stop(self) -> list[Answer]:
        self._done.set()
        for t in self._threads:
            t.join(15)
        assert not any(t.is_alive() for t in self._threads)
        return self.seen()


def answers_with(url: str, verify: ssl.SSLContext) -> bool:
    try:
        return httpx.get(url, verify=verify, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def failures(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if a.text is None]


def upgrade_under_load(
    server: Server, load: Load, tmp_path: Path, source: str, subreaper: set[int]
) -> tuple[int, list[Answer], float]:
    """v1 → v2 by USR2 with the load running: (the new supervisor's pid, every answer, when the old
    supervisor had exited)."""
    wait_until(lambda: load.count("v1") >= 50, 10, "50 answers from v1")
    write_app(tmp_path, source, "v2")
    server.signal(signal.SIGUSR2)
    server.wait_log("USR2: every worker serves; taking over from the supervisor")
    pid_file = tmp_path / "rsgi.pid"
    new = int(wait_until(lambda: pid_file.read_text().strip() != str(server.pid) and pid_file.read_text(), 5, "pid"))
    subreaper.add(new)
    assert server.wait(20) == 0  # the old supervisor drained and exited
    gone = time.monotonic()
    wait_until(lambda: load.count("v2", after=gone) >= 50, 10, "50 answers from v2 after the old one exited")
    answers = load.stop()
    return new, answers, gone


def stop_new(server: Server, new: int) -> None:
    """TERM to the new supervisor: it stops as any does (exit 0, its pid file and socket files gone)."""
    os.kill(new, signal.SIGTERM)
    assert reap(new, 20) == 0
    assert f"[{new}] [INFO] rsgi.supervisor: stopped" in server.log()


def test_wsgi_upgrade_under_load_serves_the_new_code_without_a_failed_request(
    serve: StartServer, tmp_path: Path, subreaper: set[int]
) -> None:
    write_app(tmp_path, WSGI, "v1")
    uds = str(tmp_path / "rsgi.sock")
    server = serve(
        "upgrade_app:app",
        *("--workers", "2", "--pid", str(tmp_path / "rsgi.pid"), "--bind", f"unix:{uds}"),
        cwd=tmp_path,
        env=ENV,
    )
    load = Load(server.url + "/")
    local = Load("http://rsgi/", clients=2, uds=uds)
    try:
        new, answers, gone = upgrade_under_load(server, load, tmp_path, WSGI, subreaper)
    finally:
        load.stop()
        local_answers = local.stop()
    assert not failures(answers), failures(answers)[:5]
    assert not failures(local_answers), failures(local_answers)[:5]
    # Once the old supervisor is gone, only the new code answers; both did over the Unix socket.
    assert {a.text for a in answers if a.start >= gone} == {"v2"}
    assert {a.text for a in local_answers} == {"v1", "v2"}
    log = server.log()
    assert f"[{server.pid}] [INFO] rsgi.supervisor: stopped" in log
    assert "the socket passed for it is served (not bound again)" in log
    assert os.path.exists(uds)  # the old supervisor left the socket file to the new one
    # A HUP to the new supervisor still replaces its workers.
    os.kill(new, signal.SIGHUP)
    wait_until(lambda: f"[{new}] [INFO] rsgi.supervisor: SIGHUP: replacing workers" in server.log(), 5, "HUP")
    assert httpx.get(server.url + "/", timeout=5).text == "v2"
    stop_new(server, new)
    assert not os.path.exists(uds)
    assert not (tmp_path / "rsgi.pid").exists()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    trustme = pytest.importorskip("trustme")
    d = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    issued.private_key_and_cert_chain_pem.write_to_path(str(d / "server.pem"))
    return d / "ca.pem", d / "server.pem"


def test_asgi_upgrade_with_tls_and_metrics(tmp_path: Path, subreaper: set[int], certs: tuple[Path, Path]) -> None:
    ca, pem = certs
    write_app(tmp_path, ASGI, "v1")
    port, metrics_port = free_port(), free_port()
    args = ["upgrade_app:app", "--workers", "2", "--pid", str(tmp_path / "rsgi.pid")]
    args += ["--bind", f"127.0.0.1:{port}", "--certfile", str(pem), "--metrics-bind", f"127.0.0.1:{metrics_port}"]
    server = Server(args, tmp_path, base_env(**ENV), tmp_path / "rsgi.log", port)
    try:
        url = f"https://127.0.0.1:{port}/"
        context = ssl.create_default_context(cafile=str(ca))
        wait_until(lambda: answers_with(url, context), 15, "the server to answer over TLS")
        load = Load(url, verify=context)
        try:
            new, answers, gone = upgrade_under_load(server, load, tmp_path, ASGI, subreaper)
        finally:
            load.stop()
        assert not failures(answers), failures(answers)[:5]
        assert {a.text for a in answers if a.start >= gone} == {"v2"}
        # The metrics listener was handed over too (binding it again would have failed).
        assert "rsgi_" in httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        stop_new(server, new)
    finally:
        server.stop()


def test_a_new_supervisor_that_cannot_load_the_app_leaves_the_old_one_serving(
    serve: StartServer, tmp_path: Path, subreaper: set[int]
) -> None:
    write_app(tmp_path, WSGI, "v1")
    server = serve("upgrade_app:app", "--workers", "2", cwd=tmp_path, env=ENV)
    load = Load(server.url + "/")
    try:
        wait_until(lambda: load.count("v1") >= 50, 10, "50 answers from v1")
        write_app(tmp_path, BROKEN)
        server.signal(signal.SIGUSR2)
        log = server.wait_log("USR2: upgrade failed", 20)
        after = time.monotonic()
        wait_until(lambda: load.count("v1", after=after) >= 50, 10, "50 more answers from v1")
    finally:
        answers = load.stop()
    assert not failures(answers), failures(answers)[:5]
    assert {a.text for a in answers} == {"v1"}
    assert "RuntimeError: broken deploy" in log
    assert f"this supervisor (pid {server.pid}) keeps serving" in log
    assert server.proc.poll() is None
    # Fixed on disk, the next USR2 goes through.
    write_app(tmp_path, WSGI, "v3")
    server.signal(signal.SIGUSR2)
    assert server.wait(20) == 0
    assert httpx.get(server.url + "/", timeout=5).text == "v3"
    new = started(server.log())
    subreaper.add(new)
    stop_new(server, new)


def test_a_second_usr2_is_ignored_and_an_unready_upgrade_times_out(
    serve: StartServer, tmp_path: Path, subreaper: set[int]
) -> None:
    write_app(tmp_path, WSGI, "v1")
    gate = tmp_path / "gate"
    server = serve("upgrade_app:app", "--upgrade-timeout", "2", cwd=tmp_path, env={**ENV, "RSGI_TEST_GATE": str(gate)})
    write_app(tmp_path, GATED)
    server.signal(signal.SIGUSR2)
    subreaper.add(started(server.wait_log("USR2: started a new supervisor")))
    server.signal(signal.SIGUSR2)
    server.wait_log("USR2: an upgrade is already under way")
    log = server.wait_log("did not all serve within 2s (--upgrade-timeout)", 10)
    assert "keeps serving" in log
    assert httpx.get(server.url + "/", timeout=5).text == "v1"
    assert server.proc.poll() is None


def test_bind_of_a_passed_address_serves_the_passed_socket(tmp_path: Path) -> None:
    """What systemd users with a --bind in their unit expect too: no EADDRINUSE, one socket."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(16)
    port = tcp.getsockname()[1]
    path = str(tmp_path / "passed.sock")
    uds = socket.socket(socket.AF_UNIX)
    uds.bind(path)
    uds.listen(16)
    # LISTEN_PID must be rsgi's own pid: a small wrapper moves the sockets to 3 and 4, sets it to
    # its own pid, then execs rsgi (same pid).
    script = PASS_AS_3_AND_4 % (tcp.fileno(), uds.fileno())
    args = ["upgrade_app:app", "--bind", f"127.0.0.1:{port}", "--bind", f"unix:{path}"]
    write_app(tmp_path, WSGI, "v1")
    log_path = tmp_path / "rsgi.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            cwd=tmp_path,
            env=base_env(**ENV),
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=(tcp.fileno(), uds.fileno()),
        )
    tcp.close()
    uds.close()
    try:
        with httpx.Client(timeout=10) as client:
            assert client.get(f"http://127.0.0.1:{port}/").text == "v1"
        with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=10) as client:
            assert client.get("http://rsgi/").text == "v1"
        log = log_path.read_text()
        assert log.count("the socket passed for it is served (not bound again)") == 2, log
        assert "could not bind" not in log
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    # The socket file is the passer's (systemd's): rsgi leaves it.
    assert os.path.exists(path)


def test_the_descriptor_plan_keeps_fd_binds_at_their_number() -> None:
    passed = [Listener(9, "web"), Listener(12, ""), Listener(7, upgrade.METRICS)]
    targets, names, pipe = upgrade.plan([*passed, Listener(20, fixed=True)])
    assert targets == {3: 9, 4: 12, 5: 7, 20: 20}
    assert names == ["web", "", upgrade.METRICS]
    assert pipe == 21
    assert upgrade.plan([Listener(3, fixed=True)]) == ({3: 3}, [], 4)
    with pytest.raises(ValueError, match="fd://4"):
        upgrade.plan([Listener(8), Listener(9), Listener(4, fixed=True)])


def test_same_address_resolves_like_bind(tmp_path: Path) -> None:
    with socket.socket() as tcp, socket.socket(socket.AF_UNIX) as uds:
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        uds.bind(str(tmp_path / "a.sock"))
        assert sockets.same_address(tcp, f"127.0.0.1:{port}")
        assert sockets.same_address(tcp, f"localhost:{port}") == (socket.getaddrinfo("localhost", port)[0][0] == 2)
        assert not sockets.same_address(tcp, f"127.0.0.1:{port + 1}")
        assert not sockets.same_address(tcp, f"0.0.0.0:{port}")
        assert sockets.same_address(tcp, f"fd://{tcp.fileno()}")
        assert sockets.same_address(uds, f"unix:{tmp_path / 'a.sock'}")
        assert not sockets.same_address(uds, f"unix:{tmp_path / 'b.sock'}")
        assert not sockets.same_address(uds, f"127.0.0.1:{port}")


def test_systemd_learns_the_new_main_pid_and_hears_no_stop(
    serve: StartServer, tmp_path: Path, subreaper: set[int]
) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(20)

    def messages_until(key: str) -> list[dict[str, str]]:
        seen = []
        while not seen or key not in seen[-1]:
            lines = notify.recv(4096).decode().splitlines()
            seen.append(dict(line.split("=", 1) for line in lines))
        return seen

    write_app(tmp_path, WSGI, "v1")
    with notify:
        server = serve("upgrade_app:app", cwd=tmp_path, env={**ENV, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
        assert messages_until("READY")[-1]["MAINPID"] == str(server.pid)
        write_app(tmp_path, WSGI, "v2")
        server.signal(signal.SIGUSR2)
        new = started(server.wait_log("USR2: started a new supervisor"))
        subreaper.add(new)
        # The old one names the new main process first; then the new one is ready as that process.
        handed = messages_until("MAINPID")
        assert handed[-1] == {"MAINPID": str(new)}, handed
        ready = messages_until("READY")
        assert ready[-1]["MAINPID"] == str(new)
        assert server.wait(20) == 0
        assert httpx.get(server.url + "/", timeout=5).text == "v2"
        os.kill(new, signal.SIGTERM)
        stopping = messages_until("STOPPING")
        assert reap(new, 20) == 0
    # Only the new one said STOPPING=1, when it stopped: the old one's stop was not the service's.
    assert all("STOPPING" not in m for m in handed + ready + stopping[:-1])
