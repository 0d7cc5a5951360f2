"""Faults injected under continuous, bounded load (reliability/loadgen.py): a worker killed with
SIGKILL, reloads and stops by signal, views that crash their process, and workers that die at boot.

Each test counts every request the load sent and says how many succeeded and failed; the bound on
failures is the point of the test: only requests in flight on a dying worker may be lost, and a
reload or a graceful stop loses none. The load uses a mix of request kinds (a small GET, a 16 KiB
POST whose digest is checked, a streamed response, a slow request) so that every kind is in flight
when the fault lands.

The app the servers run is `app` below (the workers import this module as
``reliability.test_faults``). Setting ``RSGI_FAULT_BOOT`` makes the module crash its worker at boot.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import resource
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from conftest import TESTS, Server, StartServer, base_env, free_port

from reliability.loadgen import LoadGen, Req, Result, live_children, ok_count, summarize, wait_until, wait_workers

APP = "reliability.test_faults:app"
CLIENTS = 4


# -- the app --------------------------------------------------------------------------------------


def app(environ, start_response):
    """Every response carries X-Worker (the pid). ``/echo``: "<sha256 of the body>"; ``/stream``: 8
    lines from a generator; ``/slow?S``: sleeps S seconds; ``/segv``: dereferences NULL; ``/exit``:
    os._exit(1); anything else: "ok"."""
    path = environ.get("PATH_INFO", "")
    if path == "/segv":
        ctypes.string_at(0)
    if path == "/exit":
        os._exit(1)
    headers = [("Content-Type", "text/plain"), ("X-Worker", str(os.getpid()))]
    if path == "/stream":
        start_response("200 OK", headers)
        return stream_lines()
    if path == "/echo":
        body = hashlib.sha256(environ["wsgi.input"].read()).hexdigest().encode()
    elif path == "/slow":
        time.sleep(float(environ.get("QUERY_STRING") or 0.1))
        body = b"slept"
    else:
        body = b"ok"
    start_response("200 OK", [*headers, ("Content-Length", str(len(body)))])
    return [body]


def stream_lines() -> Iterator[bytes]:
    for i in range(8):
        yield b"line %d\n" % i
        time.sleep(0.002)


# Crashes at boot, only in the server's processes (pytest never sets the variable).
if os.environ.get("RSGI_FAULT_BOOT") == "segv-on-import":
    ctypes.string_at(0)
elif os.environ.get("RSGI_FAULT_BOOT") == "exit-after-fork":
    # With --preload the supervisor imports this fine; every worker it forks dies at once.
    os.register_at_fork(after_in_child=lambda: os._exit(1))


# -- the load -------------------------------------------------------------------------------------

POST_BODY = os.urandom(16 * 1024)
POST_DIGEST = hashlib.sha256(POST_BODY).hexdigest()
STREAM_BODY = b"".join(b"line %d\n" % i for i in range(8))


def worker_of(r: httpx.Response) -> str:
    return r.headers.get("x-worker", "")


def mix(slow: float = 0.05) -> list[Req]:
    return [
        Req("GET", "/", check=lambda r: r.text == "ok", note=worker_of),
        Req("POST", "/echo", content=POST_BODY, check=lambda r: r.text == POST_DIGEST, note=worker_of),
        Req("GET", "/stream", check=lambda r: r.content == STREAM_BODY, note=worker_of),
        Req("GET", f"/slow?{slow}", check=lambda r: r.text == "slept", note=worker_of),
    ]


def figures(results: list[Result]) -> str:
    return str(summarize(results))


def failures(results: list[Result], limit: int = 5) -> list[str]:
    return [f"{r.req.method} {r.req.path}: {r.error}" for r in results if not r.ok][:limit]


@pytest.fixture
def no_core_dumps() -> Iterator[None]:
    """Crashing workers must not write core files (inherited by the servers started in the test)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))


# -- a worker dies under load ---------------------------------------------------------------------


