"""Channels group fan-out: delivery latency and server CPU of one broadcast to many websockets (issue #21 item 3).

    bench/.venv/bin/python bench/fanout.py                  # 1,000 clients, 2 workers, 25 messages, 3 rounds
    bench/.venv/bin/python bench/fanout.py --quick          # smoke: 50 clients, 3 messages, 1 round, report in /tmp

A private redis-server is started on a free loopback port (no persistence). Then, per round, each server in turn
(the order rotates every round) serves the Django example (`mysite.asgi:application`) with REDIS_URL pointing at
that Redis, so Channels uses channels-redis. The example's chat consumer (catalog/consumers.py, `/ws/chat/<room>/`)
adds each socket to the group `chat_<room>` *before* accepting it, so a finished handshake is a confirmed join; the
bench also checks the group's size in Redis before any message is sent.

Three processes take part besides the server:

- the client (`fanout.py client`, one asyncio process, uvloop when importable): opens `--clients` websockets, split
  evenly over the server's ports, and timestamps every frame as it comes off the socket (`data_received`, before
  any parsing is queued behind other sockets' messages);
- the producer (`fanout.py produce`): a bare `RedisChannelLayer` (the servers' configuration) that calls
  `group_send(chat_<room>, {"type": "chat.message", ...})` once per `--interval`, each message carrying its own
  `time.time_ns()`; the consumer relays it to every member as `{"message": "<seq> <send ns>", "from": ...}`;
- this orchestrator: Redis, the servers, the CPU and memory of the server's process tree(s), the report.

Latency = receive time - send time, both `time.time_ns()` on this machine. `--warmup` messages go first and are not
counted; CPU is read just before the first counted message and again once every client has the last one (or
`--grace` seconds after it was sent). Daphne has no --workers: `--workers N` runs N daphne processes on N ports
with the clients split evenly across them (as N daphne processes behind a balancer would be). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis as redis_client
from procs import RssSampler, connections_per_worker, free_port, raise_nofile, stop_server, tail, tree_cpu, wait_ready
from servers import ASGI_APP, SERVERS, Launch

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
APP_DIR = REPO / "examples" / "django_project"
VENV_PYTHON = BENCH_DIR / ".venv" / "bin" / "python"
HOST = "127.0.0.1"
DEFAULT_SERVERS = ["rsgi-asgi", "uvicorn", "daphne"]
# Servers with no --workers of their own: --workers N starts N of them, one port each.
ONE_PROCESS = {"daphne"}
# The example's chat consumer: the room becomes the group "chat_<room>"; the event type calls chat_message().
ROOM_PATH = "/ws/chat/{room}/"
GROUP = "chat_{room}"
EVENT_TYPE = "chat.message"
LAYER_PREFIX = "asgi"  # channels-redis's default prefix, as the example's CHANNEL_LAYERS leave it


# ------------------------------------------------------------------------------------------------ client process


def client_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="fanout.py client")
    p.add_argument("--ports", required=True, help="comma-separated; clients are spread over them round-robin")
    p.add_argument("--path", required=True)
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--total", type=int, required=True, help="messages the producer sends, warm-up included")
    p.add_argument("--connect-concurrency", type=int, default=50)
    args = p.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_client(args))
    return uvloop.run(_client(args))


async def _client(args: argparse.Namespace) -> int:
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import ConnectionClosed

    class Stamped(ClientConnection):
        """Notes when bytes last came off the socket: at one message per second that is the message's arrival,
        before this process has worked through the other sockets' frames of the same broadcast."""

        rx_ns = 0

        def data_received(self, data: bytes) -> None:
            self.rx_ns = time.time_ns()
            super().data_received(data)

    ports = [int(x) for x in args.ports.split(",")]
    latencies: list[list[int]] = [[] for _ in range(args.total)]  # µs per seq
    stats = {"connected": 0, "connect_failed": 0, "closed_early": 0, "bad_messages": 0}
    errors: dict[str, int] = {}
    sockets = []
    have_last = 0
    all_done = asyncio.Event()
    sem = asyncio.Semaphore(args.connect_concurrency)

    async def member(i: int) -> None:
        nonlocal have_last
        port = ports[i % len(ports)]
        async with sem:
            try:
                ws = await connect(
                    f"ws://{HOST}:{port}{args.path}",
                    origin=f"http://{HOST}:{port}",
                    compression=None,  # no permessage-deflate: the servers' send path, not zlib, is measured
                    ping_interval=None,  # the servers' own keepalive pings are answered, none are sent
                    open_timeout=60,
                    close_timeout=1,
                    proxy=None,
                    create_connection=Stamped,
                )
            except Exception as e:  # counted and reported; the bench goes on with the others
                stats["connect_failed"] += 1
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                return
        stats["connected"] += 1
        sockets.append(ws)
        try:
            async for raw in ws:
                rx = ws.rx_ns
                try:
                    seq_text, sent_text = json.loads(raw)["message"].split()
                    seq, sent = int(seq_text), int(sent_text)
                    latencies[seq].append((rx - sent) // 1000)
                except (ValueError, KeyError, IndexError, TypeError):
                    stats["bad_messages"] += 1
                    continue
                if seq == args.total - 1:
                    have_last += 1
                    if have_last >= stats["connected"] - stats["closed_early"]:
                        all_done.set()
        except ConnectionClosed:
            pass
        stats["closed_early"] += 1

    started = time.monotonic()
    tasks = [asyncio.ensure_future(member(i)) for i in range(args.clients)]
    while stats["connected"] + stats["connect_failed"] < args.clients:
        await asyncio.sleep(0.05)
    connect_s = time.monotonic() - started
    _say({"event": "connected", "seconds": round(connect_s, 2), **stats, "errors": errors})

    loop = asyncio.get_running_loop()
    while True:  # the orchestrator writes "stop <grace seconds>" once the producer is done
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.startswith("stop"):
            break
    grace = float(line.split()[1]) if line and len(line.split()) > 1 else 0.0
    if stats["connected"]:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(all_done.wait(), grace)
    _say({"event": "result", **stats, "latencies_us": latencies})
    for t in tasks:
        t.cancel()
    os._exit(0)  # the kernel closes the sockets; 1,000 closing handshakes would only slow the next run's start


def _say(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------- producer process


def produce_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="fanout.py produce")
    p.add_argument("--redis", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--messages", type=int, required=True)
    p.add_argument("--interval", type=float, required=True)
    args = p.parse_args(argv)
    return asyncio.run(_produce(args))


async def _produce(args: argparse.Namespace) -> int:
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[args.redis], prefix=LAYER_PREFIX)
    total = args.warmup + args.messages
    t0 = time.monotonic() + args.interval / 2
    send_ms = []
    measuring = False
    for seq in range(total):
        if seq == args.warmup and not measuring:  # half an interval before the first counted message
            await asyncio.sleep(max(0.0, t0 + (seq - 0.5) * args.interval - time.monotonic()))
            _say({"event": "measure"})
            measuring = True
        await asyncio.sleep(max(0.0, t0 + seq * args.interval - time.monotonic()))
        began = time.perf_counter()
        event = {"type": EVENT_TYPE, "message": f"{seq} {time.time_ns()}", "from": "producer"}
        await layer.group_send(args.group, event)
        send_ms.append((time.perf_counter() - began) * 1000)
    _say({"event": "sent", "total": total, "group_send_ms": [round(x, 3) for x in send_ms]})
    await layer.close_pools()
    return 0


# ---------------------------------------------------------------------------------------------------- orchestrator


@dataclass
class Result:
    server: str
    round: int
    ok: bool = True
    error: str = ""
    clients: int = 0
    connected: int = 0
    connect_failed: int = 0
    connect_s: float = 0.0
    group_size: int = 0
    expected: int = 0
    received: int = 0
    closed_early: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    first_ms: float | None = None  # median over messages of the time until the first client had it
    all_ms: float | None = None  # median over messages of the time until the last client had it
    server_cpu_s: float = 0.0
    window_s: float = 0.0
    rss_idle_mb: float = 0.0  # with every client connected, before the first message
    rss_peak_mb: float = 0.0
    client_cpu_s: float = 0.0
    per_worker: list[int] = field(default_factory=list)
    group_send_ms: float | None = None
    argv: list[list[str]] = field(default_factory=list)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.5) - 1))]  # nearest rank


