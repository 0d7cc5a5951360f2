"""rsgi as a Django app (python/rsgi/apps.py): `manage.py runserver` served by rsgi, the RSGI setting
as a configuration source, and rsgi's system checks.

`manage.py runserver PORT` runs as a real subprocess in its own session (stopped with Ctrl-C's
SIGINT to the whole process group, then checked gone), against the example project or a copy of
it in the test's tmp dir when a test edits files; clients are httpx and websockets, and every wait
polls a condition with a deadline. The RSGI precedence is read back through `rsgi --check-config`,
and the checks through `manage.py check`.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import rsgi
from conftest import DJANGO_DIR, base_env, free_port, ipv6_loopback, login_admin, read_stream, wait_until
from websockets.sync.client import connect

# What every server of this file logs once it serves the example through both interfaces.
SERVES_BOTH = (
    f"rsgi {rsgi.__version__} serves it, in one worker: HTTP through WSGI (mysite.wsgi.application), "
    "websockets and /events/ through ASGI (mysite.asgi.application)."
)
HELLO = '"Hello, world!"'


class Runserver:
    """`python manage.py runserver [ARGS] 127.0.0.1:PORT` (or ADDRPORT) in `project`."""

    def __init__(self, project: Path, *args: str, env: dict[str, str], log_path: Path, addrport: str = "") -> None:
        self.port = free_port()
        self.host = "127.0.0.1"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "manage.py", "runserver", *args, addrport or f"{self.host}:{self.port}"]
        self.proc = subprocess.Popen(
            command, cwd=project, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> httpx.Response | None:
        """One GET, or None while nothing answers (starting, or restarting)."""
        try:
            return httpx.get(self.url + path, timeout=5)
        except httpx.HTTPError:
            return None

    def wait_ready(self, path: str = "/hello", timeout: float = 60) -> httpx.Response:
        def answered() -> httpx.Response | None:
            assert self.proc.poll() is None, f"runserver exited with {self.proc.returncode}:\n{self.log()}"
            return self.get(path)

        try:
            return wait_until(answered, timeout, f"runserver to answer {path}")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.log()}") from None

    def wait_log(self, text: str, timeout: float = 30, count: int = 1) -> str:
        try:
            return wait_until(lambda: self.log().count(text) >= count and self.log(), timeout, repr(text))
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.log()}") from None

    def tree(self) -> list[psutil.Process]:
        """The processes of its session: manage.py and what it started."""
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def stop(self) -> None:
        """Ctrl-C as a terminal sends it (SIGINT to the process group), then wait until every
        process of the group is gone; SIGKILL after 20 s."""
        group = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGINT)
        try:
            wait_until(lambda: self.proc.poll() is not None and group_gone(group), 20, "runserver to stop")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            self.proc.wait(5)
            self._log.close()


def group_gone(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return True
    # Zombies left for init to reap count as gone.
    return all(p.status() == psutil.STATUS_ZOMBIE for p in psutil.process_iter() if safe_pgid(p) == group)


def safe_pgid(p: psutil.Process) -> int | None:
    try:
        return os.getpgid(p.pid)
    except (ProcessLookupError, psutil.Error):
        return None


@pytest.fixture
def runserver(tmp_path: Path, django_db: dict[str, str]) -> Iterator[Any]:
    """runserver(*args, project=DJANGO_DIR, env={...}) -> a started Runserver (not yet ready)."""
    started: list[Runserver] = []

    def start(
        *args: str, project: Path = DJANGO_DIR, env: dict[str, str] | None = None, addrport: str = ""
    ) -> Runserver:
        server = Runserver(
            project,
            *args,
            env=base_env(**django_db, **(env or {})),
            log_path=tmp_path / f"runserver-{len(started)}.log",
            addrport=addrport,
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the example project that a test may edit (the database stays django_db's)."""
    copy = tmp_path / "project"
    shutil.copytree(DJANGO_DIR, copy, ignore=shutil.ignore_patterns("db.sqlite3*", "staticfiles", "__pycache__"))
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def settings_module(project: Path, name: str, body: str) -> dict[str, str]:
    """mysite/<name>.py: the example's settings plus `body`; the environment that selects it."""
    (project / "mysite" / f"{name}.py").write_text(f"from .settings import *  # noqa: F403\n\n{body}\n")
    return {"DJANGO_SETTINGS_MODULE": f"mysite.{name}"}


# -- serving the example ------------------------------------------------------------------------


