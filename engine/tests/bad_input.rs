//! Hostile and malformed input: every refusal is a typed error, nothing panics, and a token
//! that is not even well-formed never costs a store call (DESIGN §8, "rejected before any store
//! call"). The store is wrapped in a call counter to prove the last point.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use leasehold::codec::MAX_SUMMARY_LEN;
use leasehold::decide::MAX_BINDING_LEN;
use leasehold::token::{self, TokenError};
use leasehold::{
    Context, CreateOptions, Error, Event, InputError, MAX_NAME_LEN, Policy, Resource, Subject,
};

type H = Harness<Counting>;

/// A harness with one live session; returns it, the session token and a ticket token.
async fn setup(policy: Policy) -> (H, String, String) {
    let h = H::counting(policy);
    let c = h
        .sessions
        .create(&subject("alice"), CreateOptions::default())
        .await
        .unwrap();
    let t = h.remember(c.token.expose_secret());
    let tk = h.sessions.mint_ticket(&t, &Context::none()).await.unwrap();
    let ticket = h.remember(tk.ticket.expose_secret());
    h.reset_calls();
    (h, t, ticket)
}

fn with_byte(s: &str, i: usize, b: u8) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v[i] = b;
    v
}

/// Malformed session-token inputs built from a good token, each with the error it must give.
fn malformed_cases(good: &str, prefix_len: usize) -> Vec<(&'static str, Vec<u8>, TokenError)> {
    let sel = prefix_len + 1; // first selector byte
    let sep = sel + 36; // selector/secret separator
    let sec = sep + 1; // first secret byte
    let n = good.len();
    vec![
        ("empty", vec![], TokenError::Empty),
        ("10 KB of 'a'", vec![b'a'; 10 * 1024], TokenError::TooLong),
        (
            "10 KB after a valid token",
            [good.as_bytes(), &[b'A'; 10 * 1024]].concat(),
            TokenError::TooLong,
        ),
        (
            "one byte too long",
            [good.as_bytes(), b"A"].concat(),
            TokenError::TooLong,
        ),
        (
            "trailing newline",
            [good.as_bytes(), b"\n"].concat(),
            TokenError::TooLong,
        ),
        (
            "truncated by one",
            good.as_bytes()[..n - 1].to_vec(),
            TokenError::Truncated,
        ),
        (
            "truncated to the selector",
            good.as_bytes()[..sep].to_vec(),
            TokenError::Truncated,
        ),
        (
            "prefix and separator only",
            good.as_bytes()[..sel].to_vec(),
            TokenError::Truncated,
        ),
        (
            "prefix only",
            good.as_bytes()[..prefix_len].to_vec(),
            TokenError::WrongPrefix,
        ),
        (
            "wrong prefix",
            with_byte(good, 0, b'x'),
            TokenError::WrongPrefix,
        ),
        (
            "upper-case prefix",
            [
                good[..prefix_len].to_uppercase().as_bytes(),
                &good.as_bytes()[prefix_len..],
            ]
            .concat(),
            TokenError::WrongPrefix,
        ),
        (
            "prefix separator replaced",
            with_byte(good, prefix_len, b'-'),
            TokenError::WrongPrefix,
        ),
        (
            "non-UTF-8 byte in the selector",
            with_byte(good, sel + 3, 0xff),
            TokenError::NotUtf8,
        ),
        (
            "non-UTF-8 byte in the secret",
            with_byte(good, n - 1, 0x80),
            TokenError::NotUtf8,
        ),
        (
            "non-UTF-8 from the start",
            vec![0xfe; n],
            TokenError::NotUtf8,
        ),
        (
            "upper-case hex selector",
            with_byte(good, sel, b'A'),
            TokenError::BadSelector,
        ),
        (
            "non-hex selector",
            with_byte(good, sel + 10, b'g'),
            TokenError::BadSelector,
        ),
        (
            "secret separator replaced",
            with_byte(good, sep, b'.'),
            TokenError::Malformed,
        ),
        (
            "non-base64url secret ('+')",
            with_byte(good, sec + 3, b'+'),
            TokenError::BadSecret,
        ),
        (
            "non-base64url secret ('/')",
            with_byte(good, sec + 20, b'/'),
            TokenError::BadSecret,
        ),
        (
            "padding in the secret",
            with_byte(good, n - 1, b'='),
            TokenError::BadSecret,
        ),
        (
            "space in the secret",
            with_byte(good, sec, b' '),
            TokenError::BadSecret,
        ),
    ]
}

