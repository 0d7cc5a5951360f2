//! `Stop`: how a worker was asked to stop. Shared by the server (which sets it from signals) and
//! every connection and WebSocket pump (which drain on it); a leaf, so `http` need not import
//! `server`.

use std::time::Duration;

/// How a worker was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Running,
    /// Finish in-flight requests (up to the graceful timeout), close idle connections.
    Graceful,
    /// Close everything now.
    Fast,
}

impl Stop {
    pub fn grace(self, graceful_timeout: Duration) -> Duration {
        match self {
            Stop::Fast => Duration::ZERO,
            _ => graceful_timeout,
        }
    }
}
