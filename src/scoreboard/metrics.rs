//! Request metrics in the scoreboard slot (second page), stored by the core with relaxed atomics
//! and read by the supervisor, which sums every worker into one Prometheus exposition
//! (`--metrics-bind`, python/rsgi/metrics.py). No Python, no locks, nothing per request but adds.
//!
//! Layout (u64 words from `METRICS`; python/rsgi/scoreboard.py reads the same offsets):
//!   0..5    responses by status class 1xx..5xx
//!   5       latency sum (µs), request start to last body byte handed to the socket
//!   6..18   latency histogram, one count per bucket of `BUCKETS_MS` (last: +Inf)
//!   18, 19  jobs submitted to the app, jobs taken by a Python thread (depth = difference)
//!   20, 21  queue wait sum (µs) and count: time a request waited for a Python thread
//!   22, 23  request body bytes in, response body bytes out
//!   24, 25  requests in flight (gauge), connections open (gauge)
//!   26, 27  connections accepted, websocket connections open (gauge)
//!   28      websocket connections accepted
//!   29..38  requests refused before the app, by `Refusal` (in its declaration order)
//!   38      requests answered 504 by `--request-timeout` (they did reach the app)

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Slot;

pub const METRICS: usize = 4096;
/// Upper bounds of the latency buckets in milliseconds (Prometheus's usual spread).
pub const BUCKETS_MS: [u64; 11] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

const STATUS: usize = 0;
const LATENCY_SUM: usize = 5;
const LATENCY_BUCKETS: usize = 6;
const SUBMITTED: usize = 18;
const TAKEN: usize = 19;
const WAIT_SUM: usize = 20;
const WAIT_COUNT: usize = 21;
const BYTES_IN: usize = 22;
const BYTES_OUT: usize = 23;
const IN_FLIGHT: usize = 24;
const CONNS_OPEN: usize = 25;
const CONNS_TOTAL: usize = 26;
const WS_OPEN: usize = 27;
const WS_TOTAL: usize = 28;
const REFUSED: usize = 29;
const TIMED_OUT: usize = 38;
const WORDS: usize = 39;

/// Every word's name, in layout order: what `Scoreboard.metrics()` hands Python
/// (python/rsgi/metrics.py turns them into Prometheus metrics by these names).
pub const NAMES: [&str; WORDS] = [
    "responses_1xx",
    "responses_2xx",
    "responses_3xx",
    "responses_4xx",
    "responses_5xx",
    "latency_sum_us",
    "latency_le_5ms",
    "latency_le_10ms",
    "latency_le_25ms",
    "latency_le_50ms",
    "latency_le_100ms",
    "latency_le_250ms",
    "latency_le_500ms",
    "latency_le_1000ms",
    "latency_le_2500ms",
    "latency_le_5000ms",
    "latency_le_10000ms",
    "latency_le_inf",
    "jobs_submitted",
    "jobs_taken",
    "queue_wait_sum_us",
    "queue_waits",
    "request_body_bytes",
    "response_body_bytes",
    "in_flight",
    "connections_open",
    "connections",
    "websockets_open",
    "websockets",
    "refused_malformed",
    "refused_method",
    "refused_body_too_large",
    "refused_head_too_large",
    "refused_transfer_coding",
    "refused_body_timeout",
    "refused_overload",
    "refused_proxy_protocol",
    "refused_rate_limited",
    "timed_out",
];

/// Why a request was answered by the core without reaching the app. Counted, not logged one by
/// one: a flood of bad requests must cost a few atomic adds, not a log line (and the GIL) each.
/// python/rsgi/metrics.py names them in this order (`rsgi_requests_refused_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: malformed framing, target, Host or fields (hyper's parser's refusals too).
    Malformed = 0,
    /// 405: CONNECT.
    Method,
    /// 413: the body is larger than `--max-body-size`.
    BodyTooLarge,
    /// 414 or 431: the request line or the header fields are over their limits.
    HeadTooLarge,
    /// 501: a transfer coding other than chunked.
    TransferCoding,
    /// 408: the body did not arrive within the body timeout.
    BodyTimeout,
    /// 503: `--limit-concurrency` reached.
    Overload,
    /// No answer: a connection closed for a missing, malformed, cut-short or untrusted PROXY
    /// protocol header (`--proxy-protocol`).
    ProxyProtocol,
    /// 429: the client address is over `--limit-rate`.
    RateLimited,
}

impl Refusal {
    /// The refusal behind one of the core's own error statuses.
    pub fn of(status: http::StatusCode) -> Self {
        match status.as_u16() {
            405 => Self::Method,
            413 => Self::BodyTooLarge,
            414 | 431 => Self::HeadTooLarge,
            501 => Self::TransferCoding,
            408 => Self::BodyTimeout,
            503 => Self::Overload,
            429 => Self::RateLimited,
            _ => Self::Malformed,
        }
    }
}

impl Slot {
    fn metric(&self, index: usize) -> Option<&AtomicU64> {
        self.word(METRICS + index * 8)
    }

