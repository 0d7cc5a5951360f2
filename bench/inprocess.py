"""In-process ceiling: call the Django app directly, with no server and no network.

WSGI (default): `mysite.wsgi:application` called in a loop in one thread, with an environ like the one a server
builds. ASGI (`--interface asgi`): `mysite.asgi:application` awaited in a loop on one event loop (uvloop when
importable, as uvicorn uses), with a minimal http scope and a receive/send pair that behave like a server's.
The number it reports (calls/s, one worker) is the most a single-worker server of that interface could reach
for the same view on this machine if it runs the app as is: every server pays this cost plus its own HTTP, I/O
and hand-over costs. For ASGI, Django's sync_to_async calls use asgiref's own executor here; rsgi replaces that
executor (--sync-concurrency), which is how its ASGI rows pass this ceiling.

    python bench/inprocess.py --paths /hello,/items --duration 5 --rounds 3
    python bench/inprocess.py --interface asgi --paths /ahello,/aitems --duration 5 --rounds 3

Run it with the same environment as the servers (RSGI_EXAMPLE_DB pointing at a migrated database);
bench/run.py does that for you.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from wsgiref.util import FileWrapper

REPO = Path(__file__).resolve().parent.parent
DEFAULT_APP_DIR = REPO / "examples" / "django_project"


def load_app(app_dir: Path, target: str):
    """Import "module:attribute" the way a server would: with app_dir first on sys.path."""
    os.chdir(app_dir)
    sys.path.insert(0, str(app_dir))
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr or "application")


def base_environ(
    path: str, method: str, body_len: int, content_type: str = "application/octet-stream", port: int = 8000
) -> dict:
    """An environ like the one a server builds for a wrk request (same headers wrk sends, plus a UA)."""
    path_info, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "54321",
        "HTTP_HOST": f"127.0.0.1:{port}",
        "HTTP_USER_AGENT": "bench-inprocess/1",
        "HTTP_ACCEPT": "*/*",
        "HTTP_CONNECTION": "keep-alive",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
    }
    if method != "GET" or body_len:
        environ["CONTENT_LENGTH"] = str(body_len)
        environ["CONTENT_TYPE"] = content_type
    return environ


def make_body(size: int) -> bytes:
    """`size` bytes of 'x' (bench/run.py passes the exact body wrk sends with --body-file instead)."""
    return b"x" * size


class _Call:
    """One request through the app; returns (status code, body bytes read)."""

    def __init__(self, app, path: str, method: str, body: bytes, content_type: str):
        self.app = app
        self.template = base_environ(path, method, len(body), content_type)
        self.body = body
        self.status = ""

    def _start_response(self, status, headers, exc_info=None):
        self.status = status
        return self._write

    @staticmethod
    def _write(data):  # legacy write() callable; Django does not use it
        return None

    def __call__(self) -> tuple[int, int]:
        environ = dict(self.template)
        environ["wsgi.input"] = io.BytesIO(self.body)
        result = self.app(environ, self._start_response)
        n = 0
        try:
            for chunk in result:
                n += len(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return int(self.status[:3]), n


def asgi_scope(path: str, method: str, body_len: int, content_type: str, port: int = 8000) -> dict:
    """An http scope like the one an ASGI server builds for a wrk request (same headers as base_environ)."""
    path_only, _, query = path.partition("?")
    headers = [
        (b"host", f"127.0.0.1:{port}".encode()),
        (b"user-agent", b"bench-inprocess/1"),
        (b"accept", b"*/*"),
        (b"connection", b"keep-alive"),
    ]
    if method != "GET" or body_len:
        headers += [(b"content-length", str(body_len).encode()), (b"content-type", content_type.encode())]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path_only,
        "raw_path": path_only.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 54321),
        "server": ("127.0.0.1", port),
    }


class _AsgiCall:
    """One request through an ASGI app; returns (status code, body bytes sent).

    receive() hands over the whole body in one message, then, like a server, blocks until the response is complete
    and only then reports http.disconnect (Django listens for a disconnect while the view runs and would cancel it).
    """

    def __init__(self, app, path: str, method: str, body: bytes, content_type: str):
        self.app = app
        self.template = asgi_scope(path, method, len(body), content_type)
        self.body = body

    async def __call__(self) -> tuple[int, int]:
        done = asyncio.Event()
        sent_body = False
        status = 0
        nbytes = 0

        async def receive():
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": self.body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            nonlocal status, nbytes
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                nbytes += len(message.get("body", b""))
                if not message.get("more_body", False):
                    done.set()

        await self.app(dict(self.template), receive, send)
        done.set()
        return status, nbytes


def _timed_loop(call_once, duration: float) -> tuple[int, float, float]:
    """Call `call_once` until `duration` seconds passed; returns (calls, elapsed s, CPU s)."""
    calls = 0
    perf = time.perf_counter
    start = perf()
    deadline = start + duration
    cpu0 = time.process_time()
    now = start
    while now < deadline:
        call_once()
        calls += 1
        now = perf()
    return calls, now - start, time.process_time() - cpu0


async def _timed_loop_async(call_once, duration: float) -> tuple[int, float, float]:
    calls = 0
    perf = time.perf_counter
    start = perf()
    deadline = start + duration
    cpu0 = time.process_time()
    now = start
    while now < deadline:
        await call_once()
        calls += 1
        now = perf()
    return calls, now - start, time.process_time() - cpu0


def measure(
    app,
    path: str,
    method: str = "GET",
    body: bytes = b"",
    duration: float = 5.0,
    content_type: str = "application/octet-stream",
    loop: asyncio.AbstractEventLoop | None = None,
) -> dict:
    """Call the app in a tight loop for `duration` seconds; return calls/s and what one response looked like.

    With `loop`, the app is ASGI and every call is awaited on that loop; otherwise it is WSGI.
    """
    if loop is None:
        call = _Call(app, path, method, body, content_type)
        status, nbytes = call()  # also a sanity check: a failing view must not look fast
    else:
        acall = _AsgiCall(app, path, method, body, content_type)
        status, nbytes = loop.run_until_complete(acall())
    if not 200 <= status < 300:
        raise SystemExit(f"in-process {method} {path} answered {status}; refusing to report a ceiling")
    if loop is None:
        calls, elapsed, cpu = _timed_loop(call, duration)
    else:
        calls, elapsed, cpu = loop.run_until_complete(_timed_loop_async(acall, duration))
    return {
        "path": path,
        "method": method,
        "calls": calls,
        "seconds": elapsed,
        "calls_per_s": calls / elapsed,
        "cpu_s": cpu,
        "status": status,
        "response_bytes": nbytes,
    }


def new_loop(choice: str) -> tuple[asyncio.AbstractEventLoop, str]:
    """A fresh event loop for the ASGI ceiling: uvloop when asked or (auto) when importable, else asyncio's."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            loop = uvloop.new_event_loop()
            asyncio.set_event_loop(loop)
            return loop, "uvloop"
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop, "asyncio"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--app-dir", type=Path, default=DEFAULT_APP_DIR)
    ap.add_argument("--interface", choices=("wsgi", "asgi"), default="wsgi")
    ap.add_argument("--app", default="", help="module:attribute (default: mysite.wsgi/mysite.asgi:application)")
    ap.add_argument("--paths", default="/hello,/items", help="comma-separated request paths")
    ap.add_argument("--method", default="GET")
    ap.add_argument("--body-size", type=int, default=0, help="request body of this many 'x' bytes (for POST)")
    ap.add_argument("--body-file", type=Path, default=None, help="request body read from this file instead")
    ap.add_argument("--content-type", default="application/octet-stream", help="Content-Type of the body")
    ap.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="event loop (ASGI)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per path per round")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of untimed calls before each path")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = ap.parse_args(argv)

    target = args.app or f"mysite.{args.interface}:application"
    app = load_app(args.app_dir.resolve(), target)
    body = args.body_file.read_bytes() if args.body_file else make_body(args.body_size)
    loop, loop_name = (None, "") if args.interface == "wsgi" else new_loop(args.loop)
    paths = [p for p in args.paths.split(",") if p]
    report = {}
    try:
        for path in paths:
            kwargs = {"content_type": args.content_type, "loop": loop}
            if args.warmup > 0:
                measure(app, path, args.method, body, args.warmup, **kwargs)
            rounds = [measure(app, path, args.method, body, args.duration, **kwargs) for _ in range(args.rounds)]
            report[path] = {
                "median_calls_per_s": statistics.median(r["calls_per_s"] for r in rounds),
                "interface": args.interface,
                "loop": loop_name,
                "rounds": rounds,
            }
    finally:
        if loop is not None:
            loop.close()
    if args.json:
        print(json.dumps(report))
    else:
        for path, r in report.items():
            per_round = ", ".join(f"{x['calls_per_s']:.0f}" for x in r["rounds"])
            how = f"ASGI on {loop_name}" if loop_name else "WSGI"
            print(f"{args.method} {path} ({how}): {r['median_calls_per_s']:.0f} calls/s (median; rounds: {per_round})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
