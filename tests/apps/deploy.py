"""An app for the platform tests (systemd, --drain-delay), WSGI and ASGI alike.

- ``/env``: the process environment's systemd variables (LISTEN_*, NOTIFY_SOCKET, WATCHDOG_*) as
  JSON: what the app can see of them (nothing, as rsgi removes them).
- ``/pid``: the worker's pid.
- anything else: "ok".

``$RSGI_TEST_IMPORT_DELAY`` seconds of sleep at import make a slow-booting worker.
"""

from __future__ import annotations

import json
import os
import time

time.sleep(float(os.environ.get("RSGI_TEST_IMPORT_DELAY") or 0))

SYSTEMD_PREFIXES = ("LISTEN_", "NOTIFY_", "WATCHDOG_")


def answer(path: str) -> tuple[str, bytes]:
    if path == "/env":
        seen = {k: v for k, v in os.environ.items() if k.startswith(SYSTEMD_PREFIXES)}
        return "application/json", json.dumps(seen).encode()
    if path == "/pid":
        return "text/plain", str(os.getpid()).encode()
    return "text/plain", b"ok"


def app(environ, start_response):
    kind, body = answer(environ["PATH_INFO"])
    start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    kind, body = answer(scope["path"])
    headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
