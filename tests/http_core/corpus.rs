//! The malformed-request corpus (`tests/reliability/corpus/`: the bytes of each case in
//! `NNN-name.http`, what the server must do in `expected.json`, both written by `make_corpus.py`)
//! replayed against the core with the echo stub as its app.
//!
//! Each case is sent on a fresh socket exactly as stored. Every response is read until the server
//! closes or a 3 s deadline passes; when a response leaves the connection open a probe request is
//! sent on it, so "kept open" is observed (the probe is answered) rather than waited for. Then, as
//! `tests/reliability/test_corpus.py` checks through the bridges: the first final status is one
//! the RFC allows, the connection was closed (or kept) as required, no hidden request
//! (`/smuggled`) was ever answered, and for a 200 the app was handed exactly the request that was
//! sent. After every case the server still answers a normal request; after all of them no thread
//! of the core has panicked, with every log record formatted at every level.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use _rsgi::config::ServerConfig;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString};

use crate::support::client::{Conn, Response};
use crate::support::default_config;
use crate::support::echo::{latin1, Echo};
use crate::support::stub::{self, start};

/// Seconds per exchange, from connect to the last byte.
const DEADLINE: Duration = Duration::from_secs(3);
const PROBE: &[u8] = b"GET /__probe__ HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n";
/// Cases replayed at once (most take a millisecond; the truncated bodies wait for the timeout).
const PARALLEL: usize = 8;

/// Cases where rsgi (hyper underneath) does something the RFC or the project's rules forbid, with
/// the reason; each must still fail its expectation (a fixed bug fails the test until removed
/// here and from `KNOWN_BUGS` in `tests/reliability/test_corpus.py`).
const KNOWN_BUGS: &[(&str, &str)] = &[(
    "124-te-empty-element-after.http",
    "'Transfer-Encoding: chunked,' gets 400; RFC 9110 5.6.1.2 says empty list elements MUST be ignored \
     (hyper reads the text after the last comma as the final coding, before rsgi sees the request)",
)];

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reliability/corpus")
}

#[test]
fn every_corpus_case_as_expected() {
    // The corpus timeouts of test_corpus.py (--body-timeout 1 --keepalive 2), halved: only the
    // truncated bodies and a head that never ends wait for them.
    let cfg = ServerConfig {
        body_timeout: Duration::from_millis(500),
        keepalive: Duration::from_secs(1),
        ..default_config()
    };
    let srv = start(cfg);
    let expected = load_expected();
    let mut files: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".http"))
        .collect();
    files.sort();
    assert_eq!(files, expected.keys().cloned().collect::<Vec<_>>(), "corpus files and expected.json disagree");
    assert!(files.len() >= 80);
    for (name, _) in KNOWN_BUGS {
        assert!(expected.contains_key(*name), "KNOWN_BUGS names a case that does not exist: {name}");
    }

    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let refusals_before = stub::refusals_logged();
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL {
            scope.spawn(|| loop {
                let Some(name) = files.get(next.fetch_add(1, Ordering::SeqCst)) else { return };
                let data = std::fs::read(corpus_dir().join(name)).unwrap();
                let checked = std::panic::catch_unwind(|| check(srv.port, &data, &expected[name]))
                    .unwrap_or_else(|panic| Err(panic_text(&panic)));
                // Whatever the case did (known bugs included), the server must still serve.
                let healthy = std::panic::catch_unwind(|| still_serving(srv.port)).map_err(|p| panic_text(&p));
                let known = KNOWN_BUGS.iter().find(|(n, _)| n == name).map(|(_, why)| *why);
                let failure = match (checked, known) {
                    (Ok(()), None) | (Err(_), Some(_)) => None,
                    (Err(e), None) => Some(e),
                    (Ok(()), Some(_)) => Some("passes now: a known bug was fixed, remove it from KNOWN_BUGS".into()),
                };
                let failure = failure.into_iter().chain(healthy.err().map(|e| format!("the server broke: {e}")));
                failures.lock().unwrap().extend(failure.map(|f| format!("{name}: {f}")));
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), files.len(), failures.join("\n"));
    assert_eq!(stub::io_panics(), 0, "a thread of the core panicked");
    // The refusals were logged (at DEBUG), so their arguments were formatted.
    assert!(stub::refusals_logged() > refusals_before);
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text =
        panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()));
    format!("panicked: {}", text.unwrap_or_default())
}

