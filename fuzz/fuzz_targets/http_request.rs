//! `http_request`: the fuzz input is what one client sends on one connection. It goes through
//! rsgi's real connection code (`http::conn::serve`: hyper with rsgi's builder settings,
//! `service::check_head`, the static mounts, body collection and spooling, the access log) over
//! a Unix socket pair, with a stub app behind the job queue that answers every request at once.
//!
//! Input: the bytes are sent as they are. An input that starts with a 0x00 byte uses the next
//! byte to pick a server profile (limits, spooling, draining, how the app answers; see
//! `Profile`) and sends the rest. No request starts with NUL, so files from
//! `tests/reliability/corpus` work as seeds unchanged.
//!
//! Asserted, besides "no panic":
//! - every byte the server writes parses as a sequence of HTTP/1.1 responses with a valid
//!   status, never with both Content-Length and Transfer-Encoding, and nothing follows a
//!   response that says `Connection: close`;
//! - every request the app answered reaches the client, in order, with exactly the body the
//!   app produced (HEAD, 204 and 304 without one);
//! - every body the app saw is at most `max_body_size`, is exactly Content-Length bytes when the
//!   request had one, empty when it had no framing, and equal to the body an independent strict
//!   reader (`rsgi_fuzz::wire::walk`) finds for that request; the app never sees a request the
//!   reader did not find when the reader understood the whole stream;
//! - the server closes the connection by itself (keep-alive and body timeouts) within 600 s.
//!
//! The runtime is tokio's current-thread scheduler on a paused clock: when nothing can run, the
//! clock jumps to the next timer, so the 5 s keep-alive and body timeouts cost no real time and
//! an input takes microseconds to milliseconds.
#![no_main]

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use _rsgi::config::{HttpVersions, ServerConfig, TrustedProxies};
use _rsgi::http::access_log::AccessLog;
use _rsgi::http::app::{AppResponse, Job, JobSink};
use _rsgi::http::body::ResponseBody;
use _rsgi::http::conn::{self, Builders};
use _rsgi::http::request::{ConnInfo, Peer, RequestBody};
use _rsgi::http::service::Shared;
use _rsgi::http::static_files::StaticFiles;
use _rsgi::scoreboard::{Slot, SLOT_SIZE};
use _rsgi::stop::Stop;
use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};
use libfuzzer_sys::fuzz_target;
use rsgi_fuzz::wire::{self, show};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

/// URL prefix of the static mount every profile has.
const STATIC_PREFIX: &str = "/static/";

/// `--health-path` in every profile.
const HEALTH_PATH: &str = "/healthz";

/// What an HTTP/2 client sends first; rsgi's `--http auto` (the default) detects it.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Every atom the access log knows, and two header atoms.
const LOG_FORMAT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(B)s %(T)s %(M)s %(D)s %(L)s %(p)s %(m)s %(U)s %(q)s %(H)s %({x-a}i)s %({content-type}o)s"#;

fuzz_target!(|data: &[u8]| {
    let (profile, wire) = match data {
        [0, p, rest @ ..] => (Profile::from_byte(*p), rest),
        _ => (Profile::default(), data),
    };
    runtime().block_on(exchange(&profile, wire));
});

/// How the stub app answers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Reply {
    /// 200 with a complete body (Content-Length).
    #[default]
    Full,
    /// 200 with a streamed body, including an empty chunk (chunked, or close-delimited for 1.0).
    Stream,
    /// 204, no body.
    NoContent,
    /// 200 with a complete body and `Connection: close` set by the app.
    Close,
}

/// The server settings for one input.
#[derive(Debug, Default)]
struct Profile {
    /// bits 0-1: 0 default limits; 1 max body 16 B; 2 max body 0; 3 tight limits everywhere.
    limits: u8,
    /// bit 2: spool bodies above 8 bytes to a temporary file.
    spool: bool,
    /// bit 3: the worker is draining (every response closes its connection).
    draining: bool,
    /// bits 4-5.
    reply: Reply,
    /// bit 6.
    access_log: bool,
    /// bit 7: no Server and Date headers; proxy headers trusted from every peer.
    bare: bool,
}

impl Profile {
    fn from_byte(p: u8) -> Self {
        Self {
            limits: p & 3,
            spool: p & 4 != 0,
            draining: p & 8 != 0,
            reply: [Reply::Full, Reply::Stream, Reply::NoContent, Reply::Close][usize::from((p >> 4) & 3)],
            access_log: p & 64 != 0,
            bare: p & 128 != 0,
        }
    }

