//! Pushing chunks of a streamed response from a Python thread to tokio, with backpressure:
//! the GIL is released only when the bounded channel is full (a slow client).

use bytes::Bytes;
use pyo3::Python;
use tokio::sync::mpsc;

use crate::http::app::AppResponse;
use crate::http::body::Chunk;
use http::StatusCode;
use tokio::sync::oneshot;

/// Chunks buffered per streamed response before the Python thread waits for the client.
pub const STREAM_BUFFER: usize = 16;

/// Sends one chunk; returns false when the client has gone away (the app should stop).
pub fn push(py: Python<'_>, tx: &mpsc::Sender<Chunk>, chunk: Bytes) -> bool {
    match tx.try_send(Ok(chunk)) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Closed(_)) => false,
        Err(mpsc::error::TrySendError::Full(item)) => py.detach(|| tx.blocking_send(item).is_ok()),
    }
}

/// Where a response stands when its app fails, and the one policy both bridges apply: a 500
/// while nothing has been sent; once the headers are out, the connection is aborted, so a client
/// can never mistake a cut-off body for a complete one.
pub enum Progress {
    Pending(oneshot::Sender<AppResponse>),
    Streaming(mpsc::Sender<Chunk>),
}

impl Progress {
    /// From a Python thread (WSGI): may wait for room in the stream, with the GIL released.
    pub fn fail(self, py: Python<'_>, why: &str) {
        match self {
            Self::Pending(reply) => {
                let _ = reply.send(AppResponse::error(StatusCode::INTERNAL_SERVER_ERROR));
            }
            Self::Streaming(tx) => abort(py, &tx, why),
        }
    }

    /// From the event loop (ASGI), which must never block: a tokio task delivers the abort.
    pub fn fail_from_loop(self, runtime: &tokio::runtime::Handle, why: &'static str) {
        match self {
            Self::Pending(reply) => {
                let _ = reply.send(AppResponse::error(StatusCode::INTERNAL_SERVER_ERROR));
            }
            Self::Streaming(tx) => {
                runtime.spawn(async move {
                    let _ = tx.send(Err(std::io::Error::other(why))).await;
                });
            }
        }
    }
}

/// Ends a streamed response with an error, so hyper aborts the connection instead of closing
/// the body as if it were complete (a clean end would tell the client it got everything).
pub fn abort(py: Python<'_>, tx: &mpsc::Sender<Chunk>, why: &str) {
    let err = Err(std::io::Error::other(why.to_owned()));
    if let Err(mpsc::error::TrySendError::Full(err)) = tx.try_send(err) {
        py.detach(|| {
            let _ = tx.blocking_send(err);
        });
    }
}
