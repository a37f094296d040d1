//! The one lock-poisoning policy: [`lock`], [`read()`] and [`write()`] recover a poisoned lock's
//! guard.
//!
//! A std lock is *poisoned* when a thread panicked while holding it. palisade never runs user
//! code (classifiers, key functions, listeners, hooks) inside a critical section: its critical
//! sections only move palisade's own state from one consistent value to the next and cannot
//! panic halfway. So a poisoned lock's state is consistent, and the right answer is to go on
//! with it, not to spread the panic to every later caller. Every palisade crate takes its
//! locks through these functions.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use palisade_core::sync::lock;
//!
//! let counter = Arc::new(Mutex::new(0));
//! let c = counter.clone();
//! // A panic while the lock is held poisons it …
//! let _ = std::thread::spawn(move || {
//!     let _guard = c.lock();
//!     panic!("boom");
//! })
//! .join();
//! assert!(counter.is_poisoned());
//! // … and palisade carries on with the (consistent) state.
//! *lock(&counter) += 1;
//! assert_eq!(*lock(&counter), 1);
//! ```

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, recovering the guard if the lock is poisoned (see the
/// [module docs](self)).
#[inline]
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks `lock`, recovering the guard if the lock is poisoned (see the
/// [module docs](self)).
#[inline]
pub fn read<T: ?Sized>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks `lock`, recovering the guard if the lock is poisoned (see the
/// [module docs](self)).
#[inline]
pub fn write<T: ?Sized>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn poison<T: Send + Sync + 'static>(value: &Arc<T>, hold: impl FnOnce(&T) + Send + 'static) {
        let v = value.clone();
        let joined = std::thread::spawn(move || hold(&v)).join();
        assert!(joined.is_err(), "the holder panicked");
    }

    #[test]
    fn lock_recovers_a_poisoned_mutex() {
        let m = Arc::new(Mutex::new(vec![1]));
        *lock(&m) = vec![1, 2];
        poison(&m, |m| {
            let _g = m.lock();
            panic!("poison");
        });
        assert!(m.is_poisoned());
        lock(&m).push(3);
        assert_eq!(*lock(&m), vec![1, 2, 3]);
    }

    #[test]
    fn read_and_write_recover_a_poisoned_rwlock() {
        let l = Arc::new(RwLock::new(1));
        poison(&l, |l| {
            let _g = l.write();
            panic!("poison");
        });
        assert!(l.is_poisoned());
        *write(&l) += 1;
        assert_eq!(*read(&l), 2);
        // Several readers at once, as an unpoisoned lock allows.
        let (a, b) = (read(&l), read(&l));
        assert_eq!(*a + *b, 4);
    }
}
