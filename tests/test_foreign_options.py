"""Every option gunicorn and uvicorn have is accepted: the option lists are read from the real
gunicorn and uvicorn packages (pinned in the test extras), not from rsgi, so an option either
server has and rsgi neither acts on nor names is a failure here. Then, with real servers, the
ones that became settings: --daemon, --pythonpath, --capture-output, GUNICORN_CMD_ARGS and
UVICORN_* variables."""

from __future__ import annotations

import contextlib
import os
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
from conftest import StartServer, free_port, run_rsgi
from rsgi.cli import parse_all
from rsgi.config import FIELDS, ConfigError, build
from rsgi.config.foreign import FOREIGN
from rsgi.config.sources import from_file

APP = "apps.basic:hello"
# gunicorn settings that are about gunicorn's own command line, not the server.
NOT_SERVER_SETTINGS = {"config", "check_config", "print_config", "version"}
# Accepted with nothing to do: `--protocol http` is what rsgi speaks (anything else is refused).
WHAT_RSGI_DOES = {"protocol"}


def gunicorn_settings() -> list[Any]:
    from gunicorn import config

    return [s for s in config.KNOWN_SETTINGS if not callable(s.default)]


def uvicorn_options() -> list[Any]:
    import uvicorn.main  # noqa: F401  (the package's `main` attribute is the command, not the module)

    command = sys.modules["uvicorn.main"].main
    return [p for p in command.params if p.opts and p.opts[0].startswith("-")]


def sample(default: Any) -> str:
    """A value of the option's type for its command line: its default where it has a usable one."""
    if isinstance(default, list | tuple):
        default = default[0] if default else "x"
    if default is None or default == "" or isinstance(default, dict):
        return "1"
    return str(default)


def gunicorn_argvs() -> Iterator[tuple[str, list[str]]]:
    for s in gunicorn_settings():
        if not s.cli or s.name in NOT_SERVER_SETTINGS:
            continue
        for flag in s.cli:
            takes_value = getattr(s, "action", None) not in ("store_true", "store_false", "store_const")
            yield s.name, [flag, sample(s.default)] if takes_value else [flag]


def uvicorn_argvs() -> Iterator[tuple[str, list[str]]]:
    for p in uvicorn_options():
        if p.name in NOT_SERVER_SETTINGS:
            continue
        value = sample(p.default if not callable(p.default) else None)
        if getattr(p.type, "choices", None):
            value = str(p.type.choices[0])
        for flag in [*p.opts, *p.secondary_opts]:
            yield p.name, [flag] if p.is_flag else [flag, value]


