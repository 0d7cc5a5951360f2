"""The supervisor's decisions (python/rsgi/policies.py) called as plain functions: recycling by
--max-requests (+ jitter), --workers-lifetime and --max-worker-memory, --timeout's SIGABRT then
SIGKILL, scaling down, and the restart back-off that ends in a crash loop. Nothing is forked and
nothing sleeps: every call is given `now`. tests/test_process.py and tests/test_supervisor.py
check the same rules through real processes."""

from __future__ import annotations

import random
import signal

import pytest
from rsgi.policies import (
    CRASH_LOOP,
    KILL_SLACK,
    MAX_BACKOFF,
    QUICK_DEATH,
    Abort,
    Child,
    Kill,
    Limits,
    Reading,
    Restarts,
    Retire,
    backoff,
    lifetime,
    request_limit,
    retirement,
    stuck,
    surplus,
    watch,
)

NOW = 1000.0


class Bounds:
    """A random source that always draws the low (or the high) end of the range it is asked for."""

    def __init__(self, high: bool) -> None:
        self.high = high
        self.calls: list[tuple[float, float]] = []

    def randint(self, a: int, b: int) -> int:
        self.calls.append((a, b))
        return b if self.high else a

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return b if self.high else a


def look(child: Child, now: float = NOW, limits: Limits | None = None, stopping: bool = False, **reading) -> list:
    """One look of the watchdog at one worker, with that worker's reading."""
    return watch([child], {child.pid: Reading(**reading)}, now, limits or Limits(), stopping)


# -- --max-requests and its jitter ----------------------------------------------------------------


def test_max_requests_off_draws_nothing() -> None:
    rng = Bounds(high=True)
    assert request_limit(0, 50, rng) == 0
    assert request_limit(-1, 50, rng) == 0
    assert rng.calls == []


def test_jitter_is_bounded_by_the_setting() -> None:
    assert request_limit(100, 0, Bounds(high=True)) == 100
    assert request_limit(100, -5, Bounds(high=True)) == 100  # a negative jitter is none
    assert request_limit(100, 20, Bounds(high=False)) == 100
    assert request_limit(100, 20, Bounds(high=True)) == 120


def test_jitter_is_drawn_per_worker() -> None:
    rng = random.Random(7)
    limits = [request_limit(1000, 100, rng) for _ in range(50)]
    assert all(1000 <= n <= 1100 for n in limits)
    # Workers started together get different limits, so they are not all recycled together.
    assert len(set(limits)) > 10


def test_a_worker_is_retired_when_it_reaches_its_own_limit() -> None:
    child = Child(1, slot=0, max_requests=107, started=NOW - 5)
    assert look(child, requests=106) == []
    assert look(child, requests=107) == [Retire(1, "served 107 requests (--max-requests)")]
    assert look(child, requests=500)[0].sig == signal.SIGTERM


# -- --workers-lifetime ---------------------------------------------------------------------------


def test_lifetime_is_stretched_by_up_to_ten_percent() -> None:
    low, high = Bounds(high=False), Bounds(high=True)
    assert lifetime(3600, low) == 3600
    assert lifetime(3600, high) == pytest.approx(3960)
    assert high.calls == [(1.0, 1.1)]
    rng = random.Random(3)
    drawn = [lifetime(600, rng) for _ in range(50)]
    assert all(600 <= s <= 660 for s in drawn)
    assert len(set(drawn)) == 50
    assert lifetime(0, high) == 0.0
    assert lifetime(-1, high) == 0.0


def test_a_worker_is_retired_when_its_lifetime_is_over() -> None:
    child = Child(2, slot=0, started=NOW - 100, lifetime=110.25)
    assert look(child) == []
    assert look(child, now=NOW + 10.0) == []
    assert look(child, now=NOW + 10.25) == [Retire(2, "ran 110s (--workers-lifetime)")]


def test_without_limits_a_worker_is_never_retired() -> None:
    child = Child(3, slot=0, started=0.0)
    assert look(child, now=1e9, requests=10**9, rss_mb=1e6) == []


# -- --max-worker-memory --------------------------------------------------------------------------


