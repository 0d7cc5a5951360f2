"""What an idle websocket costs the worker (issue #21), and the backpressure the lean outbox
keeps. 2,000 idle sockets to a real server subprocess must not add more than a bound per socket
to the worker's RSS (6-8 KiB measured with this app, ~16 before issue #21: tungstenite's 8 KiB
read buffer, a channel block and a doubled task per socket); a client that does not read makes
the app's send() wait, then gets every message in order. Raw asyncio sockets as clients."""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import struct
from pathlib import Path

import psutil
import pytest
from conftest import StartServer, marker_lines

APP = "apps.asgi_ws:app"
IDLE = 2000
# KiB of worker RSS per idle socket, with this small app: 6-8 measured (rsgi's tokio side ~3.6,
# the Python side — scope, task, coroutines — and malloc's free space the rest); ~16 before issue
# #21, and reverting the read buffer alone to 8 KiB would add ~7.5.
PER_SOCKET_KIB = 11


def raise_nofile(wanted: int) -> None:
    """For this process and the server it starts (children inherit the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"needs {wanted} open files, the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def handshake(port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (payloads under 126 bytes)."""
    mask = os.urandom(4)
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def open_ws(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(handshake(port, path))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One whole message: (opcode, payload), its fragments joined (long ones come in pieces)."""
    opcode, parts = None, []
    while True:
        first, size = await asyncio.wait_for(reader.readexactly(2), 20)
        if size == 126:
            (size,) = struct.unpack("!H", await reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await reader.readexactly(8))
        data = await reader.readexactly(size)
        if first & 0x08:  # a control frame, possibly between fragments
            return first & 0x0F, data
        opcode = first & 0x0F if opcode is None else opcode
        parts.append(data)
        if first & 0x80:
            return opcode, b"".join(parts)


async def echo_once(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], payload: bytes) -> None:
    """One round trip: the app is in its receive loop and the pump has run for this socket."""
    reader, writer = conn
    writer.write(frame(0x2, payload))
    opcode, data = await read_frame(reader)
    while opcode == 0x9:  # a keep-alive ping (20 s): answer and read on
        writer.write(frame(0xA, data))
        opcode, data = await read_frame(reader)
    assert (opcode, data) == (0x2, payload)


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def test_idle_websockets_cost_little_worker_memory(serve: StartServer) -> None:
    raise_nofile(IDLE + 500)
    server = serve(APP, "--workers", "1")
    (worker,) = server.worker_pids()
    port = server.port
    assert port is not None

    async def main() -> tuple[int, int]:
        # Warm-up: first-use allocations (thread-local pools, code paths) belong to the baseline.
        warm = await asyncio.gather(*(open_ws(port, "/echo") for _ in range(200)))
        await asyncio.gather(*(echo_once(c, b"warm") for c in warm))
        for _, writer in warm:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for _, w in warm), return_exceptions=True)
        before = rss(worker)
        gate = asyncio.Semaphore(200)

        async def one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            async with gate:
                conn = await open_ws(port, "/echo")
                await echo_once(conn, b"hello")  # then left idle
                return conn

        conns = await asyncio.gather(*(one() for _ in range(IDLE)))
        after = rss(worker)
        # Still open and served: the last socket echoes again.
        await echo_once(conns[-1], b"still here")
        for _, writer in conns:
            writer.close()
        return before, after

    before, after = asyncio.run(main())
    per_socket = (after - before) / IDLE
    assert per_socket < PER_SOCKET_KIB * 1024, (
        f"{IDLE} idle websockets added {(after - before) / 2**20:.1f} MiB to the worker: "
        f"{per_socket / 1024:.1f} KiB each (bound {PER_SOCKET_KIB} KiB)"
    )


FLOOD_APP = "apps.asgi_ws_flood:app"


def test_a_client_that_does_not_read_makes_send_wait_then_gets_everything_in_order(
    serve: StartServer, tmp_path: Path
) -> None:
    """The app sends until its send() has waited (the outbox is full and the socket's buffers
    too), records that, and sends the rest; the client then reads every message, in order."""
    marker = tmp_path / "marker"
    server = serve(FLOOD_APP, "--workers", "1")
    port = server.port
    assert port is not None

    async def main() -> list[int]:
        reader, writer = await open_ws(port, f"/flood?marker={marker}")
        # Not reading: wait (bounded) until the app saw a send() wait.
        for _ in range(500):
            if "waited" in marker_lines(marker):
                break
            await asyncio.sleep(0.02)  # polling the app's marker file, not a synchronisation delay
        else:
            raise AssertionError(f"send() never waited: {marker_lines(marker)}")
        got = []
        while True:
            opcode, data = await read_frame(reader)
            if opcode == 0x8:
                break
            got.append(int.from_bytes(data[:4], "big"))
        writer.close()
        return got

    got = asyncio.run(main())
    lines = marker_lines(marker)
    sent = int(next(line for line in lines if line.startswith("sent ")).split()[1])
    assert got == list(range(sent))
