//! The scoreboard: a few counters per worker in memory shared with the supervisor (an anonymous
//! shared mapping the supervisor creates before forking, `Scoreboard`). Workers only store into
//! it; the supervisor reads it to recycle workers after `--max-requests`, to kill one stuck in a
//! request past `--timeout`, and for the metrics. Nothing locks, and a request costs the worker
//! a few atomic adds. The layout is written only here: Python gets slot numbers, handles and
//! named readings, never an address or an offset.
//!
//! The mapping starts with one page for the whole board:
//!   0  slots handed out so far (a high-water mark: workers look at siblings below it)
//! then one slot per worker. Layout of a slot (little-endian u64s, then fixed-size thread entries):
//!   0  requests completed
//!   8  ready: 1 once the worker's core serves (its app imported, its listeners taken)
//!   16 accepting: 1 while the worker's core accepts connections (0 once a stop begins)
//!   64 + 128·i  thread i: busy-since (CLOCK_MONOTONIC ms, 0 = idle), then the request line
//!               (1 length byte + up to 119 bytes), informational only.
//!   4096..      request metrics (see `metrics.rs`)

pub mod metrics;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;

pub const SLOT_SIZE: usize = 8192;
/// The board's own page, before slot 0.
const BOARD_HEADER: usize = 4096;
const READY: usize = 8;
const ACCEPTING: usize = 16;
const HEADER: usize = 64;
const ENTRY: usize = 128;
/// Thread entries fill the first page; the second holds the request metrics (`metrics.rs`).
pub const MAX_THREADS: usize = (metrics::METRICS - HEADER) / ENTRY;
const LINE: usize = ENTRY - 8 - 1;

/// One worker's slot. Cheap to copy; every method is a no-op when there is no scoreboard.
#[derive(Clone, Copy)]
pub struct Slot {
    base: usize,
    /// The board this slot is part of (0: none, or a slot on its own).
    board: usize,
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
        Self { base, board: 0 }
    }

    pub(super) fn word(&self, offset: usize) -> Option<&AtomicU64> {
        if self.base == 0 || offset + 8 > SLOT_SIZE {
            return None;
        }
        // SAFETY: `base` points at a live, 8-byte aligned SLOT_SIZE region of a shared mapping
        // that is never unmapped while the worker runs; offsets stay inside the slot.
        Some(unsafe { AtomicU64::from_ptr((self.base + offset) as *mut u64) })
    }

    /// The worker's core serves: a death from now on is not a failure to boot.
    pub fn mark_ready(&self) {
        if let Some(w) = self.word(READY) {
            w.store(1, Ordering::Release);
        }
    }

    /// Whether the worker's core takes new connections (siblings balance against those that do).
    pub fn set_accepting(&self, accepting: bool) {
        if let Some(w) = self.word(ACCEPTING) {
            w.store(u64::from(accepting), Ordering::Release);
        }
    }

    /// Connections open in this worker, in all accepting workers of the board (this one
    /// included), and how many those are. None without a board.
    pub fn connection_share(&self) -> Option<(u64, u64, u64)> {
        if self.board == 0 {
            return None;
        }
        // SAFETY: `board` is the start of the live mapping this slot belongs to; word 0 of its
        // header page is the high-water mark, stored by the supervisor.
        let handed_out = unsafe { AtomicU64::from_ptr(self.board as *mut u64) }.load(Ordering::Acquire) as usize;
        let (mut total, mut accepting) = (0u64, 0u64);
        for i in 0..handed_out {
            let sibling = Slot { base: self.board + BOARD_HEADER + i * SLOT_SIZE, board: self.board };
            if sibling.load(ACCEPTING) != 0 {
                total += sibling.connections_open();
                accepting += 1;
            }
        }
        Some((self.connections_open(), total, accepting))
    }

    /// Whether this worker holds more than `slack` connections over the mean of the accepting
    /// workers (never with one worker, or without a board).
    pub fn over_share(&self, slack: u64) -> bool {
        self.connection_share()
            .is_some_and(|(mine, total, workers)| workers > 1 && mine * workers > total + slack * workers)
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

/// An anonymous shared mapping: `slots` slots of `SLOT_SIZE` bytes, zero-filled, unmapped when
/// the last handle goes.
struct Mapping {
    base: usize,
    slots: usize,
}

impl Mapping {
    fn len(slots: usize) -> Option<usize> {
        slots.checked_mul(SLOT_SIZE)?.checked_add(BOARD_HEADER)
    }

    fn new(slots: usize) -> std::io::Result<Self> {
        let len = Self::len(slots).ok_or(std::io::ErrorKind::InvalidInput)?;
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { base: base as usize, slots })
    }

    fn slot(&self, i: usize) -> PyResult<Slot> {
        if i >= self.slots {
            return Err(PyIndexError::new_err(format!("no scoreboard slot {i}")));
        }
        Ok(Slot { base: self.base + BOARD_HEADER + i * SLOT_SIZE, board: self.base })
    }

    /// Slot `i` is handed out: siblings look at slots up to it from now on.
    fn handing_out(&self, i: usize) {
        // SAFETY: word 0 of the board's header page of this live mapping.
        unsafe { AtomicU64::from_ptr(self.base as *mut u64) }.fetch_max(i as u64 + 1, Ordering::AcqRel);
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once, when no handle can reach it.
        unsafe { libc::munmap(self.base as *mut libc::c_void, Self::len(self.slots).unwrap_or(0)) };
    }
}

