"""The wheel `make wheel` publishes, installed as a user installs it: a fresh virtual environment,
no Rust toolchain on PATH, only pip. It must carry one version (Cargo.toml's) everywhere, run its
command line, and serve the Django example through both interfaces. The sdist next to it must build
into a working wheel with pip alone, from a clean directory.

Building takes minutes, so a wheel already in dist/ is reused when it is for Cargo.toml's version and
newer than every source file; otherwise `make wheel` builds it. Builds of the Rust code on this
machine take turns through the lock file /tmp/rsgi-build.lock (`RSGI_BUILD_LOCK`), the one
`flock /tmp/rsgi-build.lock make wheel` takes, so don't run this module under that lock yourself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import AMBIENT, DJANGO_DIR, ROOT, free_port
from websockets.sync.client import connect

# Building the wheel (about 2½ minutes on 2 cores) and the sdist happen inside tests' fixtures.
pytestmark = pytest.mark.timeout(1500)

DIST = ROOT / "dist"
WHEEL_MAX_BYTES = 2_500_000  # the Makefile's WHEEL_MAX_BYTES
MANYLINUX2014_GLIBC = (2, 17)
RUST_TOOLS = ("cargo", "rustc", "rustup")
# What the wheel is built from; a newer file makes the wheel in dist/ stale.
SOURCES = ("src", "python", "Cargo.toml", "Cargo.lock", "pyproject.toml", "Makefile")


def cargo_version() -> str:
    match = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.MULTILINE)
    assert match, "no version in Cargo.toml"
    return match.group(1)


VERSION = cargo_version()


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """Hold the machine's build lock (flock(2), as flock(1) takes it) while building."""
    with open(os.environ.get("RSGI_BUILD_LOCK", "/tmp/rsgi-build.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def newest_source() -> float:
    newest = 0.0
    for name in SOURCES:
        path = ROOT / name
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.suffix in (".rs", ".py", ".pyi")]
        newest = max([newest, *(p.stat().st_mtime for p in files)])
    return newest


def built() -> tuple[Path, Path] | None:
    """The wheel and sdist in dist/ for this version, if they are newer than every source file."""
    wheels = sorted(DIST.glob(f"rsgi-{VERSION}-*.whl"))
    sdist = DIST / f"rsgi-{VERSION}.tar.gz"
    if len(wheels) != 1 or not sdist.exists():
        return None
    if min(wheels[0].stat().st_mtime, sdist.stat().st_mtime) < newest_source():
        return None
    return wheels[0], sdist


@pytest.fixture(scope="module")
def dist() -> tuple[Path, Path]:
    """(wheel, sdist): `make wheel`'s output, reused or built now."""
    with build_lock():
        found = built()
        if found is None:
            started = time.monotonic()
            out = subprocess.run(
                ["make", "wheel", f"PY={sys.executable}"], cwd=ROOT, capture_output=True, text=True, timeout=1200
            )
            assert out.returncode == 0, f"make wheel failed:\n{out.stdout[-6000:]}\n{out.stderr[-6000:]}"
            # The Makefile prints the size it checked; shown with -rA / on failure.
            print(f"make wheel: {time.monotonic() - started:.0f} s\n{out.stdout[-600:]}")
            found = built()
            assert found, f"make wheel left no wheel and sdist for {VERSION} in {DIST}"
    return found


def without_rust(path: str) -> str:
    """PATH less every directory that holds a Rust tool, as on a machine that never had Rust."""
    keep = [d for d in path.split(os.pathsep) if d and not any(Path(d, tool).exists() for tool in RUST_TOOLS)]
    return os.pathsep.join(keep)


@dataclass
class Venv:
    root: Path
    env: dict[str, str]

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def run(self, *args: str | Path, cwd: Path | None = None, timeout: float = 300) -> str:
        """Run `args` (a venv command name, or a path) and return its stdout; it must succeed."""
        cmd = [str(a) for a in args]
        if (self.bin / cmd[0]).exists():
            cmd[0] = str(self.bin / cmd[0])
        out = subprocess.run(cmd, cwd=cwd or self.root, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, f"{cmd} exited {out.returncode}:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
        return out.stdout


def make_venv(python: str | Path, root: Path) -> Venv:
    """A fresh venv whose environment has no Rust toolchain, no PYTHONPATH and no rsgi settings."""
    subprocess.run([str(python), "-m", "venv", str(root)], check=True, capture_output=True, timeout=120)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in AMBIENT
        and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
        and not k.startswith(("RSGI_", "CARGO", "RUSTUP", "PYENV_VERSION"))
    }
    env["PATH"] = os.pathsep.join([str(root / "bin"), without_rust(os.environ.get("PATH", ""))])
    env["PYTHONUNBUFFERED"] = "1"
    venv = Venv(root, env)
    for tool in RUST_TOOLS:
        assert shutil.which(tool, path=env["PATH"]) is None, f"{tool} is still on the venv's PATH"
    return venv


@pytest.fixture(scope="module")
def venv(dist: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The wheel and the example's requirements in a fresh venv, from wheels only (nothing compiled)."""
    venv = make_venv(sys.executable, tmp_path_factory.mktemp("install") / "venv")
    venv.run("pip", "install", "-q", "--only-binary", ":all:", dist[0], "-r", DJANGO_DIR / "requirements.txt")
    return venv


def elf_sections(elf: bytes) -> set[str]:
    """The section names of a 64-bit little-endian ELF file (its section header table)."""
    assert elf[:6] == b"\x7fELF\x02\x01", "not a 64-bit little-endian ELF file"
    (table,) = struct.unpack_from("<Q", elf, 0x28)
    entry_size, count, names_index = struct.unpack_from("<HHH", elf, 0x3A)

    def header(i: int) -> tuple[int, ...]:  # Elf64_Shdr: name, type, flags, addr, offset, size, ...
        return struct.unpack_from("<IIQQQQIIQQ", elf, table + i * entry_size)

    names_at = header(names_index)[4]
    return {
        elf[names_at + name : elf.index(b"\0", names_at + name)].decode()
        for name in (header(i)[0] for i in range(count))
    }


def test_the_wheel_is_abi3_manylinux2014_small_and_stripped(dist: tuple[Path, Path]) -> None:
    wheel, sdist = dist
    assert wheel.name == f"rsgi-{VERSION}-cp310-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
    assert wheel.stat().st_size <= WHEEL_MAX_BYTES, f"{wheel.name} is {wheel.stat().st_size} bytes"
    with zipfile.ZipFile(wheel) as z:
        info = f"rsgi-{VERSION}.dist-info"
        tags = re.findall(r"^Tag: (\S+)$", z.read(f"{info}/WHEEL").decode(), re.MULTILINE)
        metadata = z.read(f"{info}/METADATA").decode()
        so = z.read("rsgi/_rsgi.abi3.so")
        names = set(z.namelist())
    assert sorted(tags) == ["cp310-abi3-manylinux2014_x86_64", "cp310-abi3-manylinux_2_17_x86_64"]
    assert f"\nVersion: {VERSION}\n" in metadata
    assert "\nRequires-Python: >=3.10\n" in metadata
    # The C library symbol versions it links against: none newer than manylinux2014's glibc 2.17.
    needed = {tuple(map(int, v)) for v in re.findall(rb"GLIBC_(\d+)\.(\d+)", so)}
    assert needed and max(needed) <= MANYLINUX2014_GLIBC, sorted(needed)
    sections = elf_sections(so)
    assert ".dynsym" in sections, sorted(sections)
    assert not {".symtab", ".debug_info", ".debug_line"} & sections, "the extension has symbols or debug info"
    # The whole Python package is in it, the stub and the py.typed marker included.
    package = {p.relative_to(ROOT / "python").as_posix() for p in (ROOT / "python" / "rsgi").rglob("*")}
    expected = {p for p in package if p.endswith((".py", ".pyi", "py.typed")) and "__pycache__" not in p}
    assert expected <= names, expected - names
    # The sdist holds what builds the wheel, and not the tests, benchmarks or example.
    listed = subprocess.run(["tar", "tzf", sdist], capture_output=True, text=True, check=True).stdout.split()
    top = {name.split("/")[1] for name in listed if "/" in name}
    assert {"Cargo.toml", "Cargo.lock", "pyproject.toml", "README.md", "src", "python"} <= top, top
    assert not top & {"tests", "bench", "examples", "fuzz", "target"}, top


def test_version_and_help_of_the_installed_package(venv: Venv, tmp_path: Path) -> None:
    assert venv.run("rsgi", "--version", cwd=tmp_path).strip() == f"rsgi {VERSION}"
    probe = (
        "import json, importlib.metadata, rsgi, rsgi._rsgi\n"
        "print(json.dumps([rsgi.__version__, importlib.metadata.version('rsgi'), rsgi._rsgi.__file__]))\n"
    )
    module_version, dist_version, extension = json.loads(venv.run("python", "-c", probe, cwd=tmp_path))
    assert module_version == dist_version == VERSION
    # The extension came from the wheel, not from this checkout.
    assert Path(extension).is_relative_to(venv.root), extension
    assert extension.endswith("_rsgi.abi3.so")
    help_text = venv.run("python", "-m", "rsgi", "--help", cwd=tmp_path)
    assert help_text.startswith("usage: rsgi")
    for flag in ("--django", "--asgi-path", "--static-django", "--check-config", "--version"):
        assert flag in help_text, flag


@pytest.fixture(scope="module")
def site(venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the example project, migrated and with its static files collected, by the venv."""
    site = tmp_path_factory.mktemp("site") / "django_project"
    ignore = shutil.ignore_patterns("db.sqlite3*", "staticfiles", "__pycache__")
    shutil.copytree(DJANGO_DIR, site, ignore=ignore)
    for command in (("migrate", "--noinput"), ("collectstatic", "--noinput", "-v", "0")):
        venv.run("python", "manage.py", *command, cwd=site)
    return site


@contextlib.contextmanager
def serving(venv: Venv, site: Path, *flags: str) -> Iterator[tuple[str, Path]]:
    """`rsgi FLAGS` from the venv in the example's directory; yields (base URL, log path)."""
    port = free_port()
    log_path = site.parent / f"rsgi-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(venv.bin / "rsgi"), *flags, "--bind", f"127.0.0.1:{port}"],
            cwd=site,
            env=venv.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, f"rsgi exited {proc.returncode}:\n{log_path.read_text()}"
                try:
                    httpx.get(url + "/hello", timeout=2)
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, f"rsgi not ready:\n{log_path.read_text()}"
                    time.sleep(0.05)
            yield url, log_path
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def test_serves_the_django_example_through_both_interfaces(venv: Venv, site: Path) -> None:
    flags = ("--django", "mysite", "--asgi-path", "/events/", "--static-django")
    with serving(venv, site, *flags) as (url, log_path), httpx.Client(base_url=url, timeout=10) as client:
        # A page, through WSGI, and the stylesheet it links, from the core.
        index = client.get("/")
        assert index.status_code == 200
        assert "<h1>rsgi Django example</h1>" in index.text
        css = re.search(r'href="(/static/catalog/site\.[0-9a-f]{12}\.css)"', index.text)
        assert css, index.text
        style = client.get(css.group(1))
        assert style.status_code == 200
        assert style.headers["content-type"].startswith("text/css")
        assert "immutable" in style.headers["cache-control"]
        # A websocket, through ASGI (Channels).
        with connect(url.replace("http", "ws") + "/ws/echo/", origin=url, open_timeout=10, proxy=None) as ws:
            ws.send("hello from the wheel")
            assert ws.recv(timeout=10) == "hello from the wheel"
        # Server-sent events, through ASGI by --asgi-path.
        with client.stream("GET", "/events/?count=2&interval=0.05") as events:
            assert events.status_code == 200
            assert events.headers["content-type"] == "text/event-stream"
            body = b"".join(events.iter_raw()).decode()
        assert [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")] == [
            {"n": 1, "of": 2},
            {"n": 2, "of": 2},
        ]
        log = log_path.read_text()
    assert "worker serving mysite.wsgi:application (WSGI, 1 thread) and mysite.asgi:application (ASGI" in log, log


def other_pythons() -> dict[str, str]:
    """CPython 3.10 and later found on this machine, besides the one running the tests: the abi3
    wheel must install on each (pyenv's interpreters count, so a developer machine tries several)."""
    found: dict[str, str] = {}
    pyenv_versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for minor in range(10, 20):
        name = f"python3.{minor}"
        if minor == sys.version_info.minor:
            continue
        candidates = [shutil.which(name), *sorted(pyenv_versions.glob(f"3.{minor}.*/bin/{name}"))]
        for candidate in filter(None, candidates):
            ok = subprocess.run([str(candidate), "-c", "import venv"], capture_output=True, timeout=30)
            if ok.returncode == 0:
                found[name] = str(candidate)
                break
    return found


OTHER_PYTHONS = other_pythons()


@pytest.mark.parametrize(
    "python",
    [pytest.param(path, id=name) for name, path in sorted(OTHER_PYTHONS.items())]
    or [pytest.param("", marks=pytest.mark.skip(reason="no other CPython >= 3.10 here"))],
)
def test_the_same_wheel_installs_on_other_pythons(python: str, dist: tuple[Path, Path], tmp_path: Path) -> None:
    venv = make_venv(python, tmp_path / "venv")
    venv.run("pip", "install", "-q", "--no-deps", dist[0])
    assert venv.run("rsgi", "--version", cwd=tmp_path).strip() == f"rsgi {VERSION}"
    venv.run("python", "-c", "import rsgi._rsgi, rsgi.supervisor, rsgi.asgi", cwd=tmp_path)


def test_the_sdist_builds_into_a_working_wheel_with_pip(dist: tuple[Path, Path], tmp_path: Path) -> None:
    """What pip does where no wheel fits: build from the sdist (this needs cargo), in a clean
    directory, with build isolation (maturin from PyPI). Only the extension's optimisation is
    lowered (no fat LTO, no debug info), to keep this quick: what is checked is that the sdist holds
    everything the build needs."""
    clean = tmp_path / "clean"
    clean.mkdir()
    sdist = shutil.copy(dist[1], clean)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("RSGI_")}
    env.update(
        CARGO_PROFILE_RELEASE_LTO="off",
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS="16",
        CARGO_PROFILE_RELEASE_DEBUG="0",
        # Dependencies compiled once are reused by later runs; the crate itself always builds anew.
        CARGO_TARGET_DIR=str(ROOT / "target" / "sdist-check"),
    )
    started = time.monotonic()
    with build_lock():
        out = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", "out", sdist],
            cwd=clean,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
    assert out.returncode == 0, f"pip could not build the sdist:\n{out.stdout[-6000:]}\n{out.stderr[-6000:]}"
    print(f"pip wheel from the sdist: {time.monotonic() - started:.0f} s")
    (wheel,) = (clean / "out").glob("rsgi-*.whl")
    assert wheel.name.startswith(f"rsgi-{VERSION}-cp310-abi3-"), wheel.name
    venv = make_venv(sys.executable, tmp_path / "venv")
    venv.run("pip", "install", "-q", "--no-deps", wheel)
    assert venv.run("rsgi", "--version", cwd=tmp_path).strip() == f"rsgi {VERSION}"
    venv.run("python", "-c", "import rsgi._rsgi", cwd=tmp_path)
