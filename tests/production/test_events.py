"""Server-sent events from the example's async view /events/: through rsgi in ASGI mode, and
through `rsgi --django mysite --asgi-path /events/` (pages on WSGI, the stream on ASGI, one
process). Events must reach the client one by one as the view yields them."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import httpx
import pytest
from conftest import Server

COUNT, INTERVAL = 5, 0.3


@pytest.fixture(params=["asgi_server", "dual_server"])
def server(request: pytest.FixtureRequest) -> Server:
    return request.getfixturevalue(request.param)


def read_events(response: httpx.Response) -> list[tuple[float, dict[str, str]]]:
    """Parse a text/event-stream as it arrives: (seconds since the start, fields) per event."""
    started = time.monotonic()
    events: list[tuple[float, dict[str, str]]] = []
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":  # a blank line ends an event
            if fields:
                events.append((time.monotonic() - started, fields))
            fields = {}
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
    assert not fields, f"the stream ended inside an event: {fields}"
    return events


def ticks(events: list[tuple[float, dict[str, str]]]) -> list[dict[str, Any]]:
    out = []
    for _, fields in events:
        if fields.get("event") == "tick":
            data = json.loads(fields["data"])
            assert fields["id"] == str(data["n"])
            out.append(data)
    return out


def test_events_arrive_one_by_one(server: Server) -> None:
    with (
        httpx.Client(base_url=server.url, timeout=20) as c,
        c.stream("GET", f"/events/?count={COUNT}&interval={INTERVAL}") as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["cache-control"] == "no-cache"
        assert "content-length" not in r.headers
        events = read_events(r)
    assert events[0][1] == {"retry": "1000"}
    assert ticks(events) == [{"n": n, "of": COUNT} for n in range(1, COUNT + 1)]
    # Each tick left the view INTERVAL after the previous one; buffered, they'd all arrive at once.
    times = [t for t, fields in events if fields.get("event") == "tick"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= INTERVAL * 0.5 for gap in gaps), f"events arrived in bursts: gaps {gaps}"
    assert times[-1] - times[0] >= (COUNT - 1) * INTERVAL * 0.8, times


def test_a_reconnecting_client_resumes_after_last_event_id(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=20) as c:
        with c.stream("GET", "/events/?count=5&interval=0", headers={"Last-Event-ID": "3"}) as r:
            assert r.status_code == 200
            assert ticks(read_events(r)) == [{"n": 4, "of": 5}, {"n": 5, "of": 5}]
        # Everything delivered: 204 tells EventSource to stop reconnecting.
        done = c.get("/events/?count=5", headers={"Last-Event-ID": "5"})
        assert (done.status_code, done.content) == (204, b"")
        assert c.get("/events/?count=many").status_code == 400


def test_django_buffers_the_stream_unless_it_is_served_through_asgi(wsgi_server: Server, dual_server: Server) -> None:
    # Why --asgi-path /events/: through WSGI, Django has to collect an async stream before it can
    # send it, and says so. The plain WSGI server shows the warning; the --django one never does.
    for server in (wsgi_server, dual_server):
        r = httpx.get(server.url + "/events/?count=2&interval=0", timeout=20)
        assert r.status_code == 200
        assert r.text.count("event: tick") == 2
    wsgi_server.wait_log("StreamingHttpResponse must consume asynchronous iterators")
    served = [line for line in dual_server.log().splitlines() if "mysite.asgi:application" in line]
    assert served and all("/events/" in line for line in served), served
    assert "must consume asynchronous iterators" not in dual_server.log()
