"""Real Postgres and Redis for the production tests, and the example project served on them.

`postgres` and `redis` are session-scoped servers started from the Debian packages (postgresql,
redis-server) on free 127.0.0.1 ports, in private temp dirs, and stopped at the end of the
session. Readiness is polled (a Postgres connection, a Redis PING), never slept for. When a
binary or a client package is missing the tests that need it are skipped with the reason, except
under CI (CI=true), where they fail: CI installs them (.ci/run).

Postgres refuses to run as root, so as root its commands run as the `postgres` user the Debian
package creates (subprocess's user=/group=, the same as `runuser -u postgres`).

`production_env` migrates the example into that Postgres; the rsgi servers of the example
(`wsgi_server`, `asgi_server`, `dual_server`, and second instances `asgi_server_b`,
`dual_server_b` for Channels across instances) run on it with two workers each (one for the
second instances), each on its own 127.0.0.1 port, with REDIS_URL pointing at the one Redis.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
from conftest import DJANGO_DIR, TESTS, Server, base_env, free_port
from websockets.sync.client import ClientConnection, connect

T = TypeVar("T")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# The served configuration the Dockerfile and compose.yaml use (test_deploy_files checks that
# they do), bound to loopback by the fixtures.
DUAL_ARGS = ["--django", "mysite", "--asgi-path", "/events/", "--static-django"]
DB_NAME = DB_USER = "mysite"


def unavailable(reason: str) -> NoReturn:
    """Skip locally; fail in CI, which must have every service these tests need."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: .ci/run is expected to install it)", pytrace=False)
    pytest.skip(reason)


def wait_for(check: Callable[[], T | None], timeout: float, what: str, alive: Callable[[], str | None]) -> T:
    """Poll `check` until it returns a value; `alive` returns an error once waiting is pointless."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        dead = alive()
        if dead:
            raise RuntimeError(f"{what}: {dead}")
        try:
            value = check()
            if value is not None:
                return value
        except Exception as e:  # not ready yet; reported if it never gets ready
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not ready after {timeout}s (last error: {last!r})")


def process_exited(proc: subprocess.Popen[bytes], log: Path) -> Callable[[], str | None]:
    def check() -> str | None:
        if proc.poll() is None:
            return None
        return f"exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}"

    return check


def stop_process(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- Postgres ----------------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """Where initdb, postgres and pg_isready are: on PATH, else Debian's newest versioned dir."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]

    def version(bindir: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))

    return max(found, key=version) if found else None


@dataclass
class Postgres:
    port: int
    socket_dir: Path
    password: str

    @property
    def url(self) -> str:
        """DATABASE_URL for the example's own role and database, over TCP with a password."""
        return f"postgres://{DB_USER}:{self.password}@127.0.0.1:{self.port}/{DB_NAME}"

    def connect(self) -> Any:
        """A superuser connection over the Unix socket (trusted), autocommit on; close it."""
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir), port=self.port, user="postgres", dbname=DB_NAME, autocommit=True
        )

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        unavailable("psycopg is not installed (pip install 'psycopg[binary]')")
    bindir = postgres_bindir()
    if bindir is None:
        unavailable("PostgreSQL server binaries not found (apt-get install postgresql)")

    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no `postgres` user to run PostgreSQL as")
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    # Not under pytest's tmp dirs: those are private to root, and the postgres user must reach this.
    home = Path(tempfile.mkdtemp(prefix="rsgi-postgres-"))
    data, sockets, log = home / "data", home / "sockets", home / "postgres.log"
    sockets.mkdir()
    if run_as:
        for path in (home, sockets):
            os.chown(path, run_as["user"], run_as["group"])
    proc = None
    try:
        # Host connections need a password (as DATABASE_URL gives one); the Unix socket in the
        # private dir is trusted, for creating the role. --no-sync: a throwaway cluster.
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8", "--locale=C"]
        initdb += ["--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"]
        done = subprocess.run(initdb, cwd=home, capture_output=True, text=True, timeout=120, **run_as)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

        port = free_port()
        server = [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sockets)]
        server += ["-c", "listen_addresses=127.0.0.1"]
        # Durability is not what is under test; these make migrations several times faster.
        server += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with open(log, "wb") as out:
            proc = subprocess.Popen(server, cwd=home, stdout=out, stderr=subprocess.STDOUT, **run_as)

        def ready() -> bool:
            with psycopg.connect(host=str(sockets), port=port, user="postgres", dbname="postgres", connect_timeout=2):
                return True

        wait_for(ready, 60, "postgres", process_exited(proc, log))

        password = secrets.token_urlsafe(16)
        with psycopg.connect(host=str(sockets), port=port, user="postgres", dbname="postgres", autocommit=True) as c:
            c.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(DB_USER), sql.Literal(password))
            )
            c.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DB_NAME), sql.Identifier(DB_USER)))
        yield Postgres(port, sockets, password)
    finally:
        if proc is not None:
            stop_process(proc, signal.SIGINT)  # SIGINT is Postgres's "fast" shutdown
        shutil.rmtree(home, ignore_errors=True)


