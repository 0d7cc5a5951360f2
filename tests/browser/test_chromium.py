"""The Django example in a real browser: Debian's Chromium driven by Playwright, against the server
`make serve` starts (its SERVE_FLAGS, read from the Makefile), over plain HTTP/1.1 and over TLS,
where Chromium must get HTTP/2 by ALPN. A user's first run, checked: every link on the index page
works, the admin login, the Channels chat between two pages, and the server-sent events stream.

Playwright never downloads a browser here: it launches /usr/bin/chromium (`.ci/run` installs it;
without it these tests skip, and fail under CI=true). Each test saves a screenshot of every page it
visits, and of every page still open at its end, in its tmp_path (printed with its output).
Waiting is Playwright's (`expect`, `wait_for_*`), never a sleep.
"""

from __future__ import annotations

import os
import re
import shlex
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme
from conftest import ADMIN_PASSWORD, ADMIN_USER, DJANGO_DIR, ROOT, TESTS, Server, base_env, free_port
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 15_000  # for each Playwright wait: generous for a loaded 2-core machine


def serve_flags() -> list[str]:
    """`make serve`'s flags for rsgi: SERVE_FLAGS, which its recipe must use."""
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^SERVE_FLAGS := (.+)$", makefile, re.MULTILINE)
    assert match, "no SERVE_FLAGS in the Makefile"
    assert re.search(r"^serve:.*\n(?:\t.*\n)*\t.*-m rsgi \$\(SERVE_FLAGS\)", makefile, re.MULTILINE), "serve"
    return shlex.split(match.group(1))


@dataclass
class Site:
    scheme: str
    server: Server
    protocol: str  # what Chromium's navigations must report as nextHopProtocol

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.port}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{CHROMIUM} is missing (CI=true: .ci/run is expected to install chromium)", pytrace=False)
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def wait_answering(server: Server, url: str, verify: ssl.SSLContext | bool) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert server.proc.poll() is None, f"rsgi exited with {server.proc.returncode}:\n{server.log()}"
        try:
            httpx.get(url, verify=verify, timeout=2)
            return
        except httpx.HTTPError:
            assert time.monotonic() < deadline, f"rsgi did not answer {url}:\n{server.log()}"
            time.sleep(0.05)


