//! Limits the core applies before the app is called, each checked on both sides of its boundary
//! (414, 431, 413, 408, 501, 405, `--limit-concurrency`'s 503), and the timeouts of a connection:
//! what ends it (an idle keep-alive, a head that never ends) and what must not (a slow app, a
//! slow upload).

use std::time::{Duration, Instant};

use _rsgi::config::ServerConfig;

use crate::support::client::{assert_serves, get, Conn};
use crate::support::default_config;
use crate::support::stub::{self, start};

#[test]
fn limit_request_line_414() {
    let srv = start(ServerConfig { limit_request_line: 100, ..default_config() });
    let target_ok = format!("/{}?q={}", "a".repeat(90), "b".repeat(6)); // exactly 100 bytes
    assert_eq!(target_ok.len(), 100);
    let mut conn = Conn::open(srv.port);
    conn.send(&get(&target_ok, ""));
    assert_eq!(conn.response().echo().get("query"), format!("q={}", "b".repeat(6)));
    conn.send(&get(&format!("{target_ok}b"), ""));
    let resp = conn.assert_refused(414);
    assert_eq!(resp.header("server"), Some("rsgi"));
    assert!(!resp.answered_by_app());
    assert_serves(srv.port);
}

#[test]
fn a_very_long_target_is_414_with_the_default_limit() {
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    conn.send(&get(&format!("/{}", "a".repeat(70_000)), ""));
    conn.assert_refused(414);
    assert_serves(srv.port);
}

#[test]
fn limit_request_fields_431() {
    let srv = start(ServerConfig { limit_request_fields: 10, ..default_config() });
    let nine: String = (0..9).map(|i| format!("X-H{i}: v\r\n")).collect(); // + Host = 10 fields
    let mut conn = Conn::open(srv.port);
    conn.send(&get("/", &nine));
    assert_eq!(conn.response().echo().header1("x-h8").as_deref(), Some("v"));
    conn.send(&get("/", &format!("{nine}X-H9: v\r\n")));
    conn.assert_refused(431);
    assert_serves(srv.port);
}

#[test]
fn limit_request_field_size_431() {
    let srv = start(ServerConfig { limit_request_field_size: 100, ..default_config() });
    let fits = "v".repeat(100 - "X-Big".len()); // name + value = 100 bytes
    let mut conn = Conn::open(srv.port);
    conn.send(&get("/", &format!("X-Big: {fits}\r\n")));
    assert_eq!(conn.response().echo().header1("x-big"), Some(fits.clone()));
    conn.send(&get("/", &format!("X-Big: {fits}v\r\n")));
    conn.assert_refused(431);
    assert_serves(srv.port);
}

#[test]
fn max_body_size_by_content_length_before_reading() {
    let srv = start(ServerConfig { max_body_size: 1000, ..default_config() });
    let mut conn = Conn::open(srv.port);
    let mut req = b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n".to_vec();
    req.extend_from_slice(&[b'x'; 1000]);
    conn.send(&req);
    assert_eq!(conn.response().echo().body.len(), 1000);
    // Only the head is sent: the answer must come without waiting for the body.
    conn.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1001\r\n\r\n");
    conn.assert_refused(413);
    assert_serves(srv.port);
}

#[test]
fn max_body_size_for_a_growing_chunked_body() {
    let srv = start(ServerConfig { max_body_size: 1000, ..default_config() });
    let head = b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n";
    let chunk = |n: usize| [format!("{n:x}\r\n").as_bytes(), &vec![b'x'; n], b"\r\n"].concat();
    let mut conn = Conn::open(srv.port);
    conn.send(&[&head[..], &chunk(1000), b"0\r\n\r\n"].concat()); // exactly the limit
    assert_eq!(conn.response().echo().body.len(), 1000);
    conn.send(&[&head[..], &chunk(400)].concat());
    conn.send(&chunk(400));
    // 800 bytes: still reading (only time can show that nothing was answered).
    assert!(conn.wait_closed(Duration::from_millis(100)).is_none() && conn.buf.is_empty());
    conn.send(&chunk(400)); // 1200 bytes: over, before the body ends
    conn.assert_refused(413);
    assert_serves(srv.port);
}

