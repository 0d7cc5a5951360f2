//! rsgi's compiled core, `rsgi._rsgi`. Modules are listed in the order a request travels:
//! server (accept) → http (hyper, limits; no Python) → bridge (the GIL) → wsgi / asgi.

pub mod asgi;
pub mod bridge;
pub mod config;
pub mod http;
pub mod server;
pub mod static_files;
pub mod sync;
pub mod tls;
pub mod wsgi;

use pyo3::prelude::*;

#[pymodule]
fn _rsgi(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Rust `log` records go to Python's `logging` through a queue (see `bridge::log`), so one
    // logging config covers both languages and no tokio thread waits for the GIL to log.
    bridge::log::install(m.py())?;
    m.add_function(wrap_pyfunction!(bridge::log::forward_logs, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::log::flush_logs, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<bridge::worker::Worker>()?;
    m.add_class::<wsgi::file_wrapper::FileWrapper>()?;
    m.add_class::<wsgi::start_response::StartResponse>()?;
    m.add_class::<asgi::AsgiBridge>()?;
    m.add_class::<asgi::http::HttpProtocol>()?;
    m.add_class::<asgi::websocket::WebSocketProtocol>()?;
    m.add_class::<bridge::awaitable::Ready>()?;
    m.add_class::<bridge::awaitable::Done>()?;
    Ok(())
}
