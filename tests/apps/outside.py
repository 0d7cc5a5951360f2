"""The app tests/outside/test_autobahn.py serves: a plain WebSocket echo for the Autobahn cases.

Text comes back as text and bytes as bytes, nothing else (tests/apps/asgi_ws.py's echo also acts on
"close n" messages and picks subprotocols). Plain HTTP gets a short answer, for the readiness probe.
"""

from __future__ import annotations


async def echo(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"websocket echo"})
        return
    if scope["type"] != "websocket":
        return  # lifespan: unsupported, the server goes on without it
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        if msg.get("text") is not None:
            await send({"type": "websocket.send", "text": msg["text"]})
        else:
            await send({"type": "websocket.send", "bytes": msg["bytes"]})
