"""TLS through the real server (rustls), with a throwaway CA from trustme: HTTPS over HTTP/1.1
and HTTP/2 by ALPN (httpx, curl), TLS versions, the scheme apps see, the ways to name the key,
client certificates, broken certificate files, plain HTTP on the TLS port, and wss://.

A TLS-only server does not answer the plain-HTTP readiness probe of `conftest.serve`, so servers
here start with `ready=False` and `wait_https` polls an HTTPS request until a deadline.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme
from apps.edge import pattern
from conftest import TESTS, Server, StartServer, base_env, free_port, have
from websockets.sync.client import connect as ws_connect

WSGI_APP = "apps.edge:app"
ASGI_APP = "apps.edge:asgi_app"

needs_curl = pytest.mark.skipif(not have("curl"), reason="curl not installed")


@dataclass
class Certs:
    ca: Path  # the CA certificate clients trust (and --ca-certs)
    chain: Path  # server certificate chain
    key: Path  # server private key
    combined: Path  # key + chain in one file
    client: Path  # client certificate + key, issued by the same CA
    stranger: Path  # client certificate + key from another CA

    def context(self, client_cert: Path | None = None, **versions: ssl.TLSVersion) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if client_cert is not None:
            ctx.load_cert_chain(str(client_cert))
        for name, value in versions.items():
            setattr(ctx, name, value)
        return ctx


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    out = Certs(d / "ca.pem", d / "chain.pem", d / "key.pem", d / "combined.pem", d / "client.pem", d / "stranger.pem")
    ca.cert_pem.write_to_path(str(out.ca))
    server.private_key_pem.write_to_path(str(out.key))
    chain = b"".join(blob.bytes() for blob in server.cert_chain_pems)
    out.chain.write_bytes(chain)
    out.combined.write_bytes(server.private_key_pem.bytes() + chain)
    client = ca.issue_cert("client@example.org", common_name="a client")
    out.client.write_bytes(client.private_key_and_cert_chain_pem.bytes())
    stranger = trustme.CA().issue_cert("mallory@example.org", common_name="a stranger")
    out.stranger.write_bytes(stranger.private_key_and_cert_chain_pem.bytes())
    return out


def https_url(server: Server, path: str = "/") -> str:
    return f"https://127.0.0.1:{server.port}{path}"


def wait_https(server: Server, ctx: ssl.SSLContext, timeout: float = 30.0) -> None:
    """Poll an HTTPS request until it is answered (the server is up), or fail with the log."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"rsgi exited with {server.proc.returncode}:\n{server.log()}")
        try:
            httpx.get(https_url(server), verify=ctx, timeout=2.0)
            return
        except httpx.HTTPError as e:
            last = e
            time.sleep(0.05)
    raise RuntimeError(f"rsgi did not answer HTTPS: {last}\n{server.log()}")


def start_tls(serve: StartServer, certs: Certs, app: str, *flags: str, ready_cert: Path | None = None) -> Server:
    server = serve(app, *flags, ready=False)
    wait_https(server, certs.context(ready_cert))
    return server


@pytest.fixture(scope="module")
def tls(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The WSGI app over TLS with --certfile and a separate --keyfile, `--http auto`."""
    yield from module_server(certs, tmp_path_factory, WSGI_APP)


@pytest.fixture(scope="module")
def tls_asgi(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from module_server(certs, tmp_path_factory, ASGI_APP)


def module_server(certs: Certs, tmp_path_factory: pytest.TempPathFactory, app: str) -> Iterator[Server]:
    port = free_port()
    args = [app, "--certfile", str(certs.chain), "--keyfile", str(certs.key), "--bind", f"127.0.0.1:{port}"]
    server = Server(args, TESTS, base_env(), tmp_path_factory.mktemp("rsgi-tls") / "rsgi.log", port)
    try:
        wait_https(server, certs.context())
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def tls_socket(port: int, ctx: ssl.SSLContext, hostname: str = "127.0.0.1") -> Iterator[ssl.SSLSocket]:
    """A raw TLS connection (handshake done) to the server."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=hostname) as s,
    ):
        yield s


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=20)


# -- HTTPS, ALPN, versions -----------------------------------------------------------------------


