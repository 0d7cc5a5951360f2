//! One worker's server: the tokio runtime, the accept loops over the inherited listeners, the
//! connection cap, and the drain on stop. Never touches Python; requests leave via `AppQueue`.

pub mod listener;
pub mod shutdown;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::sync::{watch, Semaphore};
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::http::access_log::AccessLog;
use crate::http::app::AppQueue;
use crate::http::conn;
use crate::http::rate_limit::RateLimiter;
use crate::http::request::ConnInfo;
use crate::http::service::Shared;
use crate::http::static_files::StaticFiles;
use crate::scoreboard::Slot;
use listener::Listener;
use shutdown::Stop;

/// A running worker server. Dropping `done` (inside the serve task) tells app threads to exit.
pub struct Server {
    runtime: Option<Runtime>,
    /// Kept apart from `runtime` so it can be handed out after a shutdown (spawning then fails quietly).
    handle: tokio::runtime::Handle,
    stop: watch::Sender<Stop>,
    done: crossbeam_channel::Receiver<()>,
    reopen: watch::Receiver<u64>,
    /// `Shared::leaving`.
    leaving: Arc<AtomicBool>,
    /// `Shared::rate_limit`.
    rate_limit: Option<Arc<RateLimiter>>,
}

impl Server {
    /// Builds the runtime and starts accepting on `fds`. Requests go to `queue`.
    /// `slot` is this worker's scoreboard slot (counters for the supervisor; may be empty).
    pub fn start(cfg: ServerConfig, fds: &[RawFd], queue: AppQueue, slot: Slot) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.runtime_threads.max(1))
            .thread_name("rsgi-io")
            .enable_all()
            .build()?;
        // Everything that can fail is prepared here, where the error still reaches the caller.
        let prepared = Prepared {
            statics: StaticFiles::new(&cfg.static_mounts, cfg.static_max_age)?,
            builders: Arc::new(conn::Builders::new(&cfg)?),
            slot,
            leaving: Arc::default(),
            rate_limit: cfg.limit_rate.as_ref().map(|s| Arc::new(RateLimiter::new(s))),
            cfg,
        };
        let (leaving, rate_limit) = (prepared.leaving.clone(), prepared.rate_limit.clone());
        let (listeners, signals) = {
            let _enter = runtime.enter();
            let listeners = fds.iter().map(|fd| Listener::from_fd(*fd)).collect::<std::io::Result<Vec<_>>>()?;
            (listeners, shutdown::Signals::install()?)
        };
        let (stop, stop_rx) = watch::channel(Stop::Running);
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let (reopen_tx, reopen) = watch::channel(0u64);
        runtime.spawn(signals.forward(stop.clone(), reopen_tx));
        let log_reopen = reopen.clone();
        runtime.spawn(async move {
            serve(prepared, listeners, queue.clone(), stop_rx, log_reopen).await;
            queue.stopped();
            drop(done_tx);
        });
        Ok(Self { handle: runtime.handle().clone(), runtime: Some(runtime), stop, done, reopen, leaving, rate_limit })
    }

    /// Changes on each SIGUSR1: the access log reopens itself; the bridge reopens Python's
    /// log files when it sees a change.
    pub fn reopen_events(&self) -> watch::Receiver<u64> {
        self.reopen.clone()
    }

    /// `--drain-delay`: from now on the health path answers 503 and every response closes its
    /// connection, while the server keeps accepting and serving until it is stopped.
    pub fn unready(&self) {
        self.leaving.store(true, Ordering::Relaxed);
    }

    /// Asks the server to stop (as SIGTERM would, or SIGQUIT when `fast`).
    pub fn stop(&self, fast: bool) {
        let _ = self.stop.send(if fast { Stop::Fast } else { Stop::Graceful });
    }

    /// Disconnected once every connection has been drained (or cut off after the grace period).
    pub fn done(&self) -> &crossbeam_channel::Receiver<()> {
        &self.done
    }

    /// Client addresses `--limit-rate` tracks now (0 when off): its memory, for tests.
    pub fn rate_limited_clients(&self) -> usize {
        self.rate_limit.as_ref().map_or(0, |l| l.tracked())
    }

    /// A handle for spawning on the runtime from other threads (the ASGI loop's send tasks).
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }

    /// Stops the runtime; call after the app threads have returned.
    pub fn shutdown(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
        }
    }
}

/// The parts of a worker's server built before its runtime starts serving.
struct Prepared {
    cfg: ServerConfig,
    slot: Slot,
    statics: StaticFiles,
    builders: Arc<conn::Builders>,
    leaving: Arc<AtomicBool>,
    rate_limit: Option<Arc<RateLimiter>>,
}