/// The ways a token reaches the engine; each must refuse `input` with `want`.
async fn assert_refused_everywhere(h: &H, what: &str, input: &[u8], want: TokenError) {
    let ctx = Context::none();
    let results = [
        ("validate", h.sessions.validate(input, &ctx).await.err()),
        ("refresh", h.sessions.refresh(input, &ctx).await.err()),
        (
            "mint_ticket",
            h.sessions.mint_ticket(input, &ctx).await.err(),
        ),
    ];
    for (op, got) in results {
        match got {
            Some(Error::Malformed(k)) if k == want => {}
            other => panic!("{op}({what}): expected Malformed({want:?}), got {other:?}"),
        }
    }
}

#[tokio::test]
async fn malformed_session_tokens_are_typed_errors_without_any_store_call() {
    let (h, good, _) = setup(Policy::default()).await;
    // Sanity: the cases are built on a token that does validate.
    h.sessions.validate(&good, &Context::none()).await.unwrap();
    h.reset_calls();
    let cases = malformed_cases(&good, 3);
    for (what, input, want) in &cases {
        assert_refused_everywhere(&h, what, input, *want).await;
        assert_eq!(h.calls().total(), 0, "{what}: a store call was made");
    }
    // The session is unharmed, and nothing was emitted for the garbage.
    h.sessions.validate(&good, &Context::none()).await.unwrap();
    assert!(
        h.events()
            .iter()
            .all(|e| matches!(e, Event::Created { .. } | Event::TicketMinted { .. }))
    );
    println!(
        "{} malformed session tokens refused with 0 store calls",
        cases.len()
    );
}

#[tokio::test]
async fn malformed_ticket_tokens_are_typed_errors_without_any_store_call() {
    let (h, _, ticket) = setup(Policy::default()).await;
    for (what, input, want) in malformed_cases(&ticket, 4) {
        match h.sessions.redeem_ticket(&input).await {
            Err(Error::Malformed(k)) if k == want => {}
            other => panic!("redeem({what}): expected Malformed({want:?}), got {other:?}"),
        }
        assert_eq!(h.calls().total(), 0, "{what}: a store call was made");
    }
    // The ticket was not consumed by any of that.
    h.sessions.redeem_ticket(&ticket).await.unwrap();
}

#[tokio::test]
async fn a_ticket_presented_as_a_session_token_and_vice_versa_is_malformed() {
    let (h, session, ticket) = setup(Policy::default()).await;
    // lht1_… (85 bytes) where lh1_… (84 bytes) is expected: refused on length or prefix.
    for r in [
        h.sessions.validate(&ticket, &Context::none()).await.err(),
        h.sessions.refresh(&ticket, &Context::none()).await.err(),
    ] {
        assert!(
            matches!(
                r,
                Some(Error::Malformed(
                    TokenError::TooLong | TokenError::WrongPrefix
                ))
            ),
            "{r:?}"
        );
    }
    let r = h.sessions.redeem_ticket(&session).await;
    assert!(
        matches!(r, Err(Error::Malformed(TokenError::WrongPrefix))),
        "{r:?}"
    );
    assert_eq!(h.calls().total(), 0);
    // Both still work where they belong.
    h.sessions
        .validate(&session, &Context::none())
        .await
        .unwrap();
    h.sessions.redeem_ticket(&ticket).await.unwrap();
}

