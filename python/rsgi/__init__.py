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
    from .config import FIELDS, build, parse_value
    from .supervisor import Supervisor

    # Every spelling a flag has is a keyword: --timeout-keep-alive is timeout_keep_alive.
    names = {flag.lstrip("-").replace("-", "_"): f.name for f in FIELDS.values() for flag in f.metadata["flags"]}
    names.update({name: name for name in FIELDS})
    flags: dict[str, Any] = {"app": app}
    for key, value in settings.items():
        if key not in names:
            raise TypeError(f"run() got an unknown setting {key!r}")
        f = FIELDS[names[key]]
        flags[f.name] = value if f.name == "bind" and isinstance(value, list) else parse_value(f, value)
    from . import hooks

    def reread() -> Any:
        found: dict[str, Any] = {}
        cfg = build(flags, hooks=found)
        hooks.install(found)
        return cfg

    return Supervisor(reread(), reread=reread).run()