#[test]
fn a_transfer_coding_other_than_chunked_is_501() {
    // hyper frames the body by the last coding, chunked; rsgi decodes no other coding.
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    conn.send(b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert!(!conn.assert_refused(501).answered_by_app());
    // A repeated "chunked" is malformed.
    let mut conn = Conn::open(srv.port);
    conn.send(b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    conn.assert_refused(400);
    assert_serves(srv.port);
}

#[test]
fn connect_is_refused() {
    let srv = start(default_config());
    let mut conn = Conn::open(srv.port);
    conn.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    conn.assert_refused(405);
    assert_serves(srv.port);
}

#[test]
fn requests_past_limit_concurrency_get_503_at_once() {
    let srv = start(ServerConfig { limit_concurrency: 2, ..default_config() });
    let mut held: Vec<Conn> = (0..2).map(|_| Conn::open(srv.port)).collect();
    for conn in &mut held {
        conn.send(&get("/__hold", ""));
    }
    srv.wait_held(2);
    for _ in 0..3 {
        let started = Instant::now();
        let mut conn = Conn::open(srv.port);
        conn.send(&get("/", ""));
        let resp = conn.response();
        assert_eq!(resp.status, 503);
        assert!(!resp.answered_by_app());
        assert!(started.elapsed() < Duration::from_millis(900), "the 503 took {:?}", started.elapsed());
    }
    srv.release();
    srv.release();
    for conn in &mut held {
        assert_eq!(conn.response().echo().get("path"), "/__hold");
    }
    // Once the load is gone the worker answers normally again.
    assert_serves(srv.port);
    // One warning, not one per refusal (the only test here that reaches the limit).
    let warned = stub::warnings().iter().filter(|w| w.starts_with("--limit-concurrency 2 reached")).count();
    assert_eq!(warned, 1, "{:?}", stub::warnings());
}

// -- timeouts ---------------------------------------------------------------------------------------

/// The keep-alive timeout of these tests: it also bounds how long a request head may take.
const KEEPALIVE: Duration = Duration::from_millis(200);

fn short_keepalive() -> ServerConfig {
    ServerConfig { keepalive: KEEPALIVE, ..default_config() }
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let srv = start(short_keepalive());
    let mut conn = Conn::open(srv.port);
    conn.send(&get("/", ""));
    assert_eq!(conn.response().status, 200);
    let after = conn.wait_closed(Duration::from_secs(3)).expect("an idle keep-alive connection was not closed");
    assert!(after > KEEPALIVE / 2, "closed after {after:?}, before the idle timeout");
    assert!(conn.buf.is_empty());
    assert_serves(srv.port);
}

#[test]
fn a_connection_that_never_sends_a_request_is_closed() {
    let srv = start(short_keepalive());
    let mut conn = Conn::open(srv.port);
    let after = conn.wait_closed(Duration::from_secs(3)).expect("a silent connection was not closed");
    assert!(after > KEEPALIVE / 2, "closed after {after:?}");
    assert_serves(srv.port);
}

#[test]
fn a_head_that_never_ends_is_cut_off() {
    let srv = start(short_keepalive());
    let mut conn = Conn::open(srv.port);
    conn.send(b"GET / HTTP/1.1\r\nHost: test\r\n"); // no blank line: the head never ends
    assert!(conn.wait_closed(Duration::from_secs(3)).is_some(), "a stalled request head was not cut off");
    assert!(!String::from_utf8_lossy(&conn.received).contains("200"));
    assert_serves(srv.port);
}

#[test]
fn a_trickling_head_is_cut_off_despite_progress() {
    // A slowloris client sends a header line every 50 ms: the timeout covers the whole head, not
    // each read, so the connection still ends about one timeout after it began.
    let srv = start(short_keepalive());
    let started = Instant::now();
    let mut conn = Conn::open(srv.port);
    conn.send(b"GET / HTTP/1.1\r\nHost: test\r\n");
    let mut closed = false;
    for i in 0..60 {
        // would go on for 3 s
        if conn.wait_closed(Duration::from_millis(50)).is_some()
            || !conn.send(format!("X-Trickle-{i}: x\r\n").as_bytes())
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickling request head was never cut off");
    assert!(started.elapsed() < KEEPALIVE * 4, "cut off only after {:?}", started.elapsed());
    assert_serves(srv.port);
}

#[test]
fn a_slow_app_is_not_cut_off_by_the_keep_alive_timeout() {
    let srv = start(short_keepalive());
    let mut conn = Conn::open(srv.port);
    conn.send(&get(&format!("/__sleep?{}", KEEPALIVE.as_millis() * 2), ""));
    assert_eq!(conn.response().echo().get("path"), "/__sleep");
    conn.send(&get("/__sleep?0", "")); // and the connection is still usable
    assert_eq!(conn.response().echo().get("path"), "/__sleep");
}

#[test]
fn a_slow_upload_is_not_cut_off_by_the_keep_alive_timeout() {
    // The timeout covers the request head only: a body trickling in for longer still arrives.
    let srv = start(short_keepalive());
    let mut conn = Conn::open(srv.port);
    conn.send(b"POST /slow HTTP/1.1\r\nHost: test\r\nContent-Length: 40\r\n\r\n");
    for _ in 0..4 {
        assert!(conn.wait_closed(KEEPALIVE / 3).is_none(), "closed during the upload");
        conn.send(&[b'x'; 10]);
    }
    assert_eq!(conn.response().echo().body.len(), 40);
}

#[test]
fn a_stalled_body_does_not_hold_the_app() {
    // Bodies are read by tokio before the app is called: a client stuck halfway through its body
    // must not keep the (single) app thread from serving others.
    let srv = start(default_config());
    let mut stalled = Conn::open(srv.port);
    stalled.send(b"POST /stalled HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\nonly part");
    let started = Instant::now();
    assert_serves(srv.port);
    assert!(started.elapsed() < Duration::from_secs(1));
    stalled.send(&[b'x'; 1000 - "only part".len()]);
    let echo = stalled.response().echo();
    assert_eq!((echo.get("path"), echo.body.len()), ("/stalled".into(), 1000));
}

#[test]
fn a_stalled_body_is_cut_off_with_408() {
    // A body that stops arriving for --body-timeout gets 408 and the connection closed, so a
    // slow-body client can't hold a connection slot forever.
    let srv = start(ServerConfig { body_timeout: Duration::from_millis(200), ..default_config() });
    let started = Instant::now();
    let mut conn = Conn::open(srv.port);
    conn.send(b"POST /stalled HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\nonly part");
    assert!(!conn.assert_refused(408).answered_by_app());
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(150) && took < Duration::from_secs(3), "408 after {took:?}");
    assert_serves(srv.port);
}
