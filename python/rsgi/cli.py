"""The command line, generated from `Config`'s fields: ``rsgi APP [options]``."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .config import FIELDS, Config, ConfigError, build, core_items, env_names, parse_value
from .config.foreign import FOREIGN, PROTOCOL_FLAG, Foreign, check_protocol
from .config.foreign import by_name as foreign_by_name
from .config.foreign import check as check_foreign

SUPPRESS = argparse.SUPPRESS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rsgi",
        description="Serve a WSGI or ASGI app. Every option can also be set as RSGI_<OPTION> in the environment "
        "or in a gunicorn-style config file (-c).",
        argument_default=SUPPRESS,
        # No abbreviations: with gunicorn's and uvicorn's options beside rsgi's, a prefix could
        # silently mean another option (uvicorn's --header was once taken as --header-map).
        allow_abbrev=False,
    )
    p.add_argument("app", nargs="?", metavar="APP", help="module:attribute, e.g. mysite.wsgi:application")
    p.add_argument("--version", action="version", version=f"rsgi {__version__}")
    p.add_argument(
        "--check-config",
        "--print-config",
        action="store_true",
        help="Print the effective settings, then the core view (core.*: what the Rust core will use), and exit.",
    )
    for f in FIELDS.values():
        flags = f.metadata["flags"]
        if not flags:
            continue
        envs = ", ".join(env_names(f))
        text = f"{f.metadata['help']} [env: {envs}]"
        if f.type == "bool":
            if f.metadata["const"] is not None:  # uvicorn's style: the flag alone, or with true/false
                p.add_argument(*flags, dest=f.name, nargs="?", const=f.metadata["const"], metavar="BOOL", help=text)
            else:
                p.add_argument(*flags, dest=f.name, action="store_true", help=text)
            if f.metadata["negative"]:
                p.add_argument(f.metadata["negative"], dest=f.name, action="store_false", help=SUPPRESS)
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "help": f"{text} (default: {_show(f.default)})"}
        if f.metadata["metavar"]:
            kwargs["metavar"] = f.metadata["metavar"]
        if f.metadata["choices"] and not f.metadata["metavar"]:
            kwargs["metavar"] = "{" + ",".join(f.metadata["choices"]) + "}"
        if f.metadata["const"] is not None:
            kwargs["nargs"] = "?"
            kwargs["const"] = f.metadata["const"]
        if f.type.startswith("list"):
            kwargs["action"] = "append"
        p.add_argument(*flags, **kwargs)
    foreign = p.add_argument_group(
        "gunicorn's and uvicorn's options with no effect in rsgi",
        "Accepted so that their command lines start rsgi unchanged; each one given is warned about, with why.",
    )
    for opt in FOREIGN:
        for i, flag in enumerate(opt.flags):
            dest = f"{FOREIGN_DEST}{opt.name}:{i}"
            text = f"refused: {opt.why}" if opt.refuse else opt.why
            if not opt.takes_value:
                foreign.add_argument(flag, dest=dest, action="store_true", help=text)
            else:
                foreign.add_argument(flag, dest=dest, action="append" if opt.repeatable else "store", help=text)
    foreign.add_argument(PROTOCOL_FLAG, dest=PROTOCOL_DEST, help="http only (gunicorn's default)")
    return p


# argparse destinations of the foreign options: "__foreign__<name>:<index of the flag>".
FOREIGN_DEST = "__foreign__"
PROTOCOL_DEST = "__protocol__"


def _show(default: Any) -> str:
    return "none" if default in ("", -1, dataclasses.MISSING) else str(default)


def parse(argv: Sequence[str] | None = None) -> tuple[dict[str, Any], bool]:
    """Flags given on the command line (only those), converted to field types."""
    flags, check, _ = parse_all(argv)
    return flags, check


def parse_all(argv: Sequence[str] | None = None) -> tuple[dict[str, Any], bool, list[tuple[Foreign, str]]]:
    """`parse`, and the foreign options given (each with the flag as written). --protocol with
    anything but http is a ConfigError here."""
    ns = vars(parser().parse_args(argv))
    check = ns.pop("check_config", False)
    if PROTOCOL_DEST in ns:
        check_protocol(ns.pop(PROTOCOL_DEST))
    named = foreign_by_name()
    given: list[tuple[Foreign, str]] = []
    for key in [k for k in ns if k.startswith(FOREIGN_DEST)]:
        ns.pop(key)
        name, _, index = key[len(FOREIGN_DEST) :].partition(":")
        given.append((named[name], named[name].flags[int(index)]))
    for f in FIELDS.values():
        # `rsgi --proxy-protocol mysite.wsgi:application`: a flag whose value is optional took the app.
        raw, const = ns.get(f.name), f.metadata["const"]
        if const is not None and isinstance(raw, str) and "app" not in ns and raw.lower() not in f.metadata["choices"]:
            ns["app"], ns[f.name] = raw, const
    flags: dict[str, Any] = {}
    for name, raw in ns.items():
        if raw is None:
            continue
        f = FIELDS[name]
        if f.type.startswith("list"):
            flags[name] = [v for item in raw for v in parse_value(f, item)]
        else:
            flags[name] = parse_value(f, raw)
    return flags, check, given


def main(argv: Sequence[str] | None = None) -> None:
    from .logs import warn_early

    found: dict[str, Any] = {}
    try:
        flags, check, given = parse_all(argv)
        # gunicorn's GUNICORN_CMD_ARGS, read as gunicorn reads it: as options placed before the
        # command line's (which win), over the config file and the environment.
        if os.environ.get("GUNICORN_CMD_ARGS"):
            env_flags, _, env_given = parse_all(shlex.split(os.environ["GUNICORN_CMD_ARGS"]))
            flags, given = {**env_flags, **flags}, env_given + given
        check_foreign(given, warn_early)
        flags = with_default_config_file(flags)
        cfg = build(flags, warn=warn_early, hooks=found)
    except ConfigError as e:
        print(f"rsgi: error: {e}", file=sys.stderr)
        sys.exit(2)
    if note := green_threads_note(cfg):
        warn_early(note)
    if check:
        print_config(cfg)
        for name in cfg.pending_settings():
            warn_early(f"{name} is accepted for compatibility but not implemented yet; it has no effect")
        sys.exit(check_app(cfg))
    from . import hooks
    from .supervisor import Supervisor

    if cfg.daemon:
        from .daemon import daemonize

        daemonize(cfg.enable_stdio_inheritance)
    hooks.install(found)
    sys.exit(Supervisor(cfg, reread=lambda: reread(flags)).run())


# gunicorn reads this file from the directory it starts in when no config file is named.
DEFAULT_CONFIG_FILE = "gunicorn.conf.py"


def with_default_config_file(flags: dict[str, Any]) -> dict[str, Any]:
    """As gunicorn: without -c (or RSGI_CONFIG), ./gunicorn.conf.py is the config file when it
    exists, so a project that relied on it behaves the same under rsgi. Named by its absolute
    path (--chdir may move the process later, and SIGHUP reads the same file again)."""
    if flags.get("config") or os.environ.get("RSGI_CONFIG") or not os.path.isfile(DEFAULT_CONFIG_FILE):
        return flags
    return {**flags, "config": os.path.abspath(DEFAULT_CONFIG_FILE)}


def green_threads_note(cfg: Config) -> str:
    """gunicorn's gevent and eventlet workers serve up to worker_connections requests at once by
    monkey-patching I/O. rsgi patches nothing: WSGI views run on --threads Python threads, so
    without --threads a view that waits on the network holds its worker. Said once at startup
    rather than guessed: more threads than a CPU-bound app needs raise its p99 (README, 'The GIL')."""
    green = any(name in cfg.worker_class.lower() for name in ("gevent", "eventlet"))
    if not green or "threads" in cfg.explicit or cfg.resolved_interface() == "asgi":
        return ""
    return (
        f"worker class {cfg.worker_class}: rsgi does not monkey-patch; WSGI views run on --threads Python threads "
        f"({cfg.threads} per worker), so views that wait on the network need --threads N (gevent served up to "
        f"{cfg.max_connections} at once), or ASGI"
    )


def check_app(cfg: Config) -> int:
    """--check-config's last step, as gunicorn's: the app (and a --wsgi one) must import, with
    --env, --env-file, --chdir and --pythonpath applied as a worker applies them. 1 with the
    traceback if it does not, so a deploy pipeline can run the check before it switches."""
    import traceback

    from .boot import apply_env
    from .importer import load, prepare_path

    try:
        apply_env(cfg)
        prepare_path(cfg)
        load(cfg)
        if cfg.wsgi:
            load(cfg, cfg.wsgi)
    except Exception:
        print("\nError while loading the application:", file=sys.stderr)
        traceback.print_exc()
        return 1
    return 0


def reread(flags: dict[str, Any]) -> Config:
    """SIGHUP: the settings and the server hooks as the config file and environment say now."""
    from . import hooks
    from .logs import warn_early

    found: dict[str, Any] = {}
    cfg = build(flags, warn=warn_early, hooks=found)
    hooks.install(found)
    return cfg


def print_config(cfg: Config) -> None:
    """One `name = value` line per setting (values as Python literals), the addresses, then the core
    view as `core.name = value` (a --static-django mount joins it when a worker has loaded Django)."""
    lines = [(name, getattr(cfg, name)) for name in FIELDS]
    lines.append(("(listening on)", cfg.binds()))
    lines += [(f"core.{name}", value) for name, value in core_items(cfg.core())]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name:<{width}} = {value!r}")
