"""Named benchmark set-ups for bench/run.py (`--preset NAME`), and the tables they add to the report.

A preset is defaults for run.py's options (explicit options still win), plus what options cannot say: runs to leave
out, per-server thread counts, and a renderer for the preset's own tables, which go at the top of the report.

`seed` reproduces the benchmark at the end of the deployment guide rsgi replaces (issue #23): Django, 4 workers,
100 concurrent connections, every stack the guide compares plus Granian and rsgi, with the guide's published
numbers beside ours. Regenerate its tables from a run's JSON:

    python3 bench/presets.py bench/results/<stamp>-seed.json
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

# The guide's table: Django, 4 workers, 1,000 requests at 100 concurrent (../shared/README.md).
GUIDE = {  # server: (req/s, mean ms, memory MB)
    "gunicorn": (1245, 80.0, 180),
    "gunicorn-gevent": (2847, 35.0, 140),
    "uvicorn": (3521, 28.0, 95),
    "gunicorn-uvicorn": (3892, 25.7, 110),
}
GUIDE_BASE = "gunicorn"  # the ratios are against gunicorn's sync worker, ours and the guide's

SEED_LABELS = {
    "gunicorn": "gunicorn sync",
    "gunicorn-gevent": "gunicorn gevent (worker_connections 1000)",
    "gunicorn-gthread": "gunicorn gthread (2 threads)",
    "uvicorn": "uvicorn",
    "gunicorn-uvicorn": "gunicorn + UvicornWorker",
    "granian": "Granian WSGI",
    "granian-asgi": "Granian ASGI",
    "rsgi": "rsgi WSGI",
    "rsgi-asgi": "rsgi ASGI",
    "rsgi-dual": "rsgi both interfaces (--django)",
}
SEED_SERVERS = list(SEED_LABELS)
# One view, three scenarios' worth of servers: WSGI servers get the sync view, ASGI servers its async twin (the
# hello/ahello convention of scenarios.py); rsgi-dual serves the sync views through its WSGI side only.
SEED_VIEWS = [  # (view, WSGI scenario, ASGI scenario, what)
    ("hello", "hello", "ahello", "plain text: server + Django request overhead"),
    ("items", "items", "aitems", "20-row ORM query to JSON"),
    ("list", "list", "alist", "signed-in page: template with the 20 items, session + auth middleware, 3 queries"),
]
SEED_ASYNC_SCENARIOS = {asgi for _, _, asgi, _ in SEED_VIEWS}
SEED_LOAD, SEED_MANY = 100, 1000  # the guide's concurrency; and the tail at 1,000 connections


@dataclass(frozen=True)
class Preset:
    name: str
    what: str
    defaults: dict  # run.py option dests -> values (as the command line would give them)
    exclude: frozenset[tuple[str, str]] = frozenset()  # (server, scenario) pairs not run
    server_threads: dict = field(default_factory=dict)  # server -> --threads for it, unless --threads is given
    render: object = None  # (meta, summary) -> markdown, put at the top of the report


def render_seed(meta: dict, summary: dict) -> str:
    """The guide's table layout per view at 100 connections (server, req/s, mean ms, memory MB, with p99, errors,
    PSS and the ratio to gunicorn sync added) with the guide's figures beside ours; the tail at 1,000 connections;
    and how rsgi's (and everyone's) keep-alive connections sat across the workers."""
    cfg, m = meta["config"], meta["machine"]
    servers = [s for s in SEED_SERVERS if s in cfg["servers"]]
    out = [
        "# The guide's benchmark, reproduced (`--preset seed`)",
        "",
        f"Django example project, {cfg['workers']} workers per server "
        + (
            "(`--preload` for gunicorn and rsgi, except gunicorn gevent, where Django imported before gevent patches "
            "threading fails every ORM view; uvicorn and Granian have no such option)"
            if cfg.get("preload")
            else ""
        )
        + f", `wrk -t1` at {SEED_LOAD} connections; {cfg['rounds']} interleaved round(s) of {cfg['duration']:g} s "
        f"per server and view ({cfg['warmup']:g} s warm-up, server order rotated each round), medians over rounds. "
        "WSGI servers get the sync view, ASGI servers its async twin (`/ahello`, `/aitems`, `/alist`); rsgi-dual "
        "serves the sync views through its WSGI side. Errors are socket errors and non-2xx answers summed over "
        f"rounds; timeouts are wrk's ({cfg['timeout']:g} s per request). Open-files limit raised to {m['nofile']} "
        "for wrk and the servers (1,000 connections need more than the usual 1,024).",
        "",
        "**What differs from the guide.** The guide sent 1,000 requests at 100 concurrent to Django with 4 workers "
        "on a machine it does not describe; here every run is time-based, on "
        f"{m['nproc']} CPUs ({m['cpu_model']}) of a shared VM whose load average was "
        f"{_load(m.get('loadavg_start'))} at the start and {_load(m.get('loadavg_end'))} at the end, with the load "
        f"generator on the same {m['nproc']} cores as the server's {cfg['workers']} workers. Its views are unknown; "
        "ours are listed per table. So compare **ratios** (the `x gunicorn sync` columns), not absolute req/s, ms "
        "or MB. The guide's memory figure is presumably RSS; ours are peak RSS and peak PSS during the measured run, "
        "summed over the master/supervisor and all workers (PSS counts pages the processes share once, so it is "
        "the fairer total for pre-forked workers).",
        "",
    ]
    for view, wsgi_sc, asgi_sc, what in SEED_VIEWS:
        out += _seed_view_table(summary, servers, view, wsgi_sc, asgi_sc, what)
    out += _seed_many_table(summary, servers, cfg)
    out += _seed_balance_table(summary, servers)
    return "\n".join(out) + "\n"


def _row(summary: dict, server: str, scenario: str, conns: int) -> dict | None:
    cell = summary.get(f"{scenario}@{conns}")
    return cell["servers"].get(server) if cell else None


def _view_rows(summary: dict, servers: list[str], wsgi_sc: str, asgi_sc: str, conns: int) -> dict[str, dict]:
    """server -> its row for the view: the async scenario for ASGI servers, the sync one otherwise."""
    rows = {}
    for name in servers:
        row = _row(summary, name, asgi_sc, conns)
        if row is None or row.get("status") == "n/a":
            row = _row(summary, name, wsgi_sc, conns)
        if row is not None:
            rows[name] = row
    return rows


def _f(value, spec: str = ",.0f") -> str:
    return "—" if value is None else f"{value:{spec}}"


def _lat(row: dict, key: str, spec: str) -> str:
    """A latency, or — when the server answered nothing in the measured window (wrk then prints 0)."""
    return _f(row.get(key), spec) if row.get("rps") else "—"


def _status(row: dict | None) -> str:
    if row is None:
        return "not run"
    return {"failed": "**FAILED**", "unsupported": "not supported yet", "n/a": "n/a"}.get(row["status"], "not run")


def _seed_view_table(summary: dict, servers: list[str], view: str, wsgi_sc: str, asgi_sc: str, what: str) -> list[str]:
    rows = _view_rows(summary, servers, wsgi_sc, asgi_sc, SEED_LOAD)
    if not rows:
        return []
    base = rows.get(GUIDE_BASE, {}).get("rps")
    guide_base = GUIDE[GUIDE_BASE][0]
    out = [
        f"## /{view} (ASGI: /{asgi_sc}), {SEED_LOAD} connections — {what}",
        "",
        "| server | req/s | mean ms | p99 ms | errors (timeouts) | memory MB (RSS) | memory MB (PSS) "
        "| x gunicorn sync | guide req/s | guide mean ms | guide MB | guide x sync |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in rows.items():
        g = GUIDE.get(name)
        guide = [f"{g[0]:,}", f"{g[1]:g}", f"{g[2]}", f"{g[0] / guide_base:.2f}x"] if g else ["", "", "", ""]
        label = SEED_LABELS.get(name, name)
        if row.get("rps") is None:
            out.append(f"| {label} | {_status(row)} | | | | | | | " + " | ".join(guide) + " |")
            continue
        ratio = f"{row['rps'] / base:.2f}x" if base else "—"
        flag = "" if row.get("probe_signed_in", True) else " (not signed in!)"
        out.append(
            f"| {label}{flag} | {_f(row['rps'])} | {_lat(row, 'mean_ms', '.1f')} | {_lat(row, 'p99_ms', '.1f')} "
            f"| {row.get('errors', 0)} ({row.get('timeouts', 0)}) | {_f(row.get('rss_total_mb'))} "
            f"| {_f(row.get('pss_total_mb'))} | {ratio} | " + " | ".join(guide) + " |"
        )
    return [*out, ""]


def _seed_many_table(summary: dict, servers: list[str], cfg: dict) -> list[str]:
    views = [(v, w, a, _view_rows(summary, servers, w, a, SEED_MANY)) for v, w, a, _ in SEED_VIEWS]
    views = [v for v in views if v[3]]
    if not views:
        return []
    out = [
        f"## The tail at {SEED_MANY:,} connections (same run)",
        "",
        f"p99 latency in ms, req/s and errors for the same servers and views. wrk's latency counts only requests "
        f"answered within its timeout ({cfg['timeout']:g} s here), so read p99 together with the timeouts: every "
        "2 s, wrk counts each connection whose request has waited longer than that (so one stuck connection can "
        "count several times). A server that answered nothing shows 0 req/s and no latency.",
        "",
        "| server | " + " | ".join(f"/{v} req/s | /{v} p99 ms | /{v} errors (timeouts)" for v, *_ in views) + " |",
        "| --- | " + " | ".join("---: | ---: | ---:" for _ in views) + " |",
    ]
    for name in servers:
        cells = []
        for _, _, _, rows in views:
            row = rows.get(name)
            if row is None or row.get("rps") is None:
                cells += [_status(row), "", ""]
            else:
                cells += [
                    _f(row["rps"]),
                    _lat(row, "p99_ms", ",.0f"),
                    f"{row.get('errors', 0)} ({row.get('timeouts', 0)})",
                ]
        out.append(f"| {SEED_LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    return [*out, ""]


def _seed_balance_table(summary: dict, servers: list[str]) -> list[str]:
    views = [(v, _view_rows(summary, servers, w, a, SEED_LOAD)) for v, w, a, _ in SEED_VIEWS]
    shown = [n for n in servers if any(rows.get(n, {}).get("balance_rounds") for _, rows in views)]
    if not shown:
        return []
    out = [
        f"## Balance: connections per worker at {SEED_LOAD} connections",
        "",
        "How many of wrk's connections each worker process held, counted every second of the measured run from "
        "`/proc/<pid>/fd` (socket inodes matched against the established connections in `/proc/net/tcp`): per round, "
        "the median count of each worker over the samples, highest first. A keep-alive connection stays with the "
        "worker that accepted it, so an uneven split means one worker queues what another could serve (rsgi's was "
        "seen at 62/28/10/0 by hand). gunicorn's sync worker closes every connection, so it holds few at any "
        "moment.",
        "",
        "| server | " + " | ".join(f"/{v}" for v, _ in views) + " |",
        "| --- | " + " | ".join("---" for _ in views) + " |",
    ]
    for name in shown:
        cells = []
        for _, rows in views:
            rounds = rows.get(name, {}).get("balance_rounds") or []
            cells.append("; ".join("/".join(f"{c:g}" for c in per_worker) for per_worker in rounds) or "—")
        out.append(f"| {SEED_LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    return [*out, ""]


def _load(load) -> str:
    return f"{load[0]:.2f}" if load else "?"


SEED = Preset(
    name="seed",
    what="the deployment guide's benchmark: 4 workers, 100 connections (and 1,000), every stack it compares",
    defaults={
        "servers": ",".join(SEED_SERVERS),
        "scenarios": ",".join(sc for _, w, a, _ in SEED_VIEWS for sc in (w, a)),
        "connections": f"{SEED_LOAD},{SEED_MANY}",
        "rounds": 3,
        "duration": 7.0,
        "warmup": 1.0,
        "timeout": 5.0,  # wrk's per-request timeout: below the duration, so a request stuck that long is counted
        "workers": 4,
        "preload": True,
        "balance": True,
        "no_ceiling": True,
    },
    exclude=frozenset(("rsgi-dual", sc) for sc in SEED_ASYNC_SCENARIOS),
    server_threads={"gunicorn-gthread": 2},  # the guide's gunicorn.conf.py: gthread with threads = 2
    render=render_seed,
)

PRESETS = {p.name: p for p in [SEED]}


def main(argv: list[str]) -> int:
    """Print a preset's tables from a run's JSON (bench/results/<stamp>-<label>.json)."""
    if len(argv) != 1:
        print("usage: python3 bench/presets.py bench/results/<stamp>-seed.json", file=sys.stderr)
        return 2
    raw = json.loads(Path(argv[0]).read_text())
    preset = PRESETS.get(raw["meta"]["config"].get("preset") or "seed", SEED)
    print(preset.render(raw["meta"], raw["summary"]), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
