"""Side-by-side HTTP benchmark: rsgi against other Python application servers, on the Django example project.

    bash bench/setup.sh                       # once: bench/.venv with the peers, wrk/h2load/nginx from apt
    bench/.venv/bin/python bench/run.py       # every server, every scenario, at 64 and 1,000 connections
    bench/.venv/bin/python bench/run.py --preset seed   # the deployment guide's table (make bench-seed; presets.py)

Per round, per scenario, per connections value, every server the scenario applies to is started fresh on a free
127.0.0.1 port, warmed up, loaded (wrk, h2load or bench/wsload-rs), measured (throughput, latency, errors, RSS
and CPU of its process tree) and stopped; the server order rotates each round. Medians over rounds go into a
markdown report, the raw JSON and a PNG chart under bench/results/ (and latest.md/latest.png after a full run).

The pieces: servers.py (the server table), scenarios.py (the scenario table), loadgen.py (load tools),
procs.py (processes), report.py (tables and chart), inprocess.py (the in-process ceiling).
See bench/README.md for what the numbers mean.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import http.client
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import asdict
from pathlib import Path

import psutil
from loadgen import WS_CLIENTS, IdleClients, LoadResult, python_info, run_h2load, run_wrk, run_ws, ws_client
from presets import PRESETS
from procs import (
    HOST,
    ConnSampler,
    RssSampler,
    free_port,
    http_fetch,
    raise_nofile,
    stop_server,
    tail,
    tree_cpu,
    wait_ready,
)
from report import Run, balance_text, fmt, render_chart, render_markdown, summarise
from scenarios import (
    BIG_STATIC,
    DEFAULT_SCENARIOS,
    SCENARIOS,
    Scenario,
    not_applicable,
    request_body,
    resolve_static,
    write_body,
    wrk_script,
)
from servers import DEFAULT_SERVERS, SERVERS, Launch, ServerDef, app_target, nginx_binary

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DEFAULT_APP_DIR = REPO / "examples" / "django_project"
VENV_PYTHON = BENCH_DIR / ".venv" / "bin" / "python"
DEFAULT_CONNECTIONS = [64, 1000]
# The signed-in user of the session scenarios (/list, /alist): created, and signed in once, at setup.
DEMO_USER = "demo"
SIGNED_IN_MARKER = f'<strong class="username">{DEMO_USER}</strong>'.encode()
SIGN_IN = f"""
from django.contrib.auth import get_user_model
from django.test import Client
user, _ = get_user_model().objects.get_or_create(username={DEMO_USER!r}, defaults={{"email": "demo@example.com"}})
user.set_password("demo-password-123")
user.save()
client = Client()
client.force_login(user)
print("SESSIONID=" + client.cookies["sessionid"].value)
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------- setup


def prepare_app(python: str, app_dir: Path, tmp: Path, session: bool = False) -> tuple[dict, Path, str]:
    """Migrate a private SQLite DB in tmp and collectstatic once; with `session`, create the demo user and sign it in
    (a session row in that DB). Returns the env for servers, STATIC_ROOT and the session cookie ("" without)."""
    env = dict(os.environ)
    env["RSGI_EXAMPLE_DB"] = str(tmp / "bench.sqlite3")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("DJANGO_DEBUG", None)  # production code path
    env.pop("WEB_CONCURRENCY", None)  # --workers decides
    # bench/apps holds wsecho.py (the ws scenario's app); the app dir is there for servers that do not chdir.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR / "apps"), str(app_dir), env.get("PYTHONPATH")]))
    for step in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        done = subprocess.run([python, "manage.py", *step], cwd=app_dir, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"`manage.py {' '.join(step)}` failed:\n{done.stdout}\n{done.stderr}")
    static_root = app_dir / "staticfiles"
    big = static_root / BIG_STATIC
    if not big.is_file() or big.stat().st_size != 1024 * 1024:
        big.write_bytes(os.urandom(1024 * 1024))
    cookie = ""
    if session:
        done = subprocess.run(
            [python, "manage.py", "shell", "-c", SIGN_IN], cwd=app_dir, env=env, capture_output=True, text=True
        )
        keys = [line.removeprefix("SESSIONID=") for line in done.stdout.splitlines() if line.startswith("SESSIONID=")]
        if done.returncode != 0 or not keys:
            raise SystemExit(f"signing in the demo user failed:\n{done.stdout}\n{done.stderr}")
        cookie = f"sessionid={keys[-1]}"
    return env, static_root, cookie


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True)
    except OSError:
        return "not found"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0].split("Copyright")[0].strip() if text else "?"


