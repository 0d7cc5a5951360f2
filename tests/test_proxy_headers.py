"""Proxy headers through the real server: `Forwarded` and `X-Forwarded-*` from trusted peers set
the client address, scheme, host and port that WSGI and ASGI apps (and the access log) see;
from untrusted peers, or with `--no-proxy-headers`, they are left alone.

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


def test_without_proxy_headers_the_connection_is_what_the_app_sees(wsgi: Server) -> None:
    env = environ(wsgi)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] != "0"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == f"127.0.0.1:{wsgi.port}"
    assert env["SERVER_PORT"] == str(wsgi.port)


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


def test_each_x_forwarded_header_alone(wsgi: Server) -> None:
    env = environ(wsgi, {"X-Forwarded-Proto": "https"})
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("127.0.0.1", "https")
    assert env["HTTP_HOST"] == f"127.0.0.1:{wsgi.port}"
    env = environ(wsgi, {"X-Forwarded-Host": "only-host.example"})
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"], env["HTTP_HOST"]) == ("127.0.0.1", "http", "only-host.example")
    env = environ(wsgi, {"X-Forwarded-Port": "8443"})
    assert (env["REMOTE_ADDR"], env["SERVER_PORT"]) == ("127.0.0.1", "8443")
    env = environ(wsgi, {"X-Forwarded-For": "2001:db8::5"})
    assert env["REMOTE_ADDR"] == "2001:db8::5"
    env = environ(wsgi, {"X-Forwarded-For": "198.51.100.4:5555"})
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("198.51.100.4", "5555")


def test_an_unparsable_forwarded_for_keeps_the_peer(wsgi: Server) -> None:
    env = environ(wsgi, {"X-Forwarded-For": "not-an-address", "X-Forwarded-Proto": "https"})
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "https"


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


def test_forwarded_chain_and_obfuscated_nodes(wsgi: Server) -> None:
    env = environ(wsgi, {"Forwarded": "for=198.51.100.9, for=192.0.2.60;proto=https"})
    assert env["REMOTE_ADDR"] == "192.0.2.60"
    assert env["wsgi.url_scheme"] == "https"
    env = environ(wsgi, {"Forwarded": "for=_hidden;proto=https"})
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "https"


def test_the_client_is_the_nearest_untrusted_address_in_the_chain(wsgi: Server, asgi: Server) -> None:
    # 6.6.6.6 could have been written by the client itself; 1.2.3.4 was added by our proxy.
    headers = {"X-Forwarded-For": "6.6.6.6, 1.2.3.4"}
    assert environ(wsgi, headers)["REMOTE_ADDR"] == "1.2.3.4"
    assert scope(asgi, headers)["client"][0] == "1.2.3.4"
    # Trusted hops on the right are skipped; two header lines are one list.
    env = environ(wsgi, httpx.Headers([("X-Forwarded-For", "6.6.6.6, 1.2.3.4"), ("X-Forwarded-For", "127.0.0.1")]))
    assert env["REMOTE_ADDR"] == "1.2.3.4"


def test_the_nearest_proxy_decides_the_scheme(wsgi: Server) -> None:
    env = environ(wsgi, {"X-Forwarded-Proto": "http, https"})
    assert env["wsgi.url_scheme"] == "https"


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


def test_forwarded_host_applies_to_absolute_form_requests(wsgi: Server) -> None:
    env = raw_environ(
        wsgi.port,
        b"GET http://backend.internal/environ HTTP/1.1\r\nHost: backend.internal\r\n"
        b"X-Forwarded-Host: public.example\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    )
    assert env["wsgi.url_scheme"] == "https"  # applied
    assert env["HTTP_HOST"] == "public.example"


# -- other trust settings ------------------------------------------------------------------------


def test_untrusted_peer_headers_are_ignored(serve: StartServer) -> None:
    server = serve(WSGI_APP, "--forwarded-allow-ips", "10.0.0.0/8")
    env = environ(server, {**XFF, "Forwarded": "for=198.51.100.1;proto=https;host=f.example"})
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == f"127.0.0.1:{server.port}"
    assert env["SERVER_PORT"] == str(server.port)
    # Left to the app, untouched.
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"
    assert env["HTTP_FORWARDED"] == "for=198.51.100.1;proto=https;host=f.example"


def test_untrusted_peer_headers_are_ignored_asgi(serve: StartServer) -> None:
    server = serve(ASGI_APP, "--forwarded-allow-ips", "10.0.0.0/8")
    sc = scope(server, XFF)
    assert sc["client"][0] == "127.0.0.1"
    assert sc["scheme"] == "http"
    assert sc["host"] == [f"127.0.0.1:{server.port}"]
    assert sc["server"] == ["127.0.0.1", server.port]


def test_no_proxy_headers(serve: StartServer) -> None:
    server = serve(WSGI_APP, "--no-proxy-headers")
    env = environ(server, {**XFF, "Forwarded": "for=198.51.100.1;proto=https"})
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == f"127.0.0.1:{server.port}"
    assert env["SERVER_PORT"] == str(server.port)


def test_trust_everyone(serve: StartServer) -> None:
    server = serve(WSGI_APP, "--forwarded-allow-ips", "*")
    # Every hop is trusted, so the leftmost address is the client.
    env = environ(server, {"X-Forwarded-For": "6.6.6.6, 1.2.3.4", "X-Forwarded-Proto": "https"})
    assert env["REMOTE_ADDR"] == "6.6.6.6"
    assert env["wsgi.url_scheme"] == "https"


def test_a_trusted_network_in_the_chain_is_skipped(serve: StartServer) -> None:
    server = serve(WSGI_APP, "--forwarded-allow-ips", "127.0.0.1, 1.2.3.0/24")
    env = environ(server, {"X-Forwarded-For": "6.6.6.6, 1.2.3.4"})
    assert env["REMOTE_ADDR"] == "6.6.6.6"


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


def test_x_forwarded_port_applies_over_a_unix_socket(serve: StartServer, tmp_path: Path) -> None:
    path = tmp_path / "rsgi.sock"
    server = unix_server(serve, path)
    env = uds_environ(server, path, XFF)
    assert env["REMOTE_ADDR"] == "203.0.113.7"  # applied
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
