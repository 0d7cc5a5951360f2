//! Builds the ASGI `http` / `websocket` scope dict (spec 2.4) from an owned `RequestHead`.
//! Shared constants (the `asgi` and `extensions` dicts) are built once per worker.

use http::Version;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::http::request::{Peer, RequestHead};

pub struct ScopeBuilder {
    asgi: Py<PyDict>,
    extensions: Py<PyDict>,
    root_path: Py<PyString>,
    /// Lifespan state: each request gets a shallow copy (spec: state is per-app, copied per scope).
    state: Option<Py<PyDict>>,
}

impl ScopeBuilder {
    pub fn new(py: Python<'_>, root_path: &str, state: Option<Bound<'_, PyDict>>) -> PyResult<Self> {
        let asgi = PyDict::new(py);
        asgi.set_item("version", "3.0")?;
        asgi.set_item("spec_version", "2.4")?;
        let extensions = PyDict::new(py);
        extensions.set_item("http.response.pathsend", PyDict::new(py))?;
        extensions.set_item("websocket.http.response", PyDict::new(py))?;
        Ok(Self {
            asgi: asgi.unbind(),
            extensions: extensions.unbind(),
            root_path: PyString::new(py, root_path).unbind(),
            state: state.map(Bound::unbind),
        })
    }

    pub fn build<'py>(&self, py: Python<'py>, kind: &str, head: &RequestHead) -> PyResult<Bound<'py, PyDict>> {
        let scope = PyDict::new(py);
        scope.set_item(intern!(py, "type"), PyString::intern(py, kind))?;
        scope.set_item(intern!(py, "asgi"), self.asgi.bind(py))?;
        scope.set_item(intern!(py, "http_version"), http_version(py, head.version))?;
        if kind == "http" {
            scope.set_item(intern!(py, "method"), head.method.as_str())?;
        }
        let secure = head.conn.scheme == "https";
        let scheme = match (kind, secure) {
            ("websocket", false) => "ws",
            ("websocket", true) => "wss",
            _ => head.conn.scheme,
        };
        scope.set_item(intern!(py, "scheme"), scheme)?;
        let raw_path = head.uri.path();
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw_path).collect();
        // The spec wants the path as text decoded from UTF-8; invalid sequences become U+FFFD
        // (raw_path keeps the exact bytes for apps that need them).
        scope.set_item(intern!(py, "path"), String::from_utf8_lossy(&decoded))?;
        scope.set_item(intern!(py, "raw_path"), PyBytes::new(py, raw_path.as_bytes()))?;
        let query = head.uri.query().unwrap_or("");
        scope.set_item(intern!(py, "query_string"), PyBytes::new(py, query.as_bytes()))?;
        scope.set_item(intern!(py, "root_path"), self.root_path.bind(py))?;
        scope.set_item(intern!(py, "headers"), headers(py, head)?)?;
        scope.set_item(intern!(py, "client"), address(py, &head.conn.remote)?)?;
        scope.set_item(intern!(py, "server"), address(py, &head.conn.local)?)?;
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
        scope.set_item(intern!(py, "extensions"), self.extensions.bind(py))?;
        Ok(scope)
    }
}

/// Header names arrive lowercased from hyper, as ASGI requires; values are raw bytes.
fn headers<'py>(py: Python<'py>, head: &RequestHead) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    // RFC 9112 §3.2.2: with an absolute-form target its authority is the host, not Host:.
    let authority = head.uri.authority();
    if let Some(auth) = authority {
        list.append((PyBytes::new(py, b"host"), PyBytes::new(py, auth.as_str().as_bytes())))?;
    }
    for (name, value) in head.headers.iter() {
        if authority.is_some() && name == http::header::HOST {
            continue;
        }
        let pair = PyTuple::new(py, [PyBytes::new(py, name.as_str().as_bytes()), PyBytes::new(py, value.as_bytes())])?;
        list.append(pair)?;
    }
    Ok(list)
}

fn address<'py>(py: Python<'py>, peer: &Peer) -> PyResult<Bound<'py, PyAny>> {
    match peer {
        Peer::Tcp(a) => Ok((a.ip().to_string(), a.port()).into_pyobject(py)?.into_any()),
        Peer::Unix => Ok(py.None().into_bound(py)),
    }
}

fn http_version(py: Python<'_>, v: Version) -> &Bound<'_, PyString> {
    match v {
        Version::HTTP_10 => intern!(py, "1.0"),
        Version::HTTP_2 => intern!(py, "2"),
        _ => intern!(py, "1.1"),
    }
}
