//! Errors that cross to Python, mapped in one place. A leaf.
//!
//! An `io::Error` becomes the `OSError` subclass Python itself would raise for its errno
//! (`FileNotFoundError`, `PermissionError`, `ConnectionRefusedError`, ...) with `errno`,
//! `strerror` and, where known, `filename` set: Python's `OSError(errno, strerror, filename)`
//! picks the subclass from the errno. Errors without an errno keep their message.

use std::io;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::PyErr;

/// What the core reports to Python when it cannot do what it was asked.
#[derive(Debug)]
pub enum Error {
    /// A system call failed (binding, TLS files, the scoreboard mapping, eventfds...).
    Io(io::Error),
    /// A file could not be used, with its path: the certificate, the access log...
    File(String, io::Error),
    /// A setting or argument the core cannot use.
    Value(String),
    /// The core is not in a state to do this (a WSGI call on an ASGI worker, ...).
    State(String),
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::File(path, e) => write!(f, "{path}: {e}"),
            Self::Value(m) | Self::State(m) => f.write_str(m),
        }
    }
}

impl From<Error> for PyErr {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => match e.raw_os_error() {
                Some(errno) => PyOSError::new_err((errno, strerror(&e))),
                None => PyOSError::new_err(e.to_string()),
            },
            Error::File(path, e) => match e.raw_os_error() {
                Some(errno) => PyOSError::new_err((errno, strerror(&e), path)),
                None => PyOSError::new_err(format!("{path}: {e}")),
            },
            Error::Value(m) => PyValueError::new_err(m),
            Error::State(m) => PyRuntimeError::new_err(m),
        }
    }
}

/// The message of an OS error without Rust's " (os error N)" suffix, as Python's `strerror`.
fn strerror(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(cut) => text.get(..cut).unwrap_or(&text).to_owned(),
        None => text,
    }
}
