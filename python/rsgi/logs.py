"""Logging glue: one format for the supervisor, workers and the Rust core (through pyo3-log)."""

from __future__ import annotations

import logging
import sys

FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S %z"

log = logging.getLogger("rsgi")


def setup(level: str, error_log: str = "-") -> None:
    """Configure the root logger once per process. `trace` maps to DEBUG (Python has no TRACE)."""
    lvl = logging.DEBUG if level == "trace" else getattr(logging, level.upper(), logging.INFO)
    to_stderr = error_log in ("", "-")
    handler: logging.Handler = logging.StreamHandler(sys.stderr) if to_stderr else logging.FileHandler(error_log)
    handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(lvl)


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
