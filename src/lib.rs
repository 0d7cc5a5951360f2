//! rsgi's compiled core, `rsgi._rsgi`. Modules are listed in the order a request travels:
//! worker (the composition root) → server (accept) → tls → http (hyper, limits, static files;
//! no Python) → bridge (the GIL) → wsgi / asgi. Below them, the leaves every layer may use and
//! that use none of them: config, errors, stop, scoreboard, sync (`tests/test_architecture.py` checks
//! who may use whom, and that nothing forms a cycle).

pub mod worker;
pub mod server;
pub mod tls;
pub mod http;
pub mod bridge;
pub mod wsgi;
pub mod asgi;

pub mod config;
pub mod errors;
pub mod stop;
pub mod scoreboard;
pub mod sync;

use pyo3::prelude::*;

#[pymodule]
fn _rsgi(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Rust `log` records go to Python's `logging` through a queue (see `bridge::log`), so one
    // logging config covers both languages and no tokio thread waits for the GIL to log.
    bridge::log::install(m.py())?;
    m.add_function(wrap_pyfunction!(bridge::log::forward_logs, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::log::flush_logs, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<worker::Worker>()?;
    m.add_class::<scoreboard::Scoreboard>()?;
    m.add_class::<scoreboard::SlotHandle>()?;
    m.add_class::<wsgi::file_wrapper::FileWrapper>()?;
    m.add_class::<wsgi::start_response::StartResponse>()?;
    m.add_class::<asgi::AsgiBridge>()?;
    m.add_class::<asgi::http::HttpProtocol>()?;
    m.add_class::<asgi::websocket::WebSocketProtocol>()?;
    m.add_class::<bridge::awaitable::Ready>()?;
    m.add_class::<bridge::awaitable::Done>()?;
    Ok(())
}
