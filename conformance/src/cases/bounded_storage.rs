//! INV-bounded-storage: everything expired or revoked is reclaimed (reaper or native expiry),
//! nothing live is, and a reap removes at most its batch limit, counting only what it removes.
//!
//! The exact-count cases need the store's own reaper (requirement `reaper`): a store with
//! `native_expiry` reclaims records on its server's clock and its `reap` cleans index entries
//! only. For such stores the `native_expiry_*` cases check instead that an expired record is
//! never served nor writable, and that every key carries a TTL no later than its record's
//! deadline.

use std::collections::{BTreeMap, BTreeSet};

use leasehold::decide::slot::{caps as slot_caps, new_slot};
use leasehold::decide::ticket::mint;
use leasehold::store::{
    HeartbeatOutcome, KeyDeadline, KeyHolds, ReapOutcome, SlotOutcome, StoreError, TakeOutcome,
};
use leasehold::{
    CapPolicy, Context, CreateOptions, Error, Policy, Rate, SessionId, SlotId, SubjectCap,
    TicketId, Timestamp,
};

use super::{S, build, create, default_policy, revoke_live, text, validates};
use crate::env::{
    CaseError, CaseResult, Env, describe, ensure, fail, mins, race, resource, secs, subject,
};

/// Expired sessions are all reaped; afterwards they neither load, list nor validate.
pub(crate) async fn reap_removes_expired(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let alice = subject("alice")?;
    let mut made = Vec::new();
    for _ in 0..10 {
        made.push(create(&s, &alice).await?);
    }
    env.set_time(made[0].session.expires_at);
    let r = s.reap(1000).await?;
    ensure!(
        r.sessions == 10,
        "reaped {} of 10 expired sessions",
        r.sessions
    );
    for c in &made {
        ensure!(
            env.store()
                .load_session(&c.session.id)
                .await?
                .record
                .is_none(),
            "a reaped session still loads"
        );
        match s.validate(text(c), &Context::none()).await {
            Err(Error::NotAuthenticated) => {}
            other => fail!("a reaped session: expected NotAuthenticated, got {other:?}"),
        }
    }
    let listed = env.store().list_subject(&alice).await?.len();
    ensure!(
        listed == 0,
        "list_subject still returns {listed} reaped records"
    );
    let r = s.reap(1000).await?;
    ensure!(
        r.total() == 0,
        "a second reap removed {} records",
        r.total()
    );
    Ok(())
}

/// With 10 expired and 10 live sessions, reap removes exactly the 10 expired.
pub(crate) async fn reap_never_removes_live(env: Env) -> CaseResult {
    let s = env.sessions(build(Policy::builder().renewal_interval(None))?)?;
    let alice = subject("alice")?;
    let mut old = Vec::new();
    for _ in 0..10 {
        old.push(create(&s, &alice).await?);
    }
    env.advance(mins(20));
    let mut young = Vec::new();
    for _ in 0..10 {
        young.push(create(&s, &alice).await?);
    }
    env.set_time(old[0].session.expires_at);
    let r = s.reap(1000).await?;
    ensure!(
        r.sessions == 10,
        "reaped {} sessions, expected the 10 expired",
        r.sessions
    );
    for c in &young {
        ensure!(validates(&s, &text(c)).await, "reap removed a live session");
    }
    for c in &old {
        ensure!(
            env.store()
                .load_session(&c.session.id)
                .await?
                .record
                .is_none(),
            "an expired session survived the reap"
        );
    }
    Ok(())
}

/// `reap(now, limit)` removes at most `limit` records per call and finishes the backlog over
/// successive calls.
pub(crate) async fn reap_batch_limit(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let mut last = None;
    for i in 0..25 {
        last = Some(create(&s, &subject(&format!("user-{}", i % 4))?).await?);
    }
    let Some(last) = last else {
        fail!("nothing created");
    };
    env.set_time(last.session.expires_at);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(s.reap(10).await?.sessions);
    }
    ensure!(
        got == [10, 10, 5, 0],
        "successive reaps with limit 10 over 25 expired sessions removed {got:?}, expected \
         [10, 10, 5, 0]"
    );
    Ok(())
}

