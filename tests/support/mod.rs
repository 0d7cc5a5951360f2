//! What the Rust integration tests share. Their server configs come from Python's own defaults
//! (`rsgi.config`'s core view, the same object a worker hands the core), so a Rust test never
//! runs with settings a real server would not have. `stub` runs the real HTTP core with a stub app
//! that never touches Python; `client` talks to it over raw sockets.

// Shared by several test crates, each using a part of it.
#![allow(dead_code)]

pub mod client;
pub mod echo;
pub mod stub;

use _rsgi::config::ServerConfig;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The core view of `rsgi APP` with no other setting: every default as Python resolves it.
/// Needs the `rsgi` package importable by the embedded interpreter (`make install`; `make
/// test-rust` sets PYTHONHOME).
pub fn default_config() -> ServerConfig {
    config_from(|_| Ok(()))
}

/// The core view of `rsgi APP` with the settings `set` puts in the dict handed to
/// `rsgi.config.build` (by their schema names), as Python builds it for a real server.
pub fn config_from(set: impl FnOnce(&Bound<'_, PyDict>) -> PyResult<()>) -> ServerConfig {
    Python::initialize();
    Python::attach(|py| {
        let flags = PyDict::new(py);
        flags.set_item("app", "tests:app")?;
        set(&flags)?;
        py.import("rsgi.config")?.call_method1("build", (flags,))?.call_method0("core")?.extract::<ServerConfig>()
    })
    .unwrap_or_else(|e| panic!("could not build the config from Python (run `make install` first): {e}"))
}

/// The core view of `rsgi tests:app ARGS...`, parsed by rsgi's own command line.
pub fn config_from_args(args: &[&str]) -> ServerConfig {
    Python::initialize();
    Python::attach(|py| {
        let mut argv = vec!["tests:app"];
        argv.extend_from_slice(args);
        let (flags, _check): (Bound<'_, PyAny>, bool) =
            py.import("rsgi.cli")?.call_method1("parse", (argv,))?.extract()?;
        py.import("rsgi.config")?.call_method1("build", (flags,))?.call_method0("core")?.extract::<ServerConfig>()
    })
    .unwrap_or_else(|e| panic!("could not build the config from the command line (run `make install` first): {e}"))
}
