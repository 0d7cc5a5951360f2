"""Memory per idle websocket (issue #21): N websockets opened and left idle on one worker, with the Django pages
served beside them.

    bench/.venv/bin/python bench/ws_idle.py                          # rsgi, uvicorn, Granian, Daphne; 10,000 and 19,900
    bench/.venv/bin/python bench/ws_idle.py --sockets 1000 --servers rsgi-dual --no-write   # a quick look

Per server and socket count: the server starts fresh on the example project with `bench/apps/wsecho.py` (Django's
ASGI app plus a websocket echo at /ws/echo; rsgi as `rsgi-dual`, i.e. `wsecho:application --wsgi
mysite.wsgi:application`, the pages through WSGI as `rsgi --django` serves them); `/hello` is loaded with wrk
(warm-up, then the "before" figure); the server's RSS and PSS are read; a client process opens N websockets (raw
sockets on asyncio: the handshake, then it only answers pings) and reports when every handshake is done; the memory
is read again once every socket has seen a ping from the server (servers that ping do so after 20 s; the wait ends
when all have, or after --ping-wait seconds), `/hello` is loaded again ("during"), and the client says how many
sockets are still open. RSS/PSS are of the process that holds the sockets (rsgi's worker; for the others the server
process itself), and of the whole tree. The report goes to bench/results/<stamp>-ws-idle.md (with --no-write, only
to stdout).

The open-files limit is raised for this process, the client and the servers (to --nofile; the hard limit too where
the process may, i.e. with CAP_SYS_RESOURCE). Where the hard limit stays at 20,000 (this machine), 19,900 sockets is
as many as one process can hold beside its own files; that is the second default count.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
APP_DIR = ROOT / "examples" / "django_project"
ECHO_PATH = "/ws/echo"
APP = "wsecho:application"
DEFAULT_SERVERS = "rsgi-dual,uvicorn,granian-asgi,daphne"

# --------------------------------------------------------------------------------------------------- the client


def raise_nofile(want: int) -> tuple[int, int]:
    """Soft (and, as root, hard) RLIMIT_NOFILE up to `want`; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


class IdleSocket(asyncio.Protocol):
    """One websocket that does nothing but answer pings (masked pongs, as a client must)."""

    def __init__(self, request: bytes, opened: asyncio.Future, stats: dict):
        self.request, self.opened, self.stats = request, opened, stats
        self.buf = b""
        self.upgraded = False
        self.pinged = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith((b"HTTP/1.1 101", b"HTTP/1.0 101")):
                self._done(ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace")))
                return
            self.upgraded, self.buf = True, rest
            self._done(None)
        self._frames()

    def _frames(self) -> None:
        while len(self.buf) >= 2:
            opcode, size = self.buf[0] & 0x0F, self.buf[1] & 0x7F
            start = 2
            if size == 126:
                if len(self.buf) < 4:
                    return
                size, start = int.from_bytes(self.buf[2:4], "big"), 4
            elif size == 127:
                if len(self.buf) < 10:
                    return
                size, start = int.from_bytes(self.buf[2:10], "big"), 10
            if len(self.buf) < start + size:
                return
            payload, self.buf = self.buf[start : start + size], self.buf[start + size :]
            if opcode == 0x9:  # ping: answer with a masked pong carrying the same payload
                if not self.pinged:
                    self.pinged = True
                    self.stats["pinged"] += 1
                mask = os.urandom(4)
                masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                assert self.transport is not None
                self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + mask + masked)
            elif opcode == 0x8:
                self.stats["closed_by_server"] += 1
                assert self.transport is not None
                self.transport.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upgraded:
            self.stats["open"] -= 1
        self._done(exc or ConnectionError("closed before the handshake"))

    def _done(self, exc: Exception | None) -> None:
        if self.opened.done():
            return
        if exc is None:
            self.stats["open"] += 1
            self.opened.set_result(None)
        else:
            self.opened.set_exception(exc)


async def client_main(port: int, count: int, path: str, parallel: int) -> None:
    """Opens `count` websockets, prints one JSON line, then answers commands on stdin (`status`, `quit`)."""
    loop = asyncio.get_running_loop()
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n\r\n"
    ).encode()
    stats = {"open": 0, "pinged": 0, "closed_by_server": 0}
    errors: dict[str, int] = {}
    sockets: list[IdleSocket] = []
    gate = asyncio.Semaphore(parallel)

    async def one() -> None:
        async with gate:
            opened = loop.create_future()
            try:
                _, proto = await loop.create_connection(lambda: IdleSocket(request, opened, stats), "127.0.0.1", port)
                await asyncio.wait_for(opened, 60)
                sockets.append(proto)
            except (OSError, asyncio.TimeoutError) as e:
                name = f"{type(e).__name__}: {e}"[:120]
                errors[name] = errors.get(name, 0) + 1

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(count)))
    print(json.dumps({"opened": stats["open"], "errors": errors, "seconds": round(time.monotonic() - started, 2)}))
    sys.stdout.flush()

    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, "quit")

    threading.Thread(target=read_stdin, daemon=True).start()
    while (command := await commands.get()) != "quit":
        if command == "status":
            print(json.dumps(stats), flush=True)
    for s in sockets:
        if s.transport is not None:
            s.transport.abort()


