"""The servers bench/run.py compares: one `ServerDef` each, in `SERVERS`.

A server entry says which interface it serves (`wsgi`: `mysite.wsgi:application`, `asgi`: `mysite.asgi:application`,
`static`: files only), how to start it (`command`, from a `Launch`), and what optional features it has: serving
STATIC_ROOT itself (`static_args`), cleartext HTTP/2 (`h2_args`, None when it has none) and websockets. Every server
is started with the interpreter given by `--python` (bench/.venv/bin/python after `bash bench/setup.sh`), so the
peers come from the bench virtualenv.

The compression stacks (`compress_only`: rsgi --compress, gunicorn with Django's GZipMiddleware, nginx `gzip on` in
front of gunicorn) run only in the compression scenarios (`--preset compress`), and are not in the default server
list; `encodes` says they must answer a gzip client with gzip, which run.py checks before loading them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from procs import HOST, free_port

WSGI_APP = "mysite.wsgi:application"
ASGI_APP = "mysite.asgi:application"
NGINX_MIME_TYPES = Path("/etc/nginx/mime.types")
BEHIND = Path(__file__).resolve().parent / "behind.py"


@dataclass(frozen=True)
class Launch:
    """Everything a server's command line may depend on."""

    python: str  # interpreter the server runs under
    port: int
    workers: int
    threads: int | None  # None: the server's own default
    app_dir: Path
    app: str  # module:attribute, WSGI or ASGI according to the server's interface
    tmp: Path  # private scratch dir of this benchmark run (config files, pid files)
    static_root: Path
    modules: frozenset[str] = frozenset()  # optional modules importable by `python` (e.g. "uvloop")
    preload: bool = False  # import the app once before forking workers, where the server can (run.py --preload)


@dataclass(frozen=True)
class ServerDef:
    name: str
    interface: str  # "wsgi", "asgi", "dual" (both: rsgi --wsgi) or "static"
    dist: str  # pip distribution (for the version); "" for non-Python servers
    command: Callable[[Launch], list[str]]
    static_args: Callable[[Launch], list[str]] | None = None  # flags that serve STATIC_ROOT at /static/
    h2_args: tuple[str, ...] | None = None  # flags for cleartext HTTP/2 (prior knowledge); None: no h2c
    websocket: bool = False
    threads_flag: bool = False  # whether --threads is passed on (else the note says why not)
    notes: str = ""
    # (exit code, text in its output, message): a boot failure that means "cannot serve that yet", not a crash.
    unsupported: tuple[int, str, str] | None = None
    version: Callable[[], str] | None = None  # for non-Python servers
    env: tuple[tuple[str, str], ...] = ()  # extra environment of the server (e.g. the example's DJANGO_GZIP=1)
    encodes: bool = False  # compresses for a client that accepts gzip (checked before each compression run)
    compress_only: bool = False  # a compression stack: only the compression scenarios, not a default server


def _threads(flag: str, launch: Launch) -> list[str]:
    return [flag, str(launch.threads)] if launch.threads else []


def _preload(launch: Launch) -> list[str]:
    """rsgi's and gunicorn's flag; uvicorn and Granian have none (each worker imports the app itself)."""
    return ["--preload"] if launch.preload else []


def _rsgi(interface: str, *extra: str) -> Callable[[Launch], list[str]]:
    def command(launch: Launch) -> list[str]:
        argv = [launch.python, "-m", "rsgi", launch.app, "--chdir", str(launch.app_dir)]
        argv += ["--bind", f"{HOST}:{launch.port}", "--workers", str(launch.workers), *_preload(launch)]
        if interface == "wsgi":  # ASGI apps run on the worker's event loop; --threads is for WSGI
            argv += _threads("--threads", launch)
        return [*argv, "--interface", interface, *extra]

    return command


def _rsgi_static(launch: Launch) -> list[str]:
    """rsgi serves STATIC_ROOT from its core."""
    return ["--static", f"/static/={launch.static_root}"]