@pytest.fixture(scope="module", params=["http", "https"])
def site(
    request: pytest.FixtureRequest, django_db: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """`make serve`'s server on the example (a private database with the demo superuser), plain or
    with a throwaway CA's certificate."""
    scheme = request.param
    workdir = tmp_path_factory.mktemp(f"browser-{scheme}")
    port = free_port()
    args = [*serve_flags(), "--chdir", str(DJANGO_DIR), "--bind", f"127.0.0.1:{port}"]
    verify: ssl.SSLContext | bool = False
    if scheme == "https":
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        cert.private_key_pem.write_to_path(str(workdir / "key.pem"))
        (workdir / "chain.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        args += ["--certfile", str(workdir / "chain.pem"), "--keyfile", str(workdir / "key.pem")]
        verify = ssl.create_default_context()
        ca.configure_trust(verify)
    server = Server(args, TESTS, base_env(**django_db), workdir / "rsgi.log", port)
    try:
        found = Site(scheme, server, "h2" if scheme == "https" else "http/1.1")
        wait_answering(server, found.base + "/hello", verify)
        yield found
    finally:
        server.stop()


@pytest.fixture
def context(browser: Browser, site: Site, tmp_path: Path) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) that accepts the test CA's certificate; at the end every
    page still open is saved as a screenshot, which shows where a failed test stopped."""
    print(f"screenshots: {tmp_path}")
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1000, "height": 700})
    context.set_default_timeout(WAIT_MS)
    yield context
    for i, page in enumerate(context.pages):
        page.screenshot(path=tmp_path / f"at-end-{i}.png", full_page=True)
    context.close()


def shot(page: Page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=tmp_path / f"{name}.png", full_page=True)


def next_hop_protocol(page: Page) -> str:
    return page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")


def test_index_and_every_link_on_it(site: Site, context: BrowserContext, tmp_path: Path) -> None:
    page = context.new_page()
    response = page.goto(site.base + "/")
    assert response is not None and response.status == 200
    assert next_hop_protocol(page) == site.protocol
    expect(page.locator("h1")).to_have_text("rsgi Django example")
    # The stylesheet (a hashed name under /static/, served by the core) is applied.
    assert page.evaluate("getComputedStyle(document.body).maxWidth") == "672px"
    shot(page, tmp_path, "index")
    links = page.eval_on_selector_all("main a", "links => links.map(a => a.getAttribute('href'))")
    for needed in ("/hello", "/chat/lobby/", "/events/?count=3&interval=0.2", "/admin/"):
        assert needed in links, (needed, links)
    for href in links:
        # Every link answers as it should (the request API shares the page's cookies and TLS).
        answer = context.request.get(site.base + href)
        assert answer.status == (500 if href == "/error" else 200), (href, answer.status, answer.text()[:500])
        if answer.headers["content-type"].startswith("application/octet-stream"):
            continue  # /download and /big: a browser saves these rather than showing them
        # ... and the browser shows it.
        response = page.goto(site.base + href)
        assert response is not None and response.status == answer.status, href
        if href.startswith("/chat/"):
            expect(page.locator("#status")).to_have_text("connected")
        shot(page, tmp_path, re.sub(r"[^a-z0-9]+", "-", href).strip("-"))


def test_admin_login(site: Site, context: BrowserContext, tmp_path: Path) -> None:
    page = context.new_page()
    page.goto(site.base + "/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/admin/$"))
    shot(page, tmp_path, "admin-login")
    page.fill("#id_username", ADMIN_USER)
    page.fill("#id_password", ADMIN_PASSWORD)
    with page.expect_navigation():
        page.click("input[type=submit]")
    expect(page).to_have_url(site.base + "/admin/")
    expect(page.locator("#site-name")).to_have_text("Django administration")
    expect(page.locator("#user-tools strong")).to_have_text(ADMIN_USER)
    assert next_hop_protocol(page) == site.protocol
    shot(page, tmp_path, "admin-index")
    page.click("text=Items")
    expect(page).to_have_url(site.base + "/admin/catalog/item/")
    expect(page.locator("#result_list")).to_contain_text("Item 01")
    shot(page, tmp_path, "admin-items")


def test_chat_between_two_pages(site: Site, context: BrowserContext, tmp_path: Path) -> None:
    room = f"browser-{site.scheme}"
    alice, bob = context.new_page(), context.new_page()
    for page in (alice, bob):
        page.goto(f"{site.base}/chat/{room}/")
        expect(page.locator("#status")).to_have_text("connected")
    assert next_hop_protocol(alice) == site.protocol
    # The page's websocket is ws:// or wss:// as the page is; over TLS, Chromium opens it as an
    # HTTP/2 extended CONNECT stream (RFC 8441), permessage-deflate both ways.
    assert alice.evaluate("socket.url") == f"{site.base.replace('http', 'ws', 1)}/ws/chat/{room}/"

    def say(page: Page, text: str) -> None:
        page.fill("#message", text)
        page.press("#message", "Enter")

    say(alice, f"hello from alice over {site.scheme}")
    for page in (alice, bob):
        expect(page.locator("#log li")).to_have_count(1)
        expect(page.locator("#log li").nth(0)).to_contain_text(f": hello from alice over {site.scheme}")
    say(bob, "hello alice")
    for page in (alice, bob):
        expect(page.locator("#log li")).to_have_count(2)
        expect(page.locator("#log li").nth(1)).to_contain_text(": hello alice")
    lines = [alice.locator("#log li").nth(i).inner_text() for i in range(2)]
    assert lines == [bob.locator("#log li").nth(i).inner_text() for i in range(2)]
    senders = {line.split(":")[0] for line in lines}
    assert len(senders) == 2, f"two pages, two connections: {lines}"
    shot(alice, tmp_path, "chat-alice")
    shot(bob, tmp_path, "chat-bob")


# EventSource in the page: resolves with each "tick" event and when it arrived (ms after opening).
READ_EVENTS = """
([url, wanted]) => new Promise((resolve, reject) => {
  const started = performance.now();
  const seen = [];
  const source = new EventSource(url);
  const list = document.createElement("ol");
  list.id = "events";
  document.querySelector("main").appendChild(list);
  const timer = setTimeout(() => { source.close(); reject(new Error("events so far: " + seen.length)); }, 15000);
  source.addEventListener("tick", (e) => {
    seen.push({id: e.lastEventId, data: JSON.parse(e.data), at: performance.now() - started});
    const item = document.createElement("li");
    item.textContent = e.lastEventId + ": " + e.data;
    list.appendChild(item);
    if (seen.length === wanted) { clearTimeout(timer); source.close(); resolve(seen); }
  });
  source.onerror = () => { clearTimeout(timer); source.close(); reject(new Error("EventSource failed")); };
})
"""


def test_server_sent_events_stream(site: Site, context: BrowserContext, tmp_path: Path) -> None:
    page = context.new_page()
    page.goto(site.base + "/")
    count, interval = 4, 0.3
    events = page.evaluate(READ_EVENTS, [f"/events/?count={count}&interval={interval}", count])
    assert [(e["id"], e["data"]) for e in events] == [(str(n), {"n": n, "of": count}) for n in range(1, count + 1)]
    # Streamed as produced (ASGI, --asgi-path /events/), not collected and sent at the end.
    spread = (events[-1]["at"] - events[0]["at"]) / 1000
    assert spread >= (count - 1) * interval * 0.8, events
    expect(page.locator("#events li")).to_have_count(count)
    shot(page, tmp_path, "events-in-page")
    # The index's link to the stream itself: Chromium shows the text/event-stream as text.
    response = page.goto(site.base + "/events/?count=3&interval=0.2")
    assert response is not None and response.status == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert next_hop_protocol(page) == site.protocol
    expect(page.locator("pre")).to_contain_text('data: {"n": 3, "of": 3}')
    shot(page, tmp_path, "events")