#[tokio::test]
async fn with_equal_length_prefixes_a_swapped_token_is_a_wrong_prefix() {
    let policy = Policy::builder()
        .token_prefix("sess".to_owned())
        .ticket_prefix("tick".to_owned())
        .build()
        .unwrap();
    let (h, session, ticket) = setup(policy).await;
    assert!(session.starts_with("sess_") && ticket.starts_with("tick_"));
    assert!(matches!(
        h.sessions.validate(&ticket, &Context::none()).await,
        Err(Error::Malformed(TokenError::WrongPrefix))
    ));
    assert!(matches!(
        h.sessions.redeem_ticket(&session).await,
        Err(Error::Malformed(TokenError::WrongPrefix))
    ));
    // A default-prefix token is foreign to this policy.
    let foreign = format!("lh1_{}", &session[5..]);
    assert!(matches!(
        h.sessions.validate(&foreign, &Context::none()).await,
        Err(Error::Malformed(_))
    ));
    assert_eq!(h.calls().total(), 0);
}

#[tokio::test]
async fn a_ticket_secret_grafted_onto_a_session_selector_is_not_authenticated() {
    // Well-formed but forged: one load (the selector is looked up), no write, no revocation.
    let (h, session, ticket) = setup(Policy::default()).await;
    let ticket_secret = secret_part(&ticket);
    let grafted = format!("{}{}", &session[..session.len() - 43], ticket_secret);
    let r = h.sessions.validate(&grafted, &Context::none()).await;
    assert!(matches!(r, Err(Error::NotAuthenticated)), "{r:?}");
    // The ticket's own selector with the session prefix: an unknown session id.
    let ticket_id = &ticket[5..5 + 36];
    let swapped = format!("lh1_{ticket_id}_{ticket_secret}");
    let r = h.sessions.validate(&swapped, &Context::none()).await;
    assert!(matches!(r, Err(Error::NotAuthenticated)), "{r:?}");
    // The session secret under the ticket prefix and id: the take finds no match.
    let forged_ticket = format!("lht1_{ticket_id}_{}", secret_part(&session));
    let r = h.sessions.redeem_ticket(&forged_ticket).await;
    assert!(matches!(r, Err(Error::NotAuthenticated)), "{r:?}");
    let calls = h.calls();
    assert_eq!((calls.load, calls.take_ticket, calls.cas), (2, 1, 0));
    // None of it harmed the session or consumed the ticket.
    h.sessions
        .validate(&session, &Context::none())
        .await
        .unwrap();
    h.sessions.redeem_ticket(&ticket).await.unwrap();
}

#[tokio::test]
async fn a_guessed_secret_for_a_real_session_cannot_revoke_it() {
    let (h, session, _) = setup(Policy::default()).await;
    let n = session.len();
    let mut guess = session.clone().into_bytes();
    // Change the secret to another canonical base64url value.
    guess[n - 10] = if guess[n - 10] == b'A' { b'B' } else { b'A' };
    let guess = String::from_utf8(guess).unwrap();
    for _ in 0..3 {
        let r = h.sessions.refresh(&guess, &Context::none()).await;
        assert!(matches!(r, Err(Error::NotAuthenticated)), "{r:?}");
    }
    let calls = h.calls();
    assert_eq!((calls.load, calls.cas), (3, 0));
    h.sessions
        .validate(&session, &Context::none())
        .await
        .unwrap();
}

