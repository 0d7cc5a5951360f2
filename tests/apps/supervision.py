"""An app for the supervisor tests that leaves traces a test can wait for.

- ``/slow?SECONDS`` appends this worker's pid to ``$RSGI_TEST_MARKER`` as soon as it is entered
  (so a test knows the request is inside the app), then sleeps and answers "slept N".
- ``/pid`` answers with the worker's pid.
- anything else answers "ok" at once (readiness checks).
"""

from __future__ import annotations

import os
import time


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/slow":
        seconds = float(environ.get("QUERY_STRING") or 1)
        with open(os.environ["RSGI_TEST_MARKER"], "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(seconds)
        body = b"slept %.1f" % seconds
    elif path == "/pid":
        body = str(os.getpid()).encode()
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