class Client:
    """The client process, driven over its stdin/stdout."""

    def __init__(self, python: str, port: int, count: int, parallel: int):
        argv = [python, __file__, "--client", str(port), str(count), "--parallel", str(parallel)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def line(self) -> dict:
        assert self.proc.stdout is not None
        text = self.proc.stdout.readline()
        if not text:
            raise RuntimeError(f"the websocket client exited ({self.proc.wait()})")
        return json.loads(text)

    def status(self) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write("status\n")
        self.proc.stdin.flush()
        return self.line()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------------------------------------------------- measurement


def memory(pid: int) -> dict:
    """RSS, PSS, anonymous and private memory of one process, from /proc/<pid>/smaps_rollup (KiB -> MiB)."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss", "Anonymous", "Private_Dirty"):
                out[name.lower()] = int(rest.split()[0]) / 1024
    return out


def holder(root, port: int):
    """The process of the tree that holds the accepted connections (rsgi's worker, gunicorn-style workers), else
    the root."""
    from procs import connections_per_worker, tree

    counts = connections_per_worker(root, port)
    if counts:
        pid = max(counts, key=counts.get)
        for p in tree(root):
            if p.pid == pid:
                return p
    return root


def tree_rss(root) -> float:
    from procs import tree

    total = 0
    for p in tree(root):
        with contextlib.suppress(Exception):
            total += p.memory_info().rss
    return total / 2**20


def wait_for(check, timeout: float, interval: float = 0.5):
    """Polls `check()` until it returns something truthy or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)  # polling interval, not a synchronisation delay


def measure(srv, count: int, cfg: argparse.Namespace, env: dict, tmp: Path, static_root: Path) -> dict:
    import psutil
    from loadgen import run_wrk
    from procs import HOST, free_port, stop_server, tail, wait_ready
    from servers import Launch

    port = free_port()
    launch = Launch(cfg.python, port, 1, None, APP_DIR, APP, tmp, static_root, frozenset({"uvloop"}))
    argv = srv.command(launch)
    if srv.name.startswith("rsgi"):
        # An open websocket holds its connection's place under --max-connections (10,000 per
        # worker by default), so one worker holding `count` sockets, and serving /hello beside
        # them, needs the cap raised; like gunicorn's worker_connections, a production setting.
        argv += ["--max-connections", str(count + 1000)]
    log_path = tmp / f"{srv.name}-{count}.log"
    row: dict = {"server": srv.name, "sockets": count, "argv": shlex.join(argv)}
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            argv, cwd=APP_DIR, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    client = None
    try:
        why = wait_ready(proc, port, "/hello", time.monotonic() + 60)
        if why:
            row["failure"] = f"{why}\n{tail(log_path)}"
            return row
        root = psutil.Process(proc.pid)
        url = f"http://{HOST}:{port}/hello"
        run_wrk(url, 64, cfg.warmup, 5, None)
        before = run_wrk(url, 64, cfg.duration, 5, None)
        row["rps_before"] = before.rps
        row["p99_before"] = before.latency_ms.get("p99")
        # The process that will hold the sockets: learnt from one websocket (held while we look).
        probe = Client(cfg.python, port, 1, 1)
        probe_open = probe.line()
        worker = holder(root, port) if probe_open["opened"] else root
        probe.close()
        row["mem_before"], row["tree_rss_before"] = memory(worker.pid), tree_rss(root)

        client = Client(cfg.python, port, count, cfg.parallel)
        opened = client.line()
        row["opened"], row["open_errors"], row["open_seconds"] = opened["opened"], opened["errors"], opened["seconds"]
        row["mem_open"], row["tree_rss_open"] = memory(worker.pid), tree_rss(root)
        if cfg.ping_wait > 0:
            # Idle in the server's sense too: every socket has had its first keep-alive ping (20 s on rsgi,
            # uvicorn and Daphne), so ping/pong buffers are counted. Servers that never ping end the wait late.
            status = wait_for(lambda: (s := client.status())["pinged"] >= s["open"] and s, cfg.ping_wait)
            row["pinged"] = client.status()["pinged"] if not status else status["pinged"]
        row["mem_idle"], row["tree_rss_idle"] = memory(worker.pid), tree_rss(root)
        during = run_wrk(url, 64, cfg.duration, 5, None)
        row["rps_during"] = during.rps
        row["p99_during"] = during.latency_ms.get("p99")
        row["mem_after"], row["tree_rss_after"] = memory(worker.pid), tree_rss(root)
        row["held"] = client.status()["open"]
        return row
    finally:
        if client is not None:
            client.close()
        stop_server(proc)


def fmt(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def render(rows: list[dict], cfg: argparse.Namespace, header: dict) -> str:
    lines = [
        "# Idle websockets: memory and page speed (issue #21)",
        "",
        f"`{header['command']}`",
        "",
        f"commit {header['commit']}, {header['started']}, load average {header['load']}, "
        f"open-files limit {header['nofile']}, `/hello` with `wrk -t1 -c64 -d{cfg.duration:g}s`.",
        "",
        "| server | sockets | held | RSS before → idle, MiB | per socket, KiB | PSS before → idle, MiB "
        "| tree RSS idle, MiB | `/hello` req/s before → during | p99 ms before → during |",
        "|---|---:|---:|---|---:|---|---:|---|---|",
    ]
    for r in rows:
        if "failure" in r:
            lines.append(f"| {r['server']} | {r['sockets']:,} | failed | {r['failure'].splitlines()[0]} | | | | | |")
            continue
        b, idle = r["mem_before"], max((r["mem_idle"], r["mem_after"]), key=lambda m: m.get("rss", 0))
        held = r.get("held", 0)
        per = (idle["rss"] - b["rss"]) * 1024 / held if held else None
        tree_idle = max(r["tree_rss_idle"], r["tree_rss_after"])
        p99 = f"{fmt(r['p99_before'], 1)} → {fmt(r['p99_during'], 1)}"
        lines.append(
            f"| {r['server']} | {r['sockets']:,} | {held:,} | {fmt(b['rss'])} → {fmt(idle['rss'])} | {fmt(per, 1)} "
            f"| {fmt(b.get('pss'))} → {fmt(idle.get('pss'))} | {fmt(tree_idle)} "
            f"| {fmt(r['rps_before'])} → {fmt(r['rps_during'])} | {p99} |"
        )
    lines += [
        "",
        "- RSS/PSS: the process holding the sockets (rsgi's worker, the others' single process), read from "
        "`smaps_rollup` before the sockets, and after every socket has had the server's first ping (or "
        f"{cfg.ping_wait:g} s) and after the `/hello` load, the larger of the two; per socket = growth ÷ held.",
        "- held: sockets still open at the end, as the client counts them (opened minus closed by the server).",
        "",
        "| server | sockets | opened in s | open errors | pinged | argv |",
        "|---|---:|---:|---|---:|---|",
    ]
    for r in rows:
        if "failure" not in r:
            errs = ", ".join(f"{k}: {v}" for k, v in r["open_errors"].items()) or "none"
            lines.append(
                f"| {r['server']} | {r['sockets']:,} | {r['open_seconds']} | {errs} | {r.get('pinged', '-')} "
                f"| `{r['argv']}` |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default=DEFAULT_SERVERS, help="names from bench/servers.py")
    parser.add_argument("--sockets", default="10000,19900", help="comma-separated socket counts")
    parser.add_argument("--duration", type=float, default=5, help="seconds of /hello load, before and during")
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--ping-wait", type=float, default=30, help="at most this long for the first pings (0: skip)")
    parser.add_argument("--parallel", type=int, default=200, help="handshakes in flight while opening")
    parser.add_argument("--nofile", type=int, default=65536)
    parser.add_argument("--python", default=str(BENCH_DIR / ".venv/bin/python"))
    parser.add_argument("--out", default=str(BENCH_DIR / "results"))
    parser.add_argument("--no-write", action="store_true", help="print the table only (development runs)")
    parser.add_argument("--client", nargs=2, type=int, metavar=("PORT", "COUNT"), help=argparse.SUPPRESS)
    cfg = parser.parse_args(argv)
    nofile = raise_nofile(cfg.nofile)
    if cfg.client:
        asyncio.run(client_main(cfg.client[0], cfg.client[1], ECHO_PATH, cfg.parallel))
        return 0

    sys.path.insert(0, str(BENCH_DIR))
    from run import prepare_app
    from servers import SERVERS

    servers = [SERVERS[name] for name in cfg.servers.split(",")]
    counts = [int(c) for c in cfg.sockets.split(",")]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "src"], cwd=ROOT, capture_output=True, text=True
    )
    started = dt.datetime.now(dt.timezone.utc)
    header = {
        "command": shlex.join([Path(sys.executable).name, "bench/ws_idle.py", *(argv or sys.argv[1:])]),
        "commit": (commit.stdout.strip() or "?") + (" + uncommitted changes in src/" if dirty.stdout.strip() else ""),
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "nofile": nofile[0],
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="rsgi-ws-idle-") as tmp_name:
        tmp = Path(tmp_name)
        env, static_root, _ = prepare_app(cfg.python, APP_DIR, tmp)
        for count in counts:
            for srv in servers:
                print(f"{srv.name}: {count:,} idle websockets", file=sys.stderr, flush=True)
                row = measure(srv, count, cfg, env, tmp, static_root)
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "argv"}), file=sys.stderr, flush=True)
    text = render(rows, cfg, header)
    print(text)
    if not cfg.no_write:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = out / f"{started.strftime('%Y%m%dT%H%M%SZ')}-ws-idle"
        stem.with_suffix(".md").write_text(text)
        stem.with_suffix(".json").write_text(json.dumps({"header": header, "rows": rows}, indent=1))
        print(f"wrote {stem}.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