def machine_info(pyinfo: dict) -> dict:
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True).stdout
    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": pyinfo["python"],
        "python_executable": pyinfo["executable"],
        "django": pyinfo["versions"]["django"],
        "websockets": pyinfo["versions"]["websockets"],
        "wrk": _first_line(["wrk", "-v"]) if shutil.which("wrk") else "not installed",
        "h2load": _first_line(["h2load", "--version"]) if shutil.which("h2load") else "h2load not installed",
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "git_commit": commit + (" (uncommitted changes)" if dirty.strip() else ""),
        "loadavg_start": os.getloadavg(),
    }


# -------------------------------------------------------------------------------------------- one measurement


def _precheck(srv: ServerDef, sc: Scenario, run: Run, ctx: dict) -> bool:
    """Mark runs that cannot happen (n/a, missing tool or server); returns True when the server can be started."""
    if why := not_applicable(srv, sc):
        run.status, run.reason = "n/a", why
    elif sc.kind == "h2" and not shutil.which("h2load"):
        run.status, run.reason = "n/a", "h2load not found (apt: nghttp2-client; bash bench/setup.sh)"
    elif srv.name == "nginx" and nginx_binary() is None:
        run.status, run.reason = "failed", "nginx not installed (bash bench/setup.sh)"
    elif srv.dist and ctx["versions"].get(srv.name) == "not installed":
        run.status, run.reason = "failed", f"{srv.dist} is not installed for {ctx['python']} (bash bench/setup.sh)"
    return run.status == "ok"


def _load(sc: Scenario, port: int, conns: int, duration: float, cfg: argparse.Namespace, ctx: dict) -> LoadResult:
    if sc.kind == "h2":
        return run_h2load(f"http://{HOST}:{port}{sc.path}", conns, duration, cfg.timeout, ctx["tmp"])
    if sc.kind == "ws":
        return run_ws(ctx["ws_client"], f"ws://{HOST}:{port}{sc.path}", conns, duration, cfg.warmup, cfg.timeout)
    headers = sc.headers + ((f"Cookie: {ctx['cookie']}",) if sc.session else ())
    return run_wrk(f"http://{HOST}:{port}{sc.path}", conns, duration, cfg.timeout, ctx["scripts"].get(sc.name), headers)


DECODERS = {"gzip": gzip.decompress}  # the codings a compression scenario may expect, and how to check a body


