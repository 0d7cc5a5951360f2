"""`manage.py runserver` through rsgi: Django's development server, served by rsgi.

The same arguments as Django's (addrport, --ipv6, --noreload, --nothreading, --skip-checks, and
staticfiles' --nostatic and --insecure), the same system checks, migration notice and start-up
lines, Django's autoreloader, and static files from the finders under DEBUG (or --insecure),
through Django's own static files handlers. Both interfaces when the project has an ASGI
application (ASGI_APPLICATION, as Channels names it, else the asgi.py beside WSGI_APPLICATION's
wsgi.py): HTTP through WSGI, websockets and the RSGI setting's asgi_path through ASGI, as `rsgi
--django` serves them; WSGI otherwise. Settings: rsgi's sources (config file < the RSGI dict <
RSGI_* < these arguments), with a few development defaults (`DEVELOPMENT`); always one worker.

With the autoreloader (the default), three processes: Django's reloader parent restarts the child
whenever it exits with 3. The child runs the checks and loads the project in a thread named as
Django names it (so an error there is shown as Django shows it, and its file is watched), forks a
watcher process that runs Django's reloader over the modules the child loaded, then runs rsgi's
Supervisor in its main thread, which forks the one worker with the apps preloaded. When a module
changes, the watcher has the supervisor stop (SIGTERM: requests in flight get graceful_timeout) and
the child exits with 3; when a template changes (Django's own server resets its template loaders
instead of restarting), it has the supervisor start a new worker (SIGHUP), forked afresh. The
watcher is a process rather than a thread so that the supervisor forks with no thread running, as
with rsgi's own --reload; it also watches the *.py files of the project's apps and settings package,
which the worker may import without the child ever having (template tags, imports inside views).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from datetime import datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any, NoReturn

from django.apps import apps
from django.conf import settings
from django.core.management.base import CommandError
from django.db import connections
from django.utils import autoreload
from django.utils.module_loading import import_string

from rsgi import __version__
from rsgi.config import Config, ConfigError, build
from rsgi.logs import DATEFMT, FORMAT, warn_early
from rsgi.worker import EXIT_BOOT_ERROR, die_with_parent

if apps.is_installed("django.contrib.staticfiles"):
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.contrib.staticfiles.management.commands.runserver import Command as DjangoRunserver
else:
    from django.core.management.commands.runserver import Command as DjangoRunserver

# The apps the worker serves, named in the Config (`app`, `wsgi`) as this module's attributes: set
# by `prepare`, imported by the supervisor (preload) and inherited by the worker it forks.
wsgi_application: Any = None
asgi_application: Any = None

# Where runserver's defaults differ from rsgi's; each applies unless a config file, the RSGI dict
# or the environment sets it. No --timeout (a breakpoint in a view is not a stuck worker), a short
# drain so that a reload is quick, and a line per request, as Django's runserver prints.
DEVELOPMENT = {
    "timeout": 0.0,
    "graceful_timeout": 2.0,
    "access_log": True,
    "access_log_format": '%(t)s "%(r)s" %(s)s %(b)s',
    "proc_name": "manage.py runserver",
}


class Command(DjangoRunserver):
    help = (
        "Starts rsgi for development: Django's autoreloader and static files, the project's WSGI "
        "application for HTTP and its ASGI application (if any) for websockets, in one worker."
    )

    wsgi_path = ""  # what is served, for the start-up lines
    asgi_path = ""
    rsgi_config: Config | None = None
    scratch: str | None = None  # where serve() writes its logging config (None: the temp dir)

    def run(self, **options: Any) -> None:
        if not options["use_reloader"]:
            self.inner_run(None, **options)
        elif os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) == "true":
            self.run_child(**options)
        else:
            autoreload.run_with_reloader(self.inner_run, **options)  # the parent: restarts the child

    def inner_run(self, *args: Any, **options: Any) -> None:
        """--noreload: everything in this process's main thread; an error ends the command."""
        self.prepare(**options)
        code = self.serve(**options)
        if code:
            sys.exit(code)
        if options.get("shutdown_message"):
            self.stdout.write(options["shutdown_message"])

    def run_child(self, **options: Any) -> None:
        """The autoreloader's child: prepare, watch, serve; exit with 3 to be restarted."""
        # Until the supervisor takes over the signals: TERM ends the child, as in Django's, and a
        # new worker asked for before there is one is no reason to die.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        reloader = autoreload.get_reloader()
        autoreload.logger.info("Watching for file changes with %s", type(reloader).__name__)
        autoreload.ensure_echo_on()
        main = threading.Thread(
            target=autoreload.check_errors(self.prepare), kwargs=options, name="django-main-thread", daemon=True
        )
        watcher: Watcher | None = None
        # A directory of the child's, removed when it exits, or by the watcher if it is killed.
        self.scratch = tempfile.mkdtemp(prefix="rsgi-runserver-")
        try:
            watch_project(reloader)
            before = file_times(reloader)
            main.start()
            main.join()
            watcher = Watcher(reloader, before, self.scratch)
            if self.rsgi_config is not None:  # prepared
                code = self.serve(**options)
                if watcher.wait_for(b"r", 0):
                    restart()
                if code != EXIT_BOOT_ERROR:
                    sys.exit(code)  # 0 after Ctrl-C; the supervisor's error code else
            # An error: shown above; wait for a change, as Django's reloader does.
            if not watcher.wait_for(b"r", None):
                sys.exit("The autoreloader stopped.")
            restart()
        except SystemExit:
            if watcher is not None and watcher.wait_for(b"r", 0):
                restart()  # the TERM was the watcher's (a change while not serving yet)
            raise
        except KeyboardInterrupt:
            pass
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)

    # -- what is served ------------------------------------------------------------------------

    def prepare(self, **options: Any) -> None:
        """Django's start-up work (checks, the migration notice), then the project's applications
        and rsgi's settings. Errors are Django's to show."""
        global wsgi_application, asgi_application
        autoreload.raise_last_exception()
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        self.check_migrations()
        for conn in connections.all(initialized_only=True):
            conn.close()
        wsgi_application = self.get_handler(**options)
        self.wsgi_path = getattr(settings, "WSGI_APPLICATION", None) or "django.core.wsgi.get_wsgi_application()"
        asgi_application = None
        self.asgi_path = asgi_application_path()
        if self.asgi_path:
            asgi_application = import_string(self.asgi_path)
            if self.serves_static(options):
                asgi_application = ASGIStaticFilesHandler(asgi_application)
        self.rsgi_config = self.configure(**options)

    def serves_static(self, options: dict[str, Any]) -> bool:
        """staticfiles' rule: from the finders under DEBUG, or with --insecure; not with --nostatic."""
        return bool(options.get("use_static_handler") and (settings.DEBUG or options.get("insecure_serving")))

    def configure(self, **options: Any) -> Config:
        dual = asgi_application is not None
        flags: dict[str, Any] = {
            "app": f"{__name__}:{'asgi_application' if dual else 'wsgi_application'}",
            "wsgi": f"{__name__}:wsgi_application" if dual else "",
            "django": "",
            "interface": "auto",
            "worker_class": "",
            "factory": False,
            "bind": [self.bind_address()],
            **{"host": "", "port": 0, "uds": "", "fd": -1},
            "workers": 1,
            "preload": True,
            "reload": False,  # Django's autoreloader instead
            "chdir": "",
        }
        if not options.get("use_threading", True):
            flags["threads"] = 1
        if self.serves_static(options):
            flags["static_django"] = False  # a mount of STATIC_ROOT would hide the finders' files
        module = getattr(settings, "SETTINGS_MODULE", None) or "settings"
        checked = not options["skip_checks"]

        def warn(message: str) -> None:
            if not (checked and message.startswith(f"{module}.RSGI")):  # the checks said it already
                warn_early(message)

        try:
            cfg = build(flags, warn=warn, django_rsgi=(module, getattr(settings, "RSGI", None)))
            cfg = dataclasses.replace(cfg, **{k: v for k, v in DEVELOPMENT.items() if k not in cfg.explicit})
            cfg.validate()
            cfg.core()
        except ConfigError as e:
            raise CommandError(f"rsgi: {e}") from None
        return cfg

    def bind_address(self) -> str:
        if ":" in self.addr:
            return f"[{self.addr}]:{self.port}"
        return f"{'0.0.0.0' if self.addr == '0' else self.addr}:{self.port}"

    # -- serving ---------------------------------------------------------------------------------

    def serve(self, **options: Any) -> int:
        """The start-up lines, then rsgi's supervisor with one worker until it stops; its exit code."""
        from rsgi.supervisor import Supervisor

        cfg = self.rsgi_config
        assert cfg is not None
        self.print_started(cfg)
        log_config = ""
        if "log_config" not in cfg.explicit:
            log_config = logging_beside_django(cfg, self.scratch)
            cfg = dataclasses.replace(cfg, log_config=log_config)
        try:
            return Supervisor(cfg, upgradable=False).run()  # the autoreloader restarts it instead
        finally:
            if log_config:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(log_config)

    def print_started(self, cfg: Config) -> None:
        """Django's start-up lines, and one saying that rsgi serves, how."""
        now = datetime.now().strftime("%B %d, %Y - %X")
        scheme = "https" if cfg.certfile else "http"
        host = cfg.binds()[0].rpartition(":")[0]
        quit_command = "CTRL-BREAK" if sys.platform == "win32" else "CONTROL-C"
        if self.asgi_path:
            asgi = " and ".join(["websockets", *cfg.asgi_path])
            how = f"HTTP through WSGI ({self.wsgi_path}), {asgi} through ASGI ({self.asgi_path})"
        else:
            how = f"through WSGI ({self.wsgi_path})"
        self.stdout.write(
            f"{now}\n"
            f"Django version {self.get_version()}, using settings {settings.SETTINGS_MODULE!r}\n"
            f"Starting development server at {scheme}://{host}:{self.port}/\n"
            f"rsgi {__version__} serves it, in one worker: {how}.\n"
            f"Quit the server with {quit_command}."
        )
        if os.environ.get("DJANGO_RUNSERVER_HIDE_WARNING") != "true":
            self.stdout.write(
                self.style.WARNING(
                    "WARNING: runserver is for development: Django's autoreloader, static files from the "
                    "finders under DEBUG, one worker. In production, serve the project with rsgi itself"
                    f"{self.production_command()}."
                )
            )

    def production_command(self) -> str:
        """': rsgi ...' as the project would be served, when that can be told from its settings."""
        if not getattr(settings, "WSGI_APPLICATION", None):
            return ""
        return f": {self.rsgi_command()}"

    def rsgi_command(self) -> str:
        wsgi_module, _, wsgi_attr = self.wsgi_path.rpartition(".")
        if not self.asgi_path:
            return f"rsgi {wsgi_module}:{wsgi_attr}"
        asgi_module, _, asgi_attr = self.asgi_path.rpartition(".")
        package = wsgi_module.rpartition(".")[0]
        if (wsgi_module, asgi_module, wsgi_attr, asgi_attr) == (
            f"{package}.wsgi",
            f"{package}.asgi",
            "application",
            "application",
        ):
            return f"rsgi --django {package}"
        return f"rsgi {asgi_module}:{asgi_attr} --wsgi {wsgi_module}:{wsgi_attr}"


