"""Recycling and the watchdog: --max-requests (+ jitter), --timeout, --max-worker-memory, --pid.
The supervisor reads each worker's counters from the shared scoreboard (src/scoreboard/mod.rs)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from conftest import StartServer, wait_until


def pids_while_serving(server, timeout: float) -> set[int]:
    """Requests `apps.process:pid` until three different workers have answered; every request
    must succeed (a replacement must not cost a request)."""
    pids: set[int] = set()
    sent = 0
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as c:
        while len(pids) < 3 and time.monotonic() < deadline:
            r = c.get(server.url + "/")
            sent += 1
            assert r.status_code == 200, f"request {sent} failed"
            pids.add(int(r.text))
    assert len(pids) >= 3, f"workers were not replaced after {sent} requests: {pids}"
    return pids


def test_max_requests_recycles_workers_without_failing_requests(serve: StartServer) -> None:
    server = serve("apps.process:pid", "--max-requests", "5")
    # The supervisor looks at the counters once a second.
    pids_while_serving(server, 15)
    log = server.log()
    assert "served 5 requests (--max-requests)" in log
    assert "starting a new one" not in log  # a retirement, not a crash


def test_jitter_spreads_the_limit_per_worker(serve: StartServer) -> None:
    server = serve("apps.process:pid", "--max-requests", "2", "--max-requests-jitter", "50")
    with httpx.Client(timeout=5) as c:
        first = c.get(server.url + "/").text
        answers = [c.get(server.url + "/").text for _ in range(4)]
    # With a limit between 2 and 52, the same worker may well serve all five; what must hold is
    # that nothing failed and the log names the limit it used when it did recycle.
    assert all(a.isdigit() for a in [first, *answers])
    if len({first, *answers}) > 1:
        assert "(--max-requests)" in server.log()


def test_timeout_kills_a_worker_stuck_in_a_request(serve: StartServer) -> None:
    server = serve("apps.process:stuck", "--timeout", "1", "--graceful-timeout", "1", ready=False)
    server.wait_log("serving apps.process:stuck")
    (first,) = wait_until(lambda: server.worker_pids(), 10, "a worker")
    start = time.monotonic()
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/?30", timeout=15)
    assert time.monotonic() - start < 8, "the stuck request was not cut off by --timeout"
    log = server.wait_log("was killed by SIGABRT")
    assert "timed out: busy" in log and "GET /?30" in log, log
    assert "in stuck" in log  # faulthandler's dump of the worker's stack names where it was stuck
    (second,) = wait_until(lambda: [p for p in server.worker_pids() if p != first], 10, "a new worker")
    assert httpx.get(server.url + "/?0", timeout=5).text == "woke up"
    assert second != first


def test_timeout_kills_an_asgi_worker_whose_loop_is_blocked(serve: StartServer) -> None:
    server = serve("apps.process:blocking_loop", "--timeout", "2")
    first = int(httpx.get(server.url + "/", timeout=5).text)
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/block", timeout=15)
    log = server.wait_log("timed out")
    assert "(event loop)" in log
    second = int(wait_until(lambda: _get(server.url + "/"), 15, "a new worker answering"))
    assert second != first


def _get(url: str) -> str | None:
    try:
        return httpx.get(url, timeout=2).text
    except httpx.TransportError:
        return None


def test_max_worker_memory_recycles_a_leaking_worker(serve: StartServer) -> None:
    server = serve("apps.process:hoard", "--max-worker-memory", "150")
    first = int(httpx.get(server.url + "/", timeout=5).text)
    with httpx.Client(timeout=5) as c:
        for _ in range(10):  # +200 MB
            c.get(server.url + "/")
    log = server.wait_log("(--max-worker-memory 150)", timeout=10)
    assert "uses" in log
    second = int(wait_until(lambda: (t := _get(server.url + "/")) and int(t) != first and t, 15, "a new worker"))
    assert second != first
    assert "starting a new one" not in server.log()


def test_pid_file_is_written_and_removed(serve: StartServer, tmp_path: Path) -> None:
    pidfile = tmp_path / "rsgi.pid"
    server = serve("apps.process:pid", "--pid", str(pidfile))
    assert int(pidfile.read_text()) == server.pid
    assert server.stop() == 0
    assert not pidfile.exists()


def test_umask_applies_to_files_the_server_creates(serve: StartServer, tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"
    server = serve("apps.process:pid", "--umask", "077", "--bind", f"unix:{sock}", bind=False, ready=False)
    wait_until(sock.exists, 10, "the unix socket")
    assert (os.stat(sock).st_mode & 0o077) == 0
    server.stop()


def test_workers_lifetime_replaces_workers_without_failing_requests(serve: StartServer, tmp_path: Path) -> None:
    errors = tmp_path / "error.log"
    server = serve("apps.process:pid", "--workers-lifetime", "1", "--error-log", str(errors))
    pids_while_serving(server, 20)
    log = errors.read_text()
    assert "(--workers-lifetime)" in log
    assert "starting a new one" not in log  # a retirement, not a crash


def test_usr1_reopens_the_access_log_and_the_error_log(serve: StartServer, tmp_path: Path) -> None:
    """logrotate's recipe: move the files away, send USR1, and new lines go to new files."""
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    server = serve(
        "apps.process:logline",
        "--workers",
        "2",
        "--access-logfile",
        str(access),
        "--access-logformat",
        "%(r)s %(s)s",
        "--error-log",
        str(errors),
    )
    with httpx.Client(timeout=5) as c:
        assert c.get(server.url + "/?before").status_code == 200
        wait_until(lambda: "?before" in access.read_text(), 5, "the first access line")
        access.rename(tmp_path / "access.log.1")
        errors.rename(tmp_path / "error.log.1")
        server.signal(signal.SIGUSR1)
        wait_until(lambda: errors.exists() and "SIGUSR1: log files reopened" in errors.read_text(), 10, "supervisor")
        # The workers get the signal from the supervisor; poll until both have reopened (each
        # request goes to whichever worker accepts it, so send a few per round).
        seen: set[str] = set()

        def both_workers_write_new_files() -> bool:
            for i in range(4):
                pid = c.get(server.url + f"/?after-{i}", headers={"Connection": "close"}).text
                new_access = access.read_text() if access.exists() else ""
                if f"?after-{i}" in new_access and f"logline after-{i}" in errors.read_text():
                    seen.add(pid)
            return len(seen) == 2

        wait_until(both_workers_write_new_files, 15, "both workers to write to the new files")
    old_access = (tmp_path / "access.log.1").read_text()
    assert "GET /?before HTTP/1.1 200" in old_access
    assert "logline before" in (tmp_path / "error.log.1").read_text()
    assert server.stop() == 0
    assert "Traceback" not in errors.read_text()