def test_runserver_serves_pages_admin_chat_and_events_through_rsgi(runserver: Any) -> None:
    server = runserver()
    r = server.wait_ready()
    assert (r.status_code, r.text, r.headers["server"]) == (200, "Hello, world!", "rsgi")
    log = server.wait_log("Quit the server with CONTROL-C.")
    # Django's start-up lines, and rsgi's.
    assert "Performing system checks...\n\nSystem check identified no issues (0 silenced)." in log
    assert "Django version " in log and "using settings 'mysite.settings'" in log
    assert f"Starting development server at http://127.0.0.1:{server.port}/\n{SERVES_BOTH}\n" in log
    assert "In production, serve the project with rsgi itself: rsgi --django mysite" in log

    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.get("/").status_code == 200
        assert [item["name"] for item in c.get("/items").json()][:2] == ["Item 01", "Item 02"]
        assert c.get("/ahello").text == "Hello, async world!"
        assert "/ws/chat/" in c.get("/chat/lobby/").text
        login_admin(c)
        assert "50 items" in c.get("/admin/catalog/item/").text
        # The example's RSGI setting: the health path answered by the core.
        assert c.get("/-/health").status_code == 200
    # A line per request, as Django's runserver prints them.
    assert re.search(r'\] "GET /hello HTTP/1.1" 200 13\n', server.wait_log('"GET /items HTTP/1.1" 200'))

    # The Channels chat: two websockets in one room both get what one of them says.
    url = f"ws://127.0.0.1:{server.port}/ws/chat/lobby/"
    with connect(url, open_timeout=10, proxy=None) as ada, connect(url, open_timeout=10, proxy=None) as bob:
        ada.send(json.dumps({"message": "hello from ada"}))
        for ws in (ada, bob):
            assert json.loads(ws.recv(timeout=10))["message"] == "hello from ada"

    # /events/ goes to ASGI (the example's RSGI asgi_path): each event as it is yielded.
    with httpx.Client(base_url=server.url, timeout=20) as c:
        body, first, total = read_stream(c, "/events/?count=3&interval=0.5")
    assert body.count(b"event: tick") == 3
    assert first < total - 0.5, (first, total)


def test_process_tree_with_and_without_the_autoreloader(runserver: Any) -> None:
    """Django's reloader parent restarts a child; the child is rsgi's supervisor, with the watcher
    (Django's reloader) and the one worker. --noreload: the supervisor and its worker only."""
    reloading = runserver()
    reloading.wait_ready()
    parent, *rest = reloading.tree()
    (child,) = parent.children()
    assert child.environ().get("RUN_MAIN") == "true"
    assert len(child.children()) == 2  # the watcher and the worker
    assert sorted(p.pid for p in rest) == sorted([child.pid, *(p.pid for p in child.children())])

    direct = runserver("--noreload")
    direct.wait_ready()
    supervisor, *others = direct.tree()
    (worker,) = supervisor.children()
    assert others == [worker]
    assert "RUN_MAIN" not in supervisor.environ()
    assert SERVES_BOTH in direct.wait_log("Quit the server")


def test_a_project_without_an_asgi_application_is_served_through_wsgi(runserver: Any, project: Path) -> None:
    package = project / "wsgionly"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "wsgi.py").write_text("from mysite.wsgi import application  # noqa: F401\n")
    env = settings_module(
        project, "settings_wsgi", 'ASGI_APPLICATION = None\nWSGI_APPLICATION = "wsgionly.wsgi.application"'
    )
    server = runserver("--noreload", project=project, env=env)
    assert server.wait_ready().text == "Hello, world!"
    log = server.wait_log("Quit the server")
    assert f"rsgi {rsgi.__version__} serves it, in one worker: through WSGI (wsgionly.wsgi.application).\n" in log
    assert "serve the project with rsgi itself: rsgi wsgionly.wsgi:application." in log
    # The example's RSGI asgi_path is for both interfaces: no error, no effect.
    server.wait_log("serving rsgi.management.commands.runserver:wsgi_application (1 thread)\n")
    assert server.get("/ws/echo/").status_code == 404  # Django's answer: there is no websocket side


def test_a_term_to_the_reloader_parent_stops_everything_and_leaves_nothing(runserver: Any) -> None:
    """`docker stop`, systemd: TERM to manage.py. Django's parent exits and kills the child with
    SIGKILL; the worker and the watcher follow it (PR_SET_PDEATHSIG), and the watcher removes the
    child's scratch directory (its logging config)."""
    scratch = Path(tempfile.gettempdir())
    before = set(scratch.glob("rsgi-runserver-*"))
    server = runserver()
    server.wait_ready()
    (made,) = set(scratch.glob("rsgi-runserver-*")) - before
    group = server.proc.pid
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0
    wait_until(lambda: group_gone(group), 20, "the child, the watcher and the worker to go")
    wait_until(lambda: not made.exists(), 10, f"{made} to be removed")