def median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


class RedisServer:
    def __init__(self, tmp: Path):
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found (apt-get install redis-server)")
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.log = tmp / "redis.log"
        args = [binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no"]
        args += ["--dir", str(tmp), "--daemonize", "no"]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(args, cwd=tmp, stdout=out, stderr=subprocess.STDOUT)
        self.client = redis_client.Redis(host=HOST, port=self.port, socket_connect_timeout=2)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"redis-server exited with {self.proc.returncode}:\n{self.log.read_text()[-2000:]}")
            with contextlib.suppress(redis_client.exceptions.ConnectionError):
                if self.client.ping():
                    break
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not answer PING within 30 s")
            time.sleep(0.05)  # polling interval
        self.version = self.client.info("server").get("redis_version", "?")

    def group_size(self, group: str) -> int:
        return int(self.client.zcard(f"{LAYER_PREFIX}:group:{group}"))

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def server_commands(name: str, cfg: argparse.Namespace, tmp: Path) -> tuple[list[list[str]], list[int]]:
    """The command line(s) and port(s) of one server, from servers.py's table (as run.py starts it)."""
    srv = SERVERS[name]
    count, workers = (cfg.workers, 1) if name in ONE_PROCESS else (1, cfg.workers)
    argvs, ports = [], []
    for _ in range(count):
        port = free_port()
        launch = Launch(
            python=cfg.python,
            port=port,
            workers=workers,
            threads=None,
            app_dir=APP_DIR,
            app=ASGI_APP,
            tmp=tmp,
            static_root=APP_DIR / "staticfiles",
            modules=frozenset({"uvloop"}),
        )
        argvs.append(srv.command(launch))
        ports.append(port)
    return argvs, ports


