//! The refusal policy: malformed or ambiguous requests get 400 and the connection closed, with
//! nothing pipelined behind them read or answered, and the worker goes on serving.

use std::time::Duration;

use crate::support::client::{assert_serves, get, Conn};
use crate::support::default_config;
use crate::support::stub::start;

const POST: &str = "POST / HTTP/1.1\r\nHost: test\r\n";

fn chunked(rest: &str) -> Vec<u8> {
    format!("{POST}Transfer-Encoding: chunked\r\n\r\n{rest}").into_bytes()
}

#[test]
fn malformed_requests_get_400_and_close() {
    let srv = start(default_config());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage request line", b"garbage\r\n\r\n".to_vec()),
        ("bad header line", b"GET / HTTP/1.1\r\nHost: test\r\nthis is not a header\r\n\r\n".to_vec()),
        ("space before colon", b"GET / HTTP/1.1\r\nHost : test\r\n\r\n".to_vec()),
        ("obsolete line folding", b"GET / HTTP/1.1\r\nHost: test\r\nX-A: a\r\n b\r\n\r\n".to_vec()),
        ("NUL in a header value", b"GET / HTTP/1.1\r\nHost: test\r\nX-A: a\x00b\r\n\r\n".to_vec()),
        ("unknown HTTP version", b"GET / HTTP/1.2\r\nHost: test\r\n\r\n".to_vec()),
        ("space in the target", b"GET /a b HTTP/1.1\r\nHost: test\r\n\r\n".to_vec()),
        ("raw non-ASCII in the target", b"GET /\xff HTTP/1.1\r\nHost: test\r\n\r\n".to_vec()),
        ("non-numeric Content-Length", format!("{POST}Content-Length: abc\r\n\r\n").into_bytes()),
        ("negative Content-Length", format!("{POST}Content-Length: -1\r\n\r\n").into_bytes()),
        (
            "conflicting Content-Lengths",
            format!("{POST}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd").into_bytes(),
        ),
        ("unknown transfer coding", format!("{POST}Transfer-Encoding: gzip\r\n\r\nabc").into_bytes()),
        (
            "chunked not last",
            format!("{POST}Transfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n").into_bytes(),
        ),
        ("chunked in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec()),
        ("invalid chunk size", chunked("zz\r\nabc\r\n0\r\n\r\n")),
        ("chunk size overflow", chunked("fffffffffffffffff1\r\nabc\r\n0\r\n\r\n")),
        ("chunk data too long", chunked("3\r\nabcXX\r\n0\r\n\r\n")),
        ("bare LF in chunk framing", chunked("3\nabc\n0\n\n")),
        ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("two Host headers", b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n".to_vec()),
        ("a target with a non-ASCII character across byte 80", {
            // 78 ASCII bytes, then a two-byte character across byte 80, where log lines were once cut.
            format!("GET /{}\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(78)).into_bytes()
        }),
    ];
    for (what, req) in cases {
        let mut conn = Conn::open(srv.port);
        conn.send(&req);
        let resp = conn.response();
        assert_eq!(resp.status, 400, "{what}: {}", resp.head_text());
        assert_eq!(resp.header("connection"), Some("close"), "{what}");
        assert!(conn.wait_closed(Duration::from_secs(3)).is_some(), "{what}: the connection stayed open");
        assert!(conn.buf.is_empty(), "{what}: bytes after the error reply");
        assert_serves(srv.port);
    }
}

#[test]
fn content_length_with_chunked_is_refused() {
    // RFC 9112 §6.1 lets a server either read such a request as chunked and close, or refuse it;
    // rsgi refuses it (as nginx and gunicorn >= 22 do): a proxy in front may have framed the body
    // by its length, so no reading of it is safe. Nothing behind the disputed body is served.
    let srv = start(default_config());
    for framing in
        ["Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", "Transfer-Encoding: chunked\r\nContent-Length: 30\r\n"]
    {
        let mut req = format!("POST /front HTTP/1.1\r\nHost: test\r\n{framing}\r\n3\r\nabc\r\n0\r\n\r\n").into_bytes();
        req.extend_from_slice(&get("/smuggled", ""));
        let mut conn = Conn::open(srv.port);
        conn.send(&req);
        conn.assert_refused(400);
        assert!(!String::from_utf8_lossy(&conn.received).contains("smuggled"), "{framing}");
        assert_serves(srv.port);
    }
}

#[test]
fn a_bare_lf_in_a_head_is_refused() {
    // RFC 9112 §2.2 allows a server to refuse a bare LF as a line terminator; a proxy in front
    // that splits only on CRLF would read different fields than the app.
    let srv = start(default_config());
    for head in [
        &b"GET /lf HTTP/1.1\r\nHost: test\nX-Hidden: 1\r\n\r\n"[..],
        b"GET /lf HTTP/1.1\nHost: test\r\n\r\n",
        b"GET /lf HTTP/1.1\r\nHost: test\r\n\n",
    ] {
        let mut conn = Conn::open(srv.port);
        conn.send(head);
        let resp = conn.assert_refused(400);
        assert_eq!(resp.header("connection"), Some("close"));
        assert_serves(srv.port);
    }
    // Pipelined: the clean first request is served, the second refused, nothing after it read.
    let mut conn = Conn::open(srv.port);
    let mut req = get("/first", "");
    req.extend_from_slice(b"GET /second HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n");
    req.extend_from_slice(&get("/third", ""));
    conn.send(&req);
    assert_eq!(conn.response().echo().get("path"), "/first");
    conn.assert_refused(400);
    let all = String::from_utf8_lossy(&conn.received).into_owned();
    assert!(!all.contains("/second") && !all.contains("/third"), "{all}");
}

#[test]
fn a_repeated_content_type_is_refused() {
    // The app would see the first Content-Type, a proxy or WAF in front may have used the last.
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    conn.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Type: a/b\r\nContent-Type: c/d\r\nContent-Length: 0\r\n\r\n");
    conn.assert_refused(400);
    assert_serves(srv.port);
}

#[test]
fn the_http2_preface_gets_the_http2_server() {
    // h2c is on by default (--http auto): the preface is answered with HTTP/2 SETTINGS, never
    // with an HTTP/1 parse of it.
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    conn.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    let frame_head = conn.bytes(9);
    assert_eq!(frame_head[3], 4, "frame type 4 (SETTINGS) first: {frame_head:?}");
    assert!(!frame_head.starts_with(b"HTTP/1.1"));
    assert_serves(srv.port);
}
