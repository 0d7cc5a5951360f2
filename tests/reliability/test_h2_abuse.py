"""HTTP/2 abuse against a real WSGI server over h2c (prior knowledge) on 127.0.0.1.

The attacks are scripted with the h2 library's own layers: frames built and parsed with hyperframe,
header blocks written by hand with HPACK's integer and literal encodings (the bomb needs exact bytes)
and decoded with hpack, error codes and settings from h2. The well-behaved client (`Bystander`) is
httpx over h2, on a connection of its own.

Each attack must be bounded: the attacking connection is answered with GOAWAY (with the error code
the attack deserves) or closed after a bounded number of frames, or the server stops reading it,
and the worker's RSS does not grow with the attack. Meanwhile the bystander keeps being served: each
attack runs until the bystander has had `SERVED` more responses (a deadline fails the test if it is
starved), and it is served after the attack too. The figures each test measures are printed (`-s`
shows them) and recorded in tests/reliability/README.md, "HTTP/2 abuse".

The servers run `apps.h2_abuse:app` with `--keepalive 1` (hyper pings a connection it has heard
nothing from for 4 s and closes it when the ping is not answered 4 s later: `http2_builder` in
src/http/conn.rs) and `--h2-max-concurrent-streams 10`.
"""

from __future__ import annotations

import contextlib
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h2.errors
import h2.settings
import hpack
import httpx
import psutil
import pytest
from conftest import Server, StartServer, running
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from reliability.loadgen import percentile, rss, wait_until

MIB = 1024 * 1024
APP = "apps.h2_abuse:app"
KEEPALIVE = 1
# hyper's keep-alive as rsgi configures it: a ping after 4 x keepalive of silence, closed 4 x keepalive later.
PING_CLOSE = 8 * KEEPALIVE
MAX_STREAMS = 10
SEND_TIMEOUT = 3
FLAGS = (
    "--keepalive",
    str(KEEPALIVE),
    "--h2-max-concurrent-streams",
    str(MAX_STREAMS),
    "--send-timeout",
    str(SEND_TIMEOUT),
)
SERVED = 10  # responses the bystander must get while an attack runs
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
E = h2.errors.ErrorCodes
INITIAL_WINDOW_SIZE = h2.settings.SettingCodes.INITIAL_WINDOW_SIZE


# -- HPACK by hand ---------------------------------------------------------------------------------


def hpack_int(value: int, bits: int, flags: int = 0) -> bytes:
    """An HPACK integer with a `bits`-bit prefix (RFC 7541 §5.1), `flags` in the first byte's high bits."""
    limit = (1 << bits) - 1
    if value < limit:
        return bytes([flags | value])
    out = [flags | limit]
    value -= limit
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


def literal(name: int | bytes, value: bytes, indexed: bool = False) -> bytes:
    """A literal header field (RFC 7541 §6.2), not Huffman-coded: with incremental indexing (it enters
    the server's dynamic table, at index 62) or without; the name by static-table index or as a string."""
    flags, bits = (0x40, 6) if indexed else (0x00, 4)
    if isinstance(name, int):
        head = hpack_int(name, bits, flags)
    else:
        head = hpack_int(0, bits, flags) + hpack_int(len(name), 7) + name
    return head + hpack_int(len(value), 7) + value


def request_block(path: str) -> bytes:
    """GET `path`: :method GET and :scheme http from the static table, :authority and :path as literals
    that stay out of the dynamic table, so every block stands alone."""
    return b"\x82\x86" + literal(1, b"127.0.0.1") + literal(4, path.encode())


def get(sid: int, path: str = "/") -> bytes:
    return HeadersFrame(sid, request_block(path), flags=["END_HEADERS", "END_STREAM"]).serialize()


# -- a raw HTTP/2 connection ---------------------------------------------------------------------