def restart() -> NoReturn:
    """Exit for the autoreloader's parent to start the child again. The watcher's TERM may still be
    on its way: ignored, since Python restores TERM's default action (death) as it exits."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(3)


def asgi_application_path() -> str:
    """The project's ASGI application as a dotted path: ASGI_APPLICATION (Channels' setting), else
    `application` in the asgi module beside WSGI_APPLICATION's (startproject makes both), else ""."""
    configured = getattr(settings, "ASGI_APPLICATION", None)
    if configured:
        return str(configured)
    wsgi = getattr(settings, "WSGI_APPLICATION", None) or ""
    package = wsgi.rpartition(".")[0].rpartition(".")[0]  # mysite.wsgi.application -> mysite
    if not package:
        return ""
    try:
        found = find_spec(f"{package}.asgi") is not None
    except ImportError:
        found = False
    return f"{package}.asgi.application" if found else ""


def logging_beside_django(cfg: Config, directory: str | None) -> str:
    """A --log-config file (its path) that gives rsgi's loggers their own handler instead of the root
    logger's, which rsgi takes over otherwise: Django's console handler on the "django" logger
    passes records on to the root, so they would be printed twice."""
    handler: dict[str, Any] = {"class": "logging.StreamHandler", "formatter": "rsgi", "stream": "ext://sys.stderr"}
    if cfg.error_log not in ("", "-"):
        handler = {"class": "logging.FileHandler", "formatter": "rsgi", "filename": cfg.error_log}
    level = "DEBUG" if cfg.log_level == "trace" else cfg.log_level.upper()
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"rsgi": {"format": FORMAT, "datefmt": DATEFMT}},
        "handlers": {"rsgi": handler},
        # rsgi's Python loggers and the core's (named after its Rust modules: _rsgi.http.service, ...)
        "loggers": {name: {"handlers": ["rsgi"], "level": level, "propagate": False} for name in ("rsgi", "_rsgi")},
    }
    fd, path = tempfile.mkstemp(prefix="rsgi-runserver-", suffix=".json", dir=directory)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)
    return path


