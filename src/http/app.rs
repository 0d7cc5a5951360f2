//! The contract between the HTTP core and an app bridge: tokio submits a `Job` (a fully read
//! request plus a reply slot) to a queue; a Python thread answers with an `AppResponse`.

use std::time::Instant;

use http::{HeaderMap, StatusCode};
use tokio::sync::oneshot;

use super::body::ResponseBody;
use super::request::{RequestBody, RequestHead};

/// One request waiting for the app.
pub struct Job {
    pub head: RequestHead,
    pub body: RequestBody,
    pub reply: oneshot::Sender<AppResponse>,
    /// When tokio queued it; lets the bridge report queueing time.
    pub queued_at: Instant,
}

/// What the app produced: status and headers now, the body complete or still streaming.
pub struct AppResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: ResponseBody,
}

/// The sending side of the app queue. Unbounded on purpose: the number of queued jobs is
/// already capped by `--max-connections` (one request in flight per HTTP/1 connection), and a
/// bounded queue would have to block a tokio thread or drop requests.
#[derive(Clone)]
pub struct AppQueue {
    tx: crossbeam_channel::Sender<Job>,
}

/// The receiving side, drained by the Python thread(s) of a worker.
pub type JobReceiver = crossbeam_channel::Receiver<Job>;

impl AppQueue {
    pub fn new() -> (Self, JobReceiver) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (Self { tx }, rx)
    }

    /// Hands a job to the app threads. False only when every app thread has exited.
    pub fn submit(&self, job: Job) -> bool {
        self.tx.send(job).is_ok()
    }
}
