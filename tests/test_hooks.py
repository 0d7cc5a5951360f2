"""gunicorn's server hooks (rsgi.hooks), defined in a gunicorn.conf.py and called by the real
server: each hook of the config files below appends one JSON line (its name, the pid it ran in,
what it read off `server`/`worker`/`req`/`resp`) to $HOOKS_LOG, and the tests wait on those lines."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import TESTS, Server, StartServer, base_env, wait_until

RECORD = """\
import json, os

def record(hook, **fields):
    with open(os.environ["HOOKS_LOG"], "a") as f:
        f.write(json.dumps({"hook": hook, "pid": os.getpid(), **fields}) + "\\n")
"""

EVERY_HOOK = (
    RECORD
    + """
workers = 2
threads = 1
timeout = 2
graceful_timeout = 5
loglevel = "info"

def on_starting(server):
    record("on_starting", server_pid=server.pid, workers=server.cfg.workers, bind=server.cfg.bind,
           num_workers=server.num_workers, preload=server.cfg.preload_app)

def when_ready(server):
    server.log.info("when_ready: ready")
    record("when_ready", server_pid=server.pid, loglevel=server.cfg.loglevel)

def nworkers_changed(server, new, old):
    record("nworkers_changed", new=new, old=old, num_workers=server.num_workers)

def pre_fork(server, worker):
    record("pre_fork", age=worker.age, worker_pid=worker.pid)

def post_fork(server, worker):
    record("post_fork", worker_pid=worker.pid, ppid=worker.ppid, age=worker.age, server_pid=server.pid)

def post_worker_init(worker):
    record("post_worker_init", worker_pid=worker.pid, alive=worker.alive, workers=worker.cfg.workers)

def worker_int(worker):
    record("worker_int", worker_pid=worker.pid)

def worker_abort(worker):
    record("worker_abort", worker_pid=worker.pid)

def worker_exit(server, worker):
    record("worker_exit", worker_pid=worker.pid, alive=worker.alive)

def child_exit(server, worker):
    record("child_exit", worker_pid=worker.pid, workers=sorted(server.WORKERS))

def on_reload(server):
    record("on_reload", server_pid=server.pid)

def on_exit(server):
    record("on_exit", server_pid=server.pid)
