"""--compress through real workers and real clients: curl --compressed (gzip and zstd, as its
build decodes them) and httpx (gzip) through WSGI and ASGI; a streamed response whose first chunk
the client decodes before the app sends the second; a body the app compressed itself passed on as
it is; Django's GZipMiddleware under --compress (never twice); the Django example's index page; and
the settings as the command line reads them. The codecs, q-values, every rule, the headers and
static files are tested in Rust against a stub app, in tests/compression.rs."""

from __future__ import annotations

import gzip
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apps.compress import CHUNK_ONE, CHUNK_TWO, PAGE
from conftest import DJANGO_DIR, Server, StartServer, have, running
from rsgi.cli import parse
from rsgi.config import ConfigError, build
from rsgi.config.core import COMPRESS_TYPES, CompressCore


@pytest.fixture(scope="module", params=["wsgi", "asgi"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    app = {"wsgi": "apps.compress:app", "asgi": "apps.compress:asgi_app"}[request.param]
    with running(app, "--compress", log_dir=tmp_path_factory.mktemp(f"compress-{request.param}")) as s:
        yield s


def curl_codings() -> list[str]:
    """The codings this machine's curl decodes (its `--compressed` offers exactly those)."""
    if not have("curl"):
        return []
    features = subprocess.run(["curl", "-V"], capture_output=True, text=True, check=True).stdout.lower()
    return [c for c, lib in (("gzip", "libz"), ("zstd", "zstd")) if lib in features]


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_curl_compressed(server: Server, coding: str, tmp_path: Path) -> None:
    if coding not in curl_codings():
        pytest.skip(f"this curl does not decode {coding}")
    headers, out = tmp_path / "headers", tmp_path / "out"
    cmd = ["curl", "-sSf", "--compressed", "-H", f"Accept-Encoding: {coding}", "-D", str(headers), "-o", str(out)]
    subprocess.run([*cmd, server.url + "/page"], check=True, timeout=30)
    head = headers.read_text().lower()
    assert f"content-encoding: {coding}" in head, head
    assert "vary: accept-encoding" in head, head
    assert out.read_bytes() == PAGE
    # What curl offers by itself (every coding it decodes, brotli too): zstd before gzip.
    cmd = ["curl", "-sSf", "--compressed", "-D", str(headers), "-o", str(out)]
    subprocess.run([*cmd, server.url + "/page"], check=True, timeout=30)
    best = next(c for c in ("zstd", "gzip") if c in curl_codings())
    assert f"content-encoding: {best}" in headers.read_text().lower()
    assert out.read_bytes() == PAGE


def test_httpx_gets_gzip(server: Server) -> None:
    r = httpx.get(server.url + "/page", headers={"Accept-Encoding": "gzip, deflate, br"}, timeout=10)
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["vary"] == "Accept-Encoding"
    assert int(r.headers["content-length"]) < len(PAGE) / 4  # compressed in memory, with its length
    assert r.content == PAGE
    # A client that takes nothing rsgi makes gets the page as the app made it.
    for accept in ("identity", "br"):
        r = httpx.get(server.url + "/page", headers={"Accept-Encoding": accept}, timeout=10)
        assert "content-encoding" not in r.headers
        assert r.content == PAGE


def test_a_streamed_chunk_is_decoded_before_the_next_is_sent(server: Server, tmp_path: Path) -> None:
    release = tmp_path / "release"
    url = f"{server.url}/stream?{release}"
    with httpx.stream("GET", url, headers={"Accept-Encoding": "gzip"}, timeout=10) as r:
        assert r.headers["content-encoding"] == "gzip"
        assert "content-length" not in r.headers
        raw = r.iter_raw()
        inflate = zlib.decompressobj(wbits=31)  # gzip
        first = b""
        while len(first) < len(CHUNK_ONE):
            # The app waits for `release` before its second chunk: this must come on its own.
            first += inflate.decompress(next(raw))
        assert first == CHUNK_ONE
        release.touch()
        rest = b"".join(inflate.decompress(part) for part in raw) + inflate.flush()
        assert inflate.eof, "the gzip stream has its trailer"
    assert first + rest == CHUNK_ONE + CHUNK_TWO


def test_what_the_app_compressed_is_passed_on_as_it_is(server: Server) -> None:
    for accept in ("gzip", "zstd", "gzip, br, zstd"):
        r = httpx.get(server.url + "/gzipped", headers={"Accept-Encoding": accept}, timeout=10)
        assert r.headers["content-encoding"] == "gzip"
        assert r.content == PAGE  # decoded once, by httpx
        assert int(r.headers["content-length"]) == len(gzip.compress(PAGE, mtime=0))


def test_django_gzip_middleware_is_never_doubled(serve: StartServer) -> None:
    s = serve("apps.django_gzip:application", "--compress", ready_path="/page")
    # GZipMiddleware compresses for gzip clients: rsgi leaves that response alone.
    r = httpx.get(s.url + "/page", headers={"Accept-Encoding": "gzip, br, zstd"}, timeout=10)
    assert r.headers["content-encoding"] == "gzip"
    assert r.content == PAGE
    # It does nothing for a client that takes only zstd: rsgi does (httpx cannot decode zstd).
    r = httpx.get(s.url + "/page", headers={"Accept-Encoding": "zstd"}, timeout=10)
    assert r.headers["content-encoding"] == "zstd"
    assert r.headers["vary"] == "Accept-Encoding"
    assert len(r.read()) < len(PAGE) / 4


def test_the_django_example_index_page(serve: StartServer, django_db: dict[str, str]) -> None:
    flags = ("mysite.wsgi:application", "--chdir", str(DJANGO_DIR), "--compress")
    s = serve(*flags, env=django_db, ready_path="/hello")
    plain = httpx.get(s.url + "/", headers={"Accept-Encoding": "identity"}, timeout=10)
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    r = httpx.get(s.url + "/", headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert r.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in r.headers["vary"]
    assert r.content == plain.content
    # "Hello, world!" is below --compress-min-size.
    assert "content-encoding" not in httpx.get(s.url + "/hello", headers={"Accept-Encoding": "gzip"}).headers


def test_the_django_example_catalog_page_with_and_without_gzip_middleware(
    serve: StartServer, django_db: dict[str, str]
) -> None:
    # The compression benchmark's page: rsgi's gzip, and the example's DJANGO_GZIP=1 switch
    # (GZipMiddleware first in MIDDLEWARE), which the benchmark's gunicorn row uses.
    flags = ("mysite.wsgi:application", "--chdir", str(DJANGO_DIR))
    s = serve(*flags, "--compress", env=django_db, ready_path="/hello")
    plain = httpx.get(s.url + "/page", headers={"Accept-Encoding": "identity"}, timeout=10)
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    assert len(plain.content) > 45_000
    r = httpx.get(s.url + "/page", headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert r.headers["content-encoding"] == "gzip"
    assert int(r.headers["content-length"]) < len(plain.content) / 4
    assert r.content == plain.content
    s = serve(*flags, env={**django_db, "DJANGO_GZIP": "1"}, ready_path="/hello")
    for path in ("/page", "/cached-page"):
        r = httpx.get(s.url + path, headers={"Accept-Encoding": "gzip"}, timeout=10)
        assert r.headers["content-encoding"] == "gzip", path  # Django's, not rsgi's (no --compress)
        assert r.content == plain.content
    assert "content-encoding" not in httpx.get(s.url + "/page", headers={"Accept-Encoding": "identity"}).headers


# -- the settings ----------------------------------------------------------------------------------


def compress(*argv: str, environ: dict[str, str] | None = None) -> CompressCore | None:
    flags, _ = parse(["apps.compress:app", *argv])
    return build(flags, environ or {}).core().compress


def test_settings_as_the_command_line_and_environment_give_them() -> None:
    assert compress() is None
    default = CompressCore(1024, COMPRESS_TYPES, 6, 3, ())
    assert compress("--compress") == default
    assert compress(environ={"RSGI_COMPRESS": "1"}) == default
    view = compress(
        "--compress",
        "--compress-level",
        "gzip=9",
        "--compress-level",
        "ZSTD=19",
        "--compress-types",
        "Text/HTML, application/json",
        "--compress-min-size",
        "0",
        "--compress-exclude-path",
        "/account/",
    )
    assert view == CompressCore(0, ("text/html", "application/json"), 9, 19, ("/account/",))
    assert compress("--compress", "--compress-level", "zstd=off").zstd is None
    for bad, message in [
        (["--compress-level", "gzip=10"], "gzip takes 1 to 9 or off"),
        (["--compress-level", "zstd=20"], "zstd takes 1 to 19 or off"),
        (["--compress-level", "deflate=1"], "is not CODEC=LEVEL"),
        (["--compress-level", "gzip"], "is not CODEC=LEVEL"),
        (["--compress-level", "gzip=off,zstd=off"], "turns every codec off"),
        (["--compress-level", "br=4"], "is not CODEC=LEVEL with CODEC gzip or zstd"),
        (["--compress-types", "text"], "is not type/subtype"),
        (["--compress-exclude-path", "account/"], "must start with /"),
        (["--compress-min-size", "-1"], "compress_min_size must be 0 or more"),
    ]:
        with pytest.raises(ConfigError, match=message):
            compress("--compress", *bad)
