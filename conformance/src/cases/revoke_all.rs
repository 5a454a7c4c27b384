//! INV-revoke-all: after `revoke_subject` / `revoke_resource` returns, no session of that
//! subject / resource created before the call validates, whatever raced with it.

use leasehold::{Context, CreateOptions, Error, Policy, RevokeReason};

use super::{S, build, create, default_policy, ended_by, revoke_live, text, validates};
use crate::env::{CaseResult, Env, describe, ensure, fail, mins, race, resource, secs, subject};

async fn expect_revoked(s: &S, token: &str, want: RevokeReason, what: &str) -> CaseResult {
    match s.validate(token, &Context::none()).await {
        Err(Error::Revoked { reason }) if reason == want => Ok(()),
        other => fail!("{what}: expected Revoked({want:?}), got {other:?}"),
    }
}

fn on(res: &str) -> Result<CreateOptions, crate::env::CaseError> {
    Ok(CreateOptions {
        resource: Some(resource(res)?),
        ..CreateOptions::default()
    })
}

/// Every session of the subject (rotated or not, tagged or not) is revoked; other subjects'
/// are not; a second call finds nothing.
pub(crate) async fn revoke_subject_revokes_all(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let (alice, bob) = (subject("alice")?, subject("bob")?);
    let mut alice_tokens = Vec::new();
    for i in 0..5 {
        let c = if i % 2 == 0 {
            create(&s, &alice).await?
        } else {
            s.create(&alice, on("sandbox")?).await?
        };
        let mut t = text(&c);
        if i < 2 {
            alice_tokens.push(t.clone());
            t = s
                .refresh(&t, &Context::none())
                .await?
                .token
                .expose_secret()
                .to_owned();
        }
        alice_tokens.push(t);
    }
    let bob_tokens = [
        text(&create(&s, &bob).await?),
        text(&create(&s, &bob).await?),
    ];
    let n = s.revoke_subject(&alice).await?;
    ensure!(n == 5, "revoke_subject revoked {n} sessions, alice had 5");
    for (i, t) in alice_tokens.iter().enumerate() {
        expect_revoked(&s, t, RevokeReason::Subject, &format!("alice's token #{i}")).await?;
    }
    for t in &bob_tokens {
        ensure!(
            validates(&s, t).await,
            "bob's session was revoked with alice's"
        );
    }
    ensure!(
        s.list(&alice).await?.is_empty(),
        "alice still lists live sessions"
    );
    let again = s.revoke_subject(&alice).await?;
    ensure!(again == 0, "a second revoke_subject revoked {again}");
    Ok(())
}

/// Every session tagged with the resource, across subjects, is revoked; no other.
pub(crate) async fn revoke_resource_revokes_all(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let (alice, bob, carol) = (subject("alice")?, subject("bob")?, subject("carol")?);
    let on_r = [
        text(&s.create(&alice, on("sandbox-r")?).await?),
        text(&s.create(&alice, on("sandbox-r")?).await?),
        text(&s.create(&bob, on("sandbox-r")?).await?),
    ];
    let others = [
        text(&s.create(&alice, on("sandbox-s")?).await?),
        text(&create(&s, &carol).await?),
    ];
    let n = s.revoke_resource(&resource("sandbox-r")?).await?;
    ensure!(
        n == 3,
        "revoke_resource revoked {n} sessions, 3 were on the resource"
    );
    for (i, t) in on_r.iter().enumerate() {
        expect_revoked(
            &s,
            t,
            RevokeReason::Resource,
            &format!("session #{i} on the resource"),
        )
        .await?;
    }
    for t in &others {
        ensure!(
            validates(&s, t).await,
            "a session not on the resource was revoked"
        );
    }
    let again = s.revoke_resource(&resource("sandbox-r")?).await?;
    ensure!(again == 0, "a second revoke_resource revoked {again}");
    Ok(())
}

