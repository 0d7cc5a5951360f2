"""Load generators for bench/run.py, one function per kind of scenario, all returning a `LoadResult`:

- `run_wrk`: HTTP/1.1, `wrk -t1 --latency` (apt: wrk);
- `run_h2load`: cleartext HTTP/2 with prior knowledge, `h2load -t1 -m1` (apt: nghttp2-client), percentiles from its
  per-request log;
- `run_ws`: websocket echo, bench/wsload-rs (Rust, built by setup.sh) or, when it is not built, bench/wsload.py
  (Python asyncio + the `websockets` package from uvicorn[standard]); `ws_client` picks one.

`IdleClients` runs bench/idle_clients.py beside a load: idle keep-alive connections for the slow-clients mix.
Each load's own CPU time (the `client CPU s` column) is the rusage of the finished child.
"""

from __future__ import annotations

import json
import re
import resource
import signal
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass
class LoadResult:
    rps: float | None = None
    latency_ms: dict = field(default_factory=dict)  # p50, p99, ...
    requests: int | None = None
    errors: int = 0
    error_detail: dict = field(default_factory=dict)
    client_cpu_s: float | None = None
    output: str = ""
    failure: str = ""  # the tool itself failed


def _run_timed(argv: list[str], timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    """Run a load tool to completion; returns it and the CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return done, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    if len(values) == 1:
        return {"p50": values[0], "p99": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98]}


# ---------------------------------------------------------------------------------------------------------- wrk


def parse_wrk(out: str) -> LoadResult:
    """Pull requests/s, latency percentiles (ms) and error counts out of `wrk --latency` output."""
    res = LoadResult(output=out)
    if m := re.search(r"Requests/sec:\s+([\d.]+)", out):
        res.rps = float(m.group(1))
    if m := re.search(r"^\s+Latency\s+([\d.]+)(us|ms|s|m|h)\s", out, re.MULTILINE):  # Thread Stats: avg
        res.latency_ms["mean"] = float(m.group(1)) * _UNIT_MS[m.group(2)]
    if m := re.search(r"(\d+) requests in ([\d.]+)(\w+),", out):
        res.requests = int(m.group(1))
    in_dist = False
    for line in out.splitlines():
        if "Latency Distribution" in line:
            in_dist = True
            continue
        if in_dist:
            m = re.match(r"\s+([\d.]+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", line)
            if not m:
                in_dist = False
                continue
            res.latency_ms[f"p{float(m.group(1)):g}"] = float(m.group(2)) * _UNIT_MS[m.group(3)]
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        res.error_detail = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True))
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        res.error_detail["non_2xx_3xx"] = int(m.group(1))
    res.errors = sum(res.error_detail.values())
    return res


def run_wrk(
    url: str, connections: int, duration: float, timeout: float, script: Path | None, headers: tuple[str, ...] = ()
) -> LoadResult:
    """`headers`: extra request headers ("Name: value"), e.g. the session cookie of a signed-in user."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "--timeout", f"{timeout:g}s"]
    for header in headers:
        argv += ["-H", header]
    if script:
        argv += ["-s", str(script)]
    done, cpu = _run_timed([*argv, url], duration + timeout + 30)
    if done.returncode != 0:
        return LoadResult(output=done.stdout + done.stderr, failure=f"wrk exited with {done.returncode}")
    res = parse_wrk(done.stdout)
    res.client_cpu_s = cpu
    res.output = done.stdout + done.stderr
    if res.rps is None:
        res.failure = "could not parse wrk output"
    return res


# ------------------------------------------------------------------------------------------------------- h2load


def parse_h2load(out: str, log_file: Path | None) -> LoadResult:
    """h2load's summary (req/s, counts, status classes) plus p50/p99 from its --log-file (µs per request).

    h2load's "failed" counts every failed request, HTTP-level (non-2xx) ones included; "errored" and "timeout" are
    subsets of it, so `errors` is "failed" and the detail says what kind.
    """
    res = LoadResult(output=out)
    if m := re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out):
        res.rps = float(m.group(1))
    if m := re.search(
        r"requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed, (\d+) errored, "
        r"(\d+) timeout",
        out,
    ):
        res.requests, res.errors, errored, timeouts = map(int, m.groups())
        res.error_detail = {"errored": errored, "timeout": timeouts}
    if m := re.search(r"status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", out):
        res.error_detail["non_2xx_3xx"] = int(m.group(1)) + int(m.group(2))
    if log_file is not None and log_file.is_file():
        millis = []
        for line in log_file.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and parts[2].isdigit():
                millis.append(int(parts[2]) / 1000.0)
        res.latency_ms = percentiles(millis)
    return res