"""
)


def events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def named(path: Path, hook: str) -> list[dict[str, Any]]:
    return [e for e in events(path) if e["hook"] == hook]


def wait_count(path: Path, hook: str, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    return wait_until(lambda: (found := named(path, hook)) and len(found) >= n and found, timeout, f"{n} x {hook}")


def start(
    serve: StartServer, tmp_path: Path, conf: str, *args: str, app: str = "apps.hooks:app"
) -> tuple[Server, Path]:
    (tmp_path / "gunicorn.conf.py").write_text(textwrap.dedent(conf))
    log = tmp_path / "hooks.jsonl"
    server = serve(app, "-c", str(tmp_path / "gunicorn.conf.py"), *args, env={"HOOKS_LOG": str(log)})
    return server, log


def test_every_hook_runs_at_its_moment_in_the_right_process(serve: StartServer, tmp_path: Path) -> None:
    server, log = start(serve, tmp_path, EVERY_HOOK)
    sup = server.pid
    forks = wait_count(log, "post_worker_init", 2)
    first = events(log)
    order = [e["hook"] for e in first]
    assert order[:3] == ["nworkers_changed", "on_starting", "when_ready"], order
    assert first[0] == {"hook": "nworkers_changed", "pid": sup, "new": 2, "old": None, "num_workers": 2}
    starting = named(log, "on_starting")[0]
    assert starting["server_pid"] == sup and starting["workers"] == 2 and starting["num_workers"] == 2
    assert starting["bind"] == [f"127.0.0.1:{server.port}"] and starting["preload"] is False
    assert named(log, "when_ready")[0]["loglevel"] == "info"
    assert "when_ready: ready" in server.log()
    # pre_fork in the supervisor (no pid yet), post_fork and post_worker_init in the worker.
    assert [(e["pid"], e["age"], e["worker_pid"]) for e in named(log, "pre_fork")] == [(sup, 1, None), (sup, 2, None)]
    workers = {e["pid"] for e in named(log, "post_fork")}
    assert len(workers) == 2 and sup not in workers
    for e in named(log, "post_fork"):
        assert e["worker_pid"] == e["pid"] and e["ppid"] == sup and e["server_pid"] == sup
    assert {e["pid"] for e in forks} == workers and all(e["alive"] and e["workers"] == 2 for e in forks)
    assert set(server.worker_pids()) == workers

    # TTIN / TTOU: nworkers_changed in the supervisor; TTOU retires the oldest worker.
    server.signal(signal.SIGTTIN)
    wait_count(log, "post_worker_init", 3)
    server.signal(signal.SIGTTOU)
    wait_count(log, "child_exit", 1)
    changed = named(log, "nworkers_changed")
    assert [(e["pid"], e["new"], e["old"]) for e in changed] == [(sup, 2, None), (sup, 3, 2), (sup, 2, 3)]
    retired = named(log, "child_exit")[0]
    assert (
        retired["pid"] == sup and retired["worker_pid"] in workers and retired["worker_pid"] not in retired["workers"]
    )
    assert [e["pid"] for e in named(log, "worker_exit")] == [retired["worker_pid"]]

    # HUP: on_reload, then every worker replaced (worker_exit in each, child_exit in the supervisor).
    before = set(server.worker_pids())
    server.signal(signal.SIGHUP)
    wait_count(log, "child_exit", 1 + len(before))
    assert [e["pid"] for e in named(log, "on_reload")] == [sup]
    assert before <= {e["pid"] for e in named(log, "worker_exit")}
    wait_count(log, "post_worker_init", 5)

    # kill -9: child_exit only (the worker had no chance to run worker_exit).
    server.wait_ready()
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: any(e["worker_pid"] == victim for e in named(log, "child_exit")), 10, "child_exit of the killed")
    assert victim not in {e["pid"] for e in named(log, "worker_exit")}
    wait_count(log, "post_worker_init", 6)

    # --timeout: a stuck request; the supervisor sends SIGABRT; worker_abort then worker_exit in it.
    server.wait_ready()
    stuck = threading.Thread(target=lambda: _get(server.url + "/stuck", 30), daemon=True)
    stuck.start()
    aborted = wait_count(log, "worker_abort", 1, timeout=20)[0]
    wait_until(lambda: any(e["worker_pid"] == aborted["pid"] for e in named(log, "child_exit")), 10, "child_exit")
    assert aborted["worker_pid"] == aborted["pid"]
    assert aborted["pid"] in {e["pid"] for e in named(log, "worker_exit")}
    out = server.wait_log("killed by SIGABRT")
    assert "timed out" in out and "Thread" in out  # faulthandler still printed the stacks
    wait_count(log, "post_worker_init", 7)

    # INT: worker_int in every worker, then worker_exit, child_exit, and on_exit last.
    server.wait_ready()
    last = set(server.worker_pids())
    server.signal(signal.SIGINT)
    assert server.wait(20) == 0
    assert {e["pid"] for e in named(log, "worker_int")} == last
    assert last <= {e["pid"] for e in named(log, "worker_exit")}
    everything = events(log)
    assert everything[-1] == {"hook": "on_exit", "pid": sup, "server_pid": sup}
    children = {e["worker_pid"] for e in everything if e["hook"] == "child_exit"}
    assert children == {e["pid"] for e in named(log, "post_fork")}
    assert all(e["pid"] == sup for e in everything if e["hook"] in ("child_exit", "on_reload", "on_exit"))
    assert "server hook" not in server.log()  # no hook failed


REQUEST_HOOKS = (
    RECORD
    + """
def pre_request(worker, req):
    record("pre_request", worker_pid=worker.pid, method=req.method, path=req.path, query=req.query,
           uri=req.uri, version=list(req.version), headers=[h for h in req.headers if h[0] == "X-TEST"])

def post_request(worker, req, environ, resp):
    record("post_request", path=req.path, status=resp.status, code=resp.status_code,
           headers=resp.headers, length=resp.response_length, environ_path=environ["PATH_INFO"])

def post_worker_init(worker):
    raise RuntimeError("broken post_worker_init")

def worker_int(worker):
    record("worker_int")

def worker_exit(server, worker):
    record("worker_exit")

def on_exit(server):
    record("on_exit")