def server_env(redis_url: str, db: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DJANGO_DEBUG", None)  # production code path
    env.pop("WEB_CONCURRENCY", None)  # --workers decides
    env.update(REDIS_URL=redis_url, RSGI_EXAMPLE_DB=str(db), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APP_DIR), env.get("PYTHONPATH")]))
    return env


def measure(name: str, rnd: int, cfg: argparse.Namespace, redis: RedisServer, env: dict, tmp: Path) -> Result:
    res = Result(server=name, round=rnd, clients=cfg.clients)
    redis.client.flushall()  # no group, channel or message left from the previous run
    room = f"fanout-{uuid.uuid4().hex[:10]}"
    argvs, ports = server_commands(name, cfg, tmp)
    res.argv = argvs
    procs: list[subprocess.Popen] = []
    logs: list[Path] = []
    client = producer = None
    try:
        for i, argv in enumerate(argvs):
            logs.append(tmp / f"{name}-r{rnd}-{i}.log")
            with open(logs[-1], "wb") as out:
                procs.append(
                    subprocess.Popen(
                        argv, cwd=APP_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        for proc, port, path in zip(procs, ports, logs, strict=True):
            why = wait_ready(proc, port, "/hello", time.monotonic() + cfg.start_timeout)
            if why:
                raise RuntimeError(f"{name} {why}:\n{tail(path)}")
        roots = [psutil.Process(p.pid) for p in procs]

        total = cfg.warmup + cfg.messages
        client_argv = [cfg.python, str(Path(__file__).resolve()), "client", "--ports", ",".join(map(str, ports))]
        client_argv += ["--path", ROOM_PATH.format(room=room), "--clients", str(cfg.clients), "--total", str(total)]
        client_argv += ["--connect-concurrency", str(cfg.connect_concurrency)]
        client = subprocess.Popen(client_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = client.stdout.readline()
        if not line:
            raise RuntimeError(f"the client exited ({client.wait()}) before connecting")
        conn = json.loads(line)
        res.connected, res.connect_failed, res.connect_s = conn["connected"], conn["connect_failed"], conn["seconds"]
        if res.connect_failed:
            log(f"  {name}: {res.connect_failed} connections failed: {conn['errors']}")
        group = GROUP.format(room=room)
        res.group_size = redis.group_size(group)  # every accepted socket joined before its handshake finished
        if res.group_size != res.connected:
            log(f"  {name}: {res.connected} sockets connected but the group has {res.group_size} members")
        res.per_worker = sorted(
            (n for root, port in zip(roots, ports, strict=True) for n in connections_per_worker(root, port).values()),
            reverse=True,
        )
        samplers = [RssSampler(root, interval=0.5) for root in roots]
        for s in samplers:
            s.start()

        producer_argv = [cfg.python, str(Path(__file__).resolve()), "produce", "--redis", redis.url, "--group", group]
        producer_argv += ["--warmup", str(cfg.warmup), "--messages", str(cfg.messages)]
        producer_argv += ["--interval", str(cfg.interval)]
        producer = subprocess.Popen(producer_argv, stdout=subprocess.PIPE, text=True)
        client_ps = psutil.Process(client.pid)
        cpu0 = ccpu0 = t0 = None
        sent: dict = {}
        for line in producer.stdout:
            msg = json.loads(line)
            if msg["event"] == "measure":
                t0 = time.monotonic()
                cpu0 = sum(sum(tree_cpu(root).values()) for root in roots)
                c = client_ps.cpu_times()
                ccpu0 = c.user + c.system
                res.rss_idle_mb = round(sum(s.peak_total for s in samplers) / 2**20, 1)
            elif msg["event"] == "sent":
                sent = msg
        if producer.wait() != 0 or not sent:
            raise RuntimeError(f"the producer failed (exit {producer.returncode})")
        client.stdin.write(f"stop {cfg.grace}\n")
        client.stdin.flush()
        line = client.stdout.readline()
        cpu1 = sum(sum(tree_cpu(root).values()) for root in roots)
        c = client_ps.cpu_times()
        ccpu1 = c.user + c.system
        res.window_s = round(time.monotonic() - t0, 2)
        for s in samplers:
            s.finish()
        res.rss_peak_mb = round(sum(s.peak_total for s in samplers) / 2**20, 1)
        res.server_cpu_s = round(cpu1 - cpu0, 3)
        res.client_cpu_s = round(ccpu1 - ccpu0, 3)
        if not line:
            raise RuntimeError(f"the client exited ({client.wait()}) without a result")
        out = json.loads(line)
        counted = out["latencies_us"][cfg.warmup :]
        res.closed_early = out["closed_early"]
        res.expected = res.connected * cfg.messages
        res.received = sum(len(x) for x in counted)
        flat = [us / 1000 for per in counted for us in per]
        res.p50_ms, res.p99_ms = percentile(flat, 50), percentile(flat, 99)
        res.max_ms = max(flat) if flat else None
        res.first_ms = median([min(per) / 1000 for per in counted if per])
        res.all_ms = median([max(per) / 1000 for per in counted if per])
        res.group_send_ms = median(sent["group_send_ms"][cfg.warmup :])
    except Exception as e:  # a failed run is reported, the others go on
        res.ok, res.error = False, str(e)
        log(f"  {name} round {rnd}: FAILED: {e}")
    finally:
        for p in (producer, client):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        for proc in procs:
            stop_server(proc)
    return res


def versions(python: str) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json\n"
        "out = {}\n"
        "for d in ('rsgi', 'uvicorn', 'daphne', 'twisted', 'django', 'channels', 'channels-redis', 'redis',"
        " 'websockets', 'uvloop'):\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: out[d] = 'not installed'\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def fmt(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


SUMMARY_KEYS = ("p50_ms", "p99_ms", "first_ms", "all_ms", "server_cpu_s", "window_s", "rss_idle_mb", "rss_peak_mb")
SUMMARY_KEYS += ("client_cpu_s", "group_send_ms", "connect_s")


def summarise(results: list[Result], servers: list[str]) -> list[dict]:
    rows = []
    for name in servers:
        runs = [r for r in results if r.server == name and r.ok]
        failed = [r for r in results if r.server == name and not r.ok]
        if not runs:
            rows.append({"server": name, "failed": len(failed), "runs": 0})
            continue
        rows.append(
            {
                "server": name,
                "runs": len(runs),
                "failed": len(failed),
                **{k: median([getattr(r, k) for r in runs]) for k in SUMMARY_KEYS},
                "max_ms": max((r.max_ms for r in runs if r.max_ms is not None), default=None),
                "p99_range": (min(r.p99_ms or 0 for r in runs), max(r.p99_ms or 0 for r in runs)),
                "lost": sum(r.expected - r.received for r in runs),
                "expected": sum(r.expected for r in runs),
                "connect_failed": sum(r.connect_failed for r in runs),
                "closed_early": sum(r.closed_early for r in runs),
                "per_worker": ["/".join(map(str, r.per_worker)) for r in runs],
            }
        )
    return rows


def render(cfg: argparse.Namespace, meta: dict, results: list[Result], servers: list[str]) -> str:
    rows = summarise(results, servers)
    per_msg = cfg.messages
    lines = [
        f"# Channels group fan-out: {cfg.clients:,} websockets in one group, {cfg.workers} workers",
        "",
        f"`{meta['command']}`",
        "",
        f"- started {meta['started']}, commit `{meta['commit']}`; {meta['cpus']} CPUs, {meta['kernel']}; "
        f"load average {meta['load_start']} at start, {meta['load_end']} at end",
        f"- Python {meta['python']} (`{cfg.python}`); redis-server {meta['redis']}; "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"- {cfg.rounds} round(s), server order rotated each round; per run: {cfg.clients:,} clients connect "
        f"({cfg.connect_concurrency} handshakes at a time), {cfg.warmup} warm-up message(s), then {cfg.messages} "
        f"counted, one per {cfg.interval:g} s, from a separate producer process (`group_send` through channels-redis)",
        "",
        "| server | p50 ms | p99 ms (range) | max ms | first / all reached ms | lost | server CPU s "
        "| CPU ms / broadcast | RSS MB idle → peak | client CPU s | group_send ms | connections per worker |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if not r["runs"]:
            lines.append(f"| {r['server']} | FAILED ({r['failed']} runs) |" + " |" * 11)
            continue
        lost = f"{r['lost']:,} of {r['expected']:,}"
        if r["connect_failed"] or r["closed_early"]:
            lost += f" ({r['connect_failed']} connects failed, {r['closed_early']} closed)"
        cpu_per = r["server_cpu_s"] / per_msg * 1000 if r["server_cpu_s"] is not None else None
        lines.append(
            f"| {r['server']} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} ({fmt(r['p99_range'][0])}-"
            f"{fmt(r['p99_range'][1])}) | {fmt(r['max_ms'])} | {fmt(r['first_ms'])} / {fmt(r['all_ms'])} | {lost} | "
            f"{fmt(r['server_cpu_s'], 2)} | {fmt(cpu_per)} | {fmt(r['rss_idle_mb'])} → {fmt(r['rss_peak_mb'])} | "
            f"{fmt(r['client_cpu_s'], 2)} | {fmt(r['group_send_ms'], 2)} | {', '.join(r['per_worker'])} |"
        )
    lines += [
        "",
        "- **p50 / p99 / max ms**: delivery latency over every (client, counted message) pair of all rounds' runs "
        "(p50/p99: median over rounds; max: the worst of all), receive time (the frame coming off the client's "
        "socket) minus the producer's time just before `group_send`, so Redis, the server worker's channel-layer "
        "receive loop, the consumers and the websocket send are all inside it.",
        "- **first / all reached ms**: per message, the latency of the first and of the last client to get it; "
        "median over messages and rounds. First is mostly Redis and the channel layer's wake-up in the worker; "
        "the gap to all is the worker passing the message to each of its consumers and sockets (with one client "
        "process, its own pass over the sockets is in it too: see client CPU s).",
        "- **lost**: counted messages a connected client never got within "
        f"{cfg.grace:g} s after the last send, summed over rounds.",
        f"- **server CPU s**: CPU of the server's whole process tree(s) from just before the first counted message "
        f"until every client had the last one (about {per_msg} x {cfg.interval:g} s, median window "
        f"{fmt(median([r['window_s'] for r in rows if r['runs']]), 1)} s), keepalive pings and idle sockets "
        f"included; **CPU ms / broadcast** divides it by the {per_msg} counted messages.",
        "- **RSS MB**: summed over the tree(s): idle = with every client connected, before the first counted "
        "message; peak = the highest 0.5 s sample during the window.",
        "- **client CPU s**: the client process over the same window; near the window length means the client, "
        "not the server, set the latency.",
        "- **group_send ms**: the producer's `group_send` call (Redis round trips and the Lua script), median.",
        "- **connections per worker**: the clients each worker process held, per round, busiest first "
        "(daphne: one process per port, the clients split evenly by the client).",
        "",
        "## Command lines",
        "",
    ]
    seen = set()
    for r in results:
        if r.server not in seen and r.argv:
            seen.add(r.server)
            lines += [f"- {r.server}: " + "; ".join(f"`{shlex.join(a)}`" for a in r.argv)]
    failed = [r for r in results if not r.ok]
    if failed:
        lines += ["", "## Failures", ""]
        for r in failed:
            lines += [f"- {r.server} round {r.round}:", "", "```", r.error[-3000:], "```"]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default=",".join(DEFAULT_SERVERS), help="names from bench/servers.py with websockets")
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--messages", type=int, default=25, help="counted messages per run")
    p.add_argument("--warmup", type=int, default=2, help="messages sent first and not counted")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between messages")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--grace", type=float, default=5.0, help="seconds after the last send before a message is lost")
    p.add_argument("--connect-concurrency", type=int, default=50, help="handshakes in flight while connecting")
    p.add_argument("--start-timeout", type=float, default=60.0)
    p.add_argument("--quick", action="store_true", help="smoke run: 50 clients, 3 messages, 1 warm-up, 1 round")
    p.add_argument("--python", default=str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable)
    p.add_argument("--out", default=None, help="report directory (default bench/results; with --quick a temp dir)")
    cfg = p.parse_args(argv)
    explicit = set(argv if argv is not None else sys.argv[1:])
    if cfg.quick:
        for flag, value in (("--clients", 50), ("--messages", 3), ("--warmup", 1), ("--rounds", 1)):
            if flag not in explicit:
                setattr(cfg, flag[2:], value)
    if cfg.out is None:
        cfg.out = str(Path(tempfile.gettempdir()) / "rsgi-fanout") if cfg.quick else str(BENCH_DIR / "results")
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    servers = [s.strip() for s in cfg.servers.split(",") if s.strip()]
    unknown = [s for s in servers if s not in SERVERS or not SERVERS[s].websocket]
    if unknown:
        raise SystemExit(f"not a websocket server of bench/servers.py: {', '.join(unknown)}")
    soft, _ = raise_nofile()  # inherited by the client: one fd per socket
    if soft < cfg.clients + 200:
        raise SystemExit(f"open-files limit {soft} is too low for {cfg.clients} clients (ulimit -n)")
    started = dt.datetime.now(dt.timezone.utc)
    meta = {
        "command": shlex.join([Path(sys.executable).name, "bench/fanout.py", *(argv or sys.argv[1:])]),
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "commit": subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
        ).stdout.strip(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": subprocess.run(
            [cfg.python, "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True
        ).stdout.strip(),
        "load_start": f"{os.getloadavg()[0]:.2f}",
        "versions": versions(cfg.python),
    }
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="rsgi-fanout-") as tmp_name:
        tmp = Path(tmp_name)
        db = tmp / "bench.sqlite3"
        env = server_env("", db)
        done = subprocess.run(
            [cfg.python, "manage.py", "migrate", "--noinput"], cwd=APP_DIR, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"manage.py migrate failed:\n{done.stdout}\n{done.stderr}")
        redis = RedisServer(tmp)
        meta["redis"] = redis.version
        env = server_env(redis.url, db)
        try:
            for rnd in range(cfg.rounds):
                order = servers[rnd % len(servers) :] + servers[: rnd % len(servers)]
                for name in order:
                    log(f"round {rnd + 1}/{cfg.rounds}: {name} ({cfg.clients} clients, {cfg.workers} workers)")
                    r = measure(name, rnd, cfg, redis, env, tmp)
                    if r.ok:
                        log(
                            f"  first {fmt(r.first_ms)} ms, p50 {fmt(r.p50_ms)} ms, p99 {fmt(r.p99_ms)} ms, "
                            f"max {fmt(r.max_ms)} ms, "
                            f"lost {r.expected - r.received}/{r.expected}, server CPU {r.server_cpu_s:.2f} s, "
                            f"client CPU {r.client_cpu_s:.2f} s, RSS {r.rss_idle_mb} → {r.rss_peak_mb} MB, "
                            f"per worker {r.per_worker}"
                        )
                    results.append(r)
        finally:
            redis.stop()
    meta["load_end"] = f"{os.getloadavg()[0]:.2f}"
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = started.strftime("%Y%m%dT%H%M%SZ") + "-fanout" + ("-quick" if cfg.quick else "")
    (out / f"{stem}.md").write_text(render(cfg, meta, results, servers))
    payload = {"meta": meta, "config": vars(cfg), "results": [r.__dict__ for r in results]}
    (out / f"{stem}.json").write_text(json.dumps(payload, indent=1))
    log(f"report: {out / stem}.md")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        sys.exit(client_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "produce":
        sys.exit(produce_main(sys.argv[2:]))
    sys.exit(main())