def run_h2load(url: str, connections: int, duration: float, timeout: float, tmp: Path) -> LoadResult:
    log_file = tmp / "h2load.log"
    log_file.unlink(missing_ok=True)
    argv = ["h2load", "-t1", f"-c{connections}", "-m1", f"-D{duration:g}", f"-T{timeout:g}", f"-N{timeout:g}"]
    done, cpu = _run_timed([*argv, "--log-file", str(log_file), url], duration + timeout + 60)
    if done.returncode != 0:
        return LoadResult(output=done.stdout + done.stderr, failure=f"h2load exited with {done.returncode}")
    res = parse_h2load(done.stdout, log_file)
    log_file.unlink(missing_ok=True)
    res.client_cpu_s = cpu
    res.output = done.stdout + done.stderr
    if res.rps is None:
        res.failure = "could not parse h2load output"
    elif not res.requests:
        res.failure = "h2load completed no request (no h2c?)"
    return res


# --------------------------------------------------------------------------------------------------- websockets


WSLOAD_RS = BENCH_DIR / "wsload-rs" / "target" / "release" / "wsload-rs"
WS_CLIENTS = ("auto", "rust", "python")


def ws_client(python: str, choice: str = "auto", websockets_version: str = "?") -> tuple[str, list[str]]:
    """The websocket load client: (name for the report, argv before the URL).

    The Rust one when built (bench/setup.sh): the Python one saturates its core at ~13k msg/s, below what the
    servers can echo. Chosen once per benchmark run so every ws cell uses the same client.
    """
    if choice == "rust" or (choice == "auto" and WSLOAD_RS.is_file()):
        if not WSLOAD_RS.is_file():
            raise SystemExit(f"{WSLOAD_RS} is not built: bash bench/setup.sh")
        return "bench/wsload-rs (Rust, tokio-tungstenite, 1 thread)", [str(WSLOAD_RS)]
    name = f"bench/wsload.py (Python websockets {websockets_version}, 1 event loop)"
    return name, [python, str(BENCH_DIR / "wsload.py")]


def run_ws(client: list[str], url: str, connections: int, duration: float, warmup: float, timeout: float) -> LoadResult:
    argv = [*client, url, "--connections", str(connections)]
    argv += ["--duration", f"{duration:g}", "--warmup", f"{warmup:g}", "--timeout", f"{timeout:g}"]
    done, cpu = _run_timed(argv, duration + warmup + timeout + 60)
    text = done.stdout + done.stderr
    if done.returncode != 0:
        tool = Path(client[-1]).name
        return LoadResult(output=text, failure=f"{tool} exited with {done.returncode}: {done.stderr[-300:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    res = LoadResult(
        rps=data["messages_per_s"],
        latency_ms=data["latency_ms"],
        requests=data["messages"],
        error_detail=data["errors"],
        client_cpu_s=cpu,
        output=text,
    )
    res.errors = sum(res.error_detail.values())
    if not res.requests:
        res.failure = "no websocket message echoed"
    return res


# ----------------------------------------------------------------------------------------------- idle clients


class IdleClients:
    """bench/idle_clients.py in the background: `count` idle keep-alive connections to the server.

    start() returns once they are open (or failed); measure() marks the start of the measured window; stop()
    ends the helper and returns its statistics for that window (open connections min/median, server closes,
    reopenings, connect failures).
    """

    def __init__(self, python: str, port: int, path: str, count: int):
        argv = [python, str(BENCH_DIR / "idle_clients.py"), "--port", str(port), "--path", path]
        self.proc = subprocess.Popen(
            [*argv, "--count", str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def _ask(self, command: str) -> dict:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"idle_clients.py ended: {err.strip()[-300:]}")
        return json.loads(line)

    def start(self) -> dict:
        return self._ask("open")

    def measure(self) -> dict:
        return self._ask("measure")

    def stop(self) -> dict:
        try:
            return self._ask("stop")
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


def python_info(python: str, dists: list[str]) -> dict:
    """Versions of `dists` and of Python/Django as seen by `python`, and which optional modules it can import."""
    code = (
        "import importlib.metadata as m, importlib.util as u, json, platform, sys\n"
        "def v(d):\n"
        "    try:\n        return m.version(d)\n"
        "    except m.PackageNotFoundError:\n        return 'not installed'\n"
        f"dists = {dists!r}\n"
        "print(json.dumps({'python': platform.python_version(), 'executable': sys.executable,\n"
        "    'versions': {d: v(d) for d in dists + ['django', 'websockets']},\n"
        "    'modules': [n for n in ('uvloop', 'websockets', 'h2') if u.find_spec(n)]}))\n"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        raise SystemExit(f"{python} cannot run: see above")
    return json.loads(done.stdout)
