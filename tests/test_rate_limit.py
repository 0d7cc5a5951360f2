"""--limit-rate through a real server and a real client (httpx): the 429 with Retry-After reaches
the client, the app is never called for a refused request, the access log has its line, the
refusal is counted in `rsgi_requests_refused_total{reason="rate_limited"}` and not logged one by
one, and a client behind the trusted proxy is told apart by X-Forwarded-For. The limiter itself
(burst, refill, /64s, prefixes, the table's bound) is tested in tests/rate_limit.rs."""

from __future__ import annotations

from pathlib import Path

import httpx
from conftest import StartServer, free_port, wait_until
from prometheus_client.parser import text_string_to_metric_families


def refused(metrics_port: int, reason: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "rsgi_requests_refused_total" and s.labels == {"reason": reason}:
                return s.value
    raise AssertionError(f"no rsgi_requests_refused_total{{reason={reason!r}}} in:\n{text}")


def test_over_the_limit_the_core_answers_429_without_the_app(serve: StartServer, tmp_path: Path) -> None:
    calls, access = tmp_path / "calls", tmp_path / "access.log"
    metrics_port = free_port()
    server = serve(
        "apps.edge:app",
        "--limit-burst",
        "3",
        "--health-path",
        "/-/health",
        "--metrics-bind",
        f"127.0.0.1:{metrics_port}",
        "--access-logfile",
        str(access),
        # From the environment, as RSGI_<SETTING> sets any setting.
        env={"RSGI_LIMIT_RATE": "1/m", "RSGI_TEST_CALLS": str(calls)},
        ready_path="/-/health",  # the health path never counts against the limit
    )
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for _ in range(3):
            r = client.get("/limited")
            assert (r.status_code, r.text) == (200, "app saw /limited")
        for _ in range(4):
            r = client.get("/limited")
            assert r.status_code == 429
            assert r.text == "429 Too Many Requests\n"
            # Three at once, then one a minute: the next one is due in a minute.
            assert r.headers["retry-after"] == "60"
        # Behind the trusted proxy (127.0.0.1 by default), another client has its own allowance.
        r = client.get("/limited", headers={"X-Forwarded-For": "203.0.113.9"})
        assert (r.status_code, r.text) == (200, "app saw /limited")
        assert client.get("/-/health").status_code == 200

    assert calls.read_text().splitlines() == ["/limited"] * 4
    wait_until(lambda: refused(metrics_port, "rate_limited") == 4 or None, 5, "the four refusals to be counted")
    assert refused(metrics_port, "overload") == 0

    def logged() -> list[str] | None:
        lines = access.read_text().splitlines() if access.exists() else []
        return lines if len(lines) >= 8 else None

    lines = wait_until(logged, 5, "the access log")
    assert sum('"GET /limited HTTP/1.1" 429 ' in line for line in lines) == 4
    assert sum('"GET /limited HTTP/1.1" 200 ' in line for line in lines) == 4
    # Counted, never logged one by one (the error log has no line per refusal).
    assert "429" not in server.log()
