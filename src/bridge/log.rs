//! Logging an app's exception with its traceback through Python's `logging` (logger
//! `rsgi.error`), from whichever Python thread saw it. Shared by the WSGI and ASGI bridges.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Logs `msg` at ERROR with the exception's traceback. Never fails: if logging itself is
/// broken the exception is printed to stderr instead.
pub fn app_error(py: Python<'_>, msg: &str, exc: Bound<'_, PyAny>) {
    let logged = (|| -> PyResult<()> {
        let logger = py.import("logging")?.call_method1(intern!(py, "getLogger"), ("rsgi.error",))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "exc_info"), &exc)?;
        logger.call_method(intern!(py, "error"), (msg,), Some(&kwargs))?;
        Ok(())
    })();
    if let Err(e) = logged {
        e.print(py);
    }
}

/// Logs `msg` at ERROR without a traceback.
pub fn error(py: Python<'_>, msg: &str) {
    let logged = py
        .import("logging")
        .and_then(|l| l.call_method1(intern!(py, "getLogger"), ("rsgi.error",)))
        .and_then(|logger| logger.call_method1(intern!(py, "error"), (msg,)));
    if let Err(e) = logged {
        e.print(py);
    }
}

/// SIGUSR1: the worker's Python log files (`logging.FileHandler`s) close and reopen their paths.
/// Runs on a tokio blocking thread, attaching for this one call (signals are rare).
pub fn reopen_files() {
    Python::attach(|py| {
        if let Err(e) = py.import("rsgi.logs").and_then(|m| m.call_method0(intern!(py, "reopen_files"))) {
            e.print(py);
        }
    });
}
