//! Conversions between HTTP bytes and Python objects shared by the WSGI and ASGI bridges:
//! latin-1 strings (PEP 3333 "native strings"), and header values back to bytes.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyString;

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
