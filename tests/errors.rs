//! How the core's errors reach Python (src/errors.rs): an OS error is the `OSError` subclass
//! Python itself would raise, with its errno and file name. (Here rather than in src/: only
//! src/bridge/ may attach to Python.)

// A test: a panic here is a failed test.
#![allow(clippy::unwrap_used)]

use std::io;

use _rsgi::errors::Error;
use pyo3::prelude::*;
use pyo3::PyErr;

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
