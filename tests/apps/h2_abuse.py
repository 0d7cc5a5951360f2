"""The WSGI app the HTTP/2 abuse tests (tests/reliability/test_h2_abuse.py) serve.

- ``/big?N``: N bytes of ``x`` in one piece with a Content-Length (cheap to build, so the worker's RSS
  shows what the server holds, not what the app spent making it).
- ``/calls``: how many requests this worker's app has run so far (this one included).
- anything else: ``ok``.
"""

from __future__ import annotations

import itertools

_calls = itertools.count(1)


def app(environ, start_response):
    calls = next(_calls)
    path = environ["PATH_INFO"]
    if path == "/big":
        data = b"x" * int(environ.get("QUERY_STRING") or 1 << 20)
    elif path == "/calls":
        data = str(calls).encode()
    else:
        data = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
