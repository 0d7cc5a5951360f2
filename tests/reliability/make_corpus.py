"""Writes the malformed/edge-case HTTP/1.1 request corpus: one `NNN-name.http` file per case holding
the exact bytes sent on the wire, and `expected.json` with what the server must do with each.

Run `python tests/reliability/make_corpus.py` after editing CASES; the output is deterministic.

Expectations come from RFC 9110/9112 and the project's rules (malformed HTTP gets 400/413/431/414
and the connection is closed; a request never reaches the app with a wrong body), not from what rsgi
happens to do. Where the RFC allows several answers, all of them are listed.

Expectation fields (expected.json, keyed by file name):
  category     groups cases for the README table
  status       acceptable status codes of the first final response; 0 = the connection closed
               without any response
  close        "yes": the server must close the connection after its response(s); "no": it must
               keep it open (a follow-up request on it must be answered); "either"
  responses    how many final responses the case must get (default: 1, or 0 when closed silently)
  app          for a 200, what the app must have seen: method, path (decoded, as latin-1 text: the
               WSGI PATH_INFO; ASGI's `path` is the same bytes decoded as UTF-8 with replacement),
               path_len, query, host (null = no Host header), protocol, body_len, body_sha256,
               headers {name: [values]}, headers_ws {name: value, whitespace runs compared as one
               space}, absent_headers [names]
  paths        PATH_INFO of every response in order (pipelining cases)
  no_interim   no 1xx response may be sent
  note         why (the RFC section or rule)
Every case also implies: no response ever contains "smuggled" (hidden requests use /smuggled).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent / "corpus"

SMUG = b"GET /smuggled HTTP/1.1\r\nHost: test\r\n\r\n"
HELLO = b"hello world"


def req(line: bytes, *headers: bytes, body: bytes = b"", host: bool = True) -> bytes:
    """A request: the line, Host (unless host=False), the given header lines, a blank line, the body."""
    head = line + b"\r\n" + (b"Host: test\r\n" if host else b"")
    return head + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


def post(*headers: bytes, body: bytes = b"", path: bytes = b"/") -> bytes:
    return req(b"POST " + path + b" HTTP/1.1", *headers, body=body)


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def body_facts(body: bytes) -> dict:
    return {"body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest()}


def app(path: str = "/", body: bytes = b"", **facts: object) -> dict:
    return {"path": path, **body_facts(body), **facts}


@dataclass
class Case:
    num: int
    name: str
    data: bytes
    status: list[int]
    close: str
    category: str
    note: str
    app: dict | None = None
    responses: int | None = None
    paths: list[str] | None = None
    no_interim: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def file(self) -> str:
        return f"{self.num:03d}-{self.name}.http"

    def expectation(self) -> dict:
        out: dict = {"category": self.category, "status": self.status, "close": self.close}
        if self.responses is not None:
            out["responses"] = self.responses
        if self.app is not None:
            out["app"] = self.app
        if self.paths is not None:
            out["paths"] = self.paths
        if self.no_interim:
            out["no_interim"] = True
        out["note"] = self.note
        return out


CASES: list[Case] = []
_category = ""


def category(name: str) -> None:
    global _category
    _category = name


def case(
    num: int,
    name: str,
    data: bytes,
    status: int | list[int],
    close: str | None = None,
    note: str = "",
    **kw: object,
) -> None:
    statuses = [status] if isinstance(status, int) else status
    if close is None:
        close = "no" if statuses == [200] else "yes"
    CASES.append(Case(num, name, data, statuses, close, _category, note, **kw))  # type: ignore[arg-type]


def bad(num: int, name: str, data: bytes, note: str, status: int | list[int] = 400) -> None:
    """Malformed: refused (400 unless given) and the connection closed."""
    case(num, name, data, status, "yes", note)


# -- valid baselines (prove the harness sees what a good request looks like) --------------------
category("valid baseline")
case(
    1,
    "get-minimal",
    req(b"GET /plain?x=1 HTTP/1.1"),
    200,
    note="baseline",
    app=app("/plain", method="GET", query="x=1", host="test", protocol="HTTP/1.1"),
)
case(
    2,
    "post-content-length",
    post(b"Content-Length: 11", body=HELLO, path=b"/cl"),
    200,
    note="baseline",
    app=app("/cl", HELLO, method="POST"),
)
case(
    3,
    "post-chunked",
    post(b"Transfer-Encoding: chunked", body=chunked(b"hello", b" world")),
    200,
    note="baseline chunked body",
    app=app("/", HELLO),
)
case(
    4,
    "pipelined-two",
    post(b"Content-Length: 5", body=b"hello", path=b"/first") + req(b"GET /second HTTP/1.1"),
    200,
    note="two pipelined requests, answered in order",
    responses=2,
    paths=["/first", "/second"],
    app=app("/first", b"hello"),
)
case(
    5,
    "http10-get",
    b"GET /old HTTP/1.0\r\n\r\n",
    200,
    "yes",
    "RFC 9112 9.3: HTTP/1.0 without keep-alive closes; Host is optional in 1.0",
    app=app("/old", protocol="HTTP/1.0", host=None),
)
case(
    6,
    "leading-empty-line",
    b"\r\n" + req(b"GET /after-crlf HTTP/1.1"),
    200,
    note="RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request-line",
    app=app("/after-crlf"),
)

# -- request line ------------------------------------------------------------------------------
category("request line")
bad(10, "no-version", b"GET /\r\nHost: test\r\n\r\n", "RFC 9112 3: no HTTP-version (an HTTP/0.9 line)")
bad(11, "missing-target", b"GET HTTP/1.1\r\nHost: test\r\n\r\n", "RFC 9112 3: no request-target")
bad(12, "missing-method", b"/ HTTP/1.1\r\nHost: test\r\n\r\n", "RFC 9112 3: no method")
bad(13, "method-only", b"GET\r\nHost: test\r\n\r\n", "RFC 9112 3: method alone")
lenient = "RFC 9112 3: a recipient MAY split on whitespace runs; otherwise 400"
case(14, "double-space-after-method", req(b"GET  /ws HTTP/1.1"), [200, 400], "either", lenient, app=app("/ws"))
case(15, "double-space-before-version", req(b"GET /ws  HTTP/1.1"), [200, 400], "either", lenient, app=app("/ws"))
case(16, "tab-separators", req(b"GET\t/ws\tHTTP/1.1"), [200, 400], "either", lenient, app=app("/ws"))
case(17, "leading-space", req(b" GET /ws HTTP/1.1"), [200, 400], "either", lenient, app=app("/ws"))
case(18, "trailing-space-after-version", req(b"GET /ws HTTP/1.1 "), [200, 400], "either", lenient, app=app("/ws"))
case(
    19,
    "lowercase-method",
    req(b"get /lower HTTP/1.1"),
    200,
    note="RFC 9110 9.1: methods are case-sensitive tokens; 'get' is an extension method the app sees as is",
    app=app("/lower", method="get"),
)
bad(20, "lowercase-http-name", req(b"GET / http/1.1"), "RFC 9112 2.3: HTTP-name is case-sensitive")
bad(21, "version-http2", req(b"GET / HTTP/2.0"), "RFC 9110 15.6.6: major version 2 over HTTP/1 syntax", [400, 505])
case(
    22,
    "version-1-2",
    req(b"GET /v12 HTTP/1.2"),
    [200, 400],
    "either",
    "RFC 9110 2.5: a higher minor version SHOULD be processed as HTTP/1.1 (or refused)",
    app=app("/v12", protocol="HTTP/1.1"),
)
bad(23, "version-0-9", req(b"GET / HTTP/0.9"), "HTTP/0.9 is not HTTP/1.x syntax", [400, 505])
bad(24, "version-1-10", req(b"GET / HTTP/1.10"), "RFC 9112 2.3: HTTP-version is DIGIT.DIGIT")
bad(25, "version-3-0", req(b"GET / HTTP/3.0"), "RFC 9110 15.6.6: unsupported major version", [400, 505])
bad(26, "version-no-minor", req(b"GET / HTTP/1"), "RFC 9112 2.3: HTTP-version is DIGIT.DIGIT")
bad(
    27,
    "bare-cr-in-request-line",
    b"GET / HTTP/1.1\rHost: test\r\n\r\n",
    "RFC 9112 2.2: a bare CR makes the element invalid (or becomes SP: still an invalid line)",
)
case(
    28,
    "bare-lf-line-endings",
    b"GET /lf HTTP/1.1\nHost: test\n\n",
    [200, 400],
    "either",
    "RFC 9112 2.2: a recipient MAY accept a bare LF as line terminator",
    app=app("/lf"),
)
bad(
    29,
    "http2-preface-then-http1",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + req(b"GET / HTTP/1.1"),
    "the HTTP/2 preface (h2c is on by default) followed by HTTP/1 bytes instead of frames: "
    "the HTTP/2 side answers GOAWAY and closes; no HTTP/1 response, the app is not called",
    [0],
)
bad(30, "version-lowercase-and-garbage", req(b"GET / HTTP/1.1x"), "RFC 9112 2.3: junk after the version")

# -- methods -----------------------------------------------------------------------------------
category("methods")
case(
    31,
    "extension-method",
    req(b"PURGE /m HTTP/1.1"),
    200,
    note="RFC 9110 9.1: extension methods reach the app",
    app=app("/m", method="PURGE"),
)
case(
    32, "method-with-hyphen", req(b"M-SEARCH /m HTTP/1.1"), 200, note="'-' is a tchar", app=app("/m", method="M-SEARCH")
)
bad(33, "method-at-sign", req(b"GE@T / HTTP/1.1"), "RFC 9110 9.1: method = token; '@' is not a tchar")
bad(34, "method-parenthesis", req(b"G(ET / HTTP/1.1"), "'(' is not a tchar")
bad(35, "method-comma", req(b"GET, / HTTP/1.1"), "',' is not a tchar")
bad(36, "method-utf8", req(b"G\xc3\x89T / HTTP/1.1"), "non-ASCII is not a tchar")
bad(37, "method-nul", req(b"GE\x00T / HTTP/1.1"), "NUL in the method")
case(
    38,
    "long-method",
    req(b"A" * 64 + b" /m HTTP/1.1"),
    [200, 501],
    note="RFC 9112 3: a method longer than any implemented SHOULD get 501; served is fine for a gateway",
    close="either",
    app=app("/m", method="A" * 64),
)
bad(39, "method-slash", req(b"GET/ / HTTP/1.1"), "'/' is not a tchar")

# -- obs-fold and whitespace lines ---------------------------------------------------------------
category("obs-fold")
fold = "RFC 9112 5.2: obs-fold MUST be rejected with 400 or replaced by SP"
case(
    40,
    "obs-fold-space",
    req(b"GET /fold HTTP/1.1", b"X-Folded: a", b" b"),
    [200, 400],
    "either",
    fold,
    app=app("/fold", headers_ws={"x-folded": "a b"}),
)
case(
    41,
    "obs-fold-tab",
    req(b"GET /fold HTTP/1.1", b"X-Folded: a", b"\tb"),
    [200, 400],
    "either",
    fold,
    app=app("/fold", headers_ws={"x-folded": "a b"}),
)
bad(
    42,
    "obs-fold-host",
    b"GET / HTTP/1.1\r\nHost: test\r\n .example\r\n\r\n",
    "obs-fold on Host: rejected, or unfolded into 'test .example', an invalid Host (RFC 9112 3.2: 400)",
)
case(
    43,
    "whitespace-before-first-header",
    b"GET /wsl HTTP/1.1\r\n X-Ignored: y\r\nHost: test\r\n\r\n",
    [200, 400],
    "either",
    "RFC 9112 2.2: whitespace between start-line and first field: reject, or ignore that line",
    app=app("/wsl", absent_headers=["x-ignored"]),
)
case(
    44,
    "obs-fold-te-with-cl",
    post(
        b"Content-Length: %d" % len(b"0\r\n\r\n" + SMUG), b"Transfer-Encoding:", b" chunked", body=b"0\r\n\r\n" + SMUG
    ),
    [200, 400],
    "yes",
    "obs-fold hides Transfer-Encoding next to Content-Length: 400, or unfold, use chunked "
    "(empty body) and close (RFC 9112 6.3)",
    app=app("/"),
)

# -- NUL and control bytes -----------------------------------------------------------------------
category("control bytes")
bad(45, "nul-in-target", req(b"GET /a\x00b HTTP/1.1"), "RFC 9112 3.2: NUL is not allowed in a request-target")
bad(46, "ctl-in-target", req(b"GET /a\x01b HTTP/1.1"), "CTL in the request-target")
bad(47, "del-in-target", req(b"GET /a\x7fb HTTP/1.1"), "DEL in the request-target")
bad(48, "tab-in-target", req(b"GET /a\tb HTTP/1.1"), "HTAB inside the target (whitespace-split: 4 words)")
bad(49, "nul-in-header-name", req(b"GET / HTTP/1.1", b"X-A\x00b: v"), "RFC 9110 5.1: field-name = token")
bad(50, "ctl-in-header-name", req(b"GET / HTTP/1.1", b"X-\x01A: v"), "CTL in a field name")
case(
    51,
    "nul-in-header-value",
    req(b"GET /v HTTP/1.1", b"X-A: a\x00b"),
    [200, 400],
    "either",
    "RFC 9110 5.5: NUL in a value MUST be rejected or replaced with SP",
    app=app("/v", headers={"x-a": ["a b"]}),
)
case(
    52,
    "ctl-in-header-value",
    req(b"GET /v HTTP/1.1", b"X-A: a\x01b"),
    [200, 400],
    "either",
    "RFC 9110 5.5: other CTLs are invalid; recipients MAY retain them",
    app=app("/v", headers={"x-a": ["a\x01b"]}),
)
case(
    53,
    "del-in-header-value",
    req(b"GET /v HTTP/1.1", b"X-A: a\x7fb"),
    [200, 400],
    "either",
    "RFC 9110 5.5: DEL is a CTL: reject or retain",
    app=app("/v", headers={"x-a": ["a\x7fb"]}),
)
case(
    54,
    "bare-cr-in-header-value",
    req(b"GET /v HTTP/1.1", b"X-A: a\rb"),
    [200, 400],
    "either",
    "RFC 9112 2.2 / 9110 5.5: a bare CR MUST be rejected or replaced with SP",
    app=app("/v", headers={"x-a": ["a b"]}),
)
case(
    55,
    "tab-in-header-value",
    req(b"GET /v HTTP/1.1", b"X-A: a\tb"),
    200,
    note="RFC 9110 5.5: HTAB is allowed inside a value",
    app=app("/v", headers={"x-a": ["a\tb"]}),
)
case(
    56,
    "obs-text-in-header-value",
    req(b"GET /v HTTP/1.1", b"X-A: caf\xe9"),
    200,
    note="RFC 9110 5.5: obs-text is allowed; the app gets the bytes (latin-1)",
    app=app("/v", headers={"x-a": ["caf\xe9"]}),
)
case(
    57,
    "utf8-in-header-value",
    req(b"GET /v HTTP/1.1", b"X-A: caf\xc3\xa9"),
    200,
    note="UTF-8 bytes are obs-text; passed through unchanged",
    app=app("/v", headers={"x-a": ["caf\xc3\xa9"]}),
)
bad(
    58,
    "bare-lf-then-invalid-line",
    b"GET / HTTP/1.1\r\nHost: test\r\nX-A: a\nbad header\r\n\r\n",
    "a bare LF ends the field line (MAY) and leaves 'bad header', an invalid field line",
)

# -- header names --------------------------------------------------------------------------------
category("header names")
bad(
    60,
    "space-before-colon",
    req(b"GET / HTTP/1.1", b"X-A : v"),
    "RFC 9112 5.1: whitespace between field name and colon MUST get 400",
)
bad(61, "tab-before-colon", req(b"GET / HTTP/1.1", b"X-A\t: v"), "RFC 9112 5.1: as above, with HTAB")
bad(62, "empty-header-name", req(b"GET / HTTP/1.1", b": v"), "RFC 9110 5.1: field-name = token (1+ chars)")
bad(63, "header-name-parenthesis", req(b"GET / HTTP/1.1", b"X(A): v"), "'(' is not a tchar")
bad(64, "header-name-at-sign", req(b"GET / HTTP/1.1", b"X@A: v"), "'@' is not a tchar")
bad(65, "header-name-slash", req(b"GET / HTTP/1.1", b"X/A: v"), "'/' is not a tchar")
bad(66, "header-name-quote", req(b"GET / HTTP/1.1", b'X"A: v'), "'\"' is not a tchar")
bad(67, "header-name-utf8", req(b"GET / HTTP/1.1", b"X-\xc3\xa9: v"), "non-ASCII is not a tchar")
bad(68, "header-without-colon", req(b"GET / HTTP/1.1", b"X-A v"), "RFC 9112 5: field-line needs a colon")
case(
    69,
    "header-name-underscore",
    req(b"GET /u HTTP/1.1", b"X_A: v"),
    200,
    note="'_' is a tchar: valid (the WSGI bridge drops it on purpose)",
    app=app("/u"),
)
case(
    70,
    "duplicate-header-lines",
    req(b"GET /d HTTP/1.1", b"X-Dup: 1", b"X-Dup: 2"),
    200,
    note="RFC 9110 5.3: repeated fields combine into a list",
    app=app("/d", headers={"x-dup": ["1", "2"]}),
)
case(
    71,
    "empty-header-value",
    req(b"GET /e HTTP/1.1", b"X-Empty:"),
    200,
    note="RFC 9110 5.5: empty values are valid",
    app=app("/e", headers={"x-empty": [""]}),
)
case(
    72,
    "header-value-ows-trimmed",
    req(b"GET /o HTTP/1.1", b"X-A: \t v \t "),
    200,
    note="RFC 9112 5: OWS around a value is not part of it",
    app=app("/o", headers={"x-a": ["v"]}),
)
case(
    73,
    "header-name-mixed-case",
    req(b"GET /c HTTP/1.1", b"x-MiXeD: v"),
    200,
    note="RFC 9110 5.1: names are case-insensitive",
    app=app("/c", headers={"x-mixed": ["v"]}),
)

# -- size limits (defaults: 100 fields, 8190 bytes per field, 96 KiB head, 8190-byte target) ---
category("size limits")
h99 = [b"X-H%d: v" % i for i in range(99)]
case(
    75,
    "fields-100",
    req(b"GET /f HTTP/1.1", *h99),
    200,
    note="Host + 99 = 100 fields: at the limit",
    app=app("/f", headers={"x-h98": ["v"]}),
)
bad(76, "fields-101", req(b"GET / HTTP/1.1", *h99, b"X-H99: v"), "101 fields: over --limit-request-fields", 431)
case(
    77,
    "field-size-8190",
    req(b"GET /s HTTP/1.1", b"X-Big: " + b"v" * (8190 - 5)),
    200,
    note="name + value = 8190 bytes: at --limit-request-field-size",
    app=app("/s"),
)
bad(
    78,
    "field-size-8191",
    req(b"GET / HTTP/1.1", b"X-Big: " + b"v" * (8191 - 5)),
    "name + value = 8191 bytes: over --limit-request-field-size",
    431,
)
pad12 = [b"X-Pad-%02d: " % i + b"p" * 8000 for i in range(12)]
case(
    79,
    "head-under-96k",
    req(b"GET /h HTTP/1.1", *pad12),
    200,
    note="12 fields of 8000 bytes: ~94 KiB head, under the 96 KiB cap",
    app=app("/h"),
)
bad(
    80,
    "head-over-96k",
    req(b"GET / HTTP/1.1", *pad12, b"X-Pad-12: " + b"p" * 8000),
    "13 fields of 8000 bytes: ~102 KiB head, over the 96 KiB cap",
    431,
)
bad(81, "single-field-100k", req(b"GET / HTTP/1.1", b"X-Big: " + b"v" * 100_000), "one 100 KB field", 431)
bad(82, "fields-1000", req(b"GET / HTTP/1.1", *[b"X-E%d:" % i for i in range(1000)]), "1000 fields", 431)
target = b"/" + b"t" * 8189
case(
    83,
    "target-8190",
    req(b"GET " + target + b" HTTP/1.1"),
    200,
    note="target of 8190 bytes: at --limit-request-line",
    app={"path_len": 8190, **body_facts(b"")},
)
bad(84, "target-8191", req(b"GET " + target + b"t HTTP/1.1"), "target of 8191 bytes: over the limit", 414)
bad(85, "target-70000", req(b"GET /" + b"t" * 69_999 + b" HTTP/1.1"), "target past hyper's 64 KiB cap", 414)

# -- Content-Length ------------------------------------------------------------------------------
category("Content-Length")
cl_bad = "RFC 9110 8.6 / 9112 6.3: Content-Length = 1*DIGIT; invalid MUST get 400 and close"
bad(90, "cl-non-numeric", post(b"Content-Length: abc", body=b"abc"), cl_bad)
bad(91, "cl-negative", post(b"Content-Length: -1"), cl_bad)
bad(92, "cl-overflow", post(b"Content-Length: 99999999999999999999", body=b"x"), cl_bad + " (overflows u64)")
bad(93, "cl-u64-max-plus-one", post(b"Content-Length: 18446744073709551616", body=b"x"), cl_bad + " (2^64)")
case(
    94,
    "cl-list-same",
    post(b"Content-Length: 5, 5", body=b"hello"),
    [200, 400],
    "either",
    "RFC 9110 8.6: '5, 5' MAY be rejected or taken as 5",
    app=app("/", b"hello"),
)
bad(95, "cl-list-different", post(b"Content-Length: 5, 6", body=b"hello!"), cl_bad + " (differing list)")
bad(96, "cl-plus-sign", post(b"Content-Length: +5", body=b"hello"), cl_bad + " ('+' is not a DIGIT)")
bad(97, "cl-hex", post(b"Content-Length: 0x5", body=b"hello"), cl_bad + " (hex)")
bad(98, "cl-empty", post(b"Content-Length:", body=b"hello"), cl_bad + " (empty)")
bad(99, "cl-decimal-point", post(b"Content-Length: 5.0", body=b"hello"), cl_bad + " (decimal point)")
case(
    100,
    "cl-leading-zeros",
    post(b"Content-Length: 005", body=b"hello"),
    200,
    note="1*DIGIT allows leading zeros",
    app=app("/", b"hello"),
)
case(
    101,
    "cl-ows",
    post(b"Content-Length: \t 5 \t", body=b"hello"),
    200,
    note="RFC 9112 5: OWS around the value",
    app=app("/", b"hello"),
)
case(
    102,
    "cl-duplicate-same",
    post(b"Content-Length: 5", b"Content-Length: 5", body=b"hello"),
    [200, 400],
    "either",
    "RFC 9110 8.6: identical repeated lengths MAY be rejected or merged",
    app=app("/", b"hello"),
)
bad(
    103,
    "cl-duplicate-different",
    post(b"Content-Length: 5", b"Content-Length: 6", body=b"hello!"),
    "RFC 9112 6.3: differing lengths are an unrecoverable error: 400 and close",
)
bad(
    104,
    "cl-huge-valid",
    post(b"Content-Length: 9223372036854775807"),
    "a valid length far over --max-body-size: 413 before reading",
    413,
)
bad(105, "cl-inner-space", post(b"Content-Length: 1 0", body=b"helloworld"), cl_bad + " (space inside)")
case(
    106,
    "cl-on-get",
    req(b"GET /g HTTP/1.1", b"Content-Length: 5", body=b"hello"),
    200,
    note="RFC 9110 9.3.1: a GET body is framed and delivered like any other",
    app=app("/g", b"hello", method="GET"),
)
case(107, "cl-zero-post", post(b"Content-Length: 0"), 200, note="empty body", app=app("/", method="POST"))
bad(108, "cl-underscore", post(b"Content-Length: 1_0", body=b"helloworld"), cl_bad + " ('_' separator)")

# -- Transfer-Encoding ---------------------------------------------------------------------------
category("Transfer-Encoding")
TE = b"Transfer-Encoding: "
not_last = "RFC 9112 6.3: chunked not the final coding: MUST 400 and close"
case(
    110,
    "te-chunked-uppercase",
    post(TE + b"Chunked", body=chunked(HELLO)),
    200,
    note="RFC 9112 7: coding names are case-insensitive",
    app=app("/", HELLO),
)
double = chunked(chunked(b"hello"))  # the body, chunked twice
case(
    111,
    "te-chunked-twice-list",
    post(TE + b"chunked, chunked", body=double),
    [200, 400, 501],
    "either",
    "RFC 9112 6.1: chunked MUST NOT be applied twice; refuse, or decode both layers (never pass framing "
    "through as body)",
    app=app("/", b"hello"),
)
case(
    112,
    "te-chunked-twice-lines",
    post(TE + b"chunked", TE + b"chunked", body=double),
    [200, 400, 501],
    "either",
    "two Transfer-Encoding lines = 'chunked, chunked' (RFC 9110 5.3)",
    app=app("/", b"hello"),
)
bad(113, "te-chunked-identity", post(TE + b"chunked, identity", body=chunked(b"hello")), not_last)
bad(114, "te-identity", post(TE + b"identity", body=b"hello"), not_last, [400, 501])
bad(115, "te-xchunked", post(TE + b"xchunked", body=chunked(b"hello")), not_last, [400, 501])
bad(
    116,
    "te-gzip-chunked",
    post(TE + b"gzip, chunked", body=chunked(b"\x1f\x8b\x08\x00")),
    "RFC 9112 6.1: an unimplemented transfer coding SHOULD get 501 (the app must never see coded bytes)",
    [400, 501],
)
bad(
    117,
    "te-http10",
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"hello"),
    "RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 MUST be treated as faulty framing",
)
bad(118, "te-chunked-then-gzip", post(TE + b"chunked, gzip", body=chunked(b"hello")), not_last, [400, 501])
bad(
    119,
    "te-vt-before-chunked",
    post(TE + b"\x0bchunked", body=chunked(b"hello")),
    "VT is a CTL, not OWS: the value is invalid / not 'chunked'",
    [400, 501],
)
bad(
    120,
    "te-nbsp-before-chunked",
    post(TE + b"\xa0chunked", body=chunked(b"hello")),
    "NBSP (0xA0) is not OWS (gunicorn#3364): not 'chunked'",
    [400, 501],
)
bad(
    121,
    "te-vt-after-chunked",
    post(TE + b"chunked\x0b", body=chunked(b"hello")),
    "VT after the coding: invalid",
    [400, 501],
)
case(
    122,
    "te-ows-around-chunked",
    post(TE + b"\t chunked \t", body=chunked(HELLO)),
    200,
    note="RFC 9112 5: SP/HTAB OWS around the value is fine",
    app=app("/", HELLO),
)
case(
    123,
    "te-empty-element-before",
    post(TE + b", chunked", body=chunked(HELLO)),
    200,
    note="RFC 9110 5.6.1.2: recipients MUST ignore empty list elements",
    app=app("/", HELLO),
)
case(
    124,
    "te-empty-element-after",
    post(TE + b"chunked,", body=chunked(HELLO)),
    200,
    note="RFC 9110 5.6.1.2: recipients MUST ignore empty list elements ('chunked,' is 'chunked')",
    app=app("/", HELLO),
)
bad(
    125,
    "te-empty-value-with-cl",
    post(TE.rstrip(), b"Content-Length: 5", body=b"hello"),
    "an empty Transfer-Encoding has no final chunked: 400",
    [400, 501],
)
bad(
    126,
    "te-quoted-chunked",
    post(TE + b'"chunked"', body=chunked(b"hello")),
    "a quoted coding is not 'chunked'",
    [400, 501],
)
te_cl = "RFC 9112 6.3: TE and CL together: 400, or use chunked only, and close afterwards"
case(
    127,
    "te-and-cl-cl-first",
    post(b"Content-Length: 4", TE + b"chunked", body=chunked(HELLO)),
    [200, 400],
    "yes",
    te_cl,
    app=app("/", HELLO),
)
case(
    128,
    "te-and-cl-te-first",
    post(TE + b"chunked", b"Content-Length: 40", body=chunked(HELLO)),
    [200, 400],
    "yes",
    te_cl,
    app=app("/", HELLO),
)
bad(129, "te-gzip-with-cl", post(TE + b"gzip", b"Content-Length: 5", body=b"hello"), not_last, [400, 501])
bad(
    130,
    "te-chunked-with-params",
    post(TE + b"chunked;q=1", body=chunked(b"hello")),
    "chunked takes no parameters (RFC 9112 7): not a valid final chunked",
    [400, 501],
)

# -- chunk framing -------------------------------------------------------------------------------
category("chunk framing")
CH = TE + b"chunked"
chunk_bad = "RFC 9112 7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF; malformed framing: 400"
bad(135, "chunk-size-negative", post(CH, body=b"-5\r\nhello\r\n0\r\n\r\n"), chunk_bad + " (negative)")
bad(
    136,
    "chunk-size-overflow",
    post(CH, body=b"10000000000000005\r\nhello\r\n0\r\n\r\n"),
    chunk_bad + " (2^64 + 5: wraps to 5 in a sloppy parser)",
)
bad(137, "chunk-size-non-hex", post(CH, body=b"5g\r\nhello\r\n0\r\n\r\n"), chunk_bad + " (non-hex)")
bad(138, "chunk-size-0x-prefix", post(CH, body=b"0x5\r\nhello\r\n0\r\n\r\n"), chunk_bad + " ('0x' prefix)")
case(
    139,
    "chunk-size-leading-zeros",
    post(CH, body=b"0005\r\nhello\r\n0000\r\n\r\n"),
    200,
    note="1*HEXDIG allows leading zeros",
    app=app("/", b"hello"),
)
case(
    140,
    "chunk-size-uppercase-hex",
    post(CH, body=b"A\r\nhelloworld\r\n0\r\n\r\n"),
    200,
    note="HEXDIG is case-insensitive",
    app=app("/", b"helloworld"),
)
bad(141, "chunk-size-empty", post(CH, body=b"\r\nhello\r\n0\r\n\r\n"), chunk_bad + " (empty size)")
case(
    142,
    "chunk-size-trailing-space",
    post(CH, body=b"5 \r\nhello\r\n0\r\n\r\n"),
    [200, 400],
    "either",
    "space after the size is only allowed before ';' (BWS); lenient acceptance is harmless",
    app=app("/", b"hello"),
)
bad(143, "chunk-data-too-long", post(CH, body=b"5\r\nhelloXX\r\n0\r\n\r\n"), chunk_bad + " (data past its size)")
bad(144, "chunk-data-missing-crlf", post(CH, body=b"5\r\nhello0\r\n\r\n"), chunk_bad + " (no CRLF after data)")
bad(145, "chunk-bare-lf-after-size", post(CH, body=b"5\nhello\r\n0\r\n\r\n"), chunk_bad + " (bare LF)")
bad(146, "chunk-bare-lf-after-data", post(CH, body=b"5\r\nhello\n0\r\n\r\n"), chunk_bad + " (bare LF)")
bad(147, "chunk-last-bare-lf", post(CH, body=b"5\r\nhello\r\n0\n\n"), chunk_bad + " (bare LF)")
case(
    148,
    "chunk-ext-valid",
    post(CH, body=b"5;name=value\r\nhello\r\n0\r\n\r\n"),
    200,
    note="RFC 9112 7.1.1: unknown extensions MUST be ignored",
    app=app("/", b"hello"),
)
case(
    149,
    "chunk-ext-quoted",
    post(CH, body=b'5;name="a b;c"\r\nhello\r\n0\r\n\r\n'),
    200,
    note="quoted-string extension value",
    app=app("/", b"hello"),
)
case(
    150,
    "chunk-ext-bws",
    post(CH, body=b"5 ; name = value\r\nhello\r\n0\r\n\r\n"),
    200,
    note="RFC 9112 7.1.1: BWS around ';' and '='",
    app=app("/", b"hello"),
)
case(
    151,
    "chunk-ext-on-last-chunk",
    post(CH, body=b"5\r\nhello\r\n0;done\r\n\r\n"),
    200,
    note="last-chunk may carry extensions",
    app=app("/", b"hello"),
)
bad(
    152,
    "chunk-ext-bare-lf",
    post(CH, body=b"5;ext\nhello\r\n0\r\n\r\n" + SMUG),
    chunk_bad + " (LF inside an extension: a TERM.EXT desync vector)",
)
case(
    153,
    "chunk-ext-nul",
    post(CH, body=b"5;a\x00b\r\nhello\r\n0\r\n\r\n"),
    [200, 400],
    "either",
    "NUL is not a tchar: invalid extension; reject, or ignore it with the body intact",
    app=app("/", b"hello"),
)
bad(
    154,
    "chunk-ext-oversized",
    post(CH, body=b"5;" + b"x" * 20_000 + b"\r\nhello\r\n0\r\n\r\n"),
    "20 KB of chunk extension: refuse (DoS guard)",
    [400, 413],
)
case(
    155,
    "chunk-ext-empty-name",
    post(CH, body=b"5;\r\nhello\r\n0\r\n\r\n"),
    [200, 400],
    "either",
    "';' without a name: invalid; reject or ignore",
    app=app("/", b"hello"),
)
case(
    156,
    "chunk-trailer-valid",
    post(CH, body=b"5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"),
    200,
    note="RFC 9112 7.1.2: trailer section",
    app=app("/", b"hello"),
)
case(
    157,
    "chunk-trailer-invalid",
    post(CH, body=b"5\r\nhello\r\n0\r\nnot a trailer\r\n\r\n"),
    [200, 400],
    "either",
    "an invalid trailer line: reject, or discard the trailers with the body intact",
    app=app("/", b"hello"),
)
bad(
    158,
    "chunk-size-4gib",
    post(CH, body=b"ffffffff\r\nhello"),
    "a 4 GiB chunk over --max-body-size: 413 early, or 408 when the data stops",
    [413, 408],
)

# -- truncated bodies (the server is started with --body-timeout 1) -------------------------------
category("truncated body")
trunc = "the body never completes: 408 after --body-timeout, or close"
bad(160, "cl-truncated", post(b"Content-Length: 100", body=b"only 10 b."), trunc, [408, 0])
bad(161, "chunked-no-last-chunk", post(CH, body=b"5\r\nhello\r\n"), trunc, [408, 0])
bad(162, "chunked-truncated-data", post(CH, body=b"a\r\nhello"), trunc, [408, 0])
bad(163, "chunked-missing-final-crlf", post(CH, body=b"5\r\nhello\r\n0\r\n"), trunc, [408, 0])
bad(
    164,
    "cl-truncated-hiding-request",
    post(b"Content-Length: 200", body=SMUG),
    trunc + "; the bytes sent are body, never a request",
    [408, 0],
)

# -- percent-encoding and the path -----------------------------------------------------------------
category("path and percent-encoding")
badpct = "RFC 3986 2.1: not a pct-encoded triplet: 400, or passed through undecoded"
case(170, "pct-invalid-zz", req(b"GET /a%zzb HTTP/1.1"), [200, 400], "either", badpct, app=app("/a%zzb"))
case(171, "pct-lone", req(b"GET /a% HTTP/1.1"), [200, 400], "either", badpct, app=app("/a%"))
case(172, "pct-truncated", req(b"GET /a%2 HTTP/1.1"), [200, 400], "either", badpct, app=app("/a%2"))
case(
    173,
    "pct-utf8",
    req(b"GET /caf%C3%A9 HTTP/1.1"),
    200,
    note="decoded bytes: WSGI gets them as latin-1, ASGI as UTF-8 text",
    app=app("/caf\xc3\xa9"),
)
case(
    174,
    "pct-non-utf8",
    req(b"GET /%FF%FE HTTP/1.1"),
    200,
    note="non-UTF-8 decoded bytes: latin-1 in WSGI, U+FFFD in ASGI's path (raw_path keeps them)",
    app=app("/\xff\xfe"),
)
case(
    175,
    "pct-encoded-slash",
    req(b"GET /a%2Fb HTTP/1.1"),
    200,
    note="PEP 3333/ASGI: the path is decoded",
    app=app("/a/b"),
)
case(
    176,
    "pct-nul",
    req(b"GET /a%00b HTTP/1.1"),
    [200, 400],
    "either",
    "an encoded NUL is valid syntax; refusing it is also reasonable",
    app=app("/a\x00b"),
)
bad(
    177,
    "raw-non-ascii",
    req(b"GET /\xff HTTP/1.1"),
    "RFC 9112 3.2: raw octets > 0x7F are not allowed in a target",
    [400, 301],
)
bad(
    178,
    "raw-utf8",
    req(b"GET /caf\xc3\xa9 HTTP/1.1"),
    "RFC 9112 3.2: raw UTF-8 is not a valid request-target: 400 (or a 301 to the encoded form), never served",
    [400, 301],
)
bad(
    264,
    "raw-utf8-across-byte-80",
    req(b"GET /" + b"a" * 78 + b"\xc3\xa9 HTTP/1.1"),
    "RFC 9112 3.2: raw UTF-8 in a target is refused; here a character straddles byte 80, where the core once "
    "cut the target for its log line and panicked",
    [400, 301],
)
case(
    179,
    "fragment-in-target",
    req(b"GET /p#frag HTTP/1.1"),
    [200, 400],
    "either",
    "RFC 9112 3.2: no fragment in a request-target: 400, or drop it",
    app=app("/p", query=""),
)
case(
    180,
    "double-slash-path",
    req(b"GET //a/b HTTP/1.1"),
    200,
    note="'//a/b' is an absolute-path, not an authority",
    app=app("//a/b"),
)
case(
    181,
    "query-with-question-mark",
    req(b"GET /q?a?b=/c HTTP/1.1"),
    200,
    note="RFC 3986 3.4: '?' and '/' in query",
    app=app("/q", query="a?b=/c"),
)
case(
    182,
    "pct-invalid-in-query",
    req(b"GET /q?a=%zz HTTP/1.1"),
    [200, 400],
    "either",
    "the query is passed raw",
    app=app("/q", query="a=%zz"),
)
case(183, "plus-in-path", req(b"GET /a+b HTTP/1.1"), 200, note="'+' is not a space in a path", app=app("/a+b"))
case(
    184,
    "pct-encoded-question-mark",
    req(b"GET /a%3Fb?c HTTP/1.1"),
    200,
    note="an encoded '?' belongs to the path",
    app=app("/a?b", query="c"),
)

# -- request-target forms ---------------------------------------------------------------------------
category("target forms")
absf = "RFC 9112 3.2.2: with an absolute-form target the server MUST ignore Host and use the target's authority"
case(
    190,
    "absolute-form-http",
    b"GET http://target.example/p?q=1 HTTP/1.1\r\nHost: header.example\r\n\r\n",
    200,
    note=absf,
    app=app("/p", query="q=1", host="target.example"),
)
case(
    191,
    "absolute-form-port",
    b"GET http://target.example:8080/p HTTP/1.1\r\nHost: header.example\r\n\r\n",
    200,
    note=absf,
    app=app("/p", host="target.example:8080"),
)
case(
    192,
    "absolute-form-https",
    b"GET https://secure.example/p HTTP/1.1\r\nHost: secure.example\r\n\r\n",
    [200, 400, 421],
    "either",
    "RFC 9110 7.4: an https target on plain HTTP: serve, or 421/400",
    app=app("/p", host="secure.example"),
)
case(
    193,
    "absolute-form-ftp",
    b"GET ftp://files.example/p HTTP/1.1\r\nHost: files.example\r\n\r\n",
    [200, 400, 421],
    "either",
    "RFC 9110 7.4: a non-http scheme: 421/400, or serve with its authority",
    app=app("/p", host="files.example"),
)
bad(
    194,
    "absolute-form-without-host",
    b"GET http://target.example/ HTTP/1.1\r\n\r\n",
    "RFC 9112 3.2: an HTTP/1.1 request without Host MUST get 400, absolute-form or not",
)
case(
    195,
    "absolute-form-userinfo",
    b"GET http://user:pw@target.example/p HTTP/1.1\r\nHost: target.example\r\n\r\n",
    [200, 400],
    "either",
    "RFC 9110 4.2.4: userinfo SHOULD be treated as an error; the host is never 'user:pw@...'",
    app=app("/p", host="target.example"),
)
bad(
    196,
    "absolute-form-empty-authority",
    b"GET http:///p HTTP/1.1\r\nHost: test\r\n\r\n",
    "RFC 9110 4.2.1: an http URI with an empty host is invalid",
)
bad(197, "absolute-form-bad-port", b"GET http://target.example:abc/ HTTP/1.1\r\nHost: test\r\n\r\n", "port = *DIGIT")
bad(
    198,
    "authority-form-get",
    req(b"GET target.example:80 HTTP/1.1"),
    "RFC 9112 3.2.3: authority-form is only for CONNECT",
)
bad(199, "asterisk-form-get", req(b"GET * HTTP/1.1"), "RFC 9112 3.2.4: asterisk-form is only for OPTIONS")
case(
    200,
    "asterisk-form-options",
    req(b"OPTIONS * HTTP/1.1"),
    200,
    note="RFC 9112 3.2.4: server-wide OPTIONS",
    app=app("*", method="OPTIONS"),
)
case(
    201,
    "connect",
    b"CONNECT target.example:443 HTTP/1.1\r\nHost: target.example:443\r\n\r\n",
    [400, 405, 501],
    "either",
    "an origin server is no tunnel: 405 (rsgi's rule) or 501/400",
)
bad(202, "connect-origin-form", req(b"CONNECT / HTTP/1.1"), "RFC 9112 3.2.3: CONNECT needs authority-form", [400, 405])

# -- Host ------------------------------------------------------------------------------------------
category("Host")
host_bad = "RFC 9112 3.2: an invalid Host value MUST get 400"
bad(210, "host-missing-http11", b"GET / HTTP/1.1\r\n\r\n", "RFC 9112 3.2: HTTP/1.1 without Host MUST get 400")
case(
    211,
    "host-missing-http10",
    b"GET /ten HTTP/1.0\r\n\r\n",
    200,
    "yes",
    "Host is optional in HTTP/1.0",
    app=app("/ten", host=None, protocol="HTTP/1.0"),
)
bad(212, "host-duplicate-same", req(b"GET / HTTP/1.1", b"Host: test"), "RFC 9112 3.2: two Host lines MUST get 400")
bad(213, "host-duplicate-different", req(b"GET / HTTP/1.1", b"Host: other"), "RFC 9112 3.2: as above")
bad(214, "host-with-space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", host_bad + " (space)")
bad(215, "host-with-slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", host_bad + " ('/')")
bad(216, "host-with-userinfo", b"GET / HTTP/1.1\r\nHost: user@a.example\r\n\r\n", host_bad + " ('@')")
bad(217, "host-with-comma", b"GET / HTTP/1.1\r\nHost: a.example,b.example\r\n\r\n", host_bad + " (a list)")
bad(218, "host-bad-port", b"GET / HTTP/1.1\r\nHost: a.example:port\r\n\r\n", host_bad + " (port = *DIGIT)")
bad(219, "host-unbalanced-bracket", b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", host_bad + " (IP-literal)")
case(
    220,
    "host-ipv6",
    b"GET /6 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
    200,
    note="IP-literal with port",
    app=app("/6", host="[::1]:8080"),
)
case(
    221,
    "host-empty",
    b"GET /e HTTP/1.1\r\nHost:\r\n\r\n",
    200,
    note="RFC 9112 3.2: an empty Host is valid (uri-host may be an empty reg-name)",
    app=app("/e", host=""),
)
case(
    222,
    "host-underscore",
    b"GET /u HTTP/1.1\r\nHost: a_b.example\r\n\r\n",
    200,
    note="'_' is unreserved",
    app=app("/u", host="a_b.example"),
)
case(
    223,
    "host-with-port",
    b"GET /p HTTP/1.1\r\nHost: test:8080\r\n\r\n",
    200,
    note="host:port",
    app=app("/p", host="test:8080"),
)

# -- request smuggling: a hidden request (/smuggled) must never be answered --------------------------
category("smuggling")
zero = b"0\r\n\r\n"
case(
    230,
    "smuggle-cl-te",
    post(b"Content-Length: %d" % len(zero + SMUG), CH, body=zero + SMUG),
    [200, 400],
    "yes",
    "CL.TE: TE wins (empty body) and the connection closes, or 400",
    app=app("/"),
)
case(
    231,
    "smuggle-te-cl",
    post(CH, b"Content-Length: 4", body=chunked(SMUG)),
    [200, 400],
    "yes",
    "TE.CL: the chunk is the body; close afterwards, or 400",
    app=app("/", SMUG),
)
bad(
    232,
    "smuggle-te-xchunked-cl",
    post(TE + b"xchunked", b"Content-Length: %d" % len(zero), body=zero + SMUG),
    "obfuscated TE next to CL: 400 (never fall back to CL)",
    [400, 501],
)
bad(
    233,
    "smuggle-te-space-colon-cl",
    post(b"Transfer-Encoding : chunked", b"Content-Length: %d" % len(zero + SMUG), body=zero + SMUG),
    "RFC 9112 5.1: space before colon MUST get 400",
)
bad(
    234,
    "smuggle-te-vt-cl",
    post(TE + b"\x0bchunked", b"Content-Length: %d" % len(zero), body=zero + SMUG),
    "VT-prefixed chunked next to CL: 400",
    [400, 501],
)
bad(
    235,
    "smuggle-te-nbsp-cl",
    post(TE + b"\xa0chunked", b"Content-Length: %d" % len(zero), body=zero + SMUG),
    "NBSP-prefixed chunked next to CL (gunicorn#3364): 400",
    [400, 501],
)
bad(
    236,
    "smuggle-duplicate-cl",
    post(b"Content-Length: 0", b"Content-Length: %d" % len(SMUG), body=SMUG),
    "RFC 9112 6.3: differing lengths: 400 and close",
)
bad(237, "smuggle-cl-plus", post(b"Content-Length: +%d" % len(SMUG), body=SMUG), "'+5' is not 1*DIGIT")
bad(
    238,
    "smuggle-te-http10-cl",
    b"POST / HTTP/1.0\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(zero) + zero + SMUG,
    "RFC 9112 6.1: TE in HTTP/1.0 is faulty framing, even with CL",
)
case(
    239,
    "smuggle-request-in-cl-body",
    req(b"GET /front HTTP/1.1", b"Content-Length: %d" % len(SMUG), body=SMUG),
    200,
    note="a request inside a CL body is body bytes",
    app=app("/front", SMUG),
)
case(
    240,
    "smuggle-request-in-chunk",
    post(CH, body=chunked(SMUG), path=b"/front"),
    200,
    note="a request inside a chunk is body bytes",
    app=app("/front", SMUG),
)
bad(
    241,
    "smuggle-two-te-lines-gzip-last",
    post(CH, TE + b"gzip", b"Content-Length: %d" % len(zero), body=zero + SMUG),
    not_last,
    [400, 501],
)
bad(
    242,
    "smuggle-chunk-size-overflow",
    post(CH, body=b"10000000000000005\r\nhello\r\n0\r\n\r\n" + SMUG),
    chunk_bad + " (a wrapping parser reads 5 and answers the hidden request)",
)
bad(
    243,
    "smuggle-after-malformed",
    req(b"GET /a b HTTP/1.1") + SMUG,
    "after a 400 the rest of the stream is untrusted: close, never parse on",
)
case(
    244,
    "smuggle-te-cl-gzip-chunked",
    post(TE + b"gzip, chunked", b"Content-Length: %d" % len(zero), body=chunked(b"\x1f\x8b") + SMUG),
    [400, 501],
    "yes",
    "unknown coding before chunked next to CL: 501/400 and close",
)
bad(
    245,
    "smuggle-cl-comma-list",
    post(b"Content-Length: 0, %d" % len(SMUG), body=SMUG),
    "differing values in one CL list: 400",
)

# -- Expect ------------------------------------------------------------------------------------------
category("Expect")
case(
    250,
    "expect-100-with-body",
    post(b"Content-Length: 11", b"Expect: 100-continue", body=HELLO),
    200,
    note="RFC 9110 10.1.1: a 100 may precede the final response",
    app=app("/", HELLO),
)
case(
    251,
    "expect-100-mixed-case",
    post(b"Content-Length: 11", b"Expect: 100-Continue", body=HELLO),
    200,
    note="the expectation token is case-insensitive",
    app=app("/", HELLO),
)
case(
    252,
    "expect-unknown",
    post(b"Content-Length: 11", b"Expect: fancy-feature", body=HELLO),
    [200, 417],
    "either",
    "RFC 9110 10.1.1: an unknown expectation MAY get 417 (or be ignored)",
    app=app("/", HELLO),
)
case(
    253,
    "expect-100-http10",
    b"POST /ten HTTP/1.0\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n" + HELLO,
    200,
    "yes",
    "RFC 9110 10.1.1: a server MUST ignore 100-continue in an HTTP/1.0 request (no 100 sent)",
    app=app("/ten", HELLO, protocol="HTTP/1.0"),
    no_interim=True,
)
case(
    254,
    "expect-100-without-body",
    req(b"GET /nb HTTP/1.1", b"Expect: 100-continue"),
    200,
    note="nothing to continue: just the response",
    app=app("/nb"),
)

# -- connection management ---------------------------------------------------------------------------
category("connection")
case(
    260,
    "upgrade-h2c-ignored",
    req(
        b"GET /h2c HTTP/1.1",
        b"Connection: Upgrade, HTTP2-Settings",
        b"Upgrade: h2c",
        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
    ),
    200,
    "either",
    "RFC 9110 7.8: a server MAY ignore Upgrade; it stays HTTP/1.1",
    app=app("/h2c", protocol="HTTP/1.1"),
)
case(
    261,
    "connection-close",
    req(b"GET /cc HTTP/1.1", b"Connection: close"),
    200,
    "yes",
    "RFC 9112 9.6: close after the response",
    app=app("/cc"),
)
case(
    262,
    "http10-keep-alive",
    b"GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    200,
    "no",
    "RFC 9112 9.3: HTTP/1.0 keep-alive",
    app=app("/ka", protocol="HTTP/1.0"),
)
case(
    263,
    "connection-keep-alive-then-close",
    req(b"GET /kc HTTP/1.1", b"Connection: keep-alive", b"Connection: close"),
    200,
    "yes",
    "'close' in any Connection line wins",
    app=app("/kc"),
)


def main() -> None:
    seen: set[int] = set()
    names: set[str] = set()
    for c in CASES:
        assert c.num not in seen, f"duplicate number {c.num}"
        assert c.name not in names, f"duplicate name {c.name}"
        assert b"smuggled" not in c.data or SMUG in c.data, c.name
        seen.add(c.num)
        names.add(c.name)
    HERE.mkdir(exist_ok=True)
    for old in HERE.glob("*.http"):
        old.unlink()
    for c in CASES:
        (HERE / c.file).write_bytes(c.data)
    lines = ",\n".join(f"  {json.dumps(c.file)}: {json.dumps(c.expectation(), ensure_ascii=True)}" for c in CASES)
    (HERE / "expected.json").write_text("{\n" + lines + "\n}\n")
    print(f"wrote {len(CASES)} cases to {HERE}")


if __name__ == "__main__":
    main()
