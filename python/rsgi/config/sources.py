"""Where settings come from, lowest first: defaults < config file (gunicorn.conf.py style) <
environment (``RSGI_*``, ``PORT``, ``WEB_CONCURRENCY``) < flags. `build` merges them into one
validated, frozen `Config`; what it cannot use is a `ConfigError` and what it ignores is a warning.
"""

from __future__ import annotations

import dataclasses
import os
import runpy
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigError
from .schema import FIELDS, Config

__all__ = ["GUNICORN_HOOKS", "ConfigError", "build", "env_names", "from_env", "from_file", "parse_value"]

# gunicorn server hooks: functions in a config file that rsgi does not call (yet).
GUNICORN_HOOKS = frozenset(
    {
        *("on_starting", "on_reload", "when_ready", "pre_fork", "post_fork", "post_worker_init", "worker_int"),
        *("worker_abort", "pre_exec", "pre_request", "post_request", "child_exit", "worker_exit"),
        *("nworkers_changed", "on_exit", "ssl_context"),
    }
)


def parse_value(f: dataclasses.Field[Any], raw: Any) -> Any:
    """Convert a string (env, flag) or a Python value (config file) to the field's type."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind.startswith("list"):
            if isinstance(raw, str):
                return [p.strip() for p in raw.replace(",", " ").split() if p.strip()]
            return [str(x) for x in raw]
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            value = str(raw).strip().lower()
            if value in ("1", "true", "yes", "on"):
                return True
            if value in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        value = str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{f.name}: cannot use {raw!r}") from None
    choices = f.metadata.get("choices")
    if choices and value.lower() not in choices:
        raise ConfigError(f"{f.name}: {raw!r} is not one of {', '.join(choices)}")
    return value.lower() if choices else value


def env_names(f: dataclasses.Field[Any]) -> tuple[str, ...]:
    return (f"RSGI_{f.name.upper()}", *f.metadata["env"])


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings given through the environment. ``RSGI_*`` wins over the conventional names."""
    out: dict[str, Any] = {}
    for f in FIELDS.values():
        for name in reversed(env_names(f)):
            if environ.get(name):
                out[f.name] = parse_value(f, environ[name])
    return out


def from_file(path: str, warn: Callable[[str], None]) -> dict[str, Any]:
    """Settings from a Python config file; gunicorn.conf.py names are understood."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} not found")
    try:
        namespace = runpy.run_path(path)
    except Exception as e:
        raise ConfigError(f"config file {path!r} failed to run: {type(e).__name__}: {e}") from e
    by_conf = {alias: f for f in FIELDS.values() for alias in (f.name, *f.metadata["conf"])}
    out: dict[str, Any] = {}
    for key, value in namespace.items():
        if key in GUNICORN_HOOKS and callable(value):
            warn(f"config file {path}: server hook {key}() is not supported by rsgi and is not called")
            continue
        if key.startswith("_") or callable(value) or isinstance(value, type(os)):
            continue
        f = by_conf.get(key)
        if f is None:
            warn(f"config file {path}: setting {key!r} is not supported by rsgi and is ignored")
            continue
        out[f.name] = parse_value(f, value)
    return out


def build(
    flags: Mapping[str, Any], environ: Mapping[str, str] | None = None, warn: Callable[[str], None] = lambda _m: None
) -> Config:
    """Defaults < config file < environment < flags, validated once (the core view included)."""
    environ = os.environ if environ is None else environ
    env = from_env(environ)
    path = flags.get("config") or env.get("config") or ""
    values: dict[str, Any] = {}
    if path:
        values.update(from_file(path, warn))
    values.update(env)
    values.update(flags)
    # gunicorn's rule: PORT gives the default address only when no address was set anywhere.
    addresses = ("bind", "host", "port", "uds", "fd")
    if environ.get("PORT") and not any(values.get(k) not in (None, "", 0, -1, []) for k in addresses):
        values["bind"] = [f"0.0.0.0:{environ['PORT']}"]
    if values.get("django"):
        project = values["django"]
        if not values.get("app"):
            values["app"] = f"{project}.asgi:application"
        if not values.get("wsgi"):
            values["wsgi"] = f"{project}.wsgi:application"
    cfg = Config(**values, explicit=frozenset(values))
    cfg.validate()
    cfg.core()  # what the core cannot use is an error now, not when a worker starts
    return cfg