class Peer:
    """One HTTP/2 connection driven frame by frame. Non-blocking, so a flood can tell when the server
    stops reading (a send makes no progress) and a reader can stay silent. Received frames are parsed
    with hyperframe: response statuses, stream resets, DATA bytes, PING ACKs and the GOAWAY are kept;
    PINGs are answered when `pong` is set. What the server sent before it closed the connection is
    still read after a send found it closed, so a GOAWAY followed by a reset is not missed."""

    def __init__(self, port: int, settings: dict[int, int] | None = None, pong: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.local_port = self.sock.getsockname()[1]
        self.pong = pong
        self.buf = bytearray()
        self.backlog = bytearray()
        self.decoder = hpack.Decoder()
        self.opened = time.monotonic()
        self.closed_after: float | None = None  # seconds from connect to the server closing it
        self.eof = False  # everything the server sent has been read
        self.sent = 0
        self.count = 0  # what the attack counts: streams opened, frames sent
        self.statuses: dict[int, int] = {}
        self.resets: dict[int, int] = {}
        self.data_bytes = 0
        self.pings = 0
        self.acks = 0
        self.goaway: GoAwayFrame | None = None
        self.send(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    @property
    def closed(self) -> bool:
        return self.closed_after is not None

    @property
    def ended(self) -> bool:
        """The server said GOAWAY or closed the connection."""
        return self.goaway is not None or self.closed

    def _closed(self) -> None:
        if self.closed_after is None:
            self.closed_after = time.monotonic() - self.opened

    def send(self, data: bytes, stall: float = 5.0) -> bool:
        """Queue `data` and send all that is queued; False when the server closed the connection or took
        nothing for `stall` s (what is left stays queued, so the frames on the wire stay whole)."""
        self.backlog += data
        last = time.monotonic()
        while self.backlog:
            if self.closed:
                return False
            try:
                n = self.sock.send(self.backlog)
            except BlockingIOError:
                if time.monotonic() - last > stall:
                    return False
                self._wait(write=True, timeout=min(stall, 0.05))
                continue
            except OSError:  # EPIPE or ECONNRESET: the server closed it
                self._closed()
                return False
            del self.backlog[:n]
            self.sent += n
            last = time.monotonic()
        return True

    def _wait(self, write: bool, timeout: float) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_WRITE if write else selectors.EVENT_READ)
            sel.select(timeout)

    def poll(self, timeout: float = 0.0) -> None:
        """Read whatever has arrived (waiting up to `timeout` for something) and handle its frames."""
        if self.eof:
            return
        if timeout:
            self._wait(write=False, timeout=timeout)
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self.eof = True
                self._closed()
                break
            self.buf += data
        while len(self.buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                break
            frame.parse_body(memoryview(self.buf[9 : 9 + length]))
            del self.buf[: 9 + length]
            self._handle(frame)

    def _handle(self, frame: Frame) -> None:
        if isinstance(frame, HeadersFrame):
            self.statuses[frame.stream_id] = int(dict(self.decoder.decode(frame.data))[":status"])
        elif isinstance(frame, DataFrame):
            self.data_bytes += len(frame.data)
        elif isinstance(frame, RstStreamFrame):
            self.resets[frame.stream_id] = frame.error_code
        elif isinstance(frame, GoAwayFrame):
            self.goaway = frame
        elif isinstance(frame, PingFrame) and "ACK" in frame.flags:
            self.acks += 1
        elif isinstance(frame, PingFrame):
            self.pings += 1
            if self.pong:
                self.send(PingFrame(0, opaque_data=frame.opaque_data, flags=["ACK"]).serialize())

    def wait(self, condition: Callable[[], object], timeout: float) -> bool:
        """Read until `condition()` holds, everything the server sent before closing has been read, or
        `timeout` passes."""
        deadline = time.monotonic() + timeout
        while not condition() and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.poll(min(left, 0.1))
        return bool(condition())

    def round_trip(self, timeout: float = 10.0) -> None:
        """Send a PING and read until its ACK (or the end): the server has read all that came before."""
        acks = self.acks
        if self.send(PingFrame(0, opaque_data=b"roundtrp").serialize()):
            self.wait(lambda: self.acks > acks or self.ended, timeout)

    def describe(self) -> str:
        out = []
        if self.goaway is not None:
            g = self.goaway
            out.append(f"GOAWAY {E(g.error_code).name} {g.additional_data!r} (last stream {g.last_stream_id})")
        out.append(f"closed after {self.closed_after:.1f} s" if self.closed else "open")
        return ", ".join(out)


# -- the well-behaved client ---------------------------------------------------------------------


class Bystander:
    """A well-behaved HTTP/2 client (httpx over h2) on a connection of its own, on a thread: GET
    /big?65536 again and again, each body checked, until stopped."""

    PATH = "/big?65536"

    def __init__(self, url: str) -> None:
        self.url = url
        self.served = 0
        self.failures: list[str] = []
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Bystander:
        self._thread.start()
        wait_until(lambda: self.served or self.failures, 15, "the bystander's first response")
        assert not self.failures, self.failures
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        assert not self._thread.is_alive()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, http1=False, http2=True, timeout=10) as client:
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    r = client.get(self.PATH)
                except Exception as e:  # any failure is recorded; the thread keeps going
                    self.failures.append(repr(e))
                    self._stop.wait(0.1)
                    continue
                if r.status_code == 200 and r.http_version == "HTTP/2" and r.content == b"x" * 65536:
                    self.latencies.append(time.monotonic() - start)
                    self.served += 1
                else:
                    self.failures.append(f"{r.http_version} {r.status_code} {len(r.content)} bytes")

    def during(self, step: Callable[[], object], timeout: float = 30.0) -> int:
        """Run `step` (one round of an attack) again and again until this client has been served
        `SERVED` more responses; returns the number of rounds. Fails if it is starved or fails."""
        target = self.served + SERVED
        deadline = time.monotonic() + timeout
        rounds = 0
        while self.served < target:
            assert not self.failures, self.failures
            assert time.monotonic() < deadline, f"bystander served {self.served}/{target} in {timeout} s"
            step()
            rounds += 1
        assert not self.failures, self.failures
        return rounds

    def report(self) -> str:
        p50, p99 = (percentile(self.latencies, p) * 1000 for p in (50, 99))
        return f"bystander: {self.served} served, latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"

    def served_after(self) -> None:
        """Once the attack is over: served again, nothing failed."""
        before = self.served
        wait_until(lambda: self.served > before + 1 or self.failures, 15, "the bystander after the attack")
        assert not self.failures, self.failures


# -- fixtures and checks -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(APP, *FLAGS, log_dir=tmp_path_factory.mktemp("h2-abuse")) as s:
        yield s


def only_worker(server: Server) -> int:
    [pid] = server.worker_pids()
    return pid


def fresh_get(server: Server, path: str = "/") -> httpx.Response:
    with httpx.Client(base_url=server.url, http1=False, http2=True, timeout=10) as client:
        r = client.get(path)
    assert r.status_code == 200 and r.http_version == "HTTP/2"
    return r


def unharmed(server: Server, worker: int) -> None:
    """The same worker still serves a new HTTP/2 connection, and nothing panicked."""
    assert fresh_get(server).content == b"ok"
    assert only_worker(server) == worker
    assert "panicked" not in server.log(), server.log()[-3000:]


def open_on_worker(worker: int, local_ports: set[int]) -> set[int]:
    """Which of these client ports still have a connection in the worker."""
    conns = psutil.Process(worker).net_connections(kind="tcp")
    return {c.raddr.port for c in conns if c.raddr and c.raddr.port in local_ports}


def report(*lines: str) -> None:
    print("\n  " + "\n  ".join(lines))


def connection_after_connection(bystander: Bystander, attack: Callable[[], Peer], total: int = 0) -> list[Peer]:
    """Repeat `attack` (one connection) while the bystander is served `SERVED` times, and then until
    the attacks have counted `total` (streams, frames) between them."""
    peers: list[Peer] = []
    bystander.during(lambda: peers.append(attack()))
    while sum(p.count for p in peers) < total:
        peers.append(attack())
    bystander.served_after()
    return peers


def endings(peers: list[Peer]) -> str:
    """How the connections ended, counted: 'GOAWAY ENHANCE_YOUR_CALM b'too_many_resets' x 40, ...'."""
    seen: dict[str, int] = {}
    for p in peers:
        if p.goaway:
            key = f"GOAWAY {E(p.goaway.error_code).name} {p.goaway.additional_data!r}"
        else:
            key = "closed without GOAWAY" if p.closed else "open"
        seen[key] = seen.get(key, 0) + 1
    return ", ".join(f"{k} x {n}" for k, n in seen.items())


# -- 1. rapid reset (CVE-2023-44487) ---------------------------------------------------------------


def test_rapid_reset_gets_goaway_enhance_your_calm(server: Server) -> None:
    """HEADERS + RST_STREAM(CANCEL) pairs, 100 to a write, on connection after connection until 5,000
    streams were reset: each connection is told GOAWAY ENHANCE_YOUR_CALM after a few dozen streams
    (h2 counts streams reset before the server accepted them; hyper keeps h2's limit of 20), and the
    app runs for few of the reset streams."""
    worker = only_worker(server)
    calls_before = int(fresh_get(server, "/calls").text)
    cap = 10_000  # streams on one connection: reaching it means the server never said stop
    rss_before = rss(worker)

    def attack() -> Peer:
        with Peer(server.port) as peer:
            while not peer.ended and peer.count < cap:
                first = 2 * peer.count + 1
                pairs = range(first, first + 200, 2)
                peer.send(
                    b"".join(get(s, "/reset") + RstStreamFrame(s, error_code=E.CANCEL).serialize() for s in pairs)
                )
                peer.count += len(pairs)
                peer.round_trip()
            peer.wait(lambda: peer.eof, 10)
        return peer

    with Bystander(server.url) as bystander:
        peers = connection_after_connection(bystander, attack, total=5000)
    growth = rss(worker) - rss_before
    streams = sum(p.count for p in peers)
    app_ran = int(fresh_get(server, "/calls").text) - calls_before - bystander.served - 1
    processed = [p.goaway.last_stream_id // 2 + 1 for p in peers if p.goaway]
    report(
        f"{len(peers)} connections, {streams} streams opened and reset: {endings(peers)}",
        f"streams the server processed before its GOAWAY: max {max(processed, default=0)}; "
        f"streams sent before the end was seen: max {max(p.count for p in peers)}",
        f"the app ran {app_ran} times; worker RSS growth {growth / MIB:.1f} MiB",
        bystander.report(),
    )
    assert all(p.goaway and p.goaway.error_code == E.ENHANCE_YOUR_CALM for p in peers), endings(peers)
    assert max(processed) < 200
    assert app_ran < streams // 10
    assert growth < 16 * MIB
    unharmed(server, worker)


# -- 2. CONTINUATION flood (CVE-2024-27316 class) ------------------------------------------------


class Endless:
    """A header block that never ends, handed out `take(n)` bytes at a time: literal fields
    `x-N: vvv...` one after another, or (`one_value`) a single literal whose value announces 16 MiB."""

    def __init__(self, one_value: bool) -> None:
        self.one_value = one_value
        self.buf = bytearray(literal(b"x-endless", b"")[:-1] + hpack_int(1 << 24, 7) if one_value else b"")
        self.fields = 0

    def take(self, n: int) -> bytes:
        while len(self.buf) < n:
            if self.one_value:
                self.buf += b"v" * n
            else:
                self.buf += literal(b"x-%d" % self.fields, b"v" * 100)
                self.fields += 1
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


@pytest.mark.parametrize(
    ("shape", "size", "cap"),
    [("one-byte frames", 1, 100_000), ("16 KiB frames", 16384, 4096), ("one endless value", 16384, 4096)],
)
def test_continuation_flood_gets_goaway(server: Server, shape: str, size: int, cap: int) -> None:
    """HEADERS without END_HEADERS, then CONTINUATION frames (`size` bytes each, up to `cap` of them:
    100 KB or 64 MiB) that never end the block, on connection after connection: the server must not
    collect the block without bound. h2 counts the frames of one block (about 96 KiB / 16 KiB + 25%)
    and caps the undecoded remainder, so each connection gets GOAWAY ENHANCE_YOUR_CALM
    (too_many_continuations) after a handful of frames."""
    worker = only_worker(server)
    rss_before = rss(worker)

    def attack() -> Peer:
        block = Endless(one_value=shape == "one endless value")
        with Peer(server.port) as peer:
            peer.send(HeadersFrame(1, request_block("/"), flags=["END_STREAM"]).serialize())
            while not peer.ended and peer.count < cap:
                peer.send(ContinuationFrame(1, block.take(size)).serialize())
                peer.count += 1
                peer.poll()
            peer.wait(lambda: peer.eof, 10)
        return peer

    with Bystander(server.url) as bystander:
        peers = connection_after_connection(bystander, attack)
    growth = rss(worker) - rss_before
    report(
        f"{shape}: {len(peers)} connections: {endings(peers)}",
        f"CONTINUATION frames sent before the end was seen: max {max(p.count for p in peers)} "
        f"({max(p.sent for p in peers)} bytes); worker RSS growth {growth / MIB:.1f} MiB",
        bystander.report(),
    )
    assert all(p.goaway and p.goaway.error_code == E.ENHANCE_YOUR_CALM for p in peers), endings(peers)
    assert growth < 16 * MIB
    unharmed(server, worker)


# -- 3. SETTINGS and PING floods -----------------------------------------------------------------


FLOODS = {
    "SETTINGS": SettingsFrame(0, settings={INITIAL_WINDOW_SIZE: 65535}).serialize(),
    "PING": PingFrame(0, opaque_data=b"flooding").serialize(),
}
FLOOD_CAP = 256 * MIB  # bytes: reaching it means the server reads whatever it is sent


def kernel_buffers() -> int:
    """The most the kernel may buffer on a loopback connection in both directions (the largest
    autotuned receive and send buffers, twice)."""
    largest = [int(Path(f"/proc/sys/net/ipv4/{n}").read_text().split()[2]) for n in ("tcp_rmem", "tcp_wmem")]
    return 2 * sum(largest)


def flood_until_blocked(peer: Peer, frame: bytes) -> float:
    """Send `frame` again and again until the server takes nothing for a second; returns the seconds."""
    start, before = time.monotonic(), peer.sent
    batch = frame * 10_000
    while peer.sent < FLOOD_CAP and peer.send(batch, stall=1.0):
        pass
    peer.count = (peer.sent - before) // len(frame)
    return time.monotonic() - start


@pytest.mark.parametrize("kind", FLOODS)
def test_control_frame_flood_from_a_client_that_never_reads(server: Server, kind: str) -> None:
    """SETTINGS or PING frames as fast as the socket takes them, from a client that never reads the
    ACKs: the server stops reading once its ACKs no longer fit in the socket (h2 writes each ACK
    before it reads on), so what it takes is bounded by the kernel's buffers and its memory does not
    grow; the bystander is served while the flood keeps pushing, and when the client leaves the
    server drops the connection."""
    worker = only_worker(server)
    rss_before = rss(worker)
    with Bystander(server.url) as bystander:
        with Peer(server.port, pong=False) as peer:
            seconds = flood_until_blocked(peer, FLOODS[kind])
            taken = peer.sent
            bystander.during(lambda: peer.send(b"" if peer.backlog else FLOODS[kind] * 100, stall=0.05))
            growth = rss(worker) - rss_before
            assert open_on_worker(worker, {peer.local_port}), "the server closed the flooding connection"
        dropped = time.monotonic()
        wait_until(lambda: not open_on_worker(worker, {peer.local_port}), 10, "the server to drop the connection")
        dropped = time.monotonic() - dropped
        bystander.served_after()
    report(
        f"{kind} flood: the server stopped reading after {peer.count} frames ({taken / MIB:.1f} MiB, "
        f"kernel buffers up to {kernel_buffers() / MIB:.0f} MiB) in {seconds - 1:.2f} s",
        f"worker RSS growth {growth / MIB:.1f} MiB; dropped {dropped:.2f} s after the client left",
        bystander.report(),
    )
    assert taken < kernel_buffers() + 16 * MIB
    assert growth < 16 * MIB
    unharmed(server, worker)


def test_a_flood_that_never_reads_is_closed_by_the_send_timeout(server: Server) -> None:
    """The part of the floods that hyper alone does not bound in time: a client that keeps the
    connection full and never reads. hyper's keep-alive gives up after 8 s, but its close needs a
    GOAWAY written first, which never happens; `--send-timeout` (SEND_TIMEOUT s here) closes a
    connection whose writes have stalled that long (src/http/send_timeout.rs)."""
    worker = only_worker(server)
    with Peer(server.port, pong=False) as settings, Peer(server.port, pong=False) as ping:
        flood_until_blocked(settings, FLOODS["SETTINGS"])
        flood_until_blocked(ping, FLOODS["PING"])
        ports = {settings.local_port, ping.local_port}
        wait_until(lambda: not open_on_worker(worker, ports), SEND_TIMEOUT + 4, "the flooding connections to close")


# -- 4. HPACK bomb ---------------------------------------------------------------------------------


BOMB = literal(b"x-bomb", b"a" * 4000, indexed=True)  # 6 + 4000 + 32 = 4,038 bytes: fills the 4 KiB table
REF = hpack_int(62, 7, 0x80)  # one byte: "the field at index 62 again"
FIELD = 4038
HEADER_LIST = 96 * 1024  # rsgi's max_header_list_size; h2 gives up on a connection at 4 times it


def bomb(sid: int, refs: int, first: bool) -> bytes:
    """GET /bomb with `refs` copies of the 4,038-byte table entry (which the first block enters),
    split into HEADERS and CONTINUATION frames of 16 KiB."""
    block = request_block("/bomb") + (BOMB if first else b"") + REF * refs
    pieces = [block[i : i + 16384] for i in range(0, len(block), 16384)]
    frames = [HeadersFrame(sid, pieces[0], flags=["END_STREAM"])]
    frames += [ContinuationFrame(sid, piece) for piece in pieces[1:]]
    frames[-1].flags.add("END_HEADERS")
    return b"".join(f.serialize() for f in frames)


def test_hpack_bomb_is_refused_without_decoding_it_into_memory(server: Server) -> None:
    """One 4,038-byte entry in the dynamic table, then referenced by one-byte indexes. Per round:
    a connection whose single block references it 16,000 times (20 KB on the wire, 62 MiB decoded)
    gets GOAWAY ENHANCE_YOUR_CALM (h2 stops decoding past 4 x the header list limit); and on one
    long-lived connection, 10 streams of 90 references each (110 bytes, 363 KB decoded) each get
    431, and the app never sees them. The worker's RSS does not grow."""
    worker = only_worker(server)
    calls_before = int(fresh_get(server, "/calls").text)
    rss_before = rss(worker)
    big: list[Peer] = []
    decoded = wire = 0

    def attack() -> Peer:
        with Peer(server.port) as peer:
            peer.send(bomb(1, 16_000, first=True))
            peer.wait(lambda: peer.eof or peer.statuses, 10)
        return peer

    with Bystander(server.url) as bystander, Peer(server.port) as small:

        def one_round() -> None:
            nonlocal decoded, wire
            big.append(attack())
            first = 2 * small.count + 1
            sids = range(first, first + 2 * MAX_STREAMS, 2)
            data = b"".join(bomb(s, 90, first=s == 1) for s in sids)
            small.send(data)
            small.count += len(sids)
            wire += len(data)
            decoded += len(sids) * 90 * FIELD
            small.wait(lambda: all(s in small.statuses or s in small.resets for s in sids) or small.ended, 10)

        bystander.during(one_round)
        bystander.served_after()
    growth = rss(worker) - rss_before
    app_ran = int(fresh_get(server, "/calls").text) - calls_before - bystander.served - 1
    statuses = {s: list(small.statuses.values()).count(s) for s in set(small.statuses.values())}
    report(
        f"16,000-reference bombs: {len(big)} connections: {endings(big)}",
        f"90-reference bombs: {small.count} streams, {wire} bytes sent, {decoded / MIB:.0f} MiB if decoded: "
        f"statuses {statuses}, resets {len(small.resets)}, connection {small.describe()}",
        f"the app ran {app_ran} times; worker RSS growth {growth / MIB:.1f} MiB",
        bystander.report(),
    )
    assert all(p.goaway and p.goaway.error_code == E.ENHANCE_YOUR_CALM for p in big), endings(big)
    assert app_ran == 0
    assert not any(p.statuses for p in big)
    assert set(small.statuses.values()) <= {431}, statuses
    assert len(small.statuses) + len(small.resets) == small.count or small.ended, small.describe()
    assert growth < 16 * MIB
    unharmed(server, worker)


# -- 5. zero-window readers ------------------------------------------------------------------------


def test_zero_window_readers_hold_one_copy_and_do_not_stall_a_graceful_stop(serve: StartServer) -> None:
    """Readers that announce an initial window of 0 and never send WINDOW_UPDATE, each asking for 8
    MiB: the server sends no DATA, holds each body once (RSS grows by at most two copies), a reader
    that does not answer the keep-alive ping is closed after about 8 s, and a graceful stop ends the
    readers that do answer it within --graceful-timeout, while the bystander is served throughout."""
    size, silent_n, alive_n = 8 * MIB, 3, 3
    server = serve(APP, *FLAGS, "--graceful-timeout", "2")
    worker = only_worker(server)
    rss_before = rss(worker)
    zero = {INITIAL_WINDOW_SIZE: 0}
    with contextlib.ExitStack() as stack:
        bystander = stack.enter_context(Bystander(server.url))
        silent = [stack.enter_context(Peer(server.port, zero, pong=False)) for _ in range(silent_n)]
        alive = [stack.enter_context(Peer(server.port, zero, pong=True)) for _ in range(alive_n)]
        readers = silent + alive
        for peer in readers:
            peer.send(get(1, f"/big?{size}"))
        for peer in readers:
            assert peer.wait(lambda p=peer: 1 in p.statuses, 20), peer.describe()
        held = rss(worker) - rss_before

        def read_all() -> None:
            for peer in readers:
                peer.poll(0.01)

        bystander.during(read_all)
        deadline = time.monotonic() + PING_CLOSE + 6
        while not all(p.closed for p in silent) and time.monotonic() < deadline:
            read_all()
        alive_open = sum(not p.ended for p in alive)
        bystander.during(read_all)
        bystander.stop()
        stop_started = time.monotonic()
        server.signal(signal.SIGTERM)
        code = server.wait(20)
        stopped = time.monotonic() - stop_started
        for peer in alive:
            peer.wait(lambda p=peer: p.closed, 5)
    report(
        f"{len(readers)} zero-window readers of {size // MIB} MiB: DATA bytes sent "
        f"{sum(p.data_bytes for p in readers)}, worker RSS growth {held / MIB:.1f} MiB "
        f"({held / len(readers) / MIB:.1f} MiB each)",
        f"silent readers (pings unanswered): {[p.describe() for p in silent]}",
        f"readers that answer pings: {alive_open} of {alive_n} still open when the silent ones were closed; "
        f"SIGTERM with --graceful-timeout 2: exit {code} after {stopped:.2f} s, they ended: "
        f"{[p.describe() for p in alive]}",
        bystander.report(),
    )
    assert sum(p.data_bytes for p in readers) == 0
    assert held < len(readers) * 2 * size + 16 * MIB
    assert all(p.closed and p.closed_after < PING_CLOSE + 6 for p in silent), [p.describe() for p in silent]
    assert code == 0, server.log()[-3000:]
    assert stopped < 2 + 8
    assert all(p.closed for p in alive), [p.describe() for p in alive]
    assert "panicked" not in server.log()


# -- 6. more streams than --h2-max-concurrent-streams ----------------------------------------------


def test_streams_past_the_limit_are_refused_then_the_connection_goes_away(server: Server) -> None:
    """Rounds of 50 GETs at once against a limit of 10, each round waiting for its answers: the
    streams past the limit get RST_STREAM REFUSED_STREAM (safe to retry), the others 200, and after
    about 1,024 refusals (hyper's limit on streams the server had to reset) GOAWAY ENHANCE_YOUR_CALM."""
    worker = only_worker(server)
    rounds: list[tuple[int, int]] = []  # (answered, refused) per round

    def one_round(peer: Peer) -> None:
        first = 2 * peer.count + 1
        sids = range(first, first + 100, 2)
        peer.send(b"".join(get(s, "/") for s in sids))
        peer.count += len(sids)
        peer.wait(lambda: all(s in peer.statuses or s in peer.resets for s in sids) or peer.ended, 10)
        rounds.append((sum(s in peer.statuses for s in sids), sum(s in peer.resets for s in sids)))

    with Bystander(server.url) as bystander, Peer(server.port) as peer:
        bystander.during(lambda: one_round(peer) if not peer.ended else peer.poll(0.01))
        while not peer.ended and peer.count < 5000:
            one_round(peer)
        peer.wait(lambda: peer.eof, 10)
        bystander.served_after()
    codes = {E(c).name for c in peer.resets.values()}
    report(
        f"{peer.count} streams in {len(rounds)} rounds of 50 (limit {MAX_STREAMS}): first round "
        f"{rounds[0][0]} answered, {rounds[0][1]} refused; in all {len(peer.statuses)} answered, "
        f"{len(peer.resets)} reset ({', '.join(sorted(codes))}); then {peer.describe()}",
        bystander.report(),
    )
    assert rounds[0][1] >= 50 - 2 * MAX_STREAMS, rounds[0]
    assert codes == {"REFUSED_STREAM"}, codes
    assert set(peer.statuses.values()) == {200}
    assert peer.goaway, f"{peer.count} streams, half of them past the limit, and no GOAWAY: {peer.describe()}"
    assert peer.goaway.error_code == E.ENHANCE_YOUR_CALM, peer.describe()
    unharmed(server, worker)
