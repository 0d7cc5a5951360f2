"""Logging glue: one format for the supervisor, workers and the Rust core (through pyo3-log,
behind a queue that a thread of each worker drains: see src/bridge/log.rs)."""

from __future__ import annotations

import logging
import sys
import threading

FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S %z"

log = logging.getLogger("rsgi")


def setup(level: str, error_log: str = "-", config_file: str = "") -> None:
    """Configure logging once per process (workers inherit it across fork). With a config file
    (--log-config) that file decides everything; otherwise one handler on the root logger.
    `trace` maps to DEBUG (Python has no TRACE)."""
    if config_file:
        load_config_file(config_file)
        return
    lvl = logging.DEBUG if level == "trace" else getattr(logging, level.upper(), logging.INFO)
    to_stderr = error_log in ("", "-")
    handler: logging.Handler = logging.StreamHandler(sys.stderr) if to_stderr else logging.FileHandler(error_log)
    handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(lvl)


def forward_core_logs() -> None:
    """In a worker, before the core starts: a thread that hands the Rust core's log records to
    `logging`, so the core's own (tokio) threads never wait for the GIL to log."""
    from ._rsgi import forward_logs

    threading.Thread(target=forward_logs, name="rsgi-core-log", daemon=True).start()


def flush_core_logs() -> None:
    """In a worker about to exit: the core's records still queued go to `logging` now."""
    from ._rsgi import flush_logs

    flush_logs()


def reopen_files() -> None:
    """SIGUSR1 (after logrotate moved the files): every logging.FileHandler in this process
    closes its file and opens the path again. Handlers that manage rotation themselves
    (RotatingFileHandler and friends reopen on their own schedule; WatchedFileHandler notices a
    moved file) are reopened the same way, which is harmless for them."""
    handlers = set(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            handlers.update(logger.handlers)
    for h in handlers:
        if isinstance(h, logging.FileHandler):
            h.acquire()
            try:
                if h.stream is not None:
                    h.stream.close()
                h.stream = h._open()
            finally:
                h.release()


def load_config_file(path: str) -> None:
    import logging.config

    if path.endswith((".json", ".yaml", ".yml")):
        with open(path) as f:
            if path.endswith(".json"):
                import json

                config = json.load(f)
            else:
                import yaml  # PyYAML, only needed for YAML configs

                config = yaml.safe_load(f)
        logging.config.dictConfig(config)
    else:
        logging.config.fileConfig(path, disable_existing_loggers=False)


def warn_early(message: str) -> None:
    """A warning found while the config is still being read (before logging is set up)."""
    print(f"rsgi: warning: {message}", file=sys.stderr)


def set_title(role: str, name: str) -> None:
    """Process title such as ``rsgi: worker [mysite.wsgi:application]`` when setproctitle is installed."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(f"rsgi: {role} [{name}]")
