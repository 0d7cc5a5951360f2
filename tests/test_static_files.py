"""Static files answered by the core (`--static PREFIX=DIR`, `--static-django`) through a real
worker process.

What the core does with a request under a mount (headers and validators, 304s, ranges,
precompressed siblings, HEAD, directories, traversal attempts, symlinks, other methods, the
longest prefix, what reaches the app) is tested in Rust against a stub app, over raw sockets:
tests/http_core/static_files.rs. Kept here: a large download by curl through a WSGI worker, the
mount flags as the CLI checks them at startup (bad mounts, `--chdir`), an ASGI app, and
`--static-django`. The tree is built under a temporary directory at test time."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import DJANGO_DIR, TESTS, Server, StartServer, have, running

SECRET = b"TOP-SECRET-7f3a9c: this file sits next to the static root, never inside it\n"
CSS = b"body { color: #333; }\n"
BIG_SIZE = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """base/secret.txt next to base/root (a site.css and a 5 MiB big.bin)."""
    base = tmp_path_factory.mktemp("static-tree")
    (base / "secret.txt").write_bytes(SECRET)
    root = base / "root"
    root.mkdir()
    (root / "site.css").write_bytes(CSS)
    (root / "big.bin").write_bytes(os.urandom(BIG_SIZE))
    return base


@pytest.fixture(scope="module")
def server(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """apps.basic:hello with root mounted at /static/."""
    flags = ["--static", f"/static/={tree / 'root'}"]
    with running("apps.basic:hello", *flags, log_dir=tmp_path_factory.mktemp("static-log")) as s:
        yield s


# --- a large file through a real client -------------------------------------------------------


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
