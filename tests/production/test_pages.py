"""The example project on Postgres and Redis under rsgi with two workers, three ways: WSGI
(`mysite.wsgi:application`), ASGI (`mysite.asgi:application`) and both in one process
(`--django mysite --asgi-path /events/`, as the Docker image runs it). Pages and the ORM on
Postgres, admin login (CSRF, sessions in Postgres, across workers), a 20 MB multipart upload,
StreamingHttpResponse, FileResponse and the static files served by the core."""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from conftest import ADMIN_PASSWORD, ADMIN_USER, Server, login_admin, read_stream, upload_file

from .conftest import DB_NAME, DB_USER, Postgres

DOWNLOAD_SHA256 = "466f5982673dd81e0800f4deab6708f2140190a2eec112765ccdba393ddacf9a"  # examples README
SERVERS = ["wsgi_server", "asgi_server", "dual_server"]
# Paths Django serves through WSGI in the WSGI and --django servers (plain HTTP, not /events/).
WSGI_SIDE = ["wsgi_server", "dual_server"]


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> Server:
    return request.getfixturevalue(request.param)


@pytest.fixture
def fresh_connections(server: Server) -> Iterator[httpx.Client]:
    """A client that opens a new connection per request, so requests land on either worker."""
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=server.url, timeout=20, limits=limits) as client:
        yield client


def test_orm_pages_read_postgres(server: Server, postgres: Postgres) -> None:
    with httpx.Client(base_url=server.url, timeout=20) as c:
        for path in ("/items", "/aitems"):  # the sync and the async ORM
            r = c.get(path)
            assert r.status_code == 200, (path, r.text[:2000])
            items = r.json()
            assert [item["id"] for item in items] == list(range(1, 21)), path
            assert [item["name"] for item in items] == [f"Item {n:02d}" for n in range(1, 21)], path
            assert items[0]["price"] == "1.99"

        # A row written straight into Postgres is what the server reads: it is not on SQLite.
        name = f"psql {uuid.uuid4().hex[:12]}"
        [(pk,)] = postgres.query(
            "INSERT INTO catalog_item (name, price, created, description) VALUES (%s, 4.50, now(), '') RETURNING id",
            name,
        )
        try:
            r = c.get(f"/api/item/{pk}")
            assert r.status_code == 200, r.text[:2000]
            assert r.json()["name"] == name
            assert r.json()["price"] == "4.50"
        finally:
            postgres.query("DELETE FROM catalog_item WHERE id = %s RETURNING id", pk)
        assert c.get(f"/api/item/{pk}").status_code == 404


def test_hello_and_index(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=20) as c:
        r = c.get("/hello")
        assert (r.status_code, r.text, r.headers["server"]) == (200, "Hello, world!", "rsgi")
        assert c.get("/ahello").text == "Hello, async world!"
        index = c.get("/")
        assert index.status_code == 200
        assert 'href="/events/?count=3&interval=0.2"' in index.text


@pytest.mark.parametrize("server", WSGI_SIDE, indirect=True)
def test_static_files_come_from_the_core(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=20) as c:
        # The index links the hashed name collectstatic wrote (ManifestStaticFilesStorage).
        match = re.search(r'href="(/static/catalog/site\.[0-9a-f]{12}\.css)"', c.get("/").text)
        assert match, "the index does not link the hashed stylesheet"
        css = c.get(match.group(1))
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        assert "immutable" in css.headers["cache-control"]
        assert css.headers.get("etag")
        # The core answered, not Django: Django's middleware puts X-Frame-Options on every response.
        assert "x-frame-options" not in css.headers
        assert "x-frame-options" in c.get("/hello").headers
        # A missing file under the mount is the core's 404 too, not a Django page.
        missing = c.get("/static/catalog/missing.css")
        assert missing.status_code == 404
        assert "x-frame-options" not in missing.headers


