//! The real HTTP core (`_rsgi::server::Server`) on a free port, with a stub app: a plain Rust
//! thread answers the job queue, as the WSGI bridge would, and never touches Python.
//!
//! By default the app echoes what the core resolved and handed over in the `Job` (method, target,
//! decoded path, headers, client and local address, scheme, host, body). A few paths under `/__`
//! make it behave like the apps the Python suites use: a streamed body, a slow app, a held request.

use std::io::Read;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

use _rsgi::config::ServerConfig;
use _rsgi::http::app::{AppResponse, Job, ThreadQueue};
use _rsgi::http::body::ResponseBody;
use _rsgi::http::request::{Peer, RequestBody, RequestHead};
use _rsgi::scoreboard::Slot;
use _rsgi::server::Server;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// Marks every response the stub app produced; the core's own answers never carry it.
pub const FROM_APP: &str = "x-stub-app";

/// A running server and the port it listens on. Dropping it stops the runtime.
pub struct Stub {
    pub server: Server,
    pub port: u16,
    /// `/__hold` requests that reached the app, each waiting for a `release()`.
    held: crossbeam_channel::Receiver<()>,
    release: crossbeam_channel::Sender<()>,
}

impl Stub {
    /// Blocks until `n` more `/__hold` requests are in the app (a readiness check, not a sleep).
    pub fn wait_held(&self, n: usize) {
        for _ in 0..n {
            self.held.recv_timeout(Duration::from_secs(5)).expect("a held request never reached the app");
        }
    }

    /// Lets one held request answer.
    pub fn release(&self) {
        self.release.send(()).unwrap();
    }
}

/// Starts a server with `cfg` on a free 127.0.0.1 port.
pub fn start(cfg: ServerConfig) -> Stub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (server, held, release) = start_on(cfg, listener.as_raw_fd());
    drop(listener); // the server holds its own duplicate
    Stub { server, port, held, release }
}

/// Starts a server with `cfg` on the listening socket `fd` (TCP or Unix).
#[allow(clippy::type_complexity)]
pub fn start_on(
    cfg: ServerConfig,
    fd: std::os::fd::RawFd,
) -> (Server, crossbeam_channel::Receiver<()>, crossbeam_channel::Sender<()>) {
    observe();
    let (queue, jobs) = ThreadQueue::channel();
    let server = Server::start(cfg, &[fd], queue, Slot::new(0)).unwrap();
    let (held_tx, held) = crossbeam_channel::unbounded();
    let (release, release_rx) = crossbeam_channel::unbounded::<()>();
    std::thread::spawn(move || {
        for job in jobs.iter() {
            match job.head.uri.path() {
                "/__hold" => {
                    // Its own thread, so a second held request is in the app too (not queued).
                    let (held_tx, release_rx) = (held_tx.clone(), release_rx.clone());
                    std::thread::spawn(move || {
                        held_tx.send(()).unwrap();
                        let _ = release_rx.recv();
                        answer(job);
                    });
                }
                _ => answer(job),
            }
        }
    });
    (server, held, release)
}

fn answer(job: Job) {
    let Job { head, body, reply, .. } = job;
    let query = head.uri.query().unwrap_or("").to_owned();
    let response = match head.uri.path() {
        // Five chunks, streamed: a generator's response.
        "/__stream" => {
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            std::thread::spawn(move || {
                for i in 0..5 {
                    if tx.blocking_send(Ok(format!("chunk {i}\n").into())).is_err() {
                        return;
                    }
                }
            });
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            headers.insert(FROM_APP, HeaderValue::from_static("stream"));
            AppResponse { status: StatusCode::OK, headers, body: ResponseBody::stream(rx) }
        }
        // A slow app: answers after `?MS` milliseconds.
        "/__sleep" => {
            std::thread::sleep(Duration::from_millis(query.parse().unwrap()));
            echo(&head, body)
        }
        // The app sets response headers: `?Name=value&...` (taken as written, no percent-decoding).
        "/__headers" => {
            let mut resp = echo(&head, body);
            for pair in query.split('&') {
                let (name, value) = pair.split_once('=').unwrap();
                resp.headers.append(HeaderName::try_from(name).unwrap(), HeaderValue::from_str(value).unwrap());
            }
            resp
        }
        _ => echo(&head, body),
    };
    let _ = reply.send(response); // the client may have gone
}

