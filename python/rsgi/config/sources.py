"""Where settings come from, lowest first: defaults < config file (gunicorn.conf.py style) <
the Django settings' ``RSGI`` dict < environment (``RSGI_*``, ``PORT``, ``WEB_CONCURRENCY``) < flags.
`build` merges them into one validated, frozen `Config`; what it cannot use is a `ConfigError` and
what it ignores is a warning.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import runpy
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigError
from .foreign import by_name as foreign_by_name
from .foreign import check as check_foreign
from .foreign import check_protocol
from .schema import FIELDS, Config

__all__ = [
    "GUNICORN_HOOKS",
    "UNCALLED_HOOKS",
    "ConfigError",
    "build",
    "env_names",
    "from_django",
    "from_env",
    "from_file",
    "parse_value",
    "read_django_rsgi",
]

# gunicorn server hooks: functions in a config file, called by rsgi (hooks.py) except these two.
GUNICORN_HOOKS = frozenset(
    {
        *("on_starting", "on_reload", "when_ready", "pre_fork", "post_fork", "post_worker_init", "worker_int"),
        *("worker_abort", "pre_exec", "pre_request", "post_request", "child_exit", "worker_exit"),
        *("nworkers_changed", "on_exit", "ssl_context"),
    }
)
UNCALLED_HOOKS = frozenset({"pre_exec", "ssl_context"})


def parse_value(f: dataclasses.Field[Any], raw: Any) -> Any:
    """Convert a string (env, flag) or a Python value (config file) to the field's type."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind.startswith("list"):
            if isinstance(raw, str) and not f.metadata.get("split", True):
                return [raw.strip()] if raw.strip() else []  # one item per flag: values may hold spaces
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
    """Settings given through the environment: the conventional names (``PORT``,
    ``WEB_CONCURRENCY``), then uvicorn's ``UVICORN_*``, then ``RSGI_*``, each winning over the one
    before."""
    conventional: dict[str, Any] = {}
    ours: dict[str, Any] = {}
    for f in FIELDS.values():
        rsgi_name, *others = env_names(f)
        for name in reversed(others):
            if environ.get(name):
                conventional[f.name] = parse_value(f, environ[name])
        if environ.get(rsgi_name):
            ours[f.name] = parse_value(f, environ[rsgi_name])
    return {**conventional, **from_uvicorn_env(environ), **ours}


def from_uvicorn_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """uvicorn reads every option from ``UVICORN_<OPTION>`` (click's names: ``UVICORN_HOST``,
    ``UVICORN_WORKERS``, ``UVICORN_RELOAD_DIRS``, ``UVICORN_APP``, ``UVICORN_PROXY_HEADERS=false``);
    so does rsgi, for each option the two share. uvicorn's options rsgi has no use for are
    ignored here as uvicorn ignores names it does not know."""
    names = option_names()
    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith("UVICORN_") or not raw:
            continue
        option = key[len("UVICORN_") :].lower()
        if option == "app":
            out["app"] = raw
        elif option in names:
            f = FIELDS[names[option]]
            out[f.name] = parse_value(f, raw)
    return out


def option_names() -> dict[str, str]:
    """uvicorn's option names (its `run()` keywords, its `UVICORN_*` variables) to setting names:
    every spelling a flag has (--timeout-keep-alive is timeout_keep_alive), click's plural of a
    repeatable one (reload_dirs is --reload-dir), and the settings' own names."""
    names = {flag.lstrip("-").replace("-", "_"): f.name for f in FIELDS.values() for flag in f.metadata["flags"]}
    names.update({f"{key}s": name for key, name in list(names.items()) if FIELDS[name].type.startswith("list")})
    names.update({name: name for name in FIELDS})
    return names


def from_file(
    path: str, warn: Callable[[str], None], hooks: dict[str, Callable[..., Any]] | None = None
) -> dict[str, Any]:
    """Settings from a Python config file; gunicorn.conf.py names are understood. Its server
    hooks (functions) go into `hooks`; without it (no supervisor to call them) they are warned
    about, as are the ones rsgi never calls."""
    try:
        if path.startswith("python:"):  # gunicorn's -c python:package.module, from the working directory
            if os.getcwd() not in sys.path:  # the `rsgi` script's sys.path[0] is its bin directory
                sys.path.insert(0, os.getcwd())
            namespace = vars(importlib.import_module(path[len("python:") :]))
        elif not os.path.isfile(path):
            raise ConfigError(f"config file {path!r} not found")
        else:
            namespace = runpy.run_path(path)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"config file {path!r} failed to run: {type(e).__name__}: {e}") from e
    by_conf, foreign = _by_conf(), foreign_by_name()
    out: dict[str, Any] = {}
    for key, value in namespace.items():
        if key in GUNICORN_HOOKS and callable(value):
            if hooks is not None and key not in UNCALLED_HOOKS:
                hooks[key] = value
            else:
                warn(f"config file {path}: server hook {key}() is not supported by rsgi here and is not called")
            continue
        # None is gunicorn's "unset" (config templates list every setting with its default).
        if key.startswith("_") or callable(value) or isinstance(value, type(os)) or value is None:
            continue
        f = by_conf.get(key)
        if f is None:
            if key == "protocol":
                check_protocol(str(value))
            elif key in foreign:
                check_foreign([(foreign[key], f"setting {key!r}")], lambda m: warn(f"config file {path}: {m}"))
            else:
                warn(f"config file {path}: setting {key!r} is not supported by rsgi and is ignored")
            continue
        out[f.name] = parse_value(f, value)
    return out


