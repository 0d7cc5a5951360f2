"""One worker process: import the app (unless preloaded), start the Rust core on the inherited
sockets, and lend this process's Python thread(s) to the app until the core has drained."""

from __future__ import annotations

import ctypes
import dataclasses
import faulthandler
import grp
import logging
import os
import pwd
import signal
import socket
import sys
import threading
from typing import Any

from . import __version__, drain, hooks, interfaces, logs
from ._rsgi import FileWrapper, SlotHandle, Worker
from .config import Config
from .importer import AppLoadError, load

log = logging.getLogger("rsgi.worker")

# Exit codes the supervisor understands (gunicorn uses the same two).
EXIT_OK = 0
EXIT_BOOT_ERROR = 3


class ErrorStream:
    """``wsgi.errors``: what the app writes here goes to the ``rsgi.app`` logger, line by line."""

    def __init__(self) -> None:
        self._log = logging.getLogger("rsgi.app")
        self._buf = ""

    def write(self, s: str) -> int:
        self._buf += s
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            self._log.error(line)
        return len(s)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._buf:
            self._log.error(self._buf)
            self._buf = ""


def prepare_signals() -> None:
    """Before the Rust core starts. tokio takes over TERM/INT/QUIT/USR1 when it starts; until
    then TERM and QUIT keep their default (die), INT is ignored so that Python's own handler can
    never raise KeyboardInterrupt inside an app later, and USR1 (reopen logs) is ignored rather
    than fatal. Supervisor-only signals are ignored."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("SIGHUP", "SIGTTIN", "SIGTTOU", "SIGUSR1", "SIGUSR2", "SIGWINCH"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def die_with_parent(parent: int) -> None:
    """Ask Linux to send SIGTERM if the supervisor dies, so no orphan keeps the port."""
    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def base_environ(cfg: Config) -> dict[str, Any]:
    return {
        "wsgi.version": (1, 0),
        "wsgi.errors": ErrorStream(),
        "wsgi.multithread": cfg.threads > 1,
        "wsgi.multiprocess": cfg.workers > 1,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "SERVER_SOFTWARE": f"rsgi/{__version__}",
    }


def drop_privileges(cfg: Config) -> None:
    """--user/--group: switch after the supervisor bound the sockets (as gunicorn's workers do)."""
    if cfg.group:
        gid = int(cfg.group) if cfg.group.isdigit() else grp.getgrnam(cfg.group).gr_gid
        os.setgid(gid)
    if cfg.user:
        pw = pwd.getpwuid(int(cfg.user)) if cfg.user.isdigit() else pwd.getpwnam(cfg.user)
        if not cfg.group:
            os.setgid(pw.pw_gid)
        os.initgroups(pw.pw_name, os.getgid())
        os.setuid(pw.pw_uid)


def with_django_static(cfg: Config) -> Config:
    """--static-django: add a STATIC_URL=STATIC_ROOT mount, read from the project's settings
    (loaded by now, since the app was imported). A CDN STATIC_URL (a full URL) needs nothing."""
    if not cfg.static_django:
        return cfg
    from django.conf import settings

    url, root = settings.STATIC_URL, settings.STATIC_ROOT
    if not url or "://" in url or url.startswith("//"):
        log.info("--static-django: STATIC_URL %r is not served from this server; nothing to mount", url)
        return cfg
    if not root:
        raise ValueError("STATIC_ROOT is not set in the Django settings")
    if not os.path.isdir(root):
        raise ValueError(f"STATIC_ROOT {str(root)!r} does not exist; run `manage.py collectstatic` first")
    # Django 4+ allows a relative STATIC_URL ("static/"), which it serves under the script prefix.
    prefix = url if url.startswith("/") else f"{cfg.root_path.rstrip('/')}/{url}"
    return dataclasses.replace(cfg, static=[*cfg.static, f"{prefix}={root}"])


def run(
    cfg: Config,
    sockets: list[socket.socket],
    app: Any,
    parent: int,
    slot: SlotHandle | None = None,
    wsgi_app: Any = None,
    drain_notice: int = -1,
) -> int:
    """The body of a worker process; returns its exit code. `slot` is its scoreboard slot's handle
    (None: none). `app`/`wsgi_app` are the preloaded apps (None: import here). `drain_notice` is
    the read end of the supervisor's --drain-delay notice (drain.py; -1: none)."""
    prepare_signals()
    die_with_parent(parent)
    logs.forward_core_logs()
    # On SIGABRT (sent by --timeout) and fatal signals, print every thread's Python stack.
    faulthandler.enable()
    try:
        drop_privileges(cfg)
    except (KeyError, PermissionError, OSError) as e:
        log.error("could not switch to user %r / group %r: %s", cfg.user, cfg.group, e)
        return EXIT_BOOT_ERROR
    logs.set_title("worker", cfg.proc_name or cfg.app)
    if cfg.switch_interval > 0:
        sys.setswitchinterval(cfg.switch_interval)
    if app is None:
        try:
            app = load(cfg)
            if cfg.wsgi:
                wsgi_app = load(cfg, cfg.wsgi)
        except AppLoadError as e:
            log.error("%s", e, exc_info=e.__cause__)
            return EXIT_BOOT_ERROR
        except BaseException:
            log.exception("the app failed to import")
            return EXIT_BOOT_ERROR
    try:
        cfg = with_django_static(cfg)
    except ValueError as e:
        log.error("--static-django: %s", e)
        return EXIT_BOOT_ERROR
    hooks.post_worker_init()
    interface = cfg.resolved_interface()
    if interface == "auto":
        interface = interfaces.detect(app)
    if interface == "dual":
        from . import asgi

        if interfaces.detect(app) != "asgi":
            log.error("with --wsgi, %s must be an ASGI app (e.g. mysite.asgi:application)", cfg.app)
            return EXIT_BOOT_ERROR
        wsgi = (hooks.wrap_wsgi(wsgi_app), base_environ(cfg))
        served = asgi.serve(cfg, sockets, app, slot, wsgi=wsgi, drain_notice=drain_notice)
        return EXIT_OK if served else EXIT_BOOT_ERROR
    if interface == "asgi":
        from . import asgi

        return EXIT_OK if asgi.serve(cfg, sockets, app, slot, drain_notice=drain_notice) else EXIT_BOOT_ERROR

    app = hooks.wrap_wsgi(app)
    hooks.watch_signals()
    try:
        worker = Worker(cfg.core(), [s.fileno() for s in sockets], "wsgi", slot)
    except Exception:
        log.exception("the worker could not start serving")
        return EXIT_BOOT_ERROR
    drain.follow(worker, drain_notice)
    # The core holds its own duplicates; closing ours means a stopping worker really stops
    # listening once the core drops them (new connections are refused, not left hanging).
    for s in sockets:
        s.close()
    environ = base_environ(cfg)
    extra = [
        threading.Thread(target=worker.run_wsgi, args=(app, environ, i), name=f"rsgi-app-{i}", daemon=True)
        for i in range(1, cfg.threads)
    ]
    for t in extra:
        t.start()
    log.info("worker %d serving %s (%d thread%s)", os.getpid(), cfg.app, cfg.threads, "s"[: cfg.threads > 1])
    worker.run_wsgi(app, environ)
    for t in extra:
        t.join()
    worker.shutdown()
    return EXIT_OK
