"""What the supervisor does once, before its loop: logging, the environment (--env-file, --env),
the umask, the listening sockets (those systemd passed, then those it binds), the metrics listener
and the preloaded app; then the pid file once the signal handlers are in place. A step that fails
logs why and raises BootFailed with the exit code the server stops with."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import hooks, logs, metrics, sockets, systemd, upgrade, worker
from .config import Config
from .importer import AppLoadError, load, prepare_path

# The supervisor's logger: these lines are the supervisor's (log configs and tests match on it).
log = logging.getLogger("rsgi.supervisor")


class BootFailed(Exception):
    """The server can't start; the reason has been logged. `code` is the exit code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Booted:
    """What the loop serves with."""

    sockets: list[socket.socket] = field(default_factory=list)
    unix_paths: list[str] = field(default_factory=list)  # socket files to remove at exit
    metrics: metrics.Endpoint | None = None
    app: Any = None  # with --preload
    wsgi_app: Any = None  # with --wsgi/--django and --preload
    names: dict[int, str] = field(default_factory=dict)  # each socket's LISTEN_FDNAMES name, by fd
    fixed: set[int] = field(default_factory=set)  # the fds of --bind fd://N sockets


def boot(cfg: Config, collector: Callable[[], metrics.Collector], successor: upgrade.Successor | None = None) -> Booted:
    """Everything up to forking the first worker except the signal handlers and the pid file.
    `collector` makes the metrics collector when --metrics-bind asks for one; `successor` is set
    when a USR2 started this supervisor (the sockets then come from the one it replaces)."""
    try:
        logs.setup(cfg.log_level, cfg.error_log, cfg.log_config, cfg.log_format)
        if cfg.capture_output and cfg.error_log not in ("", "-"):
            logs.capture_output(cfg.error_log)
    except Exception as e:
        logs.warn_early(f"--log-config {cfg.log_config}: {e}")
        raise BootFailed(2) from e
    if not hooks.starting():  # a failing on_starting stops start-up, as in gunicorn
        raise BootFailed(1)
    try:
        apply_env(cfg)
    except (OSError, ImportError) as e:
        log.error("--env-file %s: %s", cfg.env_file, e)
        raise BootFailed(2) from e
    raise_open_files(cfg.max_connections)
    if cfg.umask:
        os.umask(int(cfg.umask, 8))
    for name in cfg.pending_settings():
        log.warning("%s is accepted for compatibility but not implemented yet; it has no effect", name)
    prepare_path(cfg)
    booted = Booted()
    scheme = "https" if cfg.certfile else "http"
    try:
        passed = systemd.listen_fds(os.environ)
    except ValueError as e:
        log.error("socket activation: %s", e)
        raise BootFailed(1) from e
    by = f"the old supervisor {successor.old_pid}" if successor is not None and successor.pending else "systemd"
    metrics_sock = _take(passed, cfg.metrics_bind, "127.0.0.1") if cfg.metrics_bind else None
    if successor is not None and successor.pending:
        for p in [p for p in passed if p.name == upgrade.METRICS]:
            log.info("%s: --metrics-bind changed; no longer listening there", sockets.describe(p.sock))
            passed.remove(p)
            p.sock.close()
    for p in passed:
        name = f" {p.name!r}" if p.name else ""
        log.info("listening on %s (socket%s passed by %s)", sockets.describe(p.sock, scheme), name, by)
    # With sockets passed, only an explicit --bind adds more (no default 127.0.0.1:8000). One that
    # names a passed socket's address is that socket: binding it again would fail (EADDRINUSE).
    addresses = cfg.binds(fallback=not passed)
    bound = []
    try:
        for address in addresses:
            if any(sockets.same_address(p.sock, address) for p in passed):
                log.info("--bind %s: the socket passed for it is served (not bound again)", address)
                continue
            bound.append(sockets.bind(address, cfg.backlog))
            booted.names[bound[-1].fileno()] = ""
            if address.startswith("fd://"):
                booted.fixed.add(bound[-1].fileno())
    except (OSError, ValueError) as e:
        for s in bound:
            s.close()
        log.error("could not bind %s: %s", address, e)
        raise BootFailed(1) from e
    for s in bound:
        log.info("listening on %s", sockets.describe(s, scheme))
    booted.sockets = [p.sock for p in passed] + bound
    booted.names.update({p.sock.fileno(): p.name for p in passed})
    if cfg.metrics_bind:
        try:
            booted.metrics = metrics.Endpoint(cfg.metrics_bind, collector(), metrics_sock)
        except (OSError, ImportError, ValueError) as e:
            log.error("--metrics-bind %s: %s", cfg.metrics_bind, e)
            raise BootFailed(1) from e
        log.info("metrics on http://%s/metrics", cfg.metrics_bind)
    # Socket files rsgi made (or took over from the supervisor a USR2 replaced); systemd's own are
    # systemd's to remove.
    booted.unix_paths = [s.getsockname() for s in bound if s.family == socket.AF_UNIX]
    if successor is not None:
        served = {p.sock.getsockname() for p in passed if p.sock.family == socket.AF_UNIX}
        booted.unix_paths += [path for path in successor.unlink if path in served]
    if cfg.preload:
        try:
            booted.app = load(cfg)
            if cfg.wsgi:
                booted.wsgi_app = load(cfg, cfg.wsgi)
        except AppLoadError as e:
            log.error("%s", e, exc_info=e.__cause__)
            raise BootFailed(worker.EXIT_BOOT_ERROR) from e
        except Exception as e:
            log.exception("the app failed to import")
            raise BootFailed(worker.EXIT_BOOT_ERROR) from e
    return booted


