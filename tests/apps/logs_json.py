"""Apps for tests/test_logs_json.py: the same routes under WSGI and ASGI.

- ``/boom...``: logs a warning with ``extra=`` fields (one JSON cannot hold), then raises an
  exception whose message carries the percent-decoded path (control characters, latin-1 bytes).
- ``/short``: declares a longer Content-Length than it sends, so the Rust core logs a warning
  (a record that crosses the core's log queue).
- anything else: 200 with a small body.
"""

from __future__ import annotations

import logging

log = logging.getLogger("apps.logs_json")
BODY = b"logged\n"


def _boom(path: str) -> None:
    log.warning("about to fail at %s", path, extra={"path_info": path, "opaque": object(), "attempt": 1})
    raise RuntimeError(f"boom at {path}")


def wsgi(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/boom"):
        _boom(path)
    if path == "/short":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return [b"abc"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            await send({"type": msg["type"] + ".complete"})
            if msg["type"] == "lifespan.shutdown":
                return
    path = scope["path"]
    if path.startswith("/boom"):
        _boom(path)
    if path == "/short":
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"100")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"abc"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": BODY})
