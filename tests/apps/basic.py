"""Small WSGI apps the tests serve (one module, several callables)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time


def hello(environ, start_response):
    body = b"Hello, world!"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def environ_json(environ, start_response):
    """Echo the environ (JSON-able parts) and a digest of the body."""
    body = environ["wsgi.input"].read()
    out = {k: v for k, v in environ.items() if isinstance(v, str | int | bool)}
    out["wsgi.version"] = list(environ["wsgi.version"])
    out["body_sha256"] = hashlib.sha256(body).hexdigest()
    out["body_len"] = len(body)
    data = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [data]


def stream(environ, start_response):
    """A generator: chunks must reach the client as they are yielded."""
    delay = float(environ.get("QUERY_STRING") or 0)
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        for i in range(5):
            yield f"chunk {i}\n".encode()
            time.sleep(delay)

    return gen()


CLOSED: list[str] = []


class Closing:
    """An iterable with close(); writes a marker file so a test can see close() ran."""

    def __init__(self, marker: str, fail_at: int | None = None) -> None:
        self.marker = marker
        self.fail_at = fail_at

    def __iter__(self):
        for i in range(3):
            if i == self.fail_at:
                raise RuntimeError("failing mid-stream")
            yield b"part %d\n" % i
            time.sleep(0.01)

    def close(self) -> None:
        with open(self.marker, "a") as f:
            f.write("closed\n")


def closing(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    q = environ.get("QUERY_STRING", "")
    fail_at = int(q.split("fail=")[1]) if "fail=" in q else None
    return Closing(os.environ["RSGI_TEST_MARKER"], fail_at)


def raises(environ, start_response):
    raise RuntimeError("boom before start_response")


def not_iterable(environ, start_response):
    start_response("200 OK", [])
    return 42


def no_start_response(environ, start_response):
    return [b"forgot"]


def bad_header(environ, start_response):
    start_response("200 OK", [("X-Evil", "a\r\nInjected: yes")])
    return [b"x"]


def exc_info_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("late failure")
    except ValueError:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"replaced"]


def file_wrapper(environ, start_response):
    path = os.environ["RSGI_TEST_FILE"]
    f = open(path, "rb")  # noqa: SIM115 - closed by the server through the wrapper
    q = environ.get("QUERY_STRING", "")
    if q.startswith("skip="):
        f.seek(int(q[5:]))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](f, 8192)


def write_legacy(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    return [b"returned"]


def slow(environ, start_response):
    seconds = float(environ.get("QUERY_STRING") or 1)
    time.sleep(seconds)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"slept %.1f" % seconds]


def spin(environ, start_response):
    """Keeps the GIL busy in pure Python for ?SECONDS (0 answers at once), or until the file named
    by the X-Stop-File header exists (looked for every 65,536 turns, about every 10 ms)."""
    seconds = float(environ.get("QUERY_STRING") or 0)
    stop_file = environ.get("HTTP_X_STOP_FILE", "")
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        if stop_file and n % 65536 == 0 and os.path.exists(stop_file):
            break
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"spun %d" % n]


def pid(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


def errors_stream(environ, start_response):
    environ["wsgi.errors"].write("message to wsgi.errors\n")
    start_response("200 OK", [])
    return [b"ok"]


def validated():
    from wsgiref.validate import validator

    return validator(environ_json)
