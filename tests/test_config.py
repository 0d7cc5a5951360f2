"""Configuration: defaults < config file (-c, gunicorn.conf.py style) < RSGI_* environment < flags.

Checked two ways: in-process through the pure functions `rsgi.config.build` and `rsgi.cli.parse`,
and end to end through `python -m rsgi ... --check-config` (and a few real servers).
"""

from __future__ import annotations

import ast
import multiprocessing
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from conftest import TESTS, StartServer, base_env, free_port, run_rsgi
from rsgi.cli import parse
from rsgi.config import FIELDS, ConfigError, build

APP = "apps.basic:hello"

SEED_GUNICORN_CONF = """\
import multiprocessing

bind = "0.0.0.0:8123"
workers = multiprocessing.cpu_count() * 2 + 1
worker_class = "sync"
threads = 4
timeout = 30
keepalive = 7
max_requests = 1000
max_requests_jitter = 50
preload_app = True
accesslog = "-"
errorlog = "-"
loglevel = "warning"
backlog = 512
"""


# -- helpers ---------------------------------------------------------------------------------


def check_config(*args: str, env: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """Run `--check-config` and return the printed settings (parsed) and stderr."""
    proc = run_rsgi(*args, "--check-config", env=env)
    assert proc.returncode == 0, proc.stderr
    settings: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        name, sep, value = line.partition(" = ")
        assert sep, f"unexpected --check-config line {line!r}"
        settings[name.strip()] = ast.literal_eval(value.strip())
    return settings, proc.stderr


def assert_config_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit code 2 and a one-line `rsgi: error: ...` naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "rsgi: error:" in proc.stderr or "error:" in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("rsgi: warning:")]


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def no_port_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """`Config.binds()` consults the process environment; keep the runner's PORT out of it."""
    monkeypatch.delenv("PORT", raising=False)


# -- defaults and precedence, in process -----------------------------------------------------


def test_defaults(no_port_env: None) -> None:
    cfg = build({"app": APP}, {})
    assert cfg.workers == 1
    assert cfg.threads == 1
    assert cfg.keepalive == 5.0
    assert cfg.graceful_timeout == 30.0
    assert cfg.backlog == 2048
    assert cfg.log_level == "info"
    assert cfg.preload is False
    assert cfg.binds() == ["127.0.0.1:8000"]


def test_web_concurrency_sets_workers() -> None:
    assert build({"app": APP}, {"WEB_CONCURRENCY": "3"}).workers == 3


def test_rsgi_workers_beats_web_concurrency() -> None:
    assert build({"app": APP}, {"WEB_CONCURRENCY": "3", "RSGI_WORKERS": "5"}).workers == 5


def test_flag_beats_environment() -> None:
    environ = {"WEB_CONCURRENCY": "3", "RSGI_WORKERS": "5", "RSGI_KEEPALIVE": "8"}
    flags, _ = parse([APP, "-w", "2", "--keepalive", "9"])
    cfg = build(flags, environ)
    assert (cfg.workers, cfg.keepalive) == (2, 9.0)


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    conf = write(
        tmp_path / "gunicorn.conf.py",
        """\
        workers = 3
        keepalive = 7
        loglevel = "warning"
        threads = 2
        """,
    )
    environ = {"RSGI_WORKERS": "4", "RSGI_KEEPALIVE": "8"}
    flags, _ = parse([APP, "-c", str(conf), "--keepalive", "9"])
    cfg = build(flags, environ)
    assert cfg.threads == 2  # file over default
    assert cfg.log_level == "warning"  # file over default
    assert cfg.workers == 4  # environment over file
    assert cfg.keepalive == 9.0  # flag over environment and file
    assert cfg.graceful_timeout == 30.0  # untouched default


def test_config_file_can_come_from_the_environment(tmp_path: Path) -> None:
    conf = write(tmp_path / "conf.py", "workers = 6\n")
    assert build({"app": APP}, {"RSGI_CONFIG": str(conf)}).workers == 6


def test_environment_value_types() -> None:
    environ = {
        "RSGI_PRELOAD": "true",
        "RSGI_SERVER_HEADER": "0",
        "RSGI_BIND": "127.0.0.1:9001, unix:/tmp/rsgi-test.sock",
        "RSGI_GRACEFUL_TIMEOUT": "2.5",
        "RSGI_LOG_LEVEL": "DEBUG",
        "RSGI_THREADS": "",  # empty means unset
    }
    cfg = build({"app": APP}, environ)
    assert cfg.preload is True
    assert cfg.server_header is False
    assert cfg.bind == ["127.0.0.1:9001", "unix:/tmp/rsgi-test.sock"]
    assert cfg.graceful_timeout == 2.5
    assert cfg.log_level == "debug"
    assert cfg.threads == 1


