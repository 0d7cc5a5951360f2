//! `--request-timeout`: the core answers 504 for a request whose response has not started within
//! the limit, counted from the request's hand-over to the app, so the wait in the app's queue
//! counts too (the client waits through both, as it would behind a proxy's read timeout). Only
//! the wait for the reply slot is timed: once the app has handed over its status and headers, the
//! body (streamed or not) is never cut. Never touches Python: the bridges learn of it through
//! `Closed::expire` and the reply slot closing. Without the setting nothing here runs.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http::{Method, Response, StatusCode, Uri};
use tokio::sync::oneshot;

use super::app::{AppResponse, Closed};
use super::body::ResponseBody;
use super::response;
use crate::scoreboard::Slot;

/// One request's limit, and what its log line names if it passes. Built only when
/// `--request-timeout` is set, so without it a request costs nothing more than a branch.
pub struct Deadline {
    limit: Duration,
    method: Method,
    uri: Uri,
}

impl Deadline {
    pub fn new(limit: Duration, method: &Method, uri: &Uri) -> Self {
        Self { limit, method: method.clone(), uri: uri.clone() }
    }

    /// Waits for the app's answer: without a deadline (no `--request-timeout`) as long as it
    /// takes, with one for at most the limit (one tokio timer). Past it the request is
    /// `closed.expire()`d (the ASGI task is cancelled), counted and logged, and the 504 comes
    /// back for the caller to send; the caller's dropping `answer` closes the reply slot, so a
    /// job still queued is skipped by the bridges and a late answer goes nowhere.
    pub async fn wait(
        deadline: Option<Self>,
        answer: oneshot::Receiver<AppResponse>,
        closed: &Closed,
        slot: Slot,
    ) -> Result<Result<AppResponse, oneshot::error::RecvError>, Response<ResponseBody>> {
        let Some(deadline) = deadline else {
            return Ok(answer.await);
        };
        // tokio polls the answer before the timer: an answer that is ready wins a tie.
        let Ok(answered) = tokio::time::timeout(deadline.limit, answer).await else {
            closed.expire();
            slot.timed_out();
            deadline.warn();
            // The request was read completely: the connection stays usable.
            return Err(response::plain(StatusCode::GATEWAY_TIMEOUT, false));
        };
        Ok(answered)
    }

    /// A stuck app (or a stuck database) makes every request time out: at most one line every
    /// 10 s per worker, as for `--limit-concurrency` (`rsgi_requests_timed_out_total` counts
    /// them all, and the access log has each 504).
    fn warn(&self) {
        static LAST: AtomicU64 = AtomicU64::new(0);
        if crate::sync::warn_now(&LAST) {
            log::warn!(
                "--request-timeout {}s passed without a response to {} {}: answered 504 (counted in \
                 rsgi_requests_timed_out_total; at most one such line every 10 s)",
                self.limit.as_secs_f64(),
                self.method,
                cut(self.uri.path()),
            );
        }
    }
}

/// At most 80 characters of a path for the log line, cut on a character boundary. (No query:
/// it may carry tokens.)
fn cut(path: &str) -> String {
    match path.char_indices().nth(80) {
        Some((at, _)) => format!("{}...", path.get(..at).unwrap_or_default()),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn long_paths_are_cut_on_a_character_boundary() {
        assert_eq!(cut("/a"), "/a");
        let long = format!("/{}", "é".repeat(100));
        let short = cut(&long);
        assert!(short.ends_with("..."));
        assert_eq!(short.chars().count(), 83);
    }
}
