"""The Django example project (examples/django_project) served through rsgi's ASGI bridge
(`mysite.asgi:application`): async and sync views, forms with CSRF, uploads, async streaming,
downloads, errors, the admin and concurrent clients. One server for the module."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import DJANGO_DIR, Server, csrf_token, login_admin, running, upload_file

DOWNLOAD_SHA256 = "466f5982673dd81e0800f4deab6708f2140190a2eec112765ccdba393ddacf9a"  # examples README


@pytest.fixture(scope="module")
def django_asgi(django_db: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log_dir = tmp_path_factory.mktemp("django-asgi")
    app = "mysite.asgi:application"
    with running(app, "--chdir", str(DJANGO_DIR), log_dir=log_dir, env=django_db, ready_path="/hello") as server:
        yield server


@pytest.fixture
def client(django_asgi: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=django_asgi.url, timeout=10) as c:
        yield c


def test_served_by_the_asgi_bridge(django_asgi: Server) -> None:
    log = django_asgi.log()
    assert "worker serving mysite.asgi:application on " in log
    # Django's ASGIHandler does not speak lifespan: auto mode carries on without it.
    assert "does not support ASGI lifespan; continuing without it" in log


def test_async_view(client: httpx.Client) -> None:
    r = client.get("/ahello")
    assert r.status_code == 200
    assert r.text == "Hello, async world!"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["content-length"] == str(len("Hello, async world!"))
    assert r.headers["server"] == "rsgi"


def test_async_orm_view(client: httpx.Client) -> None:
    r = client.get("/aitems")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    items = r.json()
    assert [item["id"] for item in items] == list(range(1, 21))
    assert [item["name"] for item in items] == [f"Item {n:02d}" for n in range(1, 21)]


def test_sync_view_under_asgi(client: httpx.Client) -> None:
    r = client.get("/hello")
    assert r.status_code == 200
    assert r.text == "Hello, world!"
    assert r.headers["content-length"] == "13"


def test_form_get_then_post_with_csrf(client: httpx.Client) -> None:
    page = client.get("/form")
    assert page.status_code == 200
    token = csrf_token(page.text)
    assert client.cookies.get("csrftoken"), "the GET should set the csrftoken cookie"
    r = client.post("/form", data={"name": "Ada", "message": "hi there", "csrfmiddlewaretoken": token})
    assert r.status_code == 200, r.text[:2000]
    assert "Thanks, Ada" in r.text


def test_form_post_without_token_is_403(django_asgi: Server) -> None:
    r = httpx.post(django_asgi.url + "/form", data={"name": "Eve", "message": "no token"}, timeout=10)
    assert r.status_code == 403
    assert "CSRF" in r.text


def test_upload_one_megabyte(client: httpx.Client) -> None:
    upload_file(client, os.urandom(1024 * 1024 + 123), "blob.bin", "a note")


def test_async_stream_arrives_incrementally(client: httpx.Client) -> None:
    arrivals: list[tuple[float, bytes]] = []
    with client.stream("GET", "/astream?delay=0.2") as r:
        assert r.status_code == 200
        assert r.headers["transfer-encoding"] == "chunked"
        started = time.monotonic()
        for chunk in r.iter_raw():
            arrivals.append((time.monotonic() - started, chunk))
    body = b"".join(c for _, c in arrivals)
    assert body == b"".join(b"chunk %d\n" % n for n in range(1, 6))
    first = next(t for t, c in arrivals if c)
    total = arrivals[-1][0]
    assert total >= 0.6, f"4 delays of 0.2 s should take about 0.8 s, took {total:.2f}"
    assert first < total - 0.4, f"the first chunk came at {first:.2f}s of {total:.2f}s: buffered?"


def test_download_binary(client: httpx.Client) -> None:
    r = client.get("/download")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert len(r.content) == 262144
    assert int(r.headers.get("content-length", len(r.content))) == 262144
    assert hashlib.sha256(r.content).hexdigest() == DOWNLOAD_SHA256


def test_error_is_500_with_traceback_in_server_log(django_asgi: Server, client: httpx.Client) -> None:
    r = client.get("/error")
    assert r.status_code == 500
    assert "boom from the example" not in r.text  # DEBUG is off: no traceback to the client
    log = django_asgi.wait_log("RuntimeError: boom from the example")
    assert "Traceback (most recent call last)" in log
    assert "Internal Server Error: /error" in log
    assert client.get("/ahello").status_code == 200
    assert "starting a new one" not in django_asgi.log()


def test_admin_login(client: httpx.Client) -> None:
    login_admin(client, "/admin/")  # redirected to the login page, its form posted back with the CSRF token
    index = client.get("/admin/")
    assert index.status_code == 200
    assert "Site administration" in index.text


def test_fifty_concurrent_requests(django_asgi: Server) -> None:
    paths = ["/ahello", "/aitems", "/hello", "/api/item/7", "/astream"] * 10

    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
        async with httpx.AsyncClient(base_url=django_asgi.url, timeout=30, limits=limits) as c:
            return await asyncio.gather(*(c.get(p) for p in paths))

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * 50
    for path, r in zip(paths, responses, strict=True):
        if path == "/ahello":
            assert r.text == "Hello, async world!"
        elif path == "/aitems":
            assert len(r.json()) == 20
        elif path == "/hello":
            assert r.text == "Hello, world!"
        elif path == "/api/item/7":
            assert r.json()["name"] == "Item 07"
        else:
            assert r.text == "".join(f"chunk {n}\n" for n in range(1, 6))
