"""Soak test by hand: the Django example under rsgi (2 workers) with mixed load for a long time,
watching each worker's memory.

    python tests/reliability/soak.py --minutes 30

Every --interval seconds (10) it prints one row: elapsed time, requests sent and failed so far, and
each worker's RSS. At the end it prints each worker's growth from the first sample after the warm-up
to the last one, and exits 1 if any worker grew by more than --max-growth percent (5), if any
request failed, or if a worker was replaced during the run. It stops by itself: the load is bounded
by the duration (and a request budget), and the server is stopped at the end whatever happens.

tests/reliability/test_soak.py runs the same soak for ~20 seconds in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
DJANGO_DIR = ROOT / "examples" / "django_project"
if str(ROOT / "tests") not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT / "tests"))

from reliability.loadgen import LoadGen, Req, Summary, live_children, rss, wait_until, wait_workers  # noqa: E402

MIB = 1024 * 1024

# -- the load ---------------------------------------------------------------------------------------

ECHO_BODY = os.urandom(8 * 1024)
ECHO_DIGEST = hashlib.sha256(ECHO_BODY).hexdigest()
# /download is 8192 SHA-256 digests of b"rsgi-sample-<n>" (catalog/sample.py).
DOWNLOAD = b"".join(hashlib.sha256(b"rsgi-sample-%d" % n).digest() for n in range(8192))


def _items_ok(r: httpx.Response) -> bool:
    items = r.json()
    return isinstance(items, list) and len(items) > 0 and "id" in items[0]


def _echo_ok(r: httpx.Response) -> bool:
    data = r.json()
    return data["length"] == len(ECHO_BODY) and data["sha256"] == ECHO_DIGEST


def django_mix() -> list[Req]:
    """Small and larger responses, the database, a request body, a file response."""
    return [
        Req("GET", "/hello", check=lambda r: r.text == "Hello, world!"),
        Req("GET", "/items", check=_items_ok),
        Req("POST", "/echo", content=ECHO_BODY, headers={"Content-Type": "application/octet-stream"}, check=_echo_ok),
        Req("GET", "/download", check=lambda r: r.content == DOWNLOAD),
    ]


# -- the soak ---------------------------------------------------------------------------------------


@dataclass
class Sample:
    elapsed: float
    sent: int
    failed: int
    rss: dict[int, int]  # worker pid -> bytes


@dataclass
class SoakResult:
    samples: list[Sample]
    summary: Summary
    workers_before: set[int]
    workers_after: set[int]
    failures: list[str] = field(default_factory=list)

    def growth(self) -> dict[int, float]:
        """Each worker's RSS growth in percent, first sample (after the warm-up) to last."""
        first, last = self.samples[0].rss, self.samples[-1].rss
        return {pid: 100.0 * (last[pid] - first[pid]) / first[pid] for pid in first if pid in last}


def table_row(s: Sample, workers: list[int]) -> str:
    cells = "".join(f"{s.rss[p] / MIB:>16.1f}" if p in s.rss else f"{'-':>16}" for p in workers)
    return f"{s.elapsed:>8.0f}s {s.sent:>10} {s.failed:>8}{cells}"


def table_head(workers: list[int]) -> str:
    return f"{'elapsed':>9} {'sent':>10} {'failed':>8}" + "".join(f"{f'rss {p} MiB':>16}" for p in workers)