/// 300 live sessions do not count against the batch limit, and are all kept: reaps with
/// limit 2 over 3 expired sessions remove 2, 1, 0.
pub(crate) async fn reap_limit_ignores_live_volume(env: Env) -> CaseResult {
    let s = env.sessions(build(Policy::builder().renewal_interval(None))?)?;
    let mut expiring = Vec::new();
    for i in 0..3 {
        expiring.push(create(&s, &subject(&format!("old-{i}"))?).await?);
    }
    env.advance(mins(10));
    let subjects: Vec<_> = (0..5)
        .map(|i| subject(&format!("live-{i}")))
        .collect::<Result<_, _>>()?;
    for i in 0..300 {
        create(&s, &subjects[i % 5]).await?;
    }
    env.set_time(expiring[0].session.expires_at);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(s.reap(2).await?.total());
    }
    ensure!(
        got == [2, 1, 0],
        "reaps with limit 2 (3 expired among 300 live) removed {got:?}, expected [2, 1, 0]"
    );
    let mut live = 0;
    for who in &subjects {
        live += s.list(who).await?.len();
    }
    ensure!(
        live == 300,
        "{live} of 300 live sessions remain after reaping"
    );
    Ok(())
}

/// Expired tickets and slots are reaped (and counted as such); their session is not.
pub(crate) async fn reap_tickets_and_slots(env: Env) -> CaseResult {
    let s = env.sessions(build(
        Policy::builder()
            .ticket_ttl(secs(30))
            .slot_ttl(secs(60))
            .renewal_interval(None),
    )?)?;
    let c = create(&s, &subject("alice")?).await?;
    let mut tickets = Vec::new();
    for _ in 0..3 {
        tickets.push(s.mint_ticket(text(&c), &Context::none()).await?);
    }
    let mut slots = Vec::new();
    for _ in 0..2 {
        slots.push(s.acquire_slot(&c.session.id, None).await?);
    }
    env.advance(secs(60));
    let r = s.reap(1000).await?;
    ensure!(
        r.tickets == 3 && r.slots == 2 && r.sessions == 0,
        "reap removed {r:?}, expected 3 tickets, 2 slots, 0 sessions"
    );
    for t in &tickets {
        ensure!(
            s.redeem_ticket(t.ticket.expose_secret()).await.is_err(),
            "a reaped ticket was redeemed"
        );
    }
    for l in &slots {
        ensure!(
            s.heartbeat_slot(&l.id).await.is_err(),
            "a reaped slot was heartbeated"
        );
    }
    ensure!(
        validates(&s, &text(&c)).await,
        "the session was reaped with its tickets"
    );
    Ok(())
}

/// Tombstones are reaped at their deadline together with expired sessions, not before.
pub(crate) async fn reap_tombstones_after_deadline(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let alice = subject("alice")?;
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(create(&s, &alice).await?);
    }
    for c in &made[..3] {
        revoke_live(&s, &c.session.id).await?;
    }
    let r = s.reap(1000).await?;
    ensure!(
        r.sessions == 0,
        "reaped {} sessions before any deadline",
        r.sessions
    );
    let stored = env.store().list_subject(&alice).await?.len();
    ensure!(
        stored == 5,
        "{stored} of 5 records (3 tombstones) are stored before the deadline"
    );
    env.set_time(made[0].session.expires_at);
    let r = s.reap(1000).await?;
    ensure!(
        r.sessions == 5,
        "reaped {} sessions at the deadline, expected 3 tombstones + 2 expired",
        r.sessions
    );
    Ok(())
}