def test_static_files_from_the_finders_under_debug(runserver: Any) -> None:
    """DEBUG: STATIC_URL from the finders (app directories, no collectstatic), through staticfiles'
    handler, ahead of the middleware; --nostatic leaves /static/ to the project's URLconf, whose view
    runs behind the middleware (X-Frame-Options); DEBUG off: nothing, unless --insecure."""
    css = (DJANGO_DIR / "catalog" / "static" / "catalog" / "site.css").read_bytes()
    debug = {"DJANGO_DEBUG": "1"}
    servers = {
        "debug": runserver("--noreload", env=debug),
        "nostatic": runserver("--noreload", "--nostatic", env=debug),
        "off": runserver("--noreload"),
        "insecure": runserver("--noreload", "--insecure"),
    }
    answers = {}
    for name, server in servers.items():
        server.wait_ready()
        answers[name] = httpx.get(server.url + "/static/catalog/site.css")
    for name in ("debug", "insecure"):
        assert (answers[name].status_code, answers[name].content) == (200, css), name
        assert "x-frame-options" not in answers[name].headers, name
        admin_css = httpx.get(servers[name].url + "/static/admin/css/base.css")
        assert admin_css.status_code == 200 and b"body" in admin_css.content
    assert (answers["nostatic"].status_code, answers["nostatic"].content) == (200, css)
    assert answers["nostatic"].headers["x-frame-options"] == "DENY"
    assert answers["off"].status_code == 404


def test_a_code_change_restarts_the_server_and_a_template_change_replaces_the_worker(
    runserver: Any, project: Path
) -> None:
    server = runserver(project=project, env={"DJANGO_DEBUG": "1"})
    assert server.wait_ready().text == "Hello, world!"
    parent = psutil.Process(server.proc.pid)
    (child,) = parent.children()

    edit(project / "catalog" / "views.py", HELLO, '"Hello, reloaded!"')
    wait_until(lambda: (r := server.get("/hello")) is not None and r.text == "Hello, reloaded!", 60, "the new code")
    log = server.wait_log(f"{project / 'catalog' / 'views.py'} changed, reloading.")
    assert log.count(SERVES_BOTH) == 2
    (new_child,) = parent.children()
    assert new_child.pid != child.pid  # Django's parent started a new child; it serves the new code

    # Templates: Django resets its loaders instead of restarting; rsgi starts a new worker (the
    # worker's loaders have cached the page's template by now).
    assert "<h1>rsgi Django example" in server.get("/").text
    worker = worker_pids(server)[-1]
    edit(project / "catalog" / "templates" / "catalog" / "index.html", "<h1>rsgi Django example", "<h1>Edited")
    wait_until(lambda: (r := server.get("/")) is not None and "<h1>Edited" in r.text, 60, "the new template")
    server.wait_log("index.html changed, starting a new worker.")
    wait_until(lambda: worker_pids(server)[-1] != worker, 10, "a new worker")
    assert parent.children() == [new_child]  # the same child: no restart


def worker_pids(server: Runserver) -> list[int]:
    """The pids rsgi's worker lines name ("[pid] [INFO] rsgi.worker: worker serving ...")."""
    return [int(pid) for pid in re.findall(r"\[(\d+)\] \[INFO\] rsgi\.worker: worker serving", server.log())]


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6(runserver: Any) -> None:
    port = free_port()
    server = runserver("--noreload", "--ipv6", addrport=str(port))
    server.host, server.port = "[::1]", port
    assert server.wait_ready().text == "Hello, world!"
    assert f"Starting development server at http://[::1]:{port}/" in server.wait_log("Quit the server")
    assert f"listening on http://[::1]:{port}" in server.log()


def test_a_project_error_at_start_up_is_shown_as_django_shows_it(runserver: Any, project: Path) -> None:
    views = project / "catalog" / "views.py"
    edit(views, "ITEM_PAGE_SIZE = 20\n", "ITEM_PAGE_SIZE = 20\nraise RuntimeError('broken on purpose')\n")
    # Without the autoreloader the command fails, as Django's does.
    failed = runserver("--noreload", project=project)
    assert failed.proc.wait(60) == 1
    assert "Traceback (most recent call last)" in failed.log() and "RuntimeError: broken on purpose" in failed.log()

    # With it, the error is shown from Django's main thread and the fixed file starts the server.
    server = runserver(project=project)
    log = server.wait_log("RuntimeError: broken on purpose")
    assert "Exception in thread django-main-thread:\nTraceback (most recent call last):" in log
    assert server.get("/hello") is None and server.proc.poll() is None
    edit(views, "raise RuntimeError('broken on purpose')\n", "")
    assert server.wait_ready().text == "Hello, world!"


