"""A small bounded load generator for the reliability tests and the by-hand soak script.

`LoadGen` runs N client threads, each with its own keep-alive `httpx.Client` on 127.0.0.1, cycling
through a list of `Req`s until it is stopped, its duration has passed or the request budget is spent,
whichever comes first: it always stops by itself. Every request is recorded as a `Result` (start and end
on the monotonic clock, status or error, and an optional note taken from the response, e.g. the pid of
the worker that answered). A response counts as a success when its status is the expected one and the
request's `check` (if any) accepts it.

    with LoadGen(server.url, [Req("GET", "/")], clients=4, duration=10) as load:
        load.wait_for(lambda rs: ok_count(rs) >= 100, timeout=5, what="warm-up")
        ...  # inject a fault
    print(load.summary())

Leaving the `with` block stops the threads and closes every client (pytest treats unclosed sockets as
errors). A client that gets a transport error pauses briefly before the next request, so a server that
refuses connections is not hammered in a tight loop. For long runs, `keep_results=False` keeps only the
counters and the first 100 failures.

The module also has the small polling helpers the reliability tests share (`wait_until`, `wait_workers`,
`live_children`, `rss`, `percentile`): every wait is a poll of a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
import psutil

T = TypeVar("T")


@dataclass(frozen=True)
class Req:
    """One kind of request in the mix."""

    method: str
    path: str
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    # Extra validation of the response (body, headers); False or an exception makes it a failure.
    check: Callable[[httpx.Response], bool] | None = None
    # Something to remember about the response (e.g. the answering worker's pid), kept in Result.note.
    note: Callable[[httpx.Response], str] | None = None


@dataclass(frozen=True)
class Result:
    client: int
    req: Req
    start: float
    end: float
    status: int | None  # None when no response arrived
    error: str  # "" for a success; the exception (or what was wrong with the response) otherwise
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def refused(self) -> bool:
        """The connection was refused: the request was never sent."""
        return self.error.startswith("ConnectError")


@dataclass(frozen=True)
class Summary:
    sent: int
    succeeded: int
    failed: int
    errors: Counter[str]

    def __str__(self) -> str:
        kinds = ", ".join(f"{k}: {n}" for k, n in self.errors.most_common(5))
        return f"sent {self.sent}, succeeded {self.succeeded}, failed {self.failed}" + (f" ({kinds})" if kinds else "")


def summarize(results: Sequence[Result]) -> Summary:
    failed = [r for r in results if not r.ok]
    errors = Counter(r.error.split(":", 1)[0] for r in failed)
    return Summary(len(results), len(results) - len(failed), len(failed), errors)


def ok_count(results: Sequence[Result]) -> int:
    return sum(1 for r in results if r.ok)


class LoadGen:
    def __init__(
        self,
        base_url: str,
        mix: Sequence[Req],
        *,
        clients: int = 4,
        duration: float = 10.0,
        max_requests: int = 20_000,
        timeout: float = 10.0,
        error_pause: float = 0.02,
        keep_results: bool = True,
    ) -> None:
        assert mix, "an empty request mix"
        assert 0 < duration <= 24 * 3600 and max_requests > 0, "a load is bounded in time and count"
        self.base_url = base_url
        self.mix = list(mix)
        self.clients = clients
        self.duration = duration
        self.max_requests = max_requests
        self.timeout = timeout
        self.error_pause = error_pause
        # Long runs (the soak script) keep only the counters and the first failures.
        self.keep_results = keep_results
        self._results: list[Result] = []
        self._failures: list[Result] = []
        self._sent = 0
        self._errors: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._budget = itertools.count()
        self._threads: list[threading.Thread] = []
        self.started = 0.0
        self.stopped = 0.0

    # -- control -------------------------------------------------------------------------------

    def start(self) -> LoadGen:
        self.started = time.monotonic()
        self._deadline = self.started + self.duration
        self._threads = [
            threading.Thread(target=self._client, args=(i,), name=f"loadgen-{i}", daemon=True)
            for i in range(self.clients)
        ]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float | None = None) -> Summary:
        """Stop every client and wait for them (a request in flight may take up to its timeout)."""
        self._stop.set()
        join_by = time.monotonic() + (self.timeout + 5 if timeout is None else timeout)
        for t in self._threads:
            t.join(max(0.0, join_by - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"load clients did not stop: {alive}"
        self.stopped = time.monotonic()
        return self.summary()

    def __enter__(self) -> LoadGen:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- observation ---------------------------------------------------------------------------

    @property
    def results(self) -> list[Result]:
        with self._lock:
            return list(self._results)

    @property
    def failures(self) -> list[Result]:
        """The first 100 failed requests (kept even when results are not)."""
        with self._lock:
            return list(self._failures)

    def summary(self, results: Sequence[Result] | None = None) -> Summary:
        """Figures for `results`, or for every request so far."""
        if results is not None:
            return summarize(results)
        with self._lock:
            failed = sum(self._errors.values())
            return Summary(self._sent, self._sent - failed, failed, Counter(self._errors))

    def wait_for(self, condition: Callable[[list[Result]], object], timeout: float, what: str) -> None:
        """Poll the results until `condition` holds; fail (with the figures so far) after `timeout`."""
        assert self.keep_results, "wait_for needs the results"
        deadline = time.monotonic() + timeout
        while not condition(self.results):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; {self.summary()}")
            if not any(t.is_alive() for t in self._threads):
                raise AssertionError(f"the load ended before {what}; {self.summary()}")
            time.sleep(0.02)

    # -- the clients ---------------------------------------------------------------------------

    def _more(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._deadline and next(self._budget) < self.max_requests

    def _client(self, index: int) -> None:
        # Each client starts at a different place in the mix, so every kind is in flight at once.
        kinds = itertools.islice(itertools.cycle(self.mix), index, None)
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
            for req in kinds:
                if not self._more():
                    return
                result = self._one(client, index, req)
                with self._lock:
                    self._sent += 1
                    if self.keep_results:
                        self._results.append(result)
                    if not result.ok:
                        self._errors[result.error.split(":", 1)[0]] += 1
                        if len(self._failures) < 100:
                            self._failures.append(result)
                if not result.ok and result.status is None:
                    self._stop.wait(self.error_pause)

    def _one(self, client: httpx.Client, index: int, req: Req) -> Result:
        start = time.monotonic()
        try:
            r = client.request(req.method, req.path, content=req.content, headers=req.headers)
        except httpx.HTTPError as e:
            return Result(index, req, start, time.monotonic(), None, f"{type(e).__name__}: {e}")
        end = time.monotonic()
        error = ""
        note = ""
        try:
            if r.status_code != req.status:
                error = f"status {r.status_code}: {r.text[:200]!r}"
            elif req.check is not None and not req.check(r):
                error = f"check failed: {r.text[:200]!r}"
            if req.note is not None:
                note = req.note(r)
        except Exception as e:  # a broken check is a failed request, not a dead client thread
            error = f"check raised {type(e).__name__}: {e}"
        return Result(index, req, start, end, r.status_code, error, note)


# -- watching the server -------------------------------------------------------------------------


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def live_children(pid: int) -> set[int]:
    """Pids of a process's children that are running (not unreaped zombies)."""
    out = set()
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process(pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.status() != psutil.STATUS_ZOMBIE:
                    out.add(child.pid)
    return out


def wait_workers(supervisor: int, count: int, timeout: float = 15.0, exclude: Iterable[int] = ()) -> set[int]:
    """Wait until the supervisor has exactly `count` live workers, none of them in `exclude`."""
    exclude = set(exclude)

    def check() -> set[int] | None:
        pids = live_children(supervisor)
        return pids if len(pids) == count and not pids & exclude else None

    return wait_until(check, timeout, f"{count} workers of {supervisor} excluding {sorted(exclude)}")


def rss(pid: int) -> int:
    """Resident set size of one process, in bytes."""
    return psutil.Process(pid).memory_info().rss


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]