/// A normal request on a fresh connection reaches the app.
fn still_serving(port: u16) {
    let mut conn = Conn::open(port);
    conn.send(b"GET /__health__ HTTP/1.1\r\nHost: health\r\nConnection: close\r\n\r\n");
    assert_eq!(conn.response().echo().get("path"), "/__health__");
}

// -- one exchange ------------------------------------------------------------------------------------

#[derive(Default)]
struct Outcome {
    responses: Vec<Response>,
    interim: Vec<Response>,
    received: Vec<u8>,
    closed: bool,
    probe_answered: bool,
}

/// Sends `data`, collects every response; probes the connection when a response leaves it open.
fn replay(port: u16, data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let mut conn = Conn::open(port).deadline(Instant::now() + DEADLINE);
    conn.send(data); // the server may refuse (and close) before it has read everything
    let mut probe_sent = false;
    while let Ok(Some(resp)) = conn.read_response(false) {
        if (100..200).contains(&resp.status) {
            out.interim.push(resp);
            continue;
        }
        if probe_sent && String::from_utf8_lossy(&resp.body).contains("__probe__") {
            out.probe_answered = true;
            break;
        }
        let closing = resp.headers_named("connection").iter().any(|v| v.to_ascii_lowercase().contains("close"));
        out.responses.push(resp);
        if !probe_sent && conn.buf.is_empty() && !closing {
            probe_sent = conn.send(PROBE);
        }
    }
    out.closed = conn.eof && !out.probe_answered;
    out.received = conn.received;
    out
}

// -- the expectations ------------------------------------------------------------------------------

fn check(port: u16, data: &[u8], want: &Json) -> Result<(), String> {
    let got = replay(port, data);
    let statuses: Vec<u16> = got.responses.iter().map(|r| r.status).collect();
    let summary = format!(
        "responses {statuses:?}, closed={}, received {}",
        got.closed,
        got.received[..got.received.len().min(400)].escape_ascii()
    );
    let fail = |what: String| Err(format!("{what}; {summary}"));
    let status = statuses.first().copied().unwrap_or(0);
    let allowed: Vec<i64> = want["status"].list().iter().map(Json::int).collect();
    if !allowed.contains(&i64::from(status)) {
        return fail(format!("status {status}, expected one of {allowed:?}"));
    }
    if String::from_utf8_lossy(&got.received).contains("smuggled") {
        return fail("a hidden request was answered".into());
    }
    let count = want.get("responses").map_or(usize::from(status != 0), |n| n.int() as usize);
    if statuses.len() != count {
        return fail(format!("expected {count} response(s)"));
    }
    match want["close"].str() {
        "yes" if !got.closed => return fail("the connection stayed open".into()),
        "no" if !got.probe_answered => return fail("the connection was not kept open".into()),
        _ => {}
    }
    if want.get("no_interim").is_some_and(Json::bool) && !got.interim.is_empty() {
        return fail(format!(
            "a 1xx response was sent: {:?}",
            got.interim.iter().map(|r| r.status).collect::<Vec<_>>()
        ));
    }
    if got.responses.iter().any(|r| !r.complete) {
        return fail("a response was cut short".into());
    }
    if let (200, Some(app)) = (status, want.get("app")) {
        if let Err(e) = check_app(&got.responses[0].echo(), app) {
            return fail(e);
        }
    }
    if let Some(paths) = want.get("paths") {
        let seen: Vec<String> = got.responses.iter().map(|r| r.echo().get("path")).collect();
        let paths: Vec<&str> = paths.list().iter().map(Json::str).collect();
        if seen != paths {
            return fail(format!("paths {seen:?}, expected {paths:?}"));
        }
    }
    Ok(())
}