def _take(passed: list[systemd.Passed], address: str, default_host: str) -> socket.socket | None:
    """The passed socket bound to `address`, removed from `passed` (None: there is none)."""
    for p in passed:
        if sockets.same_address(p.sock, address, default_host):
            passed.remove(p)
            return p.sock
    return None


# Descriptors a worker needs besides its connections: listeners, logs, the scoreboard, the app's
# database connections and files.
FILES_BESIDE_CONNECTIONS = 1024


def raise_open_files(max_connections: int) -> None:
    """Every connection is a file descriptor, so a worker needs `--max-connections` of them plus
    its own. The soft limit a service starts with is often 1024 (systemd's default, kept low for
    select()'s sake) while the hard limit is far higher: the soft one is raised toward what the
    cap needs, never past the hard one, as Go's runtime does for every program (an app calling
    select() on a descriptor past 1023 gets Python's ValueError, not memory corruption). When the
    hard limit is lower, a warning: connections past it wait in the backlog. Workers inherit it."""
    want = max_connections + FILES_BESIDE_CONNECTIONS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.info("open files limit raised from %d to %d (--max-connections %d)", soft, target, max_connections)
            soft = target
        except (ValueError, OSError) as e:
            log.warning("could not raise the open files limit from %d: %s", soft, e)
    if soft != resource.RLIM_INFINITY and soft < want:
        log.warning(
            "open files limit %d (hard %d) is below --max-connections %d plus %d for the worker's own files: "
            "connections past it wait in the backlog (raise LimitNOFILE= or ulimit -n)",
            soft,
            hard,
            max_connections,
            FILES_BESIDE_CONNECTIONS,
        )


def apply_env(cfg: Config) -> None:
    """--env-file, then --env. As with uvicorn, a variable already in the environment wins over
    the file (so `docker run -e` overrides it); --env wins over both."""
    if cfg.env_file:
        if not os.path.isfile(cfg.env_file):
            raise FileNotFoundError(f"no such file: {cfg.env_file}")
        try:
            from dotenv import dotenv_values
        except ImportError:
            raise ImportError("reading an env file needs python-dotenv (pip install python-dotenv)") from None
        for key, value in dotenv_values(cfg.env_file).items():
            if value is not None:
                os.environ.setdefault(key, value)
    for item in cfg.env:
        key, _, value = item.partition("=")
        os.environ[key] = value


def write_pid(path: str) -> None:
    """--pid: written once the supervisor handles signals, so whoever reads it can signal it (by a
    USR2 successor, once it serves). Replaced in one step: a reader never sees it empty."""
    partial = f"{path}.{os.getpid()}.tmp"
    with open(partial, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(partial, path)


def release(booted: Booted, pid_file: str) -> None:
    """At exit: close the listeners, remove the Unix socket files, and the pid file if it still
    names this process (after a USR2 it names the new supervisor)."""
    for s in booted.sockets:
        s.close()
    if booted.metrics is not None:
        booted.metrics.close()
    for path in booted.unix_paths:
        with contextlib.suppress(OSError):
            os.unlink(path)
    with contextlib.suppress(OSError, ValueError):
        if pid_file and int(Path(pid_file).read_text().strip() or 0) == os.getpid():
            os.unlink(pid_file)
