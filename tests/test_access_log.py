"""The access log: written by the Rust core (no GIL per request), gunicorn's atoms."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from conftest import StartServer


def wait_for_line(path: Path, needle: str, timeout: float = 5.0) -> str:
    """The first access-log line containing `needle` (the readiness probe's GET / comes first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in path.read_text().splitlines() if path.exists() else []:
            if needle in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no access-log line with {needle!r} in {path.read_text() if path.exists() else ''!r}")


def test_default_format_is_gunicorns(serve: StartServer, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    server = serve("apps.basic:hello", "--access-logfile", str(log))
    httpx.get(server.url + "/a?b=1", headers={"User-Agent": "tester/1", "Referer": "http://r/"}, timeout=5)
    line = wait_for_line(log, "/a?b=1")
    # 127.0.0.1 - - [23/Nov/2026:19:57:51 +0000] "GET /a?b=1 HTTP/1.1" 200 13 "http://r/" "tester/1"
    assert line.startswith("127.0.0.1 - - [")
    assert line.endswith('] "GET /a?b=1 HTTP/1.1" 200 13 "http://r/" "tester/1"'), line


def test_custom_atoms_headers_and_timing(serve: StartServer, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    fmt = "%(m)s %(U)s %(q)s %(s)s %(B)s %({x-id}i)s %({content-type}o)s %(D)s"
    server = serve("apps.basic:hello", "--access-logfile", str(log), "--access-logformat", fmt)
    httpx.post(server.url + "/p?z=9", headers={"X-Id": "abc"}, content=b"x", timeout=5)
    method, path, query, status, size, rid, ctype, micros = wait_for_line(log, "POST").split(" ")
    assert (method, path, query, status, size, rid, ctype) == ("POST", "/p", "z=9", "200", "13", "abc", "text/plain")
    assert 0 < int(micros) < 5_000_000


def test_streamed_body_size_is_what_was_sent(serve: StartServer, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    fmt = "%(s)s %(U)s %(b)s"
    server = serve("apps.basic:stream", "--access-logfile", str(log), "--access-logformat", fmt)
    body = httpx.get(server.url + "/measured", timeout=5).content
    assert wait_for_line(log, "/measured") == f"200 /measured {len(body)}"


def test_core_replies_are_logged_too(serve: StartServer, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    server = serve(
        "apps.basic:hello", "--access-logfile", str(log), "--access-logformat", "%(s)s %(r)s", "--max-body-size", "10"
    )
    httpx.post(server.url + "/big", content=b"x" * 100, timeout=5)
    assert wait_for_line(log, "POST") == "413 POST /big HTTP/1.1"


def test_off_by_default_and_uvicorn_flag_writes_to_stdout(serve: StartServer) -> None:
    quiet = serve("apps.basic:hello")
    httpx.get(quiet.url + "/quiet", timeout=5)
    loud = serve("apps.basic:hello", "--access-log")
    httpx.get(loud.url + "/loud", timeout=5)
    loud.wait_log('"GET /loud HTTP/1.1" 200')
    assert "/quiet" not in quiet.log()
