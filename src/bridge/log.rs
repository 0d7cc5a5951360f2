//! Logging glue between the two languages:
//! - Rust `log` records (from tokio threads, mostly) reach Python's `logging` through a bounded
//!   queue that a Python thread of the worker drains (`forward_logs`). A tokio thread never waits
//!   for the GIL to log: it formats the record, offers it to the queue, and drops it (counted,
//!   and reported once the queue has room) when the queue is full. pyo3-log does the forwarding
//!   (logger names follow the Rust module path, e.g. "_rsgi.http.service", and its cache of
//!   Python's levels lets a tokio thread drop disabled records without the GIL).
//! - An app's exception is logged with its traceback (logger `rsgi.error`) from whichever Python
//!   thread saw it. Shared by the WSGI and ASGI bridges.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use log::{Level, LevelFilter, Log, Metadata, Record};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Records waiting for the forwarding thread; beyond this, new ones are dropped and counted.
const QUEUE: usize = 4096;

/// One record, owned, on its way to Python.
struct Queued {
    level: Level,
    target: String,
    module_path: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    message: String,
}

struct Forwarding {
    python: pyo3_log::Logger,
    tx: Sender<Queued>,
    rx: Receiver<Queued>,
    dropped: AtomicU64,
}

static FORWARDING: OnceLock<Forwarding> = OnceLock::new();

/// The process's `log` logger: queues records for `forward_logs`.
struct Queue(&'static Forwarding);

impl Log for Queue {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.0.python.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        // Levels Python disables are known from pyo3-log's cache once a target has logged; the
        // first record of a target goes through and teaches the cache.
        if !self.0.python.enabled(record.metadata()) {
            return;
        }
        let queued = Queued {
            level: record.level(),
            target: record.target().to_owned(),
            module_path: record.module_path().map(str::to_owned),
            file: record.file().map(str::to_owned),
            line: record.line(),
            message: record.args().to_string(),
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.0.tx.try_send(queued) {
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

/// Installs the queueing logger for this process (once, when the module is imported).
pub fn install(py: Python<'_>) -> PyResult<()> {
    let python = pyo3_log::Logger::new(py, pyo3_log::Caching::LoggersAndLevels)?;
    let (tx, rx) = crossbeam_channel::bounded(QUEUE);
    let forwarding = FORWARDING.get_or_init(|| Forwarding { python, tx, rx, dropped: AtomicU64::new(0) });
    if log::set_boxed_logger(Box::new(Queue(forwarding))).is_ok() {
        log::set_max_level(LevelFilter::Debug);
    }
    Ok(())
}

/// Runs on a Python thread of the worker for the worker's whole life (`rsgi.logs`): waits for
/// records with the GIL released and hands each batch to Python's logging.
#[pyfunction]
pub fn forward_logs(py: Python<'_>) {
    let Some(f) = FORWARDING.get() else { return };
    while let Ok(first) = py.detach(|| f.rx.recv()) {
        emit(f, &first);
        drain(f);
    }
}

/// Hands every queued record to Python's logging now (a worker about to exit calls this).
#[pyfunction]
pub fn flush_logs() {
    if let Some(f) = FORWARDING.get() {
        drain(f);
    }
}

fn drain(f: &Forwarding) {
    while let Ok(next) = f.rx.try_recv() {
        emit(f, &next);
    }
    let dropped = f.dropped.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        let message = format!("{dropped} log records of the core were dropped: the logging queue was full");
        emit(
            f,
            &Queued {
                level: Level::Warn,
                target: module_path!().to_owned(),
                module_path: None,
                file: None,
                line: None,
                message,
            },
        );
    }
}

fn emit(f: &Forwarding, q: &Queued) {
    f.python.log(
        &Record::builder()
            .args(format_args!("{}", q.message))
            .level(q.level)
            .target(&q.target)
            .module_path(q.module_path.as_deref())
            .file(q.file.as_deref())
            .line(q.line)
            .build(),
    );
}

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
