"""WebSocket apps for tests/asgi/test_websocket.py, all behind one router (`app`), chosen by path.

A `?marker=<file>` query parameter makes the app append what it saw ("connect",
"disconnect <code> <reason>") to that file, so a test can observe the app from outside.
"""

from __future__ import annotations

from urllib.parse import parse_qs


def marker(scope) -> str | None:
    values = parse_qs(scope["query_string"].decode()).get("marker")
    return values[0] if values else None


def record(scope, line: str) -> None:
    path = marker(scope)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"plain HTTP still works"})


async def echo(scope, receive, send):
    """Accepts (with the first offered subprotocol and an x-accepted header), echoes text and bytes,
    closes with 4000+n (reason "asked") on the text "close n", and records the disconnect."""
    assert (await receive())["type"] == "websocket.connect"
    sub = scope["subprotocols"][0] if scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": sub, "headers": [(b"x-accepted", b"yes")]})
    record(scope, "connect")
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            record(scope, f"disconnect {msg['code']} {msg.get('reason', '')}".rstrip())
            return
        if msg.get("text", "").startswith("close "):
            await send({"type": "websocket.close", "code": 4000 + int(msg["text"][6:]), "reason": "asked"})
            continue  # the client's close reply arrives as websocket.disconnect
        if msg.get("text") is not None:
            await send({"type": "websocket.send", "text": msg["text"]})
        else:
            await send({"type": "websocket.send", "bytes": msg["bytes"]})


async def deny(scope, receive, send):
    """Closes before accepting: the handshake is refused."""
    await receive()
    await send({"type": "websocket.close", "code": 4403})


async def denial_response(scope, receive, send):
    """The websocket.http.response extension: an HTTP answer instead of the handshake."""
    await receive()
    headers = [(b"content-type", b"text/plain"), (b"x-denied", b"by the app")]
    await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": b"no websocket for you"})


async def denial_in_parts(scope, receive, send):
    """A denial response whose body comes in two messages (more_body)."""
    await receive()
    await send({"type": "websocket.http.response.start", "status": 403, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "websocket.http.response.body", "body": b"part one, ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"part two"})


async def undecided(scope, receive, send):
    """Neither accepts nor denies; records what it receives while the handshake is pending."""
    await receive()
    record(scope, "connect")
    msg = await receive()
    record(scope, f"{msg['type']} {msg.get('code')}")


async def accept_and_return(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})


async def raise_after_accept(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    await receive()
    raise RuntimeError("websocket boom after accept")


async def raise_before_accept(scope, receive, send):
    await receive()
    raise RuntimeError("websocket boom before accept")


async def scope_line(scope, receive, send):
    """Accepts and sends one text message: the scope's type, http_version, scheme and path."""
    await receive()
    await send({"type": "websocket.accept"})
    line = f"{scope['type']} {scope['http_version']} {scope['scheme']} {scope['path']}"
    await send({"type": "websocket.send", "text": line})
    await receive()


ROUTES = {
    "/echo": echo,
    "/scope": scope_line,
    "/deny": deny,
    "/denial-response": denial_response,
    "/denial-in-parts": denial_in_parts,
    "/undecided": undecided,
    "/accept-and-return": accept_and_return,
    "/raise-after-accept": raise_after_accept,
    "/raise-before-accept": raise_before_accept,
}


async def app(scope, receive, send):
    if scope["type"] == "http":
        return await hello(scope, receive, send)
    if scope["type"] != "websocket":
        return None  # lifespan: unsupported, the server goes on without it
    return await ROUTES[scope["path"]](scope, receive, send)
