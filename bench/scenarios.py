"""What bench/run.py asks the servers to do: one `Scenario` each, in `SCENARIOS`.

A scenario names the request (path, method, body), the interfaces it applies to (servers of another interface are
`n/a` in its table), the load tool (`kind`: wrk for HTTP/1.1, h2load for HTTP/2, bench/wsload-rs for websockets),
whether it has an in-process ceiling, and what rsgi still lacks for it (`pending`).

The compression scenarios (`expect_coding`) send `Accept-Encoding` and are run by `--preset compress` against the
compression stacks of servers.py; they are not in the default scenario list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from servers import ServerDef

FORM = "application/x-www-form-urlencoded"


# The static-big scenario's file, created in STATIC_ROOT by run.py (1 MiB of random bytes).
BIG_STATIC = "bench-1mib.bin"


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    what: str
    interfaces: tuple[str, ...]  # "wsgi", "asgi", "static"
    method: str = "GET"
    body_size: int = 0
    content_type: str = ""
    kind: str = "http"  # http (wrk) | h2 (h2load) | ws (bench/wsload-rs, or bench/wsload.py when not built)
    ceiling: bool = True  # also measure the app in-process (bench/inprocess.py), per interface
    static: bool = False  # the server itself serves STATIC_ROOT (no Django)
    websocket: bool = False  # needs a server with websocket support
    connections: int | None = None  # fixed load connections; None: every value of --connections
    idle_clients: int = 0  # idle keep-alive connections held open by bench/idle_clients.py during the load
    asgi_app: str | None = None  # ASGI target instead of mysite.asgi:application
    ready_path: str = ""  # GET path polled until the server answers; default: `path` (GET scenarios) or /hello
    session: bool = False  # every request carries the session cookie of the demo user run.py signs in at setup
    headers: tuple[str, ...] = ()  # extra request headers ("Name: value") of the load and the probe
    expect_coding: str = ""  # a compression scenario: the Content-Encoding a compressing server must answer with
    pending: str = ""  # the rsgi feature this scenario waits for; rsgi's row is n/a with this reason

    def load_connections(self, matrix: list[int]) -> list[int]:
        return [self.connections] if self.connections else matrix


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("hello", "/hello", "sync view, 13-byte text body: server + Django request overhead", ("wsgi",)),
        Scenario("ahello", "/ahello", "async view, 19-byte text body, on the event loop", ("asgi",)),
        Scenario("items", "/items", "sync view: 20-row SQLite ORM query serialised to JSON (~2.5 KB)", ("wsgi",)),
        Scenario("aitems", "/aitems", "async view: the /items query through the async ORM", ("asgi",)),
        # A realistic page: what a signed-in user's list page costs. No ceiling: bench/inprocess.py sends no cookie.
        Scenario(
            "list",
            "/list",
            "sync view: the 20 items rendered by a template (base layout, account box with a CSRF-protected logout "
            "form) for a signed-in user: the session and auth middleware load the session and the user, so 3 SQLite "
            "queries per request (~4.4 KB of HTML)",
            ("wsgi",),
            ceiling=False,
            session=True,
        ),
        Scenario(
            "alist",
            "/alist",
            "async view: the /list page with the user (request.auser()) and the items from the async ORM",
            ("asgi",),
            ceiling=False,
            session=True,
        ),
        # The same page through every interface: what a Django project pays for moving to ASGI,
        # and what rsgi-dual (pages through WSGI, websockets through ASGI) gets back.
        Scenario("page-hello", "/hello", "the /hello sync view through every interface", ("wsgi", "asgi")),
        Scenario("page-items", "/items", "the /items ORM view through every interface", ("wsgi", "asgi")),
        Scenario(
            "echo",
            "/echo",
            "POST of a 100 KiB application/x-www-form-urlencoded form; the csrf-exempt view reads request.body "
            "and hashes it: the request-body path (ASGI servers run the sync view in Django's thread executor)",
            ("wsgi", "asgi"),
            method="POST",
            body_size=100 * 1024,
            content_type=FORM,
        ),
        Scenario(
            "download",
            "/download",
            "FileResponse of 256 KiB: wsgi.file_wrapper / sendfile path",
            ("wsgi", "asgi"),
        ),
        Scenario("big", "/big", "HttpResponse of 1 MiB built in Python: the large-body path", ("wsgi", "asgi")),
        Scenario("stream", "/stream", "StreamingHttpResponse of 5 small chunks: chunked transfer", ("wsgi",)),
        Scenario(
            "astream",
            "/astream",
            "StreamingHttpResponse over an async iterator, 5 chunks (/stream would be buffered by Django's ASGI "
            "handler)",
            ("asgi",),
        ),
        # Compression: gzip against gzip. Browsers send `gzip, deflate, br, zstd`, for which rsgi would pick zstd
        # while GZipMiddleware and nginx (no zstd or brotli module in Debian's build) give gzip; sending only gzip
        # compares the same codec everywhere.
        Scenario(
            "compress",
            "/page",
            "the example's ~54 KB HTML catalog page (50 product cards from one query and a template, ~14 ms of "
            "Django), `Accept-Encoding: gzip`: compressed by the server, by Django's GZipMiddleware or by nginx",
            ("wsgi",),
            ceiling=False,
            headers=("Accept-Encoding: gzip",),
            expect_coding="gzip",
        ),
        Scenario(
            "compress-cached",
            "/cached-page",
            "the same page from Django's per-view cache (in memory, per process), `Accept-Encoding: gzip`: Django "
            "does little more than fetch it, so compressing it is a large share of each request",
            ("wsgi",),
            ceiling=False,
            headers=("Accept-Encoding: gzip",),
            expect_coding="gzip",
        ),
        Scenario(
            "static",
            "/static/catalog/site.css",  # resolved to its hashed name through the collectstatic manifest
            "a small collected static file (hashed name) served without Django; nginx is the reference",
            ("static",),
            ceiling=False,
            static=True,
            pending="static file serving",
        ),
        Scenario(
            "static-big",
            "/static/" + BIG_STATIC,
            "a 1 MiB static file (written into STATIC_ROOT by run.py) served without Django; nginx is the reference",
            ("static",),
            ceiling=False,
            static=True,
            pending="static file serving",
        ),
        Scenario(
            "ws",
            "/ws/echo",
            "websocket echo of 64-byte binary messages, one in flight per connection (bench/apps/wsecho.py: "
            "the Django ASGI app plus a websocket echo route)",
            ("asgi",),
            kind="ws",
            ceiling=False,
            websocket=True,
            asgi_app="wsecho:application",
            ready_path="/ahello",
        ),
        Scenario(
            "h2-hello",
            "/hello",
            "/hello over cleartext HTTP/2 (prior knowledge), h2load, one stream per connection",
            ("wsgi",),
            kind="h2",
            ceiling=False,
            pending="HTTP/2",
        ),
        Scenario(
            "h2-ahello",
            "/ahello",
            "/ahello over cleartext HTTP/2 (prior knowledge), h2load, one stream per connection",
            ("asgi",),
            kind="h2",
            ceiling=False,
            pending="HTTP/2",
        ),
        Scenario(
            "slow",
            "/hello",
            "slow-clients mix: wrk loads /hello with 64 connections while bench/idle_clients.py holds 500 idle "
            "keep-alive connections open (each made one request; reopened 1 s after the server closes it)",
            ("wsgi",),
            ceiling=False,
            connections=64,
            idle_clients=500,
        ),
        Scenario(
            "aslow",
            "/ahello",
            "the slow-clients mix on the async view: wrk at 64 connections + 500 idle keep-alive connections",
            ("asgi",),
            ceiling=False,
            connections=64,
            idle_clients=500,
        ),
    ]
}

DEFAULT_SCENARIOS = [name for name, sc in SCENARIOS.items() if not sc.expect_coding]  # compression: --preset


def not_applicable(srv: ServerDef, sc: Scenario) -> str | None:
    """Why `srv` has no row in `sc` (None when it applies)."""
    if srv.compress_only and not sc.expect_coding:
        return "a compression stack: compression scenarios only"
    if sc.static:
        if srv.interface == "static" or srv.static_args is not None:
            return None
        if srv.dist == "rsgi":
            return f"pending rsgi support: {sc.pending}"
        return "the static scenario compares with nginx only"
    if srv.interface not in sc.interfaces and not (srv.interface == "dual" and {"wsgi", "asgi"} & set(sc.interfaces)):
        wanted = " and ".join(i.upper() for i in sc.interfaces)
        return f"{wanted}-only scenario"
    if sc.kind == "h2" and srv.h2_args is None:
        return f"pending rsgi support: {sc.pending}" if srv.dist == "rsgi" else "no cleartext HTTP/2 (h2c)"
    if sc.websocket and not srv.websocket:
        return f"pending rsgi support: {sc.pending}" if srv.dist == "rsgi" else "no websocket support"
    return None


def request_body(sc: Scenario) -> bytes:
    """The request body every client sends for `sc` (wrk, the readiness probe, the in-process ceiling)."""
    if not sc.body_size:
        return b""
    if sc.content_type == FORM:  # 100 fields of equal size, padded to exactly body_size bytes
        fields = [f"field{i:02d}=" for i in range(100)]
        fill = sc.body_size - sum(map(len, fields)) - (len(fields) - 1)
        per, extra = divmod(fill, len(fields))
        body = "&".join(f + "x" * (per + (i < extra)) for i, f in enumerate(fields))
        return body.encode()
    return b"x" * sc.body_size


def write_body(sc: Scenario, tmp: Path) -> Path | None:
    body = request_body(sc)
    if not body:
        return None
    path = tmp / f"{sc.name}.body"
    path.write_bytes(body)
    return path


def wrk_script(sc: Scenario, body_file: Path | None, tmp: Path) -> Path | None:
    """A wrk Lua script for a request with a method/body other than a plain GET."""
    if sc.method == "GET" and body_file is None:
        return None
    lines = [f'wrk.method = "{sc.method}"']
    if body_file is not None:
        lines += [f'local f = assert(io.open("{body_file}", "rb"))', "wrk.body = f:read('*a')", "f:close()"]
        lines += [f'wrk.headers["Content-Type"] = "{sc.content_type or "application/octet-stream"}"']
    path = tmp / f"{sc.name}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def resolve_static(sc: Scenario, static_root: Path) -> Scenario:
    """Map /static/<name> to the hashed name ManifestStaticFilesStorage wrote, if there is a manifest."""
    manifest = static_root / "staticfiles.json"
    if not sc.static or not manifest.is_file():
        return sc
    rel = sc.path.removeprefix("/static/")
    hashed = json.loads(manifest.read_text()).get("paths", {}).get(rel)
    return replace(sc, path=f"/static/{hashed}") if hashed else sc