def run_soak(
    url: str,
    supervisor: int,
    *,
    workers: int,
    duration: float,
    warmup: float,
    interval: float,
    clients: int = 4,
    show: Callable[[str], None] = lambda _line: None,
) -> SoakResult:
    """Load `url` for `duration` seconds; sample the workers' RSS after `warmup` s, then every `interval` s.

    The sampling schedule is load shaping (a fixed timetable), not synchronisation."""
    assert warmup < duration
    before = wait_workers(supervisor, workers)
    order = sorted(before)
    samples: list[Sample] = []
    load = LoadGen(url, django_mix(), clients=clients, duration=duration, max_requests=10**8, keep_results=False)
    with load:
        due = load.started + warmup
        while True:
            time.sleep(max(0.0, due - time.monotonic()))
            summary = load.summary()
            sizes = {}
            for pid in order:
                with contextlib.suppress(Exception):
                    sizes[pid] = rss(pid)
            sample = Sample(time.monotonic() - load.started, summary.sent, summary.failed, sizes)
            if not samples:
                show(table_head(order))
            samples.append(sample)
            show(table_row(sample, order))
            due += interval
            if due > load.started + duration:
                break
    after = live_children(supervisor)
    failures = [f"{r.req.method} {r.req.path}: {r.error}" for r in load.failures]
    return SoakResult(samples, load.summary(), before, after, failures)


def verdict(result: SoakResult, max_growth: float) -> list[str]:
    """What is wrong with a soak run (empty if nothing)."""
    problems = []
    if result.summary.failed:
        problems.append(f"{result.summary.failed} requests failed, e.g. {result.failures[:3]}")
    if result.workers_after != result.workers_before:
        problems.append(
            f"workers changed during the run: {sorted(result.workers_before)} -> {sorted(result.workers_after)}"
        )
    for pid, pct in result.growth().items():
        if pct > max_growth:
            problems.append(f"worker {pid} RSS grew {pct:.1f}% (limit {max_growth}%)")
    if len(result.samples) < 2:
        problems.append("fewer than two samples: run longer than the warm-up")
    return problems


# -- the script -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="how long to load the server (default 30)")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds before the first sample (default 30)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default 10)")
    p.add_argument("--clients", type=int, default=4, help="client threads (default 4)")
    p.add_argument("--workers", type=int, default=2, help="rsgi workers (default 2)")
    p.add_argument("--max-growth", type=float, default=5.0, help="allowed RSS growth in percent (default 5)")
    args = p.parse_args(argv)
    duration = args.minutes * 60
    if not args.warmup < duration:
        p.error("--minutes must be longer than the warm-up")

    with tempfile.TemporaryDirectory(prefix="rsgi-soak-") as tmp:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("RSGI_") and k not in ("PORT", "WEB_CONCURRENCY")
        }
        env.update(RSGI_EXAMPLE_DB=str(Path(tmp) / "db.sqlite3"), PYTHONUNBUFFERED="1")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=DJANGO_DIR,
            env=env,
            check=True,
            capture_output=True,
        )
        port = free_port()
        log_path = Path(tmp) / "rsgi.log"
        cmd = [sys.executable, "-m", "rsgi", "mysite.wsgi:application", "--chdir", str(DJANGO_DIR)]
        cmd += ["--workers", str(args.workers), "--bind", f"127.0.0.1:{port}"]
        url = f"http://127.0.0.1:{port}"
        with open(log_path, "wb") as log:
            server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_until(lambda: _answers(url + "/hello") or server.poll() is not None, 60, "the server to start")
                if server.poll() is not None:
                    print(log_path.read_text(errors="replace"), file=sys.stderr)
                    return 2
                print(f"soak: {args.minutes:g} min, {args.clients} clients, {args.workers} workers on {url}")
                result = run_soak(
                    url,
                    server.pid,
                    workers=args.workers,
                    duration=duration,
                    warmup=args.warmup,
                    interval=args.interval,
                    clients=args.clients,
                    show=print,
                )
            finally:
                if server.poll() is None:
                    server.send_signal(signal.SIGTERM)
                    try:
                        server.wait(30)
                    except subprocess.TimeoutExpired:
                        server.kill()
                        server.wait(5)

    print(f"requests: {result.summary}")
    for pid, pct in sorted(result.growth().items()):
        first, last = result.samples[0].rss[pid], result.samples[-1].rss[pid]
        print(f"worker {pid}: {first / MIB:.1f} MiB -> {last / MIB:.1f} MiB ({pct:+.2f}%)")
    problems = verdict(result, args.max_growth)
    for problem in problems:
        print(f"FAIL: {problem}")
    print("FAIL" if problems else "OK")
    return 1 if problems else 0


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
