//! `--request-timeout` end to end over real sockets, against the real HTTP core: an app that
//! never answers gets its client a 504 in time, from the core (never the app's mark), on a
//! connection that stays usable; a late answer is discarded; a response that started (streamed
//! past the limit) is not cut; the limit counts from the hand-over to the app, so a job still
//! queued when it passes finds its reply slot closed (what the bridges skip on) and its request
//! marked expired (what the ASGI bridge cancels the task on); the 504 is counted in the
//! scoreboard and logged at most once every 10 s; off by default. Apps: `support::stub` (held and
//! slow requests) and, where the test itself must play the app, `Served` below. The bridges'
//! side (a cancelled ASGI task, a WSGI thread past --timeout, Django): tests/test_request_timeout.py.

// A test: a panic here is a failed test, so unwrap and index freely.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::string_slice, clippy::panic)]

#[path = "support/mod.rs"]
mod support;

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use _rsgi::config::ServerConfig;
use _rsgi::http::app::{AppResponse, CloseOnDrop, Closed, Job, ThreadQueue};
use _rsgi::http::body::ResponseBody;
use _rsgi::scoreboard::metrics::{METRICS, NAMES};
use _rsgi::scoreboard::{Slot, SLOT_SIZE};
use _rsgi::server::Server;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};

use support::client::{get, Conn, Response};
use support::default_config;
use support::stub::{self, start};

const LIMIT: Duration = Duration::from_millis(300);

fn config(limit: Duration) -> ServerConfig {
    stub::observe();
    ServerConfig { request_timeout: Some(limit), ..default_config() }
}

/// The core's own 504: never the app's answer, and the connection is kept (the request was read
/// completely, so nothing on the connection is left in doubt).
fn assert_gateway_timeout(resp: &Response) {
    assert_eq!(resp.status, 504, "{}", resp.head_text());
    assert!(!resp.answered_by_app(), "the app's answer got through: {}", resp.head_text());
    assert_eq!(resp.body, b"504 Gateway Timeout\n");
    assert_eq!(resp.header("connection"), None, "a 504 need not close the connection");
}

/// The real core with the test itself as the app: every job waits in `jobs` until the test takes
/// it (so it can sit in the queue, be answered late, or never), and the server has a scoreboard
/// slot of its own, so the counters can be read.
struct Served {
    _server: Server,
    port: u16,
    jobs: crossbeam_channel::Receiver<Job>,
    /// The slot's memory; declared after `_server`, so it outlives the runtime writing to it.
    page: Box<[u64]>,
}

impl Served {
    fn start(cfg: ServerConfig) -> Self {
        stub::observe();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (queue, jobs) = ThreadQueue::channel();
        let mut page = vec![0u64; SLOT_SIZE / 8].into_boxed_slice();
        let slot = Slot::new(page.as_mut_ptr() as usize);
        let server = Server::start(cfg, &[listener.as_raw_fd()], queue, slot).unwrap();
        drop(listener); // the server holds its own duplicate
        Self { _server: server, port, jobs, page }
    }

    /// The job the core handed over, which must come within 5 s.
    fn job(&self) -> Job {
        self.jobs.recv_timeout(Duration::from_secs(5)).expect("no request reached the app")
    }

    /// A counter of the slot, by its name in `metrics::NAMES`.
    fn counter(&self, name: &str) -> u64 {
        let index = NAMES.iter().position(|n| *n == name).unwrap_or_else(|| panic!("no metric {name}"));
        let word = (self.page.as_ptr() as usize + METRICS + index * 8) as *mut u64;
        // SAFETY: inside `page` (METRICS + NAMES.len() * 8 <= SLOT_SIZE), 8-byte aligned, alive
        // while `self` is; the core writes it with atomics too.
        unsafe { AtomicU64::from_ptr(word) }.load(Ordering::SeqCst)
    }
}

fn answer(job: Job, body: &'static [u8]) {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    headers.insert(stub::FROM_APP, HeaderValue::from_static("test"));
    let _ = job.reply.send(AppResponse::new(StatusCode::OK, headers, ResponseBody::full(body)));
}

#[test]
fn an_app_that_never_answers_gets_its_client_a_504_in_time_and_the_connection_serves_on() {
    let srv = start(config(LIMIT));
    let mut conn = Conn::open(srv.port);
    let sent = Instant::now();
    conn.send(&get("/__hold", ""));
    srv.wait_held(1);
    let resp = conn.response();
    let took = sent.elapsed();
    assert_gateway_timeout(&resp);
    assert!(took >= LIMIT && took < LIMIT + Duration::from_secs(2), "504 after {took:?}");
    // The app answers now, too late: its answer goes nowhere, and the next request on the same
    // connection gets its own (the probe's echo).
    srv.release();
    conn.assert_open();
    assert_eq!(stub::io_panics(), 0);
}

#[test]
fn a_late_answer_is_discarded_and_never_reaches_the_next_request() {
    let srv = start(config(Duration::from_millis(400)));
    let mut conn = Conn::open(srv.port);
    // The stub's app answers `/__sleep` after 600 ms, on the thread that then takes `/next`
    // (which thus waits 200 ms in the queue: within its own 400).
    conn.send(&get("/__sleep?600", ""));
    assert_gateway_timeout(&conn.response());
    conn.send(&get("/next", ""));
    let next = conn.response();
    assert_eq!(next.status, 200, "{}", next.head_text());
    assert_eq!(next.echo().get("path"), "/next");
    assert!(conn.buf.is_empty(), "bytes after the answer: {}", conn.buf.escape_ascii());
}

