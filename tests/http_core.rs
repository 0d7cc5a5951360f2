//! The HTTP core driven end to end with a stub app that never touches Python: a plain Rust
//! thread answers the job queue, as the WSGI bridge would.

// A test: a panic here is a failed test, so unwrap and index freely.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use _rsgi::config::ServerConfig;
use _rsgi::http::app::{AppResponse, ThreadQueue};
use _rsgi::http::body::ResponseBody;
use _rsgi::scoreboard::Slot;
use _rsgi::server::Server;
use http::{HeaderMap, StatusCode};
use support::default_config;

mod support;

/// Formats every record at every level, as a logger in production would: a log argument that
/// panics (a bad slice of a request target, say) must show up here, not only under a logger.
struct Evaluating;

impl log::Log for Evaluating {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        std::hint::black_box(record.args().to_string());
    }

    fn flush(&self) {}
}

/// Starts a server on a free port whose app answers "<method> <path> <body length>".
fn start(cfg: ServerConfig) -> (Server, u16) {
    if log::set_logger(&Evaluating).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (queue, jobs) = ThreadQueue::channel();
    let server = Server::start(cfg, &[listener.as_raw_fd()], queue, Slot::new(0)).unwrap();
    drop(listener); // the server holds its own duplicate
    std::thread::spawn(move || {
        for job in jobs.iter() {
            let len = job.body.len();
            let text = format!("{} {} {}", job.head.method, job.head.uri.path(), len);
            let body = ResponseBody::full(text);
            let _ = job.reply.send(AppResponse { status: StatusCode::OK, headers: HeaderMap::new(), body });
        }
    });
    (server, port)
}

fn exchange(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn answers_through_the_queue() {
    let (_server, port) = start(default_config());
    let out = exchange(port, b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("server: rsgi\r\n"), "{out}");
    assert!(out.ends_with("GET /x 0"), "{out}");
}

#[test]
fn chunked_bodies_are_read_whole_before_the_app() {
    let (_server, port) = start(default_config());
    let req = b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    assert!(exchange(port, req).ends_with("POST /p 11"));
}

#[test]
fn bodies_past_the_spool_threshold_go_to_a_file() {
    let cfg = ServerConfig { body_spool_threshold: 16, ..default_config() };
    let (_server, port) = start(cfg);
    let body = vec![b'x'; 100_000];
    let mut req =
        format!("POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
            .into_bytes();
    req.extend_from_slice(&body);
    assert!(exchange(port, &req).ends_with("POST /big 100000"));
}

#[test]
fn limits_answer_before_the_app() {
    let cfg = ServerConfig { max_body_size: 10, limit_request_line: 20, ..default_config() };
    let (_server, port) = start(cfg);
    let out = exchange(port, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world");
    assert!(out.starts_with("HTTP/1.1 413 "), "{out}");
    let out = exchange(port, b"GET /aaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 414 "), "{out}");
}

#[test]
fn graceful_stop_closes_idle_connections() {
    // Idle connections are not cut on a stop (a request may be in flight to us); they end at
    // the keep-alive timeout, kept short here.
    let cfg = ServerConfig { keepalive: Duration::from_millis(300), ..default_config() };
    let (server, port) = start(cfg);
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut buf = [0u8; 1024];
    assert!(idle.read(&mut buf).unwrap() > 0);
    server.stop(false);
    // The server drains: the idle keep-alive connection is closed, and `done` disconnects.
    let mut rest = Vec::new();
    assert!(idle.read_to_end(&mut rest).is_ok(), "the idle connection was not closed");
    let finished = server.done().recv_timeout(Duration::from_secs(5));
    assert_eq!(finished, Err(crossbeam_channel::RecvTimeoutError::Disconnected));
}

#[test]
fn a_refused_target_with_non_ascii_bytes_is_answered() {
    // 78 ASCII bytes, then a two-byte character across byte 80, where log lines were once cut.
    let (_server, port) = start(default_config());
    let target = format!("/{}\u{e9}", "a".repeat(78));
    let out = exchange(port, format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
}

#[test]
fn a_half_closed_request_is_answered() {
    let (_server, port) = start(default_config());
    for req in [
        &b"GET /half HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET /half HTTP/1.0\r\n\r\n",
        b"POST /half HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /half HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.") && out.contains(" 200 OK\r\n"), "{out}");
        let len = if req.starts_with(b"POST") { 5 } else { 0 };
        assert!(out.ends_with(&format!(" /half {len}")), "{out}");
    }
}

#[test]
fn ambiguous_framing_is_refused_and_the_connection_closed() {
    let (_server, port) = start(default_config());
    for req in [
        // A bare LF ends a field line: a proxy splitting on CRLF sees one field, hyper two.
        &b"GET / HTTP/1.1\r\nHost: a\nX-Smuggled: 1\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: a/b\r\nContent-Type: c/d\r\nContent-Length: 0\r\n\r\n",
    ] {
        let out = exchange(port, req);
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
        assert_eq!(out.matches("HTTP/1.1").count(), 1, "{out}");
        assert!(out.contains("connection: close\r\n"), "{out}");
    }
    // Pipelined: the clean first request is served, the second refused, nothing after it read.
    let out = exchange(
        port,
        b"GET /first HTTP/1.1\r\nHost: a\r\n\r\nGET /second HTTP/1.1\r\nHost: a\nX: 1\r\n\r\nGET /third HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n") && out.contains("GET /first 0"), "{out}");
    assert!(out.contains("HTTP/1.1 400 ") && !out.contains("/second") && !out.contains("/third"), "{out}");
}

#[test]
fn a_static_answer_to_a_request_with_a_body_closes_the_connection() {
    // Found by the `http_request` fuzz target: the unread chunked body of a GET for a streamed
    // static file, then a byte that cannot start a request. hyper drained the body while the file
    // was still being written and put its 400 for the stray byte into the middle of the file.
    let dir = tempfile::tempdir().unwrap();
    let file: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("big.bin"), &file).unwrap();
    let root = dir.path().to_str().unwrap().to_owned();
    let cfg = ServerConfig { static_mounts: vec![("/static/".into(), root)], ..default_config() };
    let (_server, port) = start(cfg);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /static/big.bin HTTP/1.1\r\nHost:a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n ")
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&out[..head_end]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("connection: close\r\n"), "{head}");
    assert!(out[head_end..] == file[..], "the body is the file, whole and alone ({} bytes)", out.len() - head_end);
}
