"""examples/django_project/Dockerfile and compose.yaml, without Docker: their commands must be valid
rsgi command lines with the effective settings they are meant to have (`rsgi --check-config`
with the same arguments, in the environment the image and compose give it), and compose's
environment must make the project use Postgres and Redis, here pointed at the test servers. The
image is built in two stages from the repository root: `make wheel` in a Rust image, then that
wheel installed in python:3.12-slim, which has no compiler (tests/install/ installs the same wheel
the same way, in a venv with no Rust on PATH)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import yaml
from conftest import DJANGO_DIR, ROOT, base_env

from .conftest import DUAL_ARGS, Postgres, Redis

DOCKERFILE = DJANGO_DIR / "Dockerfile"
DOCKERIGNORE = DJANGO_DIR / "Dockerfile.dockerignore"
COMPOSE = DJANGO_DIR / "compose.yaml"


def dockerfile() -> dict[str, Any]:
    """The Dockerfile's stages (image, name, ENV, COPY sources from the build context, COPY --from
    sources by stage, RUN commands), the last stage's ENV, every COPY source from the context, CMD
    (exec form only) and the `# was: CMD [...]` comment."""
    text = DOCKERFILE.read_text()
    stages: list[dict[str, Any]] = []
    cmd = was = None
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if match := re.match(r"# was: CMD (\[[^\]]*\])", line):
            was = json.loads(match.group(1))
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction == "FROM":
            image, _, name = re.sub(r"\s+as\s+", " AS ", rest, flags=re.IGNORECASE).partition(" AS ")
            stages.append({"image": image, "name": name, "env": {}, "copied": [], "from_stages": [], "run": []})
            continue
        assert stages, f"{instruction} before any FROM"
        stage = stages[-1]
        if instruction == "ENV":
            stage["env"].update(pair.split("=", 1) for pair in rest.split())
        elif instruction == "COPY":
            words = rest.split()
            sources = [w for w in words if not w.startswith("--")][:-1]
            source_stage = next((w.partition("=")[2] for w in words if w.startswith("--from=")), None)
            if source_stage:
                stage["from_stages"].append((source_stage, sources))
            else:
                stage["copied"] += sources
        elif instruction == "RUN":
            stage["run"].append(" ".join(rest.split()))
        elif instruction == "CMD":
            assert rest.startswith("["), f"CMD must use the exec form (a JSON array): {rest}"
            cmd = json.loads(rest)
    assert cmd is not None, "the Dockerfile has no CMD"
    copied = [source for stage in stages for source in stage["copied"]]
    return {"env": stages[-1]["env"], "copied": copied, "cmd": cmd, "was": was, "stages": stages}


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error} (and $$ for a literal $)."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if variables.get(name):
            return variables[name]
        if op == ":?":
            raise AssertionError(f"compose would refuse to start: {arg}")
        return arg if op == ":-" else ""

    return re.sub(r"\$\$|\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def compose_service(name: str, variables: dict[str, str]) -> dict[str, Any]:
    service = yaml.safe_load(COMPOSE.read_text())["services"][name]  # safe_load resolves `<<:`
    service["environment"] = {k: interpolate(str(v), variables) for k, v in service.get("environment", {}).items()}
    return service


def check_config(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The effective settings `rsgi <args> --check-config` prints, run where the image runs it."""
    assert args[0] == "rsgi", args
    out = subprocess.run(
        [sys.executable, "-m", "rsgi", *args[1:], "--check-config"],
        cwd=DJANGO_DIR,
        env=base_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, f"{args} is not a valid rsgi command line:\n{out.stdout}\n{out.stderr}"
    settings = {}
    for line in out.stdout.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            settings[name.strip()] = ast.literal_eval(value.strip())
    return settings


COMPOSE_VARIABLES = {"DJANGO_SECRET_KEY": "from-the-operator"}


def test_dockerfile_cmd_is_the_tested_dual_mode_command_line() -> None:
    image = dockerfile()
    # The fixtures of these tests serve exactly what the image runs (plus --bind to loopback).
    assert image["cmd"] == ["rsgi", *DUAL_ARGS]
    settings = check_config(image["cmd"], image["env"])
    assert settings["bind"] == ["0.0.0.0:8000"]  # PORT from the image's ENV
    assert settings["(listening on)"] == ["0.0.0.0:8000"]
    assert settings["app"] == "mysite.asgi:application"
    assert settings["wsgi"] == "mysite.wsgi:application"
    assert settings["asgi_path"] == ["/events/"]
    assert settings["static_django"] is True
    assert settings["workers"] == 1  # no WEB_CONCURRENCY in the image itself


def test_the_platform_port_and_concurrency_apply_to_the_image() -> None:
    image = dockerfile()
    settings = check_config(image["cmd"], {**image["env"], "PORT": "5000", "WEB_CONCURRENCY": "4"})
    assert settings["bind"] == ["0.0.0.0:5000"]
    assert settings["workers"] == 4


def test_the_old_gunicorn_cmd_with_rsgi_in_its_place_is_valid_too() -> None:
    image = dockerfile()
    assert image["was"] and image["was"][0] == "gunicorn", "the Dockerfile should show the gunicorn CMD it replaces"
    settings = check_config(["rsgi", *image["was"][1:]], {**image["env"], "WEB_CONCURRENCY": "3"})
    assert settings["app"] == "mysite.wsgi:application"
    assert settings["bind"] == ["0.0.0.0:8000"]
    assert settings["workers"] == 3


def test_the_dockerfile_copies_files_that_exist() -> None:
    for source in dockerfile()["copied"]:
        assert (ROOT / source).exists(), source  # the build context is the repository root
    production = (DJANGO_DIR / "requirements-production.txt").read_text()
    assert "-r requirements.txt" in production
    for package in ("dj-database-url", "psycopg[binary]", "channels-redis"):
        assert package in production, package


def test_the_wheel_is_built_in_one_stage_and_installed_in_a_runtime_stage_without_a_compiler() -> None:
    build, runtime = dockerfile()["stages"]
    # Stage 1 makes the wheel as `make wheel` makes the published one, from what that needs.
    assert build["name"] == "build"
    assert build["image"].startswith("rust:")
    assert any(re.match(r"make wheel\b", run) for run in build["run"]), build["run"]
    assert {"Cargo.toml", "Cargo.lock", "pyproject.toml", "README.md", "Makefile", "src", "python"} <= set(
        build["copied"]
    )
    # Stage 2 runs: python:3.12-slim, nothing compiled, and rsgi from stage 1's wheel.
    assert runtime["image"] == "python:3.12-slim"
    assert runtime["from_stages"] == [("build", ["/src/dist/"])]
    runs = " ".join(runtime["run"])
    for tool in ("apt-get", "gcc", "build-essential", "cargo", "rustc", "rustup", "maturin"):
        assert tool not in runs, f"the runtime stage installs or runs {tool}"
    (install,) = [run for run in runtime["run"] if "pip install" in run]
    assert "--only-binary :all:" in install
    assert "/tmp/dist/rsgi-*.whl" in install
    assert "-r requirements-production.txt" in install


def test_the_build_context_is_the_repository_with_only_what_the_stages_copy() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in ("migrate", "web"):
        build = services[name]["build"]
        assert (DJANGO_DIR / build["context"]).resolve() == ROOT, name
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE, name
    # Dockerfile.dockerignore (BuildKit reads it for this Dockerfile): everything out, then back in
    # what the stages copy, less a checkout's build output and the example's local data.
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip()]
    patterns = [p for p in patterns if not p.startswith("#")]
    assert patterns[0] == "*"
    kept = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for source in dockerfile()["copied"]:
        source = source.rstrip("/")
        assert any(source == k or source.startswith(k + "/") for k in kept), f"{source} is not in the context"
    for output in ("python/rsgi/*.so", "examples/django_project/staticfiles/", "examples/django_project/db.sqlite3*"):
        assert output in patterns, output


