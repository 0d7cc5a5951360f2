"""Small ASGI apps the tests serve."""

from __future__ import annotations

import asyncio
import hashlib
import json


async def hello(scope, receive, send):
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Hello, ASGI!"})


async def echo_scope(scope, receive, send):
    """Reads the whole body (in as many messages as the server sends) and echoes the scope."""
    body = b""
    messages = 0
    while True:
        msg = await receive()
        assert msg["type"] == "http.request", msg
        body += msg.get("body", b"")
        messages += 1
        if not msg.get("more_body"):
            break
    out = {
        k: (v.decode("latin-1") if isinstance(v, bytes) else v)
        for k, v in scope.items()
        if k not in ("headers", "asgi", "extensions", "state", "client", "server")
    }
    out["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    out["client"] = list(scope["client"]) if scope["client"] else None
    out["server"] = list(scope["server"]) if scope["server"] else None
    out["asgi"] = scope["asgi"]
    out["body_sha256"] = hashlib.sha256(body).hexdigest()
    out["body_len"] = len(body)
    out["body_messages"] = messages
    out["state"] = dict(scope.get("state") or {})
    data = json.dumps(out).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": data})


async def stream(scope, receive, send):
    delay = float(scope["query_string"] or 0)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for i in range(5):
        await send({"type": "http.response.body", "body": b"chunk %d\n" % i, "more_body": True})
        await asyncio.sleep(delay)
    await send({"type": "http.response.body", "body": b""})


async def lifespan_fails(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    await hello(scope, receive, send)


async def ws_echo(scope, receive, send):
    """Echo server; honours the first offered subprotocol; closes with 4000+n on "close n"."""
    if scope["type"] != "websocket":
        return await hello(scope, receive, send)
    msg = await receive()
    assert msg["type"] == "websocket.connect"
    sub = scope["subprotocols"][0] if scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": sub, "headers": [(b"x-accepted", b"yes")]})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        if msg.get("text", "").startswith("close "):
            await send({"type": "websocket.close", "code": 4000 + int(msg["text"][6:]), "reason": "asked"})
            return
        if msg.get("text") is not None:
            await send({"type": "websocket.send", "text": msg["text"]})
        else:
            await send({"type": "websocket.send", "bytes": msg["bytes"]})