def _rsgi_dual(launch: Launch) -> list[str]:
    """rsgi with both interfaces: `--django mysite` (the project's ASGI app plus its WSGI app for the pages, and its
    RSGI setting), or, for another ASGI app (the ws scenario's), APP --wsgi mysite.wsgi:application."""
    if launch.app == ASGI_APP:
        argv = [launch.python, "-m", "rsgi", "--django", ASGI_APP.partition(".")[0]]
    else:
        argv = [launch.python, "-m", "rsgi", launch.app, "--wsgi", WSGI_APP]
    argv += ["--chdir", str(launch.app_dir), "--bind", f"{HOST}:{launch.port}", "--workers", str(launch.workers)]
    return argv + _preload(launch) + _threads("--threads", launch)


def _gunicorn(
    worker_class: str, *extra: str, threads: bool = False, preload: bool = True
) -> Callable[[Launch], list[str]]:
    def command(launch: Launch) -> list[str]:
        argv = [launch.python, "-m", "gunicorn", launch.app, "--chdir", str(launch.app_dir)]
        argv += ["-b", f"{HOST}:{launch.port}", "-w", str(launch.workers), "-k", worker_class, *extra]
        argv += _preload(launch) if preload else []
        return argv + (_threads("--threads", launch) if threads else [])

    return command


def _granian(interface: str) -> Callable[[Launch], list[str]]:
    def command(launch: Launch) -> list[str]:
        argv = [launch.python, "-m", "granian", "--interface", interface, "--workers", str(launch.workers)]
        argv += ["--host", HOST, "--port", str(launch.port), "--working-dir", str(launch.app_dir), "--no-access-log"]
        if interface == "wsgi":
            argv += _threads("--blocking-threads", launch)
        return [*argv, launch.app]

    return command


def _uvicorn(launch: Launch) -> list[str]:
    argv = [launch.python, "-m", "uvicorn", launch.app, "--app-dir", str(launch.app_dir), "--host", HOST]
    argv += ["--port", str(launch.port), "--workers", str(launch.workers)]
    return [*argv, "--loop", "uvloop", "--http", "httptools", "--no-access-log"]


def _hypercorn(launch: Launch) -> list[str]:  # no chdir flag: servers run with cwd = app dir anyway
    argv = [launch.python, "-m", "hypercorn", launch.app, "--bind", f"{HOST}:{launch.port}"]
    argv += ["--workers", str(launch.workers)]
    return argv + (["-k", "uvloop"] if "uvloop" in launch.modules else [])


def _daphne(launch: Launch) -> list[str]:  # single process, no --workers; -v 0: no access log on stdout
    return [launch.python, "-m", "daphne", "-b", HOST, "-p", str(launch.port), "-v", "0", launch.app]


def _nginx_prefix(launch: Launch) -> tuple[Path, str]:
    """nginx's private prefix directory for this run, and the config lines that keep its temp files in it."""
    prefix = launch.tmp / f"nginx-{launch.port}"
    prefix.mkdir(parents=True, exist_ok=True)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return prefix, temp_paths


def _nginx(launch: Launch) -> list[str]:
    """nginx in the foreground with a private config: serves STATIC_ROOT at /static/, nothing else."""
    prefix, temp_paths = _nginx_prefix(launch)
    mime = f"include {NGINX_MIME_TYPES};" if NGINX_MIME_TYPES.is_file() else "types { text/css css; }"
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""daemon off;
master_process on;
worker_processes {launch.workers};
pid {prefix / "nginx.pid"};
error_log stderr warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 4096; }}
http {{
    {mime}
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
{temp_paths}
    server {{
        listen {HOST}:{launch.port} backlog=2048;
        location /static/ {{ alias {launch.static_root}/; }}
        location / {{ return 404; }}
    }}
}}
"""
    )
    return [nginx_binary() or "nginx", "-p", str(prefix), "-c", str(conf), "-e", "stderr"]


def _nginx_gzip_proxy(launch: Launch) -> list[str]:
    """nginx with `gzip on` (its defaults otherwise: gzip_comp_level 1, gzip_types text/html, gzip_min_length 20)
    reverse-proxying to gunicorn's sync worker on a second port, over HTTP/1.1 with an upstream keep-alive pool
    (gunicorn's sync worker closes every connection anyway). One nginx worker process; gunicorn gets --workers.
    bench/behind.py starts gunicorn, waits for its port, then execs nginx."""
    upstream = free_port()
    backend = _gunicorn("sync")(replace(launch, port=upstream))
    prefix, temp_paths = _nginx_prefix(launch)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""daemon off;
master_process on;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log stderr warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 4096; }}
http {{
    default_type application/octet-stream;
    access_log off;
    keepalive_requests 1000000;
    gzip on;
    # A ~54 KB page fits in memory (the default 8 x 4k buffers would spill it to a temp file).
    proxy_buffers 32 8k;
{temp_paths}
    upstream app {{
        server {HOST}:{upstream};
        keepalive 16;
    }}
    server {{
        listen {HOST}:{launch.port} backlog=2048;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
}}
"""
    )
    front = [nginx_binary() or "nginx", "-p", str(prefix), "-c", str(conf), "-e", "stderr"]
    return [launch.python, str(BEHIND), str(upstream), "30", "--", *backend, "--", *front]


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def _nginx_version() -> str:
    binary = nginx_binary()
    if binary is None:
        return "not installed"
    done = subprocess.run([binary, "-v"], capture_output=True, text=True)
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ")