    fn config(&self) -> ServerConfig {
        let mut cfg = ServerConfig {
            keepalive: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            graceful_timeout: Duration::from_secs(1),
            server_header: !self.bare,
            date_header: !self.bare,
            http: HttpVersions::Auto,
            health_path: HEALTH_PATH.to_owned(),
            // Proxy headers are believed only in the bare profile (a Unix peer counts as
            // loopback, which the default list trusts).
            trusted_proxies: self.bare.then(|| TrustedProxies::parse("*").unwrap()),
            ..default_config().clone()
        };
        match self.limits {
            1 => cfg.max_body_size = 16,
            2 => cfg.max_body_size = 0,
            3 => {
                cfg.max_body_size = 1000;
                cfg.limit_request_line = 32;
                cfg.limit_request_fields = 4;
                cfg.limit_request_field_size = 64;
            }
            _ => {}
        }
        if self.spool {
            cfg.body_spool_threshold = 8;
        }
        cfg
    }
}

/// The core view of `rsgi APP` with no other setting, read once from Python's `rsgi.config`
/// (the core has no defaults of its own; `tests/support` does the same). `run.sh` puts the
/// checkout's `python/` on `PYTHONPATH`.
fn default_config() -> &'static ServerConfig {
    static CONFIG: OnceLock<ServerConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        use pyo3::prelude::*;
        Python::attach(|py| {
            let flags = pyo3::types::PyDict::new(py);
            flags.set_item("app", "fuzz:app")?;
            py.import("rsgi.config")?.call_method1("build", (flags,))?.call_method0("core")?.extract::<ServerConfig>()
        })
        .unwrap_or_else(|e| panic!("could not read rsgi's defaults from Python (is python/ on PYTHONPATH?): {e}"))
    })
}

/// What the app saw for one request, and what it sent back.
struct Seen {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Vec<u8>,
    status: StatusCode,
    sent: Vec<u8>,
}

/// The app behind the job queue: answers every job as soon as it is submitted, so the whole
/// exchange runs on the one runtime thread.
struct StubApp {
    reply: Reply,
    seen: Mutex<Vec<Seen>>,
}

impl JobSink for StubApp {
    fn submit(&self, job: Job) -> bool {
        let body = match job.body {
            RequestBody::Memory(b) => b.to_vec(),
            RequestBody::Spooled { mut file, len } => {
                let mut v = Vec::new();
                file.read_to_end(&mut v).expect("read the spooled body");
                assert_eq!(v.len() as u64, len, "the spooled file does not hold the body's length");
                v
            }
        };
        let mut seen = self.seen.lock().unwrap();
        let seq = seen.len();
        let text = format!("app:{seq}:{}\n", body.len());
        let mut headers = HeaderMap::new();
        headers.insert("x-fuzz-seq", HeaderValue::from(seq));
        let (status, sent, resp_body) = match self.reply {
            Reply::Full => (StatusCode::OK, text.clone().into_bytes(), ResponseBody::full(text)),
            Reply::Close => {
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
                (StatusCode::OK, text.clone().into_bytes(), ResponseBody::full(text))
            }
            Reply::NoContent => (StatusCode::NO_CONTENT, Vec::new(), ResponseBody::empty()),
            Reply::Stream => {
                let (tx, rx) = tokio::sync::mpsc::channel(8);
                let (a, b) = text.split_at(4);
                for chunk in [a.to_owned(), String::new(), b.to_owned()] {
                    tx.try_send(Ok(Bytes::from(chunk))).expect("room in the channel");
                }
                (StatusCode::OK, text.into_bytes(), ResponseBody::stream(rx))
            }
        };
        seen.push(Seen {
            method: job.head.method.clone(),
            uri: job.head.uri.clone(),
            version: job.head.version,
            headers: job.head.headers.clone(),
            body,
            status,
            sent,
        });
        let _ = job.reply.send(AppResponse::new(status, headers, resp_body));
        true
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        // libFuzzer's main() is not Rust's, so SIGPIPE still has its default action; a write to
        // a socket the server closed must fail with EPIPE, not kill the fuzzer (Python, which
        // hosts rsgi in production, ignores SIGPIPE too).
        // SAFETY: setting a signal disposition to SIG_IGN at start-up, before any thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        rsgi_fuzz::evaluate_every_log_record();
        tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap()
    })
}

