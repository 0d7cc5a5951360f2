//! The scoreboard: a few counters per worker in memory shared with the supervisor (an anonymous
//! shared mapping the supervisor creates before forking). Workers only store into it; the
//! supervisor reads it to recycle workers after `--max-requests` and to kill one stuck in a
//! request past `--timeout`. No locks and no Python: plain atomics.
//!
//! Layout of one worker's slot (little-endian u64s, then fixed-size thread entries):
//!   0  requests completed
//!   8  reserved
//!   64 + 128·i  thread i: busy-since (CLOCK_MONOTONIC ms, 0 = idle), then the request line
//!               (1 length byte + up to 119 bytes), informational only.
//!   4096..      request metrics (see `metrics.rs`)

pub mod metrics;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

pub const SLOT_SIZE: usize = 8192;
const HEADER: usize = 64;
const ENTRY: usize = 128;
/// Thread entries fill the first page; the second holds the request metrics (`metrics.rs`).
pub const MAX_THREADS: usize = (metrics::METRICS - HEADER) / ENTRY;
const LINE: usize = ENTRY - 8 - 1;

/// One worker's slot. Cheap to copy; every method is a no-op when there is no scoreboard.
#[derive(Clone, Copy)]
pub struct Slot {
    base: usize,
}

/// Milliseconds on CLOCK_MONOTONIC, the clock the supervisor reads too (`time.monotonic()`).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the valid timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

impl Slot {
    /// `base` is the address of this worker's slot inside the supervisor's shared mapping
    /// (0: no scoreboard). The mapping outlives the worker process.
    pub fn new(base: usize) -> Self {
        Self { base }
    }

    pub(super) fn word(&self, offset: usize) -> Option<&AtomicU64> {
        if self.base == 0 {
            return None;
        }
        // SAFETY: `base` points at a live, 8-byte aligned SLOT_SIZE region of a shared mapping
        // that is never unmapped while the worker runs; offsets stay inside the slot.
        Some(unsafe { AtomicU64::from_ptr((self.base + offset) as *mut u64) })
    }

    pub fn request_done(&self) {
        if let Some(w) = self.word(0) {
            w.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Thread `thread` started handling `line` (e.g. "GET /path"). Formats into a stack buffer,
    /// and not at all without a scoreboard: this runs once per request on the Python thread.
    pub fn busy(&self, thread: usize, line: std::fmt::Arguments<'_>) {
        let thread = thread.min(MAX_THREADS - 1);
        let entry = HEADER + thread * ENTRY;
        let Some(since) = self.word(entry) else { return };
        let mut buf = Truncating { buf: [0; LINE], len: 0 };
        let _ = std::fmt::Write::write_fmt(&mut buf, line);
        for (i, b) in buf.buf.iter().take(buf.len).enumerate() {
            // SAFETY: inside this thread's entry; single writer (this thread).
            unsafe { AtomicU8::from_ptr((self.base + entry + 9 + i) as *mut u8) }.store(*b, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { AtomicU8::from_ptr((self.base + entry + 8) as *mut u8) }.store(buf.len as u8, Ordering::Relaxed);
        since.store(now_ms().max(1), Ordering::Release);
    }

    /// Thread `thread` is idle again.
    pub fn idle(&self, thread: usize) {
        if let Some(since) = self.word(HEADER + thread.min(MAX_THREADS - 1) * ENTRY) {
            since.store(0, Ordering::Release);
        }
    }

    /// For an event loop: "alive and not blocked as of now" (a blocked loop stops refreshing it).
    pub fn heartbeat(&self, line: &str) {
        self.busy(0, format_args!("{line}"));
    }
}

/// A fixed buffer that keeps the first `LINE` bytes written to it and drops the rest.
struct Truncating {
    buf: [u8; LINE],
    len: usize,
}

impl std::fmt::Write for Truncating {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(LINE - self.len);
        if let (Some(to), Some(from)) = (self.buf.get_mut(self.len..self.len + n), s.as_bytes().get(..n)) {
            to.copy_from_slice(from);
            self.len += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_truncated_to_the_entry() {
        let mut t = Truncating { buf: [0; LINE], len: 0 };
        let long = "x".repeat(300);
        std::fmt::Write::write_fmt(&mut t, format_args!("GET /{long}")).unwrap();
        assert_eq!(t.len, LINE);
        assert_eq!(&t.buf[..5], b"GET /");
    }

    #[test]
    fn a_slot_without_a_scoreboard_does_nothing() {
        let slot = Slot::new(0);
        slot.busy(0, format_args!("GET /"));
        slot.idle(0);
        slot.request_done();
    }
}
