"""The supervisor's loop: forks the workers, replaces one that dies, acts on signals, recycles
and kills workers as the policies say, serves --metrics-bind, tells systemd how things stand, and
stops the workers gracefully (after --drain-delay on SIGTERM). It never serves the app's requests
itself and runs no threads (so forking is safe): everything happens in one loop that waits on a
signal pipe and the metrics sockets. What runs once before the loop is in boot.py; the decisions
(recycling, --timeout, restart back-off) in policies.py; the systemd protocol in systemd.py; the
USR2 upgrade's processes and handshake in upgrade.py."""

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
from collections.abc import Callable
from typing import Any

from . import drain, hooks, logs, metrics, policies, reloader, systemd, upgrade, worker
from .boot import Booted, BootFailed, boot, release, write_pid
from .config import Config
from .policies import KILL_SLACK, Child
from .scoreboard import Scoreboard, rss_mb

log = logging.getLogger("rsgi.supervisor")

# The signals the supervisor acts on (its handlers only record them; the loop acts).
HANDLED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGCHLD,
)
POLL_IN = select.POLLIN | select.POLLHUP | select.POLLERR
POLL_OUT = select.POLLOUT | select.POLLHUP | select.POLLERR


class Supervisor:
    def __init__(self, cfg: Config, reread: Callable[[], Config] | None = None, upgradable: bool = True) -> None:
        """`reread` builds the Config again (config file and environment re-read) on SIGHUP;
        `upgradable`: SIGUSR2 execs the command line this process started with (upgrade.py)."""
        self.cfg = cfg
        self.reread = reread
        self.upgradable = upgradable
        self.children: dict[int, Child] = {}
        self.target = cfg.workers
        self.booted = Booted()
        self.sockets: list[socket.socket] = []
        self.stopping: float | None = None  # deadline once a stop began
        self.exit_code = 0
        self.restarts = policies.Restarts()
        self.pending: list[int] = []
        self.wake_r, self.wake_w = -1, -1
        self.scoreboard = Scoreboard()
        self.watcher: int | None = None
        self.totals = metrics.Totals()  # counters of exited workers, for --metrics-bind
        self.metrics: metrics.Endpoint | None = None
        self.drain_until: float | None = None  # end of --drain-delay once a SIGTERM began it
        self.notice: drain.Notice | None = None
        self.systemd = systemd.Notifier({})  # the real one is made in run()
        # USR2: the environment and directory the supervisor started with, for its successor; the
        # upgrade under way (this is the old supervisor), or this one's side of it (the new one).
        self.environ: dict[str, str] = {}
        self.cwd = ""
        self.upgrade: upgrade.Upgrade | None = None
        self.successor = upgrade.Successor({})

    # -- lifecycle ---------------------------------------------------------------------

    def run(self) -> int:
        cfg = self.cfg
        hooks.bind(self)
        self.environ, self.cwd = dict(os.environ), os.getcwd()
        # Before anything imports the app: NOTIFY_SOCKET, WATCHDOG_* and RSGI_UPGRADE_* leave the environment.
        self.systemd = systemd.Notifier(os.environ)
        self.successor = upgrade.Successor(os.environ)
        try:
            collector = lambda: metrics.Collector(self.scoreboard, self._live_slots, self.totals)  # noqa: E731
            self.booted = boot(cfg, collector, self.successor)
        except BootFailed as e:
            return e.code
        self.sockets, self.metrics = self.booted.sockets, self.booted.metrics
        self._install_signals()
        logs.set_title("supervisor", cfg.proc_name or cfg.app)
        if cfg.pid and not self.successor.pending:  # a successor writes it once it serves
            write_pid(cfg.pid)
        log.info("rsgi %s starting %d worker%s", _version(), self.target, "s"[: self.target != 1])
        if not hooks.ready():  # a failing when_ready stops start-up, as in gunicorn
            release(self.booted, cfg.pid)
            return 1
        if cfg.reload:
            inherited = [*self.sockets, *([self.metrics.listener] if self.metrics else [])]
            self.watcher = reloader.start(cfg, os.getpid(), inherited)
        self.notice = drain.Notice()  # after the watcher's fork: only workers inherit its read end
        try:
            while self.children or self.watcher is not None or self.stopping is None:
                self._spawn_missing()
                self._wait(self._timeout())
                self._handle_signals()
                self._end_drain_delay()
                self._reap()
                self._watch()
                self._enforce_deadline()
                self._follow_upgrade()
                self._report()
        finally:
            if self.upgrade is not None:
                self.upgrade.close()
            self.successor.close()
            release(self.booted, cfg.pid)
            self.notice.close()
            self.systemd.close()
        hooks.exiting()
        log.info("stopped")
        return self.exit_code

    def _live_slots(self) -> list[tuple[int, int]]:
        """(pid, scoreboard slot) of every worker; called when /metrics is scraped."""
        return [(c.pid, c.slot) for c in list(self.children.values()) if c.slot is not None]

    def stop(self, sig: int = signal.SIGTERM, code: int | None = None) -> None:
        if code is not None:
            self.exit_code = code
        self.drain_until = None
        if self.stopping is None:
            self.systemd.stopping(f"stopping {len(self.children)} workers")
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
            if self.upgrade is not None:
                # Not taken over yet: the new supervisor goes too.
                log.warning("USR2: the upgrade under way is given up; stopping the new supervisor %d", self.upgrade.pid)
                self._abandon_upgrade()
        elif sig == signal.SIGQUIT:
            # QUIT during a graceful stop makes it fast (the workers do the same).
            self.stopping = min(self.stopping, time.monotonic() + KILL_SLACK)
        self._signal_all(sig)
        if self.watcher is not None:
            self._kill(self.watcher, signal.SIGTERM)

    # -- workers -------------------------------------------------------------------------

    def _spawn_missing(self) -> None:
        hooks.nworkers(self.target)
        if self.stopping is not None:
            return
        active = [c for c in self.children.values() if not c.retiring]
        while len(active) < self.target and self.restarts.may_spawn(time.monotonic()):
            active.append(self._spawn())
        for oldest in policies.surplus(active, self.target):
            self._retire(oldest, "fewer workers wanted")

    def _retire(self, child: Child, why: str) -> None:
        """Let a worker finish its requests and exit; a replacement starts at once."""
        log.info("retiring worker %d: %s", child.pid, why)
        child.retiring = True
        self._kill(child.pid, signal.SIGTERM)

    def _watch(self) -> None:
        """--max-requests, --workers-lifetime, --max-worker-memory and --timeout: reads the
        scoreboard and /proc, asks policies.watch what to do, and does it."""
        cfg, now = self.cfg, time.monotonic()
        children = list(self.children.values())
        readings = {c.pid: self._read(c) for c in children if c.slot is not None and c.aborted is None}
        limits = policies.Limits(timeout=cfg.timeout, max_worker_memory=cfg.max_worker_memory)
        for action in policies.watch(children, readings, now, limits, stopping=self.stopping is not None):
            child = self.children[action.pid]
            if isinstance(action, policies.Retire):
                self._retire(child, action.why)
            elif isinstance(action, policies.Abort):
                log.error(
                    "worker %d timed out: busy %.1fs with %s (--timeout %gs); killing it",
                    child.pid,
                    action.busy_for,
                    action.line,
                    cfg.timeout,
                )
                child.aborted = now
                # SIGABRT first: faulthandler prints where every thread of the worker is stuck.
                self._kill(child.pid, action.sig)
            else:
                self._kill(child.pid, action.sig)

    def _read(self, child: Child) -> policies.Reading:
        """What the watchdog needs of one worker (only what the settings in force look at)."""
        assert child.slot is not None
        cfg = self.cfg
        return policies.Reading(
            requests=self.scoreboard.requests(child.slot) if child.max_requests else 0,
            # One entry more than --threads: with both interfaces the loop has entry 0.
            busy=self.scoreboard.busy(child.slot, cfg.threads + 1) if cfg.timeout > 0 else (),
            rss_mb=rss_mb(child.pid) if cfg.max_worker_memory and not child.retiring else 0.0,
        )

    def _spawn(self) -> Child:
        slot = self.scoreboard.take()
        limit = policies.request_limit(self.cfg.max_requests, self.cfg.max_requests_jitter)
        lifetime = policies.lifetime(self.cfg.workers_lifetime)
        hooks.pre_fork()
        # Signals wait while forking: a worker must never run the supervisor's handlers (a SIGTERM
        # sent by a stop just after the fork would be recorded in the child's copy and lost).
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
            raise
        if pid:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
            hooks.forked(pid)
            child = self.children[pid] = Child(pid, slot, limit, time.monotonic(), lifetime)
            return child
        # In the child: never return into the supervisor's loop.
        code = 1
        try:
            os.close(self.wake_r)
            os.close(self.wake_w)
            if self.metrics is not None:
                self.metrics.close()  # this process's copies only
            signal.set_wakeup_fd(-1)
            worker.prepare_signals()  # the worker's own dispositions, then what was sent meanwhile lands
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
            handle = None if slot is None else self.scoreboard.slot(slot)
            self.systemd.close()
            self.successor.close()
            if self.upgrade is not None:
                self.upgrade.close()
            assert self.notice is not None
            notice = self.notice.in_worker()  # the write end closed here whatever the delay
            if self.cfg.drain_delay <= 0:
                notice = -1
            hooks.post_fork()
            code = worker.run(
                self.cfg, self.sockets, self.booted.app, os.getppid(), handle, self.booted.wsgi_app, notice
            )
        except BaseException:
            traceback.print_exc()
        finally:
            hooks.worker_exit()
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
            if self.upgrade is not None and pid == self.upgrade.pid:
                code = os.waitstatus_to_exitcode(status)
                how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
                self._upgrade_failed(f"the new supervisor {pid} {how} before its workers served (see above)")
                continue
            child = self.children.pop(pid, None)
            hooks.child_exit(pid)
            code = os.waitstatus_to_exitcode(status)
            # Without a scoreboard slot there is no readiness to read: judged by time alone.
            ready = child is None or child.slot is None or self.scoreboard.ready(child.slot)
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
            now = time.monotonic()
            lived = now - child.started
            if code == worker.EXIT_BOOT_ERROR:
                log.error("worker %d could not load the app (see above); shutting down", pid)
                self.stop(signal.SIGTERM, code=worker.EXIT_BOOT_ERROR)
                continue
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            hint = " (perhaps out of memory?)" if code == -signal.SIGKILL else ""
            log.error("worker %d %s%s after %.1fs; starting a new one", pid, how, hint, lived)
            if self.restarts.died(lived, now, ready):
                log.error("workers keep dying at boot (%d in a row); shutting down", self.restarts.quick_deaths)
                self.stop(signal.SIGTERM, code=1)

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
        for sig in HANDLED:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, sig: int, _frame: Any) -> None:
        self.pending.append(sig)

    def _handle_signals(self) -> None:
        while self.pending:
            sig = self.pending.pop(0)
            leaving = self.stopping is not None or self.drain_until is not None
            # A USR2 successor not serving yet is stopped at once: the old supervisor still serves.
            delay = self.cfg.drain_delay > 0 and not self.successor.pending
            if sig == signal.SIGTERM and not leaving and delay:
                self._begin_drain_delay()
            elif sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                self.stop(sig)
            elif sig == signal.SIGHUP and not leaving:
                # Replace every worker; each finishes its in-flight requests first.
                log.info("SIGHUP: replacing workers")
                self.systemd.reloading()
                self._reread_config()
                hooks.reloaded()
                for child in list(self.children.values()):
                    if not child.retiring:
                        self._retire(child, "SIGHUP")
            elif sig == signal.SIGUSR1:
                # logrotate's postrotate: reopen our log files, then each worker reopens its own.
                logs.reopen_files()
                log.info("SIGUSR1: log files reopened")
                self._signal_all(signal.SIGUSR1)
            elif sig == signal.SIGUSR2:
                self._begin_upgrade(leaving)
            elif sig == signal.SIGTTIN and not leaving:
                self.target += 1
                log.info("SIGTTIN: %d workers", self.target)
            elif sig == signal.SIGTTOU and not leaving and self.target > 1:
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
        now = time.monotonic()
        active = sum(1 for c in self.children.values() if not c.retiring)
        if self.stopping is None and active < self.target:
            return max(0.0, self.restarts.next_spawn - now)
        timeout = 1.0
        if self.drain_until is not None:
            timeout = min(timeout, max(0.0, self.drain_until - now))
        if self.stopping is None and self.drain_until is None:
            timeout = min(timeout, self.systemd.due_in(now))
            if self.successor.pending:
                timeout = min(timeout, systemd.READY_POLL)
        if self.upgrade is not None:
            timeout = min(timeout, max(0.0, self.upgrade.deadline - now))
        return timeout

    # -- --drain-delay -------------------------------------------------------------------

    def _begin_drain_delay(self) -> None:
        """SIGTERM with --drain-delay: the workers' health path answers 503 from now on while
        they keep accepting and serving; the graceful stop follows when the delay is over."""
        delay = self.cfg.drain_delay
        self.drain_until = time.monotonic() + delay
        assert self.notice is not None
        self.notice.give()
        log.info("SIGTERM: unready, still serving for %gs (--drain-delay); then stopping", delay)
        self.systemd.stopping(f"draining: still serving for {delay:g}s (--drain-delay)")

    def _end_drain_delay(self) -> None:
        if self.drain_until is not None and time.monotonic() >= self.drain_until:
            self.stop(signal.SIGTERM)

    # -- USR2 ------------------------------------------------------------------------------

    def _begin_upgrade(self, leaving: bool) -> None:
        """Starts the new supervisor (upgrade.py), unless one is on its way or this one stops."""
        if leaving:
            log.info("USR2: this supervisor is stopping; not upgrading")
            return
        if self.upgrade is not None:
            log.info("USR2: an upgrade is already under way (new supervisor %d); ignored", self.upgrade.pid)
            return
        if self.successor.pending:
            log.info("USR2: this supervisor has not taken over from %d yet; ignored", self.successor.old_pid)
            return
        if not self.upgradable:
            log.info("USR2: upgrades are for a server started by the rsgi command; ignored")
            return
        booted = self.booted
        listeners = [
            upgrade.Listener(s.fileno(), booted.names.get(s.fileno(), ""), s.fileno() in booted.fixed)
            for s in self.sockets
        ]
        if self.metrics is not None:
            listeners.append(upgrade.Listener(self.metrics.listener.fileno(), upgrade.METRICS))
        timeout = self.cfg.upgrade_timeout
        try:
            self.upgrade = upgrade.start(
                listeners, self.environ, self.cwd, booted.unix_paths, time.monotonic() + timeout, HANDLED
            )
        except (OSError, ValueError) as e:
            log.error("USR2: the new supervisor could not be started (%s); this one keeps serving", e)
            return
        log.info(
            "USR2: started a new supervisor (pid %d) from the code on disk; this one serves until its "
            "workers do (--upgrade-timeout %gs)",
            self.upgrade.pid,
            timeout,
        )

    def _follow_upgrade(self) -> None:
        """The old supervisor's side: reads the pipe, and gives up at --upgrade-timeout."""
        if self.upgrade is None:
            return
        answer = self.upgrade.poll()
        if answer is None and time.monotonic() >= self.upgrade.deadline:
            self._upgrade_failed(
                f"the workers of the new supervisor {self.upgrade.pid} did not all serve within "
                f"{self.cfg.upgrade_timeout:g}s (--upgrade-timeout); stopping it"
            )
        elif answer is False:
            self._upgrade_failed(f"the new supervisor {self.upgrade.pid} stopped before its workers served (see above)")
        elif answer:
            self._hand_over()

    def _hand_over(self) -> None:
        """The new supervisor serves: this one stops gracefully. No --drain-delay (the new workers
        accept from the same sockets, so nobody has to stop sending), no STOPPING=1 (systemd's main
        process is the new one), and the socket files and pid file are the new supervisor's now."""
        assert self.upgrade is not None
        new = self.upgrade.pid
        self.upgrade.close()
        self.upgrade = None
        log.info("USR2: the new supervisor %d serves; this one (pid %d) stops gracefully", new, os.getpid())
        self.systemd.hand_over(new)
        self.booted.unix_paths = []
        self.stop(signal.SIGTERM)

    def _upgrade_failed(self, why: str) -> None:
        log.error("USR2: upgrade failed: %s; this supervisor (pid %d) keeps serving", why, os.getpid())
        self._abandon_upgrade()

    def _abandon_upgrade(self) -> None:
        """Stops the new supervisor if it still runs (SIGTERM: graceful, without --drain-delay while
        it has not taken over); it is reaped as any other child would be and otherwise ignored."""
        if self.upgrade is None:
            return
        self._kill(self.upgrade.pid, signal.SIGTERM)
        self.upgrade.close()
        self.upgrade = None

    # -- readiness: USR2's handshake and systemd ---------------------------------------------

    def _report(self) -> None:
        """Once every wanted worker serves: a USR2 successor writes the pid file and tells the old
        supervisor; systemd.Notifier.report gets what it needs, read off the scoreboard
        (STOPPING=1 is stop()'s)."""
        waiting = self.successor.pending
        if not (self.systemd.enabled or waiting) or self.stopping is not None or self.drain_until is not None:
            return
        now = time.monotonic()
        children = list(self.children.values())
        serving = {c.pid for c in children if c.slot is None or self.scoreboard.ready(c.slot)}
        active = [c for c in children if not c.retiring]
        ready = sum(1 for c in active if c.pid in serving)
        if waiting:
            # Silent to systemd until the old supervisor has made this one the main process
            # (MAINPID=), which it does as soon as it reads the pipe: the next turn, 0.1 s on.
            if ready >= self.target:
                if self.cfg.pid:
                    write_pid(self.cfg.pid)
                log.info("USR2: every worker serves; taking over from the supervisor %d", self.successor.old_pid)
                self.successor.ready()
            return
        self.systemd.report(
            systemd.Workers(ready, self.target, len(active) - ready, len(children) - len(active)),
            # Healthy: some worker serves and no restart is held back (no crash loop under way).
            healthy=bool(serving) and self.restarts.may_spawn(now),
            now=now,
        )

    def _wait(self, timeout: float) -> None:
        """Waits up to `timeout` for a signal (the wakeup pipe) or a metrics connection, and
        serves the metrics connections that are ready; never blocks on one."""
        poll = select.poll()
        poll.register(self.wake_r, select.POLLIN)
        if self.upgrade is not None:
            poll.register(self.upgrade.fd, select.POLLIN)
        if self.metrics is not None:
            for s in self.metrics.readers():
                poll.register(s, select.POLLIN)
            for s in self.metrics.writers():
                poll.register(s, select.POLLOUT)
            deadline = self.metrics.next_deadline()
            if deadline is not None:
                timeout = min(timeout, max(0.0, deadline - time.monotonic()))
        try:
            events = poll.poll(timeout * 1000)
        except OSError as e:  # EINTR is retried by Python; anything else is real
            if e.errno != errno.EINTR:
                raise
            return
        readable = {fd for fd, ev in events if ev & POLL_IN}
        if self.wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(self.wake_r, 4096):
                    pass
        if self.metrics is not None:
            self.metrics.serve(readable, {fd for fd, ev in events if ev & POLL_OUT}, time.monotonic())


def _version() -> str:
    from . import __version__

    return __version__


if __name__ == "__main__":  # pragma: no cover - use `python -m rsgi`
    sys.exit("use: python -m rsgi APP")
