//! The store contract for enumeration and limit advice: `list_sessions` pages (each record
//! once, in id order), `count_live` (live only, at the judged time), `reap` reporting what it
//! ended, `check_limits` (the answer a create would get, writing nothing), `forget_creation`
//! (gives back one rate slot), and the create order — rate, subject cap, then the global cap
//! counting the subject's own evictions as gone — with an evicting global cap taking the
//! store's oldest sessions in creation order.
//!
//! The driver has no API for listing pages, counting or advice yet, so those cases call the
//! store directly (`env.store()`), at the case's clock.

use std::collections::BTreeSet;

use leasehold::store::{CreateLimits, InsertOutcome};
use leasehold::{
    CapPolicy, CollectingSink, Error, Event, GlobalCap, Limit, MAX_PAGE, Policy, Rate,
    RevokeReason, Scope, SessionId, SessionRecord, Sessions, Store, Subject, SubjectCap,
    TOMBSTONE_RETENTION,
};

use super::{S, build, create, default_policy, ended_by, global_capped, revoke_live};
use crate::env::{CaseResult, DynStore, Env, ensure, fail, mins, ms, resource, secs, subject};

/// The limits a create under `policy` passes to the store (what the driver passes).
fn limits_of(p: &Policy) -> CreateLimits {
    CreateLimits {
        subject_cap: p.subject_cap(),
        creation_rate: p.creation_rate(),
        global_cap: p.global_cap(),
    }
}

/// Every record of `scope`, paging with `limit`, checking each page against the contract:
/// at most `limit` records, ids strictly ascending and after the cursor, and `next` either
/// the last id of a non-empty page or `None` (the end).
async fn list_all(store: &DynStore, scope: &Scope, limit: usize) -> Result<Vec<SessionId>, String> {
    let mut out: Vec<SessionId> = Vec::new();
    let mut after: Option<SessionId> = None;
    for _ in 0..10_000 {
        let page = store
            .list_sessions(scope, after.as_ref(), limit)
            .await
            .map_err(|e| format!("list_sessions({scope:?}, after {after:?}): {e}"))?;
        if page.records.len() > limit.min(MAX_PAGE) {
            return Err(format!(
                "a page of {} records for a limit of {limit}",
                page.records.len()
            ));
        }
        for r in &page.records {
            if after.is_some_and(|a| r.id <= a) || out.last().is_some_and(|l| r.id <= *l) {
                return Err(format!(
                    "{} listed after {:?}: ids must ascend strictly past the cursor",
                    r.id,
                    out.last()
                ));
            }
            out.push(r.id);
        }
        match page.next {
            None => return Ok(out),
            Some(n) if page.records.last().map(|r| r.id) == Some(n) => after = Some(n),
            Some(n) => {
                return Err(format!(
                    "next {n} is not the last id of its page ({:?})",
                    page.records.last().map(|r| r.id)
                ));
            }
        }
    }
    Err("the listing never ended".into())
}