#[test]
fn an_answer_within_the_limit_is_the_apps() {
    let srv = Served::start(config(LIMIT));
    let mut conn = Conn::open(srv.port);
    conn.send(&get("/quick", ""));
    let job = srv.job();
    std::thread::sleep(LIMIT / 3);
    answer(job, b"in time");
    let resp = conn.response();
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"in time"[..]), "{}", resp.head_text());
    assert_eq!(srv.counter("timed_out"), 0);
}

#[test]
fn a_response_that_started_streams_past_the_limit_uncut() {
    let srv = Served::start(config(LIMIT));
    let mut conn = Conn::open(srv.port);
    conn.send(&get("/stream", ""));
    let job = srv.job();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut headers = HeaderMap::new();
    headers.insert(stub::FROM_APP, HeaderValue::from_static("stream"));
    assert!(job.reply.send(AppResponse::new(StatusCode::OK, headers, ResponseBody::stream(rx))).is_ok());
    // Five chunks 150 ms apart: the body ends well past the limit.
    let producer = std::thread::spawn(move || {
        for i in 0..5 {
            std::thread::sleep(Duration::from_millis(150));
            tx.blocking_send(Ok(format!("chunk {i}\n").into())).unwrap();
        }
    });
    let started = Instant::now();
    let resp = conn.response();
    producer.join().unwrap();
    assert!(started.elapsed() > LIMIT * 2);
    assert_eq!(resp.status, 200, "{}", resp.head_text());
    assert!(resp.complete && resp.answered_by_app());
    assert_eq!(resp.body, b"chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n");
    assert_eq!(srv.counter("timed_out"), 0);
}

#[test]
fn the_limit_counts_from_the_hand_over_so_a_job_still_queued_is_given_up() {
    let srv = Served::start(config(LIMIT));
    let mut conn = Conn::open(srv.port);
    let sent = Instant::now();
    conn.send(&get("/queued?token=secret", ""));
    // Nobody takes the job: it waits in the queue, as behind a busy Python thread.
    let resp = conn.response();
    assert!(sent.elapsed() < LIMIT + Duration::from_secs(2));
    assert_gateway_timeout(&resp);
    let job = srv.job();
    assert_eq!(job.head.uri.path(), "/queued");
    // What the bridges look at before they start a job: the WSGI threads skip a job whose reply
    // slot is closed, the ASGI loop one whose request is closed.
    assert!(job.reply.is_closed(), "the reply slot is still open: the app would run for nobody");
    assert!(job.closed.is_closed() && job.closed.is_expired());
    assert!(job.queued_at.elapsed() >= LIMIT);
    answer(job, b"too late"); // goes nowhere, quietly
    assert_eq!(srv.counter("timed_out"), 1);
    // The 504 counts as a 5xx response once hyper is done with it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while srv.counter("responses_5xx") != 1 {
        assert!(Instant::now() < deadline, "the 504 was not counted as a response");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The connection serves on.
    conn.send(&get("/after", ""));
    answer(srv.job(), b"after");
    assert_eq!(conn.response().body, b"after");
}

#[test]
fn off_by_default_a_slow_app_is_waited_for() {
    let cfg = default_config();
    assert_eq!(cfg.request_timeout, None, "--request-timeout must be off unless set");
    let srv = Served::start(cfg);
    let mut conn = Conn::open(srv.port);
    conn.send(&get("/slow", ""));
    let job = srv.job();
    assert!(!job.closed.may_expire(), "without the setting the bridges must not arm anything");
    std::thread::sleep(Duration::from_millis(600));
    answer(job, b"slow but fine");
    let resp = conn.response();
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"slow but fine"[..]));
    assert_eq!(srv.counter("timed_out"), 0);
}

#[test]
fn a_flood_of_timeouts_is_counted_and_logged_once_per_10_s() {
    let srv = Served::start(config(Duration::from_millis(20)));
    let mut conn = Conn::open(srv.port);
    for i in 0..30 {
        conn.send(&get(&format!("/flood/{i}?q=1"), ""));
        assert_gateway_timeout(&conn.response());
    }
    assert_eq!(srv.counter("timed_out"), 30);
    assert_eq!(srv.jobs.try_iter().count(), 30);
    // Every test of this binary runs within a few seconds, so the once-per-10-s line may be
    // another test's: one at least (this test's 30 timeouts came after the logger), two at most.
    let lines: Vec<String> = stub::warnings().into_iter().filter(|w| w.contains("--request-timeout")).collect();
    assert!(!lines.is_empty() && lines.len() <= 2, "one line per 10 s: {lines:#?}");
    for line in &lines {
        assert!(line.contains("answered 504") && line.contains("GET /"), "{line}");
        assert!(!line.contains('?'), "the query string (tokens...) is not logged: {line}");
    }
}

#[test]
fn expiry_runs_its_hook_once_and_never_after_the_request_is_over() {
    assert!(!Closed::default().may_expire());
    let ran = Arc::new(AtomicUsize::new(0));
    let hook = |ran: &Arc<AtomicUsize>| {
        let ran = ran.clone();
        Box::new(move || {
            ran.fetch_add(1, Ordering::SeqCst);
        })
    };
    let closed = Closed::expiring();
    assert!(closed.may_expire() && !closed.is_expired());
    assert!(closed.on_expire(hook(&ran)));
    closed.expire();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert!(closed.is_expired());
    // Registered too late (the core already answered): refused, so the caller acts at once.
    assert!(!closed.on_expire(hook(&ran)));
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    // A request that ended first (answered, or its client gone) never runs its expiry hook.
    let done = Arc::new(Closed::expiring());
    assert!(done.on_expire(hook(&ran)));
    drop(CloseOnDrop(done.clone()));
    done.expire();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert!(!done.on_expire(hook(&ran)));
}
