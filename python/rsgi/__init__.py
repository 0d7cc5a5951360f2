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

    flags = {"app": app}
    for key, value in settings.items():
        if key not in FIELDS:
            raise TypeError(f"run() got an unknown setting {key!r}")
        flags[key] = value if key == "bind" and isinstance(value, list) else parse_value(FIELDS[key], value)
    return Supervisor(build(flags)).run()