def probe_coding(srv: ServerDef, sc: Scenario, port: int, run: Run) -> str | None:
    """A compression scenario's probe, before any load: a compressing stack (`srv.encodes`) must answer the load's
    request with `sc.expect_coding` and a body that decodes to the whole page, any other server without a
    Content-Encoding. Returns why not (the run then fails), or None."""
    headers = dict(h.split(": ", 1) for h in sc.headers)  # an Accept-Encoding here stops http.client's own
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request(sc.method, sc.path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    coding = (resp.getheader("Content-Encoding") or "").strip().lower()
    run.probe_status, run.probe_bytes, run.probe_coding = resp.status, len(body), coding
    want = sc.expect_coding if srv.encodes else ""
    if resp.status != 200:
        return f"probe: HTTP {resp.status}"
    if coding != want:
        return f"probe: Content-Encoding {coding or '(none)'} where {want or '(none)'} was expected"
    if coding:
        try:
            body = DECODERS[coding](body)
        except (OSError, EOFError, zlib.error) as exc:
            return f"probe: the {coding} body does not decode: {exc}"
    run.probe_decoded_bytes = len(body)
    if not body.rstrip().endswith(b"</html>"):
        return "probe: the (decoded) page is not a whole HTML page"
    return None


def measure_server(srv: ServerDef, sc: Scenario, conns: int, rnd: int, cfg: argparse.Namespace, ctx: dict) -> Run:
    run = Run(srv.name, sc.name, conns, rnd)
    if not _precheck(srv, sc, run, ctx):
        return run
    port = free_port()
    app = app_target(srv, sc.asgi_app)
    launch = Launch(
        ctx["python"],
        port,
        cfg.workers,
        cfg.threads if cfg.threads is not None else cfg.server_threads.get(srv.name),
        ctx["app_dir"],
        app,
        ctx["tmp"],
        ctx["static_root"],
        frozenset(ctx["modules"]),
        cfg.preload,
    )
    argv = srv.command(launch)
    if sc.kind == "h2":
        argv += list(srv.h2_args or ())
    if sc.static and srv.static_args is not None:
        argv += srv.static_args(launch)
    run.command = [f"{k}={v}" for k, v in srv.env] + argv
    logfile = ctx["tmp"] / f"{srv.name}-{sc.name}-c{conns}-r{rnd}.log"
    t_start = time.monotonic()
    try:
        with open(logfile, "wb") as out:
            env = ctx["env"] | dict(srv.env)
            proc = subprocess.Popen(
                argv, cwd=ctx["app_dir"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
    except OSError as exc:
        run.status, run.reason = "failed", f"could not start: {exc}"
        return run
    idle = None
    try:
        ready_path = sc.ready_path or (sc.path if sc.method == "GET" else "/hello")
        if why := wait_ready(proc, port, ready_path, t_start + cfg.start_timeout):
            run.status, run.reason = "failed", why
            if srv.unsupported and proc.returncode == srv.unsupported[0] and srv.unsupported[1] in tail(logfile, 200):
                run.status, run.reason = "unsupported", srv.unsupported[2]
            return run
        run.startup_s = time.monotonic() - t_start
        if sc.expect_coding:
            if why := probe_coding(srv, sc, port, run):
                run.status, run.reason = "failed", why
                return run
        elif sc.kind != "ws":
            body = request_body(sc)
            cookie = {"Cookie": ctx["cookie"]} if sc.session else None
            run.probe_status, page = http_fetch(port, sc.path, sc.method, body, sc.content_type, headers=cookie)
            run.probe_bytes = len(page)
            if sc.session:
                run.probe_signed_in = SIGNED_IN_MARKER in page
        if sc.idle_clients:
            idle = IdleClients(ctx["python"], port, sc.path, sc.idle_clients)
            opened = idle.start()
            log(f"    idle clients: {opened['open']}/{opened['target']} open")
        if cfg.warmup > 0 and sc.kind != "ws":  # the ws clients warm up on their own connections
            _load(sc, port, conns, cfg.warmup, cfg, ctx)
        root = psutil.Process(proc.pid)
        cpu0 = tree_cpu(root)
        sampler = RssSampler(root)
        sampler.start()
        balance = ConnSampler(root, port) if cfg.balance and sc.kind == "http" else None
        if balance:
            balance.start()
        run.loadavg_1m = os.getloadavg()[0]
        if idle:
            idle.measure()
        res = _load(sc, port, conns, cfg.duration, cfg, ctx)
        if idle:
            run.idle_clients = idle.stop()
        sampler.finish()
        if balance:
            run.balance = balance.finish()
        run.cpu_s = sum(v - cpu0.get(pid, 0.0) for pid, v in tree_cpu(root).items())
        run.rss_total_mb = sampler.peak_total / 2**20
        run.pss_total_mb = sampler.peak_pss_total / 2**20 if sampler.peak_pss_total else None
        run.rss_per_process_mb = sampler.per_process_mb()
        run.load_output = res.output
        run.rps, run.latency_ms, run.requests = res.rps, res.latency_ms, res.requests
        run.errors, run.error_detail, run.client_cpu_s = res.errors, res.error_detail, res.client_cpu_s
        if res.failure:
            run.status, run.reason = "failed", f"{res.failure}: {res.output.strip()[-300:]}"
        if proc.poll() is not None:
            run.status, run.reason = "failed", f"server exited with code {proc.returncode} during the run"
        return run
    except (OSError, RuntimeError, http.client.HTTPException, psutil.Error, subprocess.TimeoutExpired) as exc:
        run.status, run.reason = "failed", f"{type(exc).__name__}: {exc}"
        return run
    finally:
        if idle:
            idle.close()
        stop_server(proc)
        if run.status != "ok":
            run.stderr_tail = tail(logfile)


def measure_ceiling(sc: Scenario, interface: str, cfg: argparse.Namespace, ctx: dict) -> dict:
    """bench/inprocess.py in a subprocess (the servers' interpreter and environment), one round."""
    argv = [ctx["python"], str(BENCH_DIR / "inprocess.py"), "--app-dir", str(ctx["app_dir"]), "--paths", sc.path]
    argv += ["--interface", interface, "--method", sc.method, "--duration", f"{cfg.duration:g}"]
    argv += ["--warmup", f"{cfg.warmup:g}", "--rounds", "1", "--json"]
    if body_file := ctx["bodies"].get(sc.name):
        argv += ["--body-file", str(body_file), "--content-type", sc.content_type]
    done = subprocess.run(argv, cwd=ctx["app_dir"], env=ctx["env"], capture_output=True, text=True)
    if done.returncode != 0:
        return {"status": "failed", "reason": (done.stdout + done.stderr).strip()[-1000:]}
    data = json.loads(done.stdout.strip().splitlines()[-1])[sc.path]
    return {"status": "ok", "calls_per_s": data["median_calls_per_s"], "loop": data["loop"], "detail": data["rounds"]}


def ceiling_interfaces(sc: Scenario, servers: list[str]) -> list[str]:
    """The interfaces whose in-process ceiling a scenario needs: those of the selected servers it applies to."""
    if not sc.ceiling:
        return []
    wanted = {SERVERS[name].interface for name in servers if not_applicable(SERVERS[name], sc) is None}
    if "dual" in wanted:  # both interfaces in one server: compared with the scenario's own ceiling(s)
        wanted |= set(sc.interfaces)
    return [i for i in ("wsgi", "asgi") if i in wanted]


# ---------------------------------------------------------------------------------------------------------- main


QUICK = {"rounds": 1, "duration": 2.0, "warmup": 0.5}  # --quick: a smoke run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    # --preset and --quick change the defaults of the other options, so they are read first; explicit options win.
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--preset", choices=list(PRESETS))
    first.add_argument("--quick", action="store_true")
    early, _ = first.parse_known_args(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--preset",
        choices=list(PRESETS),
        help="a named set-up (bench/presets.py) that sets the defaults of the options below and adds its own tables; "
        + "; ".join(f"{p.name}: {p.what}" for p in PRESETS.values()),
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: " + ", ".join(f"--{k} {v:g}" for k, v in QUICK.items()) + " (explicit options still win)",
    )
    ap.add_argument("--servers", default=",".join(DEFAULT_SERVERS), help="comma-separated (default: all)")
    ap.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS), help="comma-separated (default: all)")
    ap.add_argument(
        "--connections",
        default=",".join(map(str, DEFAULT_CONNECTIONS)),
        help="comma-separated load connections; every scenario runs at each (except fixed-load ones)",
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of measured load per run")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load before each run")
    ap.add_argument("--workers", type=int, default=1, help="worker processes per server (daphne: always 1)")
    ap.add_argument(
        "--preload",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="import the app before forking the workers, for the servers that can (rsgi, gunicorn)",
    )
    ap.add_argument(
        "--balance",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="count the connections each worker holds during every HTTP/1.1 load (every second, from /proc)",
    )
    ap.add_argument("--threads", type=int, default=None, help="threads per worker (default: each server's own)")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-request timeout of the load tools, seconds")
    ap.add_argument("--start-timeout", type=float, default=60.0, help="seconds a server gets to answer HTTP")
    ap.add_argument("--baseline", default="rsgi", help="server the ratio column compares against")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the in-process ceiling measurement")
    default_python = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
    ap.add_argument("--python", default=default_python, help=f"interpreter for servers (default: {default_python})")
    ap.add_argument(
        "--ws-client",
        choices=WS_CLIENTS,
        default="auto",
        help="websocket load client: rust (bench/wsload-rs), python (bench/wsload.py) or auto (rust when built)",
    )
    ap.add_argument("--app-dir", type=Path, default=DEFAULT_APP_DIR)
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    ap.add_argument(
        "--latest",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also write latest.md/latest.png in --out (default: only after a full run: all servers, scenarios "
        "and the default connections)",
    )
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (DB, server logs)")
    preset = PRESETS[early.preset] if early.preset else None
    if preset:
        ap.set_defaults(**preset.defaults)
    if early.quick:
        ap.set_defaults(**QUICK)
    args = ap.parse_args(argv)
    args.exclude = set(preset.exclude) if preset else set()  # (server, scenario) runs the preset leaves out
    args.server_threads = dict(preset.server_threads) if preset else {}
    args.servers = [s for s in args.servers.split(",") if s]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    try:
        args.connections = [int(c) for c in args.connections.split(",") if c]
    except ValueError:
        ap.error("--connections takes comma-separated integers")
    unknown = [s for s in args.servers if s not in SERVERS] + [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        ap.error(
            f"unknown server/scenario: {', '.join(unknown)} (servers: {', '.join(SERVERS)}; scenarios: "
            f"{', '.join(SCENARIOS)})"
        )
    if args.rounds < 1 or args.duration <= 0 or args.workers < 1 or not args.connections:
        ap.error("rounds, duration, workers and connections must be positive")
    if any(c < 1 for c in args.connections):
        ap.error("connections must be positive")
    if args.latest is None:
        args.latest = (
            set(args.servers) == set(DEFAULT_SERVERS)
            and set(args.scenarios) == set(DEFAULT_SCENARIOS)
            and args.connections == DEFAULT_CONNECTIONS
        )
    return args


def run_matrix(cfg: argparse.Namespace, ctx: dict, scenarios: list[Scenario]) -> tuple[list[Run], list[dict]]:
    runs: list[Run] = []
    ceilings: list[dict] = []
    broken: dict[tuple, Run] = {}  # (server, app, kind) that failed to start: not retried
    t0 = time.monotonic()
    for rnd in range(cfg.rounds):
        tag = f"[round {rnd + 1}/{cfg.rounds}]"
        if rnd:
            log(f"{tag} {(time.monotonic() - t0) / 60:.1f} min so far")
        for sc in scenarios:
            if not cfg.no_ceiling:
                for iface in ceiling_interfaces(sc, cfg.servers):
                    c = measure_ceiling(sc, iface, cfg, ctx)
                    ceilings.append({"scenario": sc.name, "interface": iface, "round": rnd, **c})
                    shown = fmt(c.get("calls_per_s")) + " calls/s" if c["status"] == "ok" else "FAILED"
                    log(f"{tag} {sc.name:9} ceiling {iface.upper():4}  {shown}")
            applicable = [
                n for n in cfg.servers if not_applicable(SERVERS[n], sc) is None and (n, sc.name) not in cfg.exclude
            ]
            shift = rnd % len(applicable) if applicable else 0
            order = applicable[shift:] + applicable[:shift] + [n for n in cfg.servers if n not in applicable]
            for conns in sc.load_connections(cfg.connections):
                for name in order:
                    key = (name, app_target(SERVERS[name], sc.asgi_app), sc.kind)
                    if (name, sc.name) in cfg.exclude:
                        run = Run(name, sc.name, conns, rnd, "n/a", f"left out by --preset {cfg.preset}")
                    elif first := broken.get(key):
                        run = Run(name, sc.name, conns, rnd, first.status, f"skipped: {first.reason}")
                    else:
                        run = measure_server(SERVERS[name], sc, conns, rnd, cfg, ctx)
                        if run.status in ("failed", "unsupported") and run.startup_s is None:
                            broken[key] = run
                    runs.append(run)
                    if run.status == "n/a" and (rnd > 0 or (name, sc.name) in cfg.exclude):
                        continue
                    if run.status == "ok":
                        detail = (
                            f"{fmt(run.rps)} {'msg/s' if sc.kind == 'ws' else 'rps'}  "
                            f"p50 {fmt(run.latency_ms.get('p50'), '.2f')} ms  "
                            f"p99 {fmt(run.latency_ms.get('p99'), '.2f')} ms  errors {run.errors}"
                        )
                        if run.balance.get("per_worker"):
                            detail += f"  conns/worker {balance_text(run.balance['per_worker'])}"
                        if run.probe_signed_in is False:
                            detail += "  NOT SIGNED IN"
                    else:
                        detail = f"{run.status.upper()}: {run.reason[:160]}"
                    log(f"{tag} {sc.name:9} c={conns:<5} {name:16} {detail}")
    return runs, ceilings


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    app_dir = cfg.app_dir.resolve()
    if not (app_dir / "manage.py").is_file():
        log(f"no Django project at {app_dir} (manage.py missing)")
        return 2
    if shutil.which("wrk") is None and any(SCENARIOS[s].kind == "http" for s in cfg.scenarios):
        log("wrk not found: bash bench/setup.sh (or apt-get install -y wrk)")
        return 2
    nofile = raise_nofile()
    if nofile[0] < max(cfg.connections) + 600:
        log(f"warning: open files limit {nofile[0]} is low for {max(cfg.connections)} connections")
    if cfg.python == sys.executable and not VENV_PYTHON.exists():
        log("note: bench/.venv not found, servers run with this interpreter (bash bench/setup.sh makes the venv)")
    dists = sorted({SERVERS[name].dist for name in cfg.servers if SERVERS[name].dist})
    pyinfo = python_info(cfg.python, dists)
    versions = {
        name: (SERVERS[name].version() if SERVERS[name].version else pyinfo["versions"][SERVERS[name].dist])
        for name in cfg.servers
    }
    started = dt.datetime.now(dt.UTC)
    meta = {
        "started_utc": started.strftime("%Y-%m-%d %H:%M:%SZ"),
        "command_line": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(argv),
        "config": {
            k: (str(v) if isinstance(v, Path) else sorted(v) if isinstance(v, set) else v) for k, v in vars(cfg).items()
        },
        "machine": machine_info(pyinfo),
        "versions": versions,
    }
    ws_argv: list[str] = []
    if any(SCENARIOS[s].kind == "ws" for s in cfg.scenarios):
        ws_name, ws_argv = ws_client(cfg.python, cfg.ws_client, pyinfo["versions"]["websockets"])
        meta["machine"]["ws_client"] = ws_name
        log(f"websocket load client: {ws_name}")
    tmp = Path(tempfile.mkdtemp(prefix="rsgi-bench-"))
    try:
        log(f"preparing {app_dir.name} with {cfg.python}: migrate into {tmp}, collectstatic")
        session = any(SCENARIOS[s].session for s in cfg.scenarios)
        env, static_root, cookie = prepare_app(cfg.python, app_dir, tmp, session)
        scenarios = [resolve_static(SCENARIOS[s], static_root) for s in cfg.scenarios]
        meta["paths"] = {sc.name: sc.path for sc in scenarios}  # static: the hashed name from the manifest
        bodies = {sc.name: write_body(sc, tmp) for sc in scenarios}
        ctx = {
            "app_dir": app_dir,
            "env": env,
            "tmp": tmp,
            "static_root": static_root,
            "python": cfg.python,
            "modules": pyinfo["modules"],
            "versions": versions,
            "bodies": bodies,
            "scripts": {sc.name: wrk_script(sc, bodies[sc.name], tmp) for sc in scenarios},
            "ws_client": ws_argv,
            "cookie": cookie,
        }
        runs, ceilings = run_matrix(cfg, ctx, scenarios)
    finally:
        if cfg.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    meta["machine"]["loadavg_end"] = os.getloadavg()
    meta["finished_utc"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")

    cells = [(sc.name, c) for sc in scenarios for c in sc.load_connections(cfg.connections)]
    summary = summarise(runs, ceilings, cfg.servers, cells, cfg.baseline)
    cfg.out.mkdir(parents=True, exist_ok=True)
    label = "all" if set(cfg.scenarios) == set(DEFAULT_SCENARIOS) else "-".join(cfg.scenarios)[:60]
    if cfg.preset:
        label = cfg.preset + ("-quick" if cfg.quick else "")
    stem = f"{started:%Y%m%dT%H%M%SZ}-{label}"
    md_path, json_path, png_path = (cfg.out / f"{stem}{ext}" for ext in (".md", ".json", ".png"))
    has_chart = render_chart(summary, cfg.servers, png_path)
    if not has_chart:
        log("chart skipped: matplotlib is not importable (bash bench/setup.sh)")
    markdown = render_markdown(meta, summary, runs, png_path.name if has_chart else None)
    if cfg.preset and PRESETS[cfg.preset].render:
        markdown = PRESETS[cfg.preset].render(meta, summary) + "\n" + markdown
    md_path.write_text(markdown)
    raw = {"meta": meta, "summary": summary, "ceilings": ceilings, "runs": [asdict(r) for r in runs]}
    json_path.write_text(json.dumps(raw, indent=1, default=str))
    written = [md_path.name, json_path.name] + ([png_path.name] if has_chart else [])
    if cfg.latest:
        (cfg.out / "latest.md").write_text(render_markdown(meta, summary, runs, "latest.png" if has_chart else None))
        written.append("latest.md")
        if has_chart:
            shutil.copyfile(png_path, cfg.out / "latest.png")
            written.append("latest.png")
    print(markdown)
    took = dt.datetime.now(dt.UTC) - started
    log(f"wrote {', '.join(written)} in {cfg.out} ({took.total_seconds() / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
