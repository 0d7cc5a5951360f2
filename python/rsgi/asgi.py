"""The ASGI side of a worker: one asyncio loop (uvloop when installed) on the worker's main
thread. Requests arrive from the Rust core in batches through an eventfd the loop watches;
each runs as a task of `run_http`."""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import threading
from typing import Any

from . import drain, hooks, sync_calls
from ._rsgi import SlotHandle, Worker
from .config import Config
from .lifespan import Lifespan
from .sync_calls import SyncCalls

log = logging.getLogger("rsgi.worker")

# How long tasks still running after the drain get to react to cancellation.
CANCEL_GRACE = 5.0


async def run_http(app: Any, scope: dict[str, Any], proto: Any) -> None:
    """One HTTP request. Whatever happens, `proto.complete` reports it to the core, which
    answers 500 (nothing sent yet) or aborts the connection (response under way) and logs."""
    try:
        await app(scope, proto.receive, proto.send)
    except BaseException as exc:  # reported, not swallowed: complete() logs it with its traceback
        proto.complete(exc)
    else:
        proto.complete(None)


def request_runner(calls: SyncCalls | None) -> Any:
    """What the core calls to start a request's coroutine: run_http, with HTTP requests' sync_to_async
    calls on the worker's sync threads (rsgi.sync_calls) when the app uses asgiref.

    A plain function choosing the coroutine, not a coroutine that awaits run_http: a websocket (left
    to asgiref, see rsgi.sync_calls) then runs as run_http itself, without a wrapper's coroutine
    frame kept for the connection's life."""
    if calls is None:
        return run_http

    async def run_http_with_sync_calls(app: Any, scope: dict[str, Any], proto: Any) -> None:
        with calls.request():
            await run_http(app, scope, proto)

    def start(app: Any, scope: dict[str, Any], proto: Any) -> Any:
        if scope["type"] == "http":
            return run_http_with_sync_calls(app, scope, proto)
        return run_http(app, scope, proto)

    return start


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def as_asgi3(app: Any) -> Any:
    """ASGI 2 apps (a class, or a callable taking only the scope) are wrapped as asgiref does."""
    if _is_asgi2(app):

        async def asgi3(scope: dict[str, Any], receive: Any, send: Any) -> None:
            instance = app(scope)
            await instance(receive, send)

        return asgi3
    return app


def _is_asgi2(app: Any) -> bool:
    if inspect.isclass(app):
        return True
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else getattr(app, "__call__", None)  # noqa: B004
    if call is None or inspect.iscoroutinefunction(call):
        return False
    try:
        params = [p for p in inspect.signature(call).parameters.values() if p.kind != p.VAR_KEYWORD]
    except (TypeError, ValueError):
        return False
    return len(params) == 1


def serve(
    cfg: Config,
    sockets: list[socket.socket],
    app: Any,
    slot: SlotHandle | None = None,
    wsgi: Any = None,
    drain_notice: int = -1,
) -> bool:
    """Run the worker until it has drained. False if the lifespan startup failed. `drain_notice`:
    see `worker.run`.

    With `wsgi` = (WSGI app, base environ) the worker serves both interfaces: `--threads` Python
    threads take the WSGI requests while this thread runs the event loop (the core decides which
    request goes where: `Router` in src/http/app.rs)."""
    loop = new_loop(cfg.loop)
    asyncio.set_event_loop(loop)
    app = as_asgi3(app)
    lifespan = Lifespan(app, cfg.lifespan)
    try:
        if not loop.run_until_complete(lifespan.startup()):
            return False
        hooks.watch_signals(loop)
        worker = Worker(cfg.core(), [s.fileno() for s in sockets], "dual" if wsgi else "asgi", slot)
        drain.follow(worker, drain_notice)
        for s in sockets:
            s.close()
        # Scoreboard entry 0 is the loop's heartbeat; WSGI threads use 1..threads.
        threads = [
            threading.Thread(target=worker.run_wsgi, args=(wsgi[0], wsgi[1], i), name=f"rsgi-wsgi-{i}", daemon=True)
            for i in range(1, cfg.threads + 1)
            if wsgi
        ]
        for t in threads:
            t.start()
        stopped = loop.create_future()
        state = lifespan.state if lifespan.supported else None
        calls = sync_calls.for_worker(loop, cfg.sync_concurrency)
        bridge = worker.asgi_bridge(app, loop, request_runner(calls), state, stopped)
        loop.add_reader(bridge.fileno(), bridge.on_wake)
        _heartbeat(loop, bridge, calls)
        if wsgi:
            log.info(
                "worker serving %s (WSGI, %d thread%s) and %s (ASGI, websockets%s) on %s",
                cfg.wsgi,
                cfg.threads,
                "s"[: cfg.threads > 1],
                cfg.app,
                "".join(f", {p}" for p in cfg.asgi_path),
                type(loop).__module__.split(".")[0],
            )
        else:
            log.info("worker serving %s on %s", cfg.app, type(loop).__module__.split(".")[0])
        loop.run_until_complete(stopped)
        loop.remove_reader(bridge.fileno())
        for t in threads:
            t.join()
        # Lifespan shutdown first (its task is waiting in receive()), then whatever is left.
        loop.run_until_complete(lifespan.shutdown())
        _cancel_leftovers(loop)
        worker.shutdown()
        return True
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _heartbeat(loop: asyncio.AbstractEventLoop, bridge: Any, calls: SyncCalls | None) -> None:
    """Once a second, tell the supervisor the loop is alive (for --timeout), and let sync threads
    idle for a minute go."""
    bridge.heartbeat()
    if calls is not None:
        calls.pool.trim()
    loop.call_later(1.0, _heartbeat, loop, bridge, calls)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Tasks still running after the drain (their clients are gone) are cancelled and given a
    moment to clean up."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not tasks:
        return
    for t in tasks:
        t.cancel()
    loop.run_until_complete(asyncio.wait(tasks, timeout=CANCEL_GRACE))
