"""Apps for the edge tests (HTTP/2, TLS, proxy headers, health), one WSGI and one ASGI router.

Routes (both interfaces):

- ``/environ`` (WSGI) / ``/scope`` (ASGI): the environ's JSON-able values, or the scope, as JSON.
- ``/echo``: the request body back, unchanged.
- ``/big?N``: N bytes (default 1 MiB) of a repeating, position-dependent pattern (see ``pattern``).
- ``/slow?S``: appends the pid to ``$RSGI_TEST_MARKER`` (when set) as soon as it is entered, sleeps S seconds, then
  answers "slept S" (ASGI sleeps with asyncio, so many slow requests run at once).
- anything else: "app saw PATH".

Every call appends its path to ``$RSGI_TEST_CALLS`` when set, so a test can tell whether the app
was called at all. ASGI websocket connections go to ``apps.asgi_ws:app`` (``/echo`` echoes).
"""

from __future__ import annotations

import asyncio
import json
import os
import time


def pattern(n: int) -> bytes:
    """n bytes in which every 8-byte block holds its own offset: a shifted or dropped block shows."""
    blocks = (n + 7) // 8
    return b"".join(b"%07x\n" % (i % 0x10000000) for i in range(blocks))[:n]


def record_call(path: str) -> None:
    calls = os.environ.get("RSGI_TEST_CALLS")
    if calls:
        with open(calls, "a") as f:
            f.write(path + "\n")


def mark_entered() -> None:
    marker = os.environ.get("RSGI_TEST_MARKER")
    if marker:
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = environ.get("QUERY_STRING", "")
    record_call(path)
    body = environ["wsgi.input"].read()
    ctype = "text/plain"
    if path == "/environ":
        out = {k: v for k, v in environ.items() if isinstance(v, str | int | bool)}
        out["body_len"] = len(body)
        data = json.dumps(out).encode()
        ctype = "application/json"
    elif path == "/echo":
        data = body
        ctype = "application/octet-stream"
    elif path == "/big":
        data = pattern(int(query or 1 << 20))
    elif path == "/slow":
        mark_entered()
        seconds = float(query or 1)
        time.sleep(seconds)
        data = b"slept %.1f" % seconds
    else:
        data = b"app saw " + path.encode("latin-1")
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(data)))])
    return [data]


async def read_body(receive) -> bytes:
    body = b""
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return body
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


def scope_json(scope, body: bytes) -> bytes:
    out = {
        k: (v.decode("latin-1") if isinstance(v, bytes) else v)
        for k, v in scope.items()
        if k in ("type", "http_version", "method", "scheme", "path", "query_string", "root_path")
    }
    out["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    out["client"] = list(scope["client"]) if scope["client"] else None
    out["server"] = list(scope["server"]) if scope["server"] else None
    out["body_len"] = len(body)
    return json.dumps(out).encode()


async def asgi_app(scope, receive, send):
    if scope["type"] == "websocket":
        from apps.asgi_ws import app as ws_app

        return await ws_app(scope, receive, send)
    if scope["type"] != "http":
        return None  # lifespan: not spoken
    path = scope["path"]
    query = scope["query_string"].decode()
    record_call(path)
    body = await read_body(receive)
    ctype = b"text/plain"
    if path == "/scope":
        data = scope_json(scope, body)
        ctype = b"application/json"
    elif path == "/echo":
        data = body
        ctype = b"application/octet-stream"
    elif path == "/big":
        data = pattern(int(query or 1 << 20))
    elif path == "/slow":
        mark_entered()
        seconds = float(query or 1)
        await asyncio.sleep(seconds)
        data = b"slept %.1f" % seconds
    else:
        data = b"app saw " + path.encode()
    headers = [(b"content-type", ctype), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": data})