# -- Redis -------------------------------------------------------------------------------------


@dataclass
class Redis:
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    try:
        import channels_redis  # noqa: F401 - the example's layer; it brings the redis client
        import redis as redis_client
    except ImportError:
        unavailable("channels-redis is not installed (pip install channels-redis)")
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server not found (apt-get install redis-server)")

    home = tmp_path_factory.mktemp("redis")
    log = home / "redis.log"
    port = free_port()
    # A private, non-persistent server: no RDB snapshots, no append-only file, loopback only.
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", str(home), "--daemonize", "no"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=home, stdout=out, stderr=subprocess.STDOUT)
    try:

        def ready() -> bool:
            client = redis_client.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2)
            try:
                return bool(client.ping())
            finally:
                client.close()

        wait_for(ready, 30, "redis-server", process_exited(proc, log))
        yield Redis(port)
    finally:
        stop_process(proc, signal.SIGTERM)


# -- the example project on them -----------------------------------------------------------------
# The rsgi servers are package-scoped: started on first use, shared by every file here, and
# stopped when this directory's tests are done rather than idling through the rest of the suite.


@pytest.fixture(scope="session")
def production_env(postgres: Postgres, redis: Redis) -> dict[str, str]:
    """The example's production environment: migrated Postgres, Redis, collected static files."""
    try:
        import dj_database_url  # noqa: F401 - settings.py imports it when DATABASE_URL is set
    except ImportError:
        unavailable("dj-database-url is not installed (pip install dj-database-url)")
    env = {
        "DATABASE_URL": postgres.url,
        "REDIS_URL": redis.url,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        # A real host list, as in production: the websocket Origin check is then enforced.
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_CONN_MAX_AGE": "60",
    }
    manage = [sys.executable, "manage.py"]
    for cmd in (["migrate", "--noinput"], ["createdemoadmin"], ["collectstatic", "--noinput", "-v", "0"]):
        done = subprocess.run(manage + cmd, cwd=DJANGO_DIR, env=base_env(**env), capture_output=True, text=True)
        assert done.returncode == 0, f"manage.py {' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return env


@contextlib.contextmanager
def example_server(args: list[str], env: dict[str, str], log_dir: Path) -> Iterator[Server]:
    port = free_port()
    full = [*args, "--chdir", str(DJANGO_DIR), "--bind", f"127.0.0.1:{port}"]
    server = Server(full, TESTS, base_env(**env), log_dir / "rsgi.log", port)
    try:
        server.wait_ready(timeout=60, path="/hello")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
def wsgi_server(production_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`rsgi mysite.wsgi:application --workers 2 --static-django` on Postgres."""
    args = ["mysite.wsgi:application", "--workers", "2", "--static-django"]
    with example_server(args, production_env, tmp_path_factory.mktemp("wsgi")) as server:
        yield server


def asgi_env(production_env: dict[str, str]) -> dict[str, str]:
    # CONN_MAX_AGE=60 as for the other servers: rsgi runs ASGI requests' ORM calls on reused
    # threads, so kept connections are reused (test_pages.py checks it).
    return production_env


@pytest.fixture(scope="package")
def asgi_server(production_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`rsgi mysite.asgi:application --workers 2`: Channels with the Redis layer, on Postgres."""
    args = ["mysite.asgi:application", "--workers", "2"]
    with example_server(args, asgi_env(production_env), tmp_path_factory.mktemp("asgi")) as server:
        yield server


@pytest.fixture(scope="package")
def asgi_server_b(production_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second, separate ASGI instance sharing the same Postgres and Redis."""
    args = ["mysite.asgi:application", "--workers", "1"]
    with example_server(args, asgi_env(production_env), tmp_path_factory.mktemp("asgi-b")) as server:
        yield server


@pytest.fixture(scope="package")
def dual_server(production_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`rsgi --django mysite --asgi-path /events/ --static-django --workers 2`, as the image runs."""
    with example_server([*DUAL_ARGS, "--workers", "2"], production_env, tmp_path_factory.mktemp("dual")) as server:
        yield server


@pytest.fixture(scope="package")
def dual_server_b(production_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second, separate `--django` instance sharing the same Postgres and Redis."""
    with example_server([*DUAL_ARGS, "--workers", "1"], production_env, tmp_path_factory.mktemp("dual-b")) as server:
        yield server


# -- clients -----------------------------------------------------------------------------------


def ws_connect(server: Server, path: str, **kwargs: Any) -> ClientConnection:
    """A websocket with the Origin a browser on the site would send (ALLOWED_HOSTS is checked)."""
    kwargs.setdefault("origin", server.url)
    kwargs.setdefault("open_timeout", 10)
    kwargs.setdefault("close_timeout", 5)
    return connect(f"ws://127.0.0.1:{server.port}{path}", proxy=None, compression=None, **kwargs)
