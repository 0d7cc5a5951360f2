//! The bridge: the only code that attaches to Python, releases the GIL, or waits for it.
//! `wsgi/` and `asgi/` receive a `Python<'py>` token from here and never detach themselves.
//!
//! The contract, measured in `../shared/docs/BRIDGE.md` and re-measured in `bench/`:
//! - Every thread that runs Python is a Python-created thread (the worker's main thread, or a
//!   `threading.Thread` for `--threads N`) that stays attached for its whole life. It releases
//!   the GIL only while it waits for work or for a full response channel, so each request costs
//!   one GIL re-acquisition at most, and none while the queue is non-empty.
//! - tokio threads never take the GIL on the request path. (pyo3-log attaches briefly when a
//!   Rust log record is emitted; those are rare and never per request at the default level.)
//! - No Python object crosses to a tokio thread: requests arrive as owned Rust data
//!   (`http::request`), responses leave as `Bytes`, `HeaderMap` and channels.

pub mod awaitable;
pub mod convert;
pub mod event_loop;
pub mod log;
pub mod stream;
pub mod waiter;

use crossbeam_channel::{select, Receiver, TryRecvError};
use pyo3::Python;

use crate::http::app::{Job, JobReceiver};
use crate::scoreboard::Slot;

/// Runs `f` with the GIL released (blocking work called from Python: joining the runtime's
/// threads on shutdown).
pub fn without_gil<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
    py.detach(f)
}

/// Runs `handle` for every queued job on the calling (attached) Python thread until the server
/// has finished draining (`done` disconnects). While jobs are queued they are taken without
/// releasing the GIL; the GIL is released only to block on an empty queue.
pub fn serve_jobs(
    py: Python<'_>,
    jobs: &JobReceiver,
    done: &Receiver<()>,
    slot: (Slot, usize),
    mut handle: impl FnMut(Python<'_>, Job),
) {
    let (slot, thread) = slot;
    loop {
        let job = match jobs.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Disconnected) => return,
            Err(TryRecvError::Empty) => {
                let next = py.detach(|| {
                    select! {
                        recv(jobs) -> job => job.ok(),
                        recv(done) -> _ => None,
                    }
                });
                match next {
                    Some(job) => job,
                    None => return,
                }
            }
        };
        slot.job_taken(job.queued_at);
        // The client went away while the job waited: don't spend Python time on it.
        if job.reply.is_closed() {
            continue;
        }
        slot.busy(thread, format_args!("{} {}", job.head.method, job.head.uri));
        handle(py, job);
        slot.idle(thread);
        slot.request_done();
    }
}
