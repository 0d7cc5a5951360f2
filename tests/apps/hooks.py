"""For tests/test_hooks.py: a WSGI app whose ``/stuck`` never answers in time (--timeout), and
whose ``/traced`` makes an OpenTelemetry span by hand (the tracer provider is the one the config
file's post_fork set up). Anything else answers the worker's pid."""

from __future__ import annotations

import os
import time
from typing import Any


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    path = environ["PATH_INFO"]
    if path == "/stuck":
        time.sleep(60)
    if path == "/traced":
        from opentelemetry import trace

        with trace.get_tracer("tests.hooks").start_as_current_span("traced-request") as span:
            span.set_attribute("worker.pid", os.getpid())
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
