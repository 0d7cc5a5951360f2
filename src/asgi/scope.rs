//! Builds the ASGI `http` / `websocket` scope dict (spec 2.4) from an owned `RequestHead`.
//!
//! What a scope may share with other scopes of the worker (an idle websocket keeps its scope for
//! the connection's life, issue #21): only immutable objects. Apps and middleware do write into a
//! scope's nested dicts, not only into the scope itself: FastAPI/Starlette middleware sets keys in
//! `scope["extensions"]` (connexion passes its routing context there), ASGI 2 adapters set
//! `scope["asgi"]["version"]`. A dict shared by every scope would carry one request's keys into
//! all the others (and across concurrent requests), so `asgi`, `extensions` and its per-extension
//! dicts are new for each scope (~0.5 KB), as uvicorn and Hypercorn build them. Shared instead:
//! strings (`type`, `scheme`, `http_version`, `method`, `root_path`, the client's address, a
//! websocket's `path`), a websocket's `raw_path`, the `server` tuple, header names (`bytes`), and
//! whole `(name, value)` tuples of headers whose values are usually the same on every connection
//! (`upgrade: websocket`, `sec-websocket-version: 13`, `host`, `user-agent`, `accept-*`, ...).
//! Strings, bytes and tuples cannot be changed; the `headers` list itself stays per scope.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use http::header::{HeaderName, HeaderValue};
use http::{Method, Version};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::http::request::{Peer, RequestHead};

/// Bounds of the per-worker caches: they fill with the first names and values seen and then stop
/// growing (a client sending made-up headers costs the sharing, never memory).
const MAX_NAMES: usize = 256;
const MAX_NAME_LEN: usize = 64;
const MAX_PAIRS: usize = 1024;
const MAX_VALUE_LEN: usize = 256;
const MAX_SERVERS: usize = 16;
const MAX_CLIENT_IPS: usize = 1024;
const MAX_PATHS: usize = 256;
const MAX_PATH_LEN: usize = 128;

/// Headers whose whole `(name, value)` tuple is shared between scopes: values that repeat from
/// connection to connection. Not cookies, keys or credentials, which differ per client.
fn shares_values(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "connection"
            | "upgrade"
            | "sec-websocket-version"
            | "sec-websocket-extensions"
            | "sec-websocket-protocol"
            | "user-agent"
            | "origin"
            | "accept"
            | "accept-encoding"
            | "accept-language"
            | "cache-control"
            | "pragma"
            | "sec-fetch-dest"
            | "sec-fetch-mode"
            | "sec-fetch-site"
            | "x-forwarded-proto"
            | "x-forwarded-host"
    )
}

/// The worker's shared immutable parts of scopes (only touched with the GIL held, on the loop's
/// thread; the lock is never contended).
#[derive(Default)]
struct Shared {
    names: HashMap<HeaderName, Py<PyBytes>>,
    pairs: HashMap<HeaderName, HashMap<HeaderValue, Py<PyTuple>>>,
    npairs: usize,
    servers: Vec<(SocketAddr, Py<PyAny>)>,
    /// The client tuple's address string (the port makes each tuple new).
    client_ips: HashMap<IpAddr, Py<PyString>>,
    /// Websocket paths (`path`, `raw_path`), which repeat from connection to connection and are
    /// kept for its life; an HTTP request's are short-lived and often unique.
    paths: HashMap<String, (Py<PyString>, Py<PyBytes>)>,
}

pub struct ScopeBuilder {
    /// A template copied into each scope (see the module comment).
    asgi: Py<PyDict>,
    root_path: Py<PyString>,
    /// Lifespan state: each request gets a shallow copy (spec: state is per-app, copied per scope).
    state: Option<Py<PyDict>>,
    shared: Mutex<Shared>,
}

impl ScopeBuilder {
    pub fn new(py: Python<'_>, root_path: &str, state: Option<Bound<'_, PyDict>>) -> PyResult<Self> {
        let asgi = PyDict::new(py);
        asgi.set_item(intern!(py, "version"), intern!(py, "3.0"))?;
        asgi.set_item(intern!(py, "spec_version"), intern!(py, "2.4"))?;
        Ok(Self {
            asgi: asgi.unbind(),
            root_path: PyString::new(py, root_path).unbind(),
            state: state.map(Bound::unbind),
            shared: Mutex::default(),
        })
    }