def test_https_over_http1_and_http2_by_alpn(tls: Server, certs: Certs) -> None:
    with httpx.Client(verify=certs.context(), timeout=10) as client:
        r1 = client.get(https_url(tls, "/environ"))
    with httpx.Client(verify=certs.context(), http2=True, timeout=10) as client:
        r2 = client.get(https_url(tls, "/environ"))
        big = client.get(https_url(tls, "/big"))
        echo = client.post(https_url(tls, "/echo"), content=pattern(200_000))
    assert (r1.status_code, r1.http_version) == (200, "HTTP/1.1")
    assert (r2.status_code, r2.http_version) == (200, "HTTP/2")
    assert r1.json()["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert r2.json()["SERVER_PROTOCOL"] == "HTTP/2"
    assert big.content == pattern(1 << 20)
    assert echo.content == pattern(200_000)


def test_wsgi_url_scheme_is_https(tls: Server, certs: Certs) -> None:
    for http2 in (False, True):
        with httpx.Client(verify=certs.context(), http2=http2, timeout=10) as client:
            env = client.get(https_url(tls, "/environ")).json()
        assert env["wsgi.url_scheme"] == "https"
        assert env["HTTP_HOST"] == f"127.0.0.1:{tls.port}"
        assert env["SERVER_PORT"] == str(tls.port)
        assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_asgi_scheme_is_https(tls_asgi: Server, certs: Certs) -> None:
    for http2, version in ((False, "1.1"), (True, "2")):
        with httpx.Client(verify=certs.context(), http2=http2, timeout=10) as client:
            scope = client.get(https_url(tls_asgi, "/scope")).json()
        assert scope["scheme"] == "https"
        assert scope["http_version"] == version
        assert scope["server"] == ["127.0.0.1", tls_asgi.port]


def test_client_without_alpn_gets_http1(tls: Server, certs: Certs) -> None:
    ctx = certs.context()
    with tls_socket(tls.port, ctx) as s:
        assert s.selected_alpn_protocol() is None
        s.sendall(b"GET /environ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]
    assert b'"wsgi.url_scheme": "https"' in data


@needs_curl
def test_curl_negotiates_http2(tls: Server, certs: Certs) -> None:
    out = curl("--cacert", str(certs.ca), "--http2", "-w", "\n%{http_version} %{http_code}", https_url(tls, "/x"))
    assert out.returncode == 0, out.stderr
    assert out.stdout == "app saw /x\n2 200"


@needs_curl
def test_tls_1_0_and_1_1_are_refused(tls: Server, certs: Certs) -> None:
    # The client is made willing to speak TLS 1.0/1.1 (OpenSSL 3 refuses them at its default
    # security level); the refusal must then come from the server, as an alert.
    out = curl(
        "--cacert", str(certs.ca), "--tlsv1.0", "--tls-max", "1.1", "--ciphers", "DEFAULT@SECLEVEL=0", https_url(tls)
    )
    assert out.returncode == 35, (out.returncode, out.stdout, out.stderr)
    assert "alert" in out.stderr, out.stderr
    assert out.stdout == ""


@needs_curl
@pytest.mark.parametrize(
    ("flags", "version"), [(("--tlsv1.2", "--tls-max", "1.2"), "TLSv1.2"), (("--tlsv1.3",), "TLSv1.3")]
)
def test_tls_1_2_and_1_3_work(tls: Server, certs: Certs, flags: tuple[str, ...], version: str) -> None:
    out = curl("--cacert", str(certs.ca), "-v", *flags, "-w", "\n%{http_code}", https_url(tls, "/v"))
    assert out.returncode == 0, out.stderr
    assert out.stdout == "app saw /v\n200"
    assert f"SSL connection using {version} " in out.stderr, out.stderr


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_python_ssl_negotiates_each_supported_version(tls: Server, certs: Certs, version: ssl.TLSVersion) -> None:
    ctx = certs.context(minimum_version=version, maximum_version=version)
    with tls_socket(tls.port, ctx, "localhost") as s:
        assert s.version() == version.name.replace("_", ".")


# -- certificate and key files -------------------------------------------------------------------


def test_key_and_chain_in_one_file(serve: StartServer, certs: Certs) -> None:
    server = start_tls(serve, certs, WSGI_APP, "--certfile", str(certs.combined))
    r = httpx.get(https_url(server, "/one-file"), verify=certs.context(), timeout=5)
    assert r.text == "app saw /one-file"


def test_uvicorn_ssl_spellings(serve: StartServer, certs: Certs) -> None:
    server = start_tls(serve, certs, WSGI_APP, "--ssl-certfile", str(certs.chain), "--ssl-keyfile", str(certs.key))
    with httpx.Client(verify=certs.context(), http2=True, timeout=5) as client:
        r = client.get(https_url(server, "/environ"))
    assert r.http_version == "HTTP/2"
    assert r.json()["wsgi.url_scheme"] == "https"


def test_http_1_over_tls_negotiates_http1_even_when_h2_is_offered(serve: StartServer, certs: Certs) -> None:
    server = start_tls(
        serve, certs, WSGI_APP, "--certfile", str(certs.chain), "--keyfile", str(certs.key), "--http", "1"
    )
    with httpx.Client(verify=certs.context(), http2=True, timeout=5) as client:
        r = client.get(https_url(server, "/environ"))
    assert r.http_version == "HTTP/1.1"
    assert r.json()["SERVER_PROTOCOL"] == "HTTP/1.1"
    ctx = certs.context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with tls_socket(server.port, ctx) as s:
        assert s.selected_alpn_protocol() == "http/1.1"


BROKEN_FILES = {
    "missing certfile": (["--certfile", "{d}/nope.pem"], "nope.pem"),
    "garbage certfile": (["--certfile", "{d}/garbage.pem", "--keyfile", "{key}"], "no certificate found"),
    "missing keyfile": (["--certfile", "{chain}", "--keyfile", "{d}/nokey.pem"], "nokey.pem"),
    "garbage keyfile": (["--certfile", "{chain}", "--keyfile", "{d}/garbage.pem"], "garbage.pem"),
    "chain without key": (["--certfile", "{chain}"], "keyfile"),
    "key of another cert": (["--certfile", "{chain}", "--keyfile", "{other_key}"], "do not fit together"),
}


@pytest.mark.parametrize("case", BROKEN_FILES)
def test_broken_certificate_files_stop_the_server(serve: StartServer, certs: Certs, tmp_path: Path, case: str) -> None:
    (tmp_path / "garbage.pem").write_text("this is not PEM\n")
    other_key = tmp_path / "other-key.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other_key))
    template, message = BROKEN_FILES[case]
    flags = [f.format(d=tmp_path, key=certs.key, chain=certs.chain, other_key=other_key) for f in template]
    server = serve(WSGI_APP, *flags, ready=False)
    code = server.wait(30)
    log = server.log()
    assert code != 0, log
    assert message in log, log


@pytest.mark.parametrize("case", ["missing certfile", "cert-reqs without ca-certs"])
def test_tls_config_errors_are_reported_at_startup(serve: StartServer, certs: Certs, tmp_path: Path, case: str) -> None:
    if case == "missing certfile":
        flags = ["--certfile", str(tmp_path / "nope.pem")]
    else:
        flags = ["--certfile", str(certs.chain), "--keyfile", str(certs.key), "--cert-reqs", "2"]
    server = serve(WSGI_APP, *flags, ready=False)
    assert server.wait(30) == 2
    log = server.log()
    assert "rsgi: error:" in log, log
    assert "Traceback" not in log, log


# -- client certificates -------------------------------------------------------------------------


# The server's alert, as OpenSSL names it on the client side.
NO_CERT = "CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE"
UNKNOWN_CA = "UNKNOWN_CA|BAD_CERTIFICATE"


def tls_get(server: Server, ctx: ssl.SSLContext) -> httpx.Response:
    with httpx.Client(verify=ctx, timeout=5) as client:
        return client.get(https_url(server, "/who"))


@pytest.mark.parametrize("tls_max", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_cert_reqs_2_requires_a_client_certificate_from_the_ca(
    serve: StartServer, certs: Certs, tls_max: ssl.TLSVersion
) -> None:
    flags = ["--certfile", str(certs.chain), "--keyfile", str(certs.key), "--ca-certs", str(certs.ca)]
    server = start_tls(serve, certs, WSGI_APP, *flags, "--cert-reqs", "2", ready_cert=certs.client)
    assert tls_get(server, certs.context(certs.client, maximum_version=tls_max)).text == "app saw /who"
    with pytest.raises(httpx.HTTPError, match=NO_CERT):
        tls_get(server, certs.context(maximum_version=tls_max))
    with pytest.raises(httpx.HTTPError, match=UNKNOWN_CA):
        tls_get(server, certs.context(certs.stranger, maximum_version=tls_max))
    assert server.proc.poll() is None


def test_cert_reqs_1_accepts_clients_with_and_without_a_certificate(serve: StartServer, certs: Certs) -> None:
    flags = ["--ssl-certfile", str(certs.chain), "--ssl-keyfile", str(certs.key), "--ssl-ca-certs", str(certs.ca)]
    server = start_tls(serve, certs, WSGI_APP, *flags, "--ssl-cert-reqs", "1")
    assert tls_get(server, certs.context()).text == "app saw /who"
    assert tls_get(server, certs.context(certs.client)).text == "app saw /who"
    # Optional, but checked when sent: a certificate from another CA is refused.
    with pytest.raises(httpx.HTTPError, match=UNKNOWN_CA):
        tls_get(server, certs.context(certs.stranger))


# -- not TLS on the TLS port ---------------------------------------------------------------------


def test_plain_http_to_the_tls_port_is_not_served(tls: Server, certs: Certs) -> None:
    with socket.create_connection(("127.0.0.1", tls.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    assert b"HTTP/1.1 200" not in data
    assert b"app saw" not in data
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls.port}/", timeout=5)
    # ... and the server keeps serving HTTPS.
    assert httpx.get(https_url(tls, "/after"), verify=certs.context(), timeout=5).text == "app saw /after"


# -- WebSocket over TLS --------------------------------------------------------------------------


def test_wss_echo(tls_asgi: Server, certs: Certs) -> None:
    url = f"wss://127.0.0.1:{tls_asgi.port}/echo"
    with ws_connect(url, ssl=certs.context(), proxy=None, compression=None, open_timeout=5) as ws:
        assert ws.response.headers["x-accepted"] == "yes"
        ws.send("hello over TLS")
        assert ws.recv(timeout=5) == "hello over TLS"
        payload = pattern(100_000)
        ws.send(payload)
        assert ws.recv(timeout=5) == payload
