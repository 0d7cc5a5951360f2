"""gunicorn's server hooks: the functions a gunicorn.conf.py defines (``post_fork``,
``child_exit``, ``pre_request``, ...), called at the moments gunicorn calls them, with `Server`
and `Worker` objects that carry what hooks use in practice.

The hooks are process state, as logging's configuration is: `install` sets them in the supervisor
(from the config file's namespace, again on SIGHUP), the workers inherit them across fork, and
each call site in supervisor.py, boot.py, worker.py and asgi.py is one line. Nothing runs when
no hook is defined: `wrap_wsgi` returns the app itself and `watch_signals` touches no signal.

A hook that raises is logged with its traceback and the server goes on, except ``on_starting``
and ``when_ready``, whose failure stops start-up (gunicorn's start fails the same way).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import select
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import SimpleNamespace
from typing import Any

from ._rsgi import FileWrapper
from .config import FIELDS, Config

__all__ = ["Request", "Response", "Server", "Settings", "Worker", "install", "wrap_wsgi"]

log = logging.getLogger("rsgi.hooks")

# The hooks rsgi calls (config/sources.py warns about gunicorn's others: pre_exec, ssl_context).
NAMES = (
    *("on_starting", "when_ready", "pre_fork", "post_fork", "post_worker_init", "worker_int", "worker_abort"),
    *("child_exit", "worker_exit", "nworkers_changed", "on_reload", "on_exit", "pre_request", "post_request"),
)


class Settings:
    """``server.cfg`` / ``worker.cfg``: the settings by attribute, under rsgi's names and gunicorn's
    (``cfg.workers``, ``cfg.bind``, ``cfg.loglevel``, ``cfg.preload_app``...). ``bind`` is the
    addresses listened on, the default included. ``settings`` maps each name to an object with
    ``.name`` and ``.value``, as gunicorn's does."""

    def __init__(self, cfg: Config) -> None:
        self._cfg = cfg

    def __getattr__(self, name: str) -> Any:
        if name == "bind":
            return self._cfg.binds()
        f = _by_name().get(name)
        if f is None:
            raise AttributeError(f"rsgi has no setting {name!r}")
        return getattr(self._cfg, f.name)

    @property
    def settings(self) -> dict[str, SimpleNamespace]:
        return {name: SimpleNamespace(name=name, value=getattr(self, name)) for name in _by_name()}


def _by_name() -> dict[str, Any]:
    return {alias: f for f in FIELDS.values() for alias in (f.name, *f.metadata["conf"])}


class Worker:
    """A worker as hooks see it, in the supervisor (``pre_fork``, ``child_exit``, ``server.WORKERS``)
    and in the worker itself. ``age`` counts the workers started so far, as gunicorn's does; ``pid``
    is None until forked. Hooks may add attributes of their own."""

    def __init__(self, age: int, ppid: int, cfg: Config) -> None:
        self.age = age
        self.ppid = ppid
        self.pid: int | None = None
        self.cfg = Settings(cfg)
        self.log = log
        self.alive = True
        self.booted = False

    def __repr__(self) -> str:
        return f"<rsgi worker {self.pid}>"


class Server:
    """The supervisor as hooks see it (gunicorn's arbiter): ``pid``, ``cfg``, ``log``,
    ``num_workers`` (the wanted count, which TTIN/TTOU change), ``WORKERS`` (pid -> `Worker`).
    Hooks may add attributes of their own; a worker sees the supervisor's as they were at its fork."""

    def __init__(self, supervisor: Any) -> None:
        self._supervisor = supervisor
        self.pid = os.getpid()
        self.log = log
        self.WORKERS: dict[int, Worker] = {}

    @property
    def cfg(self) -> Settings:
        return Settings(self._supervisor.cfg)

    @property
    def num_workers(self) -> int:
        return int(self._supervisor.target)


class _State:
    def __init__(self) -> None:
        self.hooks: dict[str, Callable[..., Any]] = {}
        self.server: Server | None = None
        self.worker: Worker | None = None  # in a worker: this one; in the supervisor: the next one
        self.age = 0
        self.nworkers: int | None = None
        self.signals = -1  # a worker's read end of the wakeup pipe (watch_signals)
        self.lock = threading.RLock()
        self.exited = False


_state = _State()


def install(found: Mapping[str, Callable[..., Any]]) -> None:
    """The hooks to call from now on (the config file's, by name)."""
    _state.hooks = {name: hook for name, hook in found.items() if name in NAMES}


def call(name: str, *args: Any) -> bool:
    """Calls the hook `name` if there is one; False if it raised (logged with its traceback)."""
    hook = _state.hooks.get(name)
    if hook is None:
        return True
    try:
        hook(*args)
    except Exception:
        log.exception("server hook %s() failed", name)
        return False
    return True


# -- in the supervisor ----------------------------------------------------------------------------


