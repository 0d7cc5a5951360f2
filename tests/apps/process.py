"""Apps for the process-manager tests: pids, stuck requests, growing memory."""

from __future__ import annotations

import asyncio
import os
import time

HOARD: list[bytes] = []


def pid(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


def stuck(environ, start_response):
    """Sleeps for the number of seconds in the query string (a view stuck on I/O)."""
    time.sleep(float(environ.get("QUERY_STRING") or 60))
    start_response("200 OK", [])
    return [b"woke up"]


def hoard(environ, start_response):
    """Keeps 20 MB more on every call: a leak."""
    HOARD.append(os.urandom(1024) * (20 * 1024))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


async def blocking_loop(scope, receive, send):
    """An ASGI app that blocks its event loop (a sync call inside async code)."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/block":
        time.sleep(60)
    await asyncio.sleep(0)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})


def getenv(environ, start_response):
    """The worker's os.environ value of the variable named in the query string."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [os.environ.get(environ["QUERY_STRING"], "<unset>").encode()]


def logline(environ, start_response):
    """Writes the query string to wsgi.errors (the worker's error log) and answers its pid."""
    environ["wsgi.errors"].write(f"logline {environ['QUERY_STRING']}\n")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
