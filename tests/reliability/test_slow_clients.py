"""Clients that are slow on purpose: slowloris heads, readers that never read, connection floods.

Each test runs a real server and real sockets on 127.0.0.1 and checks two things: the attack is
contained (trickling heads are closed at the head-read timeout, a stalled response is not buffered
without bound, connections past --max-connections wait in the backlog), and ordinary clients are
still answered promptly meanwhile. Waits are polls with deadlines; the only paced loop is the
slowloris itself, which sends one byte per socket per second by design.

The app the servers run is `app` below (the workers import this module as
``reliability.test_slow_clients``).
"""

from __future__ import annotations

import functools
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from conftest import TESTS, StartServer, base_env, free_port

from reliability.loadgen import percentile, rss, wait_until, wait_workers

MIB = 1024 * 1024
APP = "reliability.test_slow_clients:app"
STREAM_CHUNK = 64 * 1024
BIG = 20 * MIB


# -- the app ------------------------------------------------------------------------------------


@functools.cache
def blob() -> bytes:
    return b"r" * BIG


def app(environ, start_response):
    """``/stream``: 20 MiB in 64 KiB chunks from a generator, logging progress to $RSGI_TEST_MARKER
    (``<request> <bytes produced>`` every MiB, ``<request> closed`` from close()); ``/full``: one
    20 MiB body, logging ``<request> returned``; anything else: "ok"."""
    path = environ.get("PATH_INFO", "")
    marker = os.environ.get("RSGI_TEST_MARKER", "")
    request_id = f"{environ.get('REMOTE_PORT', '?')}"
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(BIG))])
        return Progress(marker, request_id)
    if path == "/full":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        note(marker, f"{request_id} returned")
        return [blob()]
    body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def note(marker: str, line: str) -> None:
    if marker:
        with open(marker, "a") as f:
            f.write(line + "\n")


