//! What operators see: every state change reaches `tracing` (security signals at `warn`),
//! nothing printed carries a secret, and errors classify as "no valid session" or not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use futures::executor::block_on;
use leasehold::{
    Context, CreateOptions, Error, InputError, Limit, ManualClock, MemoryStore, Policy,
    RevokeReason, SeededEntropy, Sessions, StoreError, Subject, TokenError,
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

#[test]
fn reaped_is_emitted_only_when_something_was_removed() {
    let sink = leasehold::CollectingSink::default();
    let (s, clock) = sessions(Policy::default());
    let s = s.with_events(sink.clone());
    block_on(async {
        s.create(&Subject::new("a").unwrap(), CreateOptions::default())
            .await
            .unwrap();
        assert_eq!(s.reap(10).await.unwrap().total(), 0);
        let reaped = |sink: &leasehold::CollectingSink| {
            sink.events()
                .iter()
                .filter(|e| matches!(e, leasehold::Event::Reaped { .. }))
                .count()
        };
        assert_eq!(reaped(&sink), 0, "nothing removed, nothing reported");
        clock.advance(std::time::Duration::from_secs(31 * 60));
        assert_eq!(s.reap(10).await.unwrap().total(), 1);
        assert_eq!(reaped(&sink), 1);
        assert!(
            sink.events()
                .contains(&leasehold::Event::Reaped { count: 1 })
        );
    });
}

#[test]
fn context_debug_redacts_the_binding() {
    let shown = format!("{:?}", Context::bound("device-secret-42"));
    assert!(!shown.contains("device-secret-42"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert_eq!(
        format!("{:?}", Context::none()),
        "Context { binding: None }"
    );
}

#[test]
fn the_driver_exposes_the_policy_it_was_given() {
    let policy = Policy::builder()
        .grace_window(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let (s, _) = sessions(policy.clone());
    assert_eq!(s.policy(), &policy);
}

#[test]
fn errors_classify_as_unauthenticated_or_not() {
    let unauthenticated = [
        Error::Malformed(TokenError::Empty),
        Error::NotAuthenticated,
        Error::Expired,
        Error::Revoked {
            reason: RevokeReason::Subject,
        },
        Error::ReuseDetected,
        Error::BindingMismatch,
    ];
    for e in &unauthenticated {
        assert!(e.is_unauthenticated(), "{e:?}");
    }
    let other = [
        Error::LimitReached {
            limit: Limit::SubjectSessions,
        },
        Error::RateLimited {
            retry_after: std::time::Duration::from_secs(1),
        },
        Error::InvalidInput(InputError::Empty("subject")),
        Error::VersionConflict,
        Error::CorruptRecord("x".into()),
        Error::StoreUnavailable(StoreError::Timeout),
        Error::SlotLost,
    ];
    for e in &other {
        assert!(!e.is_unauthenticated(), "{e:?}");
    }
}