/// A store with native expiry never serves a record past its deadline as live, nor lets it be
/// written, whether its server has removed the record yet or not. At the session's deadline
/// (the case's clock): the record loads as absent or not live; a compare-and-swap of a touch is
/// `NotFound`; a ticket due with the session is not `Taken`; a slot still unexpired by its own
/// TTL is not `Extended` (its session is not live) and no new slot is acquired; `validate`,
/// `refresh` and `update_data` are denied; 12 refreshes racing 4 reaps get no successor; and
/// `reap` counts only what it removed. Nothing of it validates afterwards.
pub(crate) async fn native_expiry_never_serves_expired(env: Env) -> CaseResult {
    let policy = build(
        Policy::builder()
            .renewal_interval(None)
            .ticket_ttl(mins(60))
            .slot_ttl(mins(5)),
    )?;
    let s = env.sessions(policy.clone())?;
    let alice = subject("alice")?;
    let c = create(&s, &alice).await?;
    let raced = create(&s, &alice).await?;
    let id = c.session.id;
    let deadline = c.session.expires_at;
    ensure!(
        raced.session.expires_at == deadline,
        "two sessions created at one time have different deadlines"
    );

    env.set_time(deadline.saturating_sub(secs(10)));
    let Some(rec) = env.store().load_session(&id).await?.record else {
        fail!("a new session does not load");
    };
    ensure!(
        rec.is_live(env.now()),
        "the session is not live 10 s before its deadline"
    );
    let (ticket, _) = mint(&rec, env.now(), &policy, env.entropy())
        .map_err(|e| CaseError(format!("entropy failed: {e}")))?;
    ensure!(
        ticket.expires_at == deadline,
        "a ticket minted 10 s before the session's deadline with a 60 min TTL expires at {}, \
         expected with the session ({deadline})",
        ticket.expires_at
    );
    env.store().put_ticket(&ticket).await?;
    let lease = s.acquire_slot(&id, None).await?;
    ensure!(
        lease.expires_at > deadline,
        "a 5 min slot acquired 10 s before the deadline expires at {}, not after it",
        lease.expires_at
    );

    env.set_time(deadline);
    let at = env.now();
    if let Some(r) = env.store().load_session(&id).await?.record {
        ensure!(!r.is_live(at), "a record past its deadline loads as live");
    }
    let mut touched = rec.clone();
    touched.version = rec.version.wrapping_add(1);
    touched.last_seen = at;
    touched.expires_at = at.saturating_add(mins(30)).min(rec.absolute_deadline);
    match env
        .store()
        .compare_and_swap(&touched, rec.version, at)
        .await
    {
        Err(StoreError::NotFound) => {}
        other => fail!("CAS of a touch at the deadline: expected NotFound, got {other:?}"),
    }
    match env
        .store()
        .take_ticket(&ticket.id, &ticket.verifier, at)
        .await?
    {
        TakeOutcome::Expired | TakeOutcome::Missing => {}
        other => fail!("take of a ticket due with its session, at the deadline: got {other:?}"),
    }
    match env
        .store()
        .heartbeat_slot(&lease.id, at.saturating_add(mins(5)), at)
        .await?
    {
        HeartbeatOutcome::SessionNotLive | HeartbeatOutcome::Missing => {}
        other => fail!(
            "heartbeat of an unexpired slot whose session is past its deadline: expected \
             SessionNotLive, got {other:?}"
        ),
    }
    let slot = new_slot(&id, None, at, &policy, env.entropy())
        .map_err(|e| CaseError(format!("entropy failed: {e}")))?;
    match env
        .store()
        .acquire_slot(&slot, &slot_caps(&policy), at)
        .await
    {
        Ok(SlotOutcome::SessionNotLive) => {}
        other => {
            fail!("acquire_slot at the session's deadline: expected SessionNotLive, got {other:?}")
        }
    }
    match s.validate(text(&c), &Context::none()).await {
        Err(Error::Expired | Error::NotAuthenticated) => {}
        other => {
            fail!("validate at the deadline: expected Expired or NotAuthenticated, got {other:?}")
        }
    }
    match s.refresh(text(&c), &Context::none()).await {
        Err(Error::Expired | Error::NotAuthenticated) => {}
        other => {
            fail!("refresh at the deadline: expected Expired or NotAuthenticated, got {other:?}")
        }
    }
    match s.update_data(&id, rec.data_version, b"x").await {
        Err(Error::Expired | Error::NotAuthenticated) => {}
        other => fail!(
            "update_data at the deadline: expected Expired or NotAuthenticated, got {other:?}"
        ),
    }

    let reaped = refreshes_race_reaps(&s, &text(&raced)).await?;
    let last = s.reap(1000).await?;
    let mut gone = 0;
    for sid in [id, raced.session.id] {
        match env.store().load_session(&sid).await?.record {
            None => gone += 1,
            Some(r) => ensure!(!r.is_live(env.now()), "a record past its deadline is live"),
        }
    }
    let counted = reaped.sessions + last.sessions;
    ensure!(
        counted <= gone,
        "reaps counted {counted} sessions removed, but only {gone} of the 2 expired ones are gone"
    );
    ensure!(
        reaped.tickets + last.tickets == 0 && reaped.slots + last.slots == 0,
        "reaps counted tickets or slots removed ({reaped:?}, {last:?}), but the only ticket was \
         already taken and the only slot deleted by its heartbeat"
    );
    for (c, what) in [(&c, "the session"), (&raced, "the raced session")] {
        ensure!(
            !validates(&s, &text(c)).await,
            "{what} validates after its deadline"
        );
    }
    Ok(())
}

