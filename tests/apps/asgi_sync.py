"""A raw ASGI app (no Django) making thread-sensitive `sync_to_async` calls, for
tests/asgi/test_sync_calls.py. Like Django's ASGIHandler it runs each HTTP request inside
`ThreadSensitiveContext()`: without rsgi's sync threads (`--sync-concurrency 0`) that gives each
request a new asgiref thread, as under Django; with them, rsgi's context is already set and
asgiref's is a no-op.

A thread is reported as [native id, name]: the kernel's thread id is never shared by two threads
of a run, whereas a new thread often gets the `get_ident()` of one that exited (glibc reuses its
stack). rsgi names its threads "rsgi-sync".

HTTP paths:
- `/ident?token=T[&group=G&n=N]`: three sequential sync calls, 10 ms apart on the loop; the first
  sets a `threading.local` to T, the third reads it back. With `group`/`n`, the request waits after
  its first call until N requests of group G have made theirs, so that all N hold their threads at
  once. JSON {"threads": [3 threads], "token_seen": ...}.
- `/slow?secs=S[&marker=F]`: one sync call that writes F (once running) and sleeps S seconds.
- `/nested`: a sync call that runs a coroutine through `async_to_sync` which makes a sync call of
  its own (as a sync Django view or middleware calling async code does). JSON {"outer": thread,
  "inner": thread}.
- `/raise`: a sync call raising ValueError("boom from sync"), which leaves the app.
- `/background?marker=F`: answers at once, leaving a task that 50 ms later makes a sync call and
  writes its thread's name to F (or "error: ..." if the call raised).
- anything else: 200 "ok".
Websocket (any path): accepts, sends the JSON thread of one sync call, closes.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any
from urllib.parse import parse_qs

import asgiref.sync
from asgiref.sync import ThreadSensitiveContext, async_to_sync, sync_to_async

assert asgiref.sync  # imported as a module so the worker sees asgiref in sys.modules

_local = threading.local()
_groups: dict[str, tuple[int, asyncio.Event]] = {}
_background: set[asyncio.Task[None]] = set()


def this_thread() -> list[Any]:
    return [threading.get_native_id(), threading.current_thread().name]


def set_token(token: str) -> list[Any]:
    _local.token = token
    return this_thread()


def read_token() -> tuple[list[Any], str | None]:
    return this_thread(), getattr(_local, "token", None)


def write(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def slow(secs: float, marker: str | None) -> None:
    if marker:
        write(marker, "running")
    time.sleep(secs)


async def inner() -> list[Any]:
    return await sync_to_async(this_thread)()


def outer() -> dict[str, list[Any]]:
    return {"outer": this_thread(), "inner": async_to_sync(inner)()}


def boom() -> None:
    raise ValueError("boom from sync")


async def gather(group: str, n: int) -> None:
    """Wait until `n` requests of `group` have got here (all workers' requests share one loop)."""
    count, event = _groups.get(group) or (0, asyncio.Event())
    _groups[group] = (count + 1, event)
    if count + 1 >= n:
        event.set()
    await asyncio.wait_for(event.wait(), 10)


async def later(marker: str) -> None:
    await asyncio.sleep(0.05)
    try:
        name = (await sync_to_async(this_thread)())[1]
    except Exception as exc:
        name = f"error: {exc!r}"
    write(marker, name)


async def respond(send: Any, body: Any) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": data})


async def http(scope: dict[str, Any], send: Any) -> None:
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    path = scope["path"]
    if path == "/ident":
        first = await sync_to_async(set_token)(query["token"])
        if "group" in query:
            await gather(query["group"], int(query["n"]))
        await asyncio.sleep(0.01)
        second = await sync_to_async(this_thread)()
        await asyncio.sleep(0.01)
        third, seen = await sync_to_async(read_token)()
        await respond(send, {"threads": [first, second, third], "token_seen": seen})
    elif path == "/slow":
        await sync_to_async(slow)(float(query["secs"]), query.get("marker"))
        await respond(send, "slept")
    elif path == "/nested":
        await respond(send, await sync_to_async(outer)())
    elif path == "/raise":
        await sync_to_async(boom)()
    elif path == "/background":
        task = asyncio.create_task(later(query["marker"]))
        _background.add(task)
        task.add_done_callback(_background.discard)
        await respond(send, "started")
    else:
        await respond(send, "ok")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        async with ThreadSensitiveContext():  # as Django's ASGIHandler does
            await http(scope, send)
    elif scope["type"] == "websocket":
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(await sync_to_async(this_thread)())})
        await send({"type": "websocket.close", "code": 1000})
    # lifespan: not supported (auto mode carries on without it)