def test_sigkill_of_a_worker_under_load_loses_only_its_requests_in_flight(serve: StartServer) -> None:
    server = serve(APP, "--workers", "2")
    workers = wait_workers(server.pid, 2)
    with LoadGen(server.url, mix(), clients=CLIENTS, duration=30) as load:
        load.wait_for(lambda rs: ok_count(rs) >= 200, 15, "200 requests before the kill")
        # The victim is the worker that answered most of the latest requests: clients are on it.
        recent = [r.note for r in load.results[-40:] if r.note]
        victim = max(workers, key=lambda pid: recent.count(str(pid)))
        os.kill(victim, signal.SIGKILL)
        t_kill = time.monotonic()
        new = wait_workers(server.pid, 2, exclude={victim})
        t_replaced = time.monotonic()
        load.wait_for(
            lambda rs: sum(1 for r in rs if r.start > t_replaced and r.ok) >= 200, 15, "200 requests after the kill"
        )
    results = load.results
    after = [r for r in results if r.start > t_replaced]
    failed = [r for r in results if not r.ok]
    print(
        f"SIGKILL of 1 of 2 workers under load ({CLIENTS} clients): {figures(results)};"
        f" replaced in {t_replaced - t_kill:.2f}s; after the replacement {figures(after)}"
    )
    assert len(new - workers) == 1, f"one new worker expected: before {workers}, after {new}"
    server.wait_log(f"worker {victim} was killed by SIGKILL")
    # At most one request per client was on the victim when it died; nothing else is lost.
    assert len(failed) <= CLIENTS, f"{figures(results)}: {failures(results)}"
    assert all(r.status is None for r in failed), f"a worker answered with an error: {failures(results)}"
    assert all(r.ok for r in after), f"after the replacement: {figures(after)}: {failures(after)}"
    assert all(r.note != str(victim) for r in results if r.start > t_kill), "the dead worker answered"


@pytest.mark.usefixtures("no_core_dumps")
@pytest.mark.parametrize(
    ("path", "death"), [("/segv", "was killed by SIGSEGV"), ("/exit", "exited with code 1")], ids=["segv", "os-exit"]
)
def test_a_view_that_kills_its_process_costs_only_that_worker(serve: StartServer, path: str, death: str) -> None:
    server = serve(APP, "--workers", "2")
    workers = wait_workers(server.pid, 2)
    clients = 3
    with LoadGen(server.url, mix(), clients=clients, duration=30) as load:
        load.wait_for(lambda rs: ok_count(rs) >= 100, 15, "100 requests before the crash")
        with pytest.raises(httpx.TransportError) as crash, httpx.Client(timeout=10) as client:
            client.get(server.url + path)
        t_crash = time.monotonic()

        def replaced() -> set[int] | None:
            pids = live_children(server.pid)
            return pids if len(pids) == 2 and pids != workers else None

        new = wait_until(replaced, 15, "the crashed worker to be replaced")
        t_replaced = time.monotonic()
        load.wait_for(
            lambda rs: sum(1 for r in rs if r.start > t_replaced and r.ok) >= 100, 15, "100 requests after the crash"
        )
    results = load.results
    after = [r for r in results if r.start > t_replaced]
    failed = [r for r in results if not r.ok]
    (victim,) = workers - new
    print(
        f"GET {path} under load ({clients} clients): the crashing request got {type(crash.value).__name__};"
        f" load {figures(results)}; replaced in {t_replaced - t_crash:.2f}s; after {figures(after)}"
    )
    server.wait_log(f"worker {victim} {death}")
    # Requests queued on the crashed worker's connections die with it; no one else's.
    assert len(failed) <= clients, f"{figures(results)}: {failures(results)}"
    assert all(r.status is None for r in failed), f"a worker answered with an error: {failures(results)}"
    assert all(r.ok for r in after), f"after the replacement: {figures(after)}: {failures(after)}"
    assert server.proc.poll() is None


# -- reloads and stops under load -----------------------------------------------------------------