def bind(supervisor: Any) -> None:
    """Supervisor.run, first: the `Server` the hooks get."""
    _state.server = Server(supervisor)


def starting() -> bool:
    """Once logging is set up: ``nworkers_changed(server, N, None)`` then ``on_starting``, gunicorn's
    order. False when on_starting failed: start-up stops."""
    server = _server()
    nworkers(server.num_workers)
    return call("on_starting", server)


def ready() -> bool:
    """The sockets are bound and the pid file written, no worker forked yet: ``when_ready``. False
    when it failed: start-up stops."""
    return call("when_ready", _server())


def pre_fork() -> None:
    server = _server()
    _state.age += 1
    _state.worker = Worker(_state.age, server.pid, server._supervisor.cfg)
    call("pre_fork", server, _state.worker)


def forked(pid: int) -> None:
    """In the supervisor, after the fork: the new worker joins ``server.WORKERS``."""
    if _state.worker is not None:
        _state.worker.pid = pid
        _server().WORKERS[pid] = _state.worker


def child_exit(pid: int) -> None:
    """A worker was reaped (whatever the reason): ``child_exit`` in the supervisor."""
    worker = _server().WORKERS.pop(pid, None)
    if worker is not None:
        worker.alive = False
        call("child_exit", _server(), worker)


def nworkers(target: int) -> None:
    """Called with the wanted number of workers; ``nworkers_changed(server, new, old)`` when it
    changed (TTIN, TTOU, a HUP that re-read another ``workers``)."""
    old, _state.nworkers = _state.nworkers, target
    if old != target:
        call("nworkers_changed", _server(), target, old)


def reloaded() -> None:
    """SIGHUP, once the configuration was re-read and before the new workers start."""
    call("on_reload", _server())


def exiting() -> None:
    call("on_exit", _server())


def _server() -> Server:
    if _state.server is None:  # a Supervisor always binds first; this is for callers that didn't
        raise RuntimeError("hooks.bind() was not called")
    return _state.server


# -- in a worker ----------------------------------------------------------------------------------


def post_fork() -> None:
    """In the new worker, with its signals in place, before it imports the app."""
    worker = _state.worker
    if worker is None:
        return
    worker.pid, worker.ppid = os.getpid(), os.getppid()
    call("post_fork", _server(), worker)


def post_worker_init() -> None:
    """The app is imported; the worker is about to serve."""
    if _state.worker is not None:
        _state.worker.booted = True
        call("post_worker_init", _state.worker)


def worker_exit() -> None:
    """The worker is about to exit (once, whatever the reason), after a ``worker_int`` still due."""
    worker = _state.worker
    with _state.lock:
        _take_signals()
        if worker is None or _state.exited:
            return
        _state.exited = True
        worker.alive = False
        call("worker_exit", _server(), worker)


# worker_int on INT or QUIT (the graceful and the fast stop), worker_abort on ABRT (--timeout).
_SIGNAL_HOOKS = {signal.SIGINT: "worker_int", signal.SIGQUIT: "worker_int", signal.SIGABRT: "worker_abort"}


def watch_signals(loop: Any = None) -> None:
    """Right before the core starts (it takes INT and QUIT over and chains to the handler found):
    when worker_int or worker_abort is defined, a Python handler for their signals and a wakeup
    pipe a thread of its own reads, so the hook runs whatever the main thread is busy with. On
    ABRT faulthandler still prints every thread's stack first, then hands over. `loop`: the ASGI
    event loop, which must not keep the wakeup fd to itself (uvloop takes it while it runs)."""
    wanted = [sig for sig, name in _SIGNAL_HOOKS.items() if name in _state.hooks]
    if not wanted or _state.worker is None:
        return
    read, write = os.pipe()
    os.set_blocking(write, False)
    # faulthandler, re-enabled over our ABRT handler, dumps the stacks first and then calls it
    # (disable() puts back the handler it found, so it comes first).
    dump = signal.SIGABRT in wanted and faulthandler.is_enabled()
    if dump:
        faulthandler.disable()
    for sig in wanted:
        signal.signal(sig, _ignore)
    if dump:
        faulthandler.enable()
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    if loop is not None:
        loop.call_soon(signal.set_wakeup_fd, write)
    _state.signals = read
    threading.Thread(target=_follow_signals, name="rsgi-hooks", daemon=True).start()


def _ignore(_sig: int, _frame: Any) -> None:
    """The Python-level handler: the work is done by the thread that reads the wakeup pipe."""


def _follow_signals() -> None:
    while True:
        select.select([_state.signals], [], [])
        _take_signals()


def _take_signals() -> None:
    """Runs the hooks for the signals waiting in the wakeup pipe (the thread, or worker_exit)."""
    with _state.lock:
        if _state.signals < 0 or not select.select([_state.signals], [], [], 0)[0]:
            return
        for sig in os.read(_state.signals, 64):
            _on_signal(sig)