#[tokio::test]
async fn garbage_of_every_shape_never_panics_and_never_authenticates() {
    // A deterministic mini-fuzzer: random bytes, random ASCII around the right length, and
    // single-byte mutations of a valid token. Every answer is a denial; store calls happen only
    // for inputs that parse.
    let (h, good, _) = setup(Policy::default()).await;
    let mut rng = 0x1234_5678_9abc_def0_u64;
    let mut next = move || {
        rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let alphabet = b"lh1_abcdef0123456789ABCDEF-+/=. \n\0\x7f\x80\xff";
    let (mut malformed, mut unauthenticated) = (0u32, 0u32);
    for i in 0..3000u32 {
        let input: Vec<u8> = match i % 3 {
            0 => {
                let len = (next() % 200) as usize;
                (0..len).map(|_| next() as u8).collect()
            }
            1 => {
                let len = 80 + (next() % 8) as usize;
                let mut v: Vec<u8> = (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect();
                v[..4].copy_from_slice(b"lh1_");
                v
            }
            _ => {
                let mut v = good.as_bytes().to_vec();
                let at = (next() % v.len() as u64) as usize;
                let old = v[at];
                let mut b = alphabet[(next() % alphabet.len() as u64) as usize];
                if b == old {
                    b = if old == b'0' { b'1' } else { b'0' };
                }
                v[at] = b;
                v
            }
        };
        let parses = token::parse(&input, "lh1").is_ok();
        h.reset_calls();
        match h.sessions.validate(&input, &Context::none()).await {
            Err(Error::Malformed(_)) => {
                assert!(!parses);
                assert_eq!(h.calls().total(), 0);
                malformed += 1;
            }
            Err(Error::NotAuthenticated) => {
                assert!(parses);
                let calls = h.calls();
                assert_eq!((calls.load, calls.total()), (1, 1), "{calls:?}");
                unauthenticated += 1;
            }
            other => panic!("input {:?}: {other:?}", String::from_utf8_lossy(&input)),
        }
    }
    h.sessions.validate(&good, &Context::none()).await.unwrap();
    println!(
        "garbage: {malformed} malformed (0 store calls), {unauthenticated} well-formed but unknown"
    );
    assert!(malformed > 0 && unauthenticated > 0);
}

#[test]
fn a_multibyte_character_at_the_selector_boundary_is_refused_not_a_panic() {
    // "lh1_" + 35 hex + "é" (2 bytes, straddling byte 36 of the rest) + 43 base64 chars:
    // exactly the expected 84 bytes, valid UTF-8, prefix correct.
    let mut input = String::from("lh1_");
    input.push_str(&"a".repeat(35));
    input.push('é');
    input.push_str(&"A".repeat(43));
    assert_eq!(input.len(), 84);
    let r = std::panic::catch_unwind(|| token::parse(input.as_bytes(), "lh1").err());
    assert!(
        matches!(r, Ok(Some(_))),
        "parse panicked instead of returning a TokenError"
    );
    // The same for tickets, and through the driver.
    let mut ticket = String::from("lht1_");
    ticket.push_str(&"a".repeat(35));
    ticket.push('€'); // 3 bytes
    ticket.push_str(&"A".repeat(42));
    assert_eq!(ticket.len(), 85);
    let r = std::panic::catch_unwind(|| token::parse(ticket.as_bytes(), "lht1").err());
    assert!(matches!(r, Ok(Some(_))), "ticket parse panicked");
    let sessions =
        leasehold::Sessions::new(leasehold::MemoryStore::new(), Policy::default()).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        futures::executor::block_on(sessions.validate(&input, &Context::none())).err()
    }));
    assert!(
        matches!(r, Ok(Some(Error::Malformed(_)))),
        "validate panicked or did not refuse"
    );
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        futures::executor::block_on(sessions.redeem_ticket(&ticket)).err()
    }));
    assert!(
        matches!(r, Ok(Some(Error::Malformed(_)))),
        "redeem_ticket panicked or did not refuse"
    );
}

