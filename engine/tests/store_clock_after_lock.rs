//! A store with a clock of its own reads it *after* taking its lock (issue: expiry during a
//! lock wait). A compare-and-swap that waited for the lock while the session's deadline passed
//! is judged at the time it finally runs, not at the time it arrived: Postgres'
//! `clock_timestamp()` rather than `now()`, Redis `TIME` inside the script, the reference
//! store's clock read under its mutex.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use futures::executor::block_on;
use leasehold::store::StoreError;
use leasehold::{
    Clock, CreateOptions, ManualClock, MemoryStore, Policy, SeededEntropy, Sessions, Store,
    Subject, Timestamp,
};

/// A server clock whose next read, once armed, blocks until released: the store is then
/// stuck inside whatever it does while reading its clock.
#[derive(Clone)]
struct GatedClock {
    time: ManualClock,
    gate: Arc<(Mutex<Gate>, Condvar)>,
}

#[derive(Default)]
struct Gate {
    armed: bool,
    blocked: bool,
    open: bool,
}

impl Clock for GatedClock {
    fn now(&self) -> Timestamp {
        let (m, cv) = &*self.gate;
        let mut g = m.lock().unwrap();
        if g.armed {
            g.armed = false;
            g.blocked = true;
            cv.notify_all();
            while !g.open {
                g = cv.wait(g).unwrap();
            }
        }
        drop(g);
        self.time.now()
    }
}

#[test]
fn a_swap_that_waited_for_the_lock_is_judged_when_it_runs() {
    let t0 = ManualClock::default().now();
    let time = ManualClock::new(t0);
    let clock = GatedClock {
        time: time.clone(),
        gate: Arc::default(),
    };
    let store = MemoryStore::with_server_clock(clock.clone());
    let s = Sessions::new(store.clone(), Policy::default())
        .unwrap()
        .with_clock(ManualClock::new(t0))
        .with_entropy(SeededEntropy::new(1));
    let alice = Subject::new("alice").unwrap();
    let a = block_on(s.create(&alice, CreateOptions::default())).unwrap();
    let other = block_on(s.create(&alice, CreateOptions::default())).unwrap();
    let deadline = a.session.expires_at;

    // The touch a request decided one second before the deadline.
    time.set(deadline.saturating_sub(Duration::from_secs(1)));
    let rec = block_on(store.load_session(&a.session.id))
        .unwrap()
        .record
        .unwrap();
    let mut touch = rec.clone();
    touch.version += 1;
    touch.last_seen = time.now();
    touch.expires_at = time.now().saturating_add(Duration::from_secs(1800));

    // B holds the store's lock, stuck reading the clock.
    clock.gate.0.lock().unwrap().armed = true;
    let b = {
        let store = store.clone();
        let id = other.session.id;
        thread::spawn(move || block_on(store.load_session(&id)).map(|_| ()))
    };
    {
        let (m, cv) = &*clock.gate;
        let mut g = m.lock().unwrap();
        while !g.blocked {
            g = cv.wait(g).unwrap();
        }
    }
    // A arrives before the deadline and waits for the lock.
    let a_cas = {
        let store = store.clone();
        let now = time.now();
        thread::spawn(move || block_on(store.compare_and_swap(&touch, rec.version, now)))
    };
    // Give A the chance to queue on the lock (scheduling, not time: if A has not reached the
    // lock yet, it reads the later clock anyway and the outcome is the same).
    thread::sleep(Duration::from_millis(50));
    // The deadline passes while A waits; then B lets go.
    time.set(deadline.saturating_add(Duration::from_secs(1)));
    {
        let (m, cv) = &*clock.gate;
        m.lock().unwrap().open = true;
        cv.notify_all();
    }
    b.join().unwrap().unwrap();
    let outcome = a_cas.join().unwrap();
    assert!(
        matches!(outcome, Err(StoreError::NotFound)),
        "a touch that waited past the deadline for the lock: {outcome:?}"
    );
    let stored = block_on(store.load_session(&a.session.id))
        .unwrap()
        .record
        .unwrap();
    assert_eq!(stored.expires_at, deadline, "the deadline moved");
}