# rsgi builds before ASGI support refuse an ASGI app at boot: exit code 3 and this text in the log.
RSGI_NO_ASGI = (3, "serves WSGI apps only", "this rsgi build serves WSGI apps only: it refused the ASGI app at boot")
GUNICORN_H2 = ("--http-protocols", "h2,h1", "--http2-cleartext", "both")
LOOP_NOTE = "Django runs sync code (the sync ORM, sync views) in a thread executor; --threads does not apply."

SERVERS: dict[str, ServerDef] = {
    s.name: s
    for s in [
        ServerDef(
            "rsgi",
            "wsgi",
            "rsgi",
            _rsgi("wsgi"),
            threads_flag=True,
            static_args=_rsgi_static,
            h2_args=(),
            notes="1 Python thread per worker unless --threads; access log off by default; HTTP/2 (h2c) is on by "
            "default (--http auto); static files through --static.",
        ),
        ServerDef(
            "rsgi-asgi",
            "asgi",
            "rsgi",
            _rsgi("asgi"),
            static_args=_rsgi_static,
            h2_args=(),
            notes="rsgi --interface asgi: one event loop per worker (--loop auto: uvloop when installed); "
            "Django's sync_to_async calls on reused per-request threads, two at a time (--sync-concurrency 2, "
            "the default); websockets through tokio-tungstenite; h2c on by default. " + LOOP_NOTE,
            unsupported=RSGI_NO_ASGI,
            websocket=True,
        ),
        ServerDef(
            "rsgi-dual",
            "dual",
            "rsgi",
            _rsgi_dual,
            threads_flag=True,
            static_args=_rsgi_static,
            h2_args=(),
            websocket=True,
            notes="rsgi --django mysite (APP --wsgi mysite.wsgi:application for another ASGI app): HTTP through "
            "Django's WSGI handler on the worker's Python thread, websockets (and the RSGI setting's asgi_path "
            "prefixes) through the ASGI app on its event loop, one process.",
        ),
        ServerDef(
            "gunicorn",
            "wsgi",
            "gunicorn",
            _gunicorn("sync"),
            notes="sync worker: one request at a time per worker and `Connection: close` on every response (wrk "
            "reconnects). --threads is not passed (it would turn the worker into gthread).",
        ),
        ServerDef(
            "gunicorn-gthread",
            "wsgi",
            "gunicorn",
            _gunicorn("gthread", threads=True),
            h2_args=GUNICORN_H2,
            threads_flag=True,
            notes="gthread worker, keep-alive; gunicorn's default is 1 thread unless --threads.",
        ),
        ServerDef(
            "gunicorn-gevent",
            "wsgi",
            "gunicorn",
            # --preload would import Django in the master, before the worker patches threading: Django's DB wrapper
            # then belongs to the master's thread and refuses the greenlets (DatabaseError "DatabaseWrapper objects
            # created in a thread can only be used in that same thread", a 500 on every ORM view).
            _gunicorn("gevent", "--worker-connections", "1000", preload=False),
            h2_args=GUNICORN_H2,
            notes="gevent worker (monkey-patched), up to 1000 connections per worker; --threads does not apply; "
            "never --preload (Django imported before gevent patches threading refuses its DB connection from the "
            "greenlets: 500 on every ORM view).",
        ),
        ServerDef(
            "granian",
            "wsgi",
            "granian",
            _granian("wsgi"),
            h2_args=(),
            threads_flag=True,
            notes="WSGI blocking threads default to backpressure/2 = backlog/workers/2 (512 per worker with the "
            "default backlog 1024) unless --threads (passed as --blocking-threads); access log off explicitly; "
            "no preload option (each worker imports the app).",
        ),
        ServerDef(
            "granian-asgi",
            "asgi",
            "granian",
            _granian("asgi"),
            h2_args=(),
            websocket=True,
            notes="access log off explicitly; no preload option (each worker imports the app). " + LOOP_NOTE,
        ),
        ServerDef(
            "uvicorn",
            "asgi",
            "uvicorn",
            _uvicorn,
            websocket=True,
            notes="--loop uvloop --http httptools --no-access-log; no HTTP/2; no preload option (each worker is a "
            "spawned process that imports the app). " + LOOP_NOTE,
        ),
        ServerDef(
            "gunicorn-uvicorn",
            "asgi",
            "uvicorn-worker",
            _gunicorn("uvicorn_worker.UvicornWorker"),
            websocket=True,
            notes="gunicorn master + uvicorn_worker.UvicornWorker (uvloop/httptools when installed). " + LOOP_NOTE,
        ),
        ServerDef(
            "hypercorn",
            "asgi",
            "hypercorn",
            _hypercorn,
            h2_args=(),
            websocket=True,
            notes="-k uvloop when uvloop is importable; access log off by default. " + LOOP_NOTE,
        ),
        ServerDef(
            "daphne",
            "asgi",
            "daphne",
            _daphne,
            websocket=True,
            notes="always one process (--workers is ignored); -v 0 turns its stdout access log off; HTTP/2 only "
            "over TLS, so no h2c. " + LOOP_NOTE,
        ),
        # The compression stacks (--preset compress): the example's ~54 KB /page to a client that accepts gzip.
        ServerDef(
            "rsgi-gzip",
            "wsgi",
            "rsgi",
            _rsgi("wsgi", "--compress"),
            threads_flag=True,
            encodes=True,
            compress_only=True,
            notes="rsgi WSGI --compress at its defaults: gzip level 6 (zlib's and GZipMiddleware's), on the tokio "
            "thread, outside the GIL.",
        ),
        ServerDef(
            "rsgi-gzip1",
            "wsgi",
            "rsgi",
            _rsgi("wsgi", "--compress", "--compress-level", "gzip=1"),
            threads_flag=True,
            encodes=True,
            compress_only=True,
            notes="rsgi WSGI --compress --compress-level gzip=1: nginx's default gzip_comp_level.",
        ),
        ServerDef(
            "gunicorn-gzip",
            "wsgi",
            "gunicorn",
            _gunicorn("sync"),
            env=(("DJANGO_GZIP", "1"),),
            encodes=True,
            compress_only=True,
            notes="gunicorn sync with DJANGO_GZIP=1: Django's GZipMiddleware first in MIDDLEWARE, gzip level 6 "
            "in Python under the GIL (Django >= 4.2 also writes its random-length BREACH padding); `Connection: "
            "close` on every response.",
        ),
        ServerDef(
            "nginx-gunicorn",
            "wsgi",
            "gunicorn",
            _nginx_gzip_proxy,
            encodes=True,
            compress_only=True,
            notes="nginx `gzip on` (gzip_comp_level 1, its default; gzip_types text/html by default), one worker "
            "process, keep-alive to the client, proxy_pass over HTTP/1.1 with an upstream keepalive pool to "
            "gunicorn sync (which closes each upstream connection anyway); proxy_buffers 32 8k; version: gunicorn's.",
        ),
        ServerDef(
            "nginx",
            "static",
            "",
            _nginx,
            version=_nginx_version,
            notes="static files only (the reference for the static scenario): sendfile, access log off, "
            "one worker process per --workers.",
        ),
    ]
}

DEFAULT_SERVERS = [name for name, srv in SERVERS.items() if not srv.compress_only]


def app_target(srv: ServerDef, asgi_override: str | None) -> str:
    if srv.interface in ("asgi", "dual"):
        return asgi_override or ASGI_APP
    return WSGI_APP  # nginx ignores it
