"""Decide whether an app speaks WSGI or ASGI."""

from __future__ import annotations

import inspect
from typing import Any


def detect(app: Any) -> str:
    """ASGI 3 apps are coroutine functions (or objects whose ``__call__`` is one, like Django's
    ASGIHandler); everything else is treated as WSGI. ``--interface`` overrides this."""
    if inspect.iscoroutinefunction(app):
        return "asgi"
    call = getattr(app, "__call__", None)  # noqa: B004 - we want the method itself
    if call is not None and inspect.iscoroutinefunction(call):
        return "asgi"
    # ASGI 2: a class whose instances (built from the scope) are async callables.
    if inspect.isclass(app) and inspect.iscoroutinefunction(getattr(app, "__call__", None)):  # noqa: B004
        return "asgi"
    return "wsgi"
