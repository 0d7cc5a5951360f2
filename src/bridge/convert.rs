//! Conversions between HTTP bytes and Python objects shared by the WSGI and ASGI bridges:
//! latin-1 strings (PEP 3333 "native strings"), header values back to bytes, and an app's
//! response headers (one parser for both interfaces).

use http::header::{HeaderName, HeaderValue, TRANSFER_ENCODING};
use http::HeaderMap;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// An app's response headers from its `(name, value)` pairs, already turned into bytes by the
/// bridge (WSGI: str as latin-1; ASGI: bytes, or str as latin-1). Names are validated and values
/// with CR, LF or NUL refused, so an app can never split the response; `Transfer-Encoding` is
/// dropped, because framing belongs to the server (PEP 3333 forbids hop-by-hop headers too).
pub fn response_headers(pairs: impl Iterator<Item = PyResult<(Vec<u8>, Vec<u8>)>>) -> PyResult<HeaderMap> {
    let mut map = HeaderMap::new();
    for pair in pairs {
        let (name, value) = pair?;
        let name = HeaderName::from_bytes(&name)
            .map_err(|_| PyValueError::new_err(format!("invalid header name {:?}", String::from_utf8_lossy(&name))))?;
        let value = HeaderValue::from_bytes(&value)
            .map_err(|_| PyValueError::new_err(format!("invalid value for header {name}")))?;
        if name != TRANSFER_ENCODING {
            map.append(name, value);
        }
    }
    Ok(map)
}

/// Decodes bytes as latin-1, as PEP 3333 requires for every environ string that came off the
/// wire. Each byte becomes one code point, so this never fails.
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if s.is_ascii() {
            return PyString::new(py, s);
        }
    }
    let s: String = bytes.iter().map(|&b| b as char).collect();
    PyString::new(py, &s)
}

/// Encodes a Python `str` as latin-1 bytes (a WSGI header name or value). Characters above
/// U+00FF cannot travel in an HTTP header and are an app error.
pub fn latin1_bytes(s: &Bound<'_, PyString>) -> PyResult<Vec<u8>> {
    let text = s.to_cow()?;
    if text.is_ascii() {
        return Ok(text.as_bytes().to_vec());
    }
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).map_err(|_| PyValueError::new_err(format!("{c:?} is not latin-1"))))
        .collect()
}
