"""Apps for the supervisor tests: they leave traces in files so a test can see what happened."""

from __future__ import annotations

import os
import time


def marked_slow(environ, start_response):
    """Touch $RSGI_TEST_MARKER on entry (so a test knows the request is inside the app), then
    sleep QUERY_STRING seconds and answer."""
    seconds = float(environ.get("QUERY_STRING") or 1)
    with open(os.environ["RSGI_TEST_MARKER"], "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    body = b"slept %.1f" % seconds
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
