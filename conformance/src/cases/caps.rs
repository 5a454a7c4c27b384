//! INV-caps: live sessions per subject ≤ max (reject or evict-oldest, in the insert's atomic
//! step), the global cap and creation rate hold, and live slots per session/resource ≤ max,
//! under any number of concurrent creators.

use leasehold::{CapPolicy, Context, Error, Limit, Policy, Rate, RevokeReason, SubjectCap};

use super::{build, create, default_policy, ended_by, global_capped, revoke_live, text, validates};
use crate::env::{
    CaseResult, Env, count, describe, ensure, fail, mins, ms, race, resource, secs, subject,
};

fn cap(max: u32, on_full: CapPolicy) -> Result<Policy, crate::env::CaseError> {
    build(
        Policy::builder()
            .subject_cap(Some(SubjectCap { max, on_full }))
            .renewal_interval(None),
    )
}

fn is_limit(r: &Result<impl std::fmt::Debug, Error>, want: Limit) -> bool {
    matches!(r, Err(Error::LimitReached { limit }) if *limit == want)
}

/// Cap 3 with `Reject`: the 4th create is refused until one of the three is revoked; other
/// subjects are unaffected.
pub(crate) async fn subject_cap_reject(env: Env) -> CaseResult {
    let s = env.sessions(cap(3, CapPolicy::Reject)?)?;
    let alice = subject("alice")?;
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(create(&s, &alice).await?);
    }
    let r = s.create(&alice, Default::default()).await;
    ensure!(
        is_limit(&r, Limit::SubjectSessions),
        "4th create under cap 3: expected LimitReached(SubjectSessions), got {r:?}"
    );
    create(&s, &subject("bob")?).await?;
    revoke_live(&s, &made[0].session.id).await?;
    create(&s, &alice).await?;
    let r = s.create(&alice, Default::default()).await;
    ensure!(
        is_limit(&r, Limit::SubjectSessions),
        "create over the cap after a replacement: got {r:?}"
    );
    let live = s.list(&alice).await?.len();
    ensure!(live == 3, "alice has {live} live sessions under cap 3");
    Ok(())
}

/// Cap 2 with `EvictOldest`: each new session revokes the oldest (reason `Evicted`).
pub(crate) async fn subject_cap_evict_oldest(env: Env) -> CaseResult {
    let s = env.sessions(cap(2, CapPolicy::EvictOldest)?)?;
    let alice = subject("alice")?;
    let mut made = Vec::new();
    for _ in 0..4 {
        made.push(create(&s, &alice).await?);
        env.advance(ms(1));
    }
    for (i, c) in made.iter().enumerate() {
        let r = s.validate(text(c), &Context::none()).await;
        if i < 2 {
            ensure!(
                matches!(
                    r,
                    Err(Error::Revoked {
                        reason: RevokeReason::Evicted
                    })
                ),
                "session #{i} (of the 2 oldest): expected Revoked(Evicted), got {r:?}"
            );
        } else {
            ensure!(r.is_ok(), "session #{i} (of the 2 newest): got {r:?}");
        }
    }
    let listed: Vec<_> = s.list(&alice).await?.into_iter().map(|x| x.id).collect();
    let want = vec![made[2].session.id, made[3].session.id];
    ensure!(
        listed == want,
        "list after evictions: {listed:?}, expected the 2 newest {want:?}"
    );
    Ok(())
}

/// 64 concurrent creates for one subject under cap 5 `Reject`: exactly 5 succeed.
pub(crate) async fn cap_race_reject(env: Env) -> CaseResult {
    let s = env.sessions(cap(5, CapPolicy::Reject)?)?;
    let alice = subject("alice")?;
    let results = race(64, |_| {
        let (s, alice) = (s.clone(), alice.clone());
        async move {
            s.create(&alice, Default::default())
                .await
                .map(|c| c.token.expose_secret().to_owned())
        }
    })
    .await?;
    let ok = count(&results, |r| r.is_ok());
    let refused = count(&results, |r| is_limit(r, Limit::SubjectSessions));
    ensure!(
        ok == 5 && refused == 59,
        "64 racing creates under cap 5: {ok} created, {refused} refused (expected 5 and 59): {}",
        describe(&results)
    );
    let live = s.list(&alice).await?.len();
    ensure!(live == 5, "{live} live sessions after the race");
    for t in results.iter().flatten() {
        ensure!(
            validates(&s, t).await,
            "a created session does not validate"
        );
    }
    Ok(())
}