def test_env_file_is_loaded_and_env_flags_win(serve: StartServer, tmp_path: Path) -> None:
    dotenv = tmp_path / "app.env"
    dotenv.write_text('# settings\nRSGI_TEST_A=from-file\nRSGI_TEST_B="quoted value"\nRSGI_TEST_C=file\n')
    server = serve(
        "apps.process:getenv",
        "--env-file",
        str(dotenv),
        "-e",
        "RSGI_TEST_C=flag",
        env={"RSGI_TEST_A": "from-environment"},
    )
    with httpx.Client(timeout=5) as c:
        assert c.get(server.url + "/?RSGI_TEST_A").text == "from-environment"
        assert c.get(server.url + "/?RSGI_TEST_B").text == "quoted value"
        assert c.get(server.url + "/?RSGI_TEST_C").text == "flag"


def test_missing_env_file_is_a_clear_error(serve: StartServer, tmp_path: Path) -> None:
    server = serve("apps.process:getenv", "--env-file", str(tmp_path / "nope.env"), ready=False)
    assert server.wait() == 2
    assert "--env-file" in server.log() and "no such file" in server.log()


def io_threads(pid: int) -> int:
    """How many tokio I/O threads (named rsgi-io) a worker runs."""
    return sum((task / "comm").read_text().strip() == "rsgi-io" for task in Path(f"/proc/{pid}/task").iterdir())


@pytest.mark.parametrize(
    ("flags", "workers"),
    [((), 1), (("--workers", "2"), 2), (("--runtime-threads", "1"), 1), (("--runtime-threads", "3"), 1)],
    ids=["auto-one-worker", "auto-two-workers", "one", "three"],
)
def test_runtime_threads_default_to_the_cores_the_workers_leave(
    serve: StartServer, flags: tuple[str, ...], workers: int
) -> None:
    server = serve("apps.basic:hello", *flags)
    pids = wait_until(lambda: len(server.worker_pids()) == workers and server.worker_pids(), 20, "the workers")
    if "--runtime-threads" in flags:
        expected = int(flags[-1])
    else:  # one or two per worker: whatever the cores allow
        expected = max(1, min(2, len(os.sched_getaffinity(0)) // workers))
    for pid in pids:
        assert wait_until(lambda pid=pid: io_threads(pid) == expected, 10, f"{expected} rsgi-io threads"), pid
