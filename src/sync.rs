//! Locking without panics. A `Mutex` is poisoned only when a thread panicked while holding it;
//! the data our locks guard (queues, flags, caches) stays consistent at every await and return,
//! so a poisoned lock is used as it is rather than spreading the panic to every later request.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, recovering the guard if an earlier holder panicked.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