/// The supervisor's scoreboard (`rsgi._rsgi.Scoreboard`): made before the first fork, so every
/// worker writes into the pages the supervisor reads.
#[pyclass(frozen, module = "rsgi._rsgi")]
pub struct Scoreboard {
    map: Arc<Mapping>,
    free: Mutex<Vec<usize>>,
}

#[pymethods]
impl Scoreboard {
    #[new]
    #[pyo3(signature = (slots = 256))]
    fn new(slots: usize) -> PyResult<Self> {
        let map = Mapping::new(slots).map_err(crate::errors::Error::from)?;
        Ok(Self { map: Arc::new(map), free: Mutex::new((0..slots).rev().collect()) })
    }

    /// A zeroed slot number for a new worker, or None when all are in use (the worker then runs
    /// without one: no recycling by request count, no timeout, no metrics).
    fn take(&self) -> Option<usize> {
        let i = crate::sync::lock(&self.free).pop()?;
        if let Ok(slot) = self.map.slot(i) {
            slot.clear();
        }
        self.map.handing_out(i);
        Some(i)
    }

    /// The worker in slot `i` is gone (its readings taken): zeroed, so siblings stop counting it.
    fn give_back(&self, i: usize) {
        if let Ok(slot) = self.map.slot(i) {
            slot.clear();
            crate::sync::lock(&self.free).push(i);
        }
    }

    /// The handle a worker passes to `Worker(..., slot=)`.
    fn slot(&self, i: usize) -> PyResult<SlotHandle> {
        self.map.slot(i)?;
        Ok(SlotHandle { map: self.map.clone(), index: i })
    }

    /// Whether the worker in slot `i` got as far as serving (see `Slot::mark_ready`).
    fn ready(&self, i: usize) -> PyResult<bool> {
        Ok(self.map.slot(i)?.load(READY) != 0)
    }

    /// Requests the worker in slot `i` has completed.
    fn requests(&self, i: usize) -> PyResult<u64> {
        Ok(self.map.slot(i)?.requests())
    }

    /// The request metrics of slot `i`, by name (`metrics::NAMES`).
    fn metrics(&self, i: usize) -> PyResult<Vec<(&'static str, u64)>> {
        Ok(self.map.slot(i)?.metrics())
    }

    /// The names `metrics()` uses, in layout order (latency buckets from the smallest).
    #[staticmethod]
    fn names() -> Vec<&'static str> {
        metrics::NAMES.to_vec()
    }

    /// (monotonic seconds since which a thread has been busy, its request line) for each busy
    /// thread among the first `threads` of slot `i`.
    fn busy(&self, i: usize, threads: usize) -> PyResult<Vec<(f64, String)>> {
        Ok(self.map.slot(i)?.busy_threads(threads))
    }
}

