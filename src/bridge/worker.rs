//! `Worker`, the Python-facing handle of one worker process: starts the HTTP core on its own
//! tokio threads and lends the calling Python thread(s) to the app until the server drains.

use std::sync::Mutex;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::config::ServerConfig;
use crate::http::app::{AppQueue, JobReceiver};
use crate::server::Server;
use crate::wsgi::handler::WsgiApp;

#[pyclass(frozen, module = "rsgi._rsgi")]
pub struct Worker {
    server: Mutex<Server>,
    jobs: JobReceiver,
    done: crossbeam_channel::Receiver<()>,
    root_path: String,
}

#[pymethods]
impl Worker {
    /// Starts serving on the listening sockets `fds` (inherited from the supervisor).
    /// Requests queue until a Python thread calls `run_wsgi`.
    #[new]
    fn new(config: ServerConfig, fds: Vec<i32>) -> PyResult<Self> {
        let root_path = config.root_path.clone();
        let (queue, jobs) = AppQueue::new();
        let server = Server::start(config, &fds, queue).map_err(|e| PyOSError::new_err(e.to_string()))?;
        let done = server.done().clone();
        Ok(Self {
            server: Mutex::new(server),
            jobs,
            done,
            root_path,
        })
    }

    /// Serves WSGI requests on the calling thread until the worker has stopped. Call it from
    /// the main thread, and from `threads - 1` extra `threading.Thread`s for `--threads N`.
    fn run_wsgi(&self, py: Python<'_>, app: Py<PyAny>, base_environ: Bound<'_, PyDict>) -> PyResult<()> {
        // Each thread gets its own copy of the constants, so threads share no mutable state.
        let mut wsgi = WsgiApp::new(py, app, base_environ.copy()?, self.root_path.clone())?;
        crate::bridge::serve_jobs(py, &self.jobs, &self.done, |py, job| wsgi.handle(py, job));
        Ok(())
    }

    /// Starts a graceful stop (as SIGTERM does), or a fast one.
    #[pyo3(signature = (fast = false))]
    fn stop(&self, fast: bool) {
        self.server.lock().expect("server lock").stop(fast);
    }

    /// Releases the runtime's threads; call once every `run_wsgi` has returned.
    fn shutdown(&self, py: Python<'_>) {
        py.detach(|| self.server.lock().expect("server lock").shutdown());
    }
}
