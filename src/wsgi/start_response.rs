//! `start_response(status, headers, exc_info=None)` and its legacy `write()` callable, with
//! PEP 3333's rules: headers may be replaced (with `exc_info`) until they have been sent.

use bytes::Bytes;

use http::{HeaderMap, StatusCode};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use crate::bridge::convert::{latin1_bytes, response_headers};

#[pyclass(module = "rsgi._rsgi")]
#[derive(Default)]
pub struct StartResponse {
    head: Option<(StatusCode, HeaderMap)>,
    /// Set once the status line has left for the client; after that only `exc_info` re-raise.
    pub headers_sent: bool,
    /// Data given to the legacy `write()` callable, sent before the iterable's chunks.
    pub written: Vec<Bytes>,
}

impl StartResponse {
    /// The status and headers, taken when the response starts. Fails if the app never called
    /// `start_response`, which is an app error (500).
    pub fn take_head(&mut self) -> PyResult<(StatusCode, HeaderMap)> {
        self.headers_sent = true;
        self.head.take().ok_or_else(|| PyRuntimeError::new_err("the WSGI app did not call start_response"))
    }
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let me = slf.borrow();
            if me.headers_sent {
                // PEP 3333: once headers are sent, a call with exc_info must re-raise it.
                if let Some(info) = exc_info {
                    return Err(PyErr::from_value(info.get_item(1)?));
                }
                return Err(PyRuntimeError::new_err("start_response called after the headers were sent"));
            }
            if me.head.is_some() && exc_info.is_none() {
                return Err(PyRuntimeError::new_err("start_response called a second time without exc_info"));
            }
        }
        let head = (parse_status(status)?, parse_headers(headers)?);
        slf.borrow_mut().head = Some(head);
        slf.getattr(pyo3::intern!(slf.py(), "write"))
    }

    /// The legacy imperative body API; PEP 3333 keeps it for old frameworks.
    fn write(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = data.cast::<PyBytes>().map_err(|_| PyTypeError::new_err("write() takes bytes"))?;
        if self.head.is_none() && !self.headers_sent {
            return Err(PyRuntimeError::new_err("write() called before start_response"));
        }
        self.written.push(Bytes::copy_from_slice(data.as_bytes()));
        Ok(())
    }
}

fn parse_status(status: &Bound<'_, PyAny>) -> PyResult<StatusCode> {
    let s = status.cast::<PyString>().map_err(|_| PyTypeError::new_err("WSGI status must be a str"))?;
    let s = s.to_cow()?;
    let b = s.as_bytes();
    // "200 OK": three digits, then a space and a reason phrase (hyper sends the canonical one).
    let invalid = || PyValueError::new_err(format!("invalid WSGI status {s:?}"));
    let (code, rest) = b.split_at_checked(3).ok_or_else(invalid)?;
    if !(rest.is_empty() || rest.starts_with(b" ")) {
        return Err(invalid());
    }
    StatusCode::from_bytes(code).map_err(|_| invalid())
}

fn parse_headers(headers: &Bound<'_, PyAny>) -> PyResult<HeaderMap> {
    let pairs = headers.try_iter()?.map(|item| {
        let item = item?;
        let pair =
            item.cast::<PyTuple>().map_err(|_| PyTypeError::new_err("WSGI headers must be (name, value) tuples"))?;
        if pair.len() != 2 {
            return Err(PyTypeError::new_err("WSGI headers must be (name, value) tuples"));
        }
        let (name, value) = (pair.get_item(0)?, pair.get_item(1)?);
        let (Ok(name), Ok(value)) = (name.cast::<PyString>(), value.cast::<PyString>()) else {
            return Err(PyTypeError::new_err("WSGI header names and values must be str"));
        };
        Ok((latin1_bytes(name)?, latin1_bytes(value)?))
    });
    response_headers(pairs)
}
