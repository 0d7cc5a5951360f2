"""--drain-delay: on SIGTERM the workers keep accepting and serving for the delay while the health
path answers 503 (and each response closes its connection), so a load balancer takes the server
out of rotation before it stops listening; then the graceful stop runs as without it.

Real clients against a real server: a load of keep-alive clients and a health poller run through
the SIGTERM; every wait polls the server (the health path, the process) rather than sleeping.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import Raw, StartServer
from reliability.loadgen import LoadGen, Req, ok_count, wait_until, wait_workers
from rsgi.config import ConfigError, build
from rsgi.policies import KILL_SLACK

WSGI_APP = "apps.deploy:app"
ASGI_APP = "apps.deploy:asgi_app"
HEALTH = "/-/health"


class HealthPoller:
    """Asks the health path every 20 ms on fresh connections, recording (time, status or None)."""

    def __init__(self, url: str) -> None:
        self.seen: list[tuple[float, int | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url + HEALTH,), daemon=True)
        self._thread.start()

    def _run(self, url: str) -> None:
        while not self._stop.is_set():
            try:
                status: int | None = httpx.get(url, timeout=5).status_code
            except httpx.HTTPError:
                status = None
            self.seen.append((time.monotonic(), status))
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def first(self, status: int | None, after: float = 0.0) -> float | None:
        return next((t for t, s in self.seen if s == status and t >= after), None)


def health(server_url: str) -> int:
    return httpx.get(server_url + HEALTH, timeout=5).status_code


@pytest.mark.parametrize("app", [WSGI_APP, ASGI_APP])
def test_serves_through_the_delay_then_stops_cleanly(serve: StartServer, app: str) -> None:
    delay = 2.0
    server = serve(app, "--workers", "2", "--health-path", HEALTH, "--drain-delay", str(delay))
    assert health(server.url) == 200
    poller = HealthPoller(server.url)
    # The clients stand for a load balancer's traffic, which stops once the health path says 503
    # and the balancer has acted on it; they stop sending a little before the delay runs out.
    with LoadGen(server.url, [Req("GET", "/")], clients=4, duration=60) as load:
        load.wait_for(lambda rs: ok_count(rs) >= 50, timeout=10, what="warm-up")
        with Raw(server.port) as kept:
            assert kept.get("/").header("connection") is None  # keep-alive before the TERM
            sent = time.monotonic()
            server.signal(signal.SIGTERM)
            wait_until(lambda: poller.first(503, sent), 5, "the health path to answer 503")
            # A connection opened before the TERM is told to close after its next response.
            during = kept.get("/")
            assert (during.status, during.header("connection")) == (200, "close")
        # New connections are still accepted and served during the delay.
        with httpx.Client(base_url=server.url, timeout=5) as fresh:
            assert fresh.get("/").text == "ok"
        assert server.proc.poll() is None
        load.wait_for(lambda rs: any(r.start > sent + delay / 2 and r.ok for r in rs), 5, "requests in the delay")
        wait_until(lambda: time.monotonic() > sent + delay - 0.3, delay, "the end of the delay, nearly")
        summary = load.stop()
    assert server.wait(30) == 0
    exited = time.monotonic()
    poller.stop()
    assert summary.failed == 0, summary
    in_delay = [r for r in load.results if r.start > sent]
    assert len(in_delay) >= 20 and all(r.ok for r in in_delay)
    assert exited - sent >= delay
    # Health went 200 -> 503 and never back, until the server stopped answering at all.
    statuses = [s for t, s in poller.seen if t > sent]
    assert statuses[: statuses.index(503)].count(None) == 0
    assert 200 not in statuses[statuses.index(503) :], poller.seen
    log = server.log()
    assert "still serving for 2s (--drain-delay)" in log
    assert "stopped" in log


def test_a_second_sigterm_ends_the_delay(serve: StartServer) -> None:
    server = serve(WSGI_APP, "--health-path", HEALTH, "--drain-delay", "60")
    sent = time.monotonic()
    server.signal(signal.SIGTERM)
    wait_until(lambda: health(server.url) == 503, 5, "the health path to answer 503")
    assert httpx.get(server.url + "/", timeout=5).text == "ok"
    server.signal(signal.SIGTERM)
    assert server.wait(20) == 0
    assert time.monotonic() - sent < 20


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT])
def test_sigint_and_sigquit_skip_the_delay(serve: StartServer, sig: signal.Signals) -> None:
    server = serve(WSGI_APP, "--health-path", HEALTH, "--drain-delay", "60")
    sent = time.monotonic()
    server.signal(sig)
    assert server.wait(20) == 0
    assert time.monotonic() - sent < 20
    assert "--drain-delay" not in server.log()


def test_a_worker_started_during_the_delay_is_unready_too(serve: StartServer) -> None:
    server = serve(WSGI_APP, "--health-path", HEALTH, "--drain-delay", "60")
    [old] = server.worker_pids()
    server.signal(signal.SIGTERM)
    wait_until(lambda: health(server.url) == 503, 5, "the health path to answer 503")
    os.kill(old, signal.SIGKILL)
    [new] = wait_workers(server.pid, 1, 15, exclude={old})
    # The replacement serves, but answers 503 on the health path from its first request.
    wait_until(lambda: httpx.get(server.url + "/pid", timeout=5).text == str(new), 15, "the new worker to serve")
    assert health(server.url) == 503
    server.signal(signal.SIGTERM)
    assert server.wait(20) == 0


def test_drain_delay_from_the_config_file_and_the_environment(tmp_path: Path) -> None:
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("drain_delay = 7\n")
    assert build({"app": "m:app", "config": str(conf)}, environ={}).drain_delay == 7.0
    assert build({"app": "m:app", "config": str(conf)}, environ={"RSGI_DRAIN_DELAY": "3.5"}).drain_delay == 3.5
    assert build({"app": "m:app", "drain_delay": 1.0}, environ={"RSGI_DRAIN_DELAY": "3.5"}).drain_delay == 1.0
    assert build({"app": "m:app"}, environ={}).drain_delay == 0.0
    for bad in ("-1", "nan", "inf"):
        with pytest.raises(ConfigError, match="drain_delay"):
            build({"app": "m:app"}, environ={"RSGI_DRAIN_DELAY": bad})


def test_the_kubernetes_example_gives_the_drain_time_to_finish() -> None:
    yaml = pytest.importorskip("yaml")
    examples = Path(__file__).resolve().parent.parent / "examples" / "kubernetes"
    [deployment] = yaml.safe_load_all((examples / "deployment.yaml").read_text())
    [service] = yaml.safe_load_all((examples / "service.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    cfg = build({"app": "mysite.asgi:application"}, environ=env)
    assert cfg.drain_delay > 0 and cfg.health_path
    # SIGKILL must not come before the delay, the graceful timeout and rsgi's own slack are over.
    assert pod["terminationGracePeriodSeconds"] > cfg.drain_delay + cfg.graceful_timeout + KILL_SLACK
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == cfg.health_path
    # Out of rotation well within the delay.
    readiness = container["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] < cfg.drain_delay
    assert "lifecycle" not in container  # no preStop: the delay does its job
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
