//! `Worker`, the Python-facing handle of one worker process: starts the HTTP core on its own
//! tokio threads, then lends it the calling Python thread(s) (WSGI) or the event loop (ASGI)
//! until the server drains.

use std::sync::Mutex;

use std::sync::Arc;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::asgi::AsgiBridge;
use crate::bridge::event_loop::LoopQueue;
use crate::bridge::log;
use crate::config::ServerConfig;
use crate::http::app::{AppQueue, JobReceiver, Router, ThreadQueue};
use crate::server::scoreboard::Slot;
use crate::server::Server;
use crate::wsgi::handler::WsgiApp;

#[pyclass(frozen, module = "rsgi._rsgi")]
pub struct Worker {
    server: Mutex<Server>,
    /// WSGI: the queue Python threads take jobs from.
    jobs: Option<JobReceiver>,
    /// ASGI: the queue the event loop drains.
    loop_queue: Option<Arc<LoopQueue>>,
    done: crossbeam_channel::Receiver<()>,
    root_path: String,
    slot: Slot,
}

#[pymethods]
impl Worker {
    /// Starts serving on the listening sockets `fds` (inherited from the supervisor).
    /// Requests queue until a Python thread calls `run_wsgi`.
    /// `interface` is "wsgi" (Python threads take jobs), "asgi" (an event loop does) or "dual"
    /// (both: see `http::app::Router` for which requests go where).
    #[new]
    /// `slot` is the address of this worker's scoreboard slot (see `server::scoreboard`), 0 for none.
    #[pyo3(signature = (config, fds, interface = "wsgi", slot = 0))]
    fn new(config: ServerConfig, fds: Vec<i32>, interface: &str, slot: usize) -> PyResult<Self> {
        let root_path = config.root_path.clone();
        let os_err = |e: std::io::Error| PyOSError::new_err(e.to_string());
        let (queue, jobs, loop_queue): (AppQueue, _, _) = match interface {
            "asgi" => {
                let q = LoopQueue::new().map_err(os_err)?;
                (q.clone(), None, Some(q))
            }
            "wsgi" => {
                let (q, jobs) = ThreadQueue::channel();
                (q, Some(jobs), None)
            }
            "dual" => {
                let (wsgi, jobs) = ThreadQueue::channel();
                let asgi = LoopQueue::new().map_err(os_err)?;
                let router = Router { wsgi, asgi: asgi.clone(), asgi_paths: config.asgi_paths.clone() };
                (Arc::new(router) as AppQueue, Some(jobs), Some(asgi))
            }
            other => return Err(PyValueError::new_err(format!("unknown interface {other:?}"))),
        };
        let server = Server::start(config, &fds, queue, Slot::new(slot)).map_err(os_err)?;
        let mut reopen = server.reopen_events();
        server.handle().spawn(async move {
            while reopen.changed().await.is_ok() {
                let _ = tokio::task::spawn_blocking(log::reopen_files).await;
            }
        });
        let done = server.done().clone();
        Ok(Self { server: Mutex::new(server), jobs, loop_queue, done, root_path, slot: Slot::new(slot) })
    }

    /// Serves WSGI requests on the calling thread until the worker has stopped. Call it from
    /// the main thread, and from `threads - 1` extra `threading.Thread`s for `--threads N`.
    /// `thread` numbers the calling thread (0 for the main one) in the scoreboard.
    #[pyo3(signature = (app, base_environ, thread = 0))]
    fn run_wsgi(&self, py: Python<'_>, app: Py<PyAny>, base_environ: Bound<'_, PyDict>, thread: usize) -> PyResult<()> {
        // Each thread gets its own copy of the constants, so threads share no mutable state.
        let jobs = self.jobs.as_ref().ok_or_else(|| PyValueError::new_err("this worker serves ASGI"))?;
        let mut wsgi = WsgiApp::new(py, app, base_environ.copy()?, self.root_path.clone())?;
        crate::bridge::serve_jobs(py, jobs, &self.done, (self.slot, thread), |py, job| wsgi.handle(py, job));
        Ok(())
    }

    /// The loop side of the ASGI hand-off. Python registers `bridge.on_wake` with
    /// `loop.add_reader(bridge.fileno(), ...)`; `stopped` (a future) resolves once drained.
    #[pyo3(signature = (app, event_loop, run_http, state, stopped))]
    fn asgi_bridge(
        &self,
        py: Python<'_>,
        app: Py<PyAny>,
        event_loop: Bound<'_, PyAny>,
        run_http: Py<PyAny>,
        state: Option<Bound<'_, PyDict>>,
        stopped: Py<PyAny>,
    ) -> PyResult<AsgiBridge> {
        let queue = self.loop_queue.clone().ok_or_else(|| PyValueError::new_err("this worker serves WSGI"))?;
        let runtime = crate::sync::lock(&self.server).handle();
        AsgiBridge::new(py, queue, runtime, app, &event_loop, run_http, state, stopped, &self.root_path, self.slot)
    }

    /// Starts a graceful stop (as SIGTERM does), or a fast one.
    #[pyo3(signature = (fast = false))]
    fn stop(&self, fast: bool) {
        crate::sync::lock(&self.server).stop(fast);
    }

    /// Releases the runtime's threads; call once every `run_wsgi` has returned.
    fn shutdown(&self, py: Python<'_>) {
        py.detach(|| crate::sync::lock(&self.server).shutdown());
    }
}