"""
)


def test_request_hooks_run_on_the_wsgi_thread_and_a_failing_hook_is_only_logged(
    serve: StartServer, tmp_path: Path
) -> None:
    server, log = start(serve, tmp_path, REQUEST_HOOKS)
    out = server.wait_log("server hook post_worker_init() failed")
    assert "Traceback" in out and "RuntimeError: broken post_worker_init" in out
    r = httpx.get(server.url + "/some/where?x=1&y=%20", headers={"X-Test": "yes"})
    assert r.status_code == 200  # still serving
    post = wait_count(log, "post_request", 2)  # wait_ready's request and this one
    pre = named(log, "pre_request")[-1]
    assert pre == {
        "hook": "pre_request",
        "pid": int(r.text),
        "worker_pid": int(r.text),
        "method": "GET",
        "path": "/some/where",
        "query": "x=1&y=%20",
        "uri": "/some/where?x=1&y=%20",
        "version": [1, 1],
        "headers": [["X-TEST", "yes"]],
    }
    assert post[-1] == {
        "hook": "post_request",
        "pid": int(r.text),
        "path": "/some/where",
        "status": "200 OK",
        "code": 200,
        "headers": [["Content-Type", "text/plain"], ["Content-Length", str(len(r.content))]],
        "length": len(r.content),
        "environ_path": "/some/where",
    }
    # TERM is no worker_int (gunicorn's too): worker_exit, then on_exit.
    server.signal(signal.SIGTERM)
    assert server.wait(20) == 0
    assert [e["hook"] for e in events(log)][-2:] == ["worker_exit", "on_exit"]
    assert not named(log, "worker_int")


@pytest.mark.parametrize("hook", ["on_starting", "when_ready"])
def test_a_failing_start_hook_stops_start_up(tmp_path: Path, hook: str) -> None:
    conf, log, pid = tmp_path / "gunicorn.conf.py", tmp_path / "hooks.jsonl", tmp_path / "rsgi.pid"
    conf.write_text(RECORD + f"def {hook}(server):\n    raise ValueError('no start today')\n")
    conf.write_text(conf.read_text() + "def post_fork(server, worker):\n    record('post_fork')\n")
    done = subprocess.run(
        [sys.executable, "-m", "rsgi", "apps.hooks:app", "-c", str(conf), "--bind", "127.0.0.1:0", "--pid", str(pid)],
        cwd=TESTS,
        env=base_env(HOOKS_LOG=str(log)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1, done.stderr
    assert f"server hook {hook}() failed" in done.stderr and "ValueError: no start today" in done.stderr
    assert not named(log, "post_fork")  # no worker was forked
    assert not pid.exists()


DUAL_HOOKS = (
    RECORD
    + """
def post_fork(server, worker):
    record("post_fork")

def worker_int(worker):
    record("worker_int", worker_pid=worker.pid)

def pre_request(worker, req):
    record("pre_request", path=req.path)
"""
)


def test_process_hooks_run_with_both_interfaces_and_request_hooks_on_the_wsgi_side(
    serve: StartServer, tmp_path: Path
) -> None:
    server, log = start(
        serve,
        tmp_path,
        DUAL_HOOKS,
        "--wsgi",
        "apps.dual:wsgi",
        "--asgi-path",
        "/a/",
        "--loop",
        "uvloop",
        app="apps.dual:asgi",
    )
    worker = named(log, "post_fork")[0]["pid"]
    assert "wsgi pid" in httpx.get(server.url + "/w").text
    wait_until(lambda: any(e["path"] == "/w" for e in named(log, "pre_request")), 10, "pre_request of /w")
    assert "asgi pid" in httpx.get(server.url + "/a/b").text  # the ASGI app: no pre_request
    assert all(e["path"] != "/a/b" for e in named(log, "pre_request"))
    server.signal(signal.SIGINT)  # uvloop runs the loop: worker_int still comes
    assert server.wait(20) == 0
    assert [e["worker_pid"] for e in named(log, "worker_int")] == [worker]


# OpenTelemetry's instructions for gunicorn: the tracer provider and its exporting thread are made
# in post_fork (threads do not survive a fork); ConsoleSpanExporter instead of OTLP here.
OTEL = """\
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter


def post_fork(server, worker):
    server.log.info("Worker spawned (pid: %s)", worker.pid)
    resource = Resource.create(attributes={"service.name": "rsgi-hooks-test"})
    trace.set_tracer_provider(TracerProvider(resource=resource))
    span_processor = BatchSpanProcessor(ConsoleSpanExporter(), schedule_delay_millis=100)
    trace.get_tracer_provider().add_span_processor(span_processor)
"""


def test_opentelemetry_post_fork_snippet_exports_spans_from_the_worker(serve: StartServer, tmp_path: Path) -> None:
    server, _ = start(serve, tmp_path, OTEL)
    out = server.wait_log("Worker spawned (pid: ")
    worker = int(out.split("Worker spawned (pid: ", 1)[1].split(")", 1)[0])
    assert int(httpx.get(server.url + "/traced").text) == worker
    out = server.wait_log('"name": "traced-request"')
    assert f'"worker.pid": {worker}' in out and '"service.name": "rsgi-hooks-test"' in out


def _get(url: str, timeout: float) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(url, timeout=timeout)
