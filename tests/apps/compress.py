"""Apps for the --compress tests (tests/test_compression.py), one WSGI and one ASGI, same routes:

- ``/page``: ``PAGE``, an HTML page of about 20 KB, with its Content-Length.
- ``/stream?PATH``: a streamed text/event-stream of ``CHUNK_ONE``, then, once the file PATH exists
  (the test creates it when it has decoded the first chunk; 10 s at most), ``CHUNK_TWO``.
- ``/gzipped``: ``PAGE`` gzip-compressed by the app, with ``Content-Encoding: gzip`` (what Django's
  GZipMiddleware sends).
"""

from __future__ import annotations

import asyncio
import gzip
import os
import time

PAGE = (
    b"<!doctype html>\n<html><head><title>compressed</title></head><body><ul>\n"
    + b"".join(b'<li class="item"><a href="/items/%d">item %d</a></li>\n' % (i, i) for i in range(400))
    + b"</ul></body></html>\n"
)
CHUNK_ONE = b"data: the first event\n\n"
CHUNK_TWO = b"data: the second event, after the test saw the first\n\n"


def released(path: str) -> bool:
    return not path or os.path.exists(path)


def app(environ, start_response):
    path, query = environ["PATH_INFO"], environ.get("QUERY_STRING", "")
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])

        def events():
            yield CHUNK_ONE
            deadline = time.monotonic() + 10
            while not released(query) and time.monotonic() < deadline:
                time.sleep(0.02)
            yield CHUNK_TWO

        return events()
    headers = [("Content-Type", "text/html; charset=utf-8")]
    body = PAGE
    if path == "/gzipped":
        body = gzip.compress(PAGE, mtime=0)
        headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
    start_response("200 OK", [*headers, ("Content-Length", str(len(body)))])
    return [body]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    path, query = scope["path"], scope["query_string"].decode()
    if path == "/stream":
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": CHUNK_ONE, "more_body": True})
        deadline = time.monotonic() + 10
        while not released(query) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await send({"type": "http.response.body", "body": CHUNK_TWO})
        return
    headers = [(b"content-type", b"text/html; charset=utf-8")]
    body = PAGE
    if path == "/gzipped":
        body = gzip.compress(PAGE, mtime=0)
        headers += [(b"content-encoding", b"gzip"), (b"vary", b"Accept-Encoding")]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
