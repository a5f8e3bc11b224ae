//! The write gate: the one SQLite write connection, handed out with
//! priority to alarm writes.
//!
//! SQLite in WAL mode has one writer at a time whatever the number of
//! connections. Two write connections would not let an alarm commit pass a
//! readings commit: the second writer would spin in SQLite's busy handler
//! (sleeps of 1 to 100 ms) until the first commits. So there is one write
//! connection, and the wait happens here instead, where it can be ordered:
//! a [`Prio::Alarm`] writer waits only for the transaction that holds the
//! connection now, never for readings writers that queued before it. Every
//! low-priority transaction is bounded (one prune step), or looks at
//! [`Gate::alarm_waiting`] between segments of its work and commits what it
//! has done when an alarm waits (a readings batch, an acknowledgement), so
//! that wait is short (see `benches/store_latency.rs`).
//!
//! Invariant: the connection is held by at most one caller; a low-priority
//! caller never takes it while an alarm writer waits.

use std::sync::{Condvar, Mutex, MutexGuard};

/// Who wants the write connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prio {
    /// Alarm events and their queue: served first.
    Alarm,
    /// Readings, history, pruning, readings acks.
    Bulk,
}

#[derive(Default)]
struct State {
    busy: bool,
    alarms_waiting: usize,
}

pub(super) struct Gate<T> {
    state: Mutex<State>,
    turn: Condvar,
    value: Mutex<T>,
}

pub(super) struct Held<'a, T> {
    gate: &'a Gate<T>,
    guard: Option<MutexGuard<'a, T>>,
}

impl<T> Gate<T> {
    pub fn new(value: T) -> Self {
        Gate {
            state: Mutex::new(State::default()),
            turn: Condvar::new(),
            value: Mutex::new(value),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Only plain flags live here; a panic elsewhere cannot break them.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an alarm writer waits for the connection now. A long bulk
    /// write looks at this between segments and commits early, so the
    /// alarm waits for one segment, not for the whole batch.
    pub fn alarm_waiting(&self) -> bool {
        self.state().alarms_waiting > 0
    }

    /// Whether someone holds the connection now (for tests that must know
    /// a writer is inside its transaction).
    #[cfg(test)]
    pub fn busy(&self) -> bool {
        self.state().busy
    }

    /// Blocks until the connection is free for `prio`.
    pub fn lock(&self, prio: Prio) -> Held<'_, T> {
        let mut s = self.state();
        if prio == Prio::Alarm {
            s.alarms_waiting += 1;
        }
        while s.busy || (prio == Prio::Bulk && s.alarms_waiting > 0) {
            s = self.turn.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if prio == Prio::Alarm {
            s.alarms_waiting -= 1;
        }
        s.busy = true;
        drop(s);
        Held {
            gate: self,
            // A panic while holding the connection cannot leave SQLite
            // inconsistent (the transaction rolls back), so a poisoned lock
            // is still usable.
            guard: Some(self.value.lock().unwrap_or_else(|p| p.into_inner())),
        }
    }
}

impl<T> std::ops::Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("held")
    }
}

impl<T> std::ops::DerefMut for Held<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("held")
    }
}

impl<T> Drop for Held<'_, T> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.gate.state().busy = false;
        self.gate.turn.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn an_alarm_writer_goes_before_bulk_writers_that_waited_longer() {
        let gate = Arc::new(Gate::new(Vec::<&'static str>::new()));
        let held = gate.lock(Prio::Bulk);
        let waiting = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for _ in 0..3 {
            let (g, w) = (gate.clone(), waiting.clone());
            threads.push(std::thread::spawn(move || {
                w.fetch_add(1, Ordering::SeqCst);
                g.lock(Prio::Bulk).push("bulk");
            }));
        }
        while waiting.load(Ordering::SeqCst) < 3 {
            std::thread::yield_now();
        }
        // The bulk writers are queued (or about to be); the alarm writer
        // registers itself before the holder lets go.
        let g = gate.clone();
        let alarm = std::thread::spawn(move || g.lock(Prio::Alarm).push("alarm"));
        while gate.state().alarms_waiting == 0 {
            std::thread::yield_now();
        }
        drop(held);
        alarm.join().unwrap();
        for t in threads {
            t.join().unwrap();
        }
        let order = gate.lock(Prio::Bulk).clone();
        assert_eq!(order[0], "alarm", "{order:?}");
        assert_eq!(order.len(), 4);
    }
}
