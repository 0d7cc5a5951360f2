"""The supervisor's decisions, apart from the processes they are about: when a worker is retired
(--max-requests + jitter, --workers-lifetime, --max-worker-memory), when a stuck one is killed
(--timeout), which one goes when fewer are wanted, and when restarts back off or stop (a crash
loop at boot). Plain functions and classes over plain data (worker records, readings of the
scoreboard, `now`): nothing here forks, signals, sleeps or reads a clock, so tests call it as is.
The supervisor (supervisor.py) gathers the readings and carries out what these return."""

from __future__ import annotations

import random
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

# A worker that dies sooner than this after starting counts as a crash at boot.
QUICK_DEATH = 1.0
# Restart delay after repeated quick deaths doubles up to this.
MAX_BACKOFF = 10.0
# This many quick deaths in a row is a crash loop: the server stops instead of spinning.
CRASH_LOOP = 8
# Seconds given to a worker after SIGABRT (--timeout), and beyond the graceful timeout, before SIGKILL.
KILL_SLACK = 5.0
# --workers-lifetime is stretched by up to this much per worker, so they don't all go at once.
LIFETIME_SPREAD = 0.1


@dataclass
class Child:
    """The supervisor's record of one worker process."""

    pid: int
    slot: int | None = None
    # Requests after which this worker is recycled (--max-requests plus its own jitter); 0: never.
    max_requests: int = 0
    # When it was forked (monotonic seconds).
    started: float = 0.0
    # Seconds after which this worker is recycled (--workers-lifetime plus its jitter); 0: never.
    lifetime: float = 0.0
    # Asked to finish and exit (recycling, HUP, scale-down): not counted as a live worker.
    retiring: bool = False
    # When --timeout sent SIGABRT (SIGKILL follows if it is still there KILL_SLACK later).
    aborted: float | None = None


@dataclass(frozen=True)
class Reading:
    """What the supervisor read about one worker this turn (scoreboard and /proc)."""

    requests: int = 0  # requests served so far
    busy: Sequence[tuple[float, str]] = ()  # (monotonic time it started, request line) per busy thread
    rss_mb: float = 0.0  # resident memory


@dataclass(frozen=True)
class Limits:
    """The settings the watchdog applies (0: off)."""

    timeout: float = 0.0
    max_worker_memory: float = 0.0


# -- what the watchdog asks for -----------------------------------------------------------------


@dataclass(frozen=True)
class Retire:
    """Let the worker finish its requests and exit (SIGTERM); a replacement starts at once."""

    pid: int
    why: str
    sig: int = signal.SIGTERM


@dataclass(frozen=True)
class Abort:
    """--timeout: the worker has been busy `busy_for` seconds with `line`. SIGABRT first, so
    faulthandler prints where every thread is stuck; the caller records the time in `aborted`."""

    pid: int
    busy_for: float
    line: str
    sig: int = signal.SIGABRT


@dataclass(frozen=True)
class Kill:
    """Still there KILL_SLACK seconds after SIGABRT."""

    pid: int
    sig: int = signal.SIGKILL


Action = Retire | Abort | Kill


class Random(Protocol):
    def randint(self, a: int, b: int) -> int: ...
    def uniform(self, a: float, b: float) -> float: ...


def request_limit(max_requests: int, jitter: int, rng: Random = random) -> int:
    """A new worker's --max-requests: the setting plus its own draw of up to `jitter` more, so
    workers started together are not all recycled together. 0: never."""
    if max_requests <= 0:
        return 0
    return max_requests + rng.randint(0, max(0, jitter))


def lifetime(workers_lifetime: float, rng: Random = random) -> float:
    """A new worker's --workers-lifetime, stretched by up to LIFETIME_SPREAD. 0: never."""
    return workers_lifetime * rng.uniform(1.0, 1.0 + LIFETIME_SPREAD) if workers_lifetime > 0 else 0.0


def stuck(busy: Iterable[tuple[float, str]], now: float, timeout: float) -> tuple[float, str] | None:
    """The longest-busy (since, request line) past `timeout`, or None."""
    over = [(since, line) for since, line in busy if now - since > timeout]
    return min(over) if over else None


def retirement(child: Child, reading: Reading, now: float, max_worker_memory: float) -> str | None:
    """Why this worker should be recycled now, or None. A retired worker finishes the requests
    it has before it exits (the caller sends SIGTERM, never SIGKILL)."""
    if child.max_requests and reading.requests >= child.max_requests:
        return f"served {child.max_requests} requests (--max-requests)"
    if child.lifetime and now - child.started >= child.lifetime:
        return f"ran {child.lifetime:.0f}s (--workers-lifetime)"
    if max_worker_memory and reading.rss_mb > max_worker_memory:
        return f"uses {reading.rss_mb:.0f} MB (--max-worker-memory {max_worker_memory})"
    return None


def watch(
    children: Iterable[Child], readings: Mapping[int, Reading], now: float, limits: Limits, stopping: bool
) -> list[Action]:
    """One look of the watchdog at every worker (the supervisor's loop runs it about once a
    second). Workers without a scoreboard slot are left alone; while the server stops, only
    --timeout still applies."""
    actions: list[Action] = []
    for child in children:
        if child.slot is None:
            continue
        if child.aborted is not None:
            if now - child.aborted > KILL_SLACK:
                actions.append(Kill(child.pid))
            continue
        reading = readings.get(child.pid, Reading())
        if limits.timeout > 0 and (hit := stuck(reading.busy, now, limits.timeout)) is not None:
            since, line = hit
            actions.append(Abort(child.pid, now - since, line))
            continue
        if child.retiring or stopping:
            continue
        why = retirement(child, reading, now, limits.max_worker_memory)
        if why is not None:
            actions.append(Retire(child.pid, why))
    return actions


def surplus(children: Iterable[Child], target: int) -> list[Child]:
    """Workers to retire when more are running than wanted (TTOU, HUP with fewer): the oldest."""
    active = [c for c in children if not c.retiring]
    return sorted(active, key=lambda c: c.started)[: max(0, len(active) - target)]


# -- restarts -----------------------------------------------------------------------------------


def backoff(quick_deaths: int) -> float:
    """Restart delay after `quick_deaths` quick deaths in a row: 0.2 s, doubling, up to MAX_BACKOFF."""
    return min(MAX_BACKOFF, 0.1 * 2**quick_deaths)


@dataclass
class Restarts:
    """When a worker that died unasked may be replaced: at once, unless workers keep dying at
    boot (within QUICK_DEATH), when the delay grows; CRASH_LOOP such deaths in a row stop the
    server instead of spinning."""

    quick_deaths: int = 0
    # No worker is forked before this (monotonic seconds).
    next_spawn: float = field(default=0.0)

    def died(self, lived: float, now: float, ready: bool = True) -> bool:
        """Counts a crash of a worker that ran `lived` seconds, and got as far as serving if
        `ready`; True when that makes a crash loop. A worker that never served died at boot
        however long it took (a slow import on a loaded machine is still a failure to boot)."""
        if ready and lived >= QUICK_DEATH:
            self.quick_deaths = 0
            return False
        self.quick_deaths += 1
        if self.quick_deaths >= CRASH_LOOP:
            return True
        self.next_spawn = now + backoff(self.quick_deaths)
        return False

    def may_spawn(self, now: float) -> bool:
        return now >= self.next_spawn