/// What the app saw, as text: one `key value` line per fact, values escaped (`escape_ascii`) so
/// any byte survives, the body last, in hex. `client::Echo` reads it back.
fn echo(head: &RequestHead, body: RequestBody) -> AppResponse {
    let mut out = String::new();
    let mut line = |key: &str, value: &[u8]| {
        out.push_str(key);
        out.push(' ');
        out.push_str(&value.escape_ascii().to_string());
        out.push('\n');
    };
    line("method", head.method.as_str().as_bytes());
    line("target", head.uri.to_string().as_bytes());
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(head.uri.path()).collect();
    line("path", &decoded);
    line("query", head.uri.query().unwrap_or("").as_bytes());
    line("version", format!("{:?}", head.version).as_bytes());
    line("remote", peer(&head.conn.remote).as_bytes());
    line("local", peer(&head.conn.local).as_bytes());
    line("scheme", head.conn.scheme.as_bytes());
    // RFC 9112 §3.2.2, as both bridges apply it: an absolute-form target's authority is the host.
    match head.uri.authority() {
        Some(auth) => line("host", auth.as_str().as_bytes()),
        None => {
            for v in head.headers.get_all(http::header::HOST) {
                line("host", v.as_bytes());
            }
        }
    }
    for (name, value) in &head.headers {
        line(&format!("header:{name}"), value.as_bytes());
    }
    let (spooled, data) = match body {
        RequestBody::Memory(b) => (false, b.to_vec()),
        RequestBody::Spooled { mut file, len } => {
            let mut data = Vec::new();
            file.read_to_end(&mut data).unwrap();
            assert_eq!(data.len() as u64, len, "the spooled file holds the body's length");
            (true, data)
        }
    };
    line("spooled", if spooled { b"yes" } else { b"no" });
    // In hex: a request hidden in a body must not show up in the response as if it were answered.
    out.push_str("body ");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend(data.iter().flat_map(|b| [char::from(HEX[usize::from(b >> 4)]), char::from(HEX[usize::from(b & 15)])]));
    out.push('\n');
    let bytes = out.into_bytes();
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    // As the bridges do for a complete body (`response::set_length`).
    headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    headers.insert(FROM_APP, HeaderValue::from_static("echo"));
    AppResponse { status: StatusCode::OK, headers, body: ResponseBody::full(bytes) }
}

fn peer(p: &Peer) -> String {
    match p {
        Peer::Tcp(a) => a.to_string(),
        Peer::Unix => "unix".to_owned(),
    }
}

// -- what the core logged, and whether it panicked ---------------------------------------------------

static IO_PANICS: AtomicUsize = AtomicUsize::new(0);
static REFUSALS_LOGGED: AtomicUsize = AtomicUsize::new(0);
static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Panics on the core's threads (`rsgi-io`, tokio's workers and blocking pool) so far. tokio
/// catches a panicking connection task, so the server would go on serving: only this shows it.
pub fn io_panics() -> usize {
    IO_PANICS.load(Ordering::SeqCst)
}

/// Debug records "refused ..." formatted so far (the core logs each refusal at DEBUG).
pub fn refusals_logged() -> usize {
    REFUSALS_LOGGED.load(Ordering::SeqCst)
}

/// Warnings (and errors) the core logged so far, formatted.
pub fn warnings() -> Vec<String> {
    WARNINGS.lock().unwrap().clone()
}

/// Formats every record at every level, as a logger in production would: a log argument that
/// panics (a bad slice of a request target, say) must show up here, not only under a logger.
struct Evaluating;

impl log::Log for Evaluating {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        let text = record.args().to_string();
        if record.level() <= log::Level::Warn {
            WARNINGS.lock().unwrap().push(text);
        } else if text.starts_with("refused ") {
            REFUSALS_LOGGED.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn flush(&self) {}
}

/// Installs the logger that formats every record and keeps the warnings (`warnings`), and counts
/// panics on the core's I/O threads. `start` calls it; a test may call it earlier.
pub fn observe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if log::set_logger(&Evaluating).is_ok() {
            log::set_max_level(log::LevelFilter::Trace);
        }
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some("rsgi-io") {
                IO_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}