/// A static root with small, large (streamed), precompressed and hashed files, and a secret
/// next to it.
fn static_root() -> &'static PathBuf {
    static ROOT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &ROOT
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("static");
            std::fs::create_dir_all(root.join("sub")).unwrap();
            let files: [(&str, Vec<u8>); 7] = [
                ("hello.txt", b"static hello\n".to_vec()),
                ("style.css", b"body { color: red }\n".repeat(20)),
                ("style.css.gz", b"gz-bytes".to_vec()),
                ("style.css.br", b"br-bytes".to_vec()),
                ("app.3f2a1b9c.js", b"console.log(1)\n".to_vec()),
                ("sub/index.html", b"<p>sub</p>\n".to_vec()),
                ("big.bin", (0..70_000u32).map(|i| b'a' + (i % 26) as u8).collect()),
            ];
            for (name, content) in files {
                std::fs::write(root.join(name), content).unwrap();
            }
            std::fs::write(root.join(".hidden"), "hidden\n").unwrap();
            std::fs::write(dir.path().join("secret.txt"), "secret\n").unwrap();
            std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("escape.txt")).unwrap();
            (dir, root)
        })
        .1
}

/// A real scoreboard slot (zeroed memory of the supervisor's layout), so the counters the core
/// keeps per request run too, under the sanitizer.
fn slot() -> Slot {
    static BASE: OnceLock<usize> = OnceLock::new();
    Slot::new(*BASE.get_or_init(|| Box::leak(vec![0u64; SLOT_SIZE / 8].into_boxed_slice()).as_ptr() as usize))
}

fn access_log() -> Arc<AccessLog> {
    static LOG: OnceLock<Arc<AccessLog>> = OnceLock::new();
    LOG.get_or_init(|| Arc::new(AccessLog::open("/dev/null", LOG_FORMAT).unwrap())).clone()
}

async fn exchange(profile: &Profile, input: &[u8]) {
    let cfg = profile.config();
    let app = Arc::new(StubApp { reply: profile.reply, seen: Mutex::new(Vec::new()) });
    let root = static_root().to_str().unwrap().to_owned();
    let statics = StaticFiles::new(&[(STATIC_PREFIX.to_owned(), root)], 60).unwrap();
    let (_stop_tx, stop_rx) = watch::channel(Stop::Running);
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        queue: app.clone(),
        leaving: Arc::new(AtomicBool::new(profile.draining)),
        stop: stop_rx.clone(),
        tasks: TaskTracker::new(),
        access_log: profile.access_log.then(access_log),
        in_flight: AtomicUsize::new(0),
        statics,
        slot: slot(),
        rate_limit: None,
    });
    let builders = Arc::new(Builders::new(&cfg).unwrap());
    let (server_end, client_end) = tokio::io::duplex(64 * 1024);
    let info = ConnInfo { remote: Peer::Unix, local: Peer::Unix, scheme: "http" };
    let server = tokio::spawn(conn::serve(server_end, info, shared, builders, stop_rx));

    // The client sends everything and keeps its side open (hyper drops a request whose client
    // half-closes before the answer), reading until the server closes.
    let (mut rd, mut wr) = tokio::io::split(client_end);
    let sent = input.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&sent).await;
        wr
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(600), rd.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server kept the connection open for 600 s; it wrote: {}", show(&out));
    drop(writer.await);
    tokio::time::timeout(Duration::from_secs(60), server).await.expect("serve() returned").expect("no panic");

    let seen = std::mem::take(&mut *app.seen.lock().unwrap());
    if show_exchange() {
        eprintln!("--- the app saw {} request(s); the server wrote:\n{}", seen.len(), String::from_utf8_lossy(&out));
    }
    let h2 = input.starts_with(H2_PREFACE);
    check_app(&cfg, input, &seen, h2);
    if !h2 {
        check_responses(&out, &seen);
    }
}

/// `RSGI_FUZZ_SHOW=1` prints each exchange (to read what a crashing input does).
fn show_exchange() -> bool {
    static SHOW: OnceLock<bool> = OnceLock::new();
    *SHOW.get_or_init(|| std::env::var_os("RSGI_FUZZ_SHOW").is_some())
}