/// One slot of a `Scoreboard`, handed to a worker; it keeps the mapping alive.
#[pyclass(frozen, module = "rsgi._rsgi")]
pub struct SlotHandle {
    map: Arc<Mapping>,
    index: usize,
}

impl SlotHandle {
    pub fn slot(&self) -> Slot {
        self.map.slot(self.index).unwrap_or(Slot::new(0))
    }
}

impl Slot {
    fn clear(&self) {
        for offset in (0..SLOT_SIZE).step_by(8) {
            if let Some(w) = self.word(offset) {
                w.store(0, Ordering::Relaxed);
            }
        }
    }

    fn load(&self, offset: usize) -> u64 {
        self.word(offset).map_or(0, |w| w.load(Ordering::Acquire))
    }

    fn requests(&self) -> u64 {
        self.load(0)
    }

    fn busy_threads(&self, threads: usize) -> Vec<(f64, String)> {
        let mut out = Vec::new();
        for t in 0..threads.min(MAX_THREADS) {
            let entry = HEADER + t * ENTRY;
            let since = self.load(entry);
            if since == 0 {
                continue;
            }
            // SAFETY: inside thread t's entry of this live slot (the writer stores the length
            // byte last; a torn read only garbles an informational line).
            let byte = |at: usize| unsafe { AtomicU8::from_ptr((self.base + at) as *mut u8) }.load(Ordering::Relaxed);
            let len = usize::from(byte(entry + 8)).min(LINE);
            let line: String = (0..len).map(|k| char::from(byte(entry + 9 + k))).collect();
            out.push((since as f64 / 1000.0, line));
        }
        out
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

#[cfg(test)]
mod board_tests {
    use super::*;

    #[test]
    fn a_worker_s_stores_are_the_supervisor_s_readings() {
        let board = Scoreboard::new(4).unwrap();
        let i = board.take().unwrap();
        let handle = board.slot(i).unwrap();
        let slot = handle.slot();
        assert!(!board.ready(i).unwrap());
        slot.mark_ready();
        assert!(board.ready(i).unwrap());
        slot.request_done();
        slot.busy(1, format_args!("GET /stuck"));
        slot.refused(metrics::Refusal::Overload);
        assert_eq!(board.requests(i).unwrap(), 1);
        let busy = board.busy(i, 4).unwrap();
        assert_eq!(busy.len(), 1);
        assert_eq!(busy[0].1, "GET /stuck");
        let readings = board.metrics(i).unwrap();
        assert!(readings.contains(&("refused_overload", 1)));
        assert!(board.requests(4).is_err(), "no slot 4 in a board of 4");
        board.give_back(i);
        let again = board.take().unwrap();
        assert_eq!(board.requests(again).unwrap(), 0, "a slot taken again is zeroed");
    }

    #[test]
    fn a_worker_sees_its_accepting_siblings_connections() {
        let board = Scoreboard::new(8).unwrap();
        let slots: Vec<Slot> = (0..3).map(|_| board.slot(board.take().unwrap()).unwrap().slot()).collect();
        assert_eq!(Slot::new(0).connection_share(), None, "no board, no siblings");
        assert_eq!(slots[0].connection_share(), Some((0, 0, 0)), "nobody accepts yet");
        for s in &slots {
            s.set_accepting(true);
        }
        for _ in 0..5 {
            slots[0].connection_opened();
        }
        slots[1].connection_opened();
        slots[2].connection_opened(); // a draining worker's connections don't count
        slots[2].set_accepting(false);
        assert_eq!(slots[0].connection_share(), Some((5, 6, 2)));
        assert_eq!(slots[1].connection_share(), Some((1, 6, 2)));
        // Mean 3: five is two over it, one is under.
        assert!(slots[0].over_share(1) && !slots[0].over_share(2), "5·2 > 6 + 1·2, not > 6 + 2·2");
        assert!(!slots[1].over_share(0));
        board.give_back(1); // gone: zeroed, so no longer accepting
        assert_eq!(slots[0].connection_share(), Some((5, 5, 1)));
        assert!(!slots[0].over_share(0), "alone, a worker is never over its share");
    }
}
