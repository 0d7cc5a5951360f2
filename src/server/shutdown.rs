//! Stop signals for one worker: SIGTERM/SIGINT start a graceful drain, SIGQUIT a fast stop.
//! Handled by tokio so no Python thread has to wake up for them.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

pub use crate::stop::Stop;

/// The worker's signals, registered synchronously when the server starts (inside the runtime),
/// so none can arrive between the worker starting and the handlers being in place.
pub struct Signals {
    term: Signal,
    int: Signal,
    quit: Signal,
    usr1: Signal,
}

impl Signals {
    /// Must be called within the tokio runtime. Replaces the process's handlers for these
    /// signals (the Python worker sets them to SIG_IGN/SIG_DFL beforehand).
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }

    /// Forwards stop signals into `stop` (a QUIT during a graceful stop makes it fast, as in
    /// gunicorn) and counts SIGUSR1s ("reopen your log files") in `reopen`. Returns when `stop`
    /// has no receivers left.
    pub async fn forward(mut self, stop: watch::Sender<Stop>, reopen: watch::Sender<u64>) {
        loop {
            let next = tokio::select! {
                _ = self.term.recv() => Stop::Graceful,
                _ = self.int.recv() => Stop::Graceful,
                _ = self.quit.recv() => Stop::Fast,
                _ = self.usr1.recv() => {
                    reopen.send_modify(|n| *n += 1);
                    continue;
                }
                _ = stop.closed() => return,
            };
            if *stop.borrow() == Stop::Fast || (*stop.borrow() == Stop::Graceful && next == Stop::Graceful) {
                continue;
            }
            log::info!("worker stopping ({next:?})");
            let _ = stop.send(next);
        }
    }
}