/// 12 refreshes race 4 reaps of an expired session: no refresh succeeds. Returns what the
/// reaps counted, summed.
async fn refreshes_race_reaps(s: &S, token: &str) -> Result<ReapOutcome, CaseError> {
    enum R {
        Refresh(Result<(), Error>),
        Reap(Result<ReapOutcome, Error>),
    }
    let results = race(16, |i| {
        let (s, t) = (s.clone(), token.to_owned());
        async move {
            if i % 4 == 0 {
                R::Reap(s.reap(1000).await)
            } else {
                R::Refresh(s.refresh(&t, &Context::none()).await.map(|_| ()))
            }
        }
    })
    .await?;
    let mut sum = ReapOutcome::default();
    let mut odd = Vec::new();
    for r in results {
        match r {
            R::Reap(Ok(o)) => {
                sum.sessions += o.sessions;
                sum.tickets += o.tickets;
                sum.slots += o.slots;
            }
            R::Refresh(Err(Error::Expired | Error::NotAuthenticated)) => {}
            R::Refresh(Ok(())) => odd.push("a refresh succeeded".to_owned()),
            R::Reap(Err(e)) | R::Refresh(Err(e)) => odd.push(format!("{e:?}")),
        }
    }
    ensure!(
        odd.is_empty(),
        "refreshes racing reaps of an expired session: {}",
        describe(&odd)
    );
    Ok(sum)
}

/// What the TTL audit expects to be stored: every record the case holds (tickets and slots with
/// their deadlines). A record past its deadline may already be gone: its server expired it.
#[derive(Default)]
struct Held {
    sessions: BTreeSet<SessionId>,
    tickets: BTreeMap<TicketId, Timestamp>,
    slots: BTreeMap<SlotId, Timestamp>,
    /// Taken tickets and released slots: their keys must be gone.
    gone_tickets: BTreeSet<TicketId>,
    gone_slots: BTreeSet<SlotId>,
    /// The latest deadline of anything stored: no key (index, creation log) may outlive it.
    latest: Timestamp,
}

impl Held {
    fn session(&mut self, c: &leasehold::Created) {
        self.sessions.insert(c.session.id);
        self.later(c.session.absolute_deadline);
    }

    fn later(&mut self, t: Timestamp) {
        self.latest = self.latest.max(t);
    }
}

fn show(k: &KeyDeadline) -> String {
    format!("{:?} ({:?})", String::from_utf8_lossy(&k.key), k.holds)
}