def test_app_from_the_environment() -> None:
    assert build({}, {"RSGI_APP": APP}).app == APP
    assert build({}, {"APP": APP}).app == APP


def test_port_environment_binds_all_interfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "5123")
    cfg = build({"app": APP}, {"PORT": "5123"})
    assert cfg.binds() == ["0.0.0.0:5123"]
    # An explicit address still wins over PORT.
    assert build({"app": APP, "bind": ["127.0.0.1:9000"]}, {"PORT": "5123"}).binds() == ["127.0.0.1:9000"]


def test_port_is_taken_from_the_environ_given_to_build(no_port_env: None) -> None:
    assert build({"app": APP}, {"PORT": "5123"}).binds() == ["0.0.0.0:5123"]


@pytest.mark.parametrize(
    ("flags", "environ", "message"),
    [
        ({"app": APP, "workers": 0}, {}, "workers must be at least 1"),
        ({"app": APP, "threads": 0}, {}, "threads must be at least 1"),
        ({"app": APP, "keepalive": 0.0}, {}, "keepalive must be positive"),
        ({"app": APP}, {"RSGI_WORKERS": "zz"}, "workers: cannot use 'zz'"),
        ({"app": APP}, {"WEB_CONCURRENCY": "lots"}, "workers: cannot use 'lots'"),
        ({"app": APP}, {"RSGI_PRELOAD": "maybe"}, "preload: cannot use 'maybe'"),
        ({"app": APP}, {"RSGI_LOG_LEVEL": "loud"}, "log_level: 'loud' is not one of"),
        ({}, {}, "no application given"),
        ({"app": "justaname"}, {}, "should look like module:attribute"),
    ],
)
def test_bad_values_raise_config_error(flags: dict[str, Any], environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build(flags, environ)


# -- the command line, in process ------------------------------------------------------------


def test_parse_returns_only_the_flags_given() -> None:
    flags, check = parse([APP])
    assert flags == {"app": APP}
    assert check is False
    assert parse([APP, "--check-config"])[1] is True


def test_uvicorn_style_flags(no_port_env: None) -> None:
    flags, _ = parse([APP, "--host", "0.0.0.0", "--port", "9000", "--timeout-keep-alive", "3", "--app-dir", "/srv"])
    assert flags == {"app": APP, "host": "0.0.0.0", "port": 9000, "keepalive": 3.0, "chdir": "/srv"}
    assert build(flags, {}).binds() == ["0.0.0.0:9000"]
    assert build(parse([APP, "--port", "9001"])[0], {}).binds() == ["127.0.0.1:9001"]
    assert build(parse([APP, "--host", "::1", "--port", "9002"])[0], {}).binds() == ["[::1]:9002"]
    assert build(parse([APP, "--uds", "/tmp/r.sock"])[0], {}).binds() == ["unix:/tmp/r.sock"]
    assert build(parse([APP, "--timeout-graceful-shutdown", "4"])[0], {}).graceful_timeout == 4.0


def test_gunicorn_style_flags() -> None:
    argv = [APP, "-b", "127.0.0.1:8001", "-b", "unix:/tmp/g.sock", "-w", "3", "-k", "sync", "--keep-alive", "4"]
    flags, _ = parse([*argv, "-n", "shop", "--preload", "--worker-connections", "50"])
    cfg = build(flags, {})
    assert cfg.binds() == ["127.0.0.1:8001", "unix:/tmp/g.sock"]
    assert cfg.workers == 3
    assert cfg.worker_class == "sync"
    assert cfg.resolved_interface() == "wsgi"
    assert cfg.keepalive == 4.0
    assert cfg.proc_name == "shop"
    assert cfg.preload is True
    assert cfg.max_connections == 50


def test_uvicorn_worker_class_means_asgi() -> None:
    cfg = build(parse([APP, "-k", "uvicorn.workers.UvicornWorker"])[0], {})
    assert cfg.resolved_interface() == "asgi"


def test_negative_boolean_flags() -> None:
    cfg = build(parse([APP, "--no-server-header", "--no-date-header"])[0], {})
    assert (cfg.server_header, cfg.date_header) == (False, False)


def test_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse([APP, "--no-such-flag"])
    assert exc.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err


# -- the command line, end to end (--check-config) --------------------------------------------


def test_check_config_prints_every_setting() -> None:
    settings, _ = check_config(APP)
    assert set(FIELDS) <= set(settings)
    assert settings["app"] == APP
    assert settings["(listening on)"] == ["127.0.0.1:8000"]


def test_check_config_port_environment() -> None:
    settings, _ = check_config(APP, env={"PORT": "5123"})
    assert settings["(listening on)"] == ["0.0.0.0:5123"]


def test_check_config_web_concurrency_and_rsgi_workers() -> None:
    assert check_config(APP, env={"WEB_CONCURRENCY": "3"})[0]["workers"] == 3
    assert check_config(APP, env={"WEB_CONCURRENCY": "3", "RSGI_WORKERS": "5"})[0]["workers"] == 5
    assert check_config(APP, "-w", "2", env={"WEB_CONCURRENCY": "3", "RSGI_WORKERS": "5"})[0]["workers"] == 2


def test_check_config_full_precedence(tmp_path: Path) -> None:
    conf = write(tmp_path / "gunicorn.conf.py", "workers = 3\nkeepalive = 7\nloglevel = 'warning'\nthreads = 2\n")
    settings, stderr = check_config(
        APP, "-c", str(conf), "--keepalive", "9", env={"RSGI_WORKERS": "4", "RSGI_KEEPALIVE": "8"}
    )
    assert (settings["threads"], settings["log_level"]) == (2, "warning")
    assert settings["workers"] == 4
    assert settings["keepalive"] == 9.0
    assert warnings_in(stderr) == []


def test_seed_gunicorn_conf_loads(tmp_path: Path) -> None:
    conf = write(tmp_path / "gunicorn.conf.py", SEED_GUNICORN_CONF)
    settings, stderr = check_config(APP, "-c", str(conf))
    assert settings["config"] == str(conf)
    assert settings["bind"] == ["0.0.0.0:8123"]
    assert settings["(listening on)"] == ["0.0.0.0:8123"]
    assert settings["workers"] == multiprocessing.cpu_count() * 2 + 1
    assert settings["worker_class"] == "sync"
    assert settings["threads"] == 4
    assert settings["keepalive"] == 7.0
    assert settings["preload"] is True
    assert settings["error_log"] == "-"
    assert settings["log_level"] == "warning"
    assert settings["backlog"] == 512
    # Accepted for compatibility (not acted on yet; warned about at startup, see below).
    assert (settings["timeout"], settings["max_requests"], settings["max_requests_jitter"]) == (30.0, 1000, 50)
    assert settings["access_logfile"] == "-"
    # Every name in the seed file is known (the `import multiprocessing` is not a setting); the
    # ones not implemented yet are named, each once.
    pending: list[str] = []
    expected = [
        f"rsgi: warning: {name} is accepted for compatibility but not implemented yet; it has no effect"
        for name in pending
    ]
    assert sorted(warnings_in(stderr)) == sorted(expected), stderr


def test_unknown_config_file_settings_are_warned_about(tmp_path: Path) -> None:
    conf = write(
        tmp_path / "gunicorn.conf.py",
        """\
        workers = 2
        statsd_host = "localhost:8125"
        worker_tmp_dir = "/dev/shm"
        max_worker_memroy = 400
        """,
    )
    settings, stderr = check_config(APP, "-c", str(conf))
    assert settings["workers"] == 2
    warned = warnings_in(stderr)
    assert len(warned) == 3, stderr
    # gunicorn's own settings that rsgi has no use for: named, with why.
    for name, why in (("statsd_host", "Prometheus"), ("worker_tmp_dir", "shared memory")):
        assert sum(f"setting {name!r} has no effect in rsgi: " in w and why in w for w in warned) == 1, stderr
    # A name neither server knows (a typo): said to be ignored.
    assert sum("setting 'max_worker_memroy' is not supported by rsgi and is ignored" in w for w in warned) == 1
    assert all(str(conf) in w for w in warned)


def test_gunicorn_names_for_the_app_pid_file_and_worker_connections(tmp_path: Path) -> None:
    """gunicorn.conf.py spells these `wsgi_app`, `pidfile` and `worker_connections` (its flags:
    the app argument, `--pid`, `--worker-connections`); a file using them needs no edit."""
    pid = tmp_path / "gunicorn.pid"
    conf = write(
        tmp_path / "gunicorn.conf.py",
        f"""\
        wsgi_app = "{APP}"
        pidfile = "{pid}"
        worker_class = "gevent"
        worker_connections = 1000
        """,
    )
    settings, stderr = check_config("-c", str(conf))  # no app argument: the file names it
    assert settings["app"] == APP
    assert settings["pid"] == str(pid)
    assert settings["max_connections"] == 1000
    # Nothing ignored; only the note every gevent worker class gets (tests/test_foreign_options.py).
    assert [w for w in warnings_in(stderr) if "does not monkey-patch" not in w] == [], stderr
    # The command line still wins over the file.
    settings, _ = check_config("apps.basic:environ_json", "-c", str(conf), "--worker-connections", "50")
    assert (settings["app"], settings["max_connections"]) == ("apps.basic:environ_json", 50)


def test_seed_gunicorn_conf_serves_and_warns_about_ignored_settings(serve: StartServer, tmp_path: Path) -> None:
    port = free_port()
    error_log = tmp_path / "error.log"
    conf = write(
        tmp_path / "gunicorn.conf.py",
        SEED_GUNICORN_CONF.replace('"0.0.0.0:8123"', f'"127.0.0.1:{port}"')
        .replace("multiprocessing.cpu_count() * 2 + 1", "2")
        .replace('errorlog = "-"', f"errorlog = {str(error_log)!r}")
        .replace('"warning"', '"info"'),
    )
    server = serve(APP, "-c", str(conf), bind=False, ready=False)
    server.port = port
    server.wait_ready()
    r = httpx.get(server.url + "/", timeout=5)
    assert (r.status_code, r.text) == (200, "Hello, world!")
    assert len(server.worker_pids()) == 2
    log = error_log.read_text()  # errorlog from the file took effect
    assert f"listening on http://127.0.0.1:{port}" in log
    for name in ("timeout", "max_requests", "max_requests_jitter", "access_logfile"):  # implemented: no warning
        assert f"{name} is accepted" not in log, log


def test_pending_flag_is_warned_about_at_startup(serve: StartServer) -> None:
    server = serve(APP, "--ws", "websockets", "--ssl-ciphers", "ECDHE+AESGCM")
    log = server.log()
    assert "ciphers is accepted for compatibility but not implemented yet" in log
    assert "ws is accepted" not in log  # an implementation name: rsgi's own websockets serve it


def test_pending_setting_in_config_file_is_warned_about(serve: StartServer, tmp_path: Path) -> None:
    conf = write(tmp_path / "gunicorn.conf.py", "ssl_version = 'TLSv1_2'\n")
    server = serve(APP, "-c", str(conf))
    assert "ssl_version is accepted for compatibility but not implemented yet" in server.log()


def test_gunicorn_server_hooks_are_taken_and_the_uncalled_ones_warned_about(tmp_path: Path) -> None:
    conf = write(
        tmp_path / "gunicorn.conf.py",
        """\
        workers = 2

        def post_fork(server, worker):
            server.log.info("worker spawned")

        def when_ready(server):
            pass

        def pre_exec(server):
            pass
        """,
    )
    _, stderr = check_config(APP, "-c", str(conf))
    warned = warnings_in(stderr)
    assert not any("post_fork" in w or "when_ready" in w for w in warned), stderr
    assert any("pre_exec" in w for w in warned), stderr
    found: dict[str, Any] = {}
    build({"app": APP, "config": str(conf)}, {}, hooks=found)
    assert sorted(found) == ["post_fork", "when_ready"]


@pytest.mark.parametrize(
    ("args", "env", "fragments"),
    [
        (["--workers", "0"], {}, ["workers must be at least 1"]),
        (["--workers", "abc"], {}, ["workers", "'abc'"]),
        (["--threads", "0"], {}, ["threads must be at least 1"]),
        (["--keepalive", "-1"], {}, ["keepalive must be positive"]),
        (["--log-level", "loud"], {}, ["log_level", "'loud'"]),
        ([], {"RSGI_WORKERS": "zz"}, ["workers", "'zz'"]),
        ([], {"WEB_CONCURRENCY": "many"}, ["workers", "'many'"]),
        (["--no-such-flag"], {}, ["--no-such-flag"]),
    ],
    ids=["workers-0", "workers-abc", "threads-0", "keepalive-negative", "log-level", "env", "web-concurrency", "flag"],
)
def test_bad_values_exit_2_with_a_clear_message(args: list[str], env: dict[str, str], fragments: list[str]) -> None:
    assert_config_error(run_rsgi(APP, *args, "--check-config", env=env), *fragments)


def test_bad_value_in_config_file_exits_2(tmp_path: Path) -> None:
    conf = write(tmp_path / "gunicorn.conf.py", 'workers = "many"\n')
    assert_config_error(run_rsgi(APP, "-c", str(conf), "--check-config"), "workers", "'many'")


def test_missing_app_exits_2() -> None:
    assert_config_error(run_rsgi("--check-config"), "no application given")


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.conf.py"
    assert_config_error(run_rsgi(APP, "-c", str(missing), "--check-config"), str(missing))


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["-b", "127.0.0.1:abc"], {}),
        (["-b", "127.0.0.1:70000"], {}),
        (["--port", "70000"], {}),
        ([], {"PORT": "abc"}),
    ],
    ids=["bind-abc", "bind-70000", "port-70000", "PORT-abc"],
)
def test_bad_bind_address_is_a_config_error(args: list[str], env: dict[str, str]) -> None:
    assert_config_error(run_rsgi(APP, *args, "--check-config", env=env), "port")