async fn serve(
    prepared: Prepared,
    listeners: Vec<Listener>,
    queue: AppQueue,
    stop: watch::Receiver<Stop>,
    mut reopen: watch::Receiver<u64>,
) {
    let Prepared { cfg, slot, statics, builders: builder, leaving, rate_limit } = prepared;
    // Connection cap: a permit is taken before `accept`, so past the cap new connections wait
    // in the kernel's listen backlog (where another worker may pick them up) instead of here.
    let permits = Arc::new(Semaphore::new(cfg.max_connections));
    let tracker = TaskTracker::new();
    let access_log = match &cfg.access_log {
        Some(target) => match AccessLog::open(target, &cfg.access_log_format) {
            Ok(log) => Some(Arc::new(log)),
            Err(e) => {
                log::error!("could not open the access log {target:?}: {e}");
                None
            }
        },
        None => None,
    };
    if let Some(log) = access_log.clone() {
        tokio::spawn(async move {
            while reopen.changed().await.is_ok() {
                log.reopen();
            }
        });
    }
    let shared = Arc::new(Shared {
        cfg,
        queue,
        leaving,
        stop: stop.clone(),
        tasks: tracker.clone(),
        access_log,
        in_flight: Default::default(),
        statics,
        slot,
        rate_limit,
    });
    // Once a stop begins every response says `Connection: close`, so clients move on cleanly.
    // From then on siblings stop counting on this worker to take connections (`wait_for_share`).
    let (flag, mut watch_stop) = (shared.clone(), stop.clone());
    shared.slot.set_accepting(true);
    tokio::spawn(async move {
        let _ = watch_stop.wait_for(|s| *s != Stop::Running).await;
        flag.slot.set_accepting(false);
        flag.leaving.store(true, Ordering::Relaxed);
    });
    for listener in listeners {
        let (shared, builder, permits, stop, conns) =
            (shared.clone(), builder.clone(), permits.clone(), stop.clone(), tracker.clone());
        tracker.spawn(accept_loop(listener, shared, builder, permits, stop, conns));
    }
    tracker.close();
    tracker.wait().await;
}

/// The longest a worker holding more than its share of connections leaves new ones to its
/// siblings before it takes one anyway (a sibling may be stalled, or at its connection cap).
const SHARE_WAIT: Duration = Duration::from_millis(20);
/// Connections over the mean at which a worker leaves new ones to its siblings. An HTTP/1
/// keep-alive connection is handed back one later (`http::service::SHED_SLACK`), so the two
/// never fight over the same connection.
const ACCEPT_SLACK: u64 = 1;

/// Balance across workers. Every worker's accept wakes on the same listening socket and a
/// keep-alive connection stays with the worker that took it, so whichever worker is on a CPU
/// when a burst arrives would keep most of it: 100 connections were seen to sit 62/28/10/0 on
/// four workers, and the busiest worker's queue set the tail latency. A worker holding more
/// than one connection over the mean of the accepting workers waits, in 1 ms steps and at
/// most `SHARE_WAIT`, while its siblings (woken by the same readiness) take what arrives.
/// A burst is not the only way in: connections close unevenly, and a worker on a busy CPU can
/// miss its turn, so an HTTP/1 worker more than two over the mean also hands keep-alive
/// connections back, one `Connection: close` per response (`http::service::SHED_SLACK`); the client
/// reconnects and one of the others takes it.
/// With one worker, or without a scoreboard, this costs nothing. (nginx's accept mutex and
/// `EPOLLEXCLUSIVE` address the same problem; `SO_REUSEPORT` would spread connections by hash,
/// but drops the ones queued on a worker's socket when that worker exits.)
async fn wait_for_share(slot: Slot) {
    let until = tokio::time::Instant::now() + SHARE_WAIT;
    while slot.over_share(ACCEPT_SLACK) && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn accept_loop(
    listener: Listener,
    shared: Arc<Shared>,
    builder: Arc<conn::Builders>,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<Stop>,
    conns: TaskTracker,
) {
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return, // never closed: the semaphore lives as long as this loop
            },
            _ = stop.wait_for(|s| *s != Stop::Running) => return,
        };
        let accepted = tokio::select! {
            a = async {
                wait_for_share(shared.slot).await;
                listener.accept().await
            } => a,
            _ = stop.wait_for(|s| *s != Stop::Running) => return,
        };
        match accepted {
            Ok((stream, remote, local)) => {
                let info = ConnInfo { remote, local, scheme: "http", place: Some(Arc::new(permit)) };
                let slot = shared.slot;
                slot.connection_opened();
                let fut = conn::serve(stream, info, shared.clone(), builder.clone(), stop.clone());
                // The permit went into `info`: given back when the connection ends, or when its
                // websocket does (`ConnInfo::place`).
                conns.spawn(async move {
                    fut.await;
                    slot.connection_closed();
                });
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning on the error, and say
                // so once per period, not 20 times a second while the limit lasts.
                static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                if crate::sync::warn_now(&LAST) {
                    log::warn!(
                        "accept failed: {e} (new connections wait in the backlog; at most one such line every {} s)",
                        crate::sync::WARN_EVERY_SECS
                    );
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
