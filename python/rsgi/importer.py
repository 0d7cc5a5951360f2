"""Turn "module:attribute" into the app object (with --chdir and --factory)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from .config import Config


class AppLoadError(Exception):
    """The app could not be imported; the message says why, the cause has the traceback."""


def prepare_path(cfg: Config) -> None:
    """Apply --chdir and make the working directory importable, as gunicorn does; --pythonpath
    directories come first (relative ones from the working directory)."""
    if cfg.chdir:
        os.chdir(cfg.chdir)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for directory in reversed(cfg.pythonpath):
        path = os.path.abspath(directory)
        if path not in sys.path:
            sys.path.insert(0, path)


def load(cfg: Config, target: str = "") -> Any:
    """The object named by `target` (default: the configured app), called with no arguments
    first when --factory is set."""
    target = target or cfg.app
    module_name, _, attr = target.partition(":")
    attr = attr or "application"
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        if e.name and module_name.startswith(e.name):
            raise AppLoadError(f"could not import module {module_name!r} (from {os.getcwd()})") from e
        raise
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    if cfg.factory:
        obj = obj()
    if not callable(obj):
        raise AppLoadError(f"{target} is not callable")
    return obj
