//! Every state change reaches `tracing` (target `leasehold`), security signals at `warn`, and
//! no secret is ever in what it records.
//!
//! Alone in its own test binary on purpose: `tracing` caches each callsite's interest
//! process-wide, so a test running in parallel with no subscriber could make this test's
//! thread-local subscriber miss events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use futures::executor::block_on;
use leasehold::{
    Context, CreateOptions, Error, ManualClock, MemoryStore, Policy, SeededEntropy, Sessions,
    Subject,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Records (level, target, formatted fields) of every event.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(Level, String, String)>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let m = event.metadata();
        self.0
            .lock()
            .unwrap()
            .push((*m.level(), m.target().to_owned(), fields.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn sessions(policy: Policy) -> (Sessions<MemoryStore>, ManualClock) {
    let clock = ManualClock::default();
    let s = Sessions::new(MemoryStore::new(), policy)
        .unwrap()
        .with_clock(clock.clone())
        .with_entropy(SeededEntropy::new(11));
    (s, clock)
}

#[test]
fn state_changes_reach_tracing_with_reuse_at_warn_and_no_secret() {
    let capture = Capture::default();
    let seen = capture.clone();
    let tokens = tracing::subscriber::with_default(capture, || {
        block_on(async {
            let (s, clock) = sessions(Policy::builder().renewal_interval(None).build().unwrap());
            let alice = Subject::new("alice").unwrap();
            let a = s.create(&alice, CreateOptions::default()).await.unwrap();
            let a_text = a.token.expose_secret().to_owned();
            let b = s.refresh(&a_text, &Context::none()).await.unwrap();
            let b_text = b.token.expose_secret().to_owned();
            s.validate(&b_text, &Context::none()).await.unwrap();
            clock.advance(std::time::Duration::from_secs(60));
            // The predecessor after grace, with the successor seen: reuse.
            let e = s.validate(&a_text, &Context::none()).await.unwrap_err();
            assert!(matches!(e, Error::ReuseDetected), "{e:?}");
            vec![a_text, b_text]
        })
    });
    let events = seen.0.lock().unwrap().clone();
    let lines: Vec<String> = events.iter().map(|(_, _, f)| f.clone()).collect();
    assert!(events.iter().all(|(_, target, _)| target == "leasehold"));
    assert!(lines.iter().any(|l| l.contains("Created")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("Rotated")), "{lines:?}");
    let reuse: Vec<_> = events
        .iter()
        .filter(|(_, _, f)| f.contains("ReuseDetected {"))
        .collect();
    assert_eq!(reuse.len(), 1, "{lines:?}");
    assert_eq!(reuse[0].0, Level::WARN);
    assert!(
        events
            .iter()
            .filter(|(_, _, f)| f.contains("Created"))
            .all(|(l, _, _)| *l == Level::DEBUG)
    );
    for t in &tokens {
        let secret = &t[t.len() - 43..];
        assert!(
            lines.iter().all(|l| !l.contains(secret)),
            "a secret reached tracing"
        );
    }
}
