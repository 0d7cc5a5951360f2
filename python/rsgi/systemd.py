"""systemd, without libsystemd: socket activation (listening sockets passed as file descriptors
3, 4, ... with LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES; sd_listen_fds(3)) and the notification
protocol (READY=1, RELOADING=1, STOPPING=1, STATUS=, WATCHDOG=1 as datagrams to NOTIFY_SOCKET;
sd_notify(3)). Only the supervisor speaks it: the variables leave the environment as soon as they
are read, so neither the app nor a worker sees them (and none can claim the supervisor's sockets
or notify for it)."""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from collections.abc import MutableMapping
from dataclasses import dataclass

log = logging.getLogger("rsgi.supervisor")

# The first passed descriptor (SD_LISTEN_FDS_START).
FIRST_FD = 3
# How often the supervisor's loop looks for workers that became ready while READY=1 is pending.
READY_POLL = 0.1


@dataclass
class Passed:
    """One listening socket systemd passed, with its name (FileDescriptorName=, --fdname)."""

    sock: socket.socket
    name: str


def listen_fds(environ: MutableMapping[str, str]) -> list[Passed]:
    """The listening sockets passed to this process: none unless LISTEN_PID is our pid. The three
    variables are removed either way (as sd_listen_fds(unset_environment=1) does). Raises
    ValueError for variables or descriptors that cannot be served."""
    pid = environ.pop("LISTEN_PID", "")
    count = environ.pop("LISTEN_FDS", "")
    names = environ.pop("LISTEN_FDNAMES", "")
    if not pid or not count:
        return []
    if not pid.isdigit() or not count.isdigit():
        raise ValueError(f"LISTEN_PID={pid!r} LISTEN_FDS={count!r}: expected numbers")
    if int(pid) != os.getpid():
        return []  # meant for another process (a parent that did not unset them)
    n = int(count)
    labels = names.split(":") if names else []
    if len(labels) != n:
        if names:
            log.warning("LISTEN_FDNAMES has %d names for %d sockets; ignoring the names", len(labels), n)
        labels = [""] * n
    passed = []
    for fd, name in zip(range(FIRST_FD, FIRST_FD + n), labels, strict=True):
        what = f"file descriptor {fd}" + (f" ({name})" if name else "")
        try:
            sock = socket.socket(fileno=fd)
        except OSError as e:
            if e.errno != errno.ENOTSOCK:
                raise ValueError(f"{what}: {e}") from None
            sock = None
        if sock is None or not (
            sock.type == socket.SOCK_STREAM and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        ):
            if sock is not None:
                sock.detach()
            raise ValueError(
                f"{what} is not a listening stream socket "
                "(rsgi serves what a .socket unit with ListenStream= and Accept=no passes)"
            )
        sock.set_inheritable(True)  # as the sockets rsgi binds itself
        passed.append(Passed(sock, name))
    return passed


@dataclass(frozen=True)
class Workers:
    """How the workers stand, as the supervisor read them off the scoreboard."""

    serving: int  # of the wanted ones, serving
    target: int  # wanted
    starting: int  # wanted, not serving yet
    finishing: int  # retired (HUP, recycling), finishing their requests

    def status(self) -> str:
        text = f"{self.serving} of {self.target} workers serving"
        if self.starting or self.finishing:
            text += f" ({self.starting} starting, {self.finishing} finishing)"
        return text


class Notifier:
    """sd_notify from the supervisor's loop: one datagram per call, never blocking, never raising;
    does nothing without NOTIFY_SOCKET. `watchdog` is the interval of WATCHDOG=1 pings (half of
    WATCHDOG_USEC) when the watchdog is on for this process, else None. What it sends and when is
    decided here from plain readings (`report`), so the supervisor only reads the scoreboard."""

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        address = environ.pop("NOTIFY_SOCKET", "")
        usec = environ.pop("WATCHDOG_USEC", "")
        watchdog_pid = environ.pop("WATCHDOG_PID", "")
        self.sock: socket.socket | None = None
        self.address = ""
        self.watchdog: float | None = None
        self._failed = False
        self._ready_sent = False  # READY=1 sent since the start or the last RELOADING=1
        self._status = ""
        self._next_ping = 0.0  # monotonic time the next WATCHDOG=1 is due
        if not address:
            return
        if address.startswith("@"):  # the abstract namespace
            self.address = "\0" + address[1:]
        elif address.startswith("/"):
            self.address = address
        else:
            log.warning("NOTIFY_SOCKET=%s: only Unix socket paths are supported; not notifying systemd", address)
            return
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        if usec.isdigit() and int(usec) > 0 and watchdog_pid in ("", str(os.getpid())):
            self.watchdog = int(usec) / 2 / 1e6

    @property
    def enabled(self) -> bool:
        return self.sock is not None

    def send(self, *assignments: str) -> None:
        """Sends `assignments` ("READY=1", "STATUS=...") in one datagram."""
        if self.sock is None:
            return
        try:
            self.sock.sendto("\n".join(assignments).encode(), self.address)
        except OSError as e:
            # Logged once: a manager that went away must not fill the log.
            if not self._failed:
                log.warning("could not notify systemd at %s: %s", self.address.replace("\0", "@"), e)
            self._failed = True
        else:
            self._failed = False

    def report(self, workers: Workers, healthy: bool, now: float) -> None:
        """Once per turn of the loop while running: READY=1 (with MAINPID=) once every wanted
        worker serves, STATUS= when it changes, WATCHDOG=1 when due and `healthy`; while not
        healthy the pings stop, and systemd acts as WatchdogSec= says."""
        if self.sock is None:
            return
        news = []
        if not self._ready_sent and workers.serving >= workers.target:
            news += ["READY=1", f"MAINPID={os.getpid()}"]
            self._ready_sent = True
        status = workers.status()
        if status != self._status:
            news.append(f"STATUS={status}")
            self._status = status
        if news:
            self.send(*news)
        if self.watchdog is not None and now >= self._next_ping:
            if healthy:
                self.send("WATCHDOG=1")
                self._next_ping = now + self.watchdog
            else:
                self._next_ping = now + min(self.watchdog, READY_POLL)

    def due_in(self, now: float) -> float:
        """Seconds until `report` has something to do (the loop's longest wait is 1 s anyway)."""
        if self.sock is None:
            return 1.0
        due = 1.0 if self._ready_sent else READY_POLL
        if self.watchdog is not None:
            due = min(due, max(0.0, self._next_ping - now))
        return due

    def reloading(self) -> None:
        """SIGHUP: RELOADING=1; READY=1 follows once the new workers serve."""
        self._ready_sent = False
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")

    def hand_over(self, pid: int) -> None:
        """USR2 done: the new supervisor `pid` is the service's main process. Sent by the old one,
        which systemd accepts with NotifyAccess=main; it says nothing more (no STOPPING=1)."""
        self.send(f"MAINPID={pid}")
        self.close()

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        """In a forked worker: this process's copy only."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as RELOADING=1's MONOTONIC_USEC= wants it."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
