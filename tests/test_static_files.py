"""Static files answered by the core (`--static PREFIX=DIR`, `--static-django`,
`--static-max-age`), driven by real clients: httpx for ordinary requests, raw sockets wherever
the request target must reach the server exactly as written (path traversal, HEAD), curl for
one large download. The tree is built under a temporary directory at test time."""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import DJANGO_DIR, TESTS, Server, StartServer, have, running, wait_until

SECRET = b"TOP-SECRET-7f3a9c: this file sits next to the static root, never inside it\n"
CSS = b"body { color: #333; }\n"
HASHED_CSS = b"body { color: #444; } /* hashed */\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
UNKNOWN = b"\x00\x01\x02 some opaque bytes\n"
RANGE_DATA = bytes(range(100))  # N = 100
JS = b"console.log('identity bytes of app.js');\n" * 40
JS_BR = b"NOT-REALLY-BROTLI: the server never decodes this file\n"
BIG_SIZE = 5 * 1024 * 1024
HELLO = b"Hello, world!"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """base/secret.txt next to base/root (mounted at /static/), base/media (/media/) and
    base/nested (/static/special/, a mount inside another mount's prefix)."""
    base = tmp_path_factory.mktemp("static-tree")
    (base / "secret.txt").write_bytes(SECRET)
    root = base / "root"
    (root / "sub").mkdir(parents=True)
    (root / "special").mkdir()
    (root / "site.css").write_bytes(CSS)
    (root / "site.0123456789ab.css").write_bytes(HASHED_CSS)
    (root / "logo.png").write_bytes(PNG)
    (root / "data.zzqqxx").write_bytes(UNKNOWN)
    (root / "range.bin").write_bytes(RANGE_DATA)
    (root / "empty.txt").write_bytes(b"")
    (root / "a b.txt").write_bytes(b"space in the name\n")
    (root / "app.js").write_bytes(JS)
    (root / "app.js.gz").write_bytes(gzip.compress(JS))
    (root / "app.js.br").write_bytes(JS_BR)
    (root / ".hidden").write_bytes(SECRET)
    (root / "sub" / "inner.txt").write_bytes(b"inner\n")
    (root / "sub" / ".hidden").write_bytes(SECRET)
    (root / "special" / "which.txt").write_bytes(b"outer mount\n")
    (root / "big.bin").write_bytes(os.urandom(BIG_SIZE))
    (root / "link-out.txt").symlink_to(base / "secret.txt")
    (root / "link-dir").symlink_to(base, target_is_directory=True)
    (root / "link-in.css").symlink_to(root / "site.css")
    (root / "café.txt").write_bytes(b"non-ascii name\n")
    # A precompressed "sibling" that is a symlink to the secret outside the root.
    (root / "leak.js").write_bytes(b"leak.js identity bytes\n")
    (root / "leak.js.gz").symlink_to(base / "secret.txt")
    (root / "leak.js.br").symlink_to(base / "secret.txt")
    (base / "media").mkdir()
    (base / "media" / "m.txt").write_bytes(b"media file\n")
    (base / "nested").mkdir()
    (base / "nested" / "which.txt").write_bytes(b"inner mount\n")
    return base