/// 64 concurrent creates under cap 5 `EvictOldest`: all succeed, exactly 5 stay live and the
/// other 59 are revoked as evicted.
pub(crate) async fn cap_race_evict_oldest(env: Env) -> CaseResult {
    let s = env.sessions(cap(5, CapPolicy::EvictOldest)?)?;
    let alice = subject("alice")?;
    let results = race(64, |_| {
        let (s, alice) = (s.clone(), alice.clone());
        async move {
            s.create(&alice, Default::default())
                .await
                .map(|c| c.token.expose_secret().to_owned())
        }
    })
    .await?;
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    ensure!(
        failed.is_empty(),
        "{} creates failed under EvictOldest: {}",
        failed.len(),
        describe(&failed)
    );
    let live = s.list(&alice).await?.len();
    ensure!(live == 5, "{live} live sessions after the race, expected 5");
    let (mut valid, mut evicted) = (0, 0);
    for t in results.iter().flatten() {
        match s.validate(t, &Context::none()).await {
            Ok(_) => valid += 1,
            Err(Error::Revoked {
                reason: RevokeReason::Evicted,
            }) => evicted += 1,
            Err(e) => fail!("a raced session: unexpected {e:?}"),
        }
    }
    ensure!(
        valid == 5 && evicted == 59,
        "{valid} valid and {evicted} evicted, expected 5 and 59"
    );
    Ok(())
}

/// Revoked and expired sessions do not count against the cap.
pub(crate) async fn dead_sessions_do_not_count(env: Env) -> CaseResult {
    let s = env.sessions(cap(1, CapPolicy::Reject)?)?;
    let alice = subject("alice")?;
    let a = create(&s, &alice).await?;
    revoke_live(&s, &a.session.id).await?;
    let b = create(&s, &alice).await?;
    env.set_time(b.session.expires_at);
    create(&s, &alice).await?;
    let r = s.create(&alice, Default::default()).await;
    ensure!(
        is_limit(&r, Limit::SubjectSessions),
        "cap 1 with one live session: expected LimitReached, got {r:?}"
    );
    Ok(())
}

/// A global cap of 3 live sessions across subjects.
pub(crate) async fn global_cap(env: Env) -> CaseResult {
    // A sharded store's global cap is an upper bound (accepted explicitly): it must still never
    // let a 4th session in, but may keep counting a revoked one until its absolute deadline.
    // A store without a global index must refuse the policy instead.
    let sharded = env.capabilities().sharded;
    let Some(policy) = global_capped(
        &env,
        Policy::builder()
            .global_cap(Some(leasehold::GlobalCap {
                max: 3,
                on_full: leasehold::CapPolicy::Reject,
            }))
            .inexact_global_cap_ok(sharded),
    )?
    else {
        return Ok(());
    };
    let s = env.sessions(policy)?;
    let mut made = Vec::new();
    for i in 0..3 {
        made.push(create(&s, &subject(&format!("user-{i}"))?).await?);
    }
    let r = s.create(&subject("user-3")?, Default::default()).await;
    ensure!(
        is_limit(&r, Limit::GlobalSessions),
        "4th session under global cap 3: expected LimitReached(GlobalSessions), got {r:?}"
    );
    revoke_live(&s, &made[1].session.id).await?;
    if !sharded {
        create(&s, &subject("user-3")?).await?;
    }
    Ok(())
}

/// At most 3 creations per subject per rolling minute; the refusal says when to retry, and a
/// retry then succeeds.
pub(crate) async fn creation_rate_limit(env: Env) -> CaseResult {
    let s = env.sessions(build(Policy::builder().creation_rate(Some(Rate {
        max: 3,
        window: mins(1),
    })))?)?;
    let alice = subject("alice")?;
    for _ in 0..3 {
        create(&s, &alice).await?;
        env.advance(secs(10));
    }
    let retry_after = match s.create(&alice, Default::default()).await {
        Err(Error::RateLimited { retry_after }) => retry_after,
        other => fail!("4th create in a minute: expected RateLimited, got {other:?}"),
    };
    ensure!(
        retry_after > secs(0) && retry_after <= secs(30),
        "retry_after {retry_after:?}, expected (0, 30 s]: the oldest creation leaves the window \
         in 30 s"
    );
    create(&s, &subject("bob")?).await?;
    env.advance(retry_after);
    create(&s, &alice).await?;
    Ok(())
}

/// 32 concurrent slot acquisitions on one session under a per-session cap of 3.
pub(crate) async fn slot_cap_per_session_race(env: Env) -> CaseResult {
    let s = env.sessions(build(Policy::builder().max_slots_per_session(Some(3)))?)?;
    let c = create(&s, &subject("alice")?).await?;
    let id = c.session.id;
    let results = race(32, |_| {
        let s = s.clone();
        async move { s.acquire_slot(&id, None).await }
    })
    .await?;
    let ok = count(&results, |r| r.is_ok());
    let refused = count(&results, |r| is_limit(r, Limit::SessionSlots));
    ensure!(
        ok == 3 && refused == 29,
        "32 racing acquisitions under a per-session cap of 3: {ok} acquired, {refused} refused: {}",
        describe(&results)
    );
    Ok(())
}

