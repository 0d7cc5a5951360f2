"""Structured logs: `--access-log-format json` (written by the Rust core, no GIL) and `--log-format
json` (Python `logging`, the core's records included), under WSGI and ASGI, with hostile input
sent as raw bytes. Every line either log writes must pass `json.loads`; the text access log must
not let a client forge a line or a field."""

from __future__ import annotations

import datetime
import json
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Server, StartServer, raw_request
from rsgi.cli import parse
from rsgi.config import ConfigError, build

APPS = {"wsgi": "apps.logs_json:wsgi", "asgi": "apps.logs_json:asgi"}
ACCESS_FIELDS = [
    "time",
    "remote_addr",
    "method",
    "path",
    "query",
    "protocol",
    "status",
    "bytes",
    "duration_us",
    "referer",
    "user_agent",
    "request_id",
    "pid",
]
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
Record = dict[str, Any]


@pytest.fixture(params=sorted(APPS))
def app(request: pytest.FixtureRequest) -> str:
    return APPS[request.param]


def json_lines(text: str) -> list[Record]:
    """Every line of `text` as a JSON object; the first line that is not one fails the test."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        assert line.isascii() and line.isprintable(), f"line {n} is not printable ASCII: {line!r}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise AssertionError(f"line {n} is not JSON ({e}): {line!r}\n---\n{text}") from None
        assert isinstance(record, dict), line
        out.append(record)
    return out


def wait_records(read: Callable[[], str], pred: Callable[[Record], bool], count: int = 1) -> list[Record]:
    """Parses everything `read()` returns until `count` records satisfy `pred`; returns those."""
    deadline = time.monotonic() + 10
    while True:
        found = [r for r in json_lines(read()) if pred(r)]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, f"{len(found)} of {count} records found in:\n{read()}"
            return found
        time.sleep(0.05)


def file_reader(path: Path) -> Callable[[], str]:
    # Only whole lines: the writer thread may be in the middle of a batch.
    return lambda: path.read_text().rpartition("\n")[0] if path.exists() else ""


def whole_lines(server: Server) -> Callable[[], str]:
    return lambda: server.log().rpartition("\n")[0]


def check_time(value: str) -> None:
    assert RFC3339_UTC.match(value), value
    when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) < 120


# -- the JSON access log --------------------------------------------------------------------------


def test_access_log_fields(serve: StartServer, tmp_path: Path, app: str) -> None:
    log = tmp_path / "access.jsonl"
    server = serve(app, "--access-logfile", str(log), "--access-log-format", "json")
    headers = {"User-Agent": "tester/1", "Referer": "http://r/x", "X-Request-ID": "req-42"}
    body = httpx.get(server.url + "/fields?a=1&b=%22", headers=headers, timeout=5).content
    (rec,) = wait_records(file_reader(log), lambda r: r["path"] == "/fields")
    assert list(rec) == ACCESS_FIELDS
    check_time(rec.pop("time"))
    duration = rec.pop("duration_us")
    assert isinstance(duration, int) and 0 < duration < 5_000_000
    assert rec.pop("pid") in server.worker_pids()
    assert rec == {
        "remote_addr": "127.0.0.1",
        "method": "GET",
        "path": "/fields",
        "query": "a=1&b=%22",
        "protocol": "HTTP/1.1",
        "status": 200,
        "bytes": len(body),
        "referer": "http://r/x",
        "user_agent": "tester/1",
        "request_id": "req-42",
    }
    # The readiness probe's request: absent headers are null, not "-".
    (probe,) = wait_records(file_reader(log), lambda r: r["path"] == "/" and r["user_agent"].startswith("python-httpx"))
    assert probe["referer"] is None and probe["request_id"] is None and probe["query"] == ""


def test_error_responses_are_logged_with_their_status(serve: StartServer, tmp_path: Path, app: str) -> None:
    log = tmp_path / "access.jsonl"
    server = serve(app, "--access-logfile", str(log), "--access-log-format", "JSON", "--max-body-size", "10")
    httpx.get(server.url + "/boom", timeout=5)
    httpx.post(server.url + "/big", content=b"x" * 100, timeout=5)
    by_path = {r["path"]: r for r in wait_records(file_reader(log), lambda r: r["path"] in ("/boom", "/big"), 2)}
    assert (by_path["/boom"]["status"], by_path["/big"]["status"], by_path["/big"]["method"]) == (500, 413, "POST")


# Header values that pass hyper's parser: quotes, backslashes, tabs, obs-text (bytes >= 0x80, not
# necessarily UTF-8) and length. Each is logged as one JSON character per byte (latin-1).
HOSTILE_HEADERS = {
    "user-agent": b'a"b\\c\td \x80\xff\xc3\xa9 "}, "status": 999, "x": "',
    "referer": b'\\"' * 500 + b"\\",
    "x-request-id": b"\xfe" * 4000 + b"</script>" + b"x" * 3000,
}
# Requests hyper refuses (400, never logged) or that reach the app with odd targets; whatever
# happens to each, every line of the log must still be JSON.
HOSTILE_REQUESTS = [
    b"GET /ctl\x01 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /del\x7f HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /latin\xff\xfe HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /nul HTTP/1.1\r\nHost: t\r\nUser-Agent: a\x00b\r\n\r\n",
    b"GET /cr HTTP/1.1\r\nHost: t\r\nUser-Agent: a\rforged\r\n\r\n",
    b"GET /lf HTTP/1.1\r\nHost: t\r\nUser-Agent: a\nforged\r\n\r\n",
    b"GET /esc HTTP/1.1\r\nHost: t\r\nUser-Agent: \x1b[31mred\r\n\r\n",
    b'GET /q"uote\\back?x="y"&z=\\ HTTP/1.1\r\nHost: t\r\n\r\n',
    b"GET /pct%00%0A%22%5C%FF?%0D%0A HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /" + b"a" * 8000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
]


def request_line_target(raw: bytes) -> bytes:
    return raw.split(b"\r\n", 1)[0].split(b" ")[1]


def test_hostile_bytes_stay_inside_json_strings(serve: StartServer, tmp_path: Path, app: str) -> None:
    log = tmp_path / "access.jsonl"
    server = serve(app, "--access-logfile", str(log), "--access-log-format", "json")
    assert server.port is not None
    head = b"".join(k.encode() + b": " + v + b"\r\n" for k, v in HOSTILE_HEADERS.items())
    request = b"GET /hostile?q=%22 HTTP/1.1\r\nHost: t\r\n" + head + b"Connection: close\r\n\r\n"
    reply = raw_request(server.port, request)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    answered = []
    for raw in HOSTILE_REQUESTS:
        status = raw_request(server.port, raw, read_until_close=False)[9:12]  # kept alive if served
        if status == b"200":
            answered.append(request_line_target(raw))
    httpx.get(server.url + "/last", timeout=5)  # lines are written in order: this one comes last
    wait_records(file_reader(log), lambda r: r["path"] == "/last")
    records = json_lines(file_reader(log)())  # every line, not just the ones looked for
    (rec,) = [r for r in records if r["path"] == "/hostile"]
    for name, key in [("user-agent", "user_agent"), ("referer", "referer"), ("x-request-id", "request_id")]:
        # latin-1 gives back the exact bytes received, whatever they were
        assert rec[key].encode("latin-1") == HOSTILE_HEADERS[name]
    assert rec["status"] == 200 and rec["query"] == "q=%22"
    # the targets that were served are logged as sent (latin-1 as well), the others not at all
    logged = {(r["path"] + ("?" + r["query"] if r["query"] else "")).encode("latin-1") for r in records}
    for target in answered:
        assert target in logged
    assert len(records) == 3 + len(answered)  # the readiness probe, /hostile, the answered, /last


# -- the text access log: no forged lines or fields ---------------------------------------------

COMBINED = re.compile(r'^127\.0\.0\.1 - - \[[^\]]+\] "[^"]*" \d{3} (\d+|-) "[^"]*" "[^"]*"$')


def test_text_access_log_cannot_be_forged(serve: StartServer, tmp_path: Path) -> None:
    """gunicorn's default format: a client's quotes, backslashes and non-ASCII bytes are written as
    nginx's \\xHH escapes, so a User-Agent cannot close its field and add fake ones, and a CR or
    LF cannot start a line (hyper refuses them; the core would escape them)."""
    log = tmp_path / "access.log"
    server = serve(APPS["wsgi"], "--access-logfile", str(log))
    assert server.port is not None
    forged = b'x" 200 1 "-" "forged\xff\\'
    raw_request(server.port, b"GET /ua HTTP/1.1\r\nHost: t\r\nUser-Agent: " + forged + b"\r\nConnection: close\r\n\r\n")
    for raw in HOSTILE_REQUESTS:
        raw_request(server.port, raw, read_until_close=False)
    httpx.get(server.url + "/last", timeout=5)
    deadline = time.monotonic() + 10
    while "/last" not in file_reader(log)() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = file_reader(log)().splitlines()
    for line in lines:
        assert line.isascii() and line.isprintable(), line
        assert COMBINED.match(line), line
    (ua,) = [line for line in lines if '"GET /ua HTTP/1.1"' in line]
    assert ua.endswith(r'"-" "x\x22 200 1 \x22-\x22 \x22forged\xFF\x5C"'), ua


# -- the JSON error log -------------------------------------------------------------------------

BOOM = b"GET /boom%0Aforged%1B[31m%22%5C%E9 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def test_app_exception_is_one_json_record_with_its_traceback(serve: StartServer, app: str) -> None:
    server = serve(app, "--log-format", "json")
    assert server.port is not None
    assert raw_request(server.port, BOOM).startswith(b"HTTP/1.1 500")
    (err,) = wait_records(whole_lines(server), lambda r: "RuntimeError" in r.get("exception", ""))
    assert err["level"] == "ERROR" and err["pid"] in server.worker_pids()
    check_time(err["time"])
    # The percent-decoded path (a newline, an ANSI escape, a quote, a backslash) is in the message
    # of the exception, escaped on the line and intact once parsed.
    assert err["exception"].startswith("Traceback (most recent call last):\n")
    assert 'RuntimeError: boom at /boom\nforged\x1b[31m"\\' in err["exception"]
    (warning,) = wait_records(whole_lines(server), lambda r: r["logger"] == "apps.logs_json")
    assert warning["level"] == "WARNING"
    assert warning["message"].startswith('about to fail at /boom\nforged\x1b[31m"\\')
    assert warning["path_info"] == warning["message"].removeprefix("about to fail at ")
    assert warning["attempt"] == 1 and warning["opaque"].startswith("<object object at ")
    # The supervisor's own records, from before the first request, are JSON too.
    wait_records(whole_lines(server), lambda r: r["logger"].startswith("rsgi.") and "listening on" in r["message"])


def test_everything_on_one_stream_is_json(serve: StartServer) -> None:
    """`--log-format json --access-logfile - --access-log-format json`: the access log on stdout
    and the error log (the supervisor's, the workers', the app's and the Rust core's records, which
    reach Python through the core's log queue) on stderr, read here as one stream, as a container
    runtime does: every line is one JSON object, from start-up to shutdown."""
    server = serve(
        APPS["wsgi"], "--log-format", "json", "--access-logfile", "-", "--access-log-format", "json", "--workers", "2"
    )
    assert server.port is not None
    for _ in range(20):
        httpx.get(server.url + "/ok", timeout=5)
    httpx.get(server.url + "/short", timeout=5)
    raw_request(server.port, BOOM)
    wait_records(whole_lines(server), lambda r: r.get("path") == "/short")
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    records = json_lines(server.log())
    access = [r for r in records if "status" in r]
    errors = [r for r in records if "level" in r]
    assert len(access) + len(errors) == len(records)
    assert {r["path"] for r in access} >= {"/ok", "/short", "/boom%0Aforged%1B[31m%22%5C%E9"}
    assert all(list(r) == ACCESS_FIELDS for r in access)
    core = [r for r in errors if r["logger"].startswith("_rsgi.")]
    assert any("Content-Length" in r["message"] and r["level"] == "WARNING" for r in core), core
    assert any("worker stopping" in r["message"] for r in core), core
    assert any("RuntimeError" in r.get("exception", "") for r in errors)
    assert len({r["pid"] for r in errors}) >= 2  # the supervisor and the workers


def test_log_config_wins_over_log_format(serve: StartServer, tmp_path: Path) -> None:
    """Precedence: a --log-config file configures logging entirely; --log-format json beside it is
    reported and has no effect. The file can use rsgi's formatter by name."""
    text = tmp_path / "text.json"
    text.write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"plain": {"format": "CUSTOM %(levelname)s %(name)s: %(message)s"}},
                "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "plain"}},
                "root": {"handlers": ["err"], "level": "INFO"},
            }
        )
    )
    server = serve(APPS["wsgi"], "--log-config", str(text), "--log-format", "json")
    out = server.wait_log("--log-format json has no effect with --log-config")
    assert "CUSTOM WARNING rsgi" in out and '{"time"' not in out

    own = tmp_path / "json.json"
    own.write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"json": {"()": "rsgi.logs.JsonFormatter"}},
                "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "json"}},
                "root": {"handlers": ["err"], "level": "INFO"},
            }
        )
    )
    server = serve(APPS["wsgi"], "--log-config", str(own))
    wait_records(whole_lines(server), lambda r: "listening on" in r["message"])


# -- the settings -------------------------------------------------------------------------------


def test_settings_from_every_source(tmp_path: Path) -> None:
    app = APPS["wsgi"]
    default = build({"app": app}, {})
    assert default.log_format == "text" and default.core().access_log_format.startswith("%(h)s")
    flags, _ = parse([app, "--log-format", "JSON", "--access-log-format", " Json "])
    cfg = build(flags, {})
    assert (cfg.log_format, cfg.core().access_log_format) == ("json", "json")
    cfg = build({"app": app}, {"RSGI_LOG_FORMAT": "json", "RSGI_ACCESS_LOG_FORMAT": "json"})
    assert (cfg.log_format, cfg.core().access_log_format) == ("json", "json")
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text('access_log_format = "json"\nlog_format = "json"\naccesslog = "-"\n')
    cfg = build({"app": app, "config": str(conf)}, {})
    assert (cfg.log_format, cfg.core().access_log_format, cfg.core().access_log) == ("json", "json", "-")
    with pytest.raises(ConfigError, match="log_format"):
        build({"app": app}, {"RSGI_LOG_FORMAT": "logfmt"})