@pytest.fixture(scope="module")
def server(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """apps.basic:hello answers 200 "Hello, world!" for every path: anything else under a mount
    came from the core. `/static/` is given before `/static/special/` on purpose."""
    flags = ["--static", f"/static/={tree / 'root'}", "--static", f"/media/={tree / 'media'}"]
    flags += ["--static", f"/static/special/={tree / 'nested'}"]
    with running("apps.basic:hello", *flags, log_dir=tmp_path_factory.mktemp("static-log")) as s:
        yield s


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


class Raw:
    """A response read off a raw socket: status, headers (lower-case names), body bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        head, sep, self.body = data.partition(b"\r\n\r\n")
        assert sep, f"no complete response head: {data[:500]!r}"
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()


def raw(port: int, target: bytes, method: bytes = b"GET", headers: bytes = b"") -> Raw:
    """One request on its own connection (Connection: close), read until the server closes."""
    import socket

    req = method + b" " + target + b" HTTP/1.1\r\nHost: localhost\r\n" + headers + b"Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(req)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return Raw(b"".join(chunks))


def get_raw(client: httpx.Client, path: str, **headers: str) -> tuple[httpx.Response, bytes]:
    """GET without httpx decoding any Content-Encoding: the bytes as sent."""
    with client.stream("GET", path, headers=headers) as r:
        return r, b"".join(r.iter_raw())


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


# --- serving a file ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "body", "content_type"),
    [
        ("site.css", CSS, "text/css; charset=utf-8"),
        ("logo.png", PNG, "image/png"),
        ("data.zzqqxx", UNKNOWN, "application/octet-stream"),
    ],
)
def test_file_is_served_with_its_headers(
    client: httpx.Client, tree: Path, name: str, body: bytes, content_type: str
) -> None:
    r = client.get(f"/static/{name}")
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["content-type"] == content_type
    assert r.headers["content-length"] == str(len(body))
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["cache-control"] == "public, max-age=60"
    assert re.fullmatch(r'"[^"]+"', r.headers["etag"]), r.headers["etag"]
    st = (tree / "root" / name).stat()
    assert r.headers["last-modified"] == http_date(int(st.st_mtime))
    assert "content-encoding" not in r.headers
    assert "vary" not in r.headers  # no precompressed siblings
    assert r.headers["server"] == "rsgi"


def test_hashed_name_is_immutable(client: httpx.Client) -> None:
    r = client.get("/static/site.0123456789ab.css")
    assert r.status_code == 200
    assert r.content == HASHED_CSS
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["content-type"] == "text/css; charset=utf-8"


def test_query_string_encoded_names_and_empty_files(client: httpx.Client) -> None:
    r = client.get("/static/site.css?v=42")
    assert (r.status_code, r.content) == (200, CSS)
    r = client.get("/static/a%20b.txt")
    assert (r.status_code, r.content) == (200, b"space in the name\n")
    r = client.get("/static/sub/inner.txt")
    assert (r.status_code, r.content) == (200, b"inner\n")
    r = client.get("/static/caf%C3%A9.txt")
    assert (r.status_code, r.content) == (200, b"non-ascii name\n")
    r = client.get("/static/empty.txt")
    assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"", "0")


def test_etag_is_stable_and_changes_with_the_file(client: httpx.Client, tree: Path) -> None:
    path = tree / "root" / "changing.txt"
    path.write_bytes(b"version one\n")
    first = client.get("/static/changing.txt")
    assert first.headers["etag"] == client.get("/static/changing.txt").headers["etag"]
    path.write_bytes(b"version two, longer\n")
    # Lookups are remembered for a second (src/static_files/cache.rs); the change shows after it.
    second = wait_until(
        lambda: (
            (r := client.get("/static/changing.txt", headers={"If-None-Match": first.headers["etag"]}))
            and r.status_code == 200
            and r
        ),
        3,
        "the changed file to be served",
    )
    assert second.content == b"version two, longer\n"
    assert second.headers["etag"] != first.headers["etag"]


def test_max_age_setting_and_prefix_without_slash(serve: StartServer, tree: Path) -> None:
    s = serve("apps.basic:hello", "--static", f"/assets={tree / 'root'}", "--static-max-age", "3600")
    r = httpx.get(s.url + "/assets/site.css")
    assert (r.status_code, r.content) == (200, CSS)
    assert r.headers["cache-control"] == "public, max-age=3600"
    r = httpx.get(s.url + "/assets/site.0123456789ab.css")
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    # The prefix is a directory: "/assets" itself and "/assetsX/..." belong to the app.
    assert httpx.get(s.url + "/assets").content == HELLO
    assert httpx.get(s.url + "/assetsx/site.css").content == HELLO


# --- conditional requests ---------------------------------------------------------------------


def validators(client: httpx.Client) -> tuple[str, str]:
    r = client.get("/static/site.css")
    assert r.status_code == 200
    return r.headers["etag"], r.headers["last-modified"]


@pytest.mark.parametrize(
    "if_none_match",
    ["{etag}", '"nope", {etag}, "other"', "W/{etag}", '"nope",W/{etag}', "*"],
)
def test_if_none_match_hit_is_304_without_body(client: httpx.Client, if_none_match: str) -> None:
    etag, last_modified = validators(client)
    r = client.get("/static/site.css", headers={"If-None-Match": if_none_match.format(etag=etag)})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == etag
    assert r.headers["last-modified"] == last_modified
    assert r.headers["cache-control"] == "public, max-age=60"


def test_304_on_the_wire_has_no_body(server: Server, client: httpx.Client) -> None:
    etag, _ = validators(client)
    for method in (b"GET", b"HEAD"):
        r = raw(server.port, b"/static/site.css", method=method, headers=b"If-None-Match: " + etag.encode() + b"\r\n")
        assert r.status == 304
        assert r.body == b""
        assert r.headers.get("content-length", "0") in ("0", str(len(CSS)))


def test_if_none_match_miss_is_200(client: httpx.Client) -> None:
    etag, _ = validators(client)
    for value in ['"nope"', 'W/"nope", "other"', etag[:-2] + '"']:
        r = client.get("/static/site.css", headers={"If-None-Match": value})
        assert (r.status_code, r.content) == (200, CSS), value


def test_if_modified_since(client: httpx.Client, tree: Path) -> None:
    _, last_modified = validators(client)
    mtime = int((tree / "root" / "site.css").stat().st_mtime)
    for since, status in [
        (last_modified, 304),
        (http_date(mtime + 86400), 304),
        (http_date(mtime - 1), 200),
        (http_date(mtime - 86400), 200),
        ("not a date", 200),
    ]:
        r = client.get("/static/site.css", headers={"If-Modified-Since": since})
        assert r.status_code == status, since
        assert r.content == (b"" if status == 304 else CSS)


def test_if_none_match_wins_over_if_modified_since(client: httpx.Client, tree: Path) -> None:
    etag, last_modified = validators(client)
    mtime = int((tree / "root" / "site.css").stat().st_mtime)
    # A miss on the ETag is a 200 even though If-Modified-Since alone would give a 304...
    r = client.get("/static/site.css", headers={"If-None-Match": '"nope"', "If-Modified-Since": last_modified})
    assert (r.status_code, r.content) == (200, CSS)
    # ...and a hit is a 304 even though If-Modified-Since alone would give a 200.
    r = client.get("/static/site.css", headers={"If-None-Match": etag, "If-Modified-Since": http_date(mtime - 86400)})
    assert r.status_code == 304


# --- ranges -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=-5", 95, 99),
        ("bytes=10-", 10, 99),
        ("bytes=99-99", 99, 99),
        ("bytes=90-500", 90, 99),
        ("bytes=-500", 0, 99),
        ("bytes=0-0", 0, 0),
    ],
)
def test_single_range_is_206(client: httpx.Client, header: str, start: int, end: int) -> None:
    r = client.get("/static/range.bin", headers={"Range": header})
    assert r.status_code == 206, header
    assert r.headers["content-range"] == f"bytes {start}-{end}/100"
    assert r.headers["content-length"] == str(end - start + 1)
    assert r.content == RANGE_DATA[start : end + 1]


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=200-300", "bytes=-0"])
def test_range_beyond_the_end_is_416(client: httpx.Client, header: str) -> None:
    r = client.get("/static/range.bin", headers={"Range": header})
    assert r.status_code == 416
    assert r.headers["content-range"] == "bytes */100"
    assert r.content == b""


def test_head_of_an_unsatisfiable_range(server: Server) -> None:
    r = raw(server.port, b"/static/range.bin", method=b"HEAD", headers=b"Range: bytes=100-\r\n")
    assert r.status == 416
    assert r.headers["content-range"] == "bytes */100"
    assert r.body == b""


@pytest.mark.parametrize("header", ["bytes=abc", "bytes=", "items=0-5", "bytes=5-2", "bytes=0-1, 5-6", "0-9"])
def test_malformed_or_multiple_ranges_get_the_whole_file(client: httpx.Client, header: str) -> None:
    r = client.get("/static/range.bin", headers={"Range": header})
    assert r.status_code == 200, header
    assert r.content == RANGE_DATA
    assert "content-range" not in r.headers


def test_if_range(client: httpx.Client) -> None:
    first = client.get("/static/range.bin")
    etag, last_modified = first.headers["etag"], first.headers["last-modified"]
    r = client.get("/static/range.bin", headers={"Range": "bytes=0-9", "If-Range": etag})
    assert (r.status_code, r.content) == (206, RANGE_DATA[:10])
    r = client.get("/static/range.bin", headers={"Range": "bytes=0-9", "If-Range": last_modified})
    assert (r.status_code, r.content) == (206, RANGE_DATA[:10])
    for stale in ['"0-0"', "Thu, 01 Jan 2004 00:00:00 GMT"]:
        r = client.get("/static/range.bin", headers={"Range": "bytes=0-9", "If-Range": stale})
        assert (r.status_code, r.content) == (200, RANGE_DATA), stale
        assert "content-range" not in r.headers


# --- precompressed siblings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "encoding", "body"),
    [
        ("br, gzip", "br", JS_BR),
        ("gzip, deflate, br", "br", JS_BR),
        ("gzip", "gzip", gzip.compress(JS)),
        ("br;q=0, gzip", "gzip", gzip.compress(JS)),
        ("*", "br", JS_BR),
        ("identity", None, JS),
        ("br;q=0, gzip;q=0", None, JS),
        ("deflate", None, JS),
    ],
)
def test_precompressed_sibling_is_chosen_by_accept_encoding(
    client: httpx.Client, tree: Path, accept: str, encoding: str | None, body: bytes
) -> None:
    r, data = get_raw(client, "/static/app.js", **{"Accept-Encoding": accept})
    assert r.status_code == 200
    assert r.headers.get("content-encoding") == encoding
    if encoding == "gzip":
        data_file = (tree / "root" / "app.js.gz").read_bytes()
        assert data == data_file and gzip.decompress(data) == JS
    else:
        assert data == body
    assert r.headers["content-length"] == str(len(data))
    assert r.headers["vary"] == "Accept-Encoding"
    assert r.headers["content-type"] == "text/javascript; charset=utf-8"


def test_precompressed_variants_have_distinct_etags(client: httpx.Client) -> None:
    tags = {
        enc: get_raw(client, "/static/app.js", **{"Accept-Encoding": enc})[0].headers["etag"]
        for enc in ("br", "gzip", "identity")
    }
    assert len(set(tags.values())) == 3, tags
    # The identity ETag does not validate the gzip variant.
    r, data = get_raw(client, "/static/app.js", **{"Accept-Encoding": "gzip", "If-None-Match": tags["identity"]})
    assert r.status_code == 200 and gzip.decompress(data) == JS
    r, _ = get_raw(client, "/static/app.js", **{"Accept-Encoding": "gzip", "If-None-Match": tags["gzip"]})
    assert r.status_code == 304


def test_no_accept_encoding_gets_identity(server: Server) -> None:
    r = raw(server.port, b"/static/app.js")
    assert r.status == 200
    assert "content-encoding" not in r.headers
    assert r.headers["vary"] == "Accept-Encoding"
    assert r.body == JS


def test_star_does_not_override_an_explicit_refusal(client: httpx.Client) -> None:
    r, data = get_raw(client, "/static/app.js", **{"Accept-Encoding": "br;q=0, *"})
    assert r.status_code == 200
    assert r.headers.get("content-encoding") == "gzip"
    assert gzip.decompress(data) == JS


@pytest.mark.parametrize("accept", ["gzip", "br"])
def test_precompressed_sibling_symlink_outside_the_root_is_not_served(server: Server, accept: str) -> None:
    r = raw(server.port, b"/static/leak.js", headers=b"Accept-Encoding: " + accept.encode() + b"\r\n")
    assert b"TOP-SECRET" not in r.data
    assert r.status == 200
    assert "content-encoding" not in r.headers
    assert r.body == b"leak.js identity bytes\n"


def test_range_request_gets_identity_bytes(client: httpx.Client) -> None:
    r, data = get_raw(client, "/static/app.js", **{"Accept-Encoding": "br, gzip", "Range": "bytes=0-19"})
    assert r.status_code == 206
    assert "content-encoding" not in r.headers
    assert r.headers["content-range"] == f"bytes 0-19/{len(JS)}"
    assert r.headers["vary"] == "Accept-Encoding"
    assert data == JS[:20]


# --- HEAD -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "size"), [("site.css", len(CSS)), ("big.bin", BIG_SIZE)])
def test_head_has_the_get_headers_and_no_body(server: Server, name: str, size: int) -> None:
    get = raw(server.port, f"/static/{name}".encode())
    head = raw(server.port, f"/static/{name}".encode(), method=b"HEAD")
    assert head.status == get.status == 200
    assert head.body == b"", head.body[:100]
    assert head.headers["content-length"] == str(size)
    drop = {"date"}
    assert {k: v for k, v in head.headers.items() if k not in drop} == {
        k: v for k, v in get.headers.items() if k not in drop
    }
    assert len(get.body) == size


# --- what is not served -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/static/", "/static/sub/", "/static/sub", "/static/special/", "/media/"])
def test_no_directory_listing(client: httpx.Client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert r.content != HELLO


@pytest.mark.parametrize(
    "path", ["/static/missing.css", "/static/sub/missing.txt", "/media/nope", "/static/site.css/x"]
)
def test_missing_file_is_404_from_the_core(client: httpx.Client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    # apps.basic:hello answers 200 "Hello, world!" to every path: the app was not called.
    assert r.content == b"404 Not Found\n"


TRAVERSALS = [
    b"/static/../secret.txt",
    b"/static/sub/../../secret.txt",
    b"/static/%2e%2e/secret.txt",
    b"/static/%2E%2E%2Fsecret.txt",
    b"/static/sub/..%2f..%2fsecret.txt",
    b"/static/sub%2f..%2f..%2fsecret.txt",
    b"/static/..%5csecret.txt",
    b"/static/..\\secret.txt",
    b"/static/%252e%252e%252fsecret.txt",
    b"/static/%00.txt",
    b"/static/site.css%00.png",
    b"/static/%ff.txt",
    b"/static/.hidden",
    b"/static/%2ehidden",
    b"/static/sub/.hidden",
    b"/static/./site.css",
    b"/static//site.css",
    b"/static/link-out.txt",
    b"/static/link-dir/secret.txt",
    b"/static//etc/passwd",
    b"/static/%2fetc%2fpasswd",
    b"/static/%2Fetc/passwd",
    b"/static/special/../../secret.txt",
    b"/media/..%2fsecret.txt",
    b"http://localhost/static/../secret.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS, ids=[t.decode() for t in TRAVERSALS])
def test_traversal_is_refused(server: Server, target: bytes) -> None:
    r = raw(server.port, target)
    assert SECRET not in r.data
    assert b"TOP-SECRET" not in r.data
    assert b"root:" not in r.data
    assert r.status in (400, 404), (target, r.status, r.data[:300])
    assert r.body != HELLO  # answered by the core, not handed to the app


def test_symlink_inside_the_root_is_served(client: httpx.Client) -> None:
    r = client.get("/static/link-in.css")
    assert (r.status_code, r.content) == (200, CSS)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405(client: httpx.Client, method: str) -> None:
    for path in ("/static/site.css", "/static/missing.css"):
        r = client.request(method, path, content=b"x" if method in ("POST", "PUT", "PATCH") else None)
        assert r.status_code == 405, (method, path)
        assert r.headers["allow"] == "GET, HEAD"
        assert r.content != HELLO


# --- mounts and the app -----------------------------------------------------------------------


def test_paths_outside_the_mounts_reach_the_app(client: httpx.Client) -> None:
    for path in ("/", "/staticx/site.css", "/static", "/Static/site.css", "/other/static/site.css"):
        r = client.get(path)
        assert (r.status_code, r.content) == (200, HELLO), path
    r = client.post("/anything", content=b"body")
    assert (r.status_code, r.content) == (200, HELLO)


def test_two_mounts_and_the_longest_prefix(client: httpx.Client) -> None:
    assert client.get("/media/m.txt").content == b"media file\n"
    assert client.get("/static/site.css").content == CSS
    # /static/special/ is its own mount (given after /static/): its directory wins.
    r = client.get("/static/special/which.txt")
    assert (r.status_code, r.content) == (200, b"inner mount\n")
    # A file of the inner mount is not reachable through the outer one's names and vice versa.
    assert client.get("/media/site.css").status_code == 404


def test_large_file_intact(client: httpx.Client, tree: Path) -> None:
    data = (tree / "root" / "big.bin").read_bytes()
    r = client.get("/static/big.bin", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200
    assert r.headers["content-length"] == str(BIG_SIZE)
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(data).hexdigest()
    start, end = 2_000_001, 3_500_000
    r = client.get("/static/big.bin", headers={"Range": f"bytes={start}-{end}"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes {start}-{end}/{BIG_SIZE}"
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(data[start : end + 1]).hexdigest()


@pytest.mark.skipif(not have("curl"), reason="curl not installed")
def test_large_file_with_curl(server: Server, tree: Path, tmp_path: Path) -> None:
    data = (tree / "root" / "big.bin").read_bytes()
    out = tmp_path / "big.out"
    url = server.url + "/static/big.bin"
    subprocess.run(["curl", "-sSf", "-o", str(out), url], check=True, timeout=30)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    subprocess.run(["curl", "-sSf", "-r", "4000000-", "-o", str(out), url], check=True, timeout=30)
    assert out.read_bytes() == data[4_000_000:]


# --- startup ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/static/=does-not-exist", "'does-not-exist' is not a directory"),
        ("/static/", "expected /PREFIX/=DIRECTORY"),
        ("static/=.", "expected /PREFIX/=DIRECTORY"),
    ],
)
def test_bad_mount_fails_at_startup(serve: StartServer, value: str, message: str) -> None:
    s = serve("apps.basic:hello", "--static", value, ready=False)
    assert s.wait(30) != 0
    log = s.log()
    assert message in log, log
    assert "listening on" not in log


def test_a_file_is_not_a_mount_directory(serve: StartServer, tree: Path) -> None:
    s = serve("apps.basic:hello", "--static", f"/static/={tree / 'secret.txt'}", ready=False)
    assert s.wait(30) != 0
    assert "is not a directory" in s.log()


def test_relative_directory_is_relative_to_chdir(serve: StartServer, tree: Path) -> None:
    s = serve("apps.basic:hello", "--chdir", str(tree), "--static", "/static/=root", env={"PYTHONPATH": str(TESTS)})
    r = httpx.get(s.url + "/static/site.css")
    assert (r.status_code, r.content) == (200, CSS)


def test_asgi_app(serve: StartServer, tree: Path) -> None:
    s = serve("apps.asgi_basic:hello", "--static", f"/static/={tree / 'root'}")
    with httpx.Client(base_url=s.url, timeout=10) as c:
        r = c.get("/static/site.css")
        assert (r.status_code, r.content) == (200, CSS)
        assert r.headers["content-type"] == "text/css; charset=utf-8"
        assert c.get("/static/nope.css").status_code == 404
        assert c.request("POST", "/static/site.css").status_code == 405
        r = c.get("/elsewhere")
        assert (r.status_code, r.content) == (200, b"Hello, ASGI!")


# --- Django -----------------------------------------------------------------------------------


def test_django_static(serve: StartServer, django_db: dict[str, str]) -> None:
    s = serve(
        "mysite.wsgi:application",
        "--chdir",
        str(DJANGO_DIR),
        "--static-django",
        env=django_db,
        ready_path="/hello",
    )
    with httpx.Client(base_url=s.url, timeout=10) as c:
        page = c.get("/")
        assert page.status_code == 200
        urls = re.findall(r'href="(/static/[^"]+\.css)"', page.text)
        assert urls, page.text[:2000]
        url = urls[0]
        assert re.search(r"\.[0-9a-f]{12}\.css$", url), url  # ManifestStaticFilesStorage name
        r = c.get(url)
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/css; charset=utf-8"
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.content == (DJANGO_DIR / "staticfiles" / url.removeprefix("/static/")).read_bytes()
        # The unhashed copy collectstatic also writes gets the short max-age.
        plain = re.sub(r"\.[0-9a-f]{12}\.css$", ".css", url)
        r = c.get(plain)
        assert (r.status_code, r.headers["cache-control"]) == (200, "public, max-age=60")
        assert c.get("/static/catalog/missing.css").status_code == 404
        assert c.get("/hello").text == "Hello, world!"


def test_django_static_root_missing_fails(serve: StartServer, django_db: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "no-staticfiles-here"
    (tmp_path / "rsgi_test_nostatic_settings.py").write_text(
        f"from mysite.settings import *  # noqa: F403\nSTATIC_ROOT = {str(missing)!r}\n"
    )
    env = {
        **django_db,
        "DJANGO_SETTINGS_MODULE": "rsgi_test_nostatic_settings",
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{TESTS}",
    }
    s = serve("mysite.wsgi:application", "--chdir", str(DJANGO_DIR), "--static-django", env=env, ready=False)
    assert s.wait(30) == 3
    log = s.log()
    assert "--static-django" in log and "STATIC_ROOT" in log, log
    assert str(missing) in log and "does not exist" in log, log
