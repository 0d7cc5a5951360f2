//! `--compress` over real sockets, against the real HTTP core with a local app (a plain thread
//! answering the job queue, as the WSGI bridge would, never Python) whose responses each test
//! shapes through the query: each codec by `Accept-Encoding`, q-values and refusals, every case
//! that is never compressed (already encoded, `no-transform`, 204/206/304, HEAD, too small, other
//! types, excluded paths, off by default), in-memory bodies with their new `Content-Length`,
//! streamed, file and large bodies without one, a streamed chunk decodable before the next one is
//! sent, `Vary`/`ETag`/`Accept-Ranges`, static files with and without a precompressed sibling,
//! and no panic on odd input. Responses are decoded with the codecs' own crates (flate2,
//! zstd). Through real workers and clients (curl, httpx, Django): tests/test_compression.py.

// A test: a panic here is a failed test, so unwrap and index freely.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::string_slice, clippy::panic)]

#[path = "support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use _rsgi::config::ServerConfig;
use _rsgi::http::app::{AppResponse, Job, ThreadQueue};
use _rsgi::http::body::ResponseBody;
use _rsgi::scoreboard::Slot;
use _rsgi::server::Server;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use support::client::{find, Conn, Response};

// -- the server and its app ----------------------------------------------------------------------

/// The core view of `rsgi tests:app ARGS...`, parsed by rsgi's own command line (the levels, the
/// types and their defaults are Python's).
fn config(args: &[&str]) -> ServerConfig {
    support::config_from_args(args)
}

struct Srv {
    _server: Server,
    port: u16,
    /// Lets a held `/stream?hold` send its second chunk.
    release: crossbeam_channel::Sender<()>,
    _dir: tempfile::TempDir,
}

fn start(cfg: ServerConfig) -> Srv {
    observe();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (queue, jobs) = ThreadQueue::channel();
    let server = Server::start(cfg, &[listener.as_raw_fd()], queue, Slot::new(0)).unwrap();
    drop(listener);
    let (release, held) = crossbeam_channel::unbounded::<()>();
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().to_owned();
    std::thread::spawn(move || {
        for job in jobs.iter() {
            let (held, files) = (held.clone(), files.clone());
            std::thread::spawn(move || answer(job, &held, &files));
        }
    });
    Srv { _server: server, port, release, _dir: dir }
}

/// `n` bytes of HTML-ish text that compresses well.
fn text(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 40);
    let mut i = 0;
    while out.len() < n {
        out.extend_from_slice(format!("<li class=\"item\">item {i} of the list</li>\n").as_bytes());
        i += 1;
    }
    out.truncate(n);
    out
}

/// `n` bytes that do not compress (xorshift).
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const CHUNK_ONE: &[u8] = b"data: the first event, sent at once\n\n";
const CHUNK_TWO: &[u8] = b"data: the second event, sent once the test has seen the first\n\n";

