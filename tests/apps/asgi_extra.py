"""More ASGI apps for tests/asgi: failures, disconnects, backpressure, pathsend, lifespan, ASGI 2.

Apps that fail on purpose answer `/ready` normally, so `serve(..., ready_path="/ready")` works.
Marker files (`RSGI_TEST_MARKER`) let a test see what happened inside the worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os

from apps.asgi_basic import hello


def marker(line: str) -> None:
    with open(os.environ["RSGI_TEST_MARKER"], "a") as f:
        f.write(line + "\n")


async def read_body(receive) -> bytes:
    body = b""
    while True:
        msg = await receive()
        assert msg["type"] == "http.request", msg
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


async def text(send, body: bytes, status: int = 200, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


async def scope_probe(scope, receive, send):
    """Answers with repr() of every scope value (so a test can literal_eval them, types and all),
    plus what each `http.request` message carried and a digest of the whole body."""
    if scope["type"] != "http":
        return
    body, messages = b"", []
    while True:
        msg = await receive()
        assert msg["type"] == "http.request", msg
        chunk = msg.get("body", b"")
        messages.append((type(chunk).__name__, len(chunk), msg.get("more_body", False)))
        body += chunk
        if not msg.get("more_body"):
            break
    out = {k: repr(v) for k, v in scope.items()}
    out["_messages"] = repr(messages)
    out["_sha256"] = repr(hashlib.sha256(body).hexdigest())
    await text(send, json.dumps(out).encode(), headers=[(b"content-type", b"application/json")])


# -- failures ---------------------------------------------------------------------------------


async def raises_before_start(scope, receive, send):
    if scope["type"] != "http" or scope["path"] == "/ready":
        return await hello(scope, receive, send)
    raise RuntimeError("boom before http.response.start")


async def raises_after_start(scope, receive, send):
    """Raises after http.response.start but before any body: nothing has reached the client yet."""
    if scope["type"] != "http" or scope["path"] == "/ready":
        return await hello(scope, receive, send)
    await send({"type": "http.response.start", "status": 201, "headers": [(b"x-started", b"yes")]})
    raise RuntimeError("boom between start and body")


async def raises_mid_stream(scope, receive, send):
    if scope["type"] != "http" or scope["path"] == "/ready":
        return await hello(scope, receive, send)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"first part\n", "more_body": True})
    await asyncio.sleep(0.05)
    raise RuntimeError("boom mid-stream")


async def no_response(scope, receive, send):
    if scope["type"] != "http" or scope["path"] == "/ready":
        return await hello(scope, receive, send)


async def bad_header(scope, receive, send):
    if scope["type"] != "http" or scope["path"] == "/ready":
        return await hello(scope, receive, send)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-ok", b"fine\r\nX-Evil: Injected")]})
    await send({"type": "http.response.body", "body": b"should never be sent"})


# -- disconnects --------------------------------------------------------------------------------


async def wait_disconnect(scope, receive, send):
    """Reads the body, then waits on receive() without answering; records what it got."""
    if scope["type"] != "http" or scope["path"] == "/ready":
        return await hello(scope, receive, send)
    body = await read_body(receive)
    marker(f"body {len(body)}")
    msg = await asyncio.wait_for(receive(), 20)
    marker(msg["type"])


async def receive_after_response(scope, receive, send):
    """Answers completely, then calls receive() again and records the message."""
    if scope["type"] != "http" or scope["path"] == "/ready":
        return await hello(scope, receive, send)
    await read_body(receive)
    await text(send, b"done")
    try:
        msg = await asyncio.wait_for(receive(), 10)
    except asyncio.TimeoutError:
        marker("timeout")
    else:
        marker(msg["type"])


# -- responses ------------------------------------------------------------------------------------

BIG_CHUNK = 64 * 1024
BIG_CHUNKS = 800  # 50 MiB
PROGRESS = {"sent": 0, "done": False}


def big_chunk(i: int) -> bytes:
    return bytes([i % 251]) * BIG_CHUNK


def big_body_sha256() -> str:
    digest = hashlib.sha256()
    for i in range(BIG_CHUNKS):
        digest.update(big_chunk(i))
    return digest.hexdigest()


async def big_stream(scope, receive, send):
    """`/big` streams 50 MiB in 64 KiB chunks, counting what send() accepted; `/progress` tells."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/progress":
        return await text(send, json.dumps(PROGRESS).encode())
    if scope["path"] != "/big":
        return await hello(scope, receive, send)
    PROGRESS.update(sent=0, done=False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/x-big")]})
    for i in range(BIG_CHUNKS):
        await send({"type": "http.response.body", "body": big_chunk(i), "more_body": True})
        PROGRESS["sent"] = i + 1
    await send({"type": "http.response.body", "body": b""})
    PROGRESS["done"] = True


async def pathsend(scope, receive, send):
    if scope["type"] != "http":
        return
    advertised = ",".join(sorted(scope.get("extensions") or {}))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream"), (b"x-extensions", advertised.encode())],
        }
    )
    await send({"type": "http.response.pathsend", "path": os.environ["RSGI_TEST_FILE"]})


BARRIER = {"waiting": 0, "event": None}


async def barrier(scope, receive, send):
    """`/wait?N`: each request waits until N requests are in the app at once (10 s at most), so
    N of them only succeed if the worker really runs them concurrently."""
    if scope["type"] != "http":
        return
    await read_body(receive)
    if scope["path"] != "/wait":
        return await text(send, b"ready")
    n = int(scope["query_string"])
    if BARRIER["event"] is None:
        BARRIER["event"] = asyncio.Event()
    event = BARRIER["event"]
    BARRIER["waiting"] += 1
    if BARRIER["waiting"] >= n:
        event.set()
    try:
        await asyncio.wait_for(event.wait(), 10)
    except asyncio.TimeoutError:
        return await text(send, b"only %d at once" % BARRIER["waiting"], status=504)
    await text(send, b"all %d at once" % n)


async def loop_name(scope, receive, send):
    if scope["type"] != "http":
        return
    await text(send, type(asyncio.get_running_loop()).__module__.encode())


class Asgi2:
    """An ASGI 2 ("double callable") app: built from the scope, then awaited with receive/send."""

    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        if self.scope["type"] != "http":
            return
        await read_body(receive)
        await text(send, b"asgi2 " + self.scope["path"].encode())


# -- lifespan -------------------------------------------------------------------------------------


async def lifespan_state(scope, receive, send):
    """Puts a value into the lifespan state at startup; records startup and shutdown in the marker."""
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                scope["state"]["x"] = "set at startup"
                scope["state"]["pid"] = os.getpid()
                marker("startup")
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                marker("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    # A request changing its copy of the state must not change what the next request sees.
    state = scope.get("state")
    await scope_probe(scope, receive, send)
    if state is not None:
        state["x"] = "changed by a request"


async def lifespan_raises(scope, receive, send):
    if scope["type"] == "lifespan":
        raise ValueError("no lifespan here")
    await hello(scope, receive, send)
