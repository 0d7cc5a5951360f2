"""Scopes share only immutable parts (src/asgi/scope.rs): what one request's app writes into its
scope's nested dicts (`extensions`, `asgi`, the per-extension dicts, the `headers` list) is not
seen by the next request or websocket, and the parts shared between scopes (header tuples, a
websocket's path, the client's address) still carry each connection's own values."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from conftest import StartServer
from websockets.sync.client import connect

APP = '''
import json


def mutate(scope):
    """What the scope looked like, then writes into every nested mutable part of it."""
    seen = {
        "asgi": dict(scope["asgi"]),
        "extensions": {k: dict(v) for k, v in scope["extensions"].items()},
        "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode(),
        "client": list(scope["client"]),
    }
    scope["asgi"]["version"] = "2.0"
    scope["extensions"]["leaked"] = {}
    for ext in scope["extensions"].values():
        ext["leaked"] = True
    scope["headers"].append((b"x-leaked", b"yes"))
    return json.dumps(seen)


async def app(scope, receive, send):
    if scope["type"] == "http":
        body = mutate(scope).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": mutate(scope)})
        await send({"type": "websocket.close"})
'''

CLEAN_ASGI = {"version": "3.0", "spec_version": "2.4"}
CLEAN_EXTENSIONS = {"http.response.pathsend": {}, "websocket.http.response": {}}


def test_one_scope_written_to_leaves_the_others_unchanged(serve: StartServer, tmp_path: Path) -> None:
    (tmp_path / "scope_app.py").write_text(APP)
    server = serve("scope_app:app", "--interface", "asgi", "--workers", "1", cwd=tmp_path)
    seen = []
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for agent in ("agent-a", "agent-b", "agent-a"):
            r = client.get("/", headers={"user-agent": agent, "accept": "*/*"})
            assert r.status_code == 200
            seen.append(r.json())
    for path in ("/ws/caf%C3%A9", "/ws/other", "/ws/caf%C3%A9"):
        with connect(f"ws://127.0.0.1:{server.port}{path}", open_timeout=10, user_agent_header="agent-ws") as ws:
            seen.append(json.loads(ws.recv(timeout=10)))
    for scope in seen:
        assert scope["asgi"] == CLEAN_ASGI
        assert scope["extensions"] == CLEAN_EXTENSIONS
        names = [name for name, _ in scope["headers"]]
        assert "x-leaked" not in names
        assert len(names) == len(set(names))
    agents = [dict(scope["headers"])["user-agent"] for scope in seen]
    assert agents == ["agent-a", "agent-b", "agent-a", "agent-ws", "agent-ws", "agent-ws"]
    assert [(s["path"], s["raw_path"]) for s in seen[3:]] == [
        ("/ws/café", "/ws/caf%C3%A9"),
        ("/ws/other", "/ws/other"),
        ("/ws/café", "/ws/caf%C3%A9"),
    ]
    ws_ports = [s["client"][1] for s in seen[3:]]
    assert all(s["client"][0] == "127.0.0.1" for s in seen)
    assert len(set(ws_ports)) == 3, ws_ports
    ws_headers = dict(seen[-1]["headers"])
    assert ws_headers["upgrade"] == "websocket"
    assert ws_headers["sec-websocket-version"] == "13"
    assert ws_headers["sec-websocket-key"] != dict(seen[-2]["headers"])["sec-websocket-key"]