/// Routes: `/stream[?hold]` (two chunks, the second after a `release()` when held),
/// `/file?size=N` (a file body), `/gzipped` (a body the app compressed itself), `/noise?size=N`,
/// anything else a complete body of `size` bytes of text (4096). Everything but `/stream` takes
/// `type=` (Content-Type, percent-decoded, empty: none), `status=` and `h=Name:value` (repeatable).
fn answer(job: Job, held: &crossbeam_channel::Receiver<()>, files: &std::path::Path) {
    let Job { head, reply, .. } = job;
    let mut size = 4096;
    let mut ctype = Some("text/html; charset=utf-8".to_owned());
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    let mut hold = false;
    for pair in head.uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(value).decode_utf8().unwrap().into_owned();
        match key {
            "size" => size = value.parse().unwrap(),
            "type" => ctype = (!value.is_empty()).then_some(value),
            "status" => status = StatusCode::from_u16(value.parse().unwrap()).unwrap(),
            "hold" => hold = true,
            "h" => {
                let (name, v) = value.split_once(':').unwrap();
                headers
                    .append(HeaderName::try_from(name).unwrap(), HeaderValue::from_bytes(v.trim().as_bytes()).unwrap());
            }
            _ => panic!("unknown parameter {key}"),
        }
    }
    if let Some(t) = ctype {
        headers.insert(CONTENT_TYPE, HeaderValue::from_bytes(t.as_bytes()).unwrap());
    }
    let body = match head.uri.path() {
        "/stream" => {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let held = held.clone();
            std::thread::spawn(move || {
                tx.blocking_send(Ok(CHUNK_ONE.into())).unwrap();
                if hold {
                    held.recv_timeout(Duration::from_secs(10)).expect("the test never released the stream");
                }
                let _ = tx.blocking_send(Ok(CHUNK_TWO.into()));
            });
            ResponseBody::stream(rx)
        }
        "/file" => {
            let path = files.join(format!("file-{size}"));
            std::fs::write(&path, text(size)).unwrap();
            headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
            ResponseBody::file(std::fs::File::open(&path).unwrap(), size as u64)
        }
        path => {
            let data = match path {
                "/gzipped" => {
                    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                    gz.write_all(&text(size)).unwrap();
                    headers.insert("content-encoding", HeaderValue::from_static("gzip"));
                    gz.finish().unwrap()
                }
                "/noise" => noise(size),
                _ => text(size),
            };
            // As the bridges do for a complete body (`response::set_length`).
            headers.insert(CONTENT_LENGTH, HeaderValue::from(data.len()));
            ResponseBody::full(data)
        }
    };
    let _ = reply.send(AppResponse::new(status, headers, body));
}

static IO_PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics on the core's threads (tokio catches a panicking connection task and serves on).
fn observe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some("rsgi-io") {
                IO_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

// -- the client side -----------------------------------------------------------------------------

/// `GET path` with `Accept-Encoding: accept` (none when None) and extra header lines.
fn fetch(port: u16, path: &str, accept: Option<&str>, extra: &str) -> Response {
    let mut conn = Conn::open(port);
    let ae = accept.map(|a| format!("Accept-Encoding: {a}\r\n")).unwrap_or_default();
    conn.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n{ae}{extra}\r\n").as_bytes());
    conn.response()
}

fn decode(coding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(body).read_to_end(&mut out).unwrap();
        }
        "zstd" => out = zstd::decode_all(body).unwrap(),
        other => panic!("unexpected coding {other}"),
    }
    out
}

/// What the bytes received so far of an unfinished stream decode to.
fn decode_partial(coding: &str, body: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => {
            let mut d = flate2::write::GzDecoder::new(Vec::new());
            d.write_all(body).unwrap();
            d.flush().unwrap();
            d.get_ref().clone()
        }
        "zstd" => {
            let mut d = zstd::stream::write::Decoder::new(Vec::new()).unwrap();
            d.write_all(body).unwrap();
            d.flush().unwrap();
            d.get_ref().clone()
        }
        other => panic!("unexpected coding {other}"),
    }
}

/// A compressed response: its coding is `coding`, it says `Vary: Accept-Encoding`, and it decodes
/// to `expected`.
fn assert_compressed(resp: &Response, coding: &str, expected: &[u8]) {
    assert_eq!(resp.header("content-encoding"), Some(coding), "{}", resp.head_text());
    assert!(vary_lists_accept_encoding(resp), "{}", resp.head_text());
    assert_eq!(decode(coding, &resp.body), expected);
}

/// Sent as the app made it: no coding, and the body untouched.
fn assert_identity(resp: &Response, expected: &[u8]) {
    assert_eq!(resp.header("content-encoding"), None, "{}", resp.head_text());
    assert_eq!(resp.body, expected);
}

fn vary_lists_accept_encoding(resp: &Response) -> bool {
    resp.headers_named("vary").iter().any(|v| v.split(',').any(|n| n.trim().eq_ignore_ascii_case("accept-encoding")))
}

