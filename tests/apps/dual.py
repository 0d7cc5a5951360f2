"""Apps for tests/test_dual.py: an ASGI app (`asgi`) and a WSGI app (`wsgi`) served together by
one worker (`rsgi apps.dual:asgi --wsgi apps.dual:wsgi`). Every answer says which app gave it.

WSGI (`wsgi`), HTTP:
- ``/slow?SECONDS`` appends "slow <pid>" to ``$RSGI_TEST_MARKER`` as soon as it is entered, sleeps,
  then answers "wsgi slept <SECONDS>".
- anything else: "wsgi pid=<pid> path=<PATH_INFO> thread=<thread name>".

ASGI (`asgi`):
- lifespan: startup puts ``started=yes`` in the lifespan state; shutdown appends
  "lifespan shutdown <pid>" to ``$RSGI_TEST_MARKER``.
- HTTP ``/sse/ticks?N``: streams N lines "tick <i>" 0.5 s apart (a long-lived async response).
- HTTP ``/sse/block?SECONDS``: blocks the event loop (a sync call inside async code).
- any other HTTP path: "asgi pid=<pid> path=<path> thread=<thread name> lifespan=<started>".
- WebSocket, any path: accepts, answers the text "whoami" with "asgi pid=<pid> path=<path>",
  echoes other text and bytes; on disconnect appends "ws closed <code>" to ``$RSGI_TEST_MARKER``.

On import the module appends "dual <pid>" to ``$RSGI_TEST_DUAL_IMPORT_LOG`` (when set), so a
test can count which processes imported it.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

if os.environ.get("RSGI_TEST_DUAL_IMPORT_LOG"):
    with open(os.environ["RSGI_TEST_DUAL_IMPORT_LOG"], "a") as _f:
        _f.write(f"dual {os.getpid()}\n")


def mark(line: str) -> None:
    path = os.environ.get("RSGI_TEST_MARKER")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def wsgi(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/slow":
        seconds = float(environ.get("QUERY_STRING") or 1)
        mark(f"slow {os.getpid()}")
        time.sleep(seconds)
        body = f"wsgi slept {seconds}"
    else:
        assert environ["wsgi.version"] == (1, 0)
        body = f"wsgi pid={os.getpid()} path={path} thread={threading.current_thread().name}"
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)
    else:
        await http(scope, receive, send)


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["started"] = "yes"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            mark(f"lifespan shutdown {os.getpid()}")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def http(scope, receive, send):
    path, query = scope["path"], scope["query_string"].decode()
    headers = [(b"content-type", b"text/plain")]
    if path == "/sse/ticks":
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i in range(int(query or 3)):
            if i:
                await asyncio.sleep(0.5)
            await send({"type": "http.response.body", "body": f"tick {i}\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/sse/block":
        time.sleep(float(query or 60))
    started = scope.get("state", {}).get("started", "no")
    body = f"asgi pid={os.getpid()} path={path} thread={threading.current_thread().name} lifespan={started}".encode()
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def websocket(scope, receive, send):
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            mark(f"ws closed {message['code']}")
            return
        text = message.get("text")
        if text == "whoami":
            await send({"type": "websocket.send", "text": f"asgi pid={os.getpid()} path={scope['path']}"})
        elif text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
