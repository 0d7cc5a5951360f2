//! `--proxy-protocol` end to end over real sockets, against the real HTTP core with the stub app
//! (`support::stub`, which echoes the client address the core handed over): v1 and v2 headers,
//! LOCAL and UNKNOWN, what is refused (missing, malformed, cut short, from an untrusted peer) and
//! that it never reaches the app, a header split across reads or too slow, request bytes in the
//! same packet as the header, HTTP/2 after it, a Unix-socket listener, and the proxy-header trust
//! decisions taken on the address the header gave. What apps see through HAProxy (TLS, h2c, WSGI
//! and ASGI) is tests/test_proxy_protocol.py.

// A test: a panic here is a failed test, so unwrap and index freely.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::string_slice, clippy::panic)]

#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use _rsgi::config::ServerConfig;
use pyo3::prelude::*;

use support::client::{get, Conn};
use support::stub::{self, start};

/// The core view of `rsgi APP` with these settings, as Python builds it (so the names, spellings
/// and the allow-list default are the ones a real server gets).
fn config(flags: &[(&str, &str)]) -> ServerConfig {
    support::config_from(|dict| flags.iter().try_for_each(|(k, v)| dict.set_item(*k, *v)))
}

fn proxy_on() -> ServerConfig {
    config(&[("proxy_protocol", "auto")])
}

/// A v2 header, built by hand: `command` 0 LOCAL or 1 PROXY, TCP over IPv4 (`src` as the client).
fn v2_tcp4(command: u8, src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut out = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
    out.extend([0x20 | command, 0x11, 0, 12]);
    out.extend(src);
    out.extend([127, 0, 0, 1]);
    out.extend(sport.to_be_bytes());
    out.extend(8000u16.to_be_bytes());
    out
}

/// A v2 header for a TCP over IPv6 client, with a NOOP TLV after the addresses.
fn v2_tcp6(src: [u8; 16], sport: u16) -> Vec<u8> {
    let mut out = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
    out.extend([0x21, 0x21, 0, 36 + 5]);
    out.extend(src);
    out.extend([0; 15]);
    out.push(1);
    out.extend(sport.to_be_bytes());
    out.extend(8000u16.to_be_bytes());
    out.extend([0x04, 0, 2, 0, 0]);
    out
}

/// `header` then a GET on a fresh connection: the client address the app was handed.
fn client_seen(port: u16, header: &[u8]) -> String {
    let mut conn = Conn::open(port);
    let mut data = header.to_vec();
    data.extend(get("/who", "Connection: close\r\n"));
    conn.send(&data);
    let resp = conn.response();
    assert_eq!(resp.status, 200, "{}", resp.head_text());
    resp.echo().get("remote")
}

/// The server closes the connection without a byte of response (so the app was never called:
/// the stub answers every request it gets).
fn assert_closed_unanswered(conn: &mut Conn, within: Duration) {
    assert!(conn.wait_closed(within).is_some(), "the connection stayed open");
    assert!(conn.received.is_empty(), "the server answered: {}", conn.received.escape_ascii());
}

/// Refusals the core logged so far went up by at least one while `f` ran (tests run in parallel,
/// so other tests may add to it too; the Prometheus counter is checked by the Python suite).
fn refused_during(f: impl FnOnce()) {
    let before = stub::refusals_logged();
    f();
    let deadline = Instant::now() + Duration::from_secs(2);
    while stub::refusals_logged() == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(stub::refusals_logged() > before, "the refusal was not logged");
}

#[test]
fn v1_tcp4_and_tcp6_set_the_client_address() {
    let srv = start(proxy_on());
    assert_eq!(client_seen(srv.port, b"PROXY TCP4 203.0.113.7 127.0.0.1 56324 8000\r\n"), "203.0.113.7:56324");
    let tcp6 = b"PROXY TCP6 2001:db8::7 ::1 4711 8000\r\n";
    assert_eq!(client_seen(srv.port, tcp6), "[2001:db8::7]:4711");
}

