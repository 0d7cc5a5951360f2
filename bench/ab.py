"""Two rsgi builds side by side: is a change neutral for speed?

    bench/.venv/bin/python bench/ab.py --before /tmp/before-venv/bin/python --after python3

Each Python must import its own rsgi (e.g. a venv with a wheel of the base commit, and the
editable build of the working tree). Rows, one worker each, wrk -t1 -c64 on 127.0.0.1:

- `trivial`: a WSGI app that returns 13 bytes (the core and the bridge, no framework);
- `hello`, `ahello`: the Django example's plain views through WSGI and ASGI.

The builds alternate within every round (before, after, after, before, ...), so a drift of the
shared machine's speed lands on both; the report gives per-row medians and the median of the
per-round after/before ratios, plus server CPU per request from the process tree's rusage.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import run_wrk
from procs import free_port, stop_server, tree_cpu, wait_ready

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "django_project"
TRIVIAL = """\
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!"]
"""
ROWS = {
    "trivial": (["trivial:app"], "/"),
    "hello": (["mysite.wsgi:application"], "/hello"),
    "ahello": (["mysite.asgi:application", "--interface", "asgi"], "/ahello"),
}


def measure(python: str, row: str, args: argparse.Namespace, tmp: Path) -> dict:
    app, path = ROWS[row]
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(tmp), RSGI_EXAMPLE_DB=str(tmp / "db.sqlite3"))
    argv = [python, "-m", "rsgi", *app, "--workers", "1", "--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
    with open(tmp / f"{row}.log", "ab") as log:
        proc = subprocess.Popen(
            argv, cwd=EXAMPLE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        if why := wait_ready(proc, port, path, time.monotonic() + 60):
            raise SystemExit(f"{python} {row}: {why}")
        url = f"http://127.0.0.1:{port}{path}"
        run_wrk(url, args.connections, args.warmup, 5.0, None)
        root = psutil.Process(proc.pid)
        cpu_before = sum(tree_cpu(root).values())
        res = run_wrk(url, args.connections, args.duration, 5.0, None)
        cpu = sum(tree_cpu(root).values()) - cpu_before
    finally:
        stop_server(proc)
    if res.failure or res.errors:
        raise SystemExit(f"{python} {row}: {res.failure or res.error_detail}")
    return {"rps": res.rps, "p99_ms": res.latency_ms.get("p99"), "cpu_us": 1e6 * cpu / max(res.requests or 1, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="a Python whose rsgi is the base build")
    ap.add_argument("--after", required=True, help="a Python whose rsgi is the changed build")
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated: " + ", ".join(ROWS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    args = ap.parse_args()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"rsgi-ab-{os.getpid()}"
    tmp.mkdir(parents=True)
    (tmp / "trivial.py").write_text(TRIVIAL)
    subprocess.run(
        [args.after, "manage.py", "migrate", "-v0"],
        cwd=EXAMPLE,
        env=dict(os.environ, RSGI_EXAMPLE_DB=str(tmp / "db.sqlite3")),
        check=True,
    )
    rows = args.rows.split(",")
    runs: list[dict] = []
    for r in range(args.rounds):
        order = ("before", "after") if r % 2 == 0 else ("after", "before")
        for row in rows:
            for which in order:
                m = measure(getattr(args, which), row, args, tmp)
                runs.append({"round": r, "row": row, "build": which, **m})
                line = f"{m['rps']:9.0f} req/s  p99 {m['p99_ms']:.2f} ms  {m['cpu_us']:.1f} µs CPU/req"
                print(f"round {r} {row:8} {which:6} {line}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    print("\n| row | before req/s | after req/s | after/before (median of rounds) | CPU µs/req | p99 ms |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        pick = {b: [x for x in runs if x["row"] == row and x["build"] == b] for b in ("before", "after")}
        med = {b: {k: statistics.median(x[k] for x in pick[b]) for k in ("rps", "cpu_us", "p99_ms")} for b in pick}
        ratios = [
            a["rps"] / b["rps"] for b, a in zip(pick["before"], pick["after"], strict=True)
        ]  # same round, same row
        b, a = med["before"], med["after"]
        print(
            f"| {row} | {b['rps']:,.0f} | {a['rps']:,.0f} | {statistics.median(ratios):.3f} | "
            f"{b['cpu_us']:.1f} → {a['cpu_us']:.1f} | {b['p99_ms']:.2f} → {a['p99_ms']:.2f} |"
        )


if __name__ == "__main__":
    main()
