"""Websocket echo load for bench/run.py's `ws` scenario: N connections, one message in flight on each.

    python bench/wsload.py ws://127.0.0.1:8000/ws/echo --connections 64 --duration 10 --warmup 1

Opens every connection first, then each one sends a `--size`-byte binary message and waits for its echo, again
and again; after `--warmup` seconds the counters start, after `--duration` more they stop. Prints one JSON line:
messages, messages/s, latency percentiles (ms) and errors. Uses the `websockets` package (from uvicorn[standard])
and uvloop when importable. It is Python: at high rates it is the bottleneck (~13k msg/s on one core), so
bench/run.py uses it only when bench/wsload-rs (the same load and output, in Rust) is not built.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException


class Stats:
    def __init__(self) -> None:
        self.measuring = False
        self.latencies: list[float] = []
        self.errors = {"connect": 0, "closed": 0, "timeout": 0, "mismatch": 0}


async def one_connection(url: str, payload: bytes, stats: Stats, stop: asyncio.Event, opened, timeout: float):
    try:
        ws = await connect(url, open_timeout=timeout, max_size=None, compression=None, ping_interval=None)
    except (OSError, WebSocketException, TimeoutError):
        stats.errors["connect"] += 1
        opened()
        return
    opened()
    perf = time.perf_counter
    try:
        async with ws:
            while not stop.is_set():
                t0 = perf()
                await ws.send(payload)
                reply = await asyncio.wait_for(ws.recv(), timeout)
                if stats.measuring:
                    stats.latencies.append(perf() - t0)
                    if reply != payload:
                        stats.errors["mismatch"] += 1
    except TimeoutError:
        stats.errors["timeout"] += 1
    except (OSError, WebSocketException):
        if not stop.is_set():
            stats.errors["closed"] += 1


async def main_async(args: argparse.Namespace) -> dict:
    stats = Stats()
    stop = asyncio.Event()
    payload = os.urandom(args.size)
    all_open = asyncio.Event()
    pending = [args.connections]

    def opened() -> None:
        pending[0] -= 1
        if pending[0] == 0:
            all_open.set()

    tasks = [
        asyncio.create_task(one_connection(args.url, payload, stats, stop, opened, args.timeout))
        for _ in range(args.connections)
    ]
    await asyncio.wait_for(all_open.wait(), args.timeout + 30)
    await asyncio.sleep(args.warmup)
    stats.measuring = True
    start = time.perf_counter()
    await asyncio.sleep(args.duration)
    stats.measuring = False
    elapsed = time.perf_counter() - start
    stop.set()
    await asyncio.wait(tasks, timeout=args.timeout + 5)
    lat = sorted(x * 1000 for x in stats.latencies)
    pct = {}
    if len(lat) >= 2:
        cuts = statistics.quantiles(lat, n=100, method="inclusive")
        pct = {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98]}
    return {
        "connections": args.connections,
        "messages": len(lat),
        "seconds": elapsed,
        "messages_per_s": len(lat) / elapsed,
        "latency_ms": pct,
        "errors": stats.errors,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--size", type=int, default=64, help="message size in bytes")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds for a handshake or an echo")
    args = ap.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(main_async(args))
    else:
        result = uvloop.run(main_async(args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
