//! What operators see: events for the sink, nothing printed carries a secret, and errors
//! classify as "no valid session" or not. (Events reaching `tracing`: `tracing_events.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::executor::block_on;
use leasehold::{
    Context, CreateOptions, Error, InputError, Limit, ManualClock, MemoryStore, Policy,
    RevokeReason, SeededEntropy, Sessions, StoreError, Subject, TokenError,
};

fn sessions(policy: Policy) -> (Sessions<MemoryStore>, ManualClock) {
    let clock = ManualClock::default();
    let s = Sessions::new(MemoryStore::new(), policy)
        .unwrap()
        .with_clock(clock.clone())
        .with_entropy(SeededEntropy::new(11));
    (s, clock)
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
