//! Builds the PEP 3333 `environ` dict from an owned `RequestHead` and its fully read body.
//! Constants are prepared once per thread and copied; only per-request keys are set here.

use std::collections::HashMap;
use std::os::fd::IntoRawFd;

use http::header::{HeaderName, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, TRANSFER_ENCODING};
use http::Version;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use pyo3::{intern, IntoPyObjectExt};

use crate::bridge::convert::latin1;
use crate::http::request::{Peer, RequestBody, RequestHead};

/// Header-name → `HTTP_*` key cache, bounded so random header names can't grow it forever.
const HEADER_KEY_CACHE: usize = 256;

pub struct EnvironBuilder {
    /// `wsgi.*` constants, SERVER_SOFTWARE, SCRIPT_NAME: copied into every environ.
    base: Py<PyDict>,
    bytes_io: Py<PyAny>,
    open: Py<PyAny>,
    root_path: String,
    header_keys: HashMap<HeaderName, Py<PyString>>,
}

impl EnvironBuilder {
    pub fn new(py: Python<'_>, base: Bound<'_, PyDict>, root_path: String) -> PyResult<Self> {
        let io = py.import("io")?;
        base.set_item("SCRIPT_NAME", latin1(py, root_path.as_bytes()))?; // PEP 3333: bytes as latin-1
        base.set_item("wsgi.input_terminated", true)?;
        Ok(Self {
            base: base.unbind(),
            bytes_io: io.getattr("BytesIO")?.unbind(),
            open: io.getattr("open")?.unbind(),
            root_path,
            header_keys: HashMap::new(),
        })
    }

    pub fn build<'py>(
        &mut self,
        py: Python<'py>,
        head: &RequestHead,
        body: RequestBody,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = self.base.bind(py).copy()?;
        env.set_item(intern!(py, "REQUEST_METHOD"), method(py, &head.method))?;
        self.set_path(py, &env, head)?;
        env.set_item(intern!(py, "SERVER_PROTOCOL"), protocol(py, head.version))?;
        set_addresses(py, &env, &head.conn.remote, &head.conn.local)?;
        env.set_item(intern!(py, "wsgi.url_scheme"), head.conn.scheme)?;

        // The body was read completely (and de-chunked), so CONTENT_LENGTH is always the exact
        // length: Django reads wsgi.input only up to it, and would see an empty chunked body.
        let len = body.len();
        if len > 0 || head.headers.contains_key(CONTENT_LENGTH) {
            env.set_item(intern!(py, "CONTENT_LENGTH"), len.to_string())?;
        }
        if let Some(ct) = head.headers.get(CONTENT_TYPE) {
            env.set_item(intern!(py, "CONTENT_TYPE"), latin1(py, ct.as_bytes()))?;
        }
        self.set_headers(py, &env, head)?;
        env.set_item(intern!(py, "wsgi.input"), self.input(py, body)?)?;
        Ok(env)
    }

    fn set_path(&self, py: Python<'_>, env: &Bound<'_, PyDict>, head: &RequestHead) -> PyResult<()> {
        let raw_path = head.uri.path();
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw_path).collect();
        env.set_item(intern!(py, "PATH_INFO"), latin1(py, path_info(&decoded, &self.root_path)))?;
        let query = head.uri.query().unwrap_or("");
        env.set_item(intern!(py, "QUERY_STRING"), latin1(py, query.as_bytes()))?;
        let raw_uri = head.uri.path_and_query().map_or(raw_path, |pq| pq.as_str());
        env.set_item(intern!(py, "RAW_URI"), latin1(py, raw_uri.as_bytes()))?;
        Ok(())
    }

    fn set_headers(&mut self, py: Python<'_>, env: &Bound<'_, PyDict>, head: &RequestHead) -> PyResult<()> {
        let headers = &head.headers;
        for name in headers.keys() {
            if name == CONTENT_TYPE || name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
                continue;
            }
            // "X_Forwarded_For" and "X-Forwarded-For" would both become HTTP_X_FORWARDED_FOR;
            // a client could then spoof a header a proxy set. Headers with "_" are dropped.
            if name.as_str().contains('_') {
                continue;
            }
            let mut values = headers.get_all(name).iter();
            let Some(first) = values.next() else { continue };
            let value = match values.next() {
                None => latin1(py, first.as_bytes()),
                Some(second) => {
                    let sep: &[u8] = if name == COOKIE { b"; " } else { b", " };
                    let mut joined = first.as_bytes().to_vec();
                    for v in std::iter::once(second).chain(values) {
                        joined.extend_from_slice(sep);
                        joined.extend_from_slice(v.as_bytes());
                    }
                    latin1(py, &joined)
                }
            };
            env.set_item(self.header_key(py, name), value)?;
        }
        // RFC 9112 §3.2.2: with an absolute-form target ("GET http://host/p"), the target's
        // authority is the host, whatever the Host header says.
        if let Some(auth) = head.uri.authority() {
            env.set_item(intern!(py, "HTTP_HOST"), auth.as_str())?;
        }
        Ok(())
    }

    fn header_key<'py>(&mut self, py: Python<'py>, name: &HeaderName) -> Bound<'py, PyString> {
        if let Some(k) = self.header_keys.get(name) {
            return k.bind(py).clone();
        }
        let mut key = String::with_capacity(5 + name.as_str().len());
        key.push_str("HTTP_");
        key.extend(name.as_str().chars().map(|c| if c == '-' { '_' } else { c.to_ascii_uppercase() }));
        let key = PyString::intern(py, &key);
        if self.header_keys.len() < HEADER_KEY_CACHE {
            self.header_keys.insert(name.clone(), key.clone().unbind());
        }
        key
    }

    /// `wsgi.input`: a `BytesIO` over the in-memory body, or a buffered reader over the spooled
    /// temporary file. Both are seekable and support read(n)/readline()/iteration (stdlib code
    /// rather than a hand-written reader).
    fn input<'py>(&self, py: Python<'py>, body: RequestBody) -> PyResult<Bound<'py, PyAny>> {
        match body {
            RequestBody::Memory(b) => self.bytes_io.bind(py).call1((PyBytes::new(py, &b),)),
            RequestBody::Spooled { file, .. } => {
                // Ownership of the descriptor passes to the Python file object, which closes it.
                let fd = file.into_raw_fd();
                self.open.bind(py).call1((fd, "rb"))
            }
        }
    }
}

