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

/// The core view of `rsgi APP` with no other setting: every default as Python resolves it.
/// Needs the `rsgi` package importable by the embedded interpreter (`make install`; `make
/// test-rust` sets PYTHONHOME).
pub fn default_config() -> ServerConfig {
    Python::initialize();
    Python::attach(|py| {
        let config = py.import("rsgi.config")?;
        let flags = pyo3::types::PyDict::new(py);
        flags.set_item("app", "tests:app")?;
        config.call_method1("build", (flags,))?.call_method0("core")?.extract::<ServerConfig>()
    })
    .unwrap_or_else(|e| panic!("could not read rsgi's defaults from Python (run `make install` first): {e}"))
}