fn sorted(ids: impl IntoIterator<Item = SessionId>) -> Vec<SessionId> {
    ids.into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

async fn load(env: &Env, id: &SessionId) -> Result<Option<SessionRecord>, crate::env::CaseError> {
    Ok(env.store().load_session(id).await?.record.map(|r| *r))
}

/// Fails unless session `id` is stored as a tombstone with `reason`.
async fn expect_ended(env: &Env, id: &SessionId, reason: RevokeReason, what: &str) -> CaseResult {
    match load(env, id).await? {
        Some(r) if ended_by(&r) == Some(reason) => Ok(()),
        other => fail!("{what}: expected a {reason:?} tombstone, got {other:?}"),
    }
}

/// Fails unless session `id` is stored and not a tombstone.
async fn expect_active(env: &Env, id: &SessionId, what: &str) -> CaseResult {
    match load(env, id).await? {
        Some(r) if ended_by(&r).is_none() => Ok(()),
        other => fail!("{what}: expected it active, got {other:?}"),
    }
}

/// Seven records over three subjects (one a tombstone, listed too) paged three at a time:
/// every record exactly once, in ascending id order, `next` the last id of each page until
/// the end; an oversized limit is served at most `MAX_PAGE`; listing past the last id is
/// empty and ends.
pub(crate) async fn list_all_pages_each_record_once(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let mut made = Vec::new();
    for i in 0..7 {
        made.push(
            create(&s, &subject(&format!("user-{}", i % 3))?)
                .await?
                .session
                .id,
        );
    }
    revoke_live(&s, &made[2]).await?;
    let want = sorted(made.iter().copied());
    for limit in [1, 3, 7, usize::MAX] {
        let got = list_all(env.store(), &Scope::All, limit)
            .await
            .map_err(crate::env::CaseError)?;
        ensure!(
            got == want,
            "listing every session {limit} at a time: {got:?}, expected each of the 7 once in \
             id order {want:?}"
        );
    }
    let last = want.last().copied();
    let page = env
        .store()
        .list_sessions(&Scope::All, last.as_ref(), 3)
        .await?;
    ensure!(
        page.records.is_empty() && page.next.is_none(),
        "a listing after the greatest id: {page:?}, expected an empty last page"
    );
    Ok(())
}

/// Listing by subject and by resource returns exactly the scope's records (a tombstone too),
/// paged in id order; an unknown subject lists nothing.
pub(crate) async fn list_by_subject_and_resource(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let (alice, bob, carol, r) = (
        subject("alice")?,
        subject("bob")?,
        subject("carol")?,
        resource("box")?,
    );
    let on_r = leasehold::CreateOptions {
        resource: Some(r.clone()),
        ..Default::default()
    };
    let a = [
        s.create(&alice, on_r.clone()).await?.session.id,
        s.create(&alice, on_r.clone()).await?.session.id,
        create(&s, &alice).await?.session.id,
    ];
    let b = [
        s.create(&bob, on_r.clone()).await?.session.id,
        create(&s, &bob).await?.session.id,
    ];
    create(&s, &carol).await?;
    revoke_live(&s, &a[0]).await?;
    for (scope, want) in [
        (Scope::Subject(alice), sorted(a)),
        (Scope::Subject(bob), sorted(b)),
        (Scope::Resource(r), sorted([a[0], a[1], b[0]])),
        (Scope::Subject(subject("nobody")?), Vec::new()),
    ] {
        let got = list_all(env.store(), &scope, 2)
            .await
            .map_err(crate::env::CaseError)?;
        ensure!(
            got == want,
            "listing {scope:?} two at a time: {got:?}, expected {want:?}"
        );
    }
    Ok(())
}

/// `count_live` counts live sessions only: a revoked one and one past its idle deadline
/// (unreaped, its expiry never observed) are not counted, per scope and store-wide.
pub(crate) async fn count_live_ignores_expired_and_tombstones(env: Env) -> CaseResult {
    let s = env.sessions(build(
        Policy::builder()
            .idle_timeout(Some(mins(10)))
            .renewal_interval(None),
    )?)?;
    let (alice, bob, r) = (subject("alice")?, subject("bob")?, resource("box")?);
    let on_r = leasehold::CreateOptions {
        resource: Some(r.clone()),
        ..Default::default()
    };
    create(&s, &alice).await?; // lapses first
    env.advance(mins(6));
    s.create(&alice, on_r.clone()).await?;
    s.create(&bob, on_r).await?;
    let d = create(&s, &bob).await?;
    revoke_live(&s, &d.session.id).await?;
    let counts = |env: &Env| {
        let store = env.store().clone();
        let now = env.now();
        let scopes = [
            Scope::All,
            Scope::Subject(alice.clone()),
            Scope::Subject(bob.clone()),
            Scope::Resource(r.clone()),
        ];
        async move {
            let mut out = Vec::new();
            for scope in &scopes {
                out.push(store.count_live(scope, now).await?);
            }
            Ok::<_, leasehold::StoreError>(out)
        }
    };
    let got = counts(&env).await?;
    ensure!(
        got == [3, 2, 1, 2],
        "live counts (all, alice, bob, resource) with one revoked: {got:?}, expected [3, 2, 1, 2]"
    );
    env.advance(mins(5)); // alice's first session is past its idle deadline
    let got = counts(&env).await?;
    ensure!(
        got == [2, 1, 1, 2],
        "live counts after one lapsed (unreaped): {got:?}, expected [2, 1, 1, 2]"
    );
    env.advance(mins(10));
    let got = counts(&env).await?;
    ensure!(
        got == [0, 0, 0, 0],
        "live counts after every session lapsed: {got:?}, expected none"
    );
    Ok(())
}

/// `reap` says which sessions it removed, with their owner, resource and how they ended: a
/// lapsed one as `Expired`, a revoked one as `Revoked`, an evicted one as `Evicted`; a live
/// one is neither removed nor reported.
pub(crate) async fn reap_reports_ended_sessions(env: Env) -> CaseResult {
    let p =
        |b: leasehold::PolicyBuilder| build(b.idle_timeout(Some(mins(10))).renewal_interval(None));
    let s = env.sessions(p(Policy::builder())?)?;
    let capped = env.sessions(p(Policy::builder().subject_cap(Some(SubjectCap {
        max: 1,
        on_full: CapPolicy::EvictOldest,
    })))?)?;
    let (alice, bob, carol, r) = (
        subject("alice")?,
        subject("bob")?,
        subject("carol")?,
        resource("box")?,
    );
    let lapsed = s
        .create(
            &alice,
            leasehold::CreateOptions {
                resource: Some(r.clone()),
                ..Default::default()
            },
        )
        .await?
        .session
        .id;
    let revoked = create(&s, &bob).await?.session.id;
    revoke_live(&s, &revoked).await?;
    let evicted = create(&capped, &carol).await?.session.id;
    env.advance(ms(1));
    let newer = create(&capped, &carol).await?.session.id;
    expect_ended(
        &env,
        &evicted,
        RevokeReason::Evicted,
        "carol's first session",
    )
    .await?;
    env.advance(mins(10)); // all of them past their deadline…
    let live = create(&s, &subject("dave")?).await?.session.id; // …but this one
    let out = s.reap(100).await?;
    let mut ended: Vec<_> = out
        .ended
        .iter()
        .map(|e| (e.id, e.subject.clone(), e.resource.clone(), e.reason))
        .collect();
    ended.sort_by_key(|e| e.0);
    let mut want = vec![
        (lapsed, alice, Some(r), Some(RevokeReason::Expired)),
        (revoked, bob, None, Some(RevokeReason::Revoked)),
        (evicted, carol.clone(), None, Some(RevokeReason::Evicted)),
        (newer, carol, None, Some(RevokeReason::Expired)),
    ];
    want.sort_by_key(|e| e.0);
    ensure!(
        ended == want && out.sessions == 4,
        "reap reported {ended:?} ({} sessions removed), expected {want:?} (4)",
        out.sessions
    );
    ensure!(
        !out.ended.iter().any(|e| e.id == live),
        "reap reported the live session {live}"
    );
    expect_active(&env, &live, "the live session after reap").await
}

/// `check_limits` answers what the next create gets — under a rejecting subject cap, an
/// evicting one (naming whom it would evict), the creation rate and a global cap — and
/// writes nothing: a session it would evict stays active, a lapsed member gets no tombstone,
/// and asking again and again consumes no creation from the rate.
pub(crate) async fn check_limits_agrees_and_writes_nothing(env: Env) -> CaseResult {
    let store = env.store().clone();
    let ask = |who: &Subject, p: &Policy| {
        let (store, who, l, now) = (store.clone(), who.clone(), limits_of(p), env.now());
        async move { store.check_limits(&who, &l, now).await }
    };

    // A rejecting subject cap.
    let reject = build(Policy::builder().subject_cap(Some(SubjectCap {
        max: 2,
        on_full: CapPolicy::Reject,
    })))?;
    let s = env.sessions(reject.clone())?;
    let alice = subject("alice")?;
    create(&s, &alice).await?;
    create(&s, &alice).await?;
    let before = store.list_subject(&alice).await?;
    let advice = ask(&alice, &reject).await?;
    ensure!(
        advice == InsertOutcome::SubjectCapReached,
        "check_limits at a rejecting cap: {advice:?}, expected SubjectCapReached"
    );
    let r = s.create(&alice, Default::default()).await;
    ensure!(
        matches!(
            r,
            Err(Error::LimitReached {
                limit: Limit::SubjectSessions
            })
        ),
        "the create after check_limits said SubjectCapReached: got {r:?}"
    );
    let mut after = store.list_subject(&alice).await?;
    let mut before = before;
    before.sort_by_key(|r| r.id);
    after.sort_by_key(|r| r.id);
    ensure!(
        before == after,
        "check_limits or the refused create changed alice's records"
    );

    // An evicting subject cap, with a member past its deadline nobody observed yet.
    let evict = build(
        Policy::builder()
            .idle_timeout(Some(mins(10)))
            .renewal_interval(None)
            .subject_cap(Some(SubjectCap {
                max: 2,
                on_full: CapPolicy::EvictOldest,
            })),
    )?;
    let plain = env.sessions(build(
        Policy::builder()
            .idle_timeout(Some(mins(10)))
            .renewal_interval(None),
    )?)?;
    let capped = env.sessions(evict.clone())?;
    let bob = subject("bob")?;
    let lapsed = create(&plain, &bob).await?.session.id;
    env.advance(mins(10));
    let oldest = create(&plain, &bob).await?.session.id;
    env.advance(ms(1));
    let newer = create(&plain, &bob).await?.session.id;
    let stored = load(&env, &lapsed).await?;
    for _ in 0..2 {
        let advice = ask(&bob, &evict).await?;
        ensure!(
            advice
                == InsertOutcome::Inserted {
                    evicted: vec![oldest]
                },
            "check_limits at an evicting cap: {advice:?}, expected Inserted evicting {oldest}"
        );
    }
    expect_active(&env, &oldest, "the session check_limits would evict").await?;
    ensure!(
        load(&env, &lapsed).await? == stored,
        "check_limits wrote over a lapsed member (it may only report, never write)"
    );
    create(&capped, &bob).await?;
    expect_ended(
        &env,
        &oldest,
        RevokeReason::Evicted,
        "the session the advice named",
    )
    .await?;
    expect_active(&env, &newer, "bob's newer session").await?;

    // The creation rate: advice consumes nothing.
    let rate = build(Policy::builder().creation_rate(Some(Rate {
        max: 2,
        window: mins(1),
    })))?;
    let s = env.sessions(rate.clone())?;
    let carol = subject("carol")?;
    create(&s, &carol).await?;
    for _ in 0..3 {
        let advice = ask(&carol, &rate).await?;
        ensure!(
            advice == InsertOutcome::Inserted { evicted: vec![] },
            "check_limits with one creation of 2 in the window: {advice:?}"
        );
    }
    create(&s, &carol).await?;
    env.advance(secs(20));
    let advice = ask(&carol, &rate).await?;
    let r = s.create(&carol, Default::default()).await;
    match (&advice, &r) {
        (
            InsertOutcome::RateLimited { retry_after: a },
            Err(Error::RateLimited { retry_after: b }),
        ) if a == b && *a == secs(40) => {}
        _ => fail!(
            "the rate is spent: check_limits said {advice:?}, the create got {r:?} (expected \
             both rate limited, retry after 40 s)"
        ),
    }

    // A rejecting global cap, set at the number of sessions live by now.
    let live = store.count_live(&Scope::All, env.now()).await?;
    // (On a sharded store the global cap is an upper bound: accepted explicitly. A store
    // without a global index refuses the policy: checked, and that is the end.)
    let Some(global) = global_capped(
        &env,
        Policy::builder()
            .global_cap(Some(GlobalCap {
                max: live,
                on_full: CapPolicy::Reject,
            }))
            .inexact_global_cap_ok(env.capabilities().sharded),
    )?
    else {
        return Ok(());
    };
    let dave = subject("dave")?;
    let advice = ask(&dave, &global).await?;
    let r = env
        .sessions(global)?
        .create(&dave, Default::default())
        .await;
    ensure!(
        advice == InsertOutcome::GlobalCapReached
            && matches!(
                r,
                Err(Error::LimitReached {
                    limit: Limit::GlobalSessions
                })
            ),
        "at a full global cap: check_limits said {advice:?}, the create got {r:?}"
    );
    Ok(())
}

/// `forget_creation` gives back exactly the named creation's slot in the rate: a refused
/// subject may create once more (only once), and giving back again, giving back an id never
/// logged, or under another subject, gives nothing.
pub(crate) async fn forget_creation_frees_a_rate_slot(env: Env) -> CaseResult {
    let s = env.sessions(build(Policy::builder().creation_rate(Some(Rate {
        max: 2,
        window: mins(60),
    })))?)?;
    let (alice, bob) = (subject("alice")?, subject("bob")?);
    let a = create(&s, &alice).await?.session.id;
    let b = create(&s, &alice).await?.session.id;
    let other = create(&s, &bob).await?.session.id;
    let r = s.create(&alice, Default::default()).await;
    ensure!(
        matches!(r, Err(Error::RateLimited { .. })),
        "3rd create in the window of 2: got {r:?}"
    );
    let store = env.store();
    ensure!(
        !store.forget_creation(&bob, &a).await?,
        "forget_creation under another subject gave a creation back"
    );
    ensure!(
        !store.forget_creation(&alice, &other).await?,
        "forget_creation of another subject's session gave a creation back"
    );
    ensure!(
        store.forget_creation(&alice, &a).await?,
        "forget_creation of a logged creation answered false"
    );
    ensure!(
        !store.forget_creation(&alice, &a).await?,
        "a second forget_creation of the same session gave another creation back"
    );
    create(&s, &alice).await?;
    let r = s.create(&alice, Default::default()).await;
    ensure!(
        matches!(r, Err(Error::RateLimited { .. })),
        "one creation given back admitted a second create: got {r:?}"
    );
    ensure!(
        store.forget_creation(&alice, &b).await?,
        "forget_creation of alice's other creation answered false"
    );
    Ok(())
}

/// A global cap of 4 that evicts: every create is admitted, the store keeps 4 live, and the
/// one evicted is always the store's oldest in creation order — by creation time first, and
/// among four created in the same millisecond, in the order they were created (never by id).
pub(crate) async fn global_cap_evicts_the_stores_oldest(env: Env) -> CaseResult {
    let Some(policy) = global_capped(
        &env,
        Policy::builder().global_cap(Some(GlobalCap {
            max: 4,
            on_full: CapPolicy::EvictOldest,
        })),
    )?
    else {
        return Ok(());
    };
    let s = env.sessions(policy)?;
    let first = create(&s, &subject("user-0")?).await?.session.id;
    env.advance(ms(1));
    let mut same_ms = Vec::new();
    for i in 1..4 {
        same_ms.push(
            create(&s, &subject(&format!("user-{i}"))?)
                .await?
                .session
                .id,
        );
    }
    let mut queue = vec![first];
    queue.extend(same_ms.iter().copied());
    // Then four more in that same millisecond: each must evict the oldest left.
    for i in 4..8 {
        let made = create(&s, &subject(&format!("user-{i}"))?)
            .await?
            .session
            .id;
        let gone = queue.remove(0);
        expect_ended(
            &env,
            &gone,
            RevokeReason::Evicted,
            &format!("create #{i}'s oldest"),
        )
        .await?;
        for id in &queue {
            expect_active(&env, id, &format!("a newer session after create #{i}")).await?;
        }
        queue.push(made);
        let live = env.store().count_live(&Scope::All, env.now()).await?;
        ensure!(
            live == 4,
            "{live} live sessions under an evicting global cap of 4"
        );
    }
    Ok(())
}

/// A subject cap that evicts and a global cap that rejects, the store at the global cap: a
/// subject at its own cap still creates (its eviction makes the room), one below it is
/// refused. With both caps evicting over a store above the global cap, the subject's oldest
/// is evicted first, then the store's oldest, and the create reports them in that order.
pub(crate) async fn subject_eviction_makes_room_under_global_cap(env: Env) -> CaseResult {
    let Some(both) = global_capped(
        &env,
        Policy::builder()
            .subject_cap(Some(SubjectCap {
                max: 2,
                on_full: CapPolicy::EvictOldest,
            }))
            .global_cap(Some(GlobalCap {
                max: 3,
                on_full: CapPolicy::Reject,
            })),
    )?
    else {
        return Ok(());
    };
    let s = env.sessions(both)?;
    let (alice, bob) = (subject("alice")?, subject("bob")?);
    let a1 = create(&s, &alice).await?.session.id;
    env.advance(ms(1));
    let a2 = create(&s, &alice).await?.session.id;
    env.advance(ms(1));
    create(&s, &bob).await?;
    let r = s.create(&bob, Default::default()).await;
    ensure!(
        matches!(
            r,
            Err(Error::LimitReached {
                limit: Limit::GlobalSessions
            })
        ),
        "bob below his cap, the store at the global cap: expected GlobalSessions, got {r:?}"
    );
    let r = s.create(&alice, Default::default()).await;
    ensure!(
        r.is_ok(),
        "alice at her evicting cap, the store at the global cap: her own eviction makes room, \
         got {r:?}"
    );
    expect_ended(&env, &a1, RevokeReason::Evicted, "alice's oldest").await?;
    expect_active(&env, &a2, "alice's newer session").await?;
    let live = env.store().count_live(&Scope::All, env.now()).await?;
    ensure!(live == 3, "{live} live sessions under a global cap of 3");

    // Both caps evicting, the store above the global cap (filled under no cap).
    let open: S = env.sessions(default_policy())?;
    let carol = subject("carol")?;
    env.advance(ms(1));
    let c1 = create(&open, &carol).await?.session.id;
    env.advance(ms(1));
    create(&open, &carol).await?;
    let sink = CollectingSink::default();
    let evicting = Sessions::new(
        env.store().clone(),
        build(
            Policy::builder()
                .subject_cap(Some(SubjectCap {
                    max: 2,
                    on_full: CapPolicy::EvictOldest,
                }))
                .global_cap(Some(GlobalCap {
                    max: 4,
                    on_full: CapPolicy::EvictOldest,
                })),
        )?,
    )?
    .with_clock(env.clock().clone())
    .with_entropy(env.entropy().clone())
    .with_events(sink.clone());
    // 5 live (alice 2, bob 1, carol 2): carol's create evicts her oldest (c1), leaving 4 with
    // hers, so the global cap evicts the store's oldest (alice's a2), leaving 4.
    create_evicting(&evicting, &carol).await?;
    let evicted: Vec<SessionId> = sink
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Evicted { id } => Some(*id),
            _ => None,
        })
        .collect();
    ensure!(
        evicted == [c1, a2],
        "evictions under both caps: {evicted:?}, expected the subject's oldest {c1} then the \
         store's oldest {a2}"
    );
    let live = env.store().count_live(&Scope::All, env.now()).await?;
    ensure!(
        live == 4,
        "{live} live sessions under an evicting global cap of 4"
    );
    Ok(())
}

