"""The core view: the part of a `Config` the Rust core uses, normalised once, frozen.

`cfg.core()` (this module's `core_view`) is the only thing that crosses into Rust (`Worker(cfg.core(),
...)`); the Rust
side reads these attributes by name (`#[derive(FromPyObject)]` in src/config.rs) and derives
nothing: every default, alias and range is settled here, so `rsgi --check-config` prints exactly
what the core will use. What Rust still parses itself is the trusted-proxy list (into networks).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:  # schema imports this module; only its type is needed here
    from .schema import Config

# gunicorn's default access log format; the core uses it when --access-logformat is not given.
DEFAULT_ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

# --http spellings: uvicorn's h11/httptools mean HTTP/1.1 only.
HTTP_VERSIONS = {"1": "1", "h11": "1", "httptools": "1", "2": "2", "auto": "auto"}

# --proxy-protocol spellings (gunicorn's, where a bare flag or True means auto): the versions taken.
PROXY_PROTOCOL = {
    **dict.fromkeys(("off", "false", "0", "none"), None),
    **dict.fromkeys(("auto", "true", "on", "1"), "auto"),
    "v1": "v1",
    "v2": "v2",
}

# --limit-rate: N per second or per minute (nginx's "10r/s" spelling too).
RATE = re.compile(r"(\d+)\s*r?\s*/\s*(s|sec|second|m|min|minute)", re.IGNORECASE)

# --compress-types by default: text, and the text formats of the web that other types name. Already
# compressed formats (images but SVG, fonts but TTF/OTF/EOT, archives, video) gain nothing.
COMPRESS_TYPES = (
    "text/*",
    "application/json",
    "application/*+json",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/xml",
    "application/*+xml",
    "application/wasm",
    "application/x-ndjson",
    "image/svg+xml",
    "image/x-icon",
    "image/vnd.microsoft.icon",
    "font/ttf",
    "font/otf",
    "application/vnd.ms-fontobject",
)

# --compress-level: each codec's (lowest, highest, default) level. gzip 6 is zlib's default and
# Django's GZipMiddleware's; zstd 3 is zstd's own, the usual level for responses made per request
# (above 19 it needs windows browsers refuse). Spellings a CODEC=LEVEL item may use. No brotli: its
# encoder does not fit in the wheel (README, Compression).
COMPRESS_LEVELS = {"gzip": (1, 9, 6), "zstd": (1, 19, 3)}
COMPRESS_CODECS = {"gzip": "gzip", "gz": "gzip", "zstd": "zstd", "zst": "zstd"}

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1


@dataclass(frozen=True)
class TlsCore:
    """TLS on every listener (rustls): the PEM files and whether client certificates are asked for."""

    certfile: str
    keyfile: str  # empty: the key is read from certfile
    ca_certs: str  # empty: no client certificates are checked
    cert_reqs: int  # 0 not asked for, 1 optional, 2 required


@dataclass(frozen=True)
class ProxyProtocolCore:
    """--proxy-protocol: which header versions are taken, and from which peers."""

    versions: str  # "auto" (v1 and v2), "v1" or "v2"
    allow: str  # --proxy-allow-from, else --forwarded-allow-ips, as given (Rust parses it)


@dataclass(frozen=True)
class RateLimitCore:
    """--limit-rate and its companions: N requests per period per client, `burst` at once."""

    requests: int  # >= 1
    period: float  # 1.0 (N/s) or 60.0 (N/m)
    burst: int  # >= 1 (--limit-burst 0 means N)
    paths: tuple[str, ...]  # --limit-rate-path prefixes; empty: every request for the app
    max_keys: int  # >= 1: client addresses tracked per worker


@dataclass(frozen=True)
class CompressCore:
    """--compress and its companions: which responses are compressed, and each codec's level."""

    min_size: int  # bytes; a response of known length below it is sent as it is
    types: tuple[str, ...]  # lower-case patterns: type/subtype, type/*, type/*+suffix, */*
    gzip: int | None  # level; None: not offered
    zstd: int | None
    exclude_paths: tuple[str, ...]  # --compress-exclude-path prefixes, each starting with "/"