/// Audits [`Store::key_deadlines`](leasehold::Store::key_deadlines) against `held` (see
/// [`native_expiry_every_key_has_a_ttl`]); returns each session key's TTL.
async fn audit(
    env: &Env,
    held: &Held,
    step: &str,
) -> Result<BTreeMap<SessionId, Timestamp>, CaseError> {
    let Some(keys) = env.store().key_deadlines().await? else {
        fail!(
            "{step}: the store declares native_expiry but key_deadlines returns None (a store \
             that expires records itself must list its keys with their TTLs)"
        );
    };
    let mut sessions = BTreeMap::new();
    let mut tickets = BTreeMap::new();
    let mut slots = BTreeMap::new();
    for k in &keys {
        let Some(ttl) = k.deadline else {
            fail!(
                "{step}: key {} has no TTL: under native expiry nothing but this key's own TTL \
                 would ever remove it",
                show(k)
            );
        };
        ensure!(
            ttl <= held.latest,
            "{step}: key {} expires at {ttl}, after the latest deadline of anything stored ({})",
            show(k),
            held.latest
        );
        let dup = match &k.holds {
            KeyHolds::Session(id) => sessions.insert(*id, ttl).is_some(),
            KeyHolds::Ticket(id) => tickets.insert(*id, ttl).is_some(),
            KeyHolds::Slot(id) => slots.insert(*id, ttl).is_some(),
            _ => false,
        };
        ensure!(!dup, "{step}: two keys hold the record of {}", show(k));
    }
    for (id, &ttl) in &sessions {
        let Some(rec) = env.store().load_session(id).await?.record else {
            fail!("{step}: key_deadlines lists session {id}, which does not load");
        };
        let due = rec.expires_at.min(rec.absolute_deadline);
        ensure!(
            ttl <= due,
            "{step}: the key of session {id} ({:?}) expires at {ttl}, after its record's \
             deadline {due}",
            rec.state
        );
    }
    for id in &held.sessions {
        if !sessions.contains_key(id) {
            ensure!(
                env.store().load_session(id).await?.record.is_none(),
                "{step}: session {id} loads, but no key holds it (listed: {})",
                describe(&keys.iter().map(show).collect::<Vec<_>>())
            );
        }
    }
    for (what, want, got) in [
        ("ticket", as_text(&held.tickets), as_text(&tickets)),
        ("slot", as_text(&held.slots), as_text(&slots)),
    ] {
        for (id, due) in &want {
            match got.get(id) {
                None => ensure!(
                    *due <= env.now(),
                    "{step}: no key holds {what} {id}, which is live until {due}"
                ),
                Some(ttl) => ensure!(
                    ttl <= due,
                    "{step}: the key of {what} {id} expires at {ttl}, after the {what}'s \
                     deadline {due}"
                ),
            }
        }
    }
    for id in &held.gone_tickets {
        ensure!(
            !tickets.contains_key(id),
            "{step}: the key of taken ticket {id} is still stored"
        );
    }
    for id in &held.gone_slots {
        ensure!(
            !slots.contains_key(id),
            "{step}: the key of released slot {id} is still stored"
        );
    }
    Ok(sessions)
}

fn as_text<K: std::fmt::Display>(m: &BTreeMap<K, Timestamp>) -> BTreeMap<String, Timestamp> {
    m.iter().map(|(k, t)| (k.to_string(), *t)).collect()
}