    pub fn build<'py>(&self, py: Python<'py>, kind: &str, head: &RequestHead) -> PyResult<Bound<'py, PyDict>> {
        let scope = PyDict::new(py);
        scope.set_item(intern!(py, "type"), PyString::intern(py, kind))?;
        scope.set_item(intern!(py, "asgi"), self.asgi.bind(py).copy()?)?;
        scope.set_item(intern!(py, "http_version"), http_version(py, head.version))?;
        if kind == "http" {
            scope.set_item(intern!(py, "method"), method(py, &head.method))?;
        }
        let secure = head.conn.scheme == "https";
        let scheme = match (kind, secure, head.conn.scheme) {
            ("websocket", false, _) => intern!(py, "ws").clone(),
            ("websocket", true, _) => intern!(py, "wss").clone(),
            (_, _, "http") => intern!(py, "http").clone(),
            (_, _, "https") => intern!(py, "https").clone(),
            (_, _, other) => PyString::new(py, other),
        };
        scope.set_item(intern!(py, "scheme"), scheme)?;
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let (path, raw_path) = shared.path(py, kind == "websocket", head.uri.path());
        scope.set_item(intern!(py, "path"), path)?;
        scope.set_item(intern!(py, "raw_path"), raw_path)?;
        let query = head.uri.query().unwrap_or("");
        scope.set_item(intern!(py, "query_string"), PyBytes::new(py, query.as_bytes()))?;
        scope.set_item(intern!(py, "root_path"), self.root_path.bind(py))?;
        scope.set_item(intern!(py, "headers"), shared.headers(py, head)?)?;
        scope.set_item(intern!(py, "client"), shared.client(py, &head.conn.remote)?)?;
        scope.set_item(intern!(py, "server"), shared.server(py, &head.conn.local)?)?;
        drop(shared);
        if kind == "websocket" {
            let protocols = PyList::empty(py);
            for v in head.headers.get_all(http::header::SEC_WEBSOCKET_PROTOCOL) {
                for p in v.to_str().unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    protocols.append(p)?;
                }
            }
            scope.set_item(intern!(py, "subprotocols"), protocols)?;
        }
        if let Some(state) = &self.state {
            scope.set_item(intern!(py, "state"), state.bind(py).copy()?)?;
        }
        scope.set_item(intern!(py, "extensions"), extensions(py)?)?;
        Ok(scope)
    }
}

/// New for each scope, nested dicts included: apps write into it (see the module comment).
fn extensions(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let extensions = PyDict::new(py);
    extensions.set_item(intern!(py, "http.response.pathsend"), PyDict::new(py))?;
    extensions.set_item(intern!(py, "websocket.http.response"), PyDict::new(py))?;
    Ok(extensions)
}