def test_compose_web_command_and_environment() -> None:
    web = compose_service("web", COMPOSE_VARIABLES)
    env = {**dockerfile()["env"], **web["environment"]}
    assert env["DATABASE_URL"] == "postgres://mysite:mysite@db:5432/mysite"
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["DJANGO_SECRET_KEY"] == "from-the-operator"
    settings = check_config(web["command"], env)
    assert settings["bind"] == ["0.0.0.0:8000"]
    assert settings["workers"] == 2  # WEB_CONCURRENCY from compose
    assert settings["app"] == "mysite.asgi:application"
    assert settings["wsgi"] == "mysite.wsgi:application"
    assert settings["asgi_path"] == ["/events/"]
    assert settings["static_django"] is True
    assert settings["health_path"] == "/-/health"
    assert web["ports"] == ["8000:8000"]
    assert "/-/health" in " ".join(web["healthcheck"]["test"])


def test_compose_refuses_to_start_without_a_secret_key() -> None:
    with pytest.raises(AssertionError, match="set DJANGO_SECRET_KEY"):
        compose_service("web", {})


def on_test_servers(env: dict[str, str], postgres: Postgres, redis: Redis) -> dict[str, str]:
    """compose's environment with the hosts `db` and `redis` replaced by the test servers."""
    env = dict(env)
    env["DATABASE_URL"] = env["DATABASE_URL"].replace("@db:5432/", f"@127.0.0.1:{postgres.port}/")
    env["REDIS_URL"] = env["REDIS_URL"].replace("//redis:6379/", f"//127.0.0.1:{redis.port}/")
    return env