/// On a store with native expiry every key carries a TTL — its own TTL is what reclaims it,
/// since `reap` only cleans index entries there — and no record key outlives its record's
/// deadline. [`Store::key_deadlines`](leasehold::Store::key_deadlines) must list a key for
/// every session (live or tombstone), ticket and slot held, each expiring no later than its
/// record (a session's `min(expires_at, absolute_deadline)`, a ticket's or slot's
/// `expires_at`), through creates with a resource, a capped create that evicts, a creation rate
/// log, touches, a rotation, heartbeats and revocations. A tombstone keeps the deadline its
/// record had (an earlier one would let a replayed insert recreate the session; a later one
/// would outlive the record). Taken tickets and released slots leave no key; no key of any kind
/// (indexes, creation logs, reservations) lives past the latest deadline of anything stored;
/// and after everything is past its deadline and reaped, every key left still has a TTL.
pub(crate) async fn native_expiry_every_key_has_a_ttl(env: Env) -> CaseResult {
    let window = mins(10);
    let s = env.sessions(build(
        Policy::builder()
            .renewal_interval(None)
            .subject_cap(Some(SubjectCap {
                max: 3,
                on_full: CapPolicy::EvictOldest,
            }))
            .creation_rate(Some(Rate { max: 100, window }))
            .max_slots_per_session(Some(4))
            .max_slots_per_resource(Some(4))
            .ticket_ttl(secs(30))
            .slot_ttl(secs(60)),
    )?)?;
    let (alice, bob, r) = (subject("alice")?, subject("bob")?, resource("r")?);
    let on_r = CreateOptions {
        resource: Some(r.clone()),
        ..CreateOptions::default()
    };
    let mut held = Held::default();
    let created = |held: &mut Held, c: &leasehold::Created| {
        held.session(c);
        held.later(env.now().saturating_add(window));
    };

    let a1 = s.create(&alice, on_r.clone()).await?;
    created(&mut held, &a1);
    let a2 = s.create(&alice, on_r.clone()).await?;
    created(&mut held, &a2);
    let b1 = create(&s, &bob).await?;
    created(&mut held, &b1);
    let t1 = s.mint_ticket(text(&a1), &Context::none()).await?;
    let t2 = s.mint_ticket(text(&b1), &Context::none()).await?;
    for t in [&t1, &t2] {
        held.tickets.insert(*t.ticket.id(), t.expires_at);
        held.later(t.expires_at);
    }
    let l1 = s.acquire_slot(&a1.session.id, Some(&r)).await?;
    let l2 = s.acquire_slot(&b1.session.id, None).await?;
    for l in [&l1, &l2] {
        held.slots.insert(l.id, l.expires_at);
        held.later(l.expires_at);
    }
    let first = audit(&env, &held, "after creates, tickets and slots").await?;

    s.redeem_ticket(t2.ticket.expose_secret()).await?;
    held.tickets.remove(t2.ticket.id());
    held.gone_tickets.insert(*t2.ticket.id());
    revoke_live(&s, &a2.session.id).await?;
    let revoked = audit(&env, &held, "after a redeem and a revoke").await?;
    ensure!(
        revoked.get(&a2.session.id) == first.get(&a2.session.id),
        "revoking session {} moved its key's TTL from {:?} to {:?}: a tombstone keeps its \
         record's deadline",
        a2.session.id,
        first.get(&a2.session.id),
        revoked.get(&a2.session.id)
    );

    env.advance(secs(30));
    let l2h = s.heartbeat_slot(&l2.id).await?;
    held.slots.insert(l2.id, l2h.expires_at);
    held.later(l2h.expires_at);
    env.advance(secs(40));
    ensure!(validates(&s, &text(&a1)).await, "a1 does not validate");
    let Some(a1_touched) = env.store().load_session(&a1.session.id).await?.record else {
        fail!("a1 does not load");
    };
    ensure!(
        a1_touched.expires_at > a1.session.expires_at,
        "a validate 70 s after creation (touch granularity 60 s) did not move expires_at"
    );
    let b1r = s.refresh(text(&b1), &Context::none()).await?;
    let touched = audit(&env, &held, "after a heartbeat, a touch and a rotation").await?;
    ensure!(
        touched.get(&a2.session.id) == first.get(&a2.session.id),
        "the tombstone's TTL moved from {:?} to {:?} while other sessions were touched",
        first.get(&a2.session.id),
        touched.get(&a2.session.id)
    );

    for _ in 0..3 {
        let c = s.create(&alice, on_r.clone()).await?;
        created(&mut held, &c);
        env.advance(secs(1));
    }
    let Some(evicted) = env.store().load_session(&a1.session.id).await?.record else {
        fail!("the evicted session's tombstone does not load");
    };
    ensure!(
        evicted.is_tombstone(),
        "the 4th live session of alice under cap 3 (evict oldest) did not evict a1"
    );
    ensure!(
        s.release_slot(&l2.id).await?,
        "releasing a held slot returned false"
    );
    held.slots.remove(&l2.id);
    held.gone_slots.insert(l2.id);
    let after = audit(&env, &held, "after an eviction and a release").await?;
    ensure!(
        after.get(&a1.session.id) == touched.get(&a1.session.id),
        "evicting session {} moved its key's TTL from {:?} to {:?}: a tombstone keeps its \
         record's deadline",
        a1.session.id,
        touched.get(&a1.session.id),
        after.get(&a1.session.id)
    );
    ensure!(
        validates(&s, b1r.token.expose_secret()).await,
        "the rotated session does not validate"
    );

    env.set_time(held.latest.saturating_add(mins(1)));
    s.reap(10_000).await?;
    let past = Held {
        latest: held.latest,
        ..Held::default()
    };
    audit(&env, &past, "past every deadline, after a reap").await?;
    Ok(())
}
