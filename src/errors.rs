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

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::prelude::*;

    #[test]
    fn errno_picks_the_subclass() {
        Python::initialize();
        Python::attach(|py| {
            // What an `except FileNotFoundError:` in Python matches: the exception instance.
            let err: PyErr = Error::File("/nope".into(), io::Error::from_raw_os_error(libc::ENOENT)).into();
            let value = err.value(py);
            assert!(value.is_instance_of::<pyo3::exceptions::PyFileNotFoundError>());
            assert_eq!(value.getattr("errno").unwrap().extract::<i32>().unwrap(), libc::ENOENT);
            assert_eq!(value.getattr("filename").unwrap().extract::<String>().unwrap(), "/nope");
            let err: PyErr = Error::Io(io::Error::from_raw_os_error(libc::EACCES)).into();
            assert!(err.value(py).is_instance_of::<pyo3::exceptions::PyPermissionError>());
        });
    }
}