// -- the tests -----------------------------------------------------------------------------------

#[test]
fn each_codec_by_accept_encoding_with_the_new_length() {
    let srv = start(config(&["--compress"]));
    for (accept, coding) in [
        ("gzip", "gzip"),
        ("zstd", "zstd"),
        // What browsers send: every one weighs them equally, and zstd wins the tie.
        ("gzip, deflate, br, zstd", "zstd"),
        // Safari's: no zstd, and no brotli here.
        ("gzip, deflate, br", "gzip"),
        ("deflate, gzip", "gzip"),
    ] {
        let resp = fetch(srv.port, "/page?size=20000", Some(accept), "");
        assert_eq!(resp.status, 200);
        assert_compressed(&resp, coding, &text(20000));
        // Compressed in memory: sent with its new length, not chunked.
        assert_eq!(resp.header("content-length"), Some(resp.body.len().to_string().as_str()), "{accept}");
        assert_eq!(resp.header("transfer-encoding"), None);
        assert!(resp.body.len() < 20000 / 5, "{coding}: {} bytes", resp.body.len());
    }
}

#[test]
fn q_values_choose_and_zero_refuses() {
    let srv = start(config(&["--compress"]));
    for (accept, coding) in [
        ("gzip;q=0.5, zstd;q=0.9", Some("zstd")),
        ("br;q=1, gzip;q=0.5", Some("gzip")),
        ("br;q=0, gzip", Some("gzip")),
        ("zstd;q=0.2, gzip;q=0.8, br;q=0.9", Some("gzip")),
        ("*", Some("zstd")),
        ("*;q=0.1, gzip;q=0.2", Some("gzip")),
        ("zstd;q=0, br;q=0, *", Some("gzip")),
        ("identity", None),
        ("gzip;q=0", None),
        ("*;q=0", None),
        ("compress, deflate", None),
        ("br", None),
    ] {
        let resp = fetch(srv.port, "/page", Some(accept), "");
        match coding {
            Some(c) => assert_compressed(&resp, c, &text(4096)),
            None => {
                assert_identity(&resp, &text(4096));
                assert_eq!(resp.header("content-length"), Some("4096"));
                // Another client may get it compressed: caches must keep the two apart.
                assert!(vary_lists_accept_encoding(&resp), "{accept}: {}", resp.head_text());
            }
        }
    }
    // No Accept-Encoding at all: identity, as from nginx and Django.
    let resp = fetch(srv.port, "/page", None, "");
    assert_identity(&resp, &text(4096));
}

#[test]
fn levels_and_codecs_turned_off() {
    let srv = start(config(&["--compress", "--compress-level", "zstd=off"]));
    assert_compressed(&fetch(srv.port, "/page", Some("zstd, gzip"), ""), "gzip", &text(4096));
    assert_identity(&fetch(srv.port, "/page", Some("zstd"), ""), &text(4096));
    let size = |level: &str| {
        let srv = start(config(&["--compress", "--compress-level", level]));
        let resp = fetch(srv.port, "/page?size=200000", Some("gzip"), "");
        assert_compressed(&resp, "gzip", &text(200000));
        resp.body.len()
    };
    assert!(size("gzip=9") < size("gzip=1"));
}

#[test]
fn compression_is_off_by_default() {
    let srv = start(config(&[]));
    let resp = fetch(srv.port, "/page", Some("gzip, br, zstd"), "");
    assert_identity(&resp, &text(4096));
    assert!(resp.headers_named("vary").is_empty());
}

