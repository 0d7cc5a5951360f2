"""`--proxy-protocol` behind a real HAProxy (Debian's `haproxy`), started by each test on free
loopback ports in TCP mode with two frontends: one whose backend line says `send-proxy` (v1), one
`send-proxy-v2`. Clients connect to HAProxy from 127.0.0.2, HAProxy connects to rsgi from
127.0.0.1, so the address the app sees tells the header's client from the socket peer.

Checked here: REMOTE_ADDR/REMOTE_PORT (WSGI) and the scope's client (ASGI) through both
versions, the access log, TLS through HAProxy (the header comes before the handshake) with HTTP/2
by ALPN, h2c, and a connection straight to rsgi without a header: closed, unanswered, never in
the app, counted in `rsgi_requests_refused_total{reason="proxy_protocol"}`. The header parser's
cases (LOCAL, UNKNOWN, malformed, truncated, untrusted peers, split and slow headers) are
tests/proxy_protocol.rs, in Rust against a stub app.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from conftest import Server, StartServer, free_port, wait_until
from production.conftest import unavailable
from test_metrics import scrape_until, value

WSGI_APP = "apps.edge:app"
ASGI_APP = "apps.edge:asgi_app"
CLIENT_IP = "127.0.0.2"  # where clients connect from; HAProxy reaches rsgi from 127.0.0.1


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if found is None:
        unavailable("haproxy is not installed (apt-get install haproxy)")
    return found


@contextlib.contextmanager
def haproxy(backend_port: int, tmp_path: Path) -> Iterator[dict[str, int]]:
    """HAProxy in TCP mode in front of rsgi on `backend_port`: {"v1": port, "v2": port}."""
    binary = haproxy_binary()
    ports = {"v1": free_port(), "v2": free_port()}
    sections = "".join(
        f"frontend fe_{v}\n    bind 127.0.0.1:{port}\n    default_backend be_{v}\n"
        f"backend be_{v}\n    server rsgi 127.0.0.1:{backend_port} {send}\n"
        for (v, port), send in zip(ports.items(), ("send-proxy", "send-proxy-v2"), strict=True)
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "global\n    maxconn 256\n"
        "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n" + sections
    )
    log = open(tmp_path / "haproxy.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:

        def listening() -> bool | None:
            if proc.poll() is not None:
                raise RuntimeError(f"haproxy exited: {(tmp_path / 'haproxy.log').read_text()}")
            for port in ports.values():
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) != 0:
                        return None
            return True

        wait_until(listening, 10, "haproxy listening")
        yield ports
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def client(**kwargs) -> httpx.Client:
    """An httpx client whose connections come from CLIENT_IP."""
    transport_args = {k: kwargs.pop(k) for k in ("http1", "http2", "verify") if k in kwargs}
    transport = httpx.HTTPTransport(local_address=CLIENT_IP, retries=0, **transport_args)
    return httpx.Client(transport=transport, timeout=5, **kwargs)


def wait_through(url: str, server: Server, **kwargs) -> None:
    """Poll `url` (through HAProxy) until rsgi answers it."""

    def answered() -> bool | None:
        if server.proc.poll() is not None:
            raise RuntimeError(f"rsgi exited:\n{server.log()}")
        try:
            with client(**kwargs) as c:
                c.get(url)
            return True
        except httpx.HTTPError:
            return None

    wait_until(answered, 30, f"rsgi answering {url} through haproxy")


def start(serve: StartServer, tmp_path: Path, app: str, *flags: str) -> Server:
    return serve(app, "--proxy-protocol", *flags, env={"RSGI_TEST_CALLS": str(tmp_path / "calls")}, ready=False)


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().split() if path.exists() else []


def test_wsgi_sees_the_client_through_v1_and_v2_and_raw_connections_are_refused(
    serve: StartServer, tmp_path: Path
) -> None:
    metrics = free_port()
    server = start(
        serve,
        tmp_path,
        WSGI_APP,
        "--access-logfile",
        str(tmp_path / "access.log"),
        "--metrics-bind",
        f"127.0.0.1:{metrics}",
    )
    with haproxy(server.port, tmp_path) as ports:
        wait_through(f"http://127.0.0.1:{ports['v1']}/ready", server)
        for version, port in ports.items():
            with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(CLIENT_IP, 0)) as s:
                local_port = s.getsockname()[1]
                s.sendall(b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = b"".join(iter(lambda: s.recv(65536), b""))
            environ = json.loads(answer.partition(b"\r\n\r\n")[2])
            assert environ["REMOTE_ADDR"] == CLIENT_IP, (version, environ)
            assert environ["REMOTE_PORT"] == str(local_port), (version, environ)
        wait_until(
            lambda: CLIENT_IP in (tmp_path / "access.log").read_text() or None, 5, "the access log names the client"
        )
        assert all(line.startswith(CLIENT_IP) for line in (tmp_path / "access.log").read_text().splitlines())

        # Straight to rsgi, without a header: closed with no answer, never in the app, counted.
        for request in (b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
                s.sendall(request)
                assert s.recv(1024) == b""
        assert "/never" not in calls(tmp_path)
        scrape_until(
            metrics,
            lambda m: value(m, "rsgi_requests_refused_total", reason="proxy_protocol") >= 2,
            "proxy_protocol refusals counted",
        )
    assert "panicked" not in server.log()


def test_asgi_scope_client_through_v1_and_v2(serve: StartServer, tmp_path: Path) -> None:
    server = start(serve, tmp_path, ASGI_APP)
    with haproxy(server.port, tmp_path) as ports:
        wait_through(f"http://127.0.0.1:{ports['v2']}/ready", server)
        for port in ports.values():
            with client() as c:
                scope = c.get(f"http://127.0.0.1:{port}/scope").json()
            assert scope["client"][0] == CLIENT_IP, scope
            assert scope["client"][1] != 0


def test_h2c_behind_haproxy(serve: StartServer, tmp_path: Path) -> None:
    server = start(serve, tmp_path, WSGI_APP)
    with haproxy(server.port, tmp_path) as ports:
        wait_through(f"http://127.0.0.1:{ports['v2']}/ready", server)
        for port in ports.values():
            with client(http1=False, http2=True) as c:
                r = c.get(f"http://127.0.0.1:{port}/environ")
            assert r.http_version == "HTTP/2"
            assert r.json()["REMOTE_ADDR"] == CLIENT_IP


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path, Path]:
    d = tmp_path_factory.mktemp("pp-certs")
    authority = trustme.CA()
    cert = authority.issue_cert("127.0.0.1", "localhost")
    chain, key = d / "chain.pem", d / "key.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    return authority, chain, key


def test_tls_behind_haproxy_with_http2(serve: StartServer, tmp_path: Path, ca: tuple[trustme.CA, Path, Path]) -> None:
    authority, chain, key = ca
    server = start(serve, tmp_path, WSGI_APP, "--certfile", str(chain), "--keyfile", str(key))
    verify = ssl.create_default_context()
    authority.configure_trust(verify)
    with haproxy(server.port, tmp_path) as ports:
        wait_through(f"https://127.0.0.1:{ports['v1']}/ready", server, verify=verify)
        for port in ports.values():
            for http2 in (False, True):
                with client(verify=verify, http2=http2) as c:
                    r = c.get(f"https://127.0.0.1:{port}/environ")
                assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
                environ = r.json()
                assert environ["REMOTE_ADDR"] == CLIENT_IP
                assert environ["wsgi.url_scheme"] == "https"
        # TLS straight to rsgi, without a header: the ClientHello is refused, no handshake.
        start_t = time.monotonic()
        with pytest.raises(httpx.HTTPError), client(verify=verify) as c:
            c.get(f"https://127.0.0.1:{server.port}/never")
        assert time.monotonic() - start_t < 3
    assert "/never" not in calls(tmp_path)