#[test]
fn v2_tcp4_and_tcp6_set_the_client_address() {
    let srv = start(proxy_on());
    assert_eq!(client_seen(srv.port, &v2_tcp4(1, [198, 51, 100, 9], 40000)), "198.51.100.9:40000");
    let mut ip = [0u8; 16];
    ip[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    ip[15] = 9;
    assert_eq!(client_seen(srv.port, &v2_tcp6(ip, 50000)), "[2001:db8::9]:50000");
}

#[test]
fn local_and_unknown_keep_the_socket_peer() {
    let srv = start(proxy_on());
    let local = client_seen(srv.port, &v2_tcp4(0, [198, 51, 100, 9], 40000));
    assert!(local.starts_with("127.0.0.1:"), "{local}");
    let unknown = client_seen(srv.port, b"PROXY UNKNOWN\r\n");
    assert!(unknown.starts_with("127.0.0.1:"), "{unknown}");
}

#[test]
fn a_connection_without_a_header_is_closed_unanswered() {
    let srv = start(proxy_on());
    refused_during(|| {
        let mut conn = Conn::open(srv.port);
        conn.send(&get("/", ""));
        assert_closed_unanswered(&mut conn, Duration::from_secs(3));
    });
    // A client that sends only the start of a request line is refused on its first byte that
    // cannot start a header, not after the timeout.
    let mut conn = Conn::open(srv.port);
    conn.send(b"PU");
    let took = conn.wait_closed(Duration::from_secs(3)).expect("the connection stayed open");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn malformed_headers_are_closed_unanswered() {
    let srv = start(proxy_on());
    let cases: &[&[u8]] = &[
        b"PROXY TCP4 203.0.113.999 127.0.0.1 1 2\r\n",
        b"PROXY TCP4 203.0.113.7 127.0.0.1 1 99999\r\n",
        b"PROXY TCP9 203.0.113.7 127.0.0.1 1 2\r\n",
        b"PROXY TCP4  203.0.113.7 127.0.0.1 1 2\r\n",
        b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c123456789012",
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04\x01\x02\x03\x04",
    ];
    for header in cases {
        refused_during(|| {
            let mut conn = Conn::open(srv.port);
            let mut data = header.to_vec();
            data.extend(get("/", ""));
            conn.send(&data);
            assert_closed_unanswered(&mut conn, Duration::from_secs(3));
        });
    }
    let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(100));
    let mut conn = Conn::open(srv.port);
    conn.send(long.as_bytes());
    assert_closed_unanswered(&mut conn, Duration::from_secs(3));
    assert!(client_seen(srv.port, b"PROXY UNKNOWN\r\n").starts_with("127.0.0.1:"), "still serving");
}

#[test]
fn a_truncated_header_is_closed_unanswered() {
    let srv = start(proxy_on());
    for partial in [&b"PROXY TCP4 203.0.113.7 127.0"[..], &v2_tcp4(1, [1, 2, 3, 4], 5)[..20]] {
        refused_during(|| {
            let mut conn = Conn::open(srv.port);
            conn.send(partial);
            conn.shutdown_write();
            assert_closed_unanswered(&mut conn, Duration::from_secs(3));
        });
    }
}

#[test]
fn a_header_from_a_peer_not_allowed_is_refused() {
    // The tests connect from 127.0.0.1: allowed by default (--forwarded-allow-ips), not here.
    let srv = start(config(&[("proxy_protocol", "auto"), ("proxy_allow_ips", "10.0.0.0/8")]));
    refused_during(|| {
        let mut conn = Conn::open(srv.port);
        let mut data = b"PROXY TCP4 203.0.113.7 127.0.0.1 1 2\r\n".to_vec();
        data.extend(get("/", ""));
        conn.send(&data);
        assert_closed_unanswered(&mut conn, Duration::from_secs(3));
    });
    // --forwarded-allow-ips is the list when --proxy-allow-from is not given.
    let srv = start(config(&[("proxy_protocol", "auto"), ("forwarded_allow_ips", "192.0.2.1")]));
    let mut conn = Conn::open(srv.port);
    conn.send(b"PROXY UNKNOWN\r\n");
    assert_closed_unanswered(&mut conn, Duration::from_secs(3));
}

#[test]
fn only_the_configured_version_is_taken() {
    let v1 = start(config(&[("proxy_protocol", "v1")]));
    let v2 = start(config(&[("proxy_protocol", "v2")]));
    assert_eq!(client_seen(v1.port, b"PROXY TCP4 203.0.113.7 127.0.0.1 1 2\r\n"), "203.0.113.7:1");
    assert_eq!(client_seen(v2.port, &v2_tcp4(1, [203, 0, 113, 8], 2)), "203.0.113.8:2");
    let mut conn = Conn::open(v1.port);
    conn.send(&v2_tcp4(1, [203, 0, 113, 8], 2));
    assert_closed_unanswered(&mut conn, Duration::from_secs(3));
    let mut conn = Conn::open(v2.port);
    conn.send(b"PROXY TCP4 203.0.113.7 127.0.0.1 1 2\r\n");
    assert_closed_unanswered(&mut conn, Duration::from_secs(3));
}

#[test]
fn a_header_split_across_reads_is_put_together() {
    let srv = start(proxy_on());
    for header in [b"PROXY TCP4 203.0.113.7 127.0.0.1 56324 8000\r\n".to_vec(), v2_tcp4(1, [198, 51, 100, 9], 40000)] {
        let mut sock = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        sock.set_nodelay(true).unwrap();
        for piece in header.chunks(3) {
            sock.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        sock.write_all(&get("/split", "Connection: close\r\n")).unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut sock, &mut out).unwrap();
        let resp = support::client::Response::whole(&out);
        assert_eq!(resp.status, 200);
        assert!(["203.0.113.7:56324", "198.51.100.9:40000"].contains(&resp.echo().get("remote").as_str()));
    }
}

#[test]
fn a_slow_header_times_out_without_holding_up_other_connections() {
    let cfg = ServerConfig { keepalive: Duration::from_millis(600), ..proxy_on() };
    let srv = start(cfg);
    let mut slow = Conn::open(srv.port);
    slow.send(b"PROXY TCP4 203.0.");
    let mut silent = Conn::open(srv.port);
    // Meanwhile the accept loop takes and serves others.
    let started = Instant::now();
    assert_eq!(client_seen(srv.port, b"PROXY TCP4 203.0.113.7 127.0.0.1 1 2\r\n"), "203.0.113.7:1");
    assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    let took = slow.wait_closed(Duration::from_secs(5)).expect("the slow header was never timed out");
    assert!(took >= Duration::from_millis(300) && slow.received.is_empty(), "{took:?}");
    assert!(silent.wait_closed(Duration::from_secs(5)).is_some());
    assert!(silent.received.is_empty());
}

#[test]
fn requests_in_the_same_packet_as_the_header_are_served() {
    let srv = start(proxy_on());
    let mut conn = Conn::open(srv.port);
    let mut data = b"PROXY TCP4 203.0.113.7 127.0.0.1 56324 8000\r\n".to_vec();
    data.extend(get("/one", ""));
    data.extend(get("/two", "Connection: close\r\n"));
    conn.send(&data);
    for path in ["/one", "/two"] {
        let echo = conn.response().echo();
        assert_eq!(echo.get("path"), path);
        assert_eq!(echo.get("remote"), "203.0.113.7:56324");
    }
}

#[test]
fn http2_with_prior_knowledge_follows_the_header() {
    let srv = start(proxy_on());
    let mut conn = Conn::open(srv.port);
    let mut data = v2_tcp4(1, [198, 51, 100, 9], 40000);
    data.extend(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    data.extend([0, 0, 0, 4, 0, 0, 0, 0, 0]); // an empty SETTINGS frame
    conn.send(&data);
    // The server's first frame is its SETTINGS (type 4 on stream 0): it spoke HTTP/2.
    let frame = conn.bytes(9);
    assert_eq!(frame[3], 4, "{}", frame.escape_ascii());
}

#[test]
fn proxy_headers_are_judged_by_the_address_from_the_header() {
    let srv = start(proxy_on());
    // A client the header names (not a trusted proxy) cannot set its address with X-Forwarded-For...
    let mut conn = Conn::open(srv.port);
    let mut data = b"PROXY TCP4 203.0.113.7 127.0.0.1 1 2\r\n".to_vec();
    data.extend(get("/", "X-Forwarded-For: 192.0.2.66\r\nConnection: close\r\n"));
    conn.send(&data);
    assert_eq!(conn.response().echo().get("remote"), "203.0.113.7:1");
    // ...while a trusted one (here loopback, behind a proxy on the same machine) can.
    let mut conn = Conn::open(srv.port);
    let mut data = b"PROXY TCP4 127.0.0.1 127.0.0.1 1 2\r\n".to_vec();
    data.extend(get("/", "X-Forwarded-For: 192.0.2.66\r\nConnection: close\r\n"));
    conn.send(&data);
    assert_eq!(conn.response().echo().remote_ip(), "192.0.2.66");
}

#[test]
fn a_unix_socket_listener_takes_headers_from_any_local_peer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rsgi.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let cfg = config(&[("proxy_protocol", "auto"), ("proxy_allow_ips", "10.0.0.0/8")]);
    let (_server, _held, _release) = stub::start_on(cfg, listener.as_raw_fd());
    let mut conn = Conn::unix(&path);
    let mut data = b"PROXY TCP4 203.0.113.7 127.0.0.1 56324 8000\r\n".to_vec();
    data.extend(get("/", "Connection: close\r\n"));
    conn.send(&data);
    assert_eq!(conn.response().echo().get("remote"), "203.0.113.7:56324");
    let mut conn = Conn::unix(&path);
    let mut data = b"PROXY UNKNOWN\r\n".to_vec();
    data.extend(get("/", "Connection: close\r\n"));
    conn.send(&data);
    assert_eq!(conn.response().echo().get("remote"), "unix");
    let mut conn = Conn::unix(&path);
    conn.send(&get("/", ""));
    assert_closed_unanswered(&mut conn, Duration::from_secs(3));
}

#[test]
fn no_input_panics_the_core() {
    let srv = start(proxy_on());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..200 {
        let mut data = if i % 2 == 0 { b"PROXY ".to_vec() } else { b"\r\n\r\n\x00\r\nQUIT\n".to_vec() };
        for _ in 0..(x % 120) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.push(if i % 3 == 0 { b"0123456789.: TCP46\r\n"[(x % 20) as usize] } else { x as u8 });
        }
        let mut conn = Conn::open(srv.port);
        conn.send(&data);
        conn.shutdown_write();
        let _ = conn.wait_closed(Duration::from_secs(3));
    }
    assert_eq!(stub::io_panics(), 0);
    assert!(client_seen(srv.port, b"PROXY UNKNOWN\r\n").starts_with("127.0.0.1:"), "still serving");
}
