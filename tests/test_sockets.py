"""Listening sockets the supervisor does not bind itself: an inherited descriptor (`fd://N`,
as systemd socket activation or a parent process hands over)."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
from conftest import TESTS, Server, base_env


def test_serves_an_inherited_listening_descriptor(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    server = Server(
        ["apps.basic:hello", "--bind", f"fd://{fd}"], TESTS, base_env(), tmp_path / "rsgi.log", port, pass_fds=(fd,)
    )
    try:
        listener.close()  # only the server holds the socket now
        server.wait_ready()
        r = httpx.get(server.url + "/", timeout=5)
        assert (r.status_code, r.text) == (200, "Hello, world!")
        assert f"listening on http://127.0.0.1:{port}" in server.log()
    finally:
        assert server.stop() == 0


def test_uvicorn_style_fd_flag(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    server = Server(
        ["apps.basic:hello", "--fd", str(fd)], TESTS, base_env(), tmp_path / "rsgi.log", port, pass_fds=(fd,)
    )
    try:
        listener.close()
        server.wait_ready()
        assert httpx.get(server.url + "/", timeout=5).status_code == 200
    finally:
        assert server.stop() == 0
