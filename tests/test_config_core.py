"""The core view: `Config.core()`, the frozen, normalised `CoreConfig` a worker hands the Rust core.

In process through `rsgi.config.build` (no server, no app import), plus `--check-config`, which
prints the view as `core.<name> = value` lines. The Rust side reads the same names
(`ServerConfig` in src/config.rs, `#[derive(FromPyObject)]`); a test below keeps the two lists equal.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import TESTS, base_env
from rsgi.cli import parse
from rsgi.config import DEFAULT_ACCESS_LOG_FORMAT, FIELDS, ConfigError, CoreConfig, TlsCore, build
from rsgi.config.core import CompressCore, ProxyProtocolCore, RateLimitCore

APP = "apps.basic:hello"
ROOT = Path(__file__).resolve().parent.parent

# The contract with src/config.rs: attribute names and Python types, in order.
CONTRACT: dict[str, Any] = {
    "runtime_threads": "int",
    "keepalive": "float",
    "body_timeout": "float",
    "send_timeout": "float | None",
    "request_timeout": "float | None",
    "graceful_timeout": "float",
    "max_body_size": "int",
    "body_spool_threshold": "int",
    "limit_request_line": "int",
    "limit_request_fields": "int",
    "limit_request_field_size": "int",
    "max_connections": "int",
    "server_header": "bool",
    "date_header": "bool",
    "headers": "tuple[tuple[str, str], ...]",
    "websockets": "bool",
    "ws_max_size": "int",
    "ws_ping_interval": "float",
    "ws_ping_timeout": "float",
    "ws_per_message_deflate": "bool",
    "access_log": "str | None",
    "access_log_format": "str",
    "limit_concurrency": "int | None",
    "root_path": "str",
    "static_mounts": "tuple[tuple[str, str], ...]",
    "static_max_age": "int",
    "trusted_proxies": "str | None",
    "health_path": "str",
    "http": "str",
    "h2_max_concurrent_streams": "int",
    "tls": "TlsCore | None",
    "asgi_paths": "tuple[str, ...]",
    "proxy_protocol": "ProxyProtocolCore | None",
    "limit_rate": "RateLimitCore | None",
    "compress": "CompressCore | None",
}


def core(*argv: str, environ: dict[str, str] | None = None) -> CoreConfig:
    """The core view of `rsgi APP ARGV...` with only `environ` (default: none) as the environment."""
    flags, _ = parse([APP, *argv])
    return build(flags, environ or {}).core()


# -- the shape ------------------------------------------------------------------------------


def test_fields_and_types_are_the_contract() -> None:
    assert {f.name: f.type for f in dataclasses.fields(CoreConfig)} == CONTRACT
    assert [(f.name, f.type) for f in dataclasses.fields(TlsCore)] == [
        ("certfile", "str"),
        ("keyfile", "str"),
        ("ca_certs", "str"),
        ("cert_reqs", "int"),
    ]


def test_rust_reads_the_same_names() -> None:
    """src/config.rs's `ServerConfig` and `TlsSettings` fields are the view's attributes."""
    source = (ROOT / "src" / "config.rs").read_text()

    def rust_fields(struct: str) -> list[str]:
        match = re.search(rf"pub struct {struct} \{{(.*?)\n\}}", source, re.S)
        assert match, f"no `pub struct {struct}` in src/config.rs"
        return re.findall(r"^\s*pub (\w+):", match.group(1), re.M)

    assert sorted(rust_fields("ServerConfig")) == sorted(CONTRACT)
    assert sorted(rust_fields("TlsSettings")) == sorted(f.name for f in dataclasses.fields(TlsCore))
    assert sorted(rust_fields("ProxyProtocolSettings")) == sorted(f.name for f in dataclasses.fields(ProxyProtocolCore))
    assert sorted(rust_fields("RateLimitSettings")) == sorted(f.name for f in dataclasses.fields(RateLimitCore))
    assert sorted(rust_fields("CompressSettings")) == sorted(f.name for f in dataclasses.fields(CompressCore))


def test_limit_rate_spellings_and_sources(tmp_path: Path) -> None:
    assert core().limit_rate is None
    assert core("--limit-rate", "off").limit_rate is None
    assert core("--limit-rate", "10/s").limit_rate == RateLimitCore(10, 1.0, 10, (), 100_000)
    assert core("--limit-rate", "30r/m", "--limit-burst", "5").limit_rate == RateLimitCore(30, 60.0, 5, (), 100_000)
    view = core(
        "--limit-rate", "2/S", "--limit-rate-path", "/api/", "--limit-rate-path", "/login", "--limit-rate-keys", "7"
    )
    assert view.limit_rate == RateLimitCore(2, 1.0, 2, ("/api/", "/login"), 7)
    assert build({"app": APP}, {"RSGI_LIMIT_RATE": "5/m"}).core().limit_rate == RateLimitCore(5, 60.0, 5, (), 100_000)
    conf = tmp_path / "conf.py"
    conf.write_text("limit_rate = '3/s'\nlimit_burst = 1\n")
    assert build({"app": APP, "config": str(conf)}, {}).core().limit_rate == RateLimitCore(3, 1.0, 1, (), 100_000)
    for bad, message in [
        (["--limit-rate", "10"], "is not N/s or N/m"),
        (["--limit-rate", "0/s"], "is not N/s or N/m"),
        (["--limit-rate", "10/h"], "is not N/s or N/m"),
        (["--limit-rate", "1/s", "--limit-rate-path", "api/"], "must start with /"),
        (["--limit-rate", "1/s", "--limit-rate-keys", "0"], "limit_rate_keys must be 1 or more"),
        (["--limit-rate", "1/s", "--limit-burst", "-1"], "limit_burst must be 0 or more"),
    ]:
        with pytest.raises(ConfigError, match=message):
            core(*bad)


def test_proxy_protocol_spellings_and_allow_list(tmp_path: Path) -> None:
    """gunicorn's values (a bare flag or True: auto) and its `proxy_allow_ips`, which falls back
    to --forwarded-allow-ips; `rsgi --proxy-protocol APP` keeps APP as the app."""
    assert core().proxy_protocol is None
    assert core("--proxy-protocol") == core("--proxy-protocol", "auto") == core("--proxy-protocol=on")
    assert core("--proxy-protocol").proxy_protocol == ProxyProtocolCore("auto", "127.0.0.1,::1")
    assert core("--proxy-protocol=v2", "--proxy-allow-from", "10.0.0.0/8").proxy_protocol == ProxyProtocolCore(
        "v2", "10.0.0.0/8"
    )
    assert core("--proxy-protocol", "false").proxy_protocol is None
    flags, _ = parse(["--proxy-protocol", APP])
    assert flags == {"app": APP, "proxy_protocol": "auto"}
    env = {"RSGI_PROXY_PROTOCOL": "1", "FORWARDED_ALLOW_IPS": "192.0.2.1"}
    assert build({"app": APP}, env).core().proxy_protocol == ProxyProtocolCore("auto", "192.0.2.1")
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("proxy_protocol = True\nproxy_allow_ips = '10.1.0.0/16'\n")
    assert build({"app": APP, "config": str(conf)}, {}).core().proxy_protocol == ProxyProtocolCore(
        "auto", "10.1.0.0/16"
    )
    with pytest.raises(ConfigError):
        build({"app": APP, "proxy_protocol": "v3"}, {})


def test_values_have_the_declared_types() -> None:
    view = core("--access-log", "--limit-concurrency", "7", "--timeout-keep-alive", "3")
    for name, kind in CONTRACT.items():
        value = getattr(view, name)
        allowed = {"int": int, "float": float, "bool": bool, "str": str}.get(kind.partition(" | ")[0])
        if allowed is not None and value is not None:
            assert type(value) is allowed, (name, value)
    assert isinstance(view.static_mounts, tuple)
    assert isinstance(view.asgi_paths, tuple)


def test_the_view_is_frozen_and_computed_once() -> None:
    cfg = build({"app": APP}, {})
    view = cfg.core()
    assert cfg.core() is view
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.keepalive = 1.0  # type: ignore[misc]
    # A changed Config (as --static-django makes in a worker) has a view of its own.
    changed = dataclasses.replace(cfg, keepalive=2.0)
    assert changed.core().keepalive == 2.0
    assert cfg.core().keepalive == 5.0


def test_config_is_frozen_and_remembers_what_was_given() -> None:
    cfg = build({"app": APP, "workers": 2}, {"RSGI_KEEPALIVE": "3"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.workers = 3  # type: ignore[misc]
    assert cfg.explicit == {"app", "workers", "keepalive"}
    assert dataclasses.replace(cfg, threads=2).explicit == cfg.explicit
    assert "explicit" not in FIELDS


# -- defaults and normalisation ---------------------------------------------------------------


def test_defaults() -> None:
    cfg = build({"app": APP}, {})
    view = cfg.core()
    assert view.runtime_threads == cfg.resolved_runtime_threads() >= 1
    assert (view.keepalive, view.body_timeout, view.graceful_timeout) == (5.0, 30.0, 30.0)
    assert (view.max_body_size, view.body_spool_threshold) == (50 * 1024 * 1024, 1024 * 1024)
    assert (view.limit_request_line, view.limit_request_fields, view.limit_request_field_size) == (8190, 100, 8190)
    assert view.max_connections == 10000
    assert (view.server_header, view.date_header, view.websockets) == (True, True, True)
    assert (view.ws_max_size, view.ws_ping_interval, view.ws_ping_timeout) == (16 * 1024 * 1024, 20.0, 20.0)
    assert view.access_log is None
    assert view.access_log_format == DEFAULT_ACCESS_LOG_FORMAT
    assert view.limit_concurrency is None
    assert (view.root_path, view.static_mounts, view.static_max_age) == ("", (), 60)
    assert view.trusted_proxies == "127.0.0.1,::1"
    assert (view.health_path, view.http, view.h2_max_concurrent_streams) == ("", "auto", 100)
    assert view.tls is None
    assert view.asgi_paths == ()


def test_default_access_log_format_is_gunicorns() -> None:
    assert DEFAULT_ACCESS_LOG_FORMAT == '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
    assert core("--access-logformat", "%(h)s %(s)s").access_log_format == "%(h)s %(s)s"


@pytest.mark.parametrize(
    ("spelling", "http"), [("1", "1"), ("h11", "1"), ("httptools", "1"), ("2", "2"), ("auto", "auto"), ("H11", "1")]
)
def test_http_spellings(spelling: str, http: str) -> None:
    assert core("--http", spelling).http == http


def test_runtime_threads_resolved() -> None:
    assert core("--runtime-threads", "3").runtime_threads == 3
    auto = build({"app": APP, "workers": 10_000}, {})
    assert auto.runtime_threads == 0
    assert auto.core().runtime_threads == 1  # more workers than cores: one I/O thread each


def test_asgi_paths_end_in_a_slash() -> None:
    view = core("--wsgi", "apps.basic:hello", "--asgi-path", "/events", "--asgi-path", "/sse/")
    assert view.asgi_paths == ("/events/", "/sse/")


@pytest.mark.parametrize(("given", "limit"), [("0", None), ("5", 5)])
def test_limit_concurrency_zero_means_none(given: str, limit: int | None) -> None:
    assert core("--limit-concurrency", given).limit_concurrency == limit


@pytest.mark.parametrize(("ws", "on"), [("none", False), ("NONE", False), ("auto", True), ("wsproto", True)])
def test_websockets_off_only_with_ws_none(ws: str, on: bool) -> None:
    assert core("--ws", ws).websockets is on


def test_ws_per_message_deflate_on_by_default_from_every_source() -> None:
    assert core().ws_per_message_deflate is True
    assert core("--no-ws-per-message-deflate").ws_per_message_deflate is False
    assert core(environ={"RSGI_WS_PER_MESSAGE_DEFLATE": "false"}).ws_per_message_deflate is False
    assert core("--ws-per-message-deflate", environ={"RSGI_WS_PER_MESSAGE_DEFLATE": "0"}).ws_per_message_deflate


def test_trusted_proxies() -> None:
    assert core("--no-proxy-headers").trusted_proxies is None
    assert core("--forwarded-allow-ips", "10.0.0.0/8, 192.0.2.1").trusted_proxies == "10.0.0.0/8, 192.0.2.1"
    assert core(environ={"FORWARDED_ALLOW_IPS": "*"}).trusted_proxies == "*"
    # The list is parsed (into networks) by the core itself, so a bad entry stops the worker there.
    assert core("--forwarded-allow-ips", "nonsense").trusted_proxies == "nonsense"


def test_access_log_target() -> None:
    assert core("--access-log").access_log == "-"
    assert core("--access-logfile", "/tmp/access.log", "--access-log").access_log == "/tmp/access.log"
    assert core("--no-access-log").access_log is None


@pytest.mark.parametrize(("root", "normalised"), [("/app/", "/app"), ("/app", "/app"), ("/", ""), ("", "")])
def test_root_path_has_no_trailing_slash(root: str, normalised: str) -> None:
    assert core("--root-path", root).root_path == normalised


def test_static_mounts(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    view = core("--static", f"/static/={tmp_path / 'a'}", "--static", f"/media/={tmp_path / 'b'}")
    assert view.static_mounts == (("/static/", str(tmp_path / "a")), ("/media/", str(tmp_path / "b")))


def test_tls(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not read here; the core loads it")
    assert core().tls is None
    assert core("--certfile", str(cert)).tls == TlsCore(certfile=str(cert), keyfile="", ca_certs="", cert_reqs=0)
    tls = core("--ssl-certfile", str(cert), "--ssl-keyfile", "k.pem", "--ca-certs", "ca.pem", "--cert-reqs", "2").tls
    assert tls == TlsCore(certfile=str(cert), keyfile="k.pem", ca_certs="ca.pem", cert_reqs=2)
    # Without a certificate the other TLS settings have nothing to apply to.
    assert core("--keyfile", "k.pem").tls is None


def test_durations_are_clamped_as_before() -> None:
    view = core("--ws-ping-interval", "0", "--body-timeout", "-1", "--ws-ping-timeout", "-2")
    assert view.ws_ping_interval == 0.001
    assert (view.body_timeout, view.ws_ping_timeout) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-body-size", "-1"], "max_body_size must be 0 or more"),
        (["--limit-concurrency", "-1"], "limit_concurrency must be 0 or more"),
        (["--ws-max-size", "-5"], "ws_max_size must be 0 or more"),
        (["--h2-max-concurrent-streams", str(2**32)], "h2_max_concurrent_streams must be at most 4294967295"),
        (["--graceful-timeout", "inf"], "graceful_timeout must be a finite number of seconds"),
        (["--body-timeout", "nan"], "body_timeout must be a finite number of seconds"),
    ],
)
def test_values_the_core_cannot_use_are_config_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        core(*argv)


# -- --check-config ---------------------------------------------------------------------------


def check_config(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "rsgi", APP, *args, "--check-config"],
        cwd=TESTS,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        name, sep, value = line.partition(" = ")
        assert sep, line
        out[name.strip()] = ast.literal_eval(value.strip())
    return out


def test_check_config_prints_the_core_view(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("-")
    printed = check_config(
        *("--http", "h11", "--limit-concurrency", "0", "--ws", "none", "--no-proxy-headers", "--root-path", "/app/"),
        *("--wsgi", "apps.basic:hello", "--asgi-path", "/events", "--certfile", str(cert), "--cert-reqs", "0"),
    )
    assert {f"core.{name}" for name in CONTRACT} <= set(printed)
    assert set(FIELDS) <= set(printed)  # the settings still come first, as given
    assert printed["http"] == "h11"
    assert printed["core.http"] == "1"
    assert printed["core.limit_concurrency"] is None
    assert printed["core.websockets"] is False
    assert printed["core.trusted_proxies"] is None
    assert printed["core.root_path"] == "/app"
    assert printed["core.asgi_paths"] == ("/events/",)
    assert printed["core.access_log_format"] == DEFAULT_ACCESS_LOG_FORMAT
    assert printed["core.runtime_threads"] >= 1
    assert printed["core.tls"] == {"certfile": str(cert), "keyfile": "", "ca_certs": "", "cert_reqs": 0}


def test_check_config_refuses_what_the_core_cannot_use() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rsgi", APP, "--max-body-size", "-1", "--check-config"],
        cwd=TESTS,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "rsgi: error: max_body_size must be 0 or more" in proc.stderr
