//! Locking without panics, and a gate for warnings that could repeat without end. A `Mutex` is
//! poisoned only when a thread panicked while holding it; the data our locks guard (queues,
//! flags, caches) stays consistent at every await and return, so a poisoned lock is used as it is
//! rather than spreading the panic to every later request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, recovering the guard if an earlier holder panicked.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How often a warning that a flood could repeat (per request, per accept) may be logged.
pub const WARN_EVERY_SECS: u64 = 10;

/// True at most once every `WARN_EVERY_SECS` for one `last` (a `static` at the warning's site):
/// the first caller of a period wins, the rest stay quiet. The counters in the metrics count
/// every occurrence; the log says that it happens.
pub fn warn_now(last: &AtomicU64) -> bool {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let before = last.load(Ordering::Relaxed);
    now >= before + WARN_EVERY_SECS && last.compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
}