#[test]
fn over_long_empty_or_control_names_are_refused_when_built() {
    assert_eq!(
        Subject::new("x".repeat(MAX_NAME_LEN + 1)),
        Err(InputError::TooLong {
            what: "subject",
            max: MAX_NAME_LEN
        })
    );
    assert_eq!(
        Subject::new("x".repeat(10 * 1024)),
        Err(InputError::TooLong {
            what: "subject",
            max: MAX_NAME_LEN
        })
    );
    assert!(Subject::new("x".repeat(MAX_NAME_LEN)).is_ok());
    assert_eq!(Subject::new(""), Err(InputError::Empty("subject")));
    assert_eq!(
        Subject::new("al\u{0}ice"),
        Err(InputError::ControlCharacter("subject"))
    );
    assert_eq!(
        Resource::new("r".repeat(MAX_NAME_LEN + 1)),
        Err(InputError::TooLong {
            what: "resource",
            max: MAX_NAME_LEN
        })
    );
    assert_eq!(Resource::new(""), Err(InputError::Empty("resource")));
    assert_eq!(
        Resource::new("tab\there"),
        Err(InputError::ControlCharacter("resource"))
    );
    // Errors convert to the engine's typed error.
    let e: Error = Subject::new("").unwrap_err().into();
    assert!(matches!(
        e,
        Error::InvalidInput(InputError::Empty("subject"))
    ));
}