class Progress:
    def __init__(self, marker: str, request_id: str) -> None:
        self.marker = marker
        self.request_id = request_id

    def __iter__(self) -> Iterator[bytes]:
        chunk = b"s" * STREAM_CHUNK
        for i in range(1, BIG // STREAM_CHUNK + 1):
            yield chunk
            if i * STREAM_CHUNK % MIB == 0:
                note(self.marker, f"{self.request_id} {i * STREAM_CHUNK}")

    def close(self) -> None:
        note(self.marker, f"{self.request_id} closed")


# -- helpers --------------------------------------------------------------------------------------


@pytest.fixture
def many_files() -> Iterator[None]:
    """Raise the soft RLIMIT_NOFILE for this test (and the servers it starts) to fit 1,000+ sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {want}")
    if soft == resource.RLIM_INFINITY or soft >= want:
        yield
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def accepted(worker: int, port: int) -> int:
    """Connections the worker has accepted and not closed (those still in the backlog belong to no process)."""
    conns = psutil.Process(worker).net_connections(kind="tcp")
    return sum(1 for c in conns if c.laddr and c.laddr.port == port and c.status != psutil.CONN_LISTEN)


def timed_get(url: str, n: int) -> list[float]:
    """`n` sequential GETs, each on a fresh connection; returns the latencies (fails on any error)."""
    latencies = []
    with httpx.Client(timeout=5, headers={"Connection": "close"}) as client:
        for _ in range(n):
            started = time.monotonic()
            r = client.get(url)
            latencies.append(time.monotonic() - started)
            assert r.status_code == 200, r
            assert r.text == "ok"
    return latencies


def marker_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


@dataclass
class Trickler:
    """One slowloris socket."""

    sock: socket.socket
    connected: float
    sent: int = 0
    closed: float | None = None  # when the server closed it
    answer: bytes = b""  # anything the server sent before closing


@dataclass
class Slowloris:
    """`count` sockets that each send a never-ending request head at one byte per second, on a
    background thread, until stopped or `duration` seconds pass. Records when the server closes each."""

    port: int
    count: int
    duration: float
    socks: list[Trickler] = field(default_factory=list)
    error: BaseException | None = None

    HEAD = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\nX-Slow: "

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="slowloris", daemon=True)

    def __enter__(self) -> Slowloris:
        try:
            for _ in range(self.count):
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                s.setblocking(False)
                self.socks.append(Trickler(s, time.monotonic()))
        except BaseException:
            for t in self.socks:
                t.sock.close()
            raise
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for t in self.socks:
            t.sock.close()
        assert not self._thread.is_alive(), "the slowloris thread did not stop"
        if self.error is not None and exc[0] is None:
            raise self.error

    def snapshot(self) -> list[Trickler]:
        with self._lock:
            return [Trickler(t.sock, t.connected, t.sent, t.closed, t.answer) for t in self.socks]

    def open_count(self) -> int:
        return sum(1 for t in self.snapshot() if t.closed is None)

    def _byte(self, n: int) -> bytes:
        # The head never ends: after the fixed part, an endless header value of "a"s.
        return self.HEAD[n : n + 1] if n < len(self.HEAD) else b"a"

    def _run(self) -> None:
        sel = selectors.DefaultSelector()  # epoll: fds above 1024 are fine
        try:
            for t in self.socks:
                sel.register(t.sock, selectors.EVENT_READ, t)
            deadline = time.monotonic() + self.duration
            next_tick = time.monotonic()
            while not self._stop.is_set() and time.monotonic() < deadline:
                if time.monotonic() >= next_tick:
                    next_tick += 1.0
                    for t in self.socks:
                        if t.closed is None:
                            self._send(t)
                for key, _ in sel.select(timeout=max(0.0, min(0.1, next_tick - time.monotonic()))):
                    t = key.data
                    try:
                        data = t.sock.recv(4096)
                    except (ConnectionError, BlockingIOError) as e:
                        data = b"" if not isinstance(e, BlockingIOError) else None
                    if data is None:
                        continue
                    with self._lock:
                        if data:
                            t.answer += data
                        else:
                            t.closed = time.monotonic()
                    if not data:
                        sel.unregister(t.sock)
        except BaseException as e:  # surfaced by __exit__
            self.error = e
        finally:
            sel.close()

    def _send(self, t: Trickler) -> None:
        try:
            n = t.sock.send(self._byte(t.sent))
        except BlockingIOError:
            return
        except (BrokenPipeError, ConnectionResetError):
            with self._lock:
                t.closed = t.closed or time.monotonic()
            return
        with self._lock:
            t.sent += n


# -- slowloris ------------------------------------------------------------------------------------

SLOWLORIS = 1000


@pytest.mark.usefixtures("many_files")
def test_slowloris_does_not_delay_real_clients(serve: StartServer) -> None:
    # A head-read timeout longer than the test, so every trickling socket stays open throughout.
    server = serve(APP, "--keepalive", "30")
    (worker,) = wait_workers(server.pid, 1)
    assert server.port is not None
    with Slowloris(server.port, SLOWLORIS, duration=30) as attack:
        # The attack is inside the server (accepted, trickling), not parked in the kernel's backlog.
        wait_until(lambda: accepted(worker, server.port) >= SLOWLORIS, 15, f"{SLOWLORIS} accepted connections")
        wait_until(lambda: all(t.sent >= 2 for t in attack.snapshot()), 10, "two bytes sent on every socket")
        latencies = timed_get(server.url + "/", 50)
        still_open = attack.open_count()
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print(f"slowloris x{SLOWLORIS}: {still_open} open; 50 requests p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    assert still_open == SLOWLORIS, f"only {still_open} of {SLOWLORIS} slowloris sockets lasted the measurement"
    assert p99 < 1.0, f"with {SLOWLORIS} slowloris sockets open: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"


@pytest.mark.usefixtures("many_files")
def test_slowloris_sockets_are_closed_at_the_head_read_timeout(serve: StartServer) -> None:
    keepalive = 2.0
    server = serve(APP, "--keepalive", str(keepalive))
    (worker,) = wait_workers(server.pid, 1)
    assert server.port is not None
    with Slowloris(server.port, SLOWLORIS, duration=15) as attack:
        wait_until(lambda: attack.open_count() == 0, keepalive + 10, "the server to close every slowloris socket")
        socks = attack.snapshot()
    lifetimes = [t.closed - t.connected for t in socks if t.closed is not None]
    assert len(lifetimes) == SLOWLORIS
    # The timer covers the whole head: bytes trickling in do not extend it.
    assert all(t.sent >= 1 for t in socks), "some sockets never got a byte out"
    longest, shortest = max(lifetimes), min(lifetimes)
    print(f"slowloris x{SLOWLORIS} --keepalive {keepalive}: closed after {shortest:.2f}..{longest:.2f}s")
    assert longest < keepalive + 1.5, f"a trickling socket lived {longest:.2f}s with --keepalive {keepalive}"
    assert shortest > keepalive - 0.5, f"a trickling socket was closed after only {shortest:.2f}s"
    # Nothing but a clean close (or at most an error response) was sent to them.
    answers = {t.answer[:12] for t in socks}
    assert answers <= {b"", b"HTTP/1.1 408"}, answers
    wait_until(lambda: accepted(worker, server.port) == 0, 5, "the worker to let go of every connection")
    assert timed_get(server.url + "/", 5)


# -- slow readers ---------------------------------------------------------------------------------


def stalled_get(port: int, path: str) -> socket.socket:
    """Send a GET and never read the answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return s


def produced(marker: Path) -> dict[str, int]:
    """Bytes produced so far by each streamed request, from the app's progress lines."""
    out: dict[str, int] = {}
    for parts in marker_lines(marker):
        if parts[1].isdigit():
            out[parts[0]] = max(out.get(parts[0], 0), int(parts[1]))
    return out


def settled(read: Callable[[], dict[str, int]], want: int, quiet: float = 0.5) -> Callable[[], dict[str, int] | None]:
    """A condition for wait_until: `read()` covers `want` requests and has not changed for `quiet` s."""
    state: dict[str, Any] = {"value": None, "since": time.monotonic()}

    def check() -> dict[str, int] | None:
        value = read()
        if value != state["value"]:
            state.update(value=value, since=time.monotonic())
            return None
        return value if len(value) >= want and time.monotonic() - state["since"] >= quiet else None

    return check


def test_readers_that_never_read_a_stream_stall_it_without_buffering_it(serve: StartServer, tmp_path: Path) -> None:
    marker = tmp_path / "progress"
    readers = 3
    # What may leave the app for a reader that never reads: the server's send buffer at its largest,
    # the client's receive buffer at its initial size (it only grows as data is read), the bridge's
    # stream buffer (16 chunks) and hyper's write buffer.
    wmem = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    rmem = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[1])
    allowed = wmem + 2 * rmem + 4 * MIB
    if allowed > BIG * 3 // 4:
        pytest.skip(f"socket buffers up to {allowed // MIB} MiB could hold most of the 20 MiB response")
    server = serve(APP, "--threads", str(readers + 1), env={"RSGI_TEST_MARKER": str(marker)})
    (worker,) = wait_workers(server.pid, 1)
    assert server.port is not None
    # Warm up the streaming path once (a full, normal read), then take the baseline.
    with httpx.Client(timeout=10) as client:
        assert len(client.get(server.url + "/stream").content) == BIG
    wait_until(lambda: len(marker_lines(marker)) >= BIG // MIB + 1, 5, "the warm-up stream to be closed")
    marker.unlink()
    before = rss(worker)
    socks = [stalled_get(server.port, "/stream") for _ in range(readers)]
    try:
        # Backpressure: each generator stops being pulled once the socket buffers are full.
        stalled = wait_until(settled(lambda: produced(marker), readers), 15, "the stalled streams to stop growing")
        grown = rss(worker) - before
        # The spare thread still answers others promptly.
        latencies = timed_get(server.url + "/", 20)
    finally:
        for s in socks:
            s.close()
    figures = f"produced {sorted(v // MIB for v in stalled.values())} MiB; worker RSS grew {grown / MIB:.1f} MiB"
    print(f"{readers} stalled streams: {figures}; others p99 {percentile(latencies, 99) * 1000:.1f} ms")
    assert all(v <= allowed for v in stalled.values()), f"the app was not throttled: {figures}"
    assert grown < BIG, f"stalled streams were buffered in the worker: {figures}"
    assert percentile(latencies, 99) < 1.0, f"others waited {max(latencies):.2f}s; {figures}"
    # A reader that goes away frees its thread: every stalled generator is closed.
    wait_until(
        lambda: sum(1 for p in marker_lines(marker) if p[1] == "closed") == readers,
        10,
        "the abandoned streams to be closed",
    )


def test_readers_that_never_read_a_full_body_do_not_hold_the_app_thread(serve: StartServer, tmp_path: Path) -> None:
    marker = tmp_path / "returned"
    readers = 4
    server = serve(APP, env={"RSGI_TEST_MARKER": str(marker)})  # one app thread
    (worker,) = wait_workers(server.pid, 1)
    assert server.port is not None
    with httpx.Client(timeout=10) as client:
        assert len(client.get(server.url + "/full").content) == BIG
    before = rss(worker)
    socks = []
    try:
        for i in range(readers):
            socks.append(stalled_get(server.port, "/full"))
            # One at a time, so each body is built while the single app thread is free.
            wait_until(lambda i=i: len(marker_lines(marker)) >= i + 2, 10, f"stalled request {i} to be answered")
        latencies = timed_get(server.url + "/", 20)
        grown = rss(worker) - before
    finally:
        for s in socks:
            s.close()
    p99 = percentile(latencies, 99)
    print(f"{readers} stalled 20 MiB bodies: RSS grew {grown / MIB:.1f} MiB; others p99 {p99 * 1000:.1f} ms")
    assert p99 < 1.0, f"with {readers} stalled 20 MiB responses others waited up to {p99:.2f}s"
    # Each stalled response holds at most its own body, never more (no copy per write attempt).
    assert grown < readers * BIG * 1.25 + 16 * MIB, f"RSS grew {grown / MIB:.0f} MiB for {readers} x 20 MiB"
    wait_until(lambda: accepted(worker, server.port) == 0, 10, "the stalled connections to be released")


def test_readers_that_never_read_are_closed_by_the_send_timeout(serve: StartServer, tmp_path: Path) -> None:
    """`--send-timeout`: once a write to a client has stalled that long, the connection is closed
    and its response (here a complete 20 MiB body) freed; before, such a reader held its slot and
    its body until it left."""
    marker = tmp_path / "returned"
    server = serve(APP, "--send-timeout", "1", env={"RSGI_TEST_MARKER": str(marker)})
    (worker,) = wait_workers(server.pid, 1)
    assert server.port is not None
    sock = stalled_get(server.port, "/full")
    try:
        wait_until(lambda: marker_lines(marker), 10, "the stalled request to be answered")
        t0 = time.monotonic()
        wait_until(lambda: accepted(worker, server.port) == 0, 10, "the stalled connection to be closed")
        held = time.monotonic() - t0
    finally:
        sock.close()
    print(f"a reader that never reads a 20 MiB body: closed {held:.1f} s after its response was ready")
    assert 0.5 < held < 8, held
    with httpx.Client(timeout=10) as client:  # a reader that reads is not cut
        assert len(client.get(server.url + "/full").content) == BIG


# -- connection floods ----------------------------------------------------------------------------


@dataclass
class Conn:
    sock: socket.socket
    buf: bytes = b""
    answered: float | None = None
    status: int | None = None
    closed: float | None = None
    error: str = ""


def response_done(buf: bytes) -> tuple[int, bool]:
    """(status, complete) of one response with a Content-Length in `buf`."""
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return 0, False
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next((int(v) for k, _, v in (h.partition(b":") for h in lines[1:]) if k.lower() == b"content-length"), 0)
    return status, len(body) >= length


@pytest.mark.usefixtures("many_files")
def test_connections_past_max_connections_wait_in_the_backlog(serve: StartServer) -> None:
    cap, total, hold = 50, 200, 0.3
    server = serve(APP, "--max-connections", str(cap))
    (worker,) = wait_workers(server.pid, 1)
    assert server.port is not None
    conns: list[Conn] = []
    sel = selectors.DefaultSelector()
    server_side: list[int] = []
    try:
        for i in range(total):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            s.sendall(f"GET /{i} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            s.setblocking(False)
            conns.append(Conn(s))
            sel.register(s, selectors.EVENT_READ, conns[-1])
        deadline = time.monotonic() + 20
        next_sample = 0.0
        while any(c.closed is None for c in conns) and time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_sample:
                server_side.append(accepted(worker, server.port))
                next_sample = now + 0.05
            # Each answered connection is kept open (keep-alive, holding its permit) for `hold` s.
            for c in conns:
                if c.answered is not None and c.closed is None and now - c.answered >= hold:
                    sel.unregister(c.sock)
                    c.sock.close()
                    c.closed = now
            for key, _ in sel.select(timeout=0.02):
                c = key.data
                try:
                    data = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as e:
                    data, c.error = b"", repr(e)
                if not data:
                    c.error = c.error or "closed by the server before answering"
                    sel.unregister(c.sock)
                    c.closed = time.monotonic()
                    continue
                c.buf += data
                status, done = response_done(c.buf)
                if done and c.answered is None:
                    c.answered, c.status = time.monotonic(), status
    finally:
        sel.close()
        for c in conns:
            c.sock.close()
    errors = [c.error for c in conns if c.error]
    assert not errors, f"{len(errors)} of {total} connections failed: {errors[:5]}"
    assert all(c.status == 200 for c in conns), [c.status for c in conns if c.status != 200][:10]
    # In service (client view): answered and not yet closed by us.
    events = sorted([(c.answered, 1) for c in conns] + [(c.closed, -1) for c in conns])  # type: ignore[misc]
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    answered = sorted(c.answered for c in conns if c.answered is not None)
    first_close = min(c.closed for c in conns if c.closed is not None)
    print(
        f"flood {total} on cap {cap}: peak in service {peak}, worker held at most {max(server_side)};"
        f" 51st answer {answered[cap] - first_close:+.3f}s after the first close; last answered"
        f" {answered[-1] - answered[0]:.2f}s after the first"
    )
    assert peak == cap, f"{peak} connections were in service at once with --max-connections {cap}"
    assert max(server_side) <= cap, f"the worker held {max(server_side)} connections (cap {cap})"
    # The queued ones were answered only as earlier ones closed: they had waited in the backlog.
    assert answered[cap] >= first_close, "connection 51 was answered before any connection closed"


def test_the_open_files_limit_is_raised_for_max_connections(serve: StartServer) -> None:
    """A service often starts with a soft limit of 1024 open files (systemd's default) under a far
    higher hard one: rsgi raises the soft one to what --max-connections needs, and says when the
    hard one is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4000:
        pytest.skip(f"hard open-files limit {hard}: too low to see the raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))  # the servers inherit it
    try:
        enough = serve(APP, "--max-connections", "2000")
        too_many = serve(APP, "--max-connections", str(hard))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    (worker,) = wait_workers(enough.pid, 1)
    assert psutil.Process(worker).rlimit(psutil.RLIMIT_NOFILE) == (2000 + 1024, hard)
    assert "open files limit raised from 512 to 3024 (--max-connections 2000)" in enough.log()
    (worker,) = wait_workers(too_many.pid, 1)
    assert psutil.Process(worker).rlimit(psutil.RLIMIT_NOFILE) == (hard, hard)
    assert f"is below --max-connections {hard} plus 1024" in too_many.log()


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
def test_running_out_of_file_descriptors_is_survived_and_logged_once(tmp_path: Path) -> None:
    """A worker whose open-files limit is lower than its --max-connections runs out of
    descriptors: accept() fails (EMFILE), the connections past it wait in the backlog, the log
    says so once (not 20 times a second), and the worker serves again once clients leave."""
    port, log = free_port(), tmp_path / "server.log"
    argv = [sys.executable, "-m", "rsgi", APP, "--bind", f"127.0.0.1:{port}", "--max-connections", "1000"]
    with open(log, "wb") as out:  # a hard limit of 96 files, in the server only
        proc = subprocess.Popen(
            ["prlimit", "--nofile=96:96", "--", *argv], cwd=TESTS, env=base_env(), stdout=out, stderr=out
        )
    clients: list[socket.socket] = []

    def served() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).text == "ok"
        except httpx.TransportError:
            return False

    try:
        wait_until(served, 20, "the server to serve")
        assert "open files limit 96 (hard 96) is below --max-connections 1000" in log.read_text()
        for _ in range(150):  # more than the worker has descriptors for; the kernel queues the rest
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        wait_until(lambda: "accept failed" in log.read_text(), 10, "accept() to fail")
        time.sleep(1.0)  # a bounded wait for lines that must not come (the loop retries every 50 ms)
        assert log.read_text().count("accept failed") == 1, log.read_text()
        for c in clients:
            c.close()
        clients.clear()
        wait_until(served, 20, "the worker to serve again once the clients left")
        assert proc.poll() is None
    finally:
        for c in clients:
            c.close()
        proc.terminate()
        proc.wait(30)


def test_idle_keepalive_connections_cannot_hold_the_cap_past_the_keepalive_timeout(serve: StartServer) -> None:
    cap, keepalive = 20, 1.0
    server = serve(APP, "--max-connections", str(cap), "--keepalive", str(keepalive))
    (worker,) = wait_workers(server.pid, 1)
    assert server.port is not None
    clients = [httpx.Client(timeout=10) for _ in range(cap)]
    try:
        # Fill the cap with idle keep-alive connections (each answered once, then left open).
        for c in clients:
            assert c.get(server.url + "/").status_code == 200
        wait_until(lambda: accepted(worker, server.port) >= cap, 5, f"{cap} idle connections held")
        started = time.monotonic()
        with httpx.Client(timeout=10) as late:
            r = late.get(server.url + "/")
        waited = time.monotonic() - started
    finally:
        for c in clients:
            c.close()
    print(f"{cap} idle keep-alive connections at the cap, --keepalive {keepalive}: the next waited {waited:.2f}s")
    assert r.status_code == 200
    # The late client waited in the backlog until the idle ones timed out, and not much longer.
    assert waited > keepalive / 2, f"the late connection was served after {waited:.2f}s: it never queued"
    assert waited < keepalive + 1.5, f"a queued connection waited {waited:.2f}s behind idle keep-alive ones"