def test_memory_over_the_limit_retires_the_worker_gracefully() -> None:
    child = Child(4, slot=0, started=NOW - 60)
    limits = Limits(max_worker_memory=512)
    assert look(child, limits=limits, rss_mb=512.0) == []
    (action,) = look(child, limits=limits, rss_mb=600.4)
    # Retired, not killed: SIGTERM lets it finish the requests it has before it exits.
    assert action == Retire(4, "uses 600 MB (--max-worker-memory 512)")
    assert action.sig == signal.SIGTERM
    # Once retiring it is left to finish them, however much more it uses (no second signal).
    child.retiring = True
    assert look(child, limits=limits, rss_mb=5000.0) == []
    assert look(child, now=NOW + 3600, limits=limits, rss_mb=5000.0) == []


def test_the_first_reason_is_the_one_given() -> None:
    child = Child(5, slot=0, max_requests=10, started=NOW - 100, lifetime=50)
    assert retirement(child, Reading(requests=10, rss_mb=900), NOW, 100) == "served 10 requests (--max-requests)"
    assert retirement(child, Reading(requests=9, rss_mb=900), NOW, 100) == "ran 50s (--workers-lifetime)"
    child.lifetime = 0
    assert retirement(child, Reading(requests=9, rss_mb=900), NOW, 100) == "uses 900 MB (--max-worker-memory 100)"


def test_nobody_is_retired_while_the_server_stops_or_twice() -> None:
    child = Child(6, slot=0, max_requests=1)
    assert look(child, stopping=True, requests=5) == []
    child.retiring = True
    assert look(child, requests=5) == []


def test_a_worker_without_a_scoreboard_slot_is_left_alone() -> None:
    child = Child(7, slot=None, max_requests=1, started=0.0, lifetime=1)
    limits = Limits(timeout=1, max_worker_memory=1)
    assert look(child, now=1e9, limits=limits, requests=5, busy=[(0.0, "GET /")], rss_mb=1e6) == []


# -- --timeout ------------------------------------------------------------------------------------


def test_the_longest_stuck_request_past_the_timeout_is_named() -> None:
    busy = [(NOW - 3, "GET /b HTTP/1.1"), (NOW - 40, "GET /a HTTP/1.1"), (NOW - 0.5, "GET /c HTTP/1.1")]
    assert stuck(busy, NOW, 30) == (NOW - 40, "GET /a HTTP/1.1")
    assert stuck(busy, NOW, 40) is None  # strictly longer than the timeout
    assert stuck([], NOW, 1) is None


def test_timeout_sends_sigabrt_then_sigkill_five_seconds_later() -> None:
    child = Child(8, slot=0, started=NOW - 100)
    limits = Limits(timeout=30)
    assert look(child, limits=limits, busy=[(NOW - 30, "GET /slow HTTP/1.1")]) == []
    (abort,) = look(child, limits=limits, busy=[(NOW - 31.5, "GET /slow HTTP/1.1")])
    assert abort == Abort(8, 31.5, "GET /slow HTTP/1.1")
    assert abort.sig == signal.SIGABRT
    child.aborted = NOW  # what the supervisor records when it sends SIGABRT
    # Faulthandler gets KILL_SLACK (5 s) to print the stacks: no second SIGABRT meanwhile.
    assert KILL_SLACK == 5.0
    for later in (0.0, 1.0, 4.9, 5.0):
        assert look(child, now=NOW + later, limits=limits, busy=[(NOW - 31.5, "GET /slow HTTP/1.1")]) == []
    assert look(child, now=NOW + 5.01, limits=limits) == [Kill(8)]
    assert Kill(8).sig == signal.SIGKILL
    # Until it is reaped, every look sends SIGKILL again.
    assert look(child, now=NOW + 9, limits=limits) == [Kill(8)]


def test_timeout_applies_to_retiring_workers_and_during_a_stop() -> None:
    busy = [(NOW - 11, "POST /upload HTTP/1.1")]
    child = Child(9, slot=0, retiring=True)
    assert look(child, limits=Limits(timeout=10), busy=busy) == [Abort(9, 11, "POST /upload HTTP/1.1")]
    child.retiring = False
    assert look(child, limits=Limits(timeout=10), stopping=True, busy=busy) == [Abort(9, 11, "POST /upload HTTP/1.1")]