def test_two_quick_sighups_under_load_fail_nothing(serve: StartServer) -> None:
    server = serve(APP, "--workers", "2")
    old = wait_workers(server.pid, 2)
    with LoadGen(server.url, mix(), clients=CLIENTS, duration=30) as load:
        load.wait_for(lambda rs: ok_count(rs) >= 200, 15, "200 requests before the reload")
        server.signal(signal.SIGHUP)
        server.wait_log("SIGHUP: replacing workers")
        # The second reload comes as soon as the first replacements exist, while they start up.
        wait_until(lambda: len(live_children(server.pid) - old) >= 2, 10, "the first replacements")
        server.signal(signal.SIGHUP)
        wait_until(lambda: server.log().count("SIGHUP: replacing workers") == 2, 10, "the second reload")
        wait_workers(server.pid, 2, exclude=old)
        t_new = time.monotonic()
        load.wait_for(lambda rs: sum(1 for r in rs if r.start > t_new) >= 200, 15, "200 requests after the reload")
        # The old workers drain and exit; two workers remain.
        wait_until(lambda: not (live_children(server.pid) & old), 15, "the old workers to exit")
        new = wait_workers(server.pid, 2, exclude=old)
    results = load.results
    print(f"SIGHUP x2 under load ({CLIENTS} clients): {figures(results)}")
    assert server.log().count("SIGHUP: replacing workers") == 2
    assert all(r.ok for r in results), f"{figures(results)}: {failures(results)}"
    answered_by = {r.note for r in results[-40:]}
    assert answered_by <= {str(pid) for pid in new}, (answered_by, new)
    assert server.proc.poll() is None


def test_quick_successive_reloads_are_not_mistaken_for_crashes(serve: StartServer) -> None:
    server = serve(APP, "--workers", "2")
    seen = wait_workers(server.pid, 2)
    reloads = 4

    def replacements() -> set[int] | None:
        fresh = live_children(server.pid) - seen
        return fresh if len(fresh) >= 2 else None

    with LoadGen(server.url, mix(), clients=2, duration=30) as load:
        load.wait_for(lambda rs: ok_count(rs) >= 100, 15, "100 requests before the reloads")
        # Each reload as soon as the previous one's replacements exist (they are still starting).
        for _ in range(reloads):
            server.signal(signal.SIGHUP)
            seen |= wait_until(replacements, 10, "the replacements")
        t_last = time.monotonic()
        load.wait_for(lambda rs: sum(1 for r in rs if r.start > t_last) >= 100, 15, "100 requests after the reloads")
    results = load.results
    slowest = max(r.end - r.start for r in results)
    spurious = server.log().count("starting a new one")
    print(
        f"{reloads} quick SIGHUPs under load (2 clients): {figures(results)}; slowest request {slowest:.2f}s;"
        f" {spurious} retired workers logged as crashed"
    )
    assert spurious == 0, server.log()[-3000:]
    assert all(r.ok for r in results), f"{figures(results)}: {failures(results)}"
    assert server.proc.poll() is None


def test_sigterm_under_load_drains_every_request_already_sent(serve: StartServer) -> None:
    server = serve(APP, "--workers", "2")
    wait_workers(server.pid, 2)
    # Slower requests than elsewhere, so that several are inside the app when the signal lands.
    with LoadGen(server.url, mix(slow=0.3), clients=CLIENTS, duration=30) as load:
        load.wait_for(lambda rs: ok_count(rs) >= 100, 15, "100 requests before the stop")
        t_stop = time.monotonic()
        server.signal(signal.SIGTERM)
        code = server.wait(20)
        # Clients keep trying until the port refuses them; then the load is stopped.
        load.wait_for(lambda rs: any(r.refused and r.start > t_stop for r in rs), 10, "a refused connection")
    results = load.results
    before = [r for r in results if r.start < t_stop]
    in_flight = [r for r in before if r.end > t_stop]
    lost = [r for r in before if not r.ok and not r.refused]
    print(
        f"SIGTERM under load ({CLIENTS} clients): {figures(results)}; before the signal {figures(before)},"
        f" {len(in_flight)} in flight at the signal"
    )
    assert code == 0, server.log()[-2000:]
    assert "stopped" in server.log()
    assert not lost, f"before the signal: {figures(before)}: {failures(before)}"
    assert in_flight, "no request was in flight when the signal landed: the drain was not exercised"
    assert all(r.ok for r in in_flight), failures(in_flight)
    # After the signal the only failure is a refused connect (a request never sent).
    assert all(r.ok or r.refused for r in results), failures([r for r in results if not r.refused])


