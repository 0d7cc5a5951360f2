"""The supervisor: binds the sockets, forks the workers, replaces one that dies, and stops
them gracefully. It never serves requests itself and runs no threads (so forking is safe)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import logs, metrics, reloader, sockets, worker
from .config import Config
from .importer import AppLoadError, load, prepare_path
from .scoreboard import Scoreboard, rss_mb

log = logging.getLogger("rsgi.supervisor")

# A worker that dies sooner than this after starting counts as a crash at boot.
QUICK_DEATH = 1.0
# Restart delay after repeated quick deaths doubles up to this.
MAX_BACKOFF = 10.0
# This many quick deaths in a row is a crash loop: the server stops instead of spinning.
CRASH_LOOP = 8
# Seconds given to workers beyond the graceful timeout before SIGKILL.
KILL_SLACK = 5.0


@dataclass
class Child:
    pid: int
    slot: int | None = None
    # Requests after which this worker is recycled (--max-requests plus its own jitter); 0: never.
    max_requests: int = 0
    started: float = field(default_factory=time.monotonic)
    # Seconds after which this worker is recycled (--workers-lifetime plus its jitter); 0: never.
    lifetime: float = 0.0
    # Asked to finish and exit (recycling, HUP, scale-down): not counted as a live worker.
    retiring: bool = False
    # When --timeout sent SIGABRT (SIGKILL follows if it is still there KILL_SLACK later).
    aborted: float | None = None


class Supervisor:
    def __init__(self, cfg: Config, reread: Callable[[], Config] | None = None) -> None:
        """`reread` builds the Config again (config file and environment re-read) on SIGHUP."""
        self.cfg = cfg
        self.reread = reread
        self.children: dict[int, Child] = {}
        self.target = cfg.workers
        self.sockets: list[socket.socket] = []
        self.unix_paths: list[str] = []
        self.app: Any = None
        self.wsgi_app: Any = None  # with --wsgi/--django and --preload
        self.stopping: float | None = None  # deadline once a stop began
        self.exit_code = 0
        self.quick_deaths = 0
        self.next_spawn = 0.0
        self.pending: list[int] = []
        self.wake_r, self.wake_w = -1, -1
        self.scoreboard = Scoreboard()
        self.watcher: int | None = None
        self.totals = metrics.Totals()  # counters of exited workers, for --metrics-bind
        self.metrics_socket: socket.socket | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def run(self) -> int:
        cfg = self.cfg
        try:
            logs.setup(cfg.log_level, cfg.error_log, cfg.log_config)
        except Exception as e:
            logs.warn_early(f"--log-config {cfg.log_config}: {e}")
            return 2
        try:
            apply_env(cfg)
        except (OSError, ImportError) as e:
            log.error("--env-file %s: %s", cfg.env_file, e)
            return 2
        if cfg.umask:
            os.umask(int(cfg.umask, 8))
        for name in cfg.pending_settings():
            log.warning("%s is accepted for compatibility but not implemented yet; it has no effect", name)
        prepare_path(cfg)
        try:
            self.sockets = [sockets.bind(a, cfg.backlog) for a in cfg.binds()]
        except (OSError, ValueError) as e:
            log.error("could not bind %s: %s", " ".join(cfg.binds()), e)
            return 1
        for s in self.sockets:
            log.info("listening on %s", sockets.describe(s, "https" if cfg.certfile else "http"))
        if cfg.metrics_bind:
            collector = metrics.Collector(self.scoreboard, self._live_slots, self.totals)
            try:
                self.metrics_socket = metrics.start(cfg.metrics_bind, collector)
            except (OSError, ImportError, ValueError) as e:
                log.error("--metrics-bind %s: %s", cfg.metrics_bind, e)
                return 1
            log.info("metrics on http://%s/metrics", cfg.metrics_bind)
        self.unix_paths = [s.getsockname() for s in self.sockets if s.family == socket.AF_UNIX]
        if cfg.preload:
            try:
                self.app = load(cfg)
                if cfg.wsgi:
                    self.wsgi_app = load(cfg, cfg.wsgi)
            except AppLoadError as e:
                log.error("%s", e, exc_info=e.__cause__)
                return worker.EXIT_BOOT_ERROR
            except Exception:
                log.exception("the app failed to import")
                return worker.EXIT_BOOT_ERROR
        self._install_signals()
        logs.set_title("supervisor", cfg.proc_name or cfg.app)
        if cfg.pid:
            with open(cfg.pid, "w") as f:
                f.write(f"{os.getpid()}\n")
        log.info("rsgi %s starting %d worker%s", _version(), self.target, "s"[: self.target != 1])
        if cfg.reload:
            self.watcher = reloader.start(cfg, os.getpid(), self.sockets)
        try:
            while self.children or self.watcher is not None or self.stopping is None:
                self._spawn_missing()
                self._wait(self._timeout())
                self._handle_signals()
                self._reap()
                self._watch()
                self._enforce_deadline()
        finally:
            for s in self.sockets:
                s.close()
            for path in [*self.unix_paths, *([cfg.pid] if cfg.pid else [])]:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        log.info("stopped")
        return self.exit_code

    def _live_slots(self) -> list[tuple[int, int]]:
        """(pid, scoreboard slot) of every worker; called from the metrics thread."""
        return [(c.pid, c.slot) for c in list(self.children.values()) if c.slot is not None]

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
        elif sig == signal.SIGQUIT:
            # QUIT during a graceful stop makes it fast (the workers do the same).
            self.stopping = min(self.stopping, time.monotonic() + KILL_SLACK)
        self._signal_all(sig)
        if self.watcher is not None:
            self._kill(self.watcher, signal.SIGTERM)

    # -- workers -------------------------------------------------------------------------

    def _spawn_missing(self) -> None:
        if self.stopping is not None:
            return
        active = [c for c in self.children.values() if not c.retiring]
        while len(active) < self.target and time.monotonic() >= self.next_spawn:
            active.append(self._spawn())
        for oldest in sorted(active, key=lambda c: c.started)[: max(0, len(active) - self.target)]:
            self._retire(oldest, "fewer workers wanted")

    def _retire(self, child: Child, why: str) -> None:
        """Let a worker finish its requests and exit; a replacement starts at once."""
        log.info("retiring worker %d: %s", child.pid, why)
        child.retiring = True
        self._kill(child.pid, signal.SIGTERM)

    def _watch(self) -> None:
        """--max-requests, --max-worker-memory and --timeout, from the scoreboard and /proc."""
        cfg, now = self.cfg, time.monotonic()
        for child in list(self.children.values()):
            if child.slot is None:
                continue
            if child.aborted is not None:
                if now - child.aborted > KILL_SLACK:
                    self._kill(child.pid, signal.SIGKILL)
                continue
            if cfg.timeout > 0:
                stuck = [
                    (since, line)
                    # One entry more than --threads: with both interfaces the loop has entry 0.
                    for since, line in self.scoreboard.busy(child.slot, cfg.threads + 1)
                    if now - since > cfg.timeout
                ]
                if stuck:
                    since, line = min(stuck)
                    log.error(
                        "worker %d timed out: busy %.1fs with %s (--timeout %gs); killing it",
                        child.pid,
                        now - since,
                        line,
                        cfg.timeout,
                    )
                    child.aborted = now
                    # SIGABRT first: faulthandler prints where every thread of the worker is stuck.
                    self._kill(child.pid, signal.SIGABRT)
                    continue
            if child.retiring or self.stopping is not None:
                continue
            if child.max_requests and self.scoreboard.requests(child.slot) >= child.max_requests:
                self._retire(child, f"served {child.max_requests} requests (--max-requests)")
            elif child.lifetime and now - child.started >= child.lifetime:
                self._retire(child, f"ran {child.lifetime:.0f}s (--workers-lifetime)")
            elif cfg.max_worker_memory and (mb := rss_mb(child.pid)) > cfg.max_worker_memory:
                self._retire(child, f"uses {mb:.0f} MB (--max-worker-memory {cfg.max_worker_memory})")

    def _spawn(self) -> Child:
        slot = self.scoreboard.take()
        limit = 0
        if self.cfg.max_requests > 0:
            limit = self.cfg.max_requests + random.randint(0, max(0, self.cfg.max_requests_jitter))
        lifetime = self.cfg.workers_lifetime * random.uniform(1.0, 1.1) if self.cfg.workers_lifetime > 0 else 0.0
        pid = os.fork()
        if pid:
            child = self.children[pid] = Child(pid, slot, limit, lifetime=lifetime)
            return child
        # In the child: never return into the supervisor's loop.
        code = 1
        try:
            os.close(self.wake_r)
            os.close(self.wake_w)
            if self.metrics_socket is not None:
                self.metrics_socket.close()
            signal.set_wakeup_fd(-1)
            handle = None if slot is None else self.scoreboard.slot(slot)
            code = worker.run(self.cfg, self.sockets, self.app, os.getppid(), handle, self.wsgi_app)
        except BaseException:
            traceback.print_exc()
        finally:
            logs.flush_core_logs()
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
            if pid == self.watcher:
                self.watcher = None
                continue
            child = self.children.pop(pid, None)
            code = os.waitstatus_to_exitcode(status)
            if child is not None and child.slot is not None:
                self.totals.worker_exited(self.scoreboard.metrics(child.slot))
                self.scoreboard.give_back(child.slot)
            if self.stopping is not None or child is None:
                continue
            self.totals.restarts += 1  # it is replaced, whether it crashed or was retired
            if child.retiring:
                # Asked to go (recycling, HUP, scale-down): not a crash, whatever the code (one
                # retired while still booting dies of the SIGTERM before its handlers exist).
                if code != 0:
                    log.info("retired worker %d exited with %s", pid, code)
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
                if self.quick_deaths >= CRASH_LOOP:
                    log.error("workers keep dying at boot (%d in a row); shutting down", self.quick_deaths)
                    self.stop(signal.SIGTERM, code=1)
                    continue
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
            signal.SIGUSR1,
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
                self._reread_config()
                for child in list(self.children.values()):
                    if not child.retiring:
                        self._retire(child, "SIGHUP")
            elif sig == signal.SIGUSR1:
                # logrotate's postrotate: reopen our log files, then each worker reopens its own.
                logs.reopen_files()
                log.info("SIGUSR1: log files reopened")
                self._signal_all(signal.SIGUSR1)
            elif sig == signal.SIGTTIN and self.stopping is None:
                self.target += 1
                log.info("SIGTTIN: %d workers", self.target)
            elif sig == signal.SIGTTOU and self.stopping is None and self.target > 1:
                self.target -= 1
                log.info("SIGTTOU: %d workers", self.target)

    def _reread_config(self) -> None:
        """gunicorn's HUP: the new workers run with the config file and environment as they are
        now. Listening addresses stay (changing them needs a restart)."""
        if self.reread is None:
            return
        try:
            cfg = self.reread()
        except Exception as e:
            log.error("SIGHUP: the configuration could not be re-read (%s); keeping the old one", e)
            return
        if cfg.binds() != self.cfg.binds():
            log.warning("SIGHUP: listening addresses changed in the config; they take effect on restart")
        if cfg.workers != self.cfg.workers:
            log.info("SIGHUP: %d workers", cfg.workers)
            self.target = cfg.workers
        self.cfg = cfg

    def _timeout(self) -> float:
        active = sum(1 for c in self.children.values() if not c.retiring)
        if self.stopping is None and active < self.target:
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


def apply_env(cfg: Config) -> None:
    """--env-file, then --env. As with uvicorn, a variable already in the environment wins over
    the file (so `docker run -e` overrides it); --env wins over both."""
    if cfg.env_file:
        if not os.path.isfile(cfg.env_file):
            raise FileNotFoundError(f"no such file: {cfg.env_file}")
        try:
            from dotenv import dotenv_values
        except ImportError:
            raise ImportError("reading an env file needs python-dotenv (pip install python-dotenv)") from None
        for key, value in dotenv_values(cfg.env_file).items():
            if value is not None:
                os.environ.setdefault(key, value)
    for item in cfg.env:
        key, _, value = item.partition("=")
        os.environ[key] = value


def _version() -> str:
    from . import __version__

    return __version__


if __name__ == "__main__":  # pragma: no cover - use `python -m rsgi`
    sys.exit("use: python -m rsgi APP")
