"""gunicorn's and uvicorn's options that have no rsgi setting: accepted, each with why it has no
effect here, so that a command line, config file or ``GUNICORN_CMD_ARGS`` written for those
servers starts rsgi as it is (one warning per option) instead of failing on an unknown option.

An option whose absence would change what is served is refused instead (`refuse`): a PasteDeploy
app, or a protocol other than HTTP. Options rsgi does act on are ordinary settings in `schema`
(with gunicorn's and uvicorn's spellings as aliases); only the rest are listed here. The names
come from gunicorn 23+ (`gunicorn.config`) and uvicorn 0.3x (`uvicorn --help`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Foreign:
    name: str  # the setting's name in gunicorn.conf.py (or uvicorn's option name)
    flags: tuple[str, ...]
    why: str
    takes_value: bool = True
    repeatable: bool = False
    refuse: bool = False


_SYSLOG = "rsgi does not log to syslog: logs go to files or stderr (journald collects stderr under systemd)"
_STATSD = "rsgi exports Prometheus metrics instead of sending statsd (--metrics-bind)"
_H2 = "rsgi's HTTP/2 is hyper's, on by default (--http auto; `--http 1` turns it off)"
_LENIENT = "rsgi's HTTP/1 parser (hyper) is strict: a request needing this leniency is answered 400"
_DIRTY = "gunicorn's dirty arbiters have no rsgi counterpart; run that work in a task queue"
_CONTROL = "rsgi is controlled with signals (HUP, USR2, TTIN, TTOU) and its health and metrics endpoints"

FOREIGN: tuple[Foreign, ...] = (
    # gunicorn
    Foreign(
        "worker_tmp_dir", ("--worker-tmp-dir",), "workers report to the supervisor through shared memory, not files"
    ),
    Foreign("reload_engine", ("--reload-engine",), "--reload always uses watchfiles"),
    Foreign(
        "tmp_upload_dir",
        (),
        "request bodies over --body-spool-threshold go to an unnamed temporary file in $TMPDIR (set TMPDIR)",
    ),
    Foreign(
        "secure_scheme_headers",
        (),
        "the scheme comes from X-Forwarded-Proto or Forwarded sent by a trusted proxy (--forwarded-allow-ips)",
    ),
    Foreign("default_proc_name", (), "the process title comes from --name"),
    Foreign("spew", ("--spew",), "rsgi has no line-by-line tracing of the server", takes_value=False),
    Foreign(
        "sendfile", ("--no-sendfile",), "the core writes file bodies itself: there is no sendfile to turn off", False
    ),
    Foreign(
        "reuse_port",
        ("--reuse-port",),
        "workers accept on one shared socket (README, 'Across workers'): with SO_REUSEPORT a stopping worker "
        "would drop the connections queued on its own",
        takes_value=False,
    ),
    Foreign("initgroups", ("--initgroups",), "rsgi always sets the user's groups when it drops privileges", False),
    Foreign("disable_redirect_access_to_syslog", ("--disable-redirect-access-to-syslog",), _SYSLOG, False),
    Foreign("logger_class", ("--logger-class",), "rsgi's logging is configured with --log-config or --log-format"),
    Foreign("logconfig_dict", (), "put the dictConfig in a .json file and name it with --log-config"),
    Foreign("syslog_addr", ("--log-syslog-to",), _SYSLOG),
    Foreign("syslog", ("--log-syslog",), _SYSLOG, takes_value=False),
    Foreign("syslog_prefix", ("--log-syslog-prefix",), _SYSLOG),
    Foreign("syslog_facility", ("--log-syslog-facility",), _SYSLOG),
    Foreign("statsd_host", ("--statsd-host",), _STATSD),
    Foreign("dogstatsd_tags", ("--dogstatsd-tags",), _STATSD),
    Foreign("statsd_prefix", ("--statsd-prefix",), _STATSD),
    Foreign("enable_backlog_metric", ("--enable-backlog-metric",), _STATSD, takes_value=False),
    Foreign(
        "paste",
        ("--paste", "--paster"),
        "rsgi loads the app as module:attribute; a PasteDeploy .ini app cannot be served (name its WSGI callable)",
        refuse=True,
    ),
    Foreign("raw_paste_global_conf", ("--paste-global",), "only used with --paste", repeatable=True),
    Foreign("uwsgi_allow_ips", ("--uwsgi-allow-from",), "only used with the uwsgi protocol, which rsgi does not speak"),
    Foreign("suppress_ragged_eofs", ("--suppress-ragged-eofs",), "TLS is rustls in the core", takes_value=False),
    Foreign("do_handshake_on_connect", ("--do-handshake-on-connect",), "TLS is rustls in the core", False),
    Foreign("http_protocols", ("--http-protocols",), _H2),
    Foreign("http2_cleartext", ("--http2-cleartext",), _H2),
    Foreign("http2_initial_window_size", ("--http2-initial-window-size",), _H2),
    Foreign("http2_max_frame_size", ("--http2-max-frame-size",), _H2),
    Foreign("http2_max_header_list_size", ("--http2-max-header-list-size",), _H2),
    Foreign("permit_obsolete_folding", ("--permit-obsolete-folding",), _LENIENT, takes_value=False),
    Foreign("strip_header_spaces", ("--strip-header-spaces",), _LENIENT, takes_value=False),
    Foreign("permit_unconventional_http_method", ("--permit-unconventional-http-method",), _LENIENT, False),
    Foreign("permit_unconventional_http_version", ("--permit-unconventional-http-version",), _LENIENT, False),
    Foreign("casefold_http_method", ("--casefold-http-method",), _LENIENT, takes_value=False),
    Foreign(
        "forwarder_headers",
        ("--forwarder-headers",),
        "SCRIPT_NAME comes from --root-path; proxy headers are trusted as --forwarded-allow-ips says",
    ),
    Foreign(
        "header_map",
        ("--header-map",),
        "header names with underscores are dropped from the WSGI environ (gunicorn's default, drop)",
    ),
    Foreign("asgi_disconnect_grace_period", ("--asgi-disconnect-grace-period",), "the drain is --graceful-timeout"),
    Foreign("http_parser", ("--http-parser",), "rsgi's HTTP parser is hyper's"),
    Foreign("dirty_apps", ("--dirty-app",), _DIRTY, repeatable=True),
    Foreign("dirty_workers", ("--dirty-workers",), _DIRTY),
    Foreign("dirty_timeout", ("--dirty-timeout",), _DIRTY),
    Foreign("dirty_threads", ("--dirty-threads",), _DIRTY),
    Foreign("dirty_graceful_timeout", ("--dirty-graceful-timeout",), _DIRTY),
    Foreign("control_socket", ("--control-socket",), _CONTROL),
    Foreign("control_socket_mode", ("--control-socket-mode",), _CONTROL),
    Foreign("control_socket_disable", ("--no-control-socket",), _CONTROL, takes_value=False),
    # uvicorn
    Foreign("reload_delay", ("--reload-delay",), "watchfiles debounces changes itself"),
    Foreign("http2", ("--http2",), _H2, takes_value=False),
    Foreign(
        "ws_max_queue",
        ("--ws-max-queue",),
        "a websocket queues up to 64 incoming messages for the app, then stops reading (backpressure)",
    ),
    Foreign("use_colors", ("--use-colors", "--no-use-colors"), "rsgi's log lines are not coloured", False),
    Foreign(
        "h11_max_incomplete_event_size",
        ("--h11-max-incomplete-event-size",),
        "request heads are bounded by --limit-request-line, --limit-request-fields and --limit-request-field-size",
    ),
    Foreign(
        "reset_contextvars",
        ("--reset-contextvars",),
        "every request already starts from a copy of the worker's context: it sees no contextvars set by the "
        "lifespan or another request",
        takes_value=False,
    ),
)

# `--protocol`: gunicorn's default, http, is what rsgi speaks; anything else is refused.
PROTOCOL_FLAG = "--protocol"


def by_name() -> dict[str, Foreign]:
    return {f.name: f for f in FOREIGN}


def message(f: Foreign, given_as: str) -> str:
    return f"{given_as} has no effect in rsgi: {f.why}"


def check(given: list[tuple[Foreign, str]], warn: Callable[[str], None]) -> None:
    """Refuses what must not be ignored, and warns once about each of the rest."""
    for f, given_as in given:
        if f.refuse:
            raise ConfigError(f"{given_as}: {f.why}")
    for f, given_as in given:
        warn(message(f, given_as))


def check_protocol(value: str) -> None:
    if value.strip().lower() != "http":
        raise ConfigError(f"--protocol {value}: rsgi speaks HTTP only (put nginx's proxy_pass in front)")