# -- workers that die at boot ---------------------------------------------------------------------

# Long enough for the supervisor's rule (8 quick deaths in a row, with the restart delay doubling
# from 0.2 s) with two workers, which take turns dying: about 8.4 s of delays plus four boots,
# which take 0.7-1.4 s each on a loaded 2-core machine (15 s was once too short there). The
# fixture returns as soon as both servers exit, so the margin costs nothing.
BOOT_WINDOW = 30.0
BOOT_CASES = {
    # The app segfaults while a worker imports it (no preload: only workers import it).
    "segv-on-import": ([], "was killed by SIGSEGV"),
    # The app imports fine in the supervisor (--preload) but every forked worker exits at once.
    "exit-after-fork": (["--preload"], "exited with code 1"),
}


@dataclass
class BootLoop:
    server: Server
    exited_after: float | None  # seconds from start, None if still running at the end of the window
    code: int | None
    log: str


@pytest.fixture(scope="module")
def boot_loops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, BootLoop]]:
    """Both crash-at-boot servers, run side by side for at most BOOT_WINDOW seconds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    logs = tmp_path_factory.mktemp("boot-loops")
    servers: dict[str, Server] = {}
    try:
        for case, (flags, _) in BOOT_CASES.items():
            port = free_port()
            args = [APP, *flags, "--workers", "2", "--bind", f"127.0.0.1:{port}"]
            env = base_env(RSGI_FAULT_BOOT=case)
            servers[case] = Server(args, TESTS, env, logs / f"{case}.log", port)
        started = time.monotonic()
        exited: dict[str, float] = {}
        while len(exited) < len(servers) and time.monotonic() - started < BOOT_WINDOW:
            for case, s in servers.items():
                if case not in exited and s.proc.poll() is not None:
                    exited[case] = time.monotonic() - started
            time.sleep(0.05)
        out = {case: BootLoop(s, exited.get(case), s.proc.poll(), s.log()) for case, s in servers.items()}
        yield out
    finally:
        for s in servers.values():
            s.stop()
        resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))


def deaths(log: str, death: str) -> int:
    return len(re.findall(rf"worker \d+ {death}", log))


@pytest.mark.parametrize("case", BOOT_CASES)
def test_a_worker_crash_loop_at_boot_is_throttled(boot_loops: dict[str, BootLoop], case: str) -> None:
    loop = boot_loops[case]
    _, death = BOOT_CASES[case]
    n = deaths(loop.log, death)
    supervisor_lines = loop.log.count("rsgi.supervisor:")
    window = loop.exited_after or BOOT_WINDOW
    print(
        f"boot crash loop ({case}, 2 workers): {n} deaths logged in {window:.1f}s,"
        f" {supervisor_lines} supervisor log lines, {loop.log.count(chr(10))} lines in all"
    )
    assert n >= 1, loop.log
    # Restarts back off (0.2 s doubling, per death, up to 10 s): with two workers that is about
    # a dozen deaths in the window; a respawn loop without backoff would be hundreds.
    assert n <= 20, f"{n} worker deaths in {window:.1f}s:\n{loop.log[-3000:]}"
    # The supervisor says each death once (plus its start and stop lines), not a flood.
    assert supervisor_lines <= n + 8, f"{supervisor_lines} supervisor lines for {n} deaths:\n{loop.log[-3000:]}"


@pytest.mark.parametrize("case", BOOT_CASES)
def test_a_worker_crash_loop_at_boot_stops_the_server(boot_loops: dict[str, BootLoop], case: str) -> None:
    loop = boot_loops[case]
    assert loop.exited_after is not None, f"still respawning after {BOOT_WINDOW}s:\n{loop.log[-2000:]}"
    assert loop.code not in (None, 0), loop.log[-2000:]
    # One clear line says why, after the deaths it sums up.
    reason = re.findall(r".*rsgi\.supervisor: .*(?:shutting down|giving up).*", loop.log)
    assert len(reason) == 1, loop.log[-2000:]
    assert "boot" in reason[0] or "crash" in reason[0], reason[0]
