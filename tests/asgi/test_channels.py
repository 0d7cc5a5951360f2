"""Django Channels in the example project (examples/django_project, `mysite.asgi:application`)
served by rsgi: the /ws/echo/ and /ws/chat/<room>/ consumers, the Origin check of
AllowedHostsOriginValidator, and Django's HTTP pages from the same worker. Real server
subprocesses, real websockets clients."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import DJANGO_DIR, Server, StartServer, running
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

APP = "mysite.asgi:application"
BIG_SHA256 = "fea9ca5b29ed3196480b45f55b705c4bcf67ad545b464c1701669f13788c8378"  # examples README


def ws_connect(server: Server, path: str, **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("open_timeout", 5)
    kwargs.setdefault("close_timeout", 5)
    return connect(f"ws://127.0.0.1:{server.port}{path}", proxy=None, compression=None, **kwargs)


def recv_json(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=5))


@pytest.fixture(scope="module")
def channels_server(django_db: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The example under ASGI with its defaults (ALLOWED_HOSTS "*", in-memory channel layer), one worker."""
    log_dir = tmp_path_factory.mktemp("channels")
    with running(
        APP, "--chdir", str(DJANGO_DIR), "--workers", "1", log_dir=log_dir, env=django_db, ready_path="/hello"
    ) as server:
        yield server


def test_echo_text_and_binary(channels_server: Server) -> None:
    with ws_connect(channels_server, "/ws/echo/") as ws:
        ws.send("hello, channels ✓")
        assert ws.recv(timeout=5) == "hello, channels ✓"
        ws.send(b"\x00\x01\xfe\xff")
        assert ws.recv(timeout=5) == b"\x00\x01\xfe\xff"
        # Only the exact text "close" closes; this one is echoed.
        ws.send("close please")
        assert ws.recv(timeout=5) == "close please"


def test_echo_close_command_closes_with_4001(channels_server: Server) -> None:
    with ws_connect(channels_server, "/ws/echo/") as ws:
        ws.send("close")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 4001


def test_chat_room_members_see_each_other_and_other_rooms_do_not(channels_server: Server) -> None:
    with (
        ws_connect(channels_server, "/ws/chat/lobby/") as alice,
        ws_connect(channels_server, "/ws/chat/lobby/") as bob,
        ws_connect(channels_server, "/ws/chat/elsewhere/") as carol,
    ):
        alice.send(json.dumps({"message": "hi from alice"}))
        from_alice = recv_json(alice)  # the sender gets the broadcast too
        assert from_alice["message"] == "hi from alice"
        assert recv_json(bob) == from_alice

        bob.send(json.dumps({"message": "hi from bob"}))
        from_bob = recv_json(alice)
        assert from_bob["message"] == "hi from bob"
        assert recv_json(bob) == from_bob
        assert len(from_alice["from"]) == len(from_bob["from"]) == 8
        assert from_alice["from"] != from_bob["from"]

        # Carol's room got none of that: the first message she receives is her own, sent after
        # the lobby's broadcasts had already been delivered.
        carol.send(json.dumps({"message": "anyone here?"}))
        assert recv_json(carol)["message"] == "anyone here?"


def test_chat_rejects_malformed_messages(channels_server: Server) -> None:
    with ws_connect(channels_server, "/ws/chat/lobby/") as ws:
        ws.send(json.dumps({"text": "no message key"}))
        assert "error" in recv_json(ws)
        ws.send(json.dumps({"message": "fine"}))
        assert recv_json(ws)["message"] == "fine"


def test_unknown_websocket_path_is_refused(channels_server: Server) -> None:
    with pytest.raises(InvalidStatus) as info:
        ws_connect(channels_server, "/ws/nowhere/")
    assert info.value.response.status_code == 403


def test_any_origin_passes_with_the_default_allowed_hosts(channels_server: Server) -> None:
    # ALLOWED_HOSTS defaults to "*", so AllowedHostsOriginValidator lets every Origin through.
    with ws_connect(channels_server, "/ws/echo/", origin="http://evil.example") as ws:
        ws.send("ok")
        assert ws.recv(timeout=5) == "ok"


def test_http_pages_from_the_same_worker(channels_server: Server) -> None:
    assert len(channels_server.worker_pids()) == 1
    with ws_connect(channels_server, "/ws/echo/") as ws, httpx.Client(base_url=channels_server.url, timeout=10) as c:
        assert c.get("/hello").text == "Hello, world!"
        assert c.get("/ahello").text == "Hello, async world!"
        items = c.get("/items").json()
        assert [item["name"] for item in items[:2]] == ["Item 01", "Item 02"]
        big = c.get("/big")
        assert big.headers["content-type"] == "application/octet-stream"
        assert len(big.content) == 1024 * 1024
        assert hashlib.sha256(big.content).hexdigest() == BIG_SHA256
        assert "/ws/chat/" in c.get("/chat/lobby/").text
        ws.send("still open")
        assert ws.recv(timeout=5) == "still open"


def test_origin_not_in_allowed_hosts_is_refused(serve: StartServer, django_db: dict[str, str]) -> None:
    env = {**django_db, "DJANGO_ALLOWED_HOSTS": "127.0.0.1"}
    server = serve(APP, "--chdir", str(DJANGO_DIR), env=env, ready_path="/hello")
    for origin in ("http://evil.example", None):  # a foreign Origin, and none at all
        with pytest.raises(InvalidStatus) as info:
            ws_connect(server, "/ws/echo/", origin=origin)
        assert info.value.response.status_code == 403, origin
    with ws_connect(server, "/ws/echo/", origin=f"http://127.0.0.1:{server.port}") as ws:
        ws.send("allowed")
        assert ws.recv(timeout=5) == "allowed"
    assert httpx.get(server.url + "/hello", timeout=5).text == "Hello, world!"