def test_bad_bind_port_at_startup_exits_2_without_traceback() -> None:
    assert_config_error(run_rsgi(APP, "-b", "127.0.0.1:abc"), "127.0.0.1:abc")


# -- real servers started with uvicorn-style flags ---------------------------------------------


def test_host_and_port_flags_serve(serve: StartServer) -> None:
    port = free_port()
    server = serve(APP, "--host", "127.0.0.1", "--port", str(port), bind=False, ready=False)
    server.port = port
    server.wait_ready()
    assert httpx.get(server.url + "/", timeout=5).text == "Hello, world!"


def test_port_environment_serves(serve: StartServer) -> None:
    port = free_port()
    server = serve(APP, env={"PORT": str(port)}, bind=False, ready=False)
    server.port = port
    server.wait_ready()
    assert httpx.get(server.url + "/", timeout=5).text == "Hello, world!"
    assert f"listening on http://0.0.0.0:{port}" in server.log()


def test_uds_flag_serves(serve: StartServer, tmp_path: Path) -> None:
    path = tmp_path / "rsgi.sock"
    server = serve(APP, "--uds", str(path), bind=False, ready=False)
    deadline = time.monotonic() + 15
    while True:  # readiness: the socket file accepts connections
        assert server.proc.poll() is None, server.log()
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(path))
                break
            except OSError:
                assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=5) as client:
        r = client.get("http://localhost/")
    assert (r.status_code, r.text) == (200, "Hello, world!")
    server.signal(signal.SIGTERM)
    assert server.wait(15) == 0
    assert not path.exists(), "the socket file should be removed on exit"


