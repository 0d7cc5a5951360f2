"""Idle keep-alive clients for bench/run.py's slow-clients mix (scenarios `slow` and `aslow`).

    python bench/idle_clients.py --port 8000 --path /hello --count 500

Each of `--count` connections makes one keep-alive GET request, reads the answer, then sits idle, the way browsers
and mobile clients leave connections open between requests. When the server closes one (keep-alive timeout,
`Connection: close`), it is opened again after `--reopen-delay` seconds and makes another request, so the server
keeps facing about `--count` idle connections for the whole load.

Driven over stdin/stdout by bench/run.py, one JSON line answered per command line:
`open` (answers once every connection has made its first request or failed), `measure` (starts the measured
window), `stop` (answers with the window's statistics and exits).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import threading


class Pool:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.open = 0
        self.window = False
        self.samples: list[int] = []
        self.counters = {"server_closes": 0, "reopened": 0, "connect_failures": 0, "bad_responses": 0}
        self.first_round = 0
        self.first_done = asyncio.Event()
        self.stopping = False
        self.request = (
            f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\nUser-Agent: bench-idle/1\r\n"
            "Accept: */*\r\nConnection: keep-alive\r\n\r\n"
        ).encode()

    def count(self, key: str) -> None:
        if self.window:
            self.counters[key] += 1

    def first_finished(self) -> None:
        self.first_round += 1
        if self.first_round == self.args.count:
            self.first_done.set()

    async def request_once(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(self.request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        headers = head.lower()
        if b"transfer-encoding: chunked" in headers:
            while True:  # chunked: size line, data, CRLF; until the zero-size chunk
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            length = 0
            for line in headers.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
        return 200 <= status < 400

    async def client(self, gate: asyncio.Semaphore) -> None:
        first = True
        while not self.stopping:
            writer = None
            try:
                async with gate:  # limit concurrent handshakes so the listen backlog is not flooded at once
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(self.args.host, self.args.port), self.args.timeout
                    )
                    ok = await asyncio.wait_for(self.request_once(reader, writer), self.args.timeout)
                if not ok:
                    self.count("bad_responses")
                self.open += 1
                if first:
                    self.first_finished()
                    first = False
                else:
                    self.count("reopened")
                try:
                    await reader.read(1)  # idle until the server closes the connection (or sends junk)
                finally:
                    self.open -= 1
                self.count("server_closes")
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
                self.count("connect_failures")
                if first:
                    self.first_finished()
                    first = False
            finally:
                if writer is not None:
                    writer.close()
            await asyncio.sleep(self.args.reopen_delay)

    async def sampler(self) -> None:
        while True:
            if self.window:
                self.samples.append(self.open)
            await asyncio.sleep(0.1)

    def report(self) -> dict:
        samples = self.samples or [self.open]
        return {
            "target": self.args.count,
            "open_now": self.open,
            "open_min": min(samples),
            "open_median": statistics.median(samples),
            **self.counters,
        }


async def main_async(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:  # a thread: stdin as a queue of commands (EOF means stop)
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, "stop")

    threading.Thread(target=read_stdin, daemon=True).start()
    pool = Pool(args)
    gate = asyncio.Semaphore(64)
    tasks = [asyncio.create_task(pool.client(gate)) for _ in range(args.count)]
    tasks.append(asyncio.create_task(pool.sampler()))

    def answer(data: dict) -> None:
        print(json.dumps(data), flush=True)

    while True:
        command = await commands.get()
        if command == "open":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pool.first_done.wait(), args.timeout * 3)
            answer({"open": pool.open, "target": args.count})
        elif command == "measure":
            pool.window = True
            answer({"open": pool.open})
        elif command == "stop":
            pool.stopping = True
            answer(pool.report())
            break
    for task in tasks:
        task.cancel()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/hello")
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--reopen-delay", type=float, default=1.0, help="seconds before reopening a closed connection")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds for a connect plus its request")
    asyncio.run(main_async(ap.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
