"""--reload, --env and --log-config."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from conftest import StartServer

pytest.importorskip("watchfiles")

APP_V1 = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"version 1"]
"""


def _text(url: str) -> str | None:
    try:
        return httpx.get(url, timeout=2).text
    except httpx.TransportError:
        return None


def test_reload_replaces_workers_when_code_changes(serve: StartServer, tmp_path: Path) -> None:
    module = tmp_path / "reloadable.py"
    module.write_text(APP_V1)
    server = serve(
        "reloadable:app", "--reload", "--reload-dir", str(tmp_path), env={"PYTHONPATH": str(tmp_path)}, cwd=tmp_path
    )
    assert httpx.get(server.url + "/", timeout=5).text == "version 1"
    server.wait_log("watching")
    module.write_text(APP_V1.replace("version 1", "version 2"))
    deadline = time.monotonic() + 15
    while _text(server.url + "/") != "version 2":
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    assert "changed: reloadable.py" in server.log()
    # An excluded file does not trigger anything.
    marks = server.log().count("replacing workers")
    (tmp_path / "notes.txt").write_text("not python")
    assert _text(server.url + "/") == "version 2"
    assert server.log().count("replacing workers") == marks
    assert server.stop() == 0


def test_env_flag_sets_the_environment_before_the_app_loads(serve: StartServer) -> None:
    server = serve("apps.process:getenv", "--env", "RSGI_TEST_GREETING=hi", "-e", "RSGI_TEST_OTHER=x=y")
    assert httpx.get(server.url + "/?RSGI_TEST_GREETING", timeout=5).text == "hi"
    assert httpx.get(server.url + "/?RSGI_TEST_OTHER", timeout=5).text == "x=y"


def test_log_config_json_takes_over_logging(serve: StartServer, tmp_path: Path) -> None:
    logfile = tmp_path / "app.log"
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "CUSTOM %(levelname)s %(name)s %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(logfile), "formatter": "plain"}},
        "root": {"level": "INFO", "handlers": ["file"]},
    }
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(config))
    server = serve("apps.basic:hello", "--log-config", str(path))
    assert httpx.get(server.url + "/", timeout=5).status_code == 200
    text = logfile.read_text()
    assert "CUSTOM INFO rsgi.supervisor: listening on" not in text  # our format is not used
    assert "CUSTOM INFO rsgi.supervisor listening on" in text


def test_sighup_rereads_the_config_file(serve: StartServer, tmp_path: Path) -> None:
    import signal

    conf = tmp_path / "rsgi.conf.py"
    conf.write_text("workers = 1\n")
    server = serve("apps.process:pid", "-c", str(conf))
    deadline = time.monotonic() + 10
    while len(server.worker_pids()) != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    conf.write_text("workers = 3\n")
    server.signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while len(server.worker_pids()) != 3:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    assert "SIGHUP: 3 workers" in server.log()
    assert httpx.get(server.url + "/", timeout=5).status_code == 200