class Watcher:
    """Django's reloader in a process of its own, forked once the child has loaded the project (so
    that it watches the modules the child imported). It tells the child through a pipe: b"r" just
    before it asks for a restart (SIGTERM to the child), b"h" before it asks for a new worker (SIGHUP).

    It notices the changes made since the child began to load the project, not only those after its
    own first look at the files, which may come after a quick edit (the child shows an error, the
    file is fixed at once): its first tick compares with the times the child took (`before`: the
    project's files before loading it; then the modules it loaded)."""

    def __init__(self, reloader: autoreload.BaseReloader, before: dict[Path, float], scratch: str) -> None:
        self.parent = os.getpid()
        self.scratch = scratch
        self.seen = b""
        baseline = list({**file_times(reloader), **before}.items())
        read, write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(read)
            self._run(reloader, write, baseline)
        os.close(write)
        self.pipe = read

    def wait_for(self, message: bytes, timeout: float | None) -> bool:
        """Whether the watcher has said `message`, waiting up to `timeout` seconds (None: for ever,
        or until the watcher is gone)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while message not in self.seen:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.pipe], [], [], left)[0]:
                return False
            # The watcher's TERM follows its b"r" at once; its handler (an exception) must not
            # come between reading the message and keeping it.
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            try:
                data = os.read(self.pipe, 64)
                self.seen += data
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            if not data:
                return False
        return True

    def _run(self, reloader: autoreload.BaseReloader, pipe: int, baseline: list[tuple[Path, float]]) -> None:
        code = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server; this process follows
            # TERM comes when the child is gone (PR_SET_PDEATHSIG): if it was killed, its scratch
            # directory is left to this process to remove.
            signal.signal(signal.SIGTERM, lambda *_: self._gone())
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            die_with_parent(self.parent)
            self._instrument(reloader, pipe, baseline)
            reloader.run(threading.main_thread())
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)

    def _gone(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)
        os._exit(0)

    def _instrument(self, reloader: autoreload.BaseReloader, pipe: int, baseline: list[tuple[Path, float]]) -> None:
        parent = self.parent
        new_worker = []  # files changed in this look at the files: one new worker for them all

        def tell(message: bytes, sig: signal.Signals) -> None:
            os.write(pipe, message)
            os.kill(parent, sig)

        def looked() -> None:
            if new_worker and not reloader.should_stop:
                tell(b"h", signal.SIGHUP)
            new_worker.clear()

        def notify_file_changed(path: Path) -> None:  # BaseReloader's, with the outcome sent to the child
            if reloader.should_stop:
                return
            results = autoreload.file_changed.send(sender=reloader, file_path=path)
            handled = [receiver for receiver, result in results if result]
            # Django's own server resets its template loaders (or translations, or what a receiver
            # of the project's handles) in place. A worker forked afresh from the child, which has
            # rendered no template, has the new templates; anything else may be in the child too:
            # a restart.
            if handled and all(getattr(r, "__module__", "") == "django.template.autoreload" for r in handled):
                autoreload.logger.info("%s changed, starting a new worker.", path)
                new_worker.append(path)
            else:
                autoreload.logger.info("%s changed, reloading.", path)
                tell(b"r", signal.SIGTERM)
                reloader.stop()

        reloader.notify_file_changed = notify_file_changed  # type: ignore[method-assign]
        if isinstance(reloader, autoreload.StatReloader):
            snapshot = reloader.snapshot_files
            first = [baseline]

            def snapshot_files() -> Any:
                # StatReloader keeps the last time it saw of each file: the first tick sees the
                # baseline's, then the files' own (a file newer than its baseline has changed).
                if first:
                    yield from first.pop()
                yield from snapshot()
                looked()

            reloader.snapshot_files = snapshot_files  # type: ignore[method-assign]
        else:  # Watchman
            tick = reloader.tick

            def ticks() -> Any:
                for _ in tick():
                    looked()
                    yield

            reloader.tick = ticks  # type: ignore[method-assign]


def watch_project(reloader: autoreload.BaseReloader) -> None:
    """The *.py files of the project's apps and of its settings' package (those under the working
    directory), besides the modules loaded here: the worker imports some that the child never does
    (template tag libraries, imports inside views)."""
    cwd = Path.cwd()
    paths = [Path(app.path) for app in apps.get_app_configs()]
    package = (getattr(settings, "SETTINGS_MODULE", None) or "").partition(".")[0]
    spec = find_spec(package) if package else None
    if spec is not None and spec.submodule_search_locations:
        paths += [Path(p) for p in spec.submodule_search_locations]
    for path in dict.fromkeys(paths):
        if path.is_relative_to(cwd) and "site-packages" not in path.parts:
            reloader.watch_dir(path, "**/*.py")


def file_times(reloader: autoreload.BaseReloader) -> dict[Path, float]:
    """StatReloader's view of the watched files now (others keep theirs in the file watcher)."""
    return dict(reloader.snapshot_files()) if isinstance(reloader, autoreload.StatReloader) else {}
