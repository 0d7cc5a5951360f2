"""Proxy headers through the real server: what WSGI and ASGI apps (and the access log) see once
`Forwarded` or `X-Forwarded-*` from a trusted peer set the client address, scheme, host and port.

How the core resolves them (each header alone, chains and trusted hops, obfuscated and unparsable
nodes, untrusted peers, `--no-proxy-headers`, `*`, absolute-form targets, Unix-socket peers) is
tested in Rust against a stub app that echoes what the core resolved: tests/http_core/proxy.rs.
Kept here: environ and scope after resolution through both interfaces, HTTP/2, a Unix bind, the
`FORWARDED_ALLOW_IPS` environment variable, the access log and a bad list stopping the server.

The tests connect from 127.0.0.1, which the default `--forwarded-allow-ips 127.0.0.1,::1` trusts.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Server, StartServer, running

WSGI_APP = "apps.edge:app"
ASGI_APP = "apps.edge:asgi_app"

XFF = {
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "public.example",
    "X-Forwarded-Port": "443",
}


@pytest.fixture(scope="module")
def wsgi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(WSGI_APP, log_dir=tmp_path_factory.mktemp("proxy-wsgi")) as server:
        yield server


@pytest.fixture(scope="module")
def asgi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(ASGI_APP, log_dir=tmp_path_factory.mktemp("proxy-asgi")) as server:
        yield server


def environ(server: Server, headers: dict[str, str] | None = None, base: str = "", **client_args) -> dict:
    with httpx.Client(timeout=5, **client_args) as client:
        r = client.get((base or server.url) + "/environ", headers=headers)
    assert r.status_code == 200
    return r.json()


def scope(server: Server, headers: dict[str, str] | None = None, **client_args) -> dict:
    with httpx.Client(timeout=5, **client_args) as client:
        r = client.get(server.url + "/scope", headers=headers)
    assert r.status_code == 200
    out = r.json()
    out["host"] = [v for k, v in out["headers"] if k == "host"]
    return out


def raw_environ(port: int, request: bytes) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    return json.loads(body)


# -- trusted peer (the default list) -------------------------------------------------------------


def test_x_forwarded_headers_from_loopback_are_applied_wsgi(wsgi: Server) -> None:
    env = environ(wsgi, XFF)
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "public.example"
    assert env["SERVER_PORT"] == "443"
    # The headers themselves still reach the app.
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"


def test_x_forwarded_headers_from_loopback_are_applied_asgi(asgi: Server) -> None:
    sc = scope(asgi, XFF)
    assert sc["client"][0] == "203.0.113.7"
    assert sc["scheme"] == "https"
    assert sc["host"] == ["public.example"]
    assert sc["server"] == ["127.0.0.1", 443]


def test_rfc7239_forwarded_with_quoted_ipv6_and_port_wins_over_x_forwarded(wsgi: Server, asgi: Server) -> None:
    headers = {
        "Forwarded": 'for="[2001:db8:cafe::17]:4711";proto=https;host=shop.example',
        "X-Forwarded-For": "9.9.9.9",
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Host": "x-forwarded.example",
    }
    env = environ(wsgi, headers)
    assert env["REMOTE_ADDR"] == "2001:db8:cafe::17"
    assert env["REMOTE_PORT"] == "4711"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "shop.example"
    sc = scope(asgi, headers)
    assert sc["client"] == ["2001:db8:cafe::17", 4711]
    assert sc["scheme"] == "https"
    assert sc["host"] == ["shop.example"]


def test_underscore_spelling_is_not_a_proxy_header(wsgi: Server) -> None:
    env = raw_environ(
        wsgi.port,
        b"GET /environ HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nConnection: close\r\n\r\n",
    )
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert "HTTP_X_FORWARDED_FOR" not in env


def test_forwarded_host_applies_over_http2(wsgi: Server, asgi: Server) -> None:
    env = environ(wsgi, XFF, http1=False, http2=True)
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["REMOTE_ADDR"] == "203.0.113.7"  # applied
    assert env["wsgi.url_scheme"] == "https"  # applied
    sc = scope(asgi, XFF, http1=False, http2=True)
    assert sc["host"] == ["public.example"]
    assert env["HTTP_HOST"] == "public.example"


# -- other trust settings ------------------------------------------------------------------------


def test_forwarded_allow_ips_environment_variable(serve: StartServer) -> None:
    server = serve(WSGI_APP, env={"FORWARDED_ALLOW_IPS": "127.0.0.1,1.2.3.0/24"})
    assert environ(server, {"X-Forwarded-For": "6.6.6.6, 1.2.3.4"})["REMOTE_ADDR"] == "6.6.6.6"
    # The flag wins over the environment.
    server = serve(WSGI_APP, "--forwarded-allow-ips", "10.0.0.0/8", env={"FORWARDED_ALLOW_IPS": "127.0.0.1"})
    assert environ(server, {"X-Forwarded-For": "6.6.6.6"})["REMOTE_ADDR"] == "127.0.0.1"


def unix_server(serve: StartServer, path: Path) -> Server:
    """A server on a Unix socket; ready once the supervisor has bound the socket (requests then
    wait in its backlog until the worker serves)."""
    server = serve(WSGI_APP, "--bind", f"unix:{path}", bind=False)
    deadline = time.monotonic() + 30
    while not path.exists():
        assert server.proc.poll() is None, server.log()
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    return server


def uds_environ(server: Server, path: Path, headers: dict[str, str] | None = None) -> dict:
    return environ(server, headers, base="http://rsgi", transport=httpx.HTTPTransport(uds=str(path)))


def test_unix_socket_peers_are_trusted(serve: StartServer, tmp_path: Path) -> None:
    path = tmp_path / "rsgi.sock"
    server = unix_server(serve, path)
    plain = uds_environ(server, path)
    assert plain["REMOTE_ADDR"] == ""
    assert plain["HTTP_HOST"] == "rsgi"
    assert plain["wsgi.url_scheme"] == "http"
    env = uds_environ(server, path, {**XFF, "X-Forwarded-For": "6.6.6.6, 1.2.3.4"})
    assert env["REMOTE_ADDR"] == "1.2.3.4"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "public.example"
    # No port of our own on a Unix socket: the forwarded one.
    assert env["SERVER_PORT"] == "443"


def test_access_log_shows_the_forwarded_client(serve: StartServer, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    server = serve(WSGI_APP, "--access-logfile", str(log), "--access-logformat", "%(h)s %(r)s")
    with httpx.Client(timeout=5) as client:
        client.get(server.url + "/forwarded", headers={"X-Forwarded-For": "6.6.6.6, 1.2.3.4"})
        client.get(server.url + "/direct")
    deadline = time.monotonic() + 10
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if any("/direct" in line for line in lines):
            break
        time.sleep(0.05)
    assert "1.2.3.4 GET /forwarded HTTP/1.1" in lines, lines
    assert "127.0.0.1 GET /direct HTTP/1.1" in lines, lines


def test_invalid_forwarded_allow_ips_stops_the_server(serve: StartServer) -> None:
    server = serve(WSGI_APP, "--forwarded-allow-ips", "127.0.0.1, nonsense", ready=False)
    code = server.wait(30)
    log = server.log()
    assert code != 0, log
    assert '"nonsense" is not an address or network' in log, log