def _by_conf() -> dict[str, dataclasses.Field[Any]]:
    """Every name a setting has in a config file (and in RSGI): the field's, and gunicorn's."""
    return {alias: f for f in FIELDS.values() for alias in (f.name, *f.metadata["conf"])}


# What is served and from where: given where rsgi starts (flags, environment, config file), never
# by the settings module that these very settings lead to.
NOT_FROM_DJANGO = frozenset({"app", "django", "wsgi", "chdir", "config"})


def from_django(rsgi: Any, origin: str, warn: Callable[[str], None]) -> dict[str, Any]:
    """Settings from a Django settings module's ``RSGI = {...}`` (`origin` names it in messages):
    the config file's names, its values parsed as the config file's are."""
    if rsgi is None:
        return {}
    if not isinstance(rsgi, Mapping):
        raise ConfigError(f"{origin} must be a dict of rsgi settings, not {type(rsgi).__name__}")
    by_conf = _by_conf()
    out: dict[str, Any] = {}
    for key, value in rsgi.items():
        f = by_conf.get(key) if isinstance(key, str) else None
        if f is None:
            warn(f"{origin}: setting {key!r} is not supported by rsgi and is ignored")
        elif f.name in NOT_FROM_DJANGO:
            warn(f"{origin}: setting {key!r} decides what is served, so it is not read from Django's settings")
        else:
            out[f.name] = parse_value(f, value)
    return out


# Run in a fresh interpreter: the settings module's RSGI as JSON on stdout (what the module prints
# goes to stderr), or {"found": false} when there is no such module.
_READ_RSGI = """\
import importlib, json, os, sys
out, sys.stdout = sys.stdout, sys.stderr
sys.path.insert(0, os.getcwd())
name = sys.argv[1]
try:
    module = importlib.import_module(name)
except ModuleNotFoundError as e:
    if not e.name or not (name == e.name or name.startswith(e.name + ".")):
        raise
    json.dump({"found": False}, out)
else:
    def text(o):
        return os.fspath(o) if isinstance(o, os.PathLike) else str(o)
    json.dump({"found": True, "value": getattr(module, "RSGI", None)}, out, default=text)
"""


def read_django_rsgi(
    known: Mapping[str, Any], environ: Mapping[str, str], warn: Callable[[str], None]
) -> tuple[str, Any] | None:
    """(settings module, its RSGI value) for a Django project, or None. The module is
    DJANGO_SETTINGS_MODULE (the environment with --env-file and --env applied, as the app will see
    it), else PROJECT.settings with --django PROJECT. It is imported in a separate interpreter, in
    --chdir, so that nothing it does (reading the environment, starting an SDK) stays in this process
    (the supervisor, which forks the workers)."""
    app_environ = dict(environ)
    if known.get("env_file") and os.path.isfile(known["env_file"]):
        try:
            from dotenv import dotenv_values
        except ImportError:
            pass  # the supervisor reports it
        else:
            for key, value in dotenv_values(known["env_file"]).items():
                if value is not None:
                    app_environ.setdefault(key, value)
    for item in known.get("env") or ():
        key, _, value = item.partition("=")
        app_environ[key] = value
    module = app_environ.get("DJANGO_SETTINGS_MODULE") or (f"{known['django']}.settings" if known.get("django") else "")
    if not module:
        return None
    try:
        done = subprocess.run(
            [sys.executable, "-c", _READ_RSGI, module],
            cwd=known.get("chdir") or None,
            env=app_environ,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        answer = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError) as e:
        warn(f"could not read RSGI from the Django settings {module}: {e}")
        return None
    if answer is None:
        error = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        warn(f"could not read RSGI from the Django settings {module}: {error}")
        return None
    return (module, answer["value"]) if answer["found"] else None


def build(
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    warn: Callable[[str], None] = lambda _m: None,
    django_rsgi: tuple[str, Any] | None = None,
    hooks: dict[str, Callable[..., Any]] | None = None,
) -> Config:
    """Defaults < config file < the Django settings' RSGI < environment < flags, validated once (the
    core view included). `django_rsgi` is (settings module, RSGI value) from a caller that has
    Django's settings loaded (runserver); without it they are read as `read_django_rsgi` says.
    The config file's server hooks are put in `hooks` (callables are no settings: the frozen
    Config keeps plain values, and the supervisor installs these with rsgi.hooks.install)."""
    environ = os.environ if environ is None else environ
    env = from_env(environ)
    path = flags.get("config") or env.get("config") or ""
    values: dict[str, Any] = {}
    if path:
        values.update(from_file(path, warn, hooks))
    known = {**values, **env, **flags}
    if django_rsgi is None:
        django_rsgi = read_django_rsgi(known, environ, warn)
    if django_rsgi is not None:
        rsgi = from_django(django_rsgi[1], f"{django_rsgi[0]}.RSGI", warn)
        # A project's asgi_path is for when both interfaces are served; it is no error elsewhere.
        if "asgi_path" not in known and not (known.get("wsgi") or known.get("django")):
            rsgi.pop("asgi_path", None)
        values.update(rsgi)
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
