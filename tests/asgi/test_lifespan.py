"""The ASGI lifespan protocol under rsgi: startup before serving (with state shared into request
scopes), shutdown on SIGTERM, startup failures (exit code 3, no respawn loop) and the
--lifespan auto/on/off modes. Real server subprocesses, real clients."""

from __future__ import annotations

import ast
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Server, marker_lines

EXIT_BOOT_ERROR = 3


def probe(r: httpx.Response) -> dict[str, Any]:
    """What apps.asgi_extra:scope_probe saw: every scope value as the Python object it was."""
    assert r.status_code == 200, r.text
    return {k: ast.literal_eval(v) for k, v in r.json().items()}


def wait_exit(server: Server, timeout: float = 15.0) -> int:
    try:
        return server.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"rsgi still running after {timeout}s:\n{server.log()}")


def test_startup_state_reaches_requests(serve, tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    server = serve("apps.asgi_extra:lifespan_state", env={"RSGI_TEST_MARKER": str(marker)})
    # Startup completed before the first request was served (the readiness request).
    assert marker_lines(marker) == ["startup"]
    (pid,) = server.worker_pids()
    with httpx.Client(base_url=server.url, timeout=5) as client:
        first = probe(client.get("/one"))
        # The app changes its request's copy of the state after answering: the next request
        # still sees what startup stored.
        second = probe(client.get("/two"))
    assert first["state"] == {"x": "set at startup", "pid": pid}
    assert second["state"] == {"x": "set at startup", "pid": pid}
    assert marker_lines(marker) == ["startup"]  # startup ran once, shutdown not yet


def test_shutdown_runs_on_sigterm(serve, tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    server = serve("apps.asgi_extra:lifespan_state", env={"RSGI_TEST_MARKER": str(marker)})
    assert httpx.get(server.url + "/x", timeout=5).status_code == 200
    server.signal(signal.SIGTERM)
    assert wait_exit(server) == 0, server.log()
    assert "the app failed during lifespan shutdown" not in server.log()
    assert marker_lines(marker) == ["startup", "shutdown"]


def test_startup_failure_exits_3_without_respawning(serve) -> None:
    server = serve("apps.asgi_basic:lifespan_fails", ready=False)
    assert wait_exit(server) == EXIT_BOOT_ERROR
    log = server.log()
    assert "ASGI lifespan startup failed: database unreachable" in log
    assert log.count("startup failed") == 1, log  # one worker tried once: no respawn loop
    assert "starting a new one" not in log
    assert "worker serving" not in log


def test_lifespan_on_with_an_app_without_lifespan_exits_3(serve) -> None:
    # asgi_basic:hello asserts scope["type"] == "http": it cannot answer the lifespan scope.
    server = serve("apps.asgi_basic:hello", "--lifespan", "on", ready=False)
    assert wait_exit(server) == EXIT_BOOT_ERROR
    log = server.log()
    assert "the app does not support the ASGI lifespan protocol (--lifespan on)" in log
    assert "AssertionError" in log
    assert "starting a new one" not in log
    assert "worker serving" not in log


def test_lifespan_off_never_calls_the_app_for_lifespan(serve, tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    server = serve("apps.asgi_extra:lifespan_state", "--lifespan", "off", env={"RSGI_TEST_MARKER": str(marker)})
    scope = probe(httpx.get(server.url + "/x", timeout=5))
    assert "state" not in scope
    server.signal(signal.SIGTERM)
    assert wait_exit(server) == 0, server.log()
    assert not marker.exists(), marker_lines(marker)


@pytest.mark.parametrize("flags", [(), ("--lifespan", "auto")], ids=["default", "auto"])
def test_auto_serves_an_app_that_raises_on_lifespan(serve, flags: tuple[str, ...]) -> None:
    server = serve("apps.asgi_extra:lifespan_raises", *flags)
    r = httpx.get(server.url + "/", timeout=5)
    assert r.status_code == 200
    assert r.text == "Hello, ASGI!"
    log = server.wait_log("does not support ASGI lifespan; continuing without it")
    assert "no lifespan here" in log
    server.signal(signal.SIGTERM)
    assert wait_exit(server) == 0, server.log()
