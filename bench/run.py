"""Side-by-side HTTP benchmark: rsgi against other Python application servers, on the Django example project.

    python bench/run.py --servers rsgi,gunicorn,granian --scenarios hello,items --rounds 3 --duration 10

Per round, per scenario, every server is started fresh on a free 127.0.0.1 port, warmed up, loaded with
`wrk -t1`, measured (throughput, latency, errors, RSS and CPU of its process tree) and stopped. The server order
rotates each round, so no server always runs first or last. Medians over rounds go into a markdown report
(plus raw JSON and, when matplotlib is importable, a PNG chart) under bench/results/.

See bench/README.md for what the numbers mean.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import importlib.metadata
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

PY = sys.executable
BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DEFAULT_APP_DIR = REPO / "examples" / "django_project"
WSGI_APP = "mysite.wsgi:application"
ASGI_APP = "mysite.asgi:application"
HOST = "127.0.0.1"


# --------------------------------------------------------------------------------------------------------------------
# Servers: one entry each. `command` gets a Launch and returns argv; `static_args` (optional) returns the extra flags
# that make the server itself serve STATIC_ROOT under /static/ (servers without it skip the "static" scenario).
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    port: int
    workers: int
    threads: int | None  # None: the server's own default
    app_dir: Path
    app: str  # module:attribute, WSGI or ASGI according to the server's interface


@dataclass(frozen=True)
class ServerDef:
    name: str
    interface: str  # "wsgi" or "asgi"
    dist: str  # distribution name, for the version
    command: Callable[[Launch], list[str]]
    static_args: Callable[[Launch, Path], list[str]] | None = None
    notes: str = ""


def _threads(flag: str, launch: Launch) -> list[str]:
    return [flag, str(launch.threads)] if launch.threads else []


def _rsgi(interface: str) -> Callable[[Launch], list[str]]:
    def command(launch: Launch) -> list[str]:
        argv = [PY, "-m", "rsgi", launch.app, "--chdir", str(launch.app_dir), "--bind", f"{HOST}:{launch.port}"]
        argv += ["--workers", str(launch.workers), *_threads("--threads", launch)]
        return argv + (["--interface", interface] if interface != "wsgi" else [])

    return command


def _gunicorn(launch: Launch) -> list[str]:
    argv = [PY, "-m", "gunicorn", launch.app, "--chdir", str(launch.app_dir), "-b", f"{HOST}:{launch.port}"]
    return [*argv, "-w", str(launch.workers), *_threads("--threads", launch)]


def _granian(interface: str) -> Callable[[Launch], list[str]]:
    def command(launch: Launch) -> list[str]:
        argv = [PY, "-m", "granian", "--interface", interface, "--workers", str(launch.workers)]
        argv += ["--host", HOST, "--port", str(launch.port), "--working-dir", str(launch.app_dir), "--no-access-log"]
        if interface == "wsgi":
            argv += _threads("--blocking-threads", launch)
        return [*argv, launch.app]

    return command


def _granian_static(launch: Launch, static_root: Path) -> list[str]:
    return ["--static-path-route", "/static", "--static-path-mount", str(static_root)]


def _uvicorn(launch: Launch) -> list[str]:
    argv = [PY, "-m", "uvicorn", launch.app, "--app-dir", str(launch.app_dir), "--host", HOST]
    return [*argv, "--port", str(launch.port), "--workers", str(launch.workers), "--no-access-log"]


def _hypercorn(launch: Launch) -> list[str]:  # no chdir flag: servers run with cwd = app dir anyway
    return [PY, "-m", "hypercorn", launch.app, "--bind", f"{HOST}:{launch.port}", "--workers", str(launch.workers)]


def _daphne(launch: Launch) -> list[str]:  # single process, no --workers
    return [PY, "-m", "daphne", "-b", HOST, "-p", str(launch.port), launch.app]


SERVERS: dict[str, ServerDef] = {
    s.name: s
    for s in [
        ServerDef("rsgi", "wsgi", "rsgi", _rsgi("wsgi")),
        ServerDef("rsgi-asgi", "asgi", "rsgi", _rsgi("asgi")),
        ServerDef(
            "gunicorn",
            "wsgi",
            "gunicorn",
            _gunicorn,
            notes="sync worker by default: one request at a time per worker and `Connection: close` on every "
            "response (wrk reconnects); --threads N switches it to gthread with keep-alive.",
        ),
        ServerDef(
            "granian",
            "wsgi",
            "granian",
            _granian("wsgi"),
            _granian_static,
            notes="WSGI blocking threads default to backpressure/2 = backlog/workers/2 (512 per worker with the "
            "default backlog 1024) when --blocking-threads is not given; access log off explicitly.",
        ),
        ServerDef("granian-asgi", "asgi", "granian", _granian("asgi"), _granian_static),
        ServerDef("uvicorn", "asgi", "uvicorn", _uvicorn),
        ServerDef("hypercorn", "asgi", "hypercorn", _hypercorn),
        ServerDef("daphne", "asgi", "daphne", _daphne, notes="always one process: --workers is ignored."),
    ]
}


# --------------------------------------------------------------------------------------------------------------------
# Scenarios: what wrk requests. `ceiling`: also measure the app in-process (bench/inprocess.py) for the same request.
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    what: str
    method: str = "GET"
    body_size: int = 0
    ceiling: bool = True
    static: bool = False  # needs the server to serve STATIC_ROOT itself


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("hello", "/hello", "sync view returning a 13-byte text body: server + Django request overhead"),
        Scenario("items", "/items", "sync view: 20-row SQLite ORM query serialised to JSON (~2.5 KB)"),
        Scenario("ahello", "/ahello", "async view, tiny body (on a WSGI server Django wraps it in async_to_sync)"),
        Scenario("aitems", "/aitems", "async view: the /items query through the async ORM"),
        Scenario("echo", "/echo", "POST of a 4 KiB body, hashed by the view: request-body path", "POST", 4096),
        Scenario("stream", "/stream", "StreamingHttpResponse of 5 small chunks: chunked transfer path"),
        Scenario("download", "/download", "FileResponse of 256 KiB: wsgi.file_wrapper / large body path"),
        Scenario(
            "static",
            "/static/catalog/site.css",  # resolved to its hashed name through the collectstatic manifest
            "a collected static file served by the server itself (no Django); servers without it are n/a",
            ceiling=False,
            static=True,
        ),
    ]
}


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def http_request(port: int, sc: Scenario, timeout: float) -> tuple[int, int]:
    """One request; returns (status, body length). Raises OSError/HTTPException when nobody answers."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        body = b"x" * sc.body_size if sc.method != "GET" else None
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        conn.request(sc.method, sc.path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, len(resp.read())
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen, port: int, sc: Scenario, deadline: float) -> str | None:
    """Poll until the server answers HTTP (any status). Returns None when ready, else why it is not."""
    while True:
        code = proc.poll()
        if code is not None:
            return f"exited with code {code} before answering"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "did not answer HTTP before the start deadline"
        try:
            http_request(port, sc, timeout=min(5.0, remaining))
            return None
        except (OSError, http.client.HTTPException):
            time.sleep(0.05)  # polling interval, not a synchronisation delay


