"""In-process ceiling: call the Django WSGI app directly, with no server and no network.

The number it reports (calls/s, one Python thread) is the most any single-worker WSGI server could reach
for the same view on this machine: every server pays this cost plus its own HTTP, I/O and hand-over costs.

    python bench/inprocess.py --paths /hello,/items --duration 5 --rounds 3

Run it with the same environment as the servers (RSGI_EXAMPLE_DB pointing at a migrated database);
bench/run.py does that for you.
"""

from __future__ import annotations

import argparse
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


def base_environ(path: str, method: str, body_len: int, port: int = 8000) -> dict:
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
        environ["CONTENT_TYPE"] = "application/octet-stream"
    return environ


def make_body(size: int) -> bytes:
    """The same body bench/run.py sends with wrk: `size` bytes of 'x'."""
    return b"x" * size


class _Call:
    """One request through the app; returns (status code, body bytes read)."""

    def __init__(self, app, path: str, method: str, body: bytes):
        self.app = app
        self.template = base_environ(path, method, len(body))
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


def measure(app, path: str, method: str = "GET", body: bytes = b"", duration: float = 5.0) -> dict:
    """Call the app in a tight loop for `duration` seconds; return calls/s and what one response looked like."""
    call = _Call(app, path, method, body)
    status, nbytes = call()  # also a sanity check: a failing view must not look fast
    if not 200 <= status < 300:
        raise SystemExit(f"in-process {method} {path} answered {status}; refusing to report a ceiling")
    calls = 0
    perf = time.perf_counter
    start = perf()
    deadline = start + duration
    cpu0 = time.process_time()
    now = start
    while now < deadline:
        call()
        calls += 1
        now = perf()
    cpu = time.process_time() - cpu0
    elapsed = now - start
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--app-dir", type=Path, default=DEFAULT_APP_DIR)
    ap.add_argument("--app", default="mysite.wsgi:application", help="WSGI target, module:attribute")
    ap.add_argument("--paths", default="/hello,/items", help="comma-separated request paths")
    ap.add_argument("--method", default="GET")
    ap.add_argument("--body-size", type=int, default=0, help="request body size in bytes (for POST)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per path per round")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of untimed calls before each path")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = ap.parse_args(argv)

    app = load_app(args.app_dir.resolve(), args.app)
    body = make_body(args.body_size)
    paths = [p for p in args.paths.split(",") if p]
    report = {}
    for path in paths:
        if args.warmup > 0:
            measure(app, path, args.method, body, args.warmup)
        rounds = [measure(app, path, args.method, body, args.duration) for _ in range(args.rounds)]
        report[path] = {
            "median_calls_per_s": statistics.median(r["calls_per_s"] for r in rounds),
            "rounds": rounds,
        }
    if args.json:
        print(json.dumps(report))
    else:
        for path, r in report.items():
            per_round = ", ".join(f"{x['calls_per_s']:.0f}" for x in r["rounds"])
            print(f"{args.method} {path}: {r['median_calls_per_s']:.0f} calls/s (median; rounds: {per_round})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
