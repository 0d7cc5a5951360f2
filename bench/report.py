"""Records, medians and output of bench/run.py: the markdown report, the raw JSON and the PNG chart.

Results are grouped in cells, one per scenario and load connections (`hello@64`, `hello@1000`, ...). Each cell has
the in-process ceiling of every interface it applies to and one row per server: ok (medians over rounds),
failed, "not supported yet", or n/a (the scenario does not apply to that server, with the reason).
"""

from __future__ import annotations

import shlex
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from scenarios import SCENARIOS
from servers import SERVERS


@dataclass
class Run:
    """One run: a server, a scenario, a connections value, a round."""

    server: str
    scenario: str
    connections: int
    round: int
    status: str = "ok"  # ok | failed | unsupported | n/a
    reason: str = ""
    stderr_tail: str = ""
    command: list[str] = field(default_factory=list)
    probe_status: int | None = None
    probe_bytes: int | None = None
    probe_signed_in: bool | None = None  # session scenarios: the probe's page showed the demo user signed in
    probe_coding: str | None = None  # compression scenarios: the probe's Content-Encoding ("" for none)
    probe_decoded_bytes: int | None = None  # ... and its body decoded (probe_bytes: as sent)
    startup_s: float | None = None
    rps: float | None = None
    latency_ms: dict = field(default_factory=dict)
    requests: int | None = None
    errors: int | None = None
    error_detail: dict = field(default_factory=dict)
    rss_total_mb: float | None = None
    pss_total_mb: float | None = None  # peak of the tree's summed PSS (/proc/<pid>/smaps_rollup)
    rss_per_process_mb: list = field(default_factory=list)
    balance: dict = field(default_factory=dict)  # --balance: connections held per worker (procs.ConnSampler)
    cpu_s: float | None = None
    client_cpu_s: float | None = None
    loadavg_1m: float | None = None
    idle_clients: dict = field(default_factory=dict)
    load_output: str = ""


def cell_key(scenario: str, connections: int) -> str:
    return f"{scenario}@{connections}"


