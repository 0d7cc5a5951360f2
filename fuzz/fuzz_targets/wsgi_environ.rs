//! `wsgi_environ`: `wsgi::environ::EnvironBuilder::build` on a request head made from the fuzz
//! input (method, target, version, headers with any bytes hyper's `http` types accept, body in
//! memory or spooled to a file, `--root-path`, peer addresses, scheme), in an embedded Python.
//!
//! Asserted, besides "no panic" and "no Python exception": every key is a `str`; every value
//! outside `wsgi.*` is exactly a `str` whose characters are all below U+0100 (a PEP 3333
//! native string); the keys are exactly the CGI/`HTTP_*` keys expected for the request, each
//! with the value an independent model (written here from PEP 3333 and the README's rules)
//! gives: `SCRIPT_NAME` the root path, `SCRIPT_NAME + PATH_INFO` the percent-decoded path when
//! the request is under the root, `QUERY_STRING`/`RAW_URI` the target's own bytes, headers
//! joined with ", " ("; " for Cookie), names with `_` dropped, `HTTP_HOST` from an
//! absolute-form target, `CONTENT_LENGTH` the body's length; `wsgi.input` reads back the body.
//!
//! Two builders live across inputs (root path "" and "/mnt"), so the header-key cache is
//! exercised too; other root paths get a fresh builder.
#![no_main]

use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};

use _rsgi::http::request::{ConnInfo, Peer, RequestBody, RequestHead};
use _rsgi::wsgi::environ::EnvironBuilder;
use http::header::{HeaderName, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, Uri, Version};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: &'a [u8],
    target: &'a [u8],
    http10: bool,
    headers: Vec<(&'a [u8], &'a [u8])>,
    body: &'a [u8],
    spool: bool,
    root: Root<'a>,
    remote: Addr,
    local: Addr,
    https: bool,
}

#[derive(Arbitrary, Debug)]
enum Root<'a> {
    Empty,
    Mnt,
    /// Any `--root-path`, as `ServerConfig` stores it (trailing slashes trimmed).
    Other(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Addr {
    V4([u8; 4], u16),
    V6([u8; 16], u16),
    Unix,
}

impl Addr {
    fn peer(&self) -> Peer {
        match *self {
            Addr::V4(ip, port) => Peer::Tcp(SocketAddr::new(IpAddr::from(ip), port)),
            Addr::V6(ip, port) => Peer::Tcp(SocketAddr::new(IpAddr::from(ip), port)),
            Addr::Unix => Peer::Unix,
        }
    }
}

fuzz_target!(|input: Input<'_>| {
    rsgi_fuzz::evaluate_every_log_record();
    let Some((head, root)) = request(&input) else { return };
    Python::attach(|py| check(py, &input, &head, &root));
});

/// The request head, or None when hyper's types refuse a part (hyper would never produce it).
fn request(input: &Input<'_>) -> Option<(RequestHead, String)> {
    let method = Method::from_bytes(input.method).ok()?;
    let uri = Uri::try_from(input.target).ok()?;
    let mut headers = HeaderMap::new();
    for (name, value) in &input.headers {
        headers.append(HeaderName::from_bytes(name).ok()?, HeaderValue::from_bytes(value).ok()?);
    }
    let root = match input.root {
        Root::Empty => String::new(),
        Root::Mnt => "/mnt".to_owned(),
        Root::Other(r) => r.trim_end_matches('/').to_owned(),
    };
    let conn = Arc::new(ConnInfo {
        remote: input.remote.peer(),
        local: input.local.peer(),
        scheme: if input.https { "https" } else { "http" },
    });
    let version = if input.http10 { Version::HTTP_10 } else { Version::HTTP_11 };
    Some((RequestHead { method, uri, version, headers, conn }, root))
}

fn base(py: Python<'_>) -> Bound<'_, PyDict> {
    let d = PyDict::new(py);
    let sys = py.import("sys").unwrap();
    d.set_item("wsgi.version", PyTuple::new(py, [1, 0]).unwrap()).unwrap();
    d.set_item("wsgi.errors", sys.getattr("stderr").unwrap()).unwrap();
    d.set_item("wsgi.multithread", false).unwrap();
    d.set_item("wsgi.multiprocess", false).unwrap();
    d.set_item("wsgi.run_once", false).unwrap();
    d.set_item("wsgi.file_wrapper", py.None()).unwrap();
    d.set_item("SERVER_SOFTWARE", "rsgi/fuzz").unwrap();
    d
}

/// The builders kept across inputs, for the root paths "" and "/mnt".
fn builders() -> &'static Mutex<Vec<EnvironBuilder>> {
    static B: OnceLock<Mutex<Vec<EnvironBuilder>>> = OnceLock::new();
    B.get_or_init(|| {
        Python::attach(|py| {
            Mutex::new(
                ["", "/mnt"].iter().map(|r| EnvironBuilder::new(py, base(py), (*r).to_owned()).unwrap()).collect(),
            )
        })
    })
}

fn body(input: &Input<'_>) -> RequestBody {
    if !input.spool {
        return RequestBody::Memory(bytes::Bytes::copy_from_slice(input.body));
    }
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(input.body).unwrap();
    file.rewind().unwrap();
    RequestBody::Spooled { file, len: input.body.len() as u64 }
}