impl Shared {
    /// Header names arrive lowercased from hyper, as ASGI requires; values are raw bytes.
    fn headers<'py>(&mut self, py: Python<'py>, head: &RequestHead) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        // RFC 9112 §3.2.2: with an absolute-form target its authority is the host, not Host:.
        let authority = head.uri.authority();
        if let Some(auth) = authority {
            let name = self.name(py, &http::header::HOST);
            list.append((name, PyBytes::new(py, auth.as_str().as_bytes())))?;
        }
        for (name, value) in head.headers.iter() {
            if authority.is_some() && name == http::header::HOST {
                continue;
            }
            list.append(self.pair(py, name, value)?)?;
        }
        Ok(list)
    }

    fn name<'py>(&mut self, py: Python<'py>, name: &HeaderName) -> Bound<'py, PyBytes> {
        if let Some(b) = self.names.get(name) {
            return b.bind(py).clone();
        }
        let b = PyBytes::new(py, name.as_str().as_bytes());
        if self.names.len() < MAX_NAMES && name.as_str().len() <= MAX_NAME_LEN {
            self.names.insert(name.clone(), b.clone().unbind());
        }
        b
    }

    fn pair<'py>(&mut self, py: Python<'py>, name: &HeaderName, value: &HeaderValue) -> PyResult<Bound<'py, PyTuple>> {
        let shared = shares_values(name);
        if shared {
            if let Some(t) = self.pairs.get(name).and_then(|values| values.get(value)) {
                return Ok(t.bind(py).clone());
            }
        }
        let pair = PyTuple::new(py, [self.name(py, name), PyBytes::new(py, value.as_bytes())])?;
        if shared && self.npairs < MAX_PAIRS && value.len() <= MAX_VALUE_LEN {
            self.pairs.entry(name.clone()).or_default().insert(value.clone(), pair.clone().unbind());
            self.npairs += 1;
        }
        Ok(pair)
    }

    fn path<'py>(&mut self, py: Python<'py>, cached: bool, raw: &str) -> (Bound<'py, PyString>, Bound<'py, PyBytes>) {
        if cached {
            if let Some((path, raw)) = self.paths.get(raw) {
                return (path.bind(py).clone(), raw.bind(py).clone());
            }
        }
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
        // The spec wants the path as text decoded from UTF-8; invalid sequences become U+FFFD
        // (raw_path keeps the exact bytes for apps that need them).
        let path = PyString::new(py, &String::from_utf8_lossy(&decoded));
        let raw_path = PyBytes::new(py, raw.as_bytes());
        if cached && self.paths.len() < MAX_PATHS && raw.len() <= MAX_PATH_LEN {
            self.paths.insert(raw.to_owned(), (path.clone().unbind(), raw_path.clone().unbind()));
        }
        (path, raw_path)
    }

    fn client<'py>(&mut self, py: Python<'py>, peer: &Peer) -> PyResult<Bound<'py, PyAny>> {
        let Peer::Tcp(addr) = peer else { return address(py, peer) };
        let ip = match self.client_ips.get(&addr.ip()) {
            Some(ip) => ip.bind(py).clone(),
            None => {
                let ip = PyString::new(py, &addr.ip().to_string());
                if self.client_ips.len() < MAX_CLIENT_IPS {
                    self.client_ips.insert(addr.ip(), ip.clone().unbind());
                }
                ip
            }
        };
        Ok((ip, addr.port()).into_pyobject(py)?.into_any())
    }

    fn server<'py>(&mut self, py: Python<'py>, peer: &Peer) -> PyResult<Bound<'py, PyAny>> {
        let Peer::Tcp(addr) = peer else { return address(py, peer) };
        if let Some((_, t)) = self.servers.iter().find(|(a, _)| a == addr) {
            return Ok(t.bind(py).clone());
        }
        let t = address(py, peer)?;
        if self.servers.len() < MAX_SERVERS {
            self.servers.push((*addr, t.clone().unbind()));
        }
        Ok(t)
    }
}

fn address<'py>(py: Python<'py>, peer: &Peer) -> PyResult<Bound<'py, PyAny>> {
    match peer {
        Peer::Tcp(a) => Ok((a.ip().to_string(), a.port()).into_pyobject(py)?.into_any()),
        Peer::Unix => Ok(py.None().into_bound(py)),
    }
}

fn method<'py>(py: Python<'py>, m: &Method) -> Bound<'py, PyString> {
    match *m {
        Method::GET => intern!(py, "GET").clone(),
        Method::POST => intern!(py, "POST").clone(),
        Method::HEAD => intern!(py, "HEAD").clone(),
        Method::PUT => intern!(py, "PUT").clone(),
        Method::PATCH => intern!(py, "PATCH").clone(),
        Method::DELETE => intern!(py, "DELETE").clone(),
        Method::OPTIONS => intern!(py, "OPTIONS").clone(),
        _ => PyString::new(py, m.as_str()),
    }
}

fn http_version(py: Python<'_>, v: Version) -> &Bound<'_, PyString> {
    match v {
        Version::HTTP_10 => intern!(py, "1.0"),
        Version::HTTP_2 => intern!(py, "2"),
        _ => intern!(py, "1.1"),
    }
}