def med(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


STATUS_LABEL = {"failed": "FAILED", "unsupported": "not supported yet", "n/a": "n/a", "not run": "not run"}


# ----------------------------------------------------------------------------------------------------- summary


def _server_row(mine: list[Run]) -> dict:
    ok = [r for r in mine if r.status == "ok"]
    row: dict = {"rounds_ok": len(ok), "rounds": len(mine)}
    if not ok:
        row["status"] = mine[0].status if mine else "not run"
        row["reason"] = next((r.reason for r in mine if r.reason), "")
        return row
    rps = [r.rps for r in ok]
    per_proc: dict[int, list] = {}
    for r in ok:
        for i, p in enumerate(sorted(r.rss_per_process_mb, key=lambda e: (e["role"] != "main", e["pid"]))):
            per_proc.setdefault(i, []).append(p["peak_rss_mb"])
    idle = [r.idle_clients for r in ok if r.idle_clients]
    row |= {
        "status": "ok",
        "rps": med(rps),
        "rps_min": min(rps),
        "rps_max": max(rps),
        "mean_ms": med([r.latency_ms.get("mean") for r in ok]),
        "p50_ms": med([r.latency_ms.get("p50") for r in ok]),
        "p99_ms": med([r.latency_ms.get("p99") for r in ok]),
        "errors": sum(r.errors or 0 for r in ok),
        "timeouts": sum(r.error_detail.get("timeout", 0) for r in ok),
        "rss_total_mb": med([r.rss_total_mb for r in ok]),
        "pss_total_mb": med([r.pss_total_mb for r in ok]),
        "rss_per_process_mb": [med(v) for _, v in sorted(per_proc.items())],
        "cpu_s": med([r.cpu_s for r in ok]),
        "client_cpu_s": med([r.client_cpu_s for r in ok]),
        "probe_status": ok[0].probe_status,
        "probe_bytes": ok[0].probe_bytes,
        "probe_coding": ok[0].probe_coding,
        "probe_decoded_bytes": ok[0].probe_decoded_bytes,
    }
    balances = [r.balance["per_worker"] for r in ok if r.balance.get("per_worker")]
    if balances:  # per round: median count per worker over the samples, highest first
        row["balance_rounds"] = balances
    signed_in = [r.probe_signed_in for r in ok if r.probe_signed_in is not None]
    if signed_in:
        row["probe_signed_in"] = all(signed_in)
    if idle:
        row["idle_open_min"] = min(i.get("open_min", 0) for i in idle)
        row["idle_target"] = idle[0].get("target")
        row["idle_server_closes"] = sum(i.get("server_closes", 0) for i in idle)
        row["idle_connect_failures"] = sum(i.get("connect_failures", 0) for i in idle)
    return row


def summarise(runs: list[Run], ceilings: list[dict], cfg_servers: list[str], cells: list[tuple], base: str) -> dict:
    """Medians per cell. `cells`: (scenario, connections) in report order; `ceilings`: one dict per measurement."""
    summary: dict = {}
    for scn, conns in cells:
        ceil = {}
        for iface in ("wsgi", "asgi"):
            mine = [c for c in ceilings if c["scenario"] == scn and c["interface"] == iface]
            if mine:
                values = [c["calls_per_s"] for c in mine if c["status"] == "ok"]
                failures = [c["reason"] for c in mine if c["status"] != "ok"]
                ceil[iface] = {"median": med(values), "rounds": values, "failures": failures}
        rows = {}
        for name in cfg_servers:
            row = _server_row([r for r in runs if r.scenario == scn and r.connections == conns and r.server == name])
            iface_ceiling = ceil.get(SERVERS[name].interface, {}).get("median")
            if row.get("rps") is not None:
                row["pct_of_ceiling"] = 100.0 * row["rps"] / iface_ceiling if iface_ceiling else None
            rows[name] = row
        # The baseline, or its ASGI entry (rsgi -> rsgi-asgi) in cells where the baseline itself is n/a.
        cell_base = next((b for b in (base, f"{base}-asgi") if rows.get(b, {}).get("rps")), None)
        base_rps = rows[cell_base]["rps"] if cell_base else None
        for row in rows.values():
            row["base_ratio"] = base_rps / row["rps"] if base_rps and row.get("rps") else None
        summary[cell_key(scn, conns)] = {
            "scenario": scn,
            "connections": conns,
            "ceilings": ceil,
            "servers": rows,
            "baseline": cell_base,
        }
    return summary


# ---------------------------------------------------------------------------------------------------- markdown


def _overview(summary: dict, servers: list[str]) -> list[str]:
    out = [
        "## Overview: requests/s (median over rounds)",
        "",
        "Websocket cells are echoed messages/s. n/a: the scenario does not apply to that server (reasons under each "
        "table below); FAILED: see Failures.",
        "",
        "| scenario | conns | " + " | ".join(servers) + " | ceiling WSGI | ceiling ASGI |",
        "| --- | ---: | " + " | ".join("---:" for _ in servers) + " | ---: | ---: |",
    ]
    for data in summary.values():
        sc = SCENARIOS[data["scenario"]]
        conns = f"{data['connections']}" + (f" + {sc.idle_clients} idle" if sc.idle_clients else "")
        cells = []
        for name in servers:
            row = data["servers"][name]
            cells.append(fmt(row["rps"]) if row.get("rps") is not None else STATUS_LABEL[row["status"]])
        ceil = [fmt(data["ceilings"].get(i, {}).get("median")) for i in ("wsgi", "asgi")]
        ceil = [c if c != "—" or i in data["ceilings"] else "" for c, i in zip(ceil, ("wsgi", "asgi"), strict=True)]
        out.append(f"| {data['scenario']} | {conns} | " + " | ".join(cells) + f" | {ceil[0]} | {ceil[1]} |")
    # Only scenarios where an rsgi server really had no row (the feature may have landed since).
    shown = {
        data["scenario"]
        for data in summary.values()
        if any(SERVERS[n].dist == "rsgi" and r.get("rps") is None for n, r in data["servers"].items() if n in SERVERS)
    }
    pending = sorted({(sc.name, sc.pending) for sc in SCENARIOS.values() if sc.pending and sc.name in shown})
    if pending:
        out += ["", "Pending rsgi features (rsgi's cells are n/a): " + "; ".join(f"{n}: {p}" for n, p in pending) + "."]
    return [*out, ""]


def _cell_table(data: dict, base: str, paths: dict, ws_client: str) -> list[str]:
    sc = SCENARIOS[data["scenario"]]
    conns = data["connections"]
    path = paths.get(sc.name, sc.path)
    load = {"http": "wrk -t1", "h2": "h2load -t1 -m1", "ws": ws_client}[sc.kind]
    extra = f" while {sc.idle_clients} idle keep-alive connections are held open" if sc.idle_clients else ""
    out = [f"## {sc.name} — {sc.method} {path}, {conns} connections", "", f"{sc.what}. Load: `{load}`{extra}.", ""]
    for iface, ceil in data["ceilings"].items():
        rounds = ", ".join(f"{v:,.0f}" for v in ceil["rounds"]) or "failed"
        how = "one thread" if iface == "wsgi" else "one event loop"
        out += [
            f"Ceiling ({iface.upper()}, in-process, no network, {how}): **{fmt(ceil['median'])} calls/s** ({rounds}).",
            "",
        ]
        if ceil["failures"]:
            out += ["Ceiling failure:", "", "```", ceil["failures"][0], "```", ""]
    unit = "msg/s" if sc.kind == "ws" else "rps"
    out += [
        f"| server | {unit} | range | mean ms | p50 ms | p99 ms | errors | RSS MB total | PSS MB total "
        f"| RSS MB per process | CPU s | client CPU s | % of ceiling | {data['baseline'] or base} x | notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    not_applicable: dict[str, list[str]] = {}
    for name, row in data["servers"].items():
        if row["status"] == "n/a":
            not_applicable.setdefault(row["reason"], []).append(name)
            continue
        if row.get("rps") is None:
            label = STATUS_LABEL[row["status"]]
            out.append(f"| {name} | **{label}** |" + " |" * 12 + f" {row['reason'][:120]} |")
            continue
        per_proc = " + ".join(fmt(v, ".0f") for v in row["rss_per_process_mb"])
        notes = []
        if row["probe_status"] is not None and not 200 <= row["probe_status"] < 300:
            notes.append(f"probe: HTTP {row['probe_status']}")
        if row.get("probe_signed_in") is False:
            notes.append("probe: the page did not show the demo user signed in")
        if row.get("probe_coding") is not None:
            coding = row["probe_coding"] or "not compressed"
            notes.append(f"probe: {coding}, {fmt(row['probe_bytes'])} of {fmt(row['probe_decoded_bytes'])} bytes")
        if row.get("balance_rounds"):
            notes.append("connections per worker: " + ", ".join(balance_text(b) for b in row["balance_rounds"]))
        if "idle_target" in row:
            notes.append(
                f"idle: ≥{row['idle_open_min']}/{row['idle_target']} open, {row['idle_server_closes']} closed by "
                f"server, {row['idle_connect_failures']} failed"
            )
        out.append(
            f"| {name} | {fmt(row['rps'])} | {fmt(row['rps_min'])}-{fmt(row['rps_max'])} "
            f"| {fmt(row['mean_ms'], '.2f')} | {fmt(row['p50_ms'], '.2f')} | {fmt(row['p99_ms'], '.2f')} "
            f"| {row['errors']} | {fmt(row['rss_total_mb'], '.0f')} | {fmt(row['pss_total_mb'], '.0f')} "
            f"| {per_proc} | {fmt(row['cpu_s'], '.2f')} "
            f"| {fmt(row['client_cpu_s'], '.2f')} "
            f"| {fmt(row.get('pct_of_ceiling'), '.0f', '%')} | {fmt(row['base_ratio'], '.2f', 'x')} "
            f"| {'; '.join(notes)} |"
        )
    out.append("")
    for reason, names in not_applicable.items():
        out += [f"n/a — {', '.join(names)}: {reason}.", ""]
    return out


def render_markdown(meta: dict, summary: dict, runs: list[Run], chart_name: str | None) -> str:
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
        f"| python (servers) | {m['python']} (`{m['python_executable']}`) |",
        f"| django | {m['django']} |",
        f"| load generators | {m['wrk']} (`-t1 --timeout {cfg['timeout']:g}s`); {m['h2load']}; "
        f"{m.get('ws_client') or 'websockets ' + m['websockets']} |",
        f"| open files limit (soft) | {m['nofile']} |",
        f"| load average at start / end (1, 5, 15 min) | {fmt_load(m['loadavg_start'])} "
        f"/ {fmt_load(m['loadavg_end'])} |",
        f"| repo commit | {m['git_commit']} |",
        "",
    ]
    out += ["| server | interface | version | concurrency defaults and notes |", "| --- | --- | --- | --- |"]
    for name in cfg["servers"]:
        s = SERVERS[name]
        out.append(f"| {name} | {s.interface} | {meta['versions'][name]} | {s.notes} |")
    if cfg["threads"]:
        threads = f"{cfg['threads']} (passed to rsgi, gunicorn-gthread and granian; see notes for the others)"
    else:
        threads = "each server's default (see notes)"
    out += [
        "",
        f"Rounds: {cfg['rounds']} (server order rotated each round) · duration {cfg['duration']:g} s · warm-up "
        f"{cfg['warmup']:g} s · connections {', '.join(map(str, cfg['connections']))} · workers {cfg['workers']} "
        f"· threads: {threads}" + (" · `--preload` where the server has it" if cfg.get("preload") else "") + ".",
        "Values are medians over successful rounds; errors are summed over rounds (socket errors, timeouts and "
        "non-2xx/3xx answers). RSS is the peak during the measured run, summed over the server's process tree (per "
        "process: main first, then workers); PSS likewise, from /proc/<pid>/smaps_rollup (pages shared between the "
        "processes counted once in total). Mean ms is wrk's average latency. CPU s is what the server tree used "
        "during the measured run; client CPU s is the load generator's own (near the duration: the client was "
        "saturated and the number is a floor). "
        f"`{base} x` is {base}'s rps divided by that server's rps (>1: {base} is faster); in tables where {base} "
        f"is n/a, {base}-asgi's (when run); — when neither has a result.",
        "",
    ]
    if chart_name:
        out += [f"![requests/s per server and scenario]({chart_name})", ""]
    out += _overview(summary, cfg["servers"])
    for data in summary.values():
        out += _cell_table(data, base, meta.get("paths", {}), m.get("ws_client", "bench/wsload.py"))
    out += _failures(runs)
    out += ["## Commands", "", "As run (first run of each server; the port changes every run):", ""]
    shown = set()
    for r in runs:
        if r.command and r.server not in shown:
            shown.add(r.server)
            out += [f"- {r.server}: `{shlex.join(r.command)}`"]
    return "\n".join([*out, ""])


def _failures(runs: list[Run]) -> list[str]:
    failed = [r for r in runs if r.status in ("failed", "unsupported")]
    if not failed:
        return []
    out = ["## Failures", ""]
    seen = set()
    for r in failed:
        key = (r.server, r.reason.removeprefix("skipped: "), r.stderr_tail)
        if key in seen or r.reason.startswith("skipped:"):
            continue
        seen.add(key)
        label = STATUS_LABEL[r.status]
        out += [f"**{r.server}** / {r.scenario} at {r.connections} / round {r.round + 1}: {label} — {r.reason}", ""]
        if r.command:
            out += ["```", shlex.join(r.command), "```", ""]
        if r.stderr_tail:
            out += ["Output tail:", "", "```", r.stderr_tail, "```", ""]
    return out


def balance_text(per_worker: list) -> str:
    """Connections per worker, highest first: `62/28/10/0`."""
    return "/".join(f"{v:g}" for v in per_worker)


def fmt_load(load) -> str:
    return ", ".join(f"{x:.2f}" for x in load) if load else "?"


# ------------------------------------------------------------------------------------------------------- chart


def render_chart(summary: dict, servers: list[str], path: Path) -> bool:
    """Grouped bars, one panel per connections value: requests/s per scenario and server (log scale), with the
    in-process ceilings hatched. Returns False when matplotlib is missing."""
    try:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels: dict[int, list[dict]] = {}
    for data in summary.values():
        panels.setdefault(data["connections"], []).append(data)
    series = [*servers, "ceiling WSGI", "ceiling ASGI"]
    tab10, tab20 = plt.get_cmap("tab10"), plt.get_cmap("tab20")
    palette = [tab10(i) for i in range(10) if i != 7] + [tab20(i) for i in (1, 3, 5, 7, 9, 11, 13, 17, 19)]
    colors = {name: palette[i % len(palette)] for i, name in enumerate(servers)}  # grey is kept for the ceilings
    colors |= {"ceiling WSGI": "#bbbbbb", "ceiling ASGI": "#777777"}
    widest = max(len(cells) for cells in panels.values())
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(8.0, 1.3 * widest + 3), 4.2 * len(panels)), squeeze=False, sharey=False
    )
    used: set[str] = set()
    bars = {}  # (connections, cell index) -> [(series, value, min, max)]
    for conns, cells in panels.items():
        for j, data in enumerate(cells):
            values = bars.setdefault((conns, j), [])
            for name in series:
                if name.startswith("ceiling"):
                    ceil = data["ceilings"].get(name.split()[1].lower(), {})
                    value, lo, hi = ceil.get("median"), None, None
                else:
                    row = data["servers"][name]
                    value, lo, hi = row.get("rps"), row.get("rps_min"), row.get("rps_max")
                if value:
                    values.append((name, value, lo, hi))
    width = 0.84 / max([len(v) for v in bars.values()] + [1])  # one bar width for the whole figure
    for ax, (conns, cells) in zip(axes[:, 0], sorted(panels.items()), strict=True):
        for j in range(len(cells)):
            values = bars[(conns, j)]
            for k, (name, value, lo, hi) in enumerate(values):
                x = j + (k - (len(values) - 1) / 2) * width
                err = [[value - lo], [hi - value]] if lo is not None and hi is not None else None
                hatch = "//" if name.startswith("ceiling") else None
                ax.bar(x, value, width, yerr=err, capsize=2, color=colors[name], hatch=hatch, edgecolor="white")
                used.add(name)
        ax.set_xticks(range(len(cells)), [d["scenario"] for d in cells], rotation=20)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylabel("requests/s (log scale)")
        idle = [
            f"{d['scenario']} +{SCENARIOS[d['scenario']].idle_clients} idle"
            for d in cells
            if SCENARIOS[d["scenario"]].idle_clients
        ]
        title = f"{conns} connections" + (f" ({', '.join(idle)})" if idle else "")
        ax.set_title(title, fontsize=10)
        ax.set_axisbelow(True)
        ax.grid(axis="y", alpha=0.3, which="both")
    handles = [
        plt.Rectangle((0, 0), 1, 1, facecolor=colors[n], hatch="//" if n.startswith("ceiling") else None)
        for n in series
        if n in used
    ]
    fig.legend(handles, [n for n in series if n in used], loc="upper left", bbox_to_anchor=(0.86, 0.93), fontsize=8)
    fig.suptitle("Django example: median requests/s (websockets: messages/s); whiskers: min-max over rounds")
    fig.tight_layout(rect=(0, 0, 0.85, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
