//! Message framing: keep-alive and pipelining, chunked and spooled bodies, streamed responses,
//! 100-continue, HEAD, HTTP/1.0, half-closed requests and the headers the core adds.

use std::time::Duration;

use _rsgi::config::ServerConfig;

use crate::support::client::{assert_serves, exchange, get, Conn, Response};
use crate::support::default_config;
use crate::support::stub::start;

#[test]
fn answers_through_the_queue() {
    let srv = start(default_config());
    let resp = Response::whole(&exchange(srv.port, b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
    assert_eq!((resp.version.as_str(), resp.status), ("HTTP/1.1", 200));
    assert_eq!(resp.header("server"), Some("rsgi"));
    let echo = resp.echo();
    assert_eq!((echo.get("method"), echo.get("path"), echo.body.len()), ("GET".into(), "/x".into(), 0));
}

// -- keep-alive and pipelining ---------------------------------------------------------------------

#[test]
fn keep_alive_serves_requests_one_after_another() {
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    let mut ports = Vec::new();
    for i in 0..4 {
        if i % 2 == 1 {
            conn.send(
                format!("POST /k{i} HTTP/1.1\r\nHost: test\r\nContent-Length: {i}\r\n\r\n{}", "x".repeat(i)).as_bytes(),
            );
        } else {
            conn.send(&get(&format!("/k{i}"), ""));
        }
        let resp = conn.response();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("connection"), None, "{}", resp.head_text());
        let echo = resp.echo();
        assert_eq!((echo.get("path"), echo.body.len()), (format!("/k{i}"), if i % 2 == 1 { i } else { 0 }));
        ports.push(echo.remote_port());
    }
    assert!(ports.iter().all(|p| *p == ports[0]), "{ports:?}");
    conn.assert_open();
    conn.send(&get("/last", "Connection: close\r\n"));
    let last = conn.response();
    assert_eq!(last.echo().get("path"), "/last");
    assert_eq!(last.header("connection"), Some("close"));
    assert!(conn.wait_closed(Duration::from_secs(3)).is_some());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    let mut pipeline = get("/first", "");
    pipeline.extend_from_slice(b"POST /second HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello");
    pipeline.extend_from_slice(
        b"POST /third HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    pipeline.extend_from_slice(&get("/fourth", "Connection: close\r\n"));
    conn.send(&pipeline);
    let got: Vec<_> = (0..4).map(|_| conn.response().echo()).collect();
    assert!(conn.wait_closed(Duration::from_secs(3)).is_some());
    assert!(conn.buf.is_empty());
    let paths: Vec<_> = got.iter().map(|e| e.get("path")).collect();
    assert_eq!(paths, ["/first", "/second", "/third", "/fourth"]);
    let bodies: Vec<_> = got.iter().map(|e| e.body.as_slice()).collect();
    assert_eq!(bodies, [&b""[..], b"hello", b"abc", b""]);
    assert!(got.iter().all(|e| e.remote_port() == got[0].remote_port()));
}

#[test]
fn many_pipelined_requests_in_one_packet() {
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    conn.send(&(0..20).flat_map(|i| get(&format!("/p{i}?n={i}"), "")).collect::<Vec<_>>());
    for i in 0..20 {
        let echo = conn.response().echo();
        assert_eq!((echo.get("path"), echo.get("query")), (format!("/p{i}"), format!("n={i}")));
    }
    conn.assert_open();
}

#[test]
fn a_pipeline_stops_at_a_malformed_request() {
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    let mut pipeline = get("/before", "");
    pipeline.extend_from_slice(b"GET /bad request HTTP/1.1\r\nHost: test\r\n\r\n");
    pipeline.extend_from_slice(&get("/after", ""));
    conn.send(&pipeline);
    assert_eq!(conn.response().echo().get("path"), "/before");
    conn.assert_refused(400); // and /after is never answered
    assert_serves(srv.port);
}

#[test]
fn graceful_stop_closes_idle_connections() {
    // Idle connections are not cut on a stop (a request may be in flight to us); they end at
    // the keep-alive timeout, kept short here.
    let cfg = ServerConfig { keepalive: Duration::from_millis(300), ..default_config() };
    let srv = start(cfg);
    let mut idle = Conn::open(srv.port);
    idle.send(&get("/", ""));
    assert_eq!(idle.response().status, 200);
    srv.server.stop(false);
    // The server drains: the idle keep-alive connection is closed, and `done` disconnects.
    assert!(idle.wait_closed(Duration::from_secs(5)).is_some(), "the idle connection was not closed");
    let finished = srv.server.done().recv_timeout(Duration::from_secs(5));
    assert_eq!(finished, Err(crossbeam_channel::RecvTimeoutError::Disconnected));
}

// -- bodies ----------------------------------------------------------------------------------------

#[test]
fn a_chunked_body_is_read_whole_by_its_declared_sizes() {
    let srv = start(default_config());
    // The last chunk's data looks like chunk framing: only the declared sizes may delimit it.
    let parts: [Vec<u8>; 3] = [vec![b'a'; 10], vec![b'b'; 300], b"\r\n0\r\n\r\n".repeat(3)];
    let mut req = b"POST /chunked HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for p in &parts {
        req.extend_from_slice(format!("{:x};ext=1\r\n", p.len()).as_bytes());
        req.extend_from_slice(p);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    let mut conn = Conn::open(srv.port);
    conn.send(&req);
    let echo = conn.response().echo();
    assert_eq!(echo.body, parts.concat());
    assert_eq!(echo.get("spooled"), "no");
    conn.assert_open();
}

#[test]
fn a_chunked_body_split_across_packets_waits_for_its_end() {
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    conn.send(b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    // Nothing to wait for here but time: the app must not have been called yet.
    assert!(conn.wait_closed(Duration::from_millis(100)).is_none() && conn.buf.is_empty(), "answered too early");
    conn.send(b"lo\r\n6\r\n world\r\n");
    assert!(conn.wait_closed(Duration::from_millis(100)).is_none() && conn.buf.is_empty(), "answered too early");
    conn.send(b"0\r\n\r\n");
    assert_eq!(conn.response().echo().body, b"hello world");
}

#[test]
fn bodies_past_the_spool_threshold_go_to_a_file() {
    let cfg = ServerConfig { body_spool_threshold: 4096, ..default_config() };
    let srv = start(cfg);
    let body = noise(100_000);
    let mut req = format!("POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    req.extend_from_slice(&body);
    let mut conn = Conn::open(srv.port);
    conn.send(&req);
    let echo = conn.response().echo();
    assert_eq!((echo.get("spooled"), echo.body.len()), ("yes".into(), body.len()));
    assert!(echo.body == body);
    // The same through chunks, in several writes.
    let pieces: Vec<Vec<u8>> = (0..10).map(|i| noise(30_000 + i)).collect();
    conn.send(b"POST /chunks HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    for p in &pieces {
        conn.send(format!("{:x}\r\n", p.len()).as_bytes());
        conn.send(p);
        conn.send(b"\r\n");
    }
    conn.send(b"0\r\n\r\n");
    let echo = conn.response().echo();
    assert_eq!(echo.get("spooled"), "yes");
    assert!(echo.body == pieces.concat(), "the spooled chunked body differs");
}

/// Deterministic bytes that look random (xorshift), so no two offsets of a body are alike.
pub fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ len as u64;
    let mut out: Vec<u8> = std::iter::repeat_with(|| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x.to_le_bytes()
    })
    .take(len.div_ceil(8))
    .flatten()
    .collect();
    out.truncate(len);
    out
}

#[test]
fn a_streamed_response_is_chunked_on_the_wire() {
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    conn.send(&get("/__stream", ""));
    let resp = conn.response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert_eq!(resp.header("content-length"), None);
    let chunks: Vec<String> = (0..5).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(resp.body, chunks.concat().as_bytes());
    // Each chunk as it was produced (none merged or split), then the last chunk.
    let framing: String = chunks.iter().map(|c| format!("8\r\n{c}\r\n")).collect::<String>() + "0\r\n\r\n";
    assert_eq!(String::from_utf8_lossy(&resp.framing), framing);
    // The connection stays usable after a chunked response.
    conn.send(&get("/__stream", ""));
    assert!(conn.response().body.starts_with(b"chunk 0"));
    conn.assert_open();
}

// -- Expect: 100-continue ----------------------------------------------------------------------------

#[test]
fn expect_100_continue() {
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    conn.send(b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
    let interim = conn.response();
    assert_eq!(interim.head, b"HTTP/1.1 100 Continue");
    conn.send(b"hello world");
    let echo = conn.response().echo();
    assert_eq!(echo.body, b"hello world");
    assert_eq!(echo.header1("expect").as_deref(), Some("100-continue"));
}

#[test]
fn expect_100_continue_is_refused_when_too_large() {
    let srv = start(ServerConfig { max_body_size: 1000, ..default_config() });
    let mut conn = Conn::open(srv.port);
    conn.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n");
    // The first response is the 413: no 100 Continue before it.
    conn.assert_refused(413);
    assert!(!String::from_utf8_lossy(&conn.received).contains("100 Continue"));
    assert_serves(srv.port);
}

// -- HEAD ------------------------------------------------------------------------------------------

#[test]
fn head_drops_the_body_the_app_produced() {
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    let mut req = b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n".to_vec();
    req.extend_from_slice(&get("/", ""));
    conn.send(&req);
    let head = conn.head_response();
    assert_eq!(head.status, 200);
    // The app's declared length stays; its body is not sent.
    let declared: usize = head.header("content-length").unwrap().parse().unwrap();
    assert!(declared > 0);
    assert_eq!(head.header("transfer-encoding"), None);
    // The next response starts right where it should.
    let following = conn.response();
    assert_eq!(following.echo().get("method"), "GET");
    conn.assert_open();
}

#[test]
fn head_on_a_streamed_response() {
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    let mut req = b"HEAD /__stream HTTP/1.1\r\nHost: test\r\n\r\n".to_vec();
    req.extend_from_slice(&get("/__stream", ""));
    conn.send(&req);
    assert_eq!(conn.head_response().status, 200);
    assert!(conn.response().body.starts_with(b"chunk 0\n"));
    conn.assert_open();
}

// -- Date and Server -------------------------------------------------------------------------------

#[test]
fn date_and_server_headers_by_default() {
    let srv = start(default_config());
    let resp = Response::whole(&exchange(srv.port, &get("/", "Connection: close\r\n")));
    assert_eq!(resp.header("server"), Some("rsgi"));
    let date = resp.header("date").unwrap();
    assert!(date.ends_with(" GMT"), "{date}");
    let sent = httpdate::parse_http_date(date).unwrap();
    let skew = std::time::SystemTime::now().duration_since(sent).unwrap_or_else(|e| e.duration());
    assert!(skew < Duration::from_secs(60), "{date}");
}

#[test]
fn no_date_and_no_server_header_when_turned_off() {
    let cfg = ServerConfig { date_header: false, server_header: false, max_body_size: 10, ..default_config() };
    let srv = start(cfg);
    let mut conn = Conn::open(srv.port);
    conn.send(&get("/", ""));
    let ok = conn.response();
    conn.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\n\r\n"); // rsgi's own 413
    let too_large = conn.response();
    let mut conn = Conn::open(srv.port);
    conn.send(b"garbage\r\n\r\n"); // hyper's own 400
    let bad = conn.response();
    assert_eq!((ok.status, too_large.status, bad.status), (200, 413, 400));
    for resp in [ok, too_large, bad] {
        assert_eq!(resp.header("date"), None, "{}", resp.head_text());
        assert_eq!(resp.header("server"), None, "{}", resp.head_text());
    }
}

#[test]
fn a_server_header_set_by_the_app_wins() {
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    conn.send(&get("/__headers?Server=custom/1.0", ""));
    assert_eq!(conn.response().header("server"), Some("custom/1.0")); // header() asserts it came once
}

// -- HTTP/1.0 --------------------------------------------------------------------------------------

#[test]
fn an_http10_request_closes_the_connection() {
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    conn.send(b"GET /old HTTP/1.0\r\n\r\n");
    let resp = conn.response();
    assert_eq!(resp.version, "HTTP/1.0");
    let echo = resp.echo();
    assert_eq!((echo.get("version"), echo.all("host").len()), ("HTTP/1.0".into(), 0));
    assert!(conn.wait_closed(Duration::from_secs(3)).is_some());
}

#[test]
fn http10_keep_alive_keeps_the_connection() {
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    conn.send(b"GET /one HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let first = conn.response();
    assert!(first.header("connection").unwrap().eq_ignore_ascii_case("keep-alive"));
    conn.send(b"GET /two HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let second = conn.response().echo();
    assert_eq!(second.get("path"), "/two");
    assert_eq!(second.remote_port(), first.echo().remote_port());
}

#[test]
fn an_http10_streamed_response_is_close_delimited() {
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    conn.send(b"GET /__stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let resp = conn.response();
    // HTTP/1.0 has no chunked coding: the body is raw and ends with the connection.
    assert_eq!(resp.header("transfer-encoding"), None);
    assert_eq!(resp.header("content-length"), None);
    assert_eq!(resp.body, (0..5).map(|i| format!("chunk {i}\n")).collect::<String>().as_bytes());
    assert!(conn.eof);
}

// -- half-closed requests --------------------------------------------------------------------------

#[test]
fn a_half_closed_request_is_answered() {
    // A client that sends its request and shuts down its write side (SHUT_WR, `nc -N`, some
    // health checkers) still gets the response (RFC 9112 §9.6).
    let srv = start(default_config());
    for req in [
        &b"GET /half HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        b"GET /half HTTP/1.0\r\n\r\n",
        b"POST /half HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /half HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /half HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ] {
        let mut conn = Conn::open(srv.port);
        conn.send(req);
        conn.shutdown_write();
        let resp = conn.response();
        assert_eq!(resp.status, 200, "{}", req.escape_ascii());
        let echo = resp.echo();
        assert_eq!(echo.get("path"), "/half");
        let want: &[u8] = if req.starts_with(b"POST") { b"abc" } else { b"" };
        assert_eq!(echo.body, want);
        assert!(conn.wait_closed(Duration::from_secs(3)).is_some());
    }
}