def accounted_for(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """(settings the flag set, foreign options it named); argparse exits on an unknown option."""
    flags, _, given = parse_all([APP, *argv])
    return {k: v for k, v in flags.items() if k != "app"}, [as_given for _, as_given in given]


@pytest.mark.parametrize(("server", "argvs"), [("gunicorn", gunicorn_argvs), ("uvicorn", uvicorn_argvs)])
def test_every_command_line_option_is_accepted(server: str, argvs: Any) -> None:
    missing, silent = [], []
    for name, argv in argvs():
        try:
            settings, foreign = accounted_for(argv)
        except SystemExit:
            missing.append(" ".join(argv))
            continue
        except ConfigError:  # a value rsgi refuses (--paste, --protocol uwsgi): the option is known
            continue
        if not settings and not foreign and name not in NOT_SERVER_SETTINGS | WHAT_RSGI_DOES:
            silent.append(" ".join(argv))
    assert not missing, f"{server} options rsgi does not accept: {missing}"
    assert not silent, f"{server} options accepted but neither acted on nor warned about: {silent}"


def test_every_gunicorn_config_file_setting_is_known(tmp_path: Path) -> None:
    """A gunicorn.conf.py may set any of gunicorn's settings: each is an rsgi setting or named with
    why it has no effect, never the 'not supported' of an unknown name."""
    unknown = []
    for s in gunicorn_settings():
        if s.name in NOT_SERVER_SETTINGS:
            continue
        conf = tmp_path / f"{s.name}.py"
        value = int(s.default) if isinstance(s.default, int) else s.default  # ssl's enums are ints
        conf.write_text(f"{s.name} = {value!r}\n")
        warned: list[str] = []
        with contextlib.suppress(ConfigError):  # a refused value is a known setting
            from_file(str(conf), warned.append)
        unknown += [w for w in warned if "is not supported by rsgi" in w]
    assert not unknown, unknown


def test_every_uvicorn_run_keyword_is_taken(capsys: pytest.CaptureFixture[str]) -> None:
    """rsgi.run() takes uvicorn.run()'s keywords: each of them, with uvicorn's defaults, gives a
    valid configuration (the ones with no use here are warned about, as their flags are)."""
    import inspect

    import uvicorn
    from rsgi import run_flags

    params = inspect.signature(uvicorn.run).parameters
    keywords = {n: p.default for n, p in params.items() if n != "app" and p.default is not inspect.Parameter.empty}
    assert {"host", "port", "workers", "log_level", "headers", "use_colors"} <= set(keywords)
    cfg = build(run_flags(APP, keywords))
    assert (cfg.app, cfg.host, cfg.port, cfg.workers) == (APP, keywords["host"], keywords["port"], 1)
    assert "run(use_colors=...)" not in capsys.readouterr().err  # None is uvicorn's "not set": no warning
    flags = run_flags(
        APP, {"headers": [("X-Frame-Options", "DENY")], "reload_includes": ["*.html"], "use_colors": True}
    )
    assert flags["headers"] == ["X-Frame-Options:DENY"] and flags["reload_include"] == ["*.html"]
    assert "run(use_colors=...) has no effect in rsgi" in capsys.readouterr().err
    with pytest.raises(TypeError, match="unknown setting 'wrokers'"):
        run_flags(APP, {"wrokers": 2})


def test_foreign_options_are_not_settings() -> None:
    """The foreign table names only options rsgi has no setting for (else one would shadow the other)."""
    flags = {flag for f in FIELDS.values() for flag in (*f.metadata["flags"], f.metadata["negative"]) if flag}
    names = {alias for f in FIELDS.values() for alias in (f.name, *f.metadata["conf"])}
    assert not [f.name for f in FOREIGN if f.name in names or set(f.flags) & flags]


def run_check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_rsgi(*args, "--check-config", env=env)


def setting(out: str, name: str) -> str:
    return next(line.split(" = ", 1)[1] for line in out.splitlines() if line.split(" = ")[0].strip() == name)


def test_a_gunicorn_docker_command_line_starts_with_warnings_naming_why() -> None:
    proc = run_check(APP, "--worker-tmp-dir", "/dev/shm", "--statsd-host", "localhost:8125", "--no-use-colors")
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if line.startswith("rsgi: warning:")]
    assert warned == [
        "rsgi: warning: --worker-tmp-dir has no effect in rsgi: workers report to the supervisor through shared "
        "memory, not files",
        "rsgi: warning: --statsd-host has no effect in rsgi: rsgi exports Prometheus metrics instead of sending "
        "statsd (--metrics-bind)",
        "rsgi: warning: --no-use-colors has no effect in rsgi: rsgi's log lines are not coloured",
    ], proc.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--paste", "production.ini"], "--paste: rsgi loads the app as module:attribute"),
        (["--protocol", "uwsgi"], "--protocol uwsgi: rsgi speaks HTTP only"),
    ],
)
def test_options_that_would_change_what_is_served_are_refused(args: list[str], fragment: str) -> None:
    proc = run_check(APP, *args)
    assert proc.returncode == 2 and fragment in proc.stderr, proc.stderr


def test_gunicorn_cmd_args_is_read_and_the_command_line_wins() -> None:
    env = {"GUNICORN_CMD_ARGS": "--workers 3 --timeout 60 --worker-tmp-dir /dev/shm"}
    proc = run_check(APP, "--timeout", "7", env=env)
    assert proc.returncode == 0, proc.stderr
    assert (setting(proc.stdout, "workers"), setting(proc.stdout, "timeout")) == ("3", "7.0")
    assert "--worker-tmp-dir has no effect" in proc.stderr