/// 16 refreshes (one per session of the subject) race `revoke_subject`: it revokes all 16,
/// and afterwards neither the old tokens nor any successor validates.
pub(crate) async fn revoke_subject_vs_refresh_race(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let alice = subject("alice")?;
    let mut tokens = Vec::new();
    for _ in 0..16 {
        tokens.push(text(&create(&s, &alice).await?));
    }
    enum R {
        Refresh(Result<String, Error>),
        Revoke(Result<u64, Error>),
    }
    let results = race(17, |i| {
        let (s, alice) = (s.clone(), alice.clone());
        let t = tokens.get(i).cloned();
        async move {
            match t {
                Some(t) => R::Refresh(
                    s.refresh(&t, &Context::none())
                        .await
                        .map(|r| r.token.expose_secret().to_owned()),
                ),
                None => R::Revoke(s.revoke_subject(&alice).await),
            }
        }
    })
    .await?;
    let mut all = tokens.clone();
    let mut odd = Vec::new();
    for r in results {
        match r {
            R::Revoke(Ok(16)) => {}
            R::Revoke(Ok(n)) => fail!("revoke_subject revoked {n} of 16 live sessions"),
            R::Refresh(Ok(t)) => all.push(t),
            R::Refresh(Err(Error::Revoked {
                reason: RevokeReason::Subject,
            })) => {}
            R::Revoke(Err(e)) | R::Refresh(Err(e)) => odd.push(format!("{e:?}")),
        }
    }
    ensure!(odd.is_empty(), "unexpected outcomes: {}", describe(&odd));
    for (i, t) in all.iter().enumerate() {
        expect_revoked(
            &s,
            t,
            RevokeReason::Subject,
            &format!("token #{i} after the race"),
        )
        .await?;
    }
    Ok(())
}

/// 32 validations that write touches race `revoke_resource` over 8 sessions: all 8 revoked,
/// none valid afterwards.
pub(crate) async fn revoke_resource_vs_touch_race(env: Env) -> CaseResult {
    let s = env.sessions(build(Policy::builder().renewal_interval(None))?)?;
    let mut tokens = Vec::new();
    for i in 0..8 {
        tokens.push(text(
            &s.create(&subject(&format!("user-{i}"))?, on("box")?)
                .await?,
        ));
    }
    env.advance(secs(61)); // every validation writes a touch
    let res = resource("box")?;
    let results = race(33, |i| {
        let (s, res) = (s.clone(), res.clone());
        let t = tokens.get(i % 8).cloned();
        async move {
            if i == 32 {
                s.revoke_resource(&res).await.map(Some)
            } else {
                match t {
                    Some(t) => s.validate(&t, &Context::none()).await.map(|_| None),
                    None => Ok(None),
                }
            }
        }
    })
    .await?;
    match results.get(32) {
        Some(Ok(Some(8))) => {}
        other => fail!("revoke_resource during touches: expected Ok(8), got {other:?}"),
    }
    let odd: Vec<_> = results[..32]
        .iter()
        .filter(|r| {
            !matches!(
                r,
                Ok(None)
                    | Err(Error::Revoked {
                        reason: RevokeReason::Resource
                    })
            )
        })
        .collect();
    ensure!(odd.is_empty(), "unexpected outcomes: {}", describe(&odd));
    for (i, t) in tokens.iter().enumerate() {
        expect_revoked(&s, t, RevokeReason::Resource, &format!("session #{i}")).await?;
    }
    Ok(())
}

/// Group revocation counts only live sessions, but ends every session of the group that has
/// not ended yet: one past its idle deadline (not reaped, never observed expired) gets the
/// group's tombstone too — a revocation never depends on a clock, so a caller whose clock lags
/// cannot find it live afterwards. An already revoked one keeps its reason.
pub(crate) async fn group_revoke_counts_only_live(env: Env) -> CaseResult {
    let s = env.sessions(build(Policy::builder().renewal_interval(None))?)?;
    let alice = subject("alice")?;
    let old = create(&s, &alice).await?;
    env.advance(mins(20));
    let revoked = create(&s, &alice).await?;
    let live = [create(&s, &alice).await?, create(&s, &alice).await?];
    env.advance(mins(15)); // `old` is now past its idle deadline
    revoke_live(&s, &revoked.session.id).await?;
    let n = s.revoke_subject(&alice).await?;
    ensure!(
        n == 2,
        "revoke_subject counted {n}, expected the 2 live sessions"
    );
    match env.store().load_session(&old.session.id).await?.record {
        Some(rec) if ended_by(&rec) == Some(RevokeReason::Subject) => {}
        other => fail!(
            "the expired, unreaped session after revoke_subject: expected a Subject tombstone, \
             got {other:?}"
        ),
    }
    expect_revoked(
        &s,
        &text(&old),
        RevokeReason::Subject,
        "the expired, unreaped session",
    )
    .await?;
    expect_revoked(
        &s,
        &text(&revoked),
        RevokeReason::Revoked,
        "the revoked-by-id session",
    )
    .await?;
    for c in &live {
        expect_revoked(&s, &text(c), RevokeReason::Subject, "a live session").await?;
    }
    Ok(())
}

