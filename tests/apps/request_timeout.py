"""Apps for tests/test_request_timeout.py (--request-timeout). They append what they do to
``$RSGI_TEST_MARKER``, one line each, so a test can tell what ran, what was cancelled and what an
app did after the core had already answered 504.

WSGI (`wsgi`):
- ``/sleep/<S>/<TAG>``: marks "enter TAG", sleeps S seconds, marks "done TAG", answers "slept TAG".
- ``/stream/<N>/<S>``: streams N chunks "chunk <i>\\n" from a generator, S seconds apart (the
  headers leave with the first chunk, at once).
- anything else: the worker's pid.

ASGI (`asgi`):
- ``/sleep/<S>/<TAG>``: marks "enter TAG", awaits S seconds; cancelled, it marks "cancelled TAG"
  and lets the cancellation go on.
- ``/stubborn/<S>/<TAG>``: as /sleep, but it swallows the cancellation and sends a streamed
  response anyway (start, two body messages), then marks "sent TAG": all of it must go nowhere,
  without an error.
- ``/stream/<N>/<S>``: as the WSGI one, from `send` with more_body.
- anything else: the worker's pid.
"""

from __future__ import annotations

import asyncio
import os
import time


def mark(line: str) -> None:
    with open(os.environ["RSGI_TEST_MARKER"], "a") as f:
        f.write(line + "\n")


def _parts(path: str) -> list[str]:
    return path.strip("/").split("/")


def wsgi(environ, start_response):
    kind, *args = _parts(environ["PATH_INFO"])
    if kind == "sleep":
        seconds, tag = float(args[0]), args[1]
        mark(f"enter {tag}")
        time.sleep(seconds)
        mark(f"done {tag}")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"slept {tag}".encode()]
    if kind == "stream":
        count, pause = int(args[0]), float(args[1])

        def chunks():
            for i in range(count):
                if i:
                    time.sleep(pause)
                yield f"chunk {i}\n".encode()

        start_response("200 OK", [("Content-Type", "text/plain")])
        return chunks()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    kind, *args = _parts(scope["path"])
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
    if kind in ("sleep", "stubborn"):
        seconds, tag = float(args[0]), args[1]
        mark(f"enter {tag}")
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            mark(f"cancelled {tag}")
            if kind == "sleep":
                raise
        await send(start)
        await send({"type": "http.response.body", "body": b"late ", "more_body": True})
        await send({"type": "http.response.body", "body": b"answer"})
        mark(f"sent {tag}")
        return
    if kind == "stream":
        count, pause = int(args[0]), float(args[1])
        await send(start)
        for i in range(count):
            if i:
                await asyncio.sleep(pause)
            await send({"type": "http.response.body", "body": f"chunk {i}\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await send(start)
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
