"""Named benchmark set-ups for bench/run.py (`--preset NAME`), and the tables they add to the report.

A preset is defaults for run.py's options (explicit options still win), plus what options cannot say: runs to leave
out, per-server thread counts, and a renderer for the preset's own tables, which go at the top of the report.

`seed` reproduces the benchmark at the end of the deployment guide rsgi replaces (issue #23): Django, 4 workers,
100 concurrent connections, every stack the guide compares plus Granian and rsgi, with the guide's published
numbers beside ours. `compress` is issue #19's compression row: the example's ~54 KB HTML page to a client that
accepts gzip, compressed by rsgi (`--compress`), by Django's GZipMiddleware under gunicorn, or by nginx `gzip on` in
front of gunicorn, with the ratios the issue asks for. Regenerate a preset's tables from a run's JSON:

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

# ----------------------------------------------------------------------------------------------------- compress

COMPRESS_LABELS = {  # server: (label, what compresses, gzip level)
    "rsgi-gzip": ("rsgi --compress", "rsgi's core, tokio thread", "6 (rsgi's default)"),
    "rsgi-gzip1": ("rsgi --compress --compress-level gzip=1", "rsgi's core, tokio thread", "1"),
    "gunicorn-gzip": ("gunicorn sync + GZipMiddleware", "Django, in Python under the GIL", "6 (Django's, fixed)"),
    "nginx-gunicorn": ("nginx `gzip on` → gunicorn sync", "nginx worker", "1 (nginx's default)"),
    "rsgi": ("rsgi, no compression", "—", "—"),
    "gunicorn": ("gunicorn sync, no compression", "—", "—"),
}
COMPRESS_SERVERS = list(COMPRESS_LABELS)
COMPRESS_SCENARIOS = {  # scenario: what the page is
    "compress": "/page, rendered by the template on every request (~14 ms of Django)",
    "compress-cached": "/cached-page, the same page from Django's per-view cache",
}
# The issue's targets (#19): (numerator, denominator, target, what). Like for like: the same gzip level.
COMPRESS_TARGETS = [
    ("rsgi-gzip", "gunicorn-gzip", 2.0, "rsgi --compress ÷ gunicorn + GZipMiddleware (both gzip 6)"),
    ("rsgi-gzip1", "nginx-gunicorn", 0.8, "rsgi --compress-level gzip=1 ÷ nginx `gzip on` + gunicorn (both gzip 1)"),
]
COMPRESS_OTHER_RATIOS = [
    ("rsgi-gzip", "nginx-gunicorn", "rsgi at its default gzip 6 ÷ the nginx stack at gzip 1"),
    ("rsgi-gzip1", "gunicorn-gzip", "rsgi at gzip 1 ÷ gunicorn + GZipMiddleware (gzip 6)"),
    ("rsgi", "gunicorn", "without compression: rsgi ÷ gunicorn sync"),
    ("rsgi-gzip", "rsgi", "what compression costs rsgi (gzip 6 ÷ none)"),
    ("gunicorn-gzip", "gunicorn", "what GZipMiddleware costs gunicorn (÷ none)"),
    ("nginx-gunicorn", "gunicorn", "nginx + gzip in front of gunicorn ÷ gunicorn alone"),
]


def render_compress(meta: dict, summary: dict) -> str:
    """Per page: every stack's req/s, latency, bytes on the wire and CPU per request; then the issue's ratios."""
    cfg, m = meta["config"], meta["machine"]
    out = [
        "# Compression: rsgi vs gunicorn + GZipMiddleware vs nginx `gzip on` (`--preset compress`)",
        "",
        f"Django example project, {cfg['workers']} worker(s) per server (nginx: one worker process in front of "
        f"gunicorn's {cfg['workers']}), `wrk -t1 -H 'Accept-Encoding: gzip'` at "
        f"{', '.join(map(str, cfg['connections']))} connections; {cfg['rounds']} interleaved round(s) of "
        f"{cfg['duration']:g} s per stack and page ({cfg['warmup']:g} s warm-up, order rotated each round), medians "
        "over rounds. Before every run each stack's answer is checked: the compressing stacks must send "
        "`Content-Encoding: gzip` with a body that decodes to the whole page, the plain ones none (otherwise the "
        "run is FAILED). gzip against gzip: browsers offer `gzip, deflate, br, zstd`, for which rsgi would answer "
        "zstd while GZipMiddleware and nginx answer gzip. Machine: "
        f"{m['nproc']} CPUs ({m['cpu_model']}), load average {_load(m.get('loadavg_start'))} at the start and "
        f"{_load(m.get('loadavg_end'))} at the end; wrk shares the cores with the servers.",
        "",
    ]
    for conns in cfg["connections"]:
        for scenario, what in COMPRESS_SCENARIOS.items():
            cell = summary.get(f"{scenario}@{conns}")
            if cell:
                out += _compress_table(cell["servers"], scenario, what, conns, cfg["duration"])
    return "\n".join(out) + "\n"


def _compress_table(rows: dict, scenario: str, what: str, conns: int, duration: float) -> list[str]:
    out = [
        f"## `{scenario}`: {what}, {conns} connections",
        "",
        "| stack | compressed by | gzip level | bytes sent (of) | req/s | range | p50 ms | p99 ms | errors "
        "| server CPU ms per request | RSS MB |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in COMPRESS_SERVERS:
        row = rows.get(name)
        label, by, level = COMPRESS_LABELS[name]
        if row is None or row.get("rps") is None:
            why = (row or {}).get("reason", "")[:100]
            out.append(f"| {label} | {by} | {level} | | {_status(row)} | | | | | | {why} |")
            continue
        sent = f"{_f(row.get('probe_bytes'))} ({_f(row.get('probe_decoded_bytes'))})"
        cpu = row["cpu_s"] * 1000 / (row["rps"] * duration) if row.get("cpu_s") and row["rps"] else None
        out.append(
            f"| {label} | {by} | {level} | {sent} | {_f(row['rps'])} | {_f(row['rps_min'])}-{_f(row['rps_max'])} "
            f"| {_lat(row, 'p50_ms', '.1f')} | {_lat(row, 'p99_ms', '.1f')} | {row.get('errors', 0)} "
            f"| {_f(cpu, '.2f')} | {_f(row.get('rss_total_mb'))} |"
        )
    out += ["", "| ratio of req/s | value | issue #19's target |", "| --- | ---: | --- |"]
    for num, den, target, what in COMPRESS_TARGETS:
        ratio = _ratio(rows, num, den)
        verdict = "—" if ratio is None else ("met" if ratio >= target else "**not met**")
        out.append(f"| {what} | {_f(ratio, '.2f')}x | ≥ {target:g}x: {verdict} |")
    for num, den, what in COMPRESS_OTHER_RATIOS:
        out.append(f"| {what} | {_f(_ratio(rows, num, den), '.2f')}x | |")
    return [*out, ""]


def _ratio(rows: dict, num: str, den: str) -> float | None:
    a, b = rows.get(num, {}).get("rps"), rows.get(den, {}).get("rps")
    return a / b if a and b else None


COMPRESS = Preset(
    name="compress",
    what="issue #19's compression row: the ~54 KB page, gzip by rsgi vs gunicorn + GZipMiddleware vs nginx gzip",
    defaults={
        "servers": ",".join(COMPRESS_SERVERS),
        "scenarios": ",".join(COMPRESS_SCENARIOS),
        "connections": "64",
        "rounds": 5,
        "duration": 10.0,
        "warmup": 1.0,
        "workers": 1,
        "no_ceiling": True,
    },
    render=render_compress,
)

PRESETS = {p.name: p for p in [SEED, COMPRESS]}


def main(argv: list[str]) -> int:
    """Print a preset's tables from a run's JSON (bench/results/<stamp>-<label>.json)."""
    if len(argv) != 1:
        print("usage: python3 bench/presets.py bench/results/<stamp>-<preset>.json", file=sys.stderr)
        return 2
    raw = json.loads(Path(argv[0]).read_text())
    preset = PRESETS.get(raw["meta"]["config"].get("preset") or "seed", SEED)
    print(preset.render(raw["meta"], raw["summary"]), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
