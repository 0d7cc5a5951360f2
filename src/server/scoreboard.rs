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

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

pub const SLOT_SIZE: usize = 4096;
const HEADER: usize = 64;
const ENTRY: usize = 128;
pub const MAX_THREADS: usize = (SLOT_SIZE - HEADER) / ENTRY;
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

    fn word(&self, offset: usize) -> Option<&AtomicU64> {
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

    /// Thread `thread` started handling `line` (e.g. "GET /path").
    pub fn busy(&self, thread: usize, line: &str) {
        let thread = thread.min(MAX_THREADS - 1);
        let entry = HEADER + thread * ENTRY;
        let Some(since) = self.word(entry) else { return };
        let bytes = line.as_bytes();
        let n = bytes.len().min(LINE);
        for (i, b) in bytes[..n].iter().enumerate() {
            // SAFETY: inside this thread's entry; single writer (this thread).
            unsafe { AtomicU8::from_ptr((self.base + entry + 9 + i) as *mut u8) }.store(*b, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { AtomicU8::from_ptr((self.base + entry + 8) as *mut u8) }.store(n as u8, Ordering::Relaxed);
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
        self.busy(0, line);
    }
}