fn check(py: Python<'_>, input: &Input<'_>, head: &RequestHead, root: &str) {
    let built = match input.root {
        Root::Empty => builders().lock().unwrap()[0].build(py, head, body(input)),
        Root::Mnt => builders().lock().unwrap()[1].build(py, head, body(input)),
        Root::Other(_) => {
            let mut b = EnvironBuilder::new(py, base(py), root.to_owned()).unwrap_or_else(|e| panic!("new(): {e}"));
            b.build(py, head, body(input))
        }
    };
    let env = built.unwrap_or_else(|e| panic!("build() raised {e} for {head:?}"));
    let want = model(head, root, input.body.len());

    let input_obj = env.get_item("wsgi.input").unwrap().expect("wsgi.input");
    let read = input_obj.call_method0("read").unwrap();
    let _ = input_obj.call_method0("close");
    assert_eq!(read.cast::<PyBytes>().expect("wsgi.input.read() returns bytes").as_bytes(), input.body);

    let mut cgi = BTreeMap::new();
    let mut wsgi_keys = Vec::new();
    for (k, v) in env.iter() {
        let k: String = k.cast::<PyString>().expect("every environ key is a str").to_string();
        if k.starts_with("wsgi.") {
            wsgi_keys.push(k);
            continue;
        }
        assert!(v.is_exact_instance_of::<PyString>(), "{k} is not a str: {v:?}");
        let v = v.cast::<PyString>().unwrap().to_string();
        assert!(v.chars().all(|c| u32::from(c) < 0x100), "{k} = {v:?} is not latin-1 (PEP 3333 native string)");
        cgi.insert(k, v);
    }
    wsgi_keys.sort();
    let expected_wsgi = [
        "wsgi.errors",
        "wsgi.file_wrapper",
        "wsgi.input",
        "wsgi.input_terminated",
        "wsgi.multiprocess",
        "wsgi.multithread",
        "wsgi.run_once",
        "wsgi.url_scheme",
        "wsgi.version",
    ];
    assert_eq!(wsgi_keys, expected_wsgi);
    let scheme = env.get_item("wsgi.url_scheme").unwrap().unwrap();
    assert!(scheme.is_exact_instance_of::<PyString>() && scheme.to_string() == head.conn.scheme);
    assert!(env.get_item("wsgi.input_terminated").unwrap().unwrap().is_truthy().unwrap());
    if cgi != want {
        let diff: Vec<_> = want
            .keys()
            .chain(cgi.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|k| want.get(*k) != cgi.get(*k))
            .map(|k| format!("{k}: expected {:?}, got {:?}", want.get(k), cgi.get(k)))
            .collect();
        panic!("environ differs for {head:?} (root {root:?}):\n  {}", diff.join("\n  "));
    }
}

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

/// The CGI part of the environ, from PEP 3333 and the README's "WSGI details".
fn model(head: &RequestHead, root: &str, body_len: usize) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        m.insert(k.to_owned(), v);
    };
    set("SERVER_SOFTWARE", "rsgi/fuzz".into());
    set("REQUEST_METHOD", head.method.as_str().into());
    // Native strings carry bytes as latin-1: the root path's bytes, like the request path's.
    set("SCRIPT_NAME", latin1(root.as_bytes()));
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(head.uri.path()).collect();
    let under_root = !root.is_empty()
        && decoded.starts_with(root.as_bytes())
        && matches!(decoded.get(root.len()), None | Some(b'/'));
    let path_info = if under_root { &decoded[root.len()..] } else { &decoded[..] };
    if under_root {
        assert_eq!([root.as_bytes(), path_info].concat(), decoded, "SCRIPT_NAME + PATH_INFO is the path");
    }
    set("PATH_INFO", latin1(path_info));
    set("QUERY_STRING", latin1(head.uri.query().unwrap_or("").as_bytes()));
    set("RAW_URI", latin1(head.uri.path_and_query().map_or(head.uri.path(), |pq| pq.as_str()).as_bytes()));
    set("SERVER_PROTOCOL", if head.version == Version::HTTP_10 { "HTTP/1.0" } else { "HTTP/1.1" }.into());
    match &head.conn.remote {
        Peer::Tcp(a) => {
            set("REMOTE_ADDR", a.ip().to_string());
            set("REMOTE_PORT", a.port().to_string());
        }
        Peer::Unix => set("REMOTE_ADDR", String::new()),
    }
    match &head.conn.local {
        Peer::Tcp(a) => {
            set("SERVER_NAME", a.ip().to_string());
            set("SERVER_PORT", a.port().to_string());
        }
        Peer::Unix => {
            set("SERVER_NAME", "localhost".into());
            set("SERVER_PORT", "0".into());
        }
    }
    if body_len > 0 || head.headers.contains_key(CONTENT_LENGTH) {
        set("CONTENT_LENGTH", body_len.to_string());
    }
    if let Some(ct) = head.headers.get(CONTENT_TYPE) {
        set("CONTENT_TYPE", latin1(ct.as_bytes()));
    }
    for name in head.headers.keys() {
        if [CONTENT_TYPE, CONTENT_LENGTH, TRANSFER_ENCODING].contains(name) || name.as_str().contains('_') {
            continue;
        }
        let sep: &[u8] = if name == COOKIE { b"; " } else { b", " };
        let joined = head.headers.get_all(name).iter().map(|v| v.as_bytes()).collect::<Vec<_>>().join(sep);
        let key = format!("HTTP_{}", name.as_str().to_ascii_uppercase().replace('-', "_"));
        set(&key, latin1(&joined));
    }
    if let Some(auth) = head.uri.authority() {
        set("HTTP_HOST", auth.as_str().into());
    }
    m
}