/// 16 sessions race for one resource under a per-resource cap of 4.
pub(crate) async fn slot_cap_per_resource_race(env: Env) -> CaseResult {
    let s = env.sessions(build(Policy::builder().max_slots_per_resource(Some(4)))?)?;
    let mut ids = Vec::new();
    for i in 0..16 {
        ids.push(
            create(&s, &subject(&format!("user-{i}"))?)
                .await?
                .session
                .id,
        );
    }
    let term = resource("terminal-1")?;
    let results = race(16, |i| {
        let (s, id, term) = (s.clone(), ids[i], term.clone());
        async move { s.acquire_slot(&id, Some(&term)).await }
    })
    .await?;
    let ok = count(&results, |r| r.is_ok());
    let refused = count(&results, |r| is_limit(r, Limit::ResourceSlots));
    ensure!(
        ok == 4 && refused == 12,
        "16 racing acquisitions under a per-resource cap of 4: {ok} acquired, {refused} refused"
    );
    let other = resource("terminal-2")?;
    s.acquire_slot(&ids[0], Some(&other)).await?;
    Ok(())
}

/// Both caps at once (2 per session, 5 per resource), 4 sessions × 4 racing acquisitions:
/// exactly 5 acquired, none of the sessions holding more than 2.
pub(crate) async fn slot_caps_both_race(env: Env) -> CaseResult {
    let s = env.sessions(build(
        Policy::builder()
            .max_slots_per_session(Some(2))
            .max_slots_per_resource(Some(5)),
    )?)?;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            create(&s, &subject(&format!("user-{i}"))?)
                .await?
                .session
                .id,
        );
    }
    let term = resource("terminal-1")?;
    let results = race(16, |i| {
        let (s, id, term) = (s.clone(), ids[i % 4], term.clone());
        async move { (i % 4, s.acquire_slot(&id, Some(&term)).await) }
    })
    .await?;
    let ok = count(&results, |(_, r)| r.is_ok());
    ensure!(
        ok == 5,
        "{ok} slots acquired, expected exactly 5 (the resource cap)"
    );
    for sess in 0..4 {
        let held = count(&results, |(i, r)| *i == sess && r.is_ok());
        ensure!(
            held <= 2,
            "session #{sess} holds {held} slots under a cap of 2"
        );
    }
    let odd: Vec<_> = results
        .iter()
        .filter(|(_, r)| {
            !(r.is_ok() || is_limit(r, Limit::SessionSlots) || is_limit(r, Limit::ResourceSlots))
        })
        .collect();
    ensure!(odd.is_empty(), "unexpected outcomes: {}", describe(&odd));
    Ok(())
}

/// Released and expired slots free their capacity.
pub(crate) async fn slot_release_and_expiry_free_capacity(env: Env) -> CaseResult {
    let s = env.sessions(build(
        Policy::builder()
            .max_slots_per_session(Some(1))
            .slot_ttl(secs(60)),
    )?)?;
    let c = create(&s, &subject("alice")?).await?;
    let id = c.session.id;
    let first = s.acquire_slot(&id, None).await?;
    let r = s.acquire_slot(&id, None).await;
    ensure!(
        is_limit(&r, Limit::SessionSlots),
        "second slot under cap 1: got {r:?}"
    );
    ensure!(
        s.release_slot(&first.id).await?,
        "release of a held slot returned false"
    );
    let second = s.acquire_slot(&id, None).await?;
    env.set_time(second.expires_at);
    s.acquire_slot(&id, None).await.map_err(|e| {
        crate::env::CaseError(format!("an expired slot still holds capacity: {e:?}"))
    })?;
    Ok(())
}

/// A heartbeat extends a slot by the slot TTL; a slot not heartbeated in time is lost.
pub(crate) async fn slot_heartbeat_extends_then_lapses(env: Env) -> CaseResult {
    let s = env.sessions(build(
        Policy::builder()
            .max_slots_per_session(Some(1))
            .slot_ttl(secs(60)),
    )?)?;
    let c = create(&s, &subject("alice")?).await?;
    let id = c.session.id;
    let slot = s.acquire_slot(&id, None).await?;
    env.advance(secs(50));
    let beat = s.heartbeat_slot(&slot.id).await?;
    ensure!(
        beat.expires_at == env.now().saturating_add(secs(60)),
        "heartbeat set expiry {:?}, expected now + 60 s",
        beat.expires_at
    );
    env.advance(secs(20)); // past the original expiry, before the extended one
    let r = s.acquire_slot(&id, None).await;
    ensure!(
        is_limit(&r, Limit::SessionSlots),
        "a heartbeated slot stopped counting: {r:?}"
    );
    env.set_time(beat.expires_at);
    match s.heartbeat_slot(&slot.id).await {
        Err(Error::SlotLost) => {}
        other => fail!("heartbeat at the slot's expiry: expected SlotLost, got {other:?}"),
    }
    s.acquire_slot(&id, None).await?;
    Ok(())
}

