"""The path bench/fanout.py measures (issue #21 item 3): a producer outside the servers, a bare
channels-redis layer calling group_send, reaches the chat consumer's members through Redis.

The bench relies on two things checked here against the real example, rsgi with two workers and
a real Redis: a finished handshake means the socket is already in the group (its size in Redis
counts it), and the producer's event is relayed to every member as the bench's client parses it.
The producer is the bench's own (`bench/fanout.py produce`), run as the bench runs it."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import redis as redis_client
from conftest import Server

from .conftest import Redis, ws_connect

FANOUT = Path(__file__).resolve().parents[2] / "bench" / "fanout.py"


def test_a_group_send_from_outside_reaches_every_member(asgi_server: Server, redis: Redis) -> None:
    room = f"fanout-{uuid.uuid4().hex[:10]}"
    group = f"chat_{room}"
    with ws_connect(asgi_server, f"/ws/chat/{room}/") as alice, ws_connect(asgi_server, f"/ws/chat/{room}/") as bob:
        client = redis_client.Redis(host="127.0.0.1", port=redis.port)
        try:
            assert client.zcard(f"asgi:group:{group}") == 2  # joined before the handshakes finished
        finally:
            client.close()

        produce = [sys.executable, str(FANOUT), "produce", "--redis", redis.url, "--group", group]
        produce += ["--warmup", "0", "--messages", "1", "--interval", "0.01"]
        done = subprocess.run(produce, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        events = [json.loads(line) for line in done.stdout.splitlines()]
        assert [e["event"] for e in events] == ["measure", "sent"]

        for ws in (alice, bob):
            got = json.loads(ws.recv(timeout=10))
            assert got["from"] == "producer"
            seq, sent_ns = got["message"].split()
            assert seq == "0" and int(sent_ns) > 0
