"""A websocket app for tests/asgi/test_ws_memory.py: floods a client that does not read.

`/flood?marker=<file>`: accepts, sends numbered 64 KiB binary messages until one `send()` has to
wait (rsgi hands back a pending future once its outbox is full), records "waited", sends 20 more,
records "sent <n>" and closes with 1000. Gives up after 4,000 messages ("never waited").
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

SIZE = 64 * 1024


def record(scope, line: str) -> None:
    path = parse_qs(scope["query_string"].decode()).get("marker", [""])[0]
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


async def app(scope, receive, send):
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"flood"})
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    sent, extra = 0, None
    while extra is None or extra > 0:
        pending = send({"type": "websocket.send", "bytes": sent.to_bytes(4, "big") + bytes(SIZE - 4)})
        sent += 1
        if extra is None and asyncio.isfuture(pending) and not pending.done():
            record(scope, "waited")
            extra = 20
        elif extra is not None:
            extra -= 1
        await pending
        if extra is None and sent >= 4000:
            record(scope, "never waited")
            break
    record(scope, f"sent {sent}")
    await send({"type": "websocket.close", "code": 1000})