def _on_signal(sig: int) -> None:
    worker = _state.worker
    name = _SIGNAL_HOOKS.get(signal.Signals(sig))
    if worker is None or name is None or _state.exited:
        return
    worker.alive = False
    call(name, worker)
    if sig == signal.SIGABRT:
        # As in gunicorn, the worker exits after worker_abort (worker_exit first); it still dies
        # of SIGABRT, as it would without the hook (abort() gets past a handler that returns).
        worker_exit()
        os.abort()


# -- pre_request / post_request (WSGI) ----------------------------------------------------------------


class Request:
    """``req`` of pre_request/post_request, read from the WSGI environ as gunicorn's parser would
    give it: ``method``, ``uri`` (as sent), ``path`` and ``query`` (still percent-encoded),
    ``version`` ((1, 1)), ``headers`` ([(NAME, value)], names upper-case), ``scheme``,
    ``remote_addr`` and ``peer_addr``."""

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self.method = environ.get("REQUEST_METHOD", "")
        self.query = environ.get("QUERY_STRING", "")
        self.uri = environ.get("RAW_URI") or environ.get("PATH_INFO", "") + (f"?{self.query}" if self.query else "")
        self.path = self.uri.split("?", 1)[0]
        protocol = environ.get("SERVER_PROTOCOL", "HTTP/1.1").partition("/")[2]
        major, _, minor = protocol.partition(".")
        self.version = (int(major or 1), int(minor or 0))
        self.scheme = environ.get("wsgi.url_scheme", "http")
        self.remote_addr = environ.get("REMOTE_ADDR", "")
        self.peer_addr = (self.remote_addr, int(environ.get("REMOTE_PORT") or 0))
        self.headers = [
            (key[5:].replace("_", "-") if key.startswith("HTTP_") else key.replace("_", "-"), value)
            for key, value in environ.items()
            if key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH")
        ]

    def __repr__(self) -> str:
        return f"<rsgi request {self.method} {self.uri}>"


class Response:
    """``resp`` of post_request: ``status`` ("200 OK"), ``status_code``, ``headers`` as the app gave
    them, and ``response_length``, the body bytes the app produced (for a ``wsgi.file_wrapper``
    file, its Content-Length; None if unknown). Status None: the app failed before starting one."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.response_length: int | None = 0

    @property
    def status_code(self) -> int | None:
        return int(self.status.split(None, 1)[0]) if self.status else None

    @property
    def sent(self) -> int | None:
        return self.response_length


def wrap_wsgi(app: Any) -> Any:
    """The WSGI app itself, or with pre_request/post_request defined, the app with both called
    around it on the WSGI thread; post_request after the body went out (the iterable's close())."""
    if app is None or not ({"pre_request", "post_request"} & _state.hooks.keys()):
        return app

    def with_request_hooks(environ: dict[str, Any], start_response: Any) -> Any:
        worker, req, resp = _state.worker, Request(environ), Response()
        call("pre_request", worker, req)
        done = _once(lambda: call("post_request", worker, req, environ, resp))

        def counting_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            resp.status, resp.headers = status, list(headers)
            write = start_response(status, headers, exc_info)

            def counting_write(data: bytes) -> Any:
                resp.response_length = (resp.response_length or 0) + len(data)
                return write(data)

            return counting_write

        try:
            result = app(environ, counting_start_response)
        except BaseException:
            done()
            raise
        if isinstance(result, FileWrapper):
            return FileWrapper(_ClosingFile(result.filelike, resp, done), result.blksize)
        return _Body(result, resp, done)

    return with_request_hooks


def _once(fn: Callable[[], Any]) -> Callable[[], None]:
    called = False

    def once() -> None:
        nonlocal called
        if not called:
            called = True
            fn()

    return once


class _Body:
    """The app's response iterable, counted; its close() closes the app's, then post_request."""

    def __init__(self, result: Iterable[bytes], resp: Response, done: Callable[[], None]) -> None:
        self._result, self._resp, self._done = result, resp, done

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._result:
            self._resp.response_length = (self._resp.response_length or 0) + len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._done()


class _ClosingFile:
    """A ``wsgi.file_wrapper`` file, still sent by the core from its descriptor; its close() ends
    the request for post_request."""

    def __init__(self, filelike: Any, resp: Response, done: Callable[[], None]) -> None:
        self._file, self._resp, self._done = filelike, resp, done
        try:  # what the core will send, unless a Content-Length says less
            resp.response_length = os.fstat(filelike.fileno()).st_size - filelike.tell()
        except (AttributeError, OSError, ValueError):
            resp.response_length = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def close(self) -> None:
        declared = dict((k.lower(), v) for k, v in self._resp.headers).get("content-length", "")
        if declared.isdigit() and self._resp.response_length is not None:
            self._resp.response_length = min(int(declared), self._resp.response_length)
        try:
            close = getattr(self._file, "close", None)
            if close is not None:
                close()
        finally:
            self._done()
