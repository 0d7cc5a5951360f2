"""Channels across separate rsgi instances through Redis (channels-redis): two servers of the
example on two ports, each with its own workers, share only REDIS_URL (and the database). Clients
of the chat consumer on each join the same room; what one sends, all receive. Pairs: two ASGI
instances, two `--django` instances, and one of each (as in a move from one mode to the other)."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from typing import Any

import psutil
import pytest
from conftest import Server
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection

from .conftest import ws_connect

PAIRS = [("asgi_server", "asgi_server_b"), ("dual_server", "dual_server_b"), ("asgi_server", "dual_server")]


def recv_json(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=10))


def send(ws: ClientConnection, message: str) -> None:
    ws.send(json.dumps({"message": message}))


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_a_chat_room_spans_instances(request: pytest.FixtureRequest, first: str, second: str) -> None:
    a: Server = request.getfixturevalue(first)
    b: Server = request.getfixturevalue(second)
    assert a.port != b.port
    room = f"room-{uuid.uuid4().hex[:12]}"  # fresh per test: nothing left over in Redis reaches it
    with (
        ws_connect(a, f"/ws/chat/{room}/") as alice,
        ws_connect(b, f"/ws/chat/{room}/") as bob,
        ws_connect(b, f"/ws/chat/{room}-other/") as carol,
    ):
        # The consumer joins the group before accepting, so once both handshakes are done both
        # are members: no wait is needed before sending.
        send(alice, "hello from instance A")
        from_alice = recv_json(bob)
        assert from_alice["message"] == "hello from instance A"
        assert recv_json(alice) == from_alice  # the sender gets the broadcast too

        send(bob, "and back from instance B")
        from_bob = recv_json(alice)
        assert from_bob["message"] == "and back from instance B"
        assert recv_json(bob) == from_bob
        assert from_alice["from"] != from_bob["from"]

        # Another room on the same instance got none of it: the first thing carol receives is
        # her own message, sent after both broadcasts above were delivered.
        send(carol, "anyone?")
        assert recv_json(carol)["message"] == "anyone?"


def worker_of(server: Server, ws: ClientConnection) -> int | None:
    """The pid of the worker process holding this client's connection (None: not found yet)."""
    client_port = ws.local_address[1]
    for pid in server.worker_pids():
        with contextlib.suppress(psutil.NoSuchProcess):
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.laddr and conn.raddr and (conn.laddr.port, conn.raddr.port) == (server.port, client_port):
                    return pid
    return None


def test_members_on_both_workers_and_both_instances_all_receive(asgi_server: Server, asgi_server_b: Server) -> None:
    # With the in-memory layer, members on different workers of one instance would not hear each
    # other. Connect to the two-worker instance until both of its workers hold a member (which
    # worker accepts is up to the kernel), then add two members on the other instance.
    room = f"crowd-{uuid.uuid4().hex[:12]}"
    with contextlib.ExitStack() as stack:
        clients: list[ClientConnection] = []
        owners: set[int] = set()
        deadline = time.monotonic() + 20
        while len(owners) < 2 and len(clients) < 40 and time.monotonic() < deadline:
            ws = stack.enter_context(ws_connect(asgi_server, f"/ws/chat/{room}/"))
            clients.append(ws)
            owner = worker_of(asgi_server, ws)
            assert owner is not None, "no worker holds the accepted connection"
            owners.add(owner)
        assert len(owners) == 2, f"{len(clients)} connections all went to worker(s) {owners}"
        clients += [stack.enter_context(ws_connect(asgi_server_b, f"/ws/chat/{room}/")) for _ in range(2)]
        for n, sender in enumerate(clients):
            send(sender, f"message {n}")
            for receiver in clients:
                got = recv_json(receiver)
                assert got["message"] == f"message {n}", (n, got)


def test_the_origin_check_uses_allowed_hosts(dual_server: Server) -> None:
    # DJANGO_ALLOWED_HOSTS is a real list here (not "*"): a foreign Origin is refused.
    with pytest.raises(InvalidStatus) as info:
        ws_connect(dual_server, "/ws/echo/", origin="http://evil.example")
    assert info.value.response.status_code == 403
    with ws_connect(dual_server, "/ws/echo/") as ws:
        ws.send("allowed")
        assert ws.recv(timeout=10) == "allowed"