def test_uvicorn_environment_variables_are_read_under_rsgis_own() -> None:
    env = {"UVICORN_APP": APP, "UVICORN_PORT": "9123", "UVICORN_WORKERS": "3", "UVICORN_PROXY_HEADERS": "false"}
    proc = run_check(env={**env, "UVICORN_RELOAD_DIRS": "/srv/a /srv/b", "RSGI_WORKERS": "2"})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert setting(out, "app") == repr(APP)
    assert setting(out, "port") == "9123"
    assert setting(out, "proxy_headers") == "False"
    assert setting(out, "reload_dirs") == "['/srv/a', '/srv/b']"
    assert setting(out, "workers") == "2"  # RSGI_WORKERS wins over UVICORN_WORKERS
    assert build({"app": APP}, environ={"UVICORN_WORKERS": "3", "WEB_CONCURRENCY": "5"}).workers == 3


def check_in(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_rsgi(APP, *args, "--check-config", cwd=cwd)


def test_gunicorns_scheme_spellings_of_bind_addresses(serve: StartServer, tmp_path: Path) -> None:
    port = free_port()
    serve(APP, "--bind", f"tcp://127.0.0.1:{port}", "--bind", "unix://app.sock", "--chdir", str(tmp_path))
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "Hello, world!"
    # unix://app.sock is the relative path app.sock, as gunicorn reads it (not /app.sock).
    transport = httpx.HTTPTransport(uds=str(tmp_path / "app.sock"))
    with httpx.Client(transport=transport) as client:
        assert client.get("http://rsgi/", timeout=5).text == "Hello, world!"


@pytest.mark.parametrize("worker_class", ["gevent", "eventlet", "gunicorn.workers.ggevent.GeventWorker"])
def test_green_worker_classes_are_told_about_threads(worker_class: str) -> None:
    proc = run_check(APP, "-k", worker_class, "--worker-connections", "1000")
    assert proc.returncode == 0, proc.stderr
    assert f"worker class {worker_class}: rsgi does not monkey-patch" in proc.stderr
    assert "need --threads N (gevent served up to 1000 at once)" in proc.stderr
    assert "monkey-patch" not in run_check(APP, "-k", worker_class, "--threads", "16").stderr
    assert "monkey-patch" not in run_check(APP, "-k", "sync").stderr


@pytest.mark.parametrize("flag", ["--check-config", "--print-config"])
def test_check_config_fails_when_the_app_does_not_import(flag: str, tmp_path: Path) -> None:
    """As gunicorn's: a deploy pipeline's `--check-config` catches an app that cannot import."""
    (tmp_path / "broken_app.py").write_text("import no_such_dependency\n")
    proc = run_rsgi("broken_app:application", flag, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Error while loading the application" in proc.stderr
    assert "No module named 'no_such_dependency'" in proc.stderr
    assert "workers" in proc.stdout  # the settings were printed first


def test_gunicorn_conf_py_in_the_starting_directory_is_read_without_c(tmp_path: Path) -> None:
    (tmp_path / "gunicorn.conf.py").write_text("workers = 3\n")
    proc = check_in(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert setting(proc.stdout, "config") == repr(str(tmp_path / "gunicorn.conf.py"))
    assert setting(proc.stdout, "workers") == "3"
    (tmp_path / "other.py").write_text("workers = 5\n")
    assert setting(check_in(tmp_path, "-c", "other.py").stdout, "workers") == "5"  # -c names another


def test_config_as_a_python_module(tmp_path: Path) -> None:
    (tmp_path / "deploy_settings.py").write_text("workers = 4\nkeepalive = 9\n")
    proc = check_in(tmp_path, "-c", "python:deploy_settings")
    assert proc.returncode == 0, proc.stderr
    assert (setting(proc.stdout, "workers"), setting(proc.stdout, "keepalive")) == ("4", "9.0")
    missing = check_in(tmp_path, "-c", "python:no_such_module")
    assert missing.returncode == 2 and "No module named 'no_such_module'" in missing.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--ws-per-message-deflate", "false"], "False"),  # uvicorn's flag takes a value
        (["--ws-per-message-deflate"], "True"),
        (["--interface", "asgi3"], "'asgi3'"),
        (["--print-config"], None),  # gunicorn's name for --check-config
    ],
)
def test_uvicorn_and_gunicorn_spellings(args: list[str], expected: str | None) -> None:
    proc = run_check(APP, *args)
    assert proc.returncode == 0, proc.stderr
    if expected is not None:
        name = "interface" if args[0] == "--interface" else "ws_per_message_deflate"
        assert setting(proc.stdout, name) == expected


def test_uvicorns_default_response_headers(serve: StartServer) -> None:
    server = serve(
        APP, "--header", "X-Frame-Options: DENY", "--header", "server:edge", "--header", "Content-Type:application/json"
    )
    r = httpx.get(server.url + "/", timeout=5)
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers.get_list("server") == ["edge"]  # replaces rsgi's own
    assert r.headers["content-type"] == "text/plain"  # the app's header wins over a default


@pytest.mark.parametrize("bad", ["no-colon", ":value", "bad name:x", "x-a:line\u0001break"])
def test_a_malformed_default_header_is_a_config_error(bad: str) -> None:
    proc = run_check(APP, "--header", bad)
    assert proc.returncode == 2 and "header" in proc.stderr, proc.stderr


def test_repeatable_values_keep_their_spaces() -> None:
    proc = run_check(APP, "-e", "GREETING=hello world", "-e", "B=2", "--header", "Cache-Control: no-store, private")
    assert proc.returncode == 0, proc.stderr
    assert setting(proc.stdout, "env") == "['GREETING=hello world', 'B=2']"
    assert setting(proc.stdout, "core.headers") == "(('Cache-Control', 'no-store, private'),)"


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """An app module outside the working directory, found only through --pythonpath; it prints."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "elsewhere.py").write_text(
        textwrap.dedent(
            """\
            import sys

            def app(environ, start_response):
                print("printed by the app", flush=True)
                print("written to stderr by the app", file=sys.stderr, flush=True)
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"found through --pythonpath"]
            """
        )
    )
    return src


def test_pythonpath_and_capture_output(serve: StartServer, elsewhere: Path, tmp_path: Path) -> None:
    error_log = tmp_path / "error.log"
    server = serve(
        "elsewhere:app", "--pythonpath", str(elsewhere), "--capture-output", "--error-logfile", str(error_log)
    )
    r = httpx.get(server.url + "/", timeout=5)
    assert (r.status_code, r.text) == (200, "found through --pythonpath")
    log = error_log.read_text()
    assert "printed by the app" in log and "written to stderr by the app" in log, log
    assert "listening on" in log  # the log records themselves still go there


def test_daemon_detaches_and_serves(elsewhere: Path, tmp_path: Path) -> None:
    port, pid_file, error_log = free_port(), tmp_path / "rsgi.pid", tmp_path / "error.log"
    argv = ["elsewhere:app", "--pythonpath", str(elsewhere), "--bind", f"127.0.0.1:{port}", "--daemon"]
    started = run_rsgi(*argv, "--pid", str(pid_file), "--error-logfile", str(error_log))
    # The command returns at once, as an init script or a Type=forking unit expects.
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 20
    daemon = None
    try:
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                if pid_file.exists() and pid_file.read_text().strip():
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling for the server, not a synchronisation delay
        else:
            pytest.fail(f"the daemon did not serve: {error_log.read_text() if error_log.exists() else ''}")
        assert r.text == "found through --pythonpath"
        daemon = psutil.Process(int(pid_file.read_text()))
        assert daemon.is_running()
        assert os.getsid(daemon.pid) != os.getsid(0), "still in the starting shell's session"
        assert daemon.terminal() is None
        assert os.readlink(f"/proc/{daemon.pid}/fd/1") == os.devnull  # no --enable-stdio-inheritance
    finally:
        if daemon is None and pid_file.exists() and pid_file.read_text().strip():
            daemon = psutil.Process(int(pid_file.read_text()))
        if daemon is not None:
            daemon.terminate()
            daemon.wait(30)
    assert not pid_file.exists(), "the pid file outlived the daemon"