/// No slot on a revoked, expired or unknown session; a held slot is lost when its session is
/// revoked.
pub(crate) async fn slot_on_dead_session_refused(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let alice = subject("alice")?;
    let a = create(&s, &alice).await?;
    let held = s.acquire_slot(&a.session.id, None).await?;
    revoke_live(&s, &a.session.id).await?;
    match s.heartbeat_slot(&held.id).await {
        Err(Error::SlotLost) => {}
        other => fail!("heartbeat after the session was revoked: expected SlotLost, got {other:?}"),
    }
    let r = s.acquire_slot(&a.session.id, None).await;
    ensure!(
        matches!(
            r,
            Err(Error::Revoked {
                reason: RevokeReason::Revoked
            })
        ),
        "slot on a revoked session: expected Revoked(Revoked), got {r:?}"
    );
    let b = create(&s, &alice).await?;
    env.set_time(b.session.expires_at);
    let r = s.acquire_slot(&b.session.id, None).await;
    ensure!(
        matches!(r, Err(Error::Expired)),
        "slot on an expired session: expected Expired, got {r:?}"
    );
    // Being told `Expired` means the ending is durable: the store holds its tombstone.
    match env.store().load_session(&b.session.id).await?.record {
        Some(rec) if ended_by(&rec) == Some(RevokeReason::Expired) => {}
        other => fail!(
            "after acquire_slot answered Expired: expected an Expired tombstone, got {other:?}"
        ),
    }
    let ghost = leasehold::SessionId::from_bytes([7; leasehold::ID_TEXT_LEN / 2]);
    let r = s.acquire_slot(&ghost, None).await;
    ensure!(
        matches!(r, Err(Error::NotAuthenticated)),
        "slot on an unknown session: got {r:?}"
    );
    Ok(())
}

/// A slot counts against a cap only while its session is live: revoking a session frees its
/// slots' capacity at once, not after their TTL.
pub(crate) async fn revoked_session_frees_slot_capacity(env: Env) -> CaseResult {
    let s = env.sessions(build(
        Policy::builder()
            .max_slots_per_resource(Some(1))
            .max_slots_per_session(Some(1)),
    )?)?;
    let r = resource("sandbox-1")?;
    let a = create(&s, &subject("alice")?).await?;
    let b = create(&s, &subject("bob")?).await?;
    s.acquire_slot(&a.session.id, Some(&r)).await?;
    let blocked = s.acquire_slot(&b.session.id, Some(&r)).await;
    ensure!(
        is_limit(&blocked, Limit::ResourceSlots),
        "second slot on a resource capped at 1: got {blocked:?}"
    );
    revoke_live(&s, &a.session.id).await?;
    let freed = s.acquire_slot(&b.session.id, Some(&r)).await;
    ensure!(
        freed.is_ok(),
        "after revoking the holder, the resource slot is still taken: {freed:?}"
    );
    Ok(())
}

/// With more creations in the window than the limit (the limit was lowered, or several
/// processes with different policies share the store), `retry_after` is when enough of them
/// have left the window for one more — the (count − max + 1)-th oldest, not the oldest — and a
/// client that waits exactly that long is admitted, never refused again.
pub(crate) async fn rate_retry_after_with_a_lowered_limit(env: Env) -> CaseResult {
    let rate = |max| {
        build(Policy::builder().creation_rate(Some(Rate {
            max,
            window: secs(60),
        })))
    };
    let generous = env.sessions(rate(3)?)?;
    let strict = env.sessions(rate(2)?)?;
    let alice = subject("alice")?;
    for _ in 0..3 {
        create(&generous, &alice).await?;
        env.advance(secs(10));
    }
    // Creations at t0, t0+10 s, t0+20 s; now t0+30 s. Under a limit of 2, one more fits once
    // the creation at t0+10 s leaves the window: at t0+70 s, in 40 s (not 30 s).
    let wait = match strict.create(&alice, Default::default()).await {
        Err(Error::RateLimited { retry_after }) => retry_after,
        other => fail!("over a lowered limit: expected RateLimited, got {other:?}"),
    };
    ensure!(wait == secs(40), "retry_after {wait:?}, expected 40 s");
    env.advance(wait - ms(1));
    ensure!(
        matches!(
            strict.create(&alice, Default::default()).await,
            Err(Error::RateLimited { .. })
        ),
        "admitted 1 ms before retry_after"
    );
    env.advance(ms(1));
    create(&strict, &alice).await?;
    Ok(())
}
