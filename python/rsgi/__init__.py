"""rsgi: a fast, boring, correct application server for WSGI and ASGI apps.

The HTTP core is Rust (tokio + hyper) in ``rsgi._rsgi``; this package configures, supervises
and loads. Start it with ``rsgi APP`` / ``python -m rsgi APP``, or from Python with `run`.
"""

from __future__ import annotations

from typing import Any

from ._rsgi import FileWrapper, __version__

__all__ = ["FileWrapper", "__version__", "run"]


def run(app: str, **settings: Any) -> int:
    """Serve ``app`` ("module:attribute") with settings named as uvicorn's `run()` names them
    where they exist (host, port, workers, log_level, ...). Blocks until the server stops and
    returns its exit code."""
    from .config import build
    from .supervisor import Supervisor

    flags = run_flags(app, settings)
    from . import hooks

    def reread() -> Any:
        found: dict[str, Any] = {}
        cfg = build(flags, hooks=found)
        hooks.install(found)
        return cfg

    return Supervisor(reread(), reread=reread).run()


def run_flags(app: str, settings: dict[str, Any]) -> dict[str, Any]:
    """`run()`'s keywords as settings. Every keyword of uvicorn.run() is taken: as the setting it
    names, or, for those rsgi has no use for (use_colors=...), warned about as their flags are.
    None is uvicorn's "not set" (log_config=None, ssl_keyfile=None)."""
    from .config import FIELDS, parse_value
    from .config.foreign import by_name as foreign_by_name
    from .config.foreign import check as check_foreign
    from .config.sources import option_names
    from .logs import warn_early

    names = option_names()
    flags: dict[str, Any] = {"app": app}
    foreign = foreign_by_name()
    for key, value in settings.items():
        if value is None:
            continue
        if key in foreign:
            check_foreign([(foreign[key], f"run({key}=...)")], warn_early)
            continue
        if key not in names:
            raise TypeError(f"run() got an unknown setting {key!r}")
        f = FIELDS[names[key]]
        if f.name == "log_config" and not isinstance(value, str):
            warn_early(
                "run(log_config=...) has no effect in rsgi: it takes a file (.json, .yaml or .ini), "
                f"not a {type(value).__name__}"
            )
            continue
        if f.name == "headers":  # uvicorn.run(headers=[("name", "value")]): its pairs as NAME:VALUE
            value = [f"{h[0]}:{h[1]}" if isinstance(h, tuple | list) else h for h in value]
        flags[f.name] = value if f.name == "bind" and isinstance(value, list) else parse_value(f, value)
    return flags