def stop_server(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL the process group we created (start_new_session) and any stray descendants."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for child in descendants:
        try:
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                child.kill()
        except psutil.Error:
            pass


def tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_cpu(root: psutil.Process) -> dict[int, float]:
    """CPU seconds per process of the tree, including already-reaped children of each process."""
    out = {}
    for p in tree(root):
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return out


class RssSampler(threading.Thread):
    """Samples the RSS of a process tree every `interval` seconds; keeps the peak total and the peak per process."""

    def __init__(self, root: psutil.Process, interval: float = 0.25):
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.halt = threading.Event()
        self.peak_total = 0
        self.per_process: dict[int, dict] = {}
        self.samples = 0

    def sample(self) -> None:
        total = 0
        for p in tree(self.root):
            try:
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            role = "main" if p.pid == self.root.pid else "worker"
            entry = self.per_process.setdefault(p.pid, {"pid": p.pid, "role": role, "peak_rss": 0})
            entry["peak_rss"] = max(entry["peak_rss"], rss)
        self.peak_total = max(self.peak_total, total)
        self.samples += 1

    def run(self) -> None:
        self.sample()
        while not self.halt.wait(self.interval):
            self.sample()

    def finish(self) -> None:
        self.halt.set()
        self.join()
        self.sample()


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_wrk(out: str) -> dict:
    """Pull requests/s, latency percentiles (ms) and error counts out of `wrk --latency` output."""
    res: dict = {"rps": None, "latency_ms": {}, "requests": None, "socket_errors": {}, "non_2xx_3xx": 0}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", out):
        res["rps"] = float(m.group(1))
    if m := re.search(r"(\d+) requests in ([\d.]+)(\w+),", out):
        res["requests"] = int(m.group(1))
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
            res["latency_ms"][f"p{float(m.group(1)):g}"] = float(m.group(2)) * _UNIT_MS[m.group(3)]
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        res["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True))
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        res["non_2xx_3xx"] = int(m.group(1))
    res["errors"] = sum(res["socket_errors"].values()) + res["non_2xx_3xx"]
    return res


def wrk_script(sc: Scenario, tmp: Path) -> Path | None:
    if sc.method == "GET" and not sc.body_size:
        return None
    path = tmp / f"{sc.name}.lua"
    path.write_text(
        f'wrk.method = "{sc.method}"\n'
        f'wrk.body = string.rep("x", {sc.body_size})\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
    )
    return path


def run_wrk(port: int, sc: Scenario, cfg: argparse.Namespace, duration: float, script: Path | None) -> tuple:
    """Run wrk; returns (completed process, CPU seconds wrk itself used)."""
    argv = ["wrk", "-t1", f"-c{cfg.connections}", f"-d{duration:g}s", "--latency", "--timeout", f"{cfg.timeout:g}s"]
    if script:
        argv += ["-s", str(script)]
    argv.append(f"http://{HOST}:{port}{sc.path}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + cfg.timeout + 30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done, cpu


# --------------------------------------------------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------------------------------------------------


def prepare_app(app_dir: Path, tmp: Path) -> tuple[dict, Path]:
    """Migrate a private SQLite DB in tmp and collectstatic once; return the env for servers and STATIC_ROOT."""
    env = dict(os.environ)
    env["RSGI_EXAMPLE_DB"] = str(tmp / "bench.sqlite3")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("DJANGO_DEBUG", None)  # production code path
    for step in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        done = subprocess.run([PY, "manage.py", *step], cwd=app_dir, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"`manage.py {' '.join(step)}` failed:\n{done.stdout}\n{done.stderr}")
    static_root = app_dir / "staticfiles"
    return env, static_root


def resolve_static(sc: Scenario, static_root: Path) -> Scenario:
    """Map /static/<name> to the hashed name ManifestStaticFilesStorage wrote, if there is a manifest."""
    manifest = static_root / "staticfiles.json"
    if not sc.static or not manifest.is_file():
        return sc
    rel = sc.path.removeprefix("/static/")
    hashed = json.loads(manifest.read_text()).get("paths", {}).get(rel)
    if not hashed:
        return sc
    return Scenario(**{**asdict(sc), "path": f"/static/{hashed}"})


def machine_info() -> dict:
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
        wrk_v = wrk_v.split("Copyright")[0].strip()
    except (OSError, IndexError):
        wrk_v = "not found"
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "django": dist_version("django"),
        "wrk": wrk_v,
        "git_commit": commit or "(no commit)",
        "loadavg_start": os.getloadavg(),
    }


# --------------------------------------------------------------------------------------------------------------------
# One measurement
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    server: str
    scenario: str
    round: int
    status: str = "ok"  # ok | failed | skipped | n/a
    reason: str = ""
    stderr_tail: str = ""
    command: list[str] = field(default_factory=list)
    probe_status: int | None = None
    probe_bytes: int | None = None
    startup_s: float | None = None
    rps: float | None = None
    latency_ms: dict = field(default_factory=dict)
    requests: int | None = None
    errors: int | None = None
    socket_errors: dict = field(default_factory=dict)
    non_2xx_3xx: int | None = None
    rss_total_mb: float | None = None
    rss_per_process_mb: list = field(default_factory=list)
    cpu_s: float | None = None
    wrk_cpu_s: float | None = None
    loadavg_1m: float | None = None
    wrk_output: str = ""


def measure_server(srv: ServerDef, sc: Scenario, rnd: int, cfg: argparse.Namespace, ctx: dict) -> Run:
    run = Run(srv.name, sc.name, rnd)
    port = free_port()
    launch = Launch(port, cfg.workers, cfg.threads, ctx["app_dir"], WSGI_APP if srv.interface == "wsgi" else ASGI_APP)
    argv = srv.command(launch)
    if sc.static:
        if srv.static_args is None:
            run.status, run.reason = "n/a", "server has no static file serving configured in bench/run.py"
            return run
        argv = argv + srv.static_args(launch, ctx["static_root"])
    run.command = argv
    logfile = ctx["tmp"] / f"{srv.name}-{sc.name}-r{rnd}.log"
    t_start = time.monotonic()
    try:
        with open(logfile, "wb") as out:
            proc = subprocess.Popen(
                argv, cwd=ctx["app_dir"], env=ctx["env"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
    except OSError as exc:
        run.status, run.reason = "failed", f"could not start: {exc}"
        return run
    try:
        why = wait_ready(proc, port, sc, t_start + cfg.start_timeout)
        if why:
            run.status, run.reason = "failed", why
            return run
        run.startup_s = time.monotonic() - t_start
        run.probe_status, run.probe_bytes = http_request(port, sc, timeout=10)
        script = ctx["scripts"].get(sc.name)
        if cfg.warmup > 0:
            run_wrk(port, sc, cfg, cfg.warmup, script)
        root = psutil.Process(proc.pid)
        cpu0 = tree_cpu(root)
        sampler = RssSampler(root)
        sampler.start()
        run.loadavg_1m = os.getloadavg()[0]
        done, run.wrk_cpu_s = run_wrk(port, sc, cfg, cfg.duration, script)
        sampler.finish()
        cpu1 = tree_cpu(root)
        run.cpu_s = sum(v - cpu0.get(pid, 0.0) for pid, v in cpu1.items())
        run.rss_total_mb = sampler.peak_total / 2**20
        run.rss_per_process_mb = [
            {"pid": e["pid"], "role": e["role"], "peak_rss_mb": round(e["peak_rss"] / 2**20, 1)}
            for e in sampler.per_process.values()
        ]
        run.wrk_output = done.stdout + done.stderr
        if done.returncode != 0:
            run.status, run.reason = "failed", f"wrk exited with {done.returncode}: {done.stderr.strip()[-300:]}"
            return run
        parsed = parse_wrk(done.stdout)
        for key in ("rps", "latency_ms", "requests", "errors", "socket_errors", "non_2xx_3xx"):
            setattr(run, key, parsed[key])
        if run.rps is None:
            run.status, run.reason = "failed", "could not parse wrk output"
        if proc.poll() is not None:
            run.status, run.reason = "failed", f"server exited with code {proc.returncode} during the run"
        return run
    except (OSError, http.client.HTTPException, psutil.Error, subprocess.TimeoutExpired) as exc:
        run.status, run.reason = "failed", f"{type(exc).__name__}: {exc}"
        return run
    finally:
        stop_server(proc)
        if run.status == "failed":
            run.stderr_tail = tail(logfile)


def measure_ceiling(sc: Scenario, cfg: argparse.Namespace, ctx: dict) -> dict:
    argv = [PY, str(BENCH_DIR / "inprocess.py"), "--app-dir", str(ctx["app_dir"]), "--paths", sc.path]
    argv += ["--method", sc.method, "--body-size", str(sc.body_size), "--duration", f"{cfg.duration:g}"]
    argv += ["--warmup", f"{cfg.warmup:g}", "--rounds", "1", "--json"]
    done = subprocess.run(argv, cwd=ctx["app_dir"], env=ctx["env"], capture_output=True, text=True)
    if done.returncode != 0:
        return {"status": "failed", "reason": (done.stdout + done.stderr).strip()[-1000:]}
    data = json.loads(done.stdout.strip().splitlines()[-1])[sc.path]
    return {"status": "ok", "calls_per_s": data["median_calls_per_s"], "detail": data["rounds"][0]}


# --------------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------------


def med(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def summarise(runs: list[Run], ceilings: list[dict], servers: list[str], scenarios: list[str], base: str) -> dict:
    summary: dict = {}
    for scn in scenarios:
        ceil_vals = [c["calls_per_s"] for c in ceilings if c["scenario"] == scn and c["status"] == "ok"]
        ceiling = med(ceil_vals)
        rows = {}
        for name in servers:
            mine = [r for r in runs if r.scenario == scn and r.server == name]
            ok = [r for r in mine if r.status == "ok"]
            row: dict = {"rounds_ok": len(ok), "rounds": len(mine)}
            if ok:
                rps = [r.rps for r in ok]
                per_proc = {}
                for r in ok:
                    for i, p in enumerate(sorted(r.rss_per_process_mb, key=lambda e: (e["role"] != "main", e["pid"]))):
                        per_proc.setdefault(i, []).append(p["peak_rss_mb"])
                row |= {
                    "rps": med(rps),
                    "rps_min": min(rps),
                    "rps_max": max(rps),
                    "p50_ms": med([r.latency_ms.get("p50") for r in ok]),
                    "p99_ms": med([r.latency_ms.get("p99") for r in ok]),
                    "errors": sum(r.errors or 0 for r in ok),
                    "rss_total_mb": med([r.rss_total_mb for r in ok]),
                    "rss_per_process_mb": [med(v) for _, v in sorted(per_proc.items())],
                    "cpu_s": med([r.cpu_s for r in ok]),
                    "wrk_cpu_s": med([r.wrk_cpu_s for r in ok]),
                    "probe_status": ok[0].probe_status,
                }
                row["pct_of_ceiling"] = 100.0 * row["rps"] / ceiling if ceiling else None
            else:
                row["status"] = mine[0].status if mine else "not run"
                row["reason"] = next((r.reason for r in mine if r.reason), "")
            rows[name] = row
        base_rps = rows.get(base, {}).get("rps")
        for row in rows.values():
            row["base_ratio"] = base_rps / row["rps"] if base_rps and row.get("rps") else None
        failures = [c["reason"] for c in ceilings if c["scenario"] == scn and c["status"] != "ok"]
        summary[scn] = {
            "ceiling_calls_per_s": ceiling,
            "ceiling_rounds": ceil_vals,
            "ceiling_failures": failures,
            "servers": rows,
        }
    return summary


def render_markdown(meta: dict, summary: dict, runs: list[Run], chart_note: str) -> str:
    cfg = meta["config"]
    m = meta["machine"]
    base = cfg["baseline"]
    out = [f"# rsgi side-by-side benchmark — {meta['started_utc']}", "", "```", meta["command_line"], "```", ""]
    out += [
        "| machine | |",
        "| --- | --- |",
        f"| CPUs (nproc / usable) | {m['nproc']} / {m['affinity']} |",
        f"| CPU model | {m['cpu_model']} |",
        f"| memory | {m['memory_gib']} GiB |",
        f"| kernel | {m['kernel']} |",
        f"| python | {m['python']} |",
        f"| django | {m['django']} |",
        f"| load generator | {m['wrk']} (`-t1 -c{cfg['connections']} --timeout {cfg['timeout']:g}s`) |",
        f"| load average at start / end (1, 5, 15 min) | {fmt_load(m['loadavg_start'])} "
        f"/ {fmt_load(m['loadavg_end'])} |",
        f"| repo commit | {m['git_commit']} |",
        "",
    ]
    out += ["| server | interface | version | default concurrency notes |", "| --- | --- | --- | --- |"]
    for name in cfg["servers"]:
        s = SERVERS[name]
        out.append(f"| {name} | {s.interface} | {meta['versions'][name]} | {s.notes or ''} |")
    threads = cfg["threads"] if cfg["threads"] else "server default"
    out += [
        "",
        f"Rounds: {cfg['rounds']} (server order rotated each round) · duration {cfg['duration']:g} s · warm-up "
        f"{cfg['warmup']:g} s · connections {cfg['connections']} · workers {cfg['workers']} · threads {threads}.",
        "Values are medians over successful rounds; errors are summed over rounds (socket errors + non-2xx/3xx). "
        "RSS is the peak during the measured run, summed over the server's process tree (per process: main first). "
        "CPU s is what the server tree used during the measured run; wrk CPU s is the load generator's own "
        "(near the duration: wrk was saturated and the number is a floor). "
        f"`{base} x` is {base}'s rps divided by that server's rps (>1: {base} is faster).",
        "",
    ]
    for scn, data in summary.items():
        sc = SCENARIOS[scn]
        ceiling = data["ceiling_calls_per_s"]
        out += [f"## {scn} — {sc.method} {sc.path}", "", sc.what + ".", ""]
        if sc.ceiling:
            rounds = ", ".join(f"{v:,.0f}" for v in data["ceiling_rounds"]) or "failed"
            out += [f"Ceiling (in-process WSGI call, no network, 1 thread): **{fmt(ceiling)} calls/s** ({rounds}).", ""]
            if data["ceiling_failures"]:
                out += ["Ceiling failure:", "", "```", data["ceiling_failures"][0], "```", ""]
        out += [
            f"| server | rps | rps range | p50 ms | p99 ms | errors | RSS MB total | RSS MB per process | CPU s "
            f"| wrk CPU s | % of ceiling | {base} x |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, row in data["servers"].items():
            if "rps" not in row:
                out.append(f"| {name} | **{row['status'].upper()}** | | | | | | | | | | |")
                continue
            per_proc = " + ".join(fmt(v, ".0f") for v in row["rss_per_process_mb"])
            probe = "" if 200 <= (row["probe_status"] or 0) < 300 else f" (probe: HTTP {row['probe_status']})"
            out.append(
                f"| {name}{probe} | {fmt(row['rps'])} | {fmt(row['rps_min'])}-{fmt(row['rps_max'])} "
                f"| {fmt(row['p50_ms'], '.2f')} | {fmt(row['p99_ms'], '.2f')} | {row['errors']} "
                f"| {fmt(row['rss_total_mb'], '.0f')} | {per_proc} | {fmt(row['cpu_s'], '.2f')} "
                f"| {fmt(row['wrk_cpu_s'], '.2f')} "
                f"| {fmt(row['pct_of_ceiling'], '.0f', '%')} | {fmt(row['base_ratio'], '.2f', 'x')} |"
            )
        out.append("")
    failed = [r for r in runs if r.status in ("failed", "n/a")]
    if failed:
        out += ["## Failures and skipped runs", ""]
        seen = set()
        for r in failed:
            key = (r.server, r.reason, r.stderr_tail)
            if key in seen:
                continue
            seen.add(key)
            out += [f"**{r.server}** / {r.scenario} / round {r.round + 1}: {r.status} — {r.reason}", ""]
            if r.command:
                out += ["```", shlex.join(r.command), "```", ""]
            if r.stderr_tail:
                out += ["Output tail:", "", "```", r.stderr_tail, "```", ""]
    out += ["## Commands", "", "As run (first run of each server; the port changes every run):", ""]
    shown = set()
    for r in runs:
        if r.command and r.server not in shown:
            shown.add(r.server)
            out += [f"- {r.server}: `{shlex.join(r.command)}`"]
    out += ["", chart_note, ""]
    return "\n".join(out)


def fmt_load(load) -> str:
    return ", ".join(f"{x:.2f}" for x in load) if load else "?"


def render_chart(summary: dict, servers: list[str], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "Chart skipped: matplotlib is not importable (`pip install -r bench/requirements.txt`)."
    scenarios = list(summary)
    series = [*servers, "ceiling"]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.8 * len(scenarios) * len(series) / 3), 4.5))
    for i, name in enumerate(series):
        xs, ys, lo, hi = [], [], [], []
        for j, scn in enumerate(scenarios):
            if name == "ceiling":
                value, vmin, vmax = summary[scn]["ceiling_calls_per_s"], None, None
            else:
                row = summary[scn]["servers"][name]
                value, vmin, vmax = row.get("rps"), row.get("rps_min"), row.get("rps_max")
            if value is None:
                continue
            xs.append(j + (i - (len(series) - 1) / 2) * width)
            ys.append(value)
            lo.append(value - vmin if vmin is not None else 0)
            hi.append(vmax - value if vmax is not None else 0)
        hatch = "//" if name == "ceiling" else None
        label = name if ys else f"{name} (no result)"
        bars = ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=label, hatch=hatch)
        ax.bar_label(bars, fmt="{:,.0f}", fontsize=7, padding=2)
    ax.set_xticks(range(len(scenarios)), scenarios)
    ax.set_ylabel("requests/s (median; bars: min-max over rounds)")
    ax.set_title("Django example: throughput per server (1 wrk thread)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"Chart: `{path.name}`."


# --------------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="rsgi,gunicorn,granian", help=f"comma-separated, from: {', '.join(SERVERS)}")
    ap.add_argument("--scenarios", default="hello,items", help=f"comma-separated, from: {', '.join(SCENARIOS)}")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of measured load per run")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load before each run")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1, help="worker processes per server")
    ap.add_argument("--threads", type=int, default=None, help="threads per worker (default: each server's own)")
    ap.add_argument("--timeout", type=float, default=10.0, help="wrk per-request timeout in seconds")
    ap.add_argument("--start-timeout", type=float, default=60.0, help="seconds a server gets to answer HTTP")
    ap.add_argument("--baseline", default="rsgi", help="server the ratio column compares against")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the in-process ceiling measurement")
    ap.add_argument("--app-dir", type=Path, default=DEFAULT_APP_DIR)
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (DB, server logs)")
    args = ap.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = [s for s in args.servers if s not in SERVERS] + [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        ap.error(f"unknown server/scenario: {', '.join(unknown)}")
    if args.rounds < 1 or args.duration <= 0 or args.connections < 1 or args.workers < 1:
        ap.error("rounds, duration, connections and workers must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    app_dir = cfg.app_dir.resolve()
    if not (app_dir / "manage.py").is_file():
        log(f"no Django project at {app_dir} (manage.py missing)")
        return 2
    if shutil.which("wrk") is None:
        log("wrk not found: apt-get install -y wrk")
        return 2
    started = dt.datetime.now(dt.UTC)
    meta = {
        "started_utc": started.strftime("%Y-%m-%d %H:%M:%SZ"),
        "command_line": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(argv),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()},
        "machine": machine_info(),
        "versions": {name: dist_version(SERVERS[name].dist) for name in cfg.servers},
    }
    tmp = Path(tempfile.mkdtemp(prefix="rsgi-bench-"))
    runs: list[Run] = []
    ceilings: list[dict] = []
    try:
        log(f"preparing {app_dir.name}: migrate into {tmp}, collectstatic")
        env, static_root = prepare_app(app_dir, tmp)
        scenarios = [resolve_static(SCENARIOS[s], static_root) for s in cfg.scenarios]
        ctx = {"app_dir": app_dir, "env": env, "tmp": tmp, "static_root": static_root}
        ctx["scripts"] = {sc.name: wrk_script(sc, tmp) for sc in scenarios}
        broken: dict[str, Run] = {}  # servers that failed to start: not retried
        for rnd in range(cfg.rounds):
            for sc in scenarios:
                if sc.ceiling and not cfg.no_ceiling:
                    c = measure_ceiling(sc, cfg, ctx)
                    ceilings.append({"scenario": sc.name, "round": rnd, **c})
                    log(f"[round {rnd + 1}/{cfg.rounds}] {sc.name:8} ceiling   {fmt(c.get('calls_per_s'))} calls/s")
                shift = rnd % len(cfg.servers)
                for name in cfg.servers[shift:] + cfg.servers[:shift]:
                    if name in broken:
                        first = broken[name]
                        run = Run(name, sc.name, rnd, "failed", f"skipped: failed to start earlier ({first.reason})")
                    else:
                        run = measure_server(SERVERS[name], sc, rnd, cfg, ctx)
                        if run.status == "failed" and run.startup_s is None:
                            broken[name] = run
                    runs.append(run)
                    detail = (
                        f"{fmt(run.rps)} rps  p50 {fmt(run.latency_ms.get('p50'), '.2f')} ms  "
                        f"p99 {fmt(run.latency_ms.get('p99'), '.2f')} ms  errors {run.errors}"
                        if run.status == "ok"
                        else f"{run.status.upper()}: {run.reason}"
                    )
                    log(f"[round {rnd + 1}/{cfg.rounds}] {sc.name:8} {name:9} {detail}")
    finally:
        if cfg.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    meta["machine"]["loadavg_end"] = os.getloadavg()
    meta["finished_utc"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")

    summary = summarise(runs, ceilings, cfg.servers, cfg.scenarios, cfg.baseline)
    cfg.out.mkdir(parents=True, exist_ok=True)
    stem = f"{started:%Y%m%dT%H%M%SZ}-{'-'.join(cfg.scenarios)}"
    md_path, json_path, png_path = (cfg.out / f"{stem}{ext}" for ext in (".md", ".json", ".png"))
    chart_note = render_chart(summary, cfg.servers, png_path)
    markdown = render_markdown(meta, summary, runs, chart_note)
    md_path.write_text(markdown)
    raw = {"meta": meta, "summary": summary, "ceilings": ceilings, "runs": [asdict(r) for r in runs]}
    json_path.write_text(json.dumps(raw, indent=1, default=str))
    print(markdown)
    log(f"wrote {md_path}, {json_path.name}" + (f", {png_path.name}" if png_path.exists() else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
