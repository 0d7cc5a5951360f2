//! The composition root: `Worker`, the Python-facing handle of one worker process. It decides
//! which app queue the HTTP core feeds (`Interface`, and the `Router` for both at once), starts
//! the core on its own tokio threads, then lends it the calling Python thread(s) (WSGI, through
//! `bridge::serve_jobs`) or the event loop (ASGI, through `asgi::AsgiBridge`) until it drains.
//! Everything else depends on nothing here.

use std::sync::Mutex;

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::asgi::AsgiBridge;
use crate::bridge::event_loop::LoopQueue;
use crate::config::ServerConfig;
use crate::errors::Error;
use crate::http::app::{AppQueue, JobReceiver, ThreadQueue};
use crate::http::app::{Job, JobSink};
use crate::scoreboard::{Slot, SlotHandle};
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
    /// Keeps the scoreboard mapping `slot` points into alive.
    _board: Option<Py<SlotHandle>>,
}

#[pymethods]
impl Worker {
    /// Starts serving on the listening sockets `fds` (inherited from the supervisor).
    /// Requests queue until a Python thread calls `run_wsgi`.
    /// `interface` is "wsgi" (Python threads take jobs), "asgi" (an event loop does) or "dual"
    /// (both: see `Router` for which requests go where).
    #[new]
    /// `slot` is this worker's scoreboard slot (`Scoreboard.slot(i)`), None for none.
    #[pyo3(signature = (config, fds, interface = "wsgi", slot = None))]
    fn new(config: ServerConfig, fds: Vec<i32>, interface: &str, slot: Option<Py<SlotHandle>>) -> PyResult<Self> {
        let board = slot;
        let slot = board.as_ref().map_or(Slot::new(0), |h| h.get().slot());
        let root_path = config.root_path.clone();
        let (queue, jobs, loop_queue): (AppQueue, _, _) = match interface.parse()? {
            Interface::Asgi => {
                let q = LoopQueue::new().map_err(Error::from)?;
                (q.clone(), None, Some(q))
            }
            Interface::Wsgi => {
                let (q, jobs) = ThreadQueue::channel();
                (q, Some(jobs), None)
            }
            Interface::Dual => {
                let (wsgi, jobs) = ThreadQueue::channel();
                let asgi = LoopQueue::new().map_err(Error::from)?;
                let router = Router { wsgi, asgi: asgi.clone(), asgi_paths: config.asgi_paths.clone() };
                (Arc::new(router) as AppQueue, Some(jobs), Some(asgi))
            }
        };
        let server = Server::start(config, &fds, queue, slot).map_err(Error::from)?;
        slot.mark_ready();
        let mut reopen = server.reopen_events();
        server.handle().spawn(async move {
            while reopen.changed().await.is_ok() {
                let _ = tokio::task::spawn_blocking(crate::bridge::log::reopen_files).await;
            }
        });
        let done = server.done().clone();
        Ok(Self { server: Mutex::new(server), jobs, loop_queue, done, root_path, slot, _board: board })
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

    /// `--drain-delay`: from now on the health path answers 503 and every response closes its
    /// connection, while the worker keeps accepting and serving until it is stopped.
    fn unready(&self) {
        crate::sync::lock(&self.server).unready();
    }

    /// Starts a graceful stop (as SIGTERM does), or a fast one.
    #[pyo3(signature = (fast = false))]
    fn stop(&self, fast: bool) {
        crate::sync::lock(&self.server).stop(fast);
    }

    /// Releases the runtime's threads; call once every `run_wsgi` has returned.
    fn shutdown(&self, py: Python<'_>) {
        crate::bridge::without_gil(py, || crate::sync::lock(&self.server).shutdown());
    }
}

/// Which app a worker serves: `Worker(..., interface=...)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interface {
    /// Python threads take jobs (`run_wsgi`).
    Wsgi,
    /// An event loop does (`asgi_bridge`).
    Asgi,
    /// Both: the `Router` decides per request.
    Dual,
}

impl std::str::FromStr for Interface {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "wsgi" => Ok(Self::Wsgi),
            "asgi" => Ok(Self::Asgi),
            "dual" => Ok(Self::Dual),
            other => Err(Error::Value(format!("unknown interface {other:?}"))),
        }
    }
}

/// Both interfaces in one worker (`--wsgi` beside an ASGI app): WebSocket handshakes and
/// requests under an `--asgi-path` prefix go to the event loop, every other HTTP request to the
/// WSGI threads. Lifespan is the ASGI side's alone (it never passes through here).
pub struct Router {
    pub wsgi: AppQueue,
    pub asgi: AppQueue,
    /// Path prefixes served by the ASGI app, each ending in `/` (a prefix also matches the
    /// path without its trailing slash: `/sse/` covers `/sse` and `/sse/...`).
    pub asgi_paths: Vec<String>,
}

impl Router {
    fn to_asgi(&self, job: &Job) -> bool {
        if job.ws.is_some() {
            return true;
        }
        if self.asgi_paths.is_empty() {
            return false;
        }
        // Matched on the decoded path, the one both apps see (`/%73se/` is `/sse/`), so an
        // encoded spelling cannot send a long-lived ASGI view to a WSGI thread.
        let path = percent_encoding::percent_decode_str(job.head.uri.path()).decode_utf8_lossy();
        self.asgi_paths.iter().any(|p| path.starts_with(p.as_str()) || path == p.trim_end_matches('/'))
    }
}

impl JobSink for Router {
    fn submit(&self, job: Job) -> bool {
        if self.to_asgi(&job) {
            self.asgi.submit(job)
        } else {
            self.wsgi.submit(job)
        }
    }

    fn stopped(&self) {
        self.wsgi.stopped();
        self.asgi.stopped();
    }

    fn websockets(&self) -> bool {
        true
    }
}
