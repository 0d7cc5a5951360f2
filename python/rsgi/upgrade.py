"""USR2: rsgi upgrades itself without dropping a request. The supervisor forks; the child moves the
listening sockets to descriptors 3, 4, ... (socket activation's layout, with LISTEN_PID its own pid)
and execs the same interpreter with the same arguments, working directory and environment: a new
supervisor, running the code now on disk, that serves the same sockets. It holds the write end of
a pipe; once every one of its workers serves, it writes its pid file and one byte to the pipe, and
the old supervisor stops gracefully while the new workers accept from the same sockets. A pipe
rather than a signal: no pid can be reused meanwhile, and a new supervisor that dies closes its end.
A new supervisor that exits, or is not ready within --upgrade-timeout, is stopped and logged; the
old one goes on serving.

Only the supervisor uses this module: `Upgrade` is the old supervisor's side, `Successor` the new
one's (read from the environment the old one set, then removed from it)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import stat
import sys
from collections.abc import Collection, Mapping, MutableMapping, Sequence
from dataclasses import dataclass

from . import systemd

log = logging.getLogger("rsgi.supervisor")

READY = b"R"
# The LISTEN_FDNAMES name of the --metrics-bind listener, which the new supervisor never serves requests on.
METRICS = "rsgi-metrics"
# The new supervisor's end of the pipe, the old one's pid (for the log), and the Unix socket files
# the old one bound, which the new one removes when it stops (JSON list).
ENV_FD = "RSGI_UPGRADE_FD"
ENV_FROM = "RSGI_UPGRADE_FROM"
ENV_UNLINK = "RSGI_UPGRADE_UNLINK"
# What the environment must not carry into the new supervisor as it was: the new one gets fresh ones.
NOT_INHERITED = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_PID", ENV_FD, ENV_FROM, ENV_UNLINK)


@dataclass(frozen=True)
class Listener:
    """One socket to hand over: its descriptor here, its LISTEN_FDNAMES name, and whether the
    command line names it by number (--bind fd://N, --fd N), so it must stay at that number."""

    fd: int
    name: str = ""
    fixed: bool = False


def plan(listeners: Sequence[Listener]) -> tuple[dict[int, int], list[str], int]:
    """Where each socket goes in the new supervisor: `{target fd: fd here}`, the names of the
    LISTEN_FDS ones (3, 4, ... in order), and the pipe's descriptor (just above them all). A socket
    named by number keeps its number; raises ValueError when that number is one the others need."""
    passed = [s for s in listeners if not s.fixed]
    targets = {systemd.FIRST_FD + i: s.fd for i, s in enumerate(passed)}
    for s in listeners:
        if s.fixed:
            if s.fd in targets:
                raise ValueError(f"fd://{s.fd} is one of the descriptors 3..{2 + len(passed)} the other sockets take")
            targets[s.fd] = s.fd
    pipe = max([2, *targets]) + 1
    return targets, [s.name for s in passed], pipe


@dataclass
class Upgrade:
    """The old supervisor's side of an upgrade under way: the new supervisor's pid, the read end of
    the pipe, and the monotonic time by which it must be ready."""

    pid: int
    fd: int
    deadline: float

    def poll(self) -> bool | None:
        """True: the new supervisor serves. False: it closed the pipe without saying so (it exited).
        None: nothing yet."""
        try:
            data = os.read(self.fd, 16)
        except BlockingIOError:
            return None
        return READY in data if data else False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1


def start(
    listeners: Sequence[Listener],
    environ: Mapping[str, str],
    cwd: str,
    unlink: Collection[str],
    deadline: float,
    blocked: Collection[signal.Signals],
) -> Upgrade:
    """Forks and execs the new supervisor; returns at once in the old one. `environ` and `cwd` are
    the supervisor's as it started (before --chdir, --env and systemd's variables changed them);
    `blocked` the signals the supervisor's handlers take, held back over the fork. Raises OSError
    (no fork) or ValueError (see `plan`)."""
    targets, names, pipe_fd = plan(listeners)
    env = {k: v for k, v in environ.items() if k not in NOT_INHERITED}
    env[ENV_FROM] = str(os.getpid())
    env[ENV_FD] = str(pipe_fd)
    env[ENV_UNLINK] = json.dumps(sorted(unlink))
    if names:
        env["LISTEN_FDS"] = str(len(names))
        env["LISTEN_FDNAMES"] = ":".join(names)
    # sys.orig_argv: `python -m rsgi ...` or `.../bin/rsgi ...`, as the supervisor was started.
    argv = [sys.executable, *sys.orig_argv[1:]]
    read, write = os.pipe2(os.O_CLOEXEC)
    signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        pid = os.fork()
    except BaseException:
        os.close(read)
        os.close(write)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
        raise
    if pid == 0:
        _exec(targets, write, pipe_fd, argv, env, cwd)  # never returns
    signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
    os.close(write)
    os.set_blocking(read, False)
    return Upgrade(pid, read, deadline)


def _exec(targets: dict[int, int], write: int, pipe_fd: int, argv: list[str], env: dict[str, str], cwd: str) -> None:
    """In the forked child: its own session (a signal to the old supervisor's process group, such
    as Ctrl-C in a terminal, must not reach it), the descriptors in place, then exec."""
    try:
        os.setsid()
        # Descriptors first go above every target, so that moving one never overwrites another.
        top = pipe_fd + 1
        moved = {target: fcntl.fcntl(source, fcntl.F_DUPFD_CLOEXEC, top) for target, source in targets.items()}
        moved_pipe = fcntl.fcntl(write, fcntl.F_DUPFD_CLOEXEC, top)
        for target, fd in moved.items():
            os.dup2(fd, target)  # inheritable
        os.dup2(moved_pipe, pipe_fd)
        for fd in range(systemd.FIRST_FD, pipe_fd):
            if fd not in targets:
                with contextlib.suppress(OSError):
                    os.close(fd)
        os.closerange(top, os.sysconf("SC_OPEN_MAX"))
        if "LISTEN_FDS" in env:
            env["LISTEN_PID"] = str(os.getpid())
        os.chdir(cwd)
        # The mask survives exec; the handlers of caught signals don't.
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.execve(argv[0], argv, env)
    except BaseException as e:
        with contextlib.suppress(BaseException):
            os.write(2, f"rsgi: USR2: could not start the new supervisor: {e}\n".encode())
    finally:
        os._exit(127)


class Successor:
    """The new supervisor's side, read from (and removed from) the environment its predecessor
    set; `pending` until it has said that it serves. Without those variables: no upgrade."""

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        fd = environ.pop(ENV_FD, "")
        old = environ.pop(ENV_FROM, "")
        unlink = environ.pop(ENV_UNLINK, "")
        self.fd = int(fd) if fd.isdigit() else -1
        self.old_pid = int(old) if old.isdigit() else 0
        try:
            paths = json.loads(unlink) if unlink else []
        except ValueError:
            paths = []
        self.unlink: list[str] = [p for p in paths if isinstance(p, str)]
        if self.fd < 0:
            return
        # Only the pipe of the parent that set the variables (a copied environment is no upgrade).
        try:
            ours = stat.S_ISFIFO(os.fstat(self.fd).st_mode) and os.getppid() == self.old_pid
        except OSError:
            ours = False
        if not ours:
            log.warning("%s=%s is not a pipe from the parent supervisor; not taking over from it", ENV_FD, fd)
            self.fd = -1
            return
        os.set_inheritable(self.fd, False)  # not for the app, nor for a --reload watcher's exec

    @property
    def pending(self) -> bool:
        return self.fd >= 0

    def ready(self) -> None:
        """Every worker serves: the old supervisor may stop."""
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            os.write(self.fd, READY)
        self.close()

    def close(self) -> None:
        """Also in each forked worker: only the supervisor holds the pipe."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