/// What the app received agrees with the request framing, the limits, and the strict reader.
/// (HTTP/2 inputs only get the checks that do not need the HTTP/1 reader.)
fn check_app(cfg: &ServerConfig, input: &[u8], seen: &[Seen], h2: bool) {
    let walk = if h2 { wire::Walk::default() } else { wire::walk(input) };
    let served_by_core = |path: &str| path.starts_with(STATIC_PREFIX) || path == HEALTH_PATH;
    let to_app: Vec<_> = walk.requests.iter().filter(|r| !served_by_core(r.uri.path())).collect();
    for (i, s) in seen.iter().enumerate() {
        let len = s.body.len() as u64;
        assert!(
            len <= cfg.max_body_size,
            "request {i}: the app got {len} body bytes, max_body_size is {}",
            cfg.max_body_size
        );
        // HTTP/2 frames bodies with DATA frames; Content-Length there is only advisory.
        if !h2 && !s.headers.contains_key(TRANSFER_ENCODING) {
            match s.headers.get(CONTENT_LENGTH) {
                Some(cl) => assert_eq!(
                    cl.to_str().ok().and_then(|v| v.parse::<u64>().ok()),
                    Some(len),
                    "request {i}: Content-Length {cl:?} but the app got {len} bytes"
                ),
                None => assert_eq!(len, 0, "request {i} had no framing but the app got {len} body bytes"),
            }
        }
        match to_app.get(i) {
            Some(w) => {
                assert_eq!(s.method.as_str().as_bytes(), w.method, "request {i}: method differs from the stream's");
                assert_eq!(s.uri, w.uri, "request {i}: target differs from the stream's");
                assert!(
                    s.body == w.body,
                    "request {i}: the app got body {:?}, the stream framed {:?}",
                    show(&s.body),
                    show(&w.body)
                );
            }
            None => assert!(
                !walk.complete,
                "the app got request {i} ({} {}) but the stream holds only {} requests for it",
                s.method,
                s.uri,
                to_app.len()
            ),
        }
    }
}

/// The server's bytes are well-formed responses, and each app answer arrived whole and in order.
fn check_responses(out: &[u8], seen: &[Seen]) {
    let mut pos = 0;
    let mut next_seq = 0;
    while pos < out.len() {
        let head = wire::response_head(&out[pos..]).unwrap_or_else(|e| panic!("response at byte {pos}: {e}"));
        // hyper answers an HTTP/1.0 request with HTTP/1.0 (RFC 9110 §6.2 prefers 1.1; both parse).
        assert!(head.version <= 1, "not an HTTP/1.x response: {}", show(&out[pos..]));
        assert!((100..=599).contains(&head.status), "status {}", head.status);
        let cl = head.content_length().unwrap_or_else(|e| panic!("{e}: {}", show(&out[pos..])));
        assert!(!(cl.is_some() && head.is_chunked()), "Content-Length with Transfer-Encoding: {}", show(&out[pos..]));
        let start = pos;
        pos += head.len;
        let rest = &out[pos..];
        let no_body_status = head.status < 200 || head.status == 204 || head.status == 304;
        let seq = head.header("x-fuzz-seq").map(|v| std::str::from_utf8(v).unwrap().parse::<usize>().unwrap());
        if let Some(seq) = seq {
            assert_eq!(seq, next_seq, "answers out of order");
            next_seq += 1;
            let s = &seen[seq];
            assert_eq!(head.status, s.status.as_u16());
            assert!(head.version == 1 || s.version == Version::HTTP_10, "HTTP/1.0 answer to a 1.1 request");
            let expect_body = !(no_body_status || s.method == Method::HEAD);
            let body = if !expect_body {
                Vec::new()
            } else if head.is_chunked() {
                let (b, used) = wire::chunked_body(rest).unwrap_or_else(|e| panic!("chunked response body: {e}"));
                pos += used;
                b
            } else if let Some(n) = cl {
                let b =
                    rest.get(..n as usize).unwrap_or_else(|| panic!("response body shorter than {n}: {}", show(rest)));
                pos += n as usize;
                b.to_vec()
            } else {
                pos = out.len(); // close-delimited (an HTTP/1.0 client and a streamed body)
                rest.to_vec()
            };
            assert!(
                !expect_body || body == s.sent,
                "request {seq}: the app sent {:?}, the client got {:?}",
                show(&s.sent),
                show(&body)
            );
        } else if !no_body_status && !rest.is_empty() && !rest.starts_with(b"HTTP/1.") {
            // The core's own answers and static files. Whether the request was a HEAD is not
            // known here; a body is assumed unless the next response starts right away.
            if head.is_chunked() {
                let (_, used) = wire::chunked_body(rest).unwrap_or_else(|e| panic!("chunked response body: {e}"));
                pos += used;
            } else if let Some(n) = cl {
                assert!(rest.len() as u64 >= n, "response body shorter than {n}: {}", show(&out[start..]));
                pos += n as usize;
            } else {
                panic!("a response without framing from the core: {}", show(&out[start..]));
            }
        }
        if head.closes() {
            assert_eq!(pos, out.len(), "bytes after a `Connection: close` response: {}", show(&out[pos..]));
        }
    }
    assert_eq!(next_seq, seen.len(), "the app answered {} requests, the client got {next_seq} answers", seen.len());
}