def test_compose_environment_selects_postgres_and_redis(
    production_env: dict[str, str], postgres: Postgres, redis: Redis
) -> None:
    # The test Postgres has compose's role and database, with its own password passed the way
    # an operator would (POSTGRES_PASSWORD); production_env has migrated it.
    variables = {**COMPOSE_VARIABLES, "POSTGRES_PASSWORD": postgres.password}
    web = compose_service("web", variables)
    migrate = compose_service("migrate", variables)
    server_only = ("PORT", "WEB_CONCURRENCY")
    assert migrate["environment"] == {k: v for k, v in web["environment"].items() if k not in server_only}
    env = on_test_servers(web["environment"], postgres, redis)
    probe = textwrap.dedent(
        """
        import json

        import django
        from asgiref.sync import async_to_sync

        django.setup()
        from channels.layers import get_channel_layer
        from django.conf import settings
        from django.db import connection

        layer = get_channel_layer()
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.send)(channel, {"type": "probe"})
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user, current_database(), count(*) FROM catalog_item")
            row = cursor.fetchone()
        print(json.dumps({
            "vendor": connection.vendor,
            "conn_max_age": settings.DATABASES["default"]["CONN_MAX_AGE"],
            "row": row,
            "layer": type(layer).__name__,
            "echo": async_to_sync(layer.receive)(channel),
        }))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=DJANGO_DIR,
        env=base_env(**env, DJANGO_SETTINGS_MODULE="mysite.settings"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found["vendor"] == "postgresql"
    assert found["conn_max_age"] == 60
    assert found["row"][:2] == ["mysite", "mysite"]
    assert found["row"][2] >= 50
    assert found["layer"] == "RedisChannelLayer"
    assert found["echo"] == {"type": "probe"}

    # The `migrate` service's command, as compose runs it: the schema is already there.
    assert migrate["command"][0] == "python"
    done = subprocess.run(
        [sys.executable, *migrate["command"][1:]],
        cwd=DJANGO_DIR,
        env=base_env(**on_test_servers(migrate["environment"], postgres, redis)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "No migrations to apply." in done.stdout


def test_the_sqlite_default_imports_none_of_the_production_packages() -> None:
    # `make serve` installs requirements.txt only: with neither URL set, settings must not need more.
    requirements = (DJANGO_DIR / "requirements.txt").read_text()
    assert not re.search(r"psycopg|dj-database-url|channels-redis", requirements)
    probe = (
        "import sys, json, django; django.setup()\n"
        "from django.conf import settings; from django.db import connection\n"
        "from channels.layers import get_channel_layer\n"
        "layer = type(get_channel_layer()).__name__\n"
        "loaded = sorted(m for m in ('dj_database_url', 'psycopg', 'channels_redis', 'redis') if m in sys.modules)\n"
        "print(json.dumps({'vendor': connection.vendor, 'layer': layer, 'loaded': loaded}))\n"
    )
    env = {k: v for k, v in base_env(DJANGO_SETTINGS_MODULE="mysite.settings").items()}
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    out = subprocess.run([sys.executable, "-c", probe], cwd=DJANGO_DIR, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"vendor": "sqlite", "layer": "InMemoryChannelLayer", "loaded": []}