@dataclass(frozen=True)
class CoreConfig:
    """What the Rust core reads (src/config.rs); durations in seconds, sizes in bytes."""

    runtime_threads: int  # tokio I/O threads per worker, resolved (>= 1)
    keepalive: float
    body_timeout: float
    send_timeout: float | None  # None: writes may stall forever (--send-timeout 0)
    request_timeout: float | None  # None: no 504 from the core (--request-timeout 0, the default)
    graceful_timeout: float
    max_body_size: int
    body_spool_threshold: int
    limit_request_line: int
    limit_request_fields: int
    limit_request_field_size: int
    max_connections: int  # >= 1
    server_header: bool
    date_header: bool
    headers: tuple[tuple[str, str], ...]  # --header NAME:VALUE, split and stripped
    websockets: bool  # False with --ws none
    ws_max_size: int
    ws_ping_interval: float  # >= 0.001
    ws_ping_timeout: float
    ws_per_message_deflate: bool
    access_log: str | None  # "-" (stdout), a file, or None (off)
    access_log_format: str  # gunicorn's atoms, or exactly "json"; never empty
    limit_concurrency: int | None  # None: no limit
    root_path: str  # no trailing "/"
    static_mounts: tuple[tuple[str, str], ...]  # (URL prefix, directory)
    static_max_age: int
    trusted_proxies: str | None  # --forwarded-allow-ips as given (Rust parses it); None: proxy headers off
    health_path: str  # empty: off
    http: str  # "1", "2" or "auto"
    h2_max_concurrent_streams: int
    tls: TlsCore | None  # None: cleartext
    asgi_paths: tuple[str, ...]  # each ending in "/"
    proxy_protocol: ProxyProtocolCore | None  # None: connections start with HTTP or TLS
    limit_rate: RateLimitCore | None  # None: no rate limit
    compress: CompressCore | None  # None: responses are sent as the app made them


def core_view(cfg: Config) -> CoreConfig:
    """The normalised core view of `cfg`. Raises ConfigError for a value the core cannot use.

    Through `Config.core()`: once by `sources.build` (so a bad value is a config error at startup,
    exit 2), again in a worker whose `--static-django` mount made a new Config."""
    http = HTTP_VERSIONS.get(cfg.http.lower())
    if http is None:
        raise ConfigError(f"http: {cfg.http!r} is not one of {', '.join(HTTP_VERSIONS)}")
    limit_concurrency = _count(cfg, "limit_concurrency")
    return CoreConfig(
        runtime_threads=max(1, cfg.resolved_runtime_threads()),
        keepalive=_seconds(cfg, "keepalive"),
        body_timeout=_seconds(cfg, "body_timeout"),
        send_timeout=_seconds(cfg, "send_timeout") or None,
        request_timeout=_seconds(cfg, "request_timeout") or None,
        graceful_timeout=_seconds(cfg, "graceful_timeout"),
        max_body_size=_count(cfg, "max_body_size"),
        body_spool_threshold=_count(cfg, "body_spool_threshold"),
        limit_request_line=_count(cfg, "limit_request_line"),
        limit_request_fields=_count(cfg, "limit_request_fields"),
        limit_request_field_size=_count(cfg, "limit_request_field_size"),
        max_connections=max(1, _count(cfg, "max_connections")),
        server_header=bool(cfg.server_header),
        date_header=bool(cfg.date_header),
        headers=tuple(_header(h) for h in cfg.headers),
        websockets=cfg.ws.lower() != "none",
        ws_max_size=_count(cfg, "ws_max_size"),
        ws_ping_interval=max(0.001, _seconds(cfg, "ws_ping_interval")),
        ws_ping_timeout=_seconds(cfg, "ws_ping_timeout"),
        ws_per_message_deflate=bool(cfg.ws_per_message_deflate),
        access_log=cfg.access_log_target(),
        access_log_format=_access_log_format(cfg.access_log_format),
        limit_concurrency=limit_concurrency or None,
        root_path=cfg.root_path.rstrip("/"),
        static_mounts=tuple(cfg.static_mounts()),
        static_max_age=_count(cfg, "static_max_age"),
        trusted_proxies=cfg.forwarded_allow_ips if cfg.proxy_headers else None,
        health_path=cfg.health_path,
        http=http,
        h2_max_concurrent_streams=_count(cfg, "h2_max_concurrent_streams", U32_MAX),
        tls=_tls(cfg),
        asgi_paths=tuple(p if p.endswith("/") else f"{p}/" for p in cfg.asgi_path),
        proxy_protocol=_proxy_protocol(cfg),
        limit_rate=_limit_rate(cfg),
        compress=_compress(cfg),
    )


# RFC 9110: a field name is a token; a value is visible ASCII, spaces and tabs, or obs-text.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def _header(item: str) -> tuple[str, str]:
    """uvicorn's NAME:VALUE (the value may hold colons), checked here so that a bad one is a
    startup error (exit 2), not a worker that cannot start."""
    name, sep, value = item.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not _TOKEN.fullmatch(name) or not _VALUE.fullmatch(value):
        raise ConfigError(f"header {item!r}: expected NAME:VALUE, a token and a value without control characters")
    return name, value


