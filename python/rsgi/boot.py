"""What the supervisor does once, before its loop: logging, the environment (--env-file, --env),
the umask, the listening sockets (those systemd passed, then those it binds), the metrics listener
and the preloaded app; then the pid file once the signal handlers are in place. A step that fails
logs why and raises BootFailed with the exit code the server stops with."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import logs, metrics, sockets, systemd, worker
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


def boot(cfg: Config, collector: Callable[[], metrics.Collector]) -> Booted:
    """Everything up to forking the first worker except the signal handlers and the pid file.
    `collector` makes the metrics collector when --metrics-bind asks for one."""
    try:
        logs.setup(cfg.log_level, cfg.error_log, cfg.log_config, cfg.log_format)
    except Exception as e:
        logs.warn_early(f"--log-config {cfg.log_config}: {e}")
        raise BootFailed(2) from e
    try:
        apply_env(cfg)
    except (OSError, ImportError) as e:
        log.error("--env-file %s: %s", cfg.env_file, e)
        raise BootFailed(2) from e
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
    for p in passed:
        name = f" {p.name!r}" if p.name else ""
        log.info("listening on %s (socket%s passed by systemd)", sockets.describe(p.sock, scheme), name)
    # With sockets passed, only an explicit --bind adds more (no default 127.0.0.1:8000).
    addresses = cfg.binds(fallback=not passed)
    try:
        bound = [sockets.bind(a, cfg.backlog) for a in addresses]
    except (OSError, ValueError) as e:
        log.error("could not bind %s: %s", " ".join(addresses), e)
        raise BootFailed(1) from e
    for s in bound:
        log.info("listening on %s", sockets.describe(s, scheme))
    booted.sockets = [p.sock for p in passed] + bound
    if cfg.metrics_bind:
        try:
            booted.metrics = metrics.Endpoint(cfg.metrics_bind, collector())
        except (OSError, ImportError, ValueError) as e:
            log.error("--metrics-bind %s: %s", cfg.metrics_bind, e)
            raise BootFailed(1) from e
        log.info("metrics on http://%s/metrics", cfg.metrics_bind)
    # Socket files rsgi made; systemd's own are systemd's to remove.
    booted.unix_paths = [s.getsockname() for s in bound if s.family == socket.AF_UNIX]
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
    """--pid: written once the supervisor handles signals, so whoever reads it can signal it."""
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")


def release(booted: Booted, pid_file: str) -> None:
    """At exit: close the listeners, remove the Unix socket files and the pid file."""
    for s in booted.sockets:
        s.close()
    if booted.metrics is not None:
        booted.metrics.close()
    for path in [*booted.unix_paths, *([pid_file] if pid_file else [])]:
        with contextlib.suppress(OSError):
            os.unlink(path)