def test_timeout_wins_over_recycling_and_off_means_off() -> None:
    child = Child(10, slot=0, max_requests=1)
    busy = [(NOW - 100, "GET / HTTP/1.1")]
    assert look(child, limits=Limits(timeout=5), requests=3, busy=busy) == [Abort(10, 100, "GET / HTTP/1.1")]
    assert look(child, limits=Limits(timeout=0), requests=3, busy=busy) == [
        Retire(10, "served 1 requests (--max-requests)")
    ]


def test_each_worker_is_judged_on_its_own_reading() -> None:
    a = Child(11, slot=0, max_requests=5)
    b = Child(12, slot=1, max_requests=5)
    c = Child(13, slot=2)
    readings = {11: Reading(requests=2), 12: Reading(requests=5), 13: Reading(busy=[(NOW - 9, "GET /x HTTP/1.1")])}
    actions = watch([a, b, c], readings, NOW, Limits(timeout=8), stopping=False)
    assert actions == [Retire(12, "served 5 requests (--max-requests)"), Abort(13, 9, "GET /x HTTP/1.1")]


# -- scaling down ---------------------------------------------------------------------------------


def test_the_oldest_workers_go_when_fewer_are_wanted() -> None:
    children = [
        Child(21, started=30),
        Child(22, started=10),
        Child(23, started=5, retiring=True),
        Child(24, started=20),
    ]
    assert [c.pid for c in surplus(children, 1)] == [22, 24]
    assert surplus(children, 3) == []
    assert surplus(children, 5) == []


# -- restarts: back-off and crash loop ------------------------------------------------------------


def test_backoff_doubles_from_a_fifth_of_a_second_up_to_ten() -> None:
    assert [backoff(n) for n in range(1, 9)] == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0])
    assert backoff(50) == MAX_BACKOFF


def test_quick_deaths_delay_the_next_worker_more_and_more() -> None:
    r = Restarts()
    assert r.may_spawn(NOW)
    now = NOW
    delays = []
    for _ in range(CRASH_LOOP - 1):
        assert r.died(lived=0.1, now=now) is False
        delays.append(r.next_spawn - now)
        assert not r.may_spawn(now)
        assert not r.may_spawn(r.next_spawn - 0.001)
        assert r.may_spawn(r.next_spawn)
        now = r.next_spawn
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0])
    assert r.quick_deaths == CRASH_LOOP - 1


def test_eight_quick_deaths_in_a_row_are_a_crash_loop() -> None:
    assert CRASH_LOOP == 8 and QUICK_DEATH == 1.0
    r = Restarts()
    verdicts = [r.died(lived=0.99, now=NOW + i) for i in range(CRASH_LOOP)]
    assert verdicts == [False] * 7 + [True]
    assert r.quick_deaths == 8


def test_a_worker_that_never_served_died_at_boot_however_long_it_took() -> None:
    """A segfault while importing the app on a loaded machine may take longer than QUICK_DEATH; it
    is still a failure to boot (it was once counted as a real run, so the crash loop never ended)."""
    r = Restarts()
    verdicts = [r.died(lived=QUICK_DEATH + 0.4, now=NOW + i, ready=False) for i in range(CRASH_LOOP)]
    assert verdicts == [False] * 7 + [True]


def test_a_worker_that_lived_resets_the_count() -> None:
    r = Restarts()
    for i in range(CRASH_LOOP - 1):
        r.died(lived=0.2, now=NOW + i)
    spawn_at = r.next_spawn
    assert r.died(lived=QUICK_DEATH, now=NOW + 20) is False
    assert r.quick_deaths == 0
    assert r.next_spawn == spawn_at  # a death after a real run is replaced without waiting more
    assert [r.died(lived=0.5, now=NOW + 30 + i) for i in range(CRASH_LOOP - 1)] == [False] * 7
    assert r.next_spawn - (NOW + 36) == pytest.approx(10.0)