def test_system_check_errors_stop_runserver_as_in_django(runserver: Any, project: Path) -> None:
    env = settings_module(project, "settings_bad", 'RSGI = {"workers": "many"}')
    failed = runserver("--noreload", project=project, env=env)
    assert failed.proc.wait(60) == 1
    assert "SystemCheckError: System check identified some issues:" in failed.log()
    assert "(rsgi.E001) workers: cannot use 'many'" in failed.log()


# -- the RSGI setting ---------------------------------------------------------------------------


def check_config(
    *args: str, cwd: Path = DJANGO_DIR, env: dict[str, str] | None = None, app_loads: bool = True
) -> tuple[dict[str, Any], str]:
    """`rsgi --check-config ARGS`: the effective settings, and stderr. With `app_loads` False the
    check is expected to fail at its last step, importing the app (exit 1), and stderr is what came
    before that step's traceback."""
    out = subprocess.run(
        [sys.executable, "-m", "rsgi", "--check-config", *args],
        cwd=cwd,
        env=base_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == (0 if app_loads else 1), out.stderr
    if not app_loads:
        before, sep, _ = out.stderr.partition("\nError while loading the application:")
        assert sep, out.stderr
        out.stderr = before
    settings = {}
    for line in out.stdout.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            settings[name.strip()] = ast.literal_eval(value.strip())
    return settings, out.stderr


def test_the_example_rsgi_setting_is_read_by_rsgi_django() -> None:
    settings, stderr = check_config("--django", "mysite")
    assert (settings["asgi_path"], settings["health_path"]) == (["/events/"], "/-/health")
    assert stderr == ""
    # A flag still wins.
    settings, _ = check_config("--django", "mysite", "--asgi-path", "/astream")
    assert settings["asgi_path"] == ["/astream"]


def test_rsgi_setting_precedence_file_rsgi_environment_flags(project: Path) -> None:
    env = settings_module(
        project,
        "settings_precedence",
        'RSGI = {"backlog": 64, "keepalive": "7", "threads": 3, "graceful_timeout": 11, "max_requests": 13,\n'
        '        "loglevel": "warning", "pid": BASE_DIR / "rsgi.pid", "wokers": 2}',
    )
    conf = project / "gunicorn.conf.py"
    conf.write_text("backlog = 99\nkeepalive = 1\nthreads = 4\ngraceful_timeout = 2\nmax_requests = 3\n")
    conf.write_text(conf.read_text() + "max_requests_jitter = 5\n")
    env.update(RSGI_GRACEFUL_TIMEOUT="21", RSGI_MAX_REQUESTS="23")
    settings, stderr = check_config("--django", "mysite", "-c", str(conf), "--max-requests", "33", cwd=project, env=env)
    assert settings["max_requests_jitter"] == 5  # the file alone
    assert (settings["backlog"], settings["keepalive"], settings["threads"]) == (64, 7.0, 3)  # RSGI over the file
    assert settings["log_level"] == "warning"  # gunicorn's names, as in a config file
    assert settings["pid"] == str(project / "rsgi.pid")  # values as the config file's: a Path is its text
    assert settings["graceful_timeout"] == 21.0  # the environment over RSGI
    assert settings["max_requests"] == 33  # flags over everything
    assert stderr.splitlines() == [
        "rsgi: warning: mysite.settings_precedence.RSGI: setting 'wokers' is not supported by rsgi and is ignored"
    ]


def test_which_invocations_read_the_rsgi_setting(project: Path) -> None:
    # A plain app reads it only when DJANGO_SETTINGS_MODULE names the settings; then the project's
    # asgi_path, for both interfaces, is left out instead of being an error.
    settings, _ = check_config("mysite.wsgi:application", cwd=project)
    assert (settings["health_path"], settings["asgi_path"]) == ("", [])
    settings, _ = check_config(
        "mysite.wsgi:application", cwd=project, env={"DJANGO_SETTINGS_MODULE": "mysite.settings"}
    )
    assert (settings["health_path"], settings["asgi_path"]) == ("/-/health", [])
    # --django reads DJANGO_SETTINGS_MODULE's, also when set by --env as the app will see it.
    other = settings_module(project, "settings_other", 'RSGI = {"health_path": "/-/other"}')
    assert check_config("--django", "mysite", cwd=project, env=other)[0]["health_path"] == "/-/other"
    flag = ["-e", f"DJANGO_SETTINGS_MODULE={other['DJANGO_SETTINGS_MODULE']}"]
    assert check_config("--django", "mysite", *flag, cwd=project)[0]["health_path"] == "/-/other"
    # What decides what is served does not come from the settings it leads to.
    ignored = settings_module(project, "settings_app", 'RSGI = {"app": "other.asgi:app", "chdir": "/"}')
    settings, stderr = check_config("--django", "mysite", cwd=project, env=ignored)
    assert (settings["app"], settings["chdir"]) == ("mysite.asgi:application", "")
    assert stderr.count("decides what is served, so it is not read from Django's settings") == 2
    # A project without settings of that name has no RSGI: no message.
    assert check_config("--django", "nosuchproject", "--workers", "1", cwd=project, app_loads=False)[1] == ""


def test_unusable_rsgi_settings_are_errors_and_broken_settings_a_warning(project: Path) -> None:
    bad = settings_module(project, "settings_bad", 'RSGI = {"workers": "many"}')
    out = subprocess.run(
        [sys.executable, "-m", "rsgi", "--check-config", "--django", "mysite"],
        cwd=project,
        env=base_env(**bad),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (out.returncode, out.stderr.strip()) == (2, "rsgi: error: workers: cannot use 'many'")
    broken = settings_module(project, "settings_broken", "raise RuntimeError('no settings today')")
    settings, stderr = check_config("--django", "mysite", cwd=project, env=broken, app_loads=False)
    assert settings["health_path"] == ""
    assert stderr.strip() == (
        "rsgi: warning: could not read RSGI from the Django settings mysite.settings_broken: "
        "RuntimeError: no settings today"
    )


def test_runserver_reads_rsgi_under_the_environment(runserver: Any, project: Path) -> None:
    env = settings_module(project, "settings_dev", 'RSGI = {"health_path": "/-/from-rsgi", "wokers": 1}')
    server = runserver("--noreload", "--skip-checks", project=project, env={**env, "RSGI_THREADS": "2"})
    server.wait_ready()
    assert server.get("/-/from-rsgi").status_code == 200
    log = server.wait_log("worker serving")
    assert "(WSGI, 2 threads)" in log  # the environment, under runserver too
    # Without the checks, rsgi itself says what it ignores.
    assert "rsgi: warning: mysite.settings_dev.RSGI: setting 'wokers' is not supported by rsgi and is ignored" in log


# -- system checks ------------------------------------------------------------------------------


def manage_check(project: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", *args],
        cwd=project,
        env=base_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_system_checks(project: Path) -> None:
    assert "rsgi." not in manage_check(project, "--deploy", env={}).stderr  # the example is clean

    env = settings_module(
        project,
        "settings_checks",
        'RSGI = {"wokers": 2}\n'
        'INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "rsgi"] + ["rsgi"]\n'
        'SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")\n'
        "USE_X_FORWARDED_HOST = True\n",
    )
    out = manage_check(project, env=env)
    assert out.returncode == 0, out.stderr
    assert "(rsgi.W001) mysite.settings_checks.RSGI: setting 'wokers' is not supported by rsgi and is ignored" in (
        out.stderr
    )
    assert "(rsgi.W002) manage.py runserver is django.contrib.staticfiles's, not rsgi's." in out.stderr
    assert "rsgi.W003" not in out.stderr  # deployment checks only
    deploy = manage_check(project, "--deploy", env=env).stderr
    assert "(rsgi.W003) SECURE_PROXY_SSL_HEADER is set, but rsgi already sets the scheme" in deploy
    assert "(rsgi.W004) USE_X_FORWARDED_HOST is True" in deploy

    # With rsgi's proxy handling off, Django's settings are the way.
    off = manage_check(project, "--deploy", env={**env, "RSGI_PROXY_HEADERS": "0"}).stderr
    assert "rsgi.W003" not in off and "rsgi.W004" not in off

    bad = settings_module(project, "settings_bad", 'RSGI = ["workers", 2]')
    out = manage_check(project, env=bad)
    assert out.returncode == 1
    assert "(rsgi.E001) mysite.settings_bad.RSGI must be a dict of rsgi settings, not list" in out.stderr


def test_the_app_imports_django_only_where_django_is_used() -> None:
    """rsgi itself never imports Django: only its Django app does."""
    code = "import sys, rsgi, rsgi.cli, rsgi.supervisor, rsgi.worker, rsgi.asgi; print('django' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=base_env(), capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