    fn add(&self, index: usize, n: u64) {
        if let Some(w) = self.metric(index) {
            w.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn sub(&self, index: usize, n: u64) {
        if let Some(w) = self.metric(index) {
            w.fetch_sub(n, Ordering::Relaxed);
        }
    }

    pub fn job_submitted(&self) {
        self.add(SUBMITTED, 1);
    }

    /// A Python thread (or the event loop) picked up a job queued at `queued_at`.
    pub fn job_taken(&self, queued_at: Instant) {
        self.add(TAKEN, 1);
        self.add(WAIT_SUM, queued_at.elapsed().as_micros() as u64);
        self.add(WAIT_COUNT, 1);
    }

    pub fn bytes_in(&self, n: u64) {
        self.add(BYTES_IN, n);
    }

    pub fn connection_opened(&self) {
        self.add(CONNS_OPEN, 1);
        self.add(CONNS_TOTAL, 1);
    }

    pub fn connection_closed(&self) {
        self.sub(CONNS_OPEN, 1);
    }

    /// The open-connections gauge (0 if it reads below zero while an add and a sub race).
    pub(super) fn connections_open(&self) -> u64 {
        self.metric(CONNS_OPEN).map_or(0, |w| (w.load(Ordering::Relaxed) as i64).max(0) as u64)
    }

    pub fn websocket_opened(&self) {
        self.add(WS_OPEN, 1);
        self.add(WS_TOTAL, 1);
    }

    pub fn websocket_closed(&self) {
        self.sub(WS_OPEN, 1);
    }

    pub fn refused(&self, why: Refusal) {
        self.add(REFUSED + why as usize, 1);
    }

    /// `--request-timeout` passed before the app's response started: the core answered 504.
    pub fn timed_out(&self) {
        self.add(TIMED_OUT, 1);
    }

    /// Every metric of this slot by name (gauges may read as huge u64s while a worker's
    /// increments and decrements race: the reader treats them as signed).
    pub(super) fn metrics(&self) -> Vec<(&'static str, u64)> {
        NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| (*name, self.metric(i).map_or(0, |w| w.load(Ordering::Relaxed))))
            .collect()
    }

    fn response_done(&self, status: u16, took: Duration, sent: u64) {
        self.add(STATUS + (status / 100).clamp(1, 5) as usize - 1, 1);
        let ms = took.as_millis() as u64;
        let bucket = BUCKETS_MS.iter().position(|b| ms < *b).unwrap_or(BUCKETS_MS.len());
        self.add(LATENCY_BUCKETS + bucket, 1);
        self.add(LATENCY_SUM, took.as_micros() as u64);
        self.add(BYTES_OUT, sent);
        self.sub(IN_FLIGHT, 1);
    }
}

/// One request in flight, from its arrival until its response body is done (`finish`, called
/// when hyper drops the body). Dropped without a status (the client left before any response
/// existed) it only leaves the in-flight gauge; with one, it counts as answered.
pub struct Measure {
    slot: Slot,
    started: Instant,
    status: u16,
    done: bool,
}

impl Measure {
    pub fn start(slot: Slot) -> Self {
        slot.add(IN_FLIGHT, 1);
        Self { slot, started: Instant::now(), status: 0, done: false }
    }

    pub fn status(&mut self, status: u16) {
        self.status = status;
    }

    pub fn finish(mut self, sent: u64) {
        self.record(sent);
    }

    fn record(&mut self, sent: u64) {
        if !self.done {
            self.done = true;
            if self.status == 0 {
                // Abandoned before any response: not a response, only no longer in flight.
                self.slot.sub(IN_FLIGHT, 1);
            } else {
                self.slot.response_done(self.status, self.started.elapsed(), sent);
            }
        }
    }
}

impl Drop for Measure {
    fn drop(&mut self) {
        self.record(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_layout() {
        for (k, ms) in BUCKETS_MS.iter().enumerate() {
            assert_eq!(NAMES[LATENCY_BUCKETS + k], format!("latency_le_{ms}ms"));
        }
        assert_eq!(NAMES[LATENCY_BUCKETS + BUCKETS_MS.len()], "latency_le_inf");
        assert_eq!(NAMES[SUBMITTED], "jobs_submitted");
        assert_eq!(NAMES[IN_FLIGHT], "in_flight");
        assert_eq!(NAMES[WS_TOTAL], "websockets");
        assert_eq!(NAMES[REFUSED + Refusal::Overload as usize], "refused_overload");
        assert_eq!(NAMES[REFUSED + Refusal::ProxyProtocol as usize], "refused_proxy_protocol");
        assert_eq!(NAMES[REFUSED + Refusal::RateLimited as usize], "refused_rate_limited");
        assert_eq!(REFUSED + Refusal::RateLimited as usize + 1, TIMED_OUT);
        assert_eq!(NAMES[TIMED_OUT], "timed_out");
        assert_eq!(TIMED_OUT + 1, WORDS);
    }

    #[test]
    fn counters_land_in_their_words() {
        let mut page = vec![0u64; super::super::SLOT_SIZE / 8];
        let slot = Slot::new(page.as_mut_ptr() as usize);
        let base = page.as_ptr() as usize;
        // SAFETY: inside `page`, which outlives every use here.
        let word =
            |i: usize| unsafe { AtomicU64::from_ptr((base + METRICS + i * 8) as *mut u64) }.load(Ordering::Relaxed);
        let mut m = Measure::start(slot);
        assert_eq!(word(IN_FLIGHT), 1);
        m.status(404);
        m.finish(10);
        assert_eq!(word(IN_FLIGHT), 0);
        assert_eq!(word(STATUS + 3), 1);
        assert_eq!(word(BYTES_OUT), 10);
        assert_eq!(word(LATENCY_BUCKETS), 1); // well under 5 ms
        drop(Measure::start(slot)); // abandoned: no response counted
        assert_eq!(word(IN_FLIGHT), 0);
        assert_eq!((0..5).map(|i| word(STATUS + i)).sum::<u64>(), 1);
        slot.job_submitted();
        slot.job_taken(Instant::now());
        assert_eq!((word(SUBMITTED), word(TAKEN), word(WAIT_COUNT)), (1, 1, 1));
        drop(page);
    }
}