def test_app_dir_flag_makes_the_app_importable(serve: StartServer, tmp_path: Path) -> None:
    app_dir = tmp_path / "elsewhere"
    app_dir.mkdir()
    write(
        app_dir / "far_away_app.py",
        """\
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"from far away"]
        """,
    )
    server = serve("far_away_app:app", "--app-dir", str(app_dir))
    assert httpx.get(server.url + "/", timeout=5).text == "from far away"


# -- rsgi.run() ------------------------------------------------------------------------------


class RunProcess:
    """`python -c "import rsgi; rsgi.run(...)"` as a subprocess serving on 127.0.0.1:port."""

    def __init__(self, call: str, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        code = f"import sys, rsgi\nsys.exit({call})"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=TESTS, env=base_env(), stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.log()}"
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/", timeout=2)
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, self.log()
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@pytest.fixture
def run_process(tmp_path: Path) -> Iterator[Any]:
    started: list[RunProcess] = []

    def start(kwargs: str) -> RunProcess:
        port = free_port()
        call = f"rsgi.run({APP!r}, host='127.0.0.1', port={port}{', ' + kwargs if kwargs else ''})"
        p = RunProcess(call, port, tmp_path / f"run-{len(started)}.log")
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def test_run_with_uvicorn_keywords(run_process: Any) -> None:
    p = run_process("workers=2, log_level='warning'")
    p.wait_ready()
    r = httpx.get(f"http://127.0.0.1:{p.port}/", timeout=5)
    assert (r.status_code, r.text) == (200, "Hello, world!")
    workers = [c for c in psutil.Process(p.proc.pid).children() if c.status() != psutil.STATUS_ZOMBIE]
    assert len(workers) == 2
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(15) == 0
    assert "[INFO]" not in p.log(), "log_level='warning' should silence info lines"


def test_run_minimal(run_process: Any) -> None:
    p = run_process("")
    p.wait_ready()
    assert httpx.get(f"http://127.0.0.1:{p.port}/", timeout=5).text == "Hello, world!"
    assert "[INFO]" in p.log()  # default level


def test_run_rejects_unknown_keywords() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", f"import rsgi; rsgi.run({APP!r}, port={free_port()}, no_such_setting=1)"],
        cwd=TESTS,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 1
    assert "TypeError" in proc.stderr
    assert "'no_such_setting'" in proc.stderr


@pytest.mark.parametrize("kwargs", ["timeout_keep_alive=3", "timeout_graceful_shutdown=3", "app_dir='.'"])
def test_run_accepts_more_uvicorn_keywords(run_process: Any, kwargs: str) -> None:
    p = run_process(kwargs)
    p.wait_ready()