#[test]
fn never_twice_nor_against_no_transform() {
    let srv = start(config(&["--compress"]));
    // Compressed by the app (GZipMiddleware): passed on as it is, decoding once gives the text.
    let resp = fetch(srv.port, "/gzipped", Some("gzip, br, zstd"), "");
    assert_eq!(resp.header("content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &resp.body), text(4096));
    assert_eq!(resp.header("content-length"), Some(resp.body.len().to_string().as_str()));
    for cc in ["no-transform", "private,%20No-Transform", "max-age=0,%20no-transform"] {
        let resp = fetch(srv.port, &format!("/page?h=Cache-Control:{cc}"), Some("gzip"), "");
        assert_identity(&resp, &text(4096));
    }
}

#[test]
fn never_for_statuses_without_a_body_or_for_ranges() {
    let srv = start(config(&["--compress"]));
    for status in [204, 304] {
        let resp = fetch(srv.port, &format!("/page?status={status}"), Some("gzip"), "");
        assert_eq!(resp.status, status);
        assert_eq!(resp.header("content-encoding"), None);
    }
    let resp = fetch(srv.port, "/page?status=206&h=Content-Range:bytes%200-4095/9000", Some("gzip"), "");
    assert_eq!(resp.status, 206);
    assert_identity(&resp, &text(4096));
    // Error pages have bodies like any other.
    for status in [404, 500] {
        let resp = fetch(srv.port, &format!("/page?status={status}"), Some("gzip"), "");
        assert_eq!(resp.status, status);
        assert_compressed(&resp, "gzip", &text(4096));
    }
}

#[test]
fn head_is_answered_as_the_app_declared_it() {
    let srv = start(config(&["--compress"]));
    let mut conn = Conn::open(srv.port);
    conn.send(b"HEAD /page HTTP/1.1\r\nHost: test\r\nAccept-Encoding: gzip\r\n\r\n");
    let resp = conn.head_response();
    assert_eq!(resp.header("content-encoding"), None);
    assert_eq!(resp.header("content-length"), Some("4096"));
    // Nothing followed the head: the next request on the connection is answered normally.
    conn.send(b"GET /page HTTP/1.1\r\nHost: test\r\nAccept-Encoding: gzip\r\n\r\n");
    assert_compressed(&conn.response(), "gzip", &text(4096));
}

#[test]
fn below_the_minimum_size_and_other_types_are_left_alone() {
    let srv = start(config(&["--compress"]));
    let small = fetch(srv.port, "/page?size=1023", Some("gzip"), "");
    assert_identity(&small, &text(1023));
    assert!(small.headers_named("vary").is_empty(), "nothing to vary: {}", small.head_text());
    assert_compressed(&fetch(srv.port, "/page?size=1024", Some("gzip"), ""), "gzip", &text(1024));
    for ty in ["application/json", "application/vnd.api%2Bjson", "image/svg%2Bxml", "TEXT/CSS", "text/plain;charset=x"]
    {
        assert_compressed(&fetch(srv.port, &format!("/page?type={ty}"), Some("gzip"), ""), "gzip", &text(4096));
    }
    for ty in ["image/png", "application/octet-stream", "font/woff2", ""] {
        let resp = fetch(srv.port, &format!("/page?type={ty}"), Some("gzip"), "");
        assert_identity(&resp, &text(4096));
        assert!(resp.headers_named("vary").is_empty());
    }
    // --compress-types replaces the list; --compress-min-size moves the bar.
    let srv = start(config(&["--compress", "--compress-types", "application/json", "--compress-min-size", "100"]));
    assert_identity(&fetch(srv.port, "/page", Some("gzip"), ""), &text(4096));
    assert_compressed(&fetch(srv.port, "/page?size=100&type=application/json", Some("gzip"), ""), "gzip", &text(100));
}

#[test]
fn what_does_not_shrink_is_sent_as_it_was() {
    let srv = start(config(&["--compress"]));
    let resp = fetch(srv.port, "/noise?size=5000", Some("gzip"), "");
    assert_identity(&resp, &noise(5000));
    assert_eq!(resp.header("content-length"), Some("5000"));
}

#[test]
fn vary_is_merged_etags_weakened_ranges_dropped() {
    let srv = start(config(&["--compress"]));
    let resp = fetch(srv.port, "/page?h=Vary:Cookie&h=ETag:%22v1%22&h=Accept-Ranges:bytes", Some("zstd"), "");
    assert_compressed(&resp, "zstd", &text(4096));
    assert_eq!(resp.headers_named("vary"), ["Cookie, Accept-Encoding"]);
    assert_eq!(resp.header("etag"), Some("W/\"v1\""));
    assert_eq!(resp.header("accept-ranges"), None);
    let resp = fetch(srv.port, "/page?h=Vary:*&h=ETag:W/%22v2%22", Some("gzip"), "");
    assert_eq!(resp.header("content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &resp.body), text(4096));
    assert_eq!(resp.headers_named("vary"), ["*"]);
    assert_eq!(resp.header("etag"), Some("W/\"v2\""));
    let resp = fetch(srv.port, "/page?h=Vary:accept-encoding", Some("gzip"), "");
    assert_eq!(resp.headers_named("vary"), ["accept-encoding"]);
}

#[test]
fn files_and_large_bodies_are_compressed_as_sent_without_a_length() {
    let srv = start(config(&["--compress"]));
    for (path, size) in [("/file?size=300000", 300000), ("/page?size=1000000", 1000000), ("/file?size=2000", 2000)] {
        for coding in ["gzip", "zstd"] {
            let resp = fetch(srv.port, path, Some(coding), "");
            assert_compressed(&resp, coding, &text(size));
            assert_eq!(resp.header("content-length"), None, "{path}");
            assert_eq!(resp.header("transfer-encoding"), Some("chunked"), "{path}");
        }
    }
}

/// Reads from `sock` into `received` until `until(received)` holds (within 5 s).
fn read_until(sock: &mut TcpStream, received: &mut Vec<u8>, until: impl Fn(&[u8]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    while !until(received.as_slice()) {
        assert!(Instant::now() < deadline, "only this came: {}", received.escape_ascii());
        let mut buf = [0u8; 8192];
        match sock.read(&mut buf) {
            Ok(0) => panic!("closed early: {}", received.escape_ascii()),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

/// The head of a chunked response, and the data of every complete chunk received so far.
fn split(received: &[u8]) -> Option<(String, Vec<u8>)> {
    let at = find(received, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&received[..at]).to_ascii_lowercase();
    let mut framed = &received[at + 4..];
    let mut data = Vec::new();
    while let Some(eol) = find(framed, b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&framed[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 || framed.len() < eol + 2 + size + 2 {
            break;
        }
        data.extend_from_slice(&framed[eol + 2..eol + 2 + size]);
        framed = &framed[eol + 2 + size + 2..];
    }
    Some((head, data))
}

#[test]
fn each_streamed_chunk_is_decodable_before_the_next_is_sent() {
    let srv = start(config(&["--compress"]));
    for coding in ["gzip", "zstd"] {
        let mut sock = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        let request = format!("GET /stream?hold HTTP/1.1\r\nHost: test\r\nAccept-Encoding: {coding}\r\n\r\n");
        sock.write_all(request.as_bytes()).unwrap();
        // The app holds its second chunk until released: the first must arrive, decodable, before.
        let mut received = Vec::new();
        let first_decoded = |r: &[u8]| split(r).is_some_and(|(_, data)| decode_partial(coding, &data) == CHUNK_ONE);
        read_until(&mut sock, &mut received, first_decoded);
        let (head, _) = split(&received).unwrap();
        assert!(head.contains(&format!("content-encoding: {coding}")), "{head}");
        assert!(head.contains("transfer-encoding: chunked") && !head.contains("content-length"), "{head}");
        srv.release.send(()).unwrap();
        read_until(&mut sock, &mut received, |r| r.ends_with(b"\r\n0\r\n\r\n"));
        // The whole body is one valid compressed stream, its trailer included.
        let (_, data) = split(&received).unwrap();
        assert_eq!(decode(coding, &data), [CHUNK_ONE, CHUNK_TWO].concat(), "{coding}");
    }
}

#[test]
fn excluded_paths_are_matched_as_the_app_routes_them() {
    let srv = start(config(&["--compress", "--compress-exclude-path", "/account/"]));
    for path in ["/account/", "/account/settings", "/%61ccount/settings"] {
        let resp = fetch(srv.port, path, Some("gzip"), "");
        assert_identity(&resp, &text(4096));
        assert!(resp.headers_named("vary").is_empty(), "{path}");
    }
    assert_compressed(&fetch(srv.port, "/accounts", Some("gzip"), ""), "gzip", &text(4096));
}

#[test]
fn static_files_compressed_unless_a_sibling_was_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let css = text(8000);
    std::fs::write(dir.path().join("site.css"), &css).unwrap();
    let js = text(5000);
    std::fs::write(dir.path().join("app.js"), &js).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&js).unwrap();
    let sibling = gz.finish().unwrap();
    std::fs::write(dir.path().join("app.js.gz"), &sibling).unwrap();
    std::fs::write(dir.path().join("logo.png"), text(3000)).unwrap();
    let mount = format!("/assets/={}", dir.path().display());
    let srv = start(config(&["--compress", "--static", mount.as_str()]));

    // No sibling: compressed on the fly, with a weak ETag and without Accept-Ranges.
    let resp = fetch(srv.port, "/assets/site.css", Some("gzip, zstd"), "");
    assert_compressed(&resp, "zstd", &css);
    let etag = resp.header("etag").unwrap().to_owned();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert_eq!(resp.header("accept-ranges"), None);
    // That weak ETag revalidates.
    let resp = fetch(srv.port, "/assets/site.css", Some("gzip, zstd"), &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(resp.status, 304);
    // A range is of the identity bytes, never compressed.
    let resp = fetch(srv.port, "/assets/site.css", Some("gzip"), "Range: bytes=0-99\r\n");
    assert_eq!(resp.status, 206);
    assert_identity(&resp, &css[..100]);

    // The precompressed sibling is sent as it is on disk, not compressed again...
    let resp = fetch(srv.port, "/assets/app.js", Some("gzip"), "");
    assert_eq!(resp.header("content-encoding"), Some("gzip"));
    assert_eq!(resp.body, sibling);
    assert_eq!(resp.headers_named("vary"), ["Accept-Encoding"]);
    // ...and a coding it has no sibling for is made on the fly from the file itself.
    assert_compressed(&fetch(srv.port, "/assets/app.js", Some("zstd"), ""), "zstd", &js);
    // Not a compressible type.
    assert_identity(&fetch(srv.port, "/assets/logo.png", Some("gzip"), ""), &text(3000));
}

#[test]
fn odd_input_never_panics() {
    let srv = start(config(&["--compress", "--compress-min-size", "0"]));
    let long = "br,".repeat(1000);
    for accept in
        ["gzip;q=", "gzip;q=nan", "gzip;q=1e400", ";;;,,,", "q=1", "*;q=0.5;q=0.9", "gzip;level=9", long.as_str()]
    {
        let resp = fetch(srv.port, "/page", Some(accept), "");
        assert_eq!(resp.status, 200, "{accept}");
        match resp.header("content-encoding") {
            Some(coding) => assert_eq!(decode(coding, &resp.body), text(4096)),
            None => assert_eq!(resp.body, text(4096)),
        }
    }
    let mut conn = Conn::open(srv.port);
    conn.send(b"GET /page?size=1 HTTP/1.1\r\nHost: test\r\nAccept-Encoding: gz\xffip, \x80br\r\n\r\n");
    assert_eq!(conn.response().status, 200);
    for query in ["size=0", "size=1", "type=text/%C3%A9", "type=text", "type=/", "h=Vary:,,,"] {
        let resp = fetch(srv.port, &format!("/page?{query}"), Some("gzip"), "");
        assert_eq!(resp.status, 200, "{query}");
    }
    assert_eq!(IO_PANICS.load(Ordering::SeqCst), 0);
}
