"""A short soak for CI: the Django example (2 workers) under mixed load for about 20 seconds.

The long version is a script run by hand (``python tests/reliability/soak.py --minutes 30``, 5%
limit); this one shares its load mix and sampling but is too short to separate a slow leak from
warm-up noise, so its limit on RSS growth is looser (10%). No request may fail and no worker may be
replaced during the run.
"""

from __future__ import annotations

from conftest import Server

from reliability.soak import MIB, run_soak, verdict

DURATION = 20.0
WARMUP = 5.0
INTERVAL = 5.0
MAX_GROWTH = 10.0


def test_short_soak_of_the_django_example(django_server: Server) -> None:
    lines: list[str] = []
    result = run_soak(
        django_server.url,
        django_server.pid,
        workers=2,
        duration=DURATION,
        warmup=WARMUP,
        interval=INTERVAL,
        clients=4,
        show=lines.append,
    )
    growth = result.growth()
    report = "\n".join(
        [
            *lines,
            f"requests: {result.summary}",
            *(
                f"worker {pid}: {result.samples[0].rss[pid] / MIB:.1f} -> {result.samples[-1].rss[pid] / MIB:.1f} MiB"
                f" ({pct:+.2f}%)"
                for pid, pct in sorted(growth.items())
            ),
        ]
    )
    print(report)
    assert len(result.samples) >= 3, report
    assert result.summary.sent >= 1000, f"too little load to mean anything\n{report}"
    assert len(growth) == 2, report
    assert not verdict(result, MAX_GROWTH), "\n".join([*verdict(result, MAX_GROWTH), report])