/// With `--root-path` the app is mounted below a prefix: PATH_INFO is what follows it. A path
/// outside the prefix is passed whole (the app decides; Django answers 404).
fn path_info<'a>(decoded: &'a [u8], root_path: &str) -> &'a [u8] {
    match decoded.strip_prefix(root_path.as_bytes()) {
        Some(rest) if !root_path.is_empty() && (rest.is_empty() || rest.starts_with(b"/")) => rest,
        _ => decoded,
    }
}

fn method<'py>(py: Python<'py>, m: &http::Method) -> Bound<'py, PyString> {
    match m.as_str() {
        "GET" => intern!(py, "GET").clone(),
        "POST" => intern!(py, "POST").clone(),
        "HEAD" => intern!(py, "HEAD").clone(),
        other => PyString::new(py, other),
    }
}

fn protocol(py: Python<'_>, v: Version) -> &Bound<'_, PyString> {
    match v {
        Version::HTTP_10 => intern!(py, "HTTP/1.0"),
        Version::HTTP_2 => intern!(py, "HTTP/2"),
        _ => intern!(py, "HTTP/1.1"),
    }
}

fn set_addresses(py: Python<'_>, env: &Bound<'_, PyDict>, remote: &Peer, local: &Peer) -> PyResult<()> {
    match remote {
        Peer::Tcp(a) => {
            env.set_item(intern!(py, "REMOTE_ADDR"), a.ip().to_string())?;
            env.set_item(intern!(py, "REMOTE_PORT"), a.port().to_string())?;
        }
        // A Unix-socket peer has no address; an empty REMOTE_ADDR is what CGI servers give.
        Peer::Unix => env.set_item(intern!(py, "REMOTE_ADDR"), intern!(py, ""))?,
    }
    let (name, port) = match local {
        Peer::Tcp(a) => (a.ip().to_string(), a.port().to_string()),
        Peer::Unix => ("localhost".to_owned(), "0".to_owned()),
    };
    env.set_item(intern!(py, "SERVER_NAME"), name)?;
    env.set_item(intern!(py, "SERVER_PORT"), port.into_py_any(py)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::path_info;

    #[test]
    fn root_path_is_stripped_on_a_segment_boundary() {
        assert_eq!(path_info(b"/mnt/app/x", "/mnt"), b"/app/x");
        assert_eq!(path_info(b"/mnt", "/mnt"), b"");
        assert_eq!(path_info(b"/mntx/y", "/mnt"), b"/mntx/y");
        assert_eq!(path_info(b"/other", "/mnt"), b"/other");
        assert_eq!(path_info(b"/a", ""), b"/a");
    }
}
