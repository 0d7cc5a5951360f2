"""The settings: one frozen `Config` dataclass, each field declared with `setting()`.

Each field carries its default, help text, command-line flags (with the gunicorn and uvicorn
spellings as aliases), the environment variable that sets it (``RSGI_<FIELD>``, plus the
conventional ``PORT`` and ``WEB_CONCURRENCY``) and the name it has in a gunicorn-style Python
config file. Where values come from is `sources`; what the Rust core gets is `Config.core()`
(computed by `core`, which never imports this module at run time).

Plain values only: nothing here imports the app, so tests can build a Config without Django.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .core import COMPRESS_TYPES, CoreConfig, core_view
from .errors import ConfigError

MIB = 1024 * 1024


def setting(
    default: Any,
    help: str,
    flags: Sequence[str] = (),
    *,
    env: Sequence[str] = (),
    conf: Sequence[str] = (),
    choices: Sequence[str] | None = None,
    negative: str | None = None,
    metavar: str | None = None,
    pending: bool = False,
    const: str | None = None,
    split: bool = True,
) -> Any:
    """Declare a Config field. ``env``/``conf`` list extra names besides ``RSGI_<NAME>``/``<name>``;
    with ``const`` the flag may be given without a value, which then means ``const``. A list's
    string value (a flag, a variable) is split at commas and spaces unless ``split`` is False:
    then each flag is one item, whole."""
    meta = {
        "help": help,
        "flags": tuple(flags),
        "env": tuple(env),
        "conf": tuple(conf),
        "choices": tuple(choices) if choices else None,
        "negative": negative,
        "metavar": metavar,
        "pending": pending,
        "const": const,
        "split": split,
    }
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Config:
    app: str = setting(
        "",
        "The application, as module:attribute (e.g. mysite.wsgi:application).",
        env=("APP",),
        conf=("wsgi_app",),  # gunicorn's name: `gunicorn -c gunicorn.conf.py` with no app argument
    )
    config: str = setting(
        "",
        "Python config file (gunicorn.conf.py style), or python:MODULE. Without one, ./gunicorn.conf.py is read "
        "when it exists, as gunicorn does.",
        ("-c", "--config"),
    )

    # Where to listen
    bind: list[str] = setting(
        [],
        "Address to listen on: HOST:PORT, [IPv6]:PORT, unix:/path.sock or fd://N. Repeatable. "
        "Default 127.0.0.1:8000, or 0.0.0.0:$PORT when PORT is set.",
        ("-b", "--bind"),
        metavar="ADDRESS",
    )
    host: str = setting("", "Host to bind (uvicorn style; combined with --port).", ("--host",))
    port: int = setting(0, "Port to bind (uvicorn style).", ("--port",))
    uds: str = setting("", "Unix socket path to bind (uvicorn style).", ("--uds",))
    fd: int = setting(-1, "Inherited listening file descriptor to serve (uvicorn style).", ("--fd",))
    backlog: int = setting(2048, "Listen backlog: connections the kernel queues before workers accept.", ("--backlog",))

    # Processes and threads
    workers: int = setting(
        1, "Worker processes (default $WEB_CONCURRENCY or 1).", ("-w", "--workers"), env=("WEB_CONCURRENCY",)
    )
    threads: int = setting(
        1,
        "Python threads per worker. 1 is fastest for CPU-bound views; raise it for views that wait on I/O.",
        ("--threads",),
    )
    # Both interfaces in one process
    wsgi: str = setting(
        "",
        "Also serve this WSGI app (module:attribute) in the same workers: HTTP requests go to it, WebSockets "
        "(and --asgi-path prefixes) to the ASGI app given as APP.",
        ("--wsgi",),
        metavar="MODULE:ATTR",
    )
    django: str = setting(
        "",
        "Django project package: shorthand for APP=PROJECT.asgi:application --wsgi PROJECT.wsgi:application.",
        ("--django",),
        metavar="PROJECT",
    )
    asgi_path: list[str] = setting(
        [],
        "With --wsgi/--django: HTTP path prefixes served by the ASGI app (long-lived async views such as "
        "server-sent events). Repeatable.",
        ("--asgi-path",),
        metavar="PREFIX",
    )
    runtime_threads: int = setting(
        0,
        "tokio I/O threads per worker (they never run Python). 0: two when the machine has at least twice as "
        "many cores as workers, else one.",
        ("--runtime-threads",),
    )
    preload: bool = setting(
        False, "Import the app once in the supervisor, then fork workers.", ("--preload",), conf=("preload_app",)
    )
    chdir: str = setting("", "Change to this directory before importing the app.", ("--chdir", "--app-dir"))
    pythonpath: list[str] = setting(
        [],
        "Directories put first on sys.path before the app is imported (comma-separated; gunicorn's --pythonpath).",
        ("--pythonpath",),
        conf=("pythonpath",),
    )
    interface: str = setting(
        "auto",
        "Interface of the app; auto detects it from the callable (uvicorn's asgi3 and asgi2 mean asgi: an ASGI 2 "
        "app is detected and adapted).",
        ("--interface",),
        choices=("auto", "wsgi", "asgi", "asgi3", "asgi2"),
    )
    lifespan: str = setting(
        "auto",
        "ASGI lifespan protocol: auto runs it if the app supports it.",
        ("--lifespan", "--asgi-lifespan"),
        conf=("asgi_lifespan",),
        choices=("auto", "on", "off"),
    )
    loop: str = setting(
        "auto",
        "ASGI event loop: auto uses uvloop when installed.",
        ("--loop", "--asgi-loop"),
        conf=("asgi_loop",),
        choices=("auto", "asyncio", "uvloop"),
    )
    switch_interval: float = setting(
        0.0,
        "sys.setswitchinterval for workers, in seconds (0: keep Python's 0.005). Lower values shorten GIL "
        "hand-offs between the event loop and Django's sync_to_async threads; see the README for measurements.",
        ("--switch-interval",),
    )
    sync_concurrency: int = setting(
        2,
        "ASGI: how many thread-sensitive sync_to_async calls (Django's sync middleware, sync views, ORM calls) "
        "run at once per worker; the rest wait their turn on the loop, and a call blocked on I/O for over 20 ms "
        "stops counting. Each request keeps a thread of its own, reused across requests. 0: asgiref's own way "
        "(a new thread per request).",
        ("--sync-concurrency",),
    )
    factory: bool = setting(
        False, "Treat the app as a factory: call it with no arguments to get the app.", ("--factory",)
    )
    worker_class: str = setting(
        "", "gunicorn compatibility: sync/gthread mean WSGI, uvicorn workers mean ASGI.", ("-k", "--worker-class")
    )
    proc_name: str = setting("", "Process name (gunicorn compatibility).", ("-n", "--name"))

    # HTTP
    keepalive: float = setting(
        5.0,
        "Seconds an idle keep-alive connection (or a slow request head) may wait.",
        ("--keepalive", "--keep-alive", "--timeout-keep-alive"),
    )
    graceful_timeout: float = setting(
        30.0,
        "Seconds a stopping worker lets in-flight requests finish.",
        ("--graceful-timeout", "--timeout-graceful-shutdown"),
    )
    body_timeout: float = setting(
        30.0, "Seconds a request body may stall between two reads (408 after).", ("--body-timeout",)
    )
    send_timeout: float = setting(
        60.0,
        "Seconds a write to a client may stall before the connection is closed (nginx's send_timeout); 0: never.",
        ("--send-timeout",),
    )
    request_timeout: float = setting(
        0.0,
        "Seconds a request may wait for its response to start, counted from its hand-over to the app (time in "
        "the queue included); past them the core answers 504 (ASGI: the request's task is cancelled; WSGI: the "
        "thread's late response is discarded, --timeout still recycles a stuck worker). A response that has "
        "started is never cut. 0: off.",
        ("--request-timeout",),
    )
    max_body_size: int = setting(50 * MIB, "Largest request body in bytes (413 above).", ("--max-body-size",))
    body_spool_threshold: int = setting(
        1 * MIB, "Request bodies above this many bytes are spooled to a temporary file.", ("--body-spool-threshold",)
    )
    limit_request_line: int = setting(8190, "Longest request target in bytes (414 above).", ("--limit-request-line",))
    limit_request_fields: int = setting(100, "Most header fields per request (431 above).", ("--limit-request-fields",))
    limit_request_field_size: int = setting(
        8190,
        "Longest header field in bytes (431 above).",
        ("--limit-request-field-size", "--limit-request-field_size"),
    )
    max_connections: int = setting(
        10000,
        "Concurrent connections per worker, open websockets included; more wait in the backlog.",
        ("--max-connections", "--worker-connections"),
        conf=("worker_connections",),
    )
    ws: str = setting(
        "auto",
        "WebSocket support (uvicorn's flag): none answers upgrade requests as plain HTTP; any implementation "
        "name (auto, websockets, websockets-sansio, wsproto) means rsgi's own, tokio-tungstenite.",
        ("--ws",),
    )
    ws_max_size: int = setting(
        16 * MIB,
        "Largest WebSocket message in bytes (closed with 1009 above).",
        ("--ws-max-size", "--websocket-max-message-size"),
        conf=("websocket_max_message_size",),
    )
    ws_ping_interval: float = setting(20.0, "Seconds between pings on an idle WebSocket.", ("--ws-ping-interval",))
    ws_ping_timeout: float = setting(
        20.0, "Seconds without any frame after a ping before closing.", ("--ws-ping-timeout",)
    )
    ws_per_message_deflate: bool = setting(
        True,
        "Compress WebSocket messages (permessage-deflate, RFC 7692) when the client offers it, as browsers do; "
        "without context takeover, so an idle socket keeps no compression state. As uvicorn's, the flag may "
        "take a value: --ws-per-message-deflate false is --no-ws-per-message-deflate.",
        ("--ws-per-message-deflate",),
        negative="--no-ws-per-message-deflate",
        const="true",
        choices=("true", "false", "1", "0", "yes", "no", "on", "off"),
    )
    limit_concurrency: int = setting(
        0,
        "Requests per worker (queued or running) past which new ones get 503 at once (0: no limit).",
        ("--limit-concurrency",),
    )
    limit_rate: str = setting(
        "",
        "Requests per client address (after proxy headers; IPv6 per /64) as N/s or N/m, nginx's limit_req with "
        "nodelay: past the rate and the burst, 429 with Retry-After from the core. Per worker. Off by default.",
        ("--limit-rate",),
        metavar="N/s|N/m",
    )
    limit_burst: int = setting(
        0,
        "Requests a client may make at once before --limit-rate spaces them (0: N, one period's worth).",
        ("--limit-burst",),
    )
    limit_rate_path: list[str] = setting(
        [],
        "Only paths under this prefix (percent-decoded) count against --limit-rate. Repeatable. Default: every "
        "request for the app (never the health path or static files).",
        ("--limit-rate-path",),
        metavar="PREFIX",
    )
    limit_rate_keys: int = setting(
        100_000,
        "Client addresses --limit-rate tracks per worker (~40 bytes each); past it the most idle are forgotten.",
        ("--limit-rate-keys",),
    )
    root_path: str = setting("", "Mount point of the app (SCRIPT_NAME).", ("--root-path",))
    # Static files (answered by the core; no Python)
    static: list[str] = setting(
        [],
        "Serve files under URL PREFIX from DIR, e.g. /static/=staticfiles. Repeatable.",
        ("--static",),
        metavar="PREFIX=DIR",
    )
    static_django: bool = setting(
        False,
        "Serve Django's STATIC_ROOT at STATIC_URL (read from the project's settings once the app is loaded).",
        ("--static-django",),
    )
    static_max_age: int = setting(
        60,
        "Cache-Control max-age in seconds for static files without a content hash in their name "
        "(hashed names from ManifestStaticFilesStorage get a year and 'immutable').",
        ("--static-max-age",),
    )
    # Response compression (in the core, on tokio threads; no Python)
    compress: bool = setting(
        False,
        "Compress responses with zstd or gzip as the client's Accept-Encoding prefers (zstd on a tie), in the "
        "core: a Django project can drop GZipMiddleware. Off by default, as in gunicorn and uvicorn. Mind BREACH "
        "on pages that reflect secrets (see --compress-exclude-path).",
        ("--compress",),
        negative="--no-compress",
    )
    compress_min_size: int = setting(
        1024,
        "Responses whose length is known and below this many bytes are sent uncompressed (about one TCP "
        "segment: a smaller one arrives no sooner compressed).",
        ("--compress-min-size",),
    )
    compress_types: list[str] = setting(
        list(COMPRESS_TYPES),
        "Content types compressed (type/subtype, type/*, type/*+suffix); replaces the default list. Repeatable "
        "or comma-separated.",
        ("--compress-types",),
        metavar="TYPE",
    )
    compress_level: list[str] = setting(
        [],
        "Level per codec as CODEC=LEVEL, comma-separated or repeated; each given one replaces its default "
        "(gzip=6, zstd=3; ranges gzip 1-9, zstd 1-19); CODEC=off stops offering it.",
        ("--compress-level",),
        metavar="gzip=6,zstd=3",
    )
    compress_exclude_path: list[str] = setting(
        [],
        "Never compress responses for paths under this prefix (percent-decoded): pages that reflect a secret "
        "next to what a visitor sent (BREACH). Repeatable.",
        ("--compress-exclude-path",),
        metavar="PREFIX",
    )
    server_header: bool = setting(True, "Send 'Server: rsgi'.", ("--server-header",), negative="--no-server-header")
    date_header: bool = setting(True, "Send a Date header.", ("--date-header",), negative="--no-date-header")
    headers: list[str] = setting(
        [],
        "A header added to every response that lacks it, as NAME:VALUE (uvicorn's --header). Repeatable; "
        "--header server:NAME replaces 'Server: rsgi'.",
        ("--header",),
        metavar="NAME:VALUE",
        split=False,
    )

    # Recycling and watchdog (read by the supervisor from the shared scoreboard)
    timeout: float = setting(
        30.0,
        "Kill a worker busy with one request for longer than this (for ASGI: an event loop blocked this long); "
        "0 disables.",
        ("-t", "--timeout", "--timeout-worker-healthcheck"),
    )
    max_requests: int = setting(
        0,
        "Replace a worker after it has served this many requests (0: never).",
        ("--max-requests", "--limit-max-requests"),
    )
    max_requests_jitter: int = setting(
        0,
        "Add a random 0..N to --max-requests per worker, so workers don't all restart at once.",
        ("--max-requests-jitter", "--limit-max-requests-jitter"),
    )
    max_worker_memory: int = setting(
        0,
        "Replace a worker whose resident memory exceeds this many MB, after it finishes its requests (0: off).",
        ("--max-worker-memory",),
    )
    workers_lifetime: float = setting(
        0.0,
        "Replace a worker after it has run this many seconds, plus a random 0-10% so workers don't all "
        "restart at once (0: never). The worker finishes its requests first.",
        ("--workers-lifetime",),
    )
    user: str = setting("", "Workers switch to this user (name or uid) after the sockets are bound.", ("-u", "--user"))
    group: str = setting("", "Workers switch to this group (name or gid).", ("-g", "--group"))
    umask: str = setting("", "File mode creation mask, octal (e.g. 027).", ("-m", "--umask"))
    pid: str = setting(
        "", "Write the supervisor's pid to this file (removed at exit).", ("-p", "--pid"), conf=("pidfile",)
    )
    daemon: bool = setting(
        False,
        "Detach from the terminal and run in the background (gunicorn's; for init scripts and systemd "
        "Type=forking units, with --pid). Under systemd, Docker or Kubernetes run in the foreground instead.",
        ("-D", "--daemon"),
    )
    enable_stdio_inheritance: bool = setting(
        False,
        "With --daemon, keep stdout and stderr (they are /dev/null otherwise).",
        ("-R", "--enable-stdio-inheritance"),
    )
    capture_output: bool = setting(
        False,
        "Send the processes' stdout and stderr (the app's print()s, a C extension's messages) into the "
        "--error-logfile file.",
        ("--capture-output",),
    )

    # Lifecycle and logging
    log_config: str = setting(
        "",
        "Logging config file: dictConfig as .json/.yaml, or fileConfig .ini; replaces rsgi's own setup.",
        ("--log-config", "--log-config-json"),
        conf=("logconfig", "logconfig_json"),
    )
    env: list[str] = setting(
        [],
        "KEY=VALUE set in the environment before the app loads. Repeatable.",
        ("-e", "--env"),
        conf=("raw_env",),
        split=False,
    )
    env_file: str = setting(
        "",
        "Load KEY=VALUE lines from this dotenv file into the environment before the app loads "
        "(needs python-dotenv); --env wins over it.",
        ("--env-file",),
    )
    reload: bool = setting(
        False, "Development: replace the workers when a watched file changes (needs watchfiles).", ("--reload",)
    )
    reload_dirs: list[str] = setting(
        [],
        "Directories --reload watches (default: the app's directory).",
        ("--reload-dir", "--reload-extra-file"),
        conf=("reload_extra_files",),
    )
    reload_include: list[str] = setting(
        ["*.py"], "Glob patterns of files that trigger a reload.", ("--reload-include",)
    )
    reload_exclude: list[str] = setting(
        [".*", "*.pyc", "__pycache__"], "Glob patterns never watched.", ("--reload-exclude",)
    )
    access_logfile: str = setting(
        "",
        "Access log: '-' for stdout or a file (off by default, as uvicorn advises for speed).",
        ("--access-logfile", "--access-log-file"),
        conf=("accesslog",),
    )
    access_log_format: str = setting(
        "",
        "Access log line with gunicorn's atoms, e.g. '%%(h)s \"%%(r)s\" %%(s)s %%(b)s %%(D)s', or 'json' for one "
        "JSON object per line. Default: gunicorn's.",
        ("--access-logformat", "--access-log-format"),
        conf=("access_log_format",),
    )
    access_log: bool = setting(
        False, "uvicorn style: write the access log to stdout.", ("--access-log",), negative="--no-access-log"
    )
    log_level: str = setting(
        "info",
        "Log level.",
        ("--log-level",),
        conf=("loglevel",),
        choices=("critical", "error", "warning", "info", "debug", "trace"),
    )
    error_log: str = setting(
        "-", "Error log file ('-' is stderr).", ("--error-log", "--error-logfile", "--log-file"), conf=("errorlog",)
    )
    log_format: str = setting(
        "text",
        "Error log records as 'text' lines or 'json' objects, one per line (time, level, logger, message, pid, "
        "exception). A --log-config file wins over it.",
        ("--log-format",),
        choices=("text", "json"),
    )

    # Proxy headers and health
    forwarded_allow_ips: str = setting(
        "127.0.0.1,::1",
        "Proxies whose Forwarded / X-Forwarded-For/-Proto/-Host/-Port headers are believed: addresses or "
        "networks, comma-separated, or '*'. Unix-socket peers are always trusted.",
        ("--forwarded-allow-ips",),
        env=("FORWARDED_ALLOW_IPS",),
    )
    proxy_headers: bool = setting(
        True,
        "Apply proxy headers from --forwarded-allow-ips peers (client address, scheme, host, port).",
        ("--proxy-headers",),
        negative="--no-proxy-headers",
    )
    proxy_protocol: str = setting(
        "off",
        "Every connection starts with a PROXY protocol header (HAProxy's send-proxy / send-proxy-v2, AWS NLB, "
        "stunnel), read before TLS and HTTP; its client address becomes REMOTE_ADDR / the ASGI client. Only "
        "peers in --proxy-allow-from may send one; a connection without a valid header is closed unanswered. "
        "auto takes v1 and v2, v1 and v2 only that version; the flag alone means auto (gunicorn's values).",
        ("--proxy-protocol",),
        choices=("off", "auto", "v1", "v2", "true", "false", "on", "1", "0", "none"),
        metavar="off|auto|v1|v2",
        const="auto",
    )
    proxy_allow_ips: str = setting(
        "",
        "Peers allowed to send a PROXY protocol header (gunicorn's setting): addresses or networks, "
        "comma-separated, or '*'; Unix-socket peers are always allowed. Default: --forwarded-allow-ips.",
        ("--proxy-allow-from",),
    )
    http: str = setting(
        "auto",
        "Protocols on cleartext connections: 1 (HTTP/1.1), 2 (HTTP/2 with prior knowledge, h2c) or auto (both, "
        "told apart by the HTTP/2 preface). Over TLS, ALPN decides. uvicorn's h11/httptools mean 1.",
        ("--http",),
        choices=("auto", "1", "2", "h11", "httptools"),
    )
    h2_max_concurrent_streams: int = setting(
        100,
        "HTTP/2 streams one client may have open at once.",
        ("--h2-max-concurrent-streams", "--http2-max-concurrent-streams"),
        conf=("http2_max_concurrent_streams",),
    )
    # TLS (rustls; TLS 1.2 and 1.3)
    certfile: str = setting(
        "", "TLS certificate chain (PEM): turns TLS on for every listener.", ("--certfile", "--ssl-certfile")
    )
    keyfile: str = setting("", "TLS private key (PEM; default: read from --certfile).", ("--keyfile", "--ssl-keyfile"))
    ca_certs: str = setting(
        "", "CA certificates (PEM) that client certificates are checked against.", ("--ca-certs", "--ssl-ca-certs")
    )
    cert_reqs: int = setting(
        0,
        "Client certificates: 0 not asked for, 1 optional (checked when sent), 2 required. Needs --ca-certs.",
        ("--cert-reqs", "--ssl-cert-reqs"),
    )
    metrics_bind: str = setting(
        "",
        "Serve Prometheus metrics of every worker, added up, at http://HOST:PORT/metrics (needs prometheus_client).",
        ("--metrics-bind",),
        metavar="HOST:PORT",
    )
    health_path: str = setting(
        "",
        "Answer this path in the core: 200 while accepting, 503 while draining (e.g. /-/health). Off by default.",
        ("--health-path",),
    )
    drain_delay: float = setting(
        0.0,
        "On SIGTERM, keep accepting and serving for this many seconds while --health-path answers 503 and "
        "responses close their connections, so load balancers (a Kubernetes Service, an ingress) take the "
        "server out of rotation before it stops listening; then stop gracefully. A second SIGTERM ends the "
        "delay; SIGINT and SIGQUIT skip it.",
        ("--drain-delay",),
    )
    upgrade_timeout: float = setting(
        60.0,
        "On SIGUSR2 (upgrade rsgi and the app: a new supervisor from the code on disk takes over the sockets), "
        "seconds its workers have to serve before the upgrade is given up and the running server keeps serving.",
        ("--upgrade-timeout",),
    )

    # Accepted so that existing gunicorn/uvicorn command lines and config files keep working, but
    # not acted on yet. Setting one logs a warning at startup; nothing is silently ignored.
    ssl_version: str = setting(
        "", "Ignored: rustls speaks TLS 1.2 and 1.3 only.", ("--ssl-version",), conf=("ssl_version",), pending=True
    )
    ciphers: str = setting(
        "", "Ignored: rustls's safe default cipher suites are used.", ("--ciphers", "--ssl-ciphers"), pending=True
    )
    keyfile_password: str = setting(
        "", "Not supported: decrypt the key file first.", ("--ssl-keyfile-password",), pending=True
    )

    # Not a setting: the names of the settings given explicitly (config file, environment or flags),
    # filled in by `sources.build`. Kept out of FIELDS, the flags and comparisons.
    explicit: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    # -- derived ---------------------------------------------------------------------------

    def binds(self, fallback: bool = True) -> list[str]:
        """Every address to listen on, with the uvicorn-style and PORT fallbacks applied; without
        `fallback` (systemd passed sockets), no default address when none was given."""
        out = [gunicorn_address(a) for a in self.bind]
        if self.uds:
            out.append(f"unix:{self.uds}")
        if self.fd >= 0:
            out.append(f"fd://{self.fd}")
        if self.host or self.port:
            host = self.host or "127.0.0.1"
            out.append(f"[{host}]:{self.port or 8000}" if ":" in host else f"{host}:{self.port or 8000}")
        return out or (["127.0.0.1:8000"] if fallback else [])

    def access_log_target(self) -> str | None:
        """Where the core writes the access log, or None when it is off."""
        if self.access_logfile:
            return self.access_logfile
        return "-" if self.access_log else None

    def static_mounts(self) -> list[tuple[str, str]]:
        """--static values as (URL prefix, directory) pairs for the core."""
        out = []
        for item in self.static:
            prefix, _, directory = item.partition("=")
            out.append((prefix, directory))
        return out

    def resolved_runtime_threads(self) -> int:
        """--runtime-threads 0 (the default): the cores the workers leave over, one or two I/O
        threads per worker. Measured with one worker on 2 cores (README, "Speed"): a second tokio
        thread gave websocket echo 6% more messages/s and a third lower p99, and left HTTP pages
        unchanged; more than two was not measured, so it is not chosen automatically."""
        if self.runtime_threads > 0:
            return self.runtime_threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(2, cores // self.workers))

    def resolved_interface(self) -> str:
        """`--interface`, or what a gunicorn `-k` worker class implies; "dual" with --wsgi."""
        if self.wsgi:
            return "dual"
        if self.interface != "auto":
            return "asgi" if self.interface.startswith("asgi") else self.interface
        wc = self.worker_class.lower()
        if "uvicorn" in wc or wc in ("asgi",):
            return "asgi"
        if wc in ("sync", "gthread", "gevent", "eventlet", "tornado"):
            return "wsgi"
        return "auto"

    def validate(self) -> None:
        if self.asgi_path and not self.wsgi:
            raise ConfigError("asgi_path only applies with --wsgi or --django (both interfaces)")
        if self.wsgi and self.interface == "wsgi":
            raise ConfigError("with --wsgi, APP is the ASGI app: --interface wsgi contradicts it")
        for prefix in self.asgi_path:
            if not prefix.startswith("/"):
                raise ConfigError(f"asgi_path {prefix!r} must start with /")
        if not self.app:
            raise ConfigError("no application given (e.g. rsgi mysite.wsgi:application)")
        if ":" not in self.app and "." not in self.app:
            raise ConfigError(f"application {self.app!r} should look like module:attribute")
        for name in ("workers", "threads", "backlog", "max_connections"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.runtime_threads < 0:
            raise ConfigError("runtime_threads must be 0 (automatic) or more")
        if self.sync_concurrency < 0:
            raise ConfigError("sync_concurrency must be 0 (asgiref's own threads) or more")
        if self.keepalive <= 0:
            raise ConfigError("keepalive must be positive")
        if not 0 <= self.drain_delay < math.inf:
            raise ConfigError("drain_delay must be 0 or more seconds")
        if not 0 < self.upgrade_timeout < math.inf:
            raise ConfigError("upgrade_timeout must be more than 0 seconds")
        for address in self.binds():
            check_address(address)
        if self.cert_reqs not in (0, 1, 2):
            raise ConfigError("cert_reqs must be 0 (none), 1 (optional) or 2 (required)")
        if self.cert_reqs and not self.ca_certs:
            raise ConfigError("cert_reqs needs ca_certs (the CAs client certificates are checked against)")
        if self.certfile and not os.path.isfile(os.path.join(self.chdir, self.certfile)):
            raise ConfigError(f"certfile {self.certfile!r} not found")
        for item in self.static:
            prefix, sep, directory = item.partition("=")
            if not sep or not prefix.startswith("/") or not directory:
                raise ConfigError(f"static {item!r}: expected /PREFIX/=DIRECTORY")
            if not os.path.isdir(os.path.join(self.chdir, directory)):
                raise ConfigError(f"static {item!r}: {directory!r} is not a directory")

    def core(self) -> CoreConfig:
        """The frozen, normalised view the Rust core takes (`Worker(cfg.core(), ...)`), computed once
        per Config. Raises ConfigError for a value the core cannot use (`build` calls it)."""
        return self._core

    @cached_property
    def _core(self) -> CoreConfig:
        return core_view(self)

    def pending_settings(self) -> list[str]:
        """Settings given explicitly that this release accepts but does not act on."""
        return [f.name for f in dataclasses.fields(self) if f.metadata.get("pending") and f.name in self.explicit]


def gunicorn_address(address: str) -> str:
    """gunicorn's optional scheme spellings: tcp://HOST:PORT is HOST:PORT, and unix://PATH is
    unix:PATH (so unix://run/app.sock stays relative, as gunicorn reads it)."""
    if address.startswith("tcp://"):
        return address[len("tcp://") :]
    if address.startswith("unix://"):
        return "unix:" + address[len("unix://") :]
    return address


def check_address(address: str) -> None:
    """Reject a bind address that can never work, before anything is bound."""
    address = gunicorn_address(address)
    if address.startswith("unix:"):
        if not address[5:]:
            raise ConfigError(f"bind {address!r}: no socket path")
        return
    if address.startswith("fd://"):
        if not address[5:].isdigit():
            raise ConfigError(f"bind {address!r}: fd:// needs a file descriptor number")
        return
    if address.startswith("["):
        _, sep, port = address[1:].partition("]:")
        if not sep:
            raise ConfigError(f"bind {address!r}: expected [IPv6]:PORT")
    elif address.count(":") == 1:
        port = address.rpartition(":")[2]
    elif address.isdigit():
        port = address
    else:
        return  # a bare host name: port 8000
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"bind {address!r}: port must be a number from 0 to 65535")


# The settings (every field but `explicit`), by name: what the flags, the environment and config
# files can set, and what `--check-config` prints.
FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Config) if "help" in f.metadata}
