"""--reload (development): a small watcher process sends the supervisor SIGHUP when a watched
file changes, and SIGHUP replaces the workers, which import the app afresh. A process rather
than a thread, so the supervisor keeps running no threads and forking stays safe."""

from __future__ import annotations

import fnmatch
import logging
import os
import signal
import socket
from pathlib import Path

from .config import Config
from .worker import die_with_parent

log = logging.getLogger("rsgi.reload")


def start(cfg: Config, supervisor: int, sockets: list[socket.socket]) -> int | None:
    """Forks the watcher; returns its pid (None when watchfiles is missing)."""
    try:
        import watchfiles
    except ImportError:
        log.error("--reload needs the watchfiles package (pip install watchfiles); not reloading")
        return None
    if cfg.preload:
        log.warning("--reload with --preload: the app is imported once in the supervisor and is not reloaded")
    dirs = [str(Path(d).resolve()) for d in cfg.reload_dirs] or [os.getcwd()]
    pid = os.fork()
    if pid:
        log.info("watching %s for changes (%s)", ", ".join(dirs), " ".join(cfg.reload_include))
        return pid
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.set_wakeup_fd(-1)
        die_with_parent(supervisor)
        for s in sockets:  # the watcher must not keep the listening sockets open
            s.close()

        def wanted(_change: object, path: str) -> bool:
            parts = Path(path).parts
            if any(fnmatch.fnmatch(p, pat) for p in parts for pat in cfg.reload_exclude):
                return False
            return any(fnmatch.fnmatch(Path(path).name, pat) for pat in cfg.reload_include)

        for changes in watchfiles.watch(*dirs, watch_filter=wanted, raise_interrupt=False):
            names = sorted({Path(p).name for _, p in changes})
            log.info("changed: %s; replacing workers", ", ".join(names[:5]))
            os.kill(supervisor, signal.SIGHUP)
    except BaseException:
        logging.getLogger("rsgi.reload").exception("the reload watcher failed")
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)