#[tokio::test]
async fn over_long_data_summary_or_binding_is_refused_before_the_store() {
    let (h, _, _) = setup(Policy::default()).await;
    let max_data = Policy::default().max_data_len();
    let cases = [
        (
            "data",
            CreateOptions {
                data: vec![0; max_data + 1],
                ..CreateOptions::default()
            },
            max_data,
        ),
        (
            "data",
            CreateOptions {
                data: vec![0; 10 * 1024],
                ..CreateOptions::default()
            },
            max_data,
        ),
        (
            "summary",
            CreateOptions {
                summary: Some("s".repeat(MAX_SUMMARY_LEN + 1)),
                ..CreateOptions::default()
            },
            MAX_SUMMARY_LEN,
        ),
        (
            "binding",
            CreateOptions {
                context: Context::bound("b".repeat(MAX_BINDING_LEN + 1)),
                ..CreateOptions::default()
            },
            MAX_BINDING_LEN,
        ),
    ];
    for (what, opts, max) in cases {
        match h.sessions.create(&subject("bob"), opts).await {
            Err(Error::InvalidInput(InputError::TooLong { what: w, max: m }))
                if w == what && m == max => {}
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(h.calls().total(), 0, "{what}: reached the store");
    }
    assert!(h.sessions.list(&subject("bob")).await.unwrap().is_empty());
    // Exactly at each limit is accepted.
    let at_limit = CreateOptions {
        data: vec![7; max_data],
        summary: Some("s".repeat(MAX_SUMMARY_LEN)),
        context: Context::bound("b".repeat(MAX_BINDING_LEN)),
        ..CreateOptions::default()
    };
    let c = h.sessions.create(&subject("bob"), at_limit).await.unwrap();
    assert_eq!(c.session.data.len(), max_data);
}

#[tokio::test]
async fn over_long_data_in_update_is_invalid_input_and_changes_nothing() {
    let (h, t, _) = setup(Policy::default()).await;
    let v = h.sessions.validate(&t, &Context::none()).await.unwrap();
    let max = h.sessions.policy().max_data_len();
    let r = h
        .sessions
        .update_data(&v.session.id, 0, &vec![1; max + 1])
        .await;
    assert!(
        matches!(
            r,
            Err(Error::InvalidInput(InputError::TooLong { what: "data", max: m })) if m == max
        ),
        "{r:?}"
    );
    assert_eq!(h.calls().cas, 0);
    let v = h.sessions.validate(&t, &Context::none()).await.unwrap();
    assert_eq!((v.session.data_version, v.session.data.len()), (0, 0));
}

#[tokio::test]
async fn over_long_data_in_update_makes_no_store_call() {
    let (h, t, _) = setup(Policy::default()).await;
    let id = h
        .sessions
        .validate(&t, &Context::none())
        .await
        .unwrap()
        .session
        .id;
    h.reset_calls();
    let max = h.sessions.policy().max_data_len();
    let r = h.sessions.update_data(&id, 0, &vec![1; max + 1]).await;
    assert!(matches!(r, Err(Error::InvalidInput(_))), "{r:?}");
    assert_eq!(h.calls().total(), 0, "{:?}", h.calls());
}

#[tokio::test]
async fn an_over_long_binding_on_a_bound_session_is_a_denial_not_a_grant() {
    let (h, _, _) = setup(Policy::default()).await;
    let c = h
        .sessions
        .create(
            &subject("carol"),
            CreateOptions {
                context: Context::bound("device-1"),
                ..CreateOptions::default()
            },
        )
        .await
        .unwrap();
    let t = h.remember(c.token.expose_secret());
    let huge = Context::bound(format!("device-1{}", "x".repeat(64 * 1024)));
    let r = h.sessions.validate(&t, &huge).await;
    assert!(
        matches!(r, Err(Error::BindingMismatch | Error::InvalidInput(_))),
        "{r:?}"
    );
    h.sessions
        .validate(&t, &Context::bound("device-1"))
        .await
        .unwrap();
}

/// A summary is shown in "your devices" lists and logs: a control character (a line break, an
/// escape) is refused before the store, like an over-long one.
#[tokio::test]
async fn a_summary_with_a_control_character_is_refused_before_the_store() {
    let (h, _, _) = setup(Policy::default()).await;
    for bad in ["Firefox\non Linux", "Firefox\u{1b}[2J", "tab\there"] {
        let opts = CreateOptions {
            summary: Some(bad.into()),
            ..CreateOptions::default()
        };
        assert_eq!(
            h.sessions.create(&subject("bob"), opts).await.err(),
            Some(Error::InvalidInput(InputError::ControlCharacter("summary"))),
            "{bad:?}"
        );
        assert_eq!(h.calls().total(), 0, "{bad:?}: reached the store");
    }
}

/// A per-session lifetime longer than the policy's, or zero, is refused before the store.
#[tokio::test]
async fn a_per_session_lifetime_outside_the_policy_is_refused_before_the_store() {
    let (h, _, _) = setup(Policy::default()).await;
    for lifetime in [
        std::time::Duration::ZERO,
        Policy::default().absolute_lifetime() + std::time::Duration::from_millis(1),
    ] {
        let opts = CreateOptions {
            absolute_lifetime: Some(lifetime),
            ..CreateOptions::default()
        };
        assert!(
            matches!(
                h.sessions.create(&subject("bob"), opts).await,
                Err(Error::InvalidInput(InputError::Invalid(_)))
            ),
            "{lifetime:?}"
        );
        assert_eq!(h.calls().total(), 0, "{lifetime:?}: reached the store");
    }
}

/// A `did:web` subject of up to 1 KiB is a subject; one byte more is refused when built.
#[tokio::test]
async fn a_one_kibibyte_did_web_subject_works_end_to_end() {
    let (h, _, _) = setup(Policy::default()).await;
    let did = format!("did:web:{}", "a".repeat(MAX_NAME_LEN - 8));
    assert_eq!(did.len(), 1024);
    let who = Subject::new(did.clone()).unwrap();
    let c = h
        .sessions
        .create(&who, CreateOptions::default())
        .await
        .unwrap();
    let v = h
        .sessions
        .validate(c.token.expose_secret(), &Context::none())
        .await
        .unwrap();
    assert_eq!(v.session.subject, who);
    assert_eq!(h.sessions.revoke_subject(&who).await.unwrap(), 1);
    assert!(matches!(
        Subject::new(format!("{did}a")),
        Err(InputError::TooLong { .. })
    ));
}

/// `Retry-After` in whole seconds rounds up: a client told `as_secs()` would come back one
/// second early and be refused again.
#[test]
fn retry_after_in_whole_seconds_rounds_up() {
    let e = |ms| Error::RateLimited {
        retry_after: std::time::Duration::from_millis(ms),
    };
    assert_eq!(e(3_479_001).retry_after_secs(), Some(3480));
    assert_eq!(e(3_480_000).retry_after_secs(), Some(3480));
    assert_eq!(e(1).retry_after_secs(), Some(1));
    assert_eq!(Error::NotAuthenticated.retry_after_secs(), None);
}