def core_items(core: CoreConfig) -> list[tuple[str, object]]:
    """(name, value) pairs of the core view as plain Python values (TLS as a dict), for printing."""
    return list(dataclasses.asdict(core).items())


def _access_log_format(value: str) -> str:
    """gunicorn's atoms as given, gunicorn's default when empty, "json" in any spelling as "json"."""
    if value.strip().lower() == "json":
        return "json"
    return value or DEFAULT_ACCESS_LOG_FORMAT


def _seconds(cfg: Config, name: str) -> float:
    """A duration: finite; a negative one means 0, as it always has."""
    value = float(getattr(cfg, name))
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number of seconds")
    return max(0.0, value)


def _count(cfg: Config, name: str, most: int = U64_MAX) -> int:
    """A size or count the core keeps as an unsigned integer."""
    value = int(getattr(cfg, name))
    if value < 0:
        raise ConfigError(f"{name} must be 0 or more")
    if value > most:
        raise ConfigError(f"{name} must be at most {most}")
    return value


def _proxy_protocol(cfg: Config) -> ProxyProtocolCore | None:
    if cfg.proxy_protocol.lower() not in PROXY_PROTOCOL:
        raise ConfigError(f"proxy_protocol: {cfg.proxy_protocol!r} is not one of off, auto, v1, v2")
    versions = PROXY_PROTOCOL[cfg.proxy_protocol.lower()]
    if versions is None:
        return None
    return ProxyProtocolCore(versions=versions, allow=cfg.proxy_allow_ips or cfg.forwarded_allow_ips)


def _limit_rate(cfg: Config) -> RateLimitCore | None:
    spec = cfg.limit_rate.strip()
    if spec.lower() in ("", "0", "off", "none"):
        return None
    match = RATE.fullmatch(spec)
    if match is None or not 1 <= int(match[1]) <= U64_MAX:
        raise ConfigError(f"limit_rate: {cfg.limit_rate!r} is not N/s or N/m with N >= 1 (e.g. 10/s)")
    requests = int(match[1])
    for prefix in cfg.limit_rate_path:
        if not prefix.startswith("/"):
            raise ConfigError(f"limit_rate_path {prefix!r} must start with /")
    max_keys = _count(cfg, "limit_rate_keys")
    if max_keys < 1:
        raise ConfigError("limit_rate_keys must be 1 or more")
    return RateLimitCore(
        requests=requests,
        period=1.0 if match[2].lower().startswith("s") else 60.0,
        burst=_count(cfg, "limit_burst") or requests,
        paths=tuple(cfg.limit_rate_path),
        max_keys=max_keys,
    )


def _compress(cfg: Config) -> CompressCore | None:
    if not cfg.compress:
        return None
    levels: dict[str, int | None] = {codec: default for codec, (_, _, default) in COMPRESS_LEVELS.items()}
    for item in cfg.compress_level:
        name, sep, value = item.partition("=")
        codec = COMPRESS_CODECS.get(name.strip().lower())
        if codec is None or not sep:
            raise ConfigError(f"compress_level: {item!r} is not CODEC=LEVEL with CODEC gzip or zstd")
        lowest, highest, _ = COMPRESS_LEVELS[codec]
        value = value.strip().lower()
        if value in ("off", "none", "no"):
            levels[codec] = None
        elif value.isdigit() and lowest <= int(value) <= highest:
            levels[codec] = int(value)
        else:
            raise ConfigError(f"compress_level: {codec} takes {lowest} to {highest} or off, not {value!r}")
    if all(level is None for level in levels.values()):
        raise ConfigError("compress_level turns every codec off: leave --compress off instead")
    types = tuple(t.strip().lower() for t in cfg.compress_types if t.strip())
    for t in types:
        if t.count("/") != 1 or t.startswith("/") or t.endswith("/"):
            raise ConfigError(f"compress_types: {t!r} is not type/subtype (or type/*)")
    for prefix in cfg.compress_exclude_path:
        if not prefix.startswith("/"):
            raise ConfigError(f"compress_exclude_path {prefix!r} must start with /")
    return CompressCore(
        min_size=_count(cfg, "compress_min_size"),
        types=types,
        gzip=levels["gzip"],
        zstd=levels["zstd"],
        exclude_paths=tuple(cfg.compress_exclude_path),
    )


def _tls(cfg: Config) -> TlsCore | None:
    if not cfg.certfile:
        return None
    if cfg.cert_reqs not in (0, 1, 2):
        raise ConfigError("cert_reqs must be 0 (none), 1 (optional) or 2 (required)")
    return TlsCore(certfile=cfg.certfile, keyfile=cfg.keyfile, ca_certs=cfg.ca_certs, cert_reqs=int(cfg.cert_reqs))
