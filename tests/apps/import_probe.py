"""Appends the importing process's pid to $RSGI_TEST_IMPORT_LOG, so a test can see which
process imported the app (the supervisor with --preload, each worker without)."""

from __future__ import annotations

import os

with open(os.environ["RSGI_TEST_IMPORT_LOG"], "a") as _f:
    _f.write(f"{os.getpid()}\n")


def app(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