def test_admin_login_with_csrf_and_a_session_in_postgres(
    server: Server, fresh_connections: httpx.Client, postgres: Postgres
) -> None:
    c = fresh_connections
    # Without the CSRF token the login is refused before the password is even looked at.
    form = {"username": ADMIN_USER, "password": ADMIN_PASSWORD}
    assert c.post("/admin/login/", data=form).status_code == 403

    # With it (the changelist redirects to the login page, whose form carries the token) it succeeds.
    session_key = login_admin(c)
    # The session lives in Postgres, so whichever worker takes the next connection knows it.
    assert postgres.query("SELECT count(*) FROM django_session WHERE session_key = %s", session_key) == [(1,)]
    for _ in range(4):
        listing = c.get("/admin/catalog/item/")
        assert listing.status_code == 200
        assert "50 items" in listing.text
        assert "Item 50" in listing.text


@pytest.mark.parametrize("server", ["wsgi_server", "asgi_server"], indirect=True)
def test_twenty_megabyte_multipart_upload(server: Server) -> None:
    # 20 MiB: under rsgi's --max-body-size (50 MiB). Django keeps file parts over
    # FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB) in a temp file, and DATA_UPLOAD_MAX_MEMORY_SIZE only
    # counts the other fields, so no setting had to change for this.
    with httpx.Client(base_url=server.url, timeout=60) as c:
        upload_file(c, os.urandom(20 * 1024 * 1024 + 17), "big.bin", "twenty megabytes")


@pytest.mark.parametrize(
    ("server", "path"),
    [("wsgi_server", "/stream"), ("dual_server", "/stream"), ("asgi_server", "/astream")],
    indirect=["server"],
)
def test_streaming_http_response_arrives_chunk_by_chunk(server: Server, path: str) -> None:
    # A sync iterator streams under WSGI; under ASGI Django buffers it, so ASGI gets the async twin.
    with httpx.Client(base_url=server.url, timeout=20) as c:
        body, first, total = read_stream(c, f"{path}?delay=0.3")
    assert body == b"".join(b"chunk %d\n" % n for n in range(1, 6))
    assert total >= 1.0, f"4 delays of 0.3 s took {total:.2f}s"
    assert first < total - 0.6, f"the first chunk came at {first:.2f}s of {total:.2f}s: buffered"


def test_file_response(server: Server) -> None:
    # Through WSGI, Django's FileResponse hands the file to wsgi.file_wrapper and the core sends it.
    with httpx.Client(base_url=server.url, timeout=20) as c:
        r = c.get("/download")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-length"] == "262144"
    assert 'filename="sample.bin"' in r.headers["content-disposition"]
    assert hashlib.sha256(r.content).hexdigest() == DOWNLOAD_SHA256


def test_asgi_requests_reuse_database_connections(asgi_server: Server, postgres: Postgres) -> None:
    """With CONN_MAX_AGE=60 under ASGI, the same Postgres sessions serve request after request:
    rsgi runs each request's ORM calls on a reused thread (asgiref alone starts a new thread, and
    so a new connection, per request)."""

    def backends() -> set[int]:
        rows = postgres.query("SELECT pid FROM pg_stat_activity WHERE usename = %s AND datname = %s", DB_USER, DB_NAME)
        return {pid for (pid,) in rows}

    with httpx.Client(base_url=asgi_server.url, timeout=20) as c:
        for _ in range(20):
            assert c.get("/aitems").status_code == 200
        first = backends()
        for _ in range(20):
            assert c.get("/aitems").status_code == 200
        second = backends()
    # The package's other servers keep sessions of their own (same role), idle meanwhile. A
    # request can start before the previous one has handed its thread back (Django's last sync
    # call runs after the response is sent), so the pool may lend a second or third thread, each
    # with its own session; without reuse, 20 requests would open 20.
    assert first, "no Postgres session is open after 20 requests with CONN_MAX_AGE=60"
    assert len(second - first) <= 2, (first, second)
    assert first <= second, "a kept session was closed"
