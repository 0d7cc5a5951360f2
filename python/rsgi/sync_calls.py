"""Where an ASGI request's thread-sensitive sync calls run: asgiref's `sync_to_async`, which
Django sends its sync middleware, sync views, signals and ORM calls through (about 20 calls for
a hello view with the default middleware).

asgiref's own way, for each request: a new single-thread executor (a thread started, and the
loop blocks until it runs), a `concurrent.futures.Future` plus a `call_soon_threadsafe` per call,
and a second new thread to join the first at the end. Profiled under load (README, "Django under
ASGI"), the loop spent 65% of its time in `Thread.start`; once threads were reused, 64 requests
in flight meant 64 threads fighting over the GIL around every SQLite call, and what was left was
hand-off latency: a call costs two thread wake-ups, about 70 µs on these machines, against some
20 µs of work.

Here, per worker:
- **Each request keeps one thread to itself, as with asgiref**, so what Django keeps per thread
  (the database connection, and whatever a middleware sets on it or in a `threading.local`) is
  never seen by two requests at once. The thread is lent at the request's first sync call and
  taken back when the request has ended and its calls have finished. Threads are reused, as WSGI
  threads are (so `CONN_MAX_AGE` works under ASGI too), and idle ones exit after `IDLE_EXIT`.
- **At most `--sync-concurrency` calls run at once** (default 2: one runs while the next one's
  thread wakes up; more brings the GIL fight back, see README); the others wait on the loop in
  arrival order. A call still running after `STALL` is waiting on I/O rather than the GIL: it
  stops counting, so a slow query or HTTP call does not hold up the others.
- A call's result comes back as a future of the loop: `submit()` returns an asyncio future, which
  `run_in_executor` passes through as it is (asyncio's and uvloop's `wrap_future` return asyncio
  futures unchanged), so there is no `concurrent.futures.Future` to chain. The thread settles it
  with `call_soon_threadsafe`; on uvloop that coalesces wake-ups (`uv_async_send`), so a batch of
  completions wakes the loop once. The loop wakes a thread by an eventfd write, during which the
  GIL is released: a `queue.SimpleQueue` put wakes the thread while the loop still holds the
  GIL, and the woken thread goes straight back to sleep on it.

Only HTTP requests take part: a websocket consumer lives as long as its connection, and Channels'
consumers, which run outside any per-request context, use asgiref's one shared thread. Tasks a
request leaves running after it ended fall back to asgiref's per-context executor, as without
rsgi. `--sync-concurrency 0` leaves everything to asgiref.

This relies on two attributes of asgiref's `SyncToAsync`, `thread_sensitive_context` and
`context_to_thread_executor` (both there since asgiref 3.3, 2020). The newer public
`ThreadSensitiveContext(executor=...)` is not used: it makes tasks that outlive the request
raise, and the asgiref versions Django 4.2 and 5.x accept mostly do not have it. If the
attributes are missing, or the platform has no eventfd, rsgi says so and leaves the calls to
asgiref.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

log = logging.getLogger("rsgi.worker")

# A call running longer than this (seconds) is blocked on I/O and stops counting against
# --sync-concurrency. 20 ms is well above what Django's middleware and a simple ORM query take
# here (tens to hundreds of microseconds), and short enough not to be felt behind a slow call.
STALL = 0.02
# Idle threads exit after this many seconds without work (checked on the worker's heartbeat).
IDLE_EXIT = 60.0


class _Call:
    """One sync call: what to run, the loop future awaiting it, and its place in the gate."""

    __slots__ = ("args", "counted", "fn", "future", "owner", "started")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any], owner: _Lease):
        self.fn = fn
        self.args = args
        self.future = future
        self.owner = owner
        self.started = 0.0
        self.counted = False


class _Thread:
    """A long-lived thread that runs the calls it is given, in order."""

    __slots__ = ("calls", "fd", "idle_since")

    def __init__(self, pool: SyncPool) -> None:
        self.calls: deque[_Call | None] = deque()
        self.fd = os.eventfd(0, os.EFD_SEMAPHORE | os.EFD_CLOEXEC)
        self.idle_since = 0.0
        threading.Thread(target=self._run, args=(pool,), name="rsgi-sync", daemon=True).start()

    def put(self, call: _Call | None) -> None:
        self.calls.append(call)
        os.eventfd_write(self.fd, 1)  # the GIL is released during the write

    def _run(self, pool: SyncPool) -> None:
        wait, fd, pop, loop, done = os.eventfd_read, self.fd, self.calls.popleft, pool.loop, pool.done
        while True:
            wait(fd)
            call = pop()
            if call is None:
                os.close(fd)
                return
            try:
                result, error = call.fn(*call.args), None
            except BaseException as exc:  # handed to the awaiting coroutine, as an executor would
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(done, call, result, error)
            except RuntimeError:  # the loop closed while this call ran (worker exiting)
                return
            del call, result, error


class _Lease(Executor):
    """A request's executor: the thread it holds from its first sync call until it has ended.

    `submit` returns a future of the loop, not a `concurrent.futures.Future` (see the module
    docstring); asgiref only reaches it through `loop.run_in_executor`."""

    __slots__ = ("ended", "pending", "pool", "thread")

    def __init__(self, pool: SyncPool) -> None:
        self.pool = pool
        self.thread: _Thread | None = None
        self.pending = 0
        self.ended = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if kwargs:  # run_in_executor never passes any; keep the Executor contract anyway
            args, fn = (), _bind(fn, args, kwargs)
        pool = self.pool
        if self.thread is None:
            self.thread = pool.lend()
        self.pending += 1
        call = _Call(fn, args, pool.loop.create_future(), self)
        pool.admit(call)
        return call.future

    def end(self) -> None:
        self.ended = True
        if self.pending == 0:
            self.pool.give_back(self)


def _bind(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[[], Any]:
    return lambda: fn(*args, **kwargs)


class SyncPool:
    """The worker's sync threads and the gate that lets `limit` calls run at once. Every method
    runs on the loop's thread (no locks: the threads only talk back through the loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        self.limit = limit
        self.running = 0  # counted calls
        self.admitted: deque[_Call] = deque()  # calls that counted when admitted, oldest first
        self.waiting: deque[_Call] = deque()
        self.idle: list[_Thread] = []
        self.timer: asyncio.TimerHandle | None = None

    # Threads
    def lend(self) -> _Thread:
        return self.idle.pop() if self.idle else _Thread(self)

    def give_back(self, lease: _Lease) -> None:
        thread, lease.thread = lease.thread, None
        if thread is not None:
            thread.idle_since = self.loop.time()
            self.idle.append(thread)

    def trim(self) -> None:
        """Stop threads idle for IDLE_EXIT seconds (the least recently used are first in `idle`)."""
        cutoff = self.loop.time() - IDLE_EXIT
        while self.idle and self.idle[0].idle_since < cutoff:
            self.idle.pop(0).put(None)

    # The gate
    def admit(self, call: _Call) -> None:
        if self.waiting or not self._has_room():
            self.waiting.append(call)
            self._arm()
        else:
            self._start(call)

    def _start(self, call: _Call) -> None:
        call.started = self.loop.time()
        call.counted = True
        self.running += 1
        self.admitted.append(call)
        call.owner.thread.put(call)  # type: ignore[union-attr]  # lent in submit()

    def _has_room(self) -> bool:
        """Room for one more call, after calls that finished or stalled stop counting."""
        if self.running < self.limit:
            return True
        stalled_before = self.loop.time() - STALL
        admitted = self.admitted
        while admitted and (not admitted[0].counted or admitted[0].started < stalled_before):
            call = admitted.popleft()
            if call.counted:
                call.counted = False
                self.running -= 1
        return self.running < self.limit

    def _release_waiting(self) -> None:
        while self.waiting and self._has_room():
            call = self.waiting.popleft()
            if call.future.cancelled():  # its coroutine gave up waiting: dropped, as a queued executor item is
                self._forget(call)
            else:
                self._start(call)
        if self.waiting:
            self._arm()

    def _arm(self) -> None:
        """Calls are waiting and none is due to finish: look again when the oldest running call
        would count as stalled."""
        if self.timer is None and self.admitted:
            # A millisecond late: uvloop's clock moves in 1 ms steps, and a timer due at exactly
            # `started + STALL` would find the call not yet stalled and re-arm for the same moment.
            self.timer = self.loop.call_at(self.admitted[0].started + STALL + 0.001, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        self._release_waiting()

    def _forget(self, call: _Call) -> None:
        """`call` is over: its lease gives its thread back once the request has ended too."""
        lease = call.owner
        lease.pending -= 1
        if lease.ended and lease.pending == 0:
            self.give_back(lease)

    def done(self, call: _Call, result: Any, error: BaseException | None) -> None:
        """A thread finished `call` (scheduled on the loop by the thread)."""
        if call.counted:
            call.counted = False
            self.running -= 1
        admitted = self.admitted
        while admitted and not admitted[0].counted:  # forget finished calls at the front
            admitted.popleft()
        self._forget(call)
        future = call.future
        if not future.done():  # the awaiting coroutine may have been cancelled meanwhile
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
        if self.waiting:
            self._release_waiting()


class SyncCalls:
    """The worker's side of it: `request()` runs one HTTP request inside a thread-sensitive
    context whose executor is a `_Lease` from the pool."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.pool = SyncPool(loop, limit)
        from asgiref.sync import SyncToAsync, ThreadSensitiveContext

        self.context_var = SyncToAsync.thread_sensitive_context
        self.executors = SyncToAsync.context_to_thread_executor
        self.new_context = ThreadSensitiveContext

    @contextlib.contextmanager
    def request(self) -> Any:
        """Around one HTTP request's app call."""
        if self.context_var.get(None) is not None:  # already inside one (not expected at the top)
            yield
            return
        context, lease = self.new_context(), _Lease(self.pool)
        token = self.context_var.set(context)
        self.executors[context] = lease
        try:
            yield
        finally:
            self.executors.pop(context, None)
            self.context_var.reset(token)
            lease.end()


def for_worker(loop: asyncio.AbstractEventLoop, limit: int) -> SyncCalls | None:
    """The worker's SyncCalls, or None when asgiref is not in use (a pure-async app never calls
    sync_to_async), --sync-concurrency is 0, or the platform or asgiref lacks what it needs."""
    if limit <= 0 or "asgiref.sync" not in sys.modules:
        return None
    if not hasattr(os, "eventfd"):
        log.info("no eventfd on this platform: sync_to_async calls use asgiref's own threads")
        return None
    try:
        return SyncCalls(loop, limit)
    except (ImportError, AttributeError) as exc:
        log.warning("this asgiref has no %s: sync_to_async calls use asgiref's own threads", exc)
        return None
