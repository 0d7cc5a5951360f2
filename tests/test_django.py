"""The Django example project (examples/django_project) served by rsgi through each interface, driven by
real clients: httpx (sync and async), raw sockets and curl. Pages, sync and async views, the ORM, forms
with CSRF, uploads, chunked request bodies, streaming, downloads, errors, the admin and concurrent clients.

Every test runs once per interface (one server for each, for the whole module), unless it is marked
`@only(...)` with the interfaces it makes sense for:

- `wsgi`: `mysite.wsgi:application`, two workers.
- `asgi`: `mysite.asgi:application` (Django's ASGIHandler behind Channels' ProtocolTypeRouter).
- `dual`: `--django mysite --asgi-path /astream`: HTTP through WSGI, except the async stream /astream
  through ASGI, in one process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import httpx
import pytest
from conftest import (
    ADMIN_USER,
    DJANGO_DIR,
    Server,
    csrf_token,
    have,
    login_admin,
    raw_request,
    running,
    upload_file,
)

DOWNLOAD_SHA256 = "466f5982673dd81e0800f4deab6708f2140190a2eec112765ccdba393ddacf9a"  # examples README
NO_LIFESPAN = "does not support ASGI lifespan; continuing without it"
F = TypeVar("F", bound=Callable[..., None])


@dataclass(frozen=True)
class Interface:
    """How the example is started, and what its workers log once they serve."""

    flags: tuple[str, ...]
    serving: tuple[str, ...]


INTERFACES = {
    "wsgi": Interface(("mysite.wsgi:application", "--workers", "2"), ("serving mysite.wsgi:application (1 thread)",)),
    # Django's ASGIHandler does not speak lifespan: auto mode carries on without it.
    "asgi": Interface(("mysite.asgi:application",), ("worker serving mysite.asgi:application on ", NO_LIFESPAN)),
    "dual": Interface(
        ("--django", "mysite", "--asgi-path", "/astream"),
        (
            "worker serving mysite.wsgi:application (WSGI, 1 thread) and mysite.asgi:application (ASGI, websockets, "
            "/astream) on ",
            NO_LIFESPAN,
        ),
    ),
}


def only(*interfaces: str) -> Callable[[F], F]:
    """Run the test against these interfaces only (unmarked tests run against every one)."""
    assert set(interfaces) <= set(INTERFACES), interfaces

    def mark(test: F) -> F:
        test.interfaces = interfaces  # type: ignore[attr-defined]
        return test

    return mark


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Module scope: pytest orders the tests by interface, so each server starts once.
    if "interface" in metafunc.fixturenames:
        names = getattr(metafunc.function, "interfaces", tuple(INTERFACES))
        metafunc.parametrize("interface", names, scope="module")


@pytest.fixture(scope="module")
def django(interface: str, django_db: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log_dir = tmp_path_factory.mktemp(f"django-{interface}")
    flags = (*INTERFACES[interface].flags, "--chdir", str(DJANGO_DIR))
    with running(*flags, log_dir=log_dir, env=django_db, ready_path="/hello") as server:
        yield server


@pytest.fixture
def client(django: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=django.url, timeout=10) as c:
        yield c


def test_served_by_the_interface_asked_for(django: Server, interface: str) -> None:
    for line in INTERFACES[interface].serving:
        assert line in django.wait_log(line)
    if interface == "wsgi":
        assert NO_LIFESPAN not in django.log()  # no ASGI app, so no lifespan to try


def test_index_links_to_every_page(client: httpx.Client) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    links = set(re.findall(r'href="([^"]+)"', r.text))
    expected = {"/hello", "/items", "/api/item/1", "/form", "/upload", "/echo", "/download", "/headers", "/error"}
    expected |= {"/stream?delay=0.1", "/admin/"}
    assert expected <= links, links
    # Every linked page that should work, works (the error page is checked on its own).
    for href in sorted(links - {"/error"}):
        if href.startswith("/static/"):
            continue  # DEBUG is off: static files are the front server's job
        page = client.get(href)
        assert page.status_code in (200, 302), (href, page.status_code)
        if page.status_code == 302:
            assert href == "/admin/" and "/admin/login/" in page.headers["location"]


def test_hello(client: httpx.Client) -> None:
    r = client.get("/hello")
    assert r.status_code == 200
    assert r.text == "Hello, world!"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["content-length"] == "13"
    assert r.headers["server"] == "rsgi"


def test_async_view(client: httpx.Client) -> None:
    # Through WSGI, Django runs the async view itself (async_to_sync).
    r = client.get("/ahello")
    assert r.status_code == 200
    assert r.text == "Hello, async world!"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["content-length"] == str(len("Hello, async world!"))
    assert r.headers["server"] == "rsgi"


def test_head_hello_has_no_body(django: Server) -> None:
    assert django.port is not None
    raw = raw_request(django.port, b"HEAD /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, raw
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"content-type: text/plain; charset=utf-8" in head.lower()
    assert body == b"", f"HEAD response carried a body: {body[:100]!r}"


def test_items_json(client: httpx.Client) -> None:
    r = client.get("/items")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    items = r.json()
    assert len(items) == 20
    assert [item["id"] for item in items] == list(range(1, 21))
    assert [item["name"] for item in items] == [f"Item {n:02d}" for n in range(1, 21)]
    assert set(items[0]) == {"id", "name", "price", "created"}


def test_async_orm_view(client: httpx.Client) -> None:
    r = client.get("/aitems")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    items = r.json()
    assert [item["id"] for item in items] == list(range(1, 21))
    assert [item["name"] for item in items] == [f"Item {n:02d}" for n in range(1, 21)]


def test_item_detail_and_404(client: httpx.Client) -> None:
    r = client.get("/api/item/1")
    assert r.status_code == 200
    assert r.json()["id"] == 1
    assert r.json()["name"] == "Item 01"
    missing = client.get("/api/item/99999")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not found", "id": 99999}


def test_form_get_then_post_with_csrf(client: httpx.Client) -> None:
    page = client.get("/form")
    assert page.status_code == 200
    token = csrf_token(page.text)
    assert client.cookies.get("csrftoken"), "the GET should set the csrftoken cookie"
    r = client.post("/form", data={"name": "Ada", "message": "hi there", "csrfmiddlewaretoken": token})
    assert r.status_code == 200, r.text[:2000]
    assert "Thanks, Ada" in r.text


def test_form_invalid_post_is_400(client: httpx.Client) -> None:
    token = csrf_token(client.get("/form").text)
    r = client.post("/form", data={"name": "", "message": "x", "csrfmiddlewaretoken": token})
    assert r.status_code == 400
    assert "Thanks" not in r.text


def test_form_post_without_token_is_403(django: Server) -> None:
    r = httpx.post(django.url + "/form", data={"name": "Eve", "message": "no token"}, timeout=10)
    assert r.status_code == 403
    assert "CSRF" in r.text


def test_upload_one_megabyte(client: httpx.Client) -> None:
    upload_file(client, os.urandom(1024 * 1024 + 123), "blob.bin", "a note")


def test_echo_chunked_request_body(client: httpx.Client) -> None:
    parts = [os.urandom(n) for n in (1, 100, 65536, 7, 200_000, 3000)]

    def body() -> Iterator[bytes]:
        yield from parts

    r = client.post("/echo", content=body(), headers={"Content-Type": "application/x-test"})
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in r.request.headers
    assert r.status_code == 200
    whole = b"".join(parts)
    assert r.json() == {
        "method": "POST",
        "content_type": "application/x-test",
        "length": len(whole),
        "sha256": hashlib.sha256(whole).hexdigest(),
    }


def assert_five_chunks_arrive_incrementally(client: httpx.Client, path: str) -> None:
    """`path` (?delay=0.2) sends its five chunks as they are produced, not all at the end."""
    arrivals: list[tuple[float, bytes]] = []
    with client.stream("GET", path) as r:
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


@only("wsgi", "dual")  # Django's ASGI handler collects a sync iterator before sending it
def test_stream_five_chunks_arrive_incrementally(client: httpx.Client) -> None:
    assert_five_chunks_arrive_incrementally(client, "/stream?delay=0.2")


@only("asgi", "dual")  # Django's WSGI handler collects an async iterator; dual sends /astream to ASGI
def test_async_stream_arrives_incrementally(client: httpx.Client) -> None:
    assert_five_chunks_arrive_incrementally(client, "/astream?delay=0.2")


def test_catalog_page(client: httpx.Client) -> None:
    # The compression benchmark's ~50 KB page (bench/run.py --preset compress), and its cached twin.
    r = client.get("/page")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert 45_000 < len(r.content) < 60_000
    assert r.text.count('<li class="product"') == 50
    assert "content-encoding" not in r.headers  # no --compress, no DJANGO_GZIP
    assert client.get("/cached-page").content == r.content


def test_download_binary(client: httpx.Client) -> None:
    r = client.get("/download")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert len(r.content) == 262144
    assert int(r.headers.get("content-length", len(r.content))) == 262144
    assert hashlib.sha256(r.content).hexdigest() == DOWNLOAD_SHA256


def test_headers_view(django: Server, client: httpx.Client) -> None:
    r = client.get("/headers?a=1&b=two", headers={"X-Custom-Thing": "value 42", "Accept-Language": "de"})
    assert r.status_code == 200
    data = r.json()
    assert data["REMOTE_ADDR"] == "127.0.0.1"
    assert data["SERVER_PORT"] == str(django.port)
    assert data["PATH_INFO"] == "/headers"
    assert data["QUERY_STRING"] == "a=1&b=two"
    assert data["SCRIPT_NAME"] == ""
    assert data["wsgi.url_scheme"] == "http"
    assert data["HTTP_X_CUSTOM_THING"] == "value 42"
    assert data["HTTP_ACCEPT_LANGUAGE"] == "de"
    assert data["HTTP_HOST"] == f"127.0.0.1:{django.port}"
    meta = {"wsgi.url_scheme", "REMOTE_ADDR", "SERVER_NAME", "SERVER_PORT", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING"}
    assert {k for k in data if not k.startswith("HTTP_")} == meta


def test_error_is_500_with_traceback_in_server_log(django: Server, client: httpx.Client) -> None:
    r = client.get("/error")
    assert r.status_code == 500
    assert "boom from the example" not in r.text  # DEBUG is off: no traceback to the client
    log = django.wait_log("RuntimeError: boom from the example")
    assert "Traceback (most recent call last)" in log
    assert "Internal Server Error: /error" in log
    # The worker survived the exception, and keeps serving sync and async views.
    assert client.get("/hello").status_code == 200
    assert client.get("/ahello").status_code == 200
    assert "starting a new one" not in django.log()


def test_admin_login_changelist_and_index(client: httpx.Client) -> None:
    # The changelist redirects to the login page, whose form (with its CSRF token) is posted back.
    login_admin(client)
    listing = client.get("/admin/catalog/item/")
    assert listing.status_code == 200
    for n in (1, 25, 50):
        assert f"Item {n:02d}" in listing.text
    assert "50 items" in listing.text
    index = client.get("/admin/")
    assert index.status_code == 200
    assert "Site administration" in index.text


def test_admin_login_with_wrong_password_is_refused(client: httpx.Client) -> None:
    token = csrf_token(client.get("/admin/login/").text)
    r = client.post("/admin/login/", data={"csrfmiddlewaretoken": token, "username": ADMIN_USER, "password": "wrong"})
    assert r.status_code == 200  # the form again, with an error
    assert "Please enter the correct username and password" in r.text
    assert not client.cookies.get("sessionid")


@pytest.mark.skipif(not have("curl"), reason="curl is not installed")
def test_curl_get(django: Server) -> None:
    out = subprocess.run(
        ["curl", "-sS", "-i", "--max-time", "10", django.url + "/api/item/2"],
        capture_output=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["name"] == "Item 02"


def test_twenty_concurrent_clients(django: Server) -> None:
    """Twenty threads, each with its own keep-alive connection, five rounds of two requests."""
    errors: list[str] = []
    barrier = threading.Barrier(20)

    def one(n: int) -> None:
        try:
            with httpx.Client(base_url=django.url, timeout=20) as c:
                barrier.wait(10)
                for _ in range(5):
                    r = c.get(f"/api/item/{n + 1}")
                    if r.status_code != 200 or r.json()["name"] != f"Item {n + 1:02d}":
                        errors.append(f"item {n + 1}: {r.status_code} {r.text[:100]}")
                    r = c.get("/items")
                    if r.status_code != 200 or len(r.json()) != 20:
                        errors.append(f"items: {r.status_code}")
        except Exception as e:  # collected and asserted below
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_fifty_concurrent_requests(django: Server) -> None:
    """Fifty requests at once on fifty connections, sync and async views and the async stream mixed."""
    paths = ["/ahello", "/aitems", "/hello", "/api/item/7", "/astream"] * 10

    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
        async with httpx.AsyncClient(base_url=django.url, timeout=30, limits=limits) as c:
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
