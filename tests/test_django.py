"""The Django example project (examples/django_project) served by rsgi's WSGI bridge with two
workers, driven by real clients: httpx, raw sockets and curl."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import ADMIN_USER, Server, csrf_token, have, login_admin, raw_request, upload_file

DOWNLOAD_SHA256 = "466f5982673dd81e0800f4deab6708f2140190a2eec112765ccdba393ddacf9a"  # examples README


@pytest.fixture
def client(django_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=django_server.url, timeout=10) as c:
        yield c


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


def test_head_hello_has_no_body(django_server: Server) -> None:
    assert django_server.port is not None
    raw = raw_request(django_server.port, b"HEAD /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
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


def test_form_post_without_token_is_403(django_server: Server) -> None:
    r = httpx.post(django_server.url + "/form", data={"name": "Eve", "message": "no token"}, timeout=10)
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


def test_stream_five_chunks_arrive_incrementally(client: httpx.Client) -> None:
    arrivals: list[tuple[float, bytes]] = []
    with client.stream("GET", "/stream?delay=0.2") as r:
        assert r.status_code == 200
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


def test_headers_view(django_server: Server, client: httpx.Client) -> None:
    r = client.get("/headers?a=1&b=two", headers={"X-Custom-Thing": "value 42", "Accept-Language": "de"})
    assert r.status_code == 200
    data = r.json()
    assert data["REMOTE_ADDR"] == "127.0.0.1"
    assert data["SERVER_PORT"] == str(django_server.port)
    assert data["PATH_INFO"] == "/headers"
    assert data["QUERY_STRING"] == "a=1&b=two"
    assert data["SCRIPT_NAME"] == ""
    assert data["wsgi.url_scheme"] == "http"
    assert data["HTTP_X_CUSTOM_THING"] == "value 42"
    assert data["HTTP_ACCEPT_LANGUAGE"] == "de"
    assert data["HTTP_HOST"] == f"127.0.0.1:{django_server.port}"
    meta = {"wsgi.url_scheme", "REMOTE_ADDR", "SERVER_NAME", "SERVER_PORT", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING"}
    assert {k for k in data if not k.startswith("HTTP_")} == meta


def test_error_is_500_with_traceback_in_server_log(django_server: Server, client: httpx.Client) -> None:
    r = client.get("/error")
    assert r.status_code == 500
    assert "boom from the example" not in r.text  # DEBUG is off: no traceback to the client
    log = django_server.wait_log("RuntimeError: boom from the example")
    assert "Traceback (most recent call last)" in log
    assert "Internal Server Error: /error" in log
    # The worker survived the exception.
    assert client.get("/hello").status_code == 200


def test_admin_login_and_changelist(client: httpx.Client) -> None:
    login_admin(client)
    listing = client.get("/admin/catalog/item/")
    assert listing.status_code == 200
    for n in (1, 25, 50):
        assert f"Item {n:02d}" in listing.text
    assert "50 items" in listing.text


def test_admin_login_with_wrong_password_is_refused(client: httpx.Client) -> None:
    token = csrf_token(client.get("/admin/login/").text)
    r = client.post("/admin/login/", data={"csrfmiddlewaretoken": token, "username": ADMIN_USER, "password": "wrong"})
    assert r.status_code == 200  # the form again, with an error
    assert "Please enter the correct username and password" in r.text
    assert not client.cookies.get("sessionid")


@pytest.mark.skipif(not have("curl"), reason="curl is not installed")
def test_curl_get(django_server: Server) -> None:
    out = subprocess.run(
        ["curl", "-sS", "-i", "--max-time", "10", django_server.url + "/api/item/2"],
        capture_output=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["name"] == "Item 02"


def test_twenty_concurrent_clients(django_server: Server) -> None:
    errors: list[str] = []
    barrier = threading.Barrier(20)

    def one(n: int) -> None:
        try:
            with httpx.Client(base_url=django_server.url, timeout=20) as c:
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