/// Tickets and slots of a revoked subject are worthless.
pub(crate) async fn tickets_and_slots_die_with_subject(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let alice = subject("alice")?;
    let c = create(&s, &alice).await?;
    let ticket = s.mint_ticket(text(&c), &Context::none()).await?;
    let slot = s.acquire_slot(&c.session.id, None).await?;
    s.revoke_subject(&alice).await?;
    match s.redeem_ticket(ticket.ticket.expose_secret()).await {
        Err(Error::Revoked {
            reason: RevokeReason::Subject,
        }) => {}
        other => fail!("ticket after revoke_subject: expected Revoked(Subject), got {other:?}"),
    }
    match s.heartbeat_slot(&slot.id).await {
        Err(Error::SlotLost) => {}
        other => fail!("slot heartbeat after revoke_subject: expected SlotLost, got {other:?}"),
    }
    ensure!(
        s.acquire_slot(&c.session.id, None).await.is_err(),
        "a slot was acquired after revoke_subject"
    );
    Ok(())
}

/// Group operations finish while their group keeps changing (a "log out everywhere" that an
/// attacker holding the account could hold off by creating sessions is no logout):
/// `revoke_subject`, `revoke_resource`, a capped create that evicts, `list` and `reap` each run
/// under a flood of creations for the same subject and resource, and each must return while
/// the flood goes on. The flood stops only after; the bound (30 s) is on starvation, not speed.
pub(crate) async fn group_ops_finish_under_a_flood(env: Env) -> CaseResult {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let s = env.sessions(default_policy())?;
    let capped = env.sessions(build(Policy::builder().subject_cap(Some(
        leasehold::SubjectCap {
            max: 3,
            on_full: leasehold::CapPolicy::EvictOldest,
        },
    )))?)?;
    let (alice, r) = (subject("alice")?, resource("r")?);
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    for _ in 0..3 {
        let (s, stop, created, alice) = (s.clone(), stop.clone(), created.clone(), alice.clone());
        let opts = on("r")?;
        flood.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if s.create(&alice, opts.clone()).await.is_ok() {
                    created.fetch_add(1, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    while created.load(Ordering::SeqCst) < 10 {
        tokio::task::yield_now().await;
    }
    let bound = secs(30);
    let mut stuck = Vec::new();
    let mut odd = Vec::new();
    macro_rules! finishes {
        ($what:literal, $op:expr) => {
            match tokio::time::timeout(bound, $op).await {
                Err(_) => stuck.push($what),
                Ok(Err(e)) => odd.push(format!("{}: {e:?}", $what)),
                Ok(Ok(_)) => {}
            }
        };
    }
    finishes!("revoke_subject", s.revoke_subject(&alice));
    finishes!("revoke_resource", s.revoke_resource(&r));
    finishes!(
        "capped create (evict-oldest)",
        capped.create(&alice, on("r")?)
    );
    finishes!("list", s.list(&alice));
    env.advance(mins(24 * 60 + 1));
    finishes!("reap", s.reap(10_000));
    stop.store(true, Ordering::SeqCst);
    for f in flood {
        if let Err(e) = f.await {
            odd.push(format!("flooding task: {e}"));
        }
    }
    ensure!(
        stuck.is_empty(),
        "did not finish within {bound:?} while its group kept changing: {}",
        describe(&stuck)
    );
    ensure!(odd.is_empty(), "unexpected outcomes: {}", describe(&odd));
    Ok(())
}