/// What the app was handed, against the case's `app` facts. Text facts compare as PEP 3333 gives
/// them (bytes as latin-1); header values line by line (as ASGI keeps them; WSGI joins them).
fn check_app(echo: &Echo, want: &Json) -> Result<(), String> {
    let expect = |what: &str, got: String, wanted: String| -> Result<(), String> {
        if got == wanted {
            Ok(())
        } else {
            Err(format!("the app saw {what} {got:?}, expected {wanted:?}"))
        }
    };
    for (key, fact) in [("method", "method"), ("query", "query"), ("protocol", "version"), ("path", "path")] {
        if let Some(v) = want.get(key) {
            expect(key, echo.get(fact), v.str().to_owned())?;
        }
    }
    if let Some(n) = want.get("path_len") {
        expect("a path of length", echo.all("path")[0].len().to_string(), n.int().to_string())?;
    }
    if let Some(n) = want.get("body_len") {
        expect("a body of length", echo.body.len().to_string(), n.int().to_string())?;
    }
    if let Some(digest) = want.get("body_sha256") {
        expect("a body with SHA-256", sha256_hex(&echo.body), digest.str().to_owned())?;
    }
    if let Some(host) = want.get("host") {
        let wanted = match host {
            Json::Null => vec![],
            h => vec![h.str().to_owned()],
        };
        expect(
            "Host",
            format!("{:?}", echo.all("host").iter().map(|h| latin1(h)).collect::<Vec<_>>()),
            format!("{wanted:?}"),
        )?;
    }
    for (name, values) in want.get("headers").map_or(&[][..], Json::obj) {
        let got: Vec<String> = echo.header(name).iter().map(|v| latin1(v)).collect();
        let wanted: Vec<String> = values.list().iter().map(|v| v.str().to_owned()).collect();
        expect(&format!("header {name}"), format!("{got:?}"), format!("{wanted:?}"))?;
    }
    for (name, value) in want.get("headers_ws").map_or(&[][..], Json::obj) {
        let joined: Vec<String> = echo.header(name).iter().map(|v| latin1(v)).collect();
        let normalised = joined.join(" ").split_whitespace().collect::<Vec<_>>().join(" ");
        expect(&format!("header {name}"), normalised, value.str().to_owned())?;
    }
    for name in want.get("absent_headers").map_or(&[][..], Json::list) {
        if echo.header_names().iter().any(|n| n == name.str()) {
            return Err(format!("header {} reached the app", name.str()));
        }
    }
    Ok(())
}

// -- expected.json and SHA-256, read with the embedded Python (as `support` reads the defaults) ------

/// A JSON value as Python's `json` module parsed it.
#[derive(Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn from_py(ob: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(if ob.is_none() {
            Json::Null
        } else if ob.is_instance_of::<PyBool>() {
            Json::Bool(ob.extract()?)
        } else if ob.is_instance_of::<PyInt>() {
            Json::Int(ob.extract()?)
        } else if ob.is_instance_of::<PyString>() {
            Json::Str(ob.extract()?)
        } else if let Ok(list) = ob.cast::<PyList>() {
            Json::List(list.iter().map(|v| Json::from_py(&v)).collect::<PyResult<_>>()?)
        } else {
            let dict = ob.cast::<PyDict>()?;
            Json::Obj(dict.iter().map(|(k, v)| Ok((k.extract()?, Json::from_py(&v)?))).collect::<PyResult<_>>()?)
        })
    }

    fn get(&self, key: &str) -> Option<&Json> {
        self.obj().iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn obj(&self) -> &[(String, Json)] {
        match self {
            Json::Obj(o) => o,
            other => panic!("not an object: {other:?}"),
        }
    }

    fn list(&self) -> &[Json] {
        match self {
            Json::List(l) => l,
            other => panic!("not a list: {other:?}"),
        }
    }

    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    fn int(&self) -> i64 {
        match self {
            Json::Int(n) => *n,
            other => panic!("not an integer: {other:?}"),
        }
    }

    fn bool(&self) -> bool {
        match self {
            Json::Bool(b) => *b,
            other => panic!("not a boolean: {other:?}"),
        }
    }
}

impl std::ops::Index<&str> for Json {
    type Output = Json;

    fn index(&self, key: &str) -> &Json {
        self.get(key).unwrap_or_else(|| panic!("no {key:?} in {self:?}"))
    }
}

fn load_expected() -> BTreeMap<String, Json> {
    let text = std::fs::read_to_string(corpus_dir().join("expected.json")).unwrap();
    let parsed = Python::attach(|py| Json::from_py(&py.import("json")?.call_method1("loads", (text,))?)).unwrap();
    let Json::Obj(cases) = parsed else { panic!("expected.json is not an object") };
    cases.into_iter().collect()
}

fn sha256_hex(data: &[u8]) -> String {
    Python::attach(|py| -> PyResult<String> {
        let bytes = pyo3::types::PyBytes::new(py, data);
        py.import("hashlib")?.call_method1("sha256", (bytes,))?.call_method0("hexdigest")?.extract()
    })
    .unwrap()
}