async fn create_evicting(s: &Sessions<DynStore>, who: &Subject) -> CaseResult {
    s.create(who, Default::default()).await?;
    Ok(())
}

/// A session with a 100-year lifetime keeps its tombstone only `TOMBSTONE_RETENTION`: not
/// reaped a second before, reaped (and reported with its reason) once it has passed; a live
/// session of the same lifetime stays.
pub(crate) async fn long_session_tombstone_reaped_after_retention(env: Env) -> CaseResult {
    let s = env.sessions(build(
        Policy::builder()
            .no_absolute_lifetime()
            .idle_timeout(None)
            .renewal_interval(None),
    )?)?;
    let alice = subject("alice")?;
    let revoked = create(&s, &alice).await?.session.id;
    let live = create(&s, &subject("bob")?).await?.session.id;
    revoke_live(&s, &revoked).await?;
    match load(&env, &revoked).await? {
        Some(r) if r.expires_at <= env.now().saturating_add(TOMBSTONE_RETENTION) => {}
        other => fail!(
            "a tombstone must be kept at most TOMBSTONE_RETENTION after its revocation: got \
             {other:?}"
        ),
    }
    env.advance(TOMBSTONE_RETENTION.saturating_sub(secs(1)));
    let out = s.reap(100).await?;
    ensure!(
        out.sessions == 0 && load(&env, &revoked).await?.is_some(),
        "reap a second before the retention ended removed {} sessions",
        out.sessions
    );
    env.advance(secs(1));
    let out = s.reap(100).await?;
    let ended: Vec<_> = out.ended.iter().map(|e| (e.id, e.reason)).collect();
    ensure!(
        out.sessions == 1 && ended == [(revoked, Some(RevokeReason::Revoked))],
        "reap once the retention passed: {} removed, reported {ended:?}, expected the tombstone",
        out.sessions
    );
    ensure!(
        load(&env, &revoked).await?.is_none(),
        "the tombstone is still stored after the reap"
    );
    expect_active(&env, &live, "the 100-year session").await
}
