"""The supervisor: binds the sockets, forks the workers, replaces one that dies, and stops
them gracefully. It never serves requests itself and runs no threads (so forking is safe)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from . import logs, sockets, worker
from .config import Config
from .importer import AppLoadError, load, prepare_path

log = logging.getLogger("rsgi.supervisor")

# A worker that dies sooner than this after starting counts as a crash at boot.
QUICK_DEATH = 1.0
# Restart delay after repeated quick deaths doubles up to this.
MAX_BACKOFF = 10.0
# Seconds given to workers beyond the graceful timeout before SIGKILL.
KILL_SLACK = 5.0


@dataclass
class Child:
    pid: int
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.children: dict[int, Child] = {}
        self.target = cfg.workers
        self.sockets: list[socket.socket] = []
        self.unix_paths: list[str] = []
        self.app: Any = None
        self.stopping: float | None = None  # deadline once a stop began
        self.exit_code = 0
        self.quick_deaths = 0
        self.next_spawn = 0.0
        self.pending: list[int] = []
        self.wake_r, self.wake_w = -1, -1

    # -- lifecycle ---------------------------------------------------------------------

    def run(self) -> int:
        cfg = self.cfg
        logs.setup(cfg.log_level, cfg.error_log)
        for name in cfg.pending_settings():
            log.warning("%s is accepted for compatibility but not implemented yet; it has no effect", name)
        prepare_path(cfg)
        try:
            self.sockets = [sockets.bind(a, cfg.backlog) for a in cfg.binds()]
        except (OSError, ValueError) as e:
            log.error("could not bind %s: %s", " ".join(cfg.binds()), e)
            return 1
        for s in self.sockets:
            log.info("listening on %s", sockets.describe(s))
        self.unix_paths = [s.getsockname() for s in self.sockets if s.family == socket.AF_UNIX]
        if cfg.preload:
            try:
                self.app = load(cfg)
            except AppLoadError as e:
                log.error("%s", e, exc_info=e.__cause__)
                return worker.EXIT_BOOT_ERROR
            except Exception:
                log.exception("the app failed to import")
                return worker.EXIT_BOOT_ERROR
        self._install_signals()
        logs.set_title("supervisor", cfg.proc_name or cfg.app)
        log.info("rsgi %s starting %d worker%s", _version(), self.target, "s"[: self.target != 1])
        try:
            while self.children or self.stopping is None:
                self._spawn_missing()
                self._wait(self._timeout())
                self._handle_signals()
                self._reap()
                self._enforce_deadline()
        finally:
            for s in self.sockets:
                s.close()
            for path in self.unix_paths:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        log.info("stopped")
        return self.exit_code

    def stop(self, sig: int = signal.SIGTERM, code: int | None = None) -> None:
        if code is not None:
            self.exit_code = code
        if self.stopping is None:
            grace = 0.0 if sig == signal.SIGQUIT else self.cfg.graceful_timeout
            self.stopping = time.monotonic() + grace + KILL_SLACK
            log.info(
                "stopping %d worker%s (%s)",
                len(self.children),
                "s"[: len(self.children) != 1],
                signal.Signals(sig).name,
            )
            # Stop listening now; each worker closes its own copy when it stops accepting, and
            # then new connections are refused instead of waiting for a worker that won't come.
            for s in self.sockets:
                s.close()
        self._signal_all(sig)

    # -- workers -------------------------------------------------------------------------

    def _spawn_missing(self) -> None:
        if self.stopping is not None:
            return
        while len(self.children) < self.target and time.monotonic() >= self.next_spawn:
            self._spawn()
        while len(self.children) > self.target:
            oldest = min(self.children.values(), key=lambda c: c.started)
            self._kill(oldest.pid, signal.SIGTERM)
            self.children.pop(oldest.pid)  # reaped later without being replaced

    def _spawn(self) -> None:
        pid = os.fork()
        if pid:
            self.children[pid] = Child(pid)
            return
        # In the child: never return into the supervisor's loop.
        code = 1
        try:
            os.close(self.wake_r)
            os.close(self.wake_w)
            signal.set_wakeup_fd(-1)
            code = worker.run(self.cfg, self.sockets, self.app, os.getppid())
        except BaseException:
            traceback.print_exc()
        finally:
            logging.shutdown()
            os._exit(code)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            code = os.waitstatus_to_exitcode(status)
            if self.stopping is not None or child is None:
                continue
            lived = time.monotonic() - child.started
            if code == worker.EXIT_BOOT_ERROR:
                log.error("worker %d could not load the app (see above); shutting down", pid)
                self.stop(signal.SIGTERM, code=worker.EXIT_BOOT_ERROR)
                continue
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            hint = " (perhaps out of memory?)" if code == -signal.SIGKILL else ""
            log.error("worker %d %s%s after %.1fs; starting a new one", pid, how, hint, lived)
            if lived < QUICK_DEATH:
                self.quick_deaths += 1
                delay = min(MAX_BACKOFF, 0.1 * 2**self.quick_deaths)
                self.next_spawn = time.monotonic() + delay
            else:
                self.quick_deaths = 0

    def _signal_all(self, sig: int) -> None:
        for pid in list(self.children):
            self._kill(pid, sig)

    def _kill(self, pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def _enforce_deadline(self) -> None:
        if self.stopping is not None and self.children and time.monotonic() > self.stopping:
            log.warning(
                "%d worker%s still running after the graceful timeout; killing",
                len(self.children),
                "s"[: len(self.children) != 1],
            )
            self._signal_all(signal.SIGKILL)
            self.stopping = time.monotonic() + KILL_SLACK

    # -- signals -------------------------------------------------------------------------

    def _install_signals(self) -> None:
        # Handlers only record the signal; the loop acts on it (nothing unsafe runs in a handler).
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for sig in (
            signal.SIGTERM,
            signal.SIGINT,
            signal.SIGQUIT,
            signal.SIGHUP,
            signal.SIGTTIN,
            signal.SIGTTOU,
            signal.SIGCHLD,
        ):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, sig: int, _frame: Any) -> None:
        self.pending.append(sig)

    def _handle_signals(self) -> None:
        while self.pending:
            sig = self.pending.pop(0)
            if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                self.stop(sig)
            elif sig == signal.SIGHUP and self.stopping is None:
                # Replace every worker; each finishes its in-flight requests first.
                log.info("SIGHUP: replacing workers")
                old = list(self.children)
                for pid in old:
                    self._kill(pid, signal.SIGTERM)
                    self.children.pop(pid)
            elif sig == signal.SIGTTIN and self.stopping is None:
                self.target += 1
                log.info("SIGTTIN: %d workers", self.target)
            elif sig == signal.SIGTTOU and self.stopping is None and self.target > 1:
                self.target -= 1
                log.info("SIGTTOU: %d workers", self.target)

    def _timeout(self) -> float:
        if self.stopping is None and len(self.children) < self.target:
            return max(0.0, self.next_spawn - time.monotonic())
        return 1.0

    def _wait(self, timeout: float) -> None:
        try:
            ready, _, _ = select.select([self.wake_r], [], [], timeout)
        except OSError as e:  # EINTR is retried by Python; anything else is real
            if e.errno != errno.EINTR:
                raise
            return
        if ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self.wake_r, 4096):
                    pass


def _version() -> str:
    from . import __version__

    return __version__


if __name__ == "__main__":  # pragma: no cover - use `python -m rsgi`
    sys.exit("use: python -m rsgi APP")
