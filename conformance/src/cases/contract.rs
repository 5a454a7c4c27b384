//! The plain store contract (DESIGN §5): insert-if-absent, compare-and-swap on a version,
//! missing records, faithful round trips, listing, ticket put/take, slots, data versions, and
//! exactly one winner among racing writers.

use std::collections::BTreeSet;

use leasehold::crypto::Verifier;
use leasehold::record::TicketRecord;
use leasehold::store::{CreateLimits, InsertOutcome, StoreError, TakeOutcome};
use leasehold::token::SECRET_TEXT_LEN;
use leasehold::{
    Context, CreateOptions, Error, RevokeReason, SessionId, SessionRecord, ShardTag, Subject,
    TicketId,
};

use super::{S, build, create, default_policy, revoke_live, text};
use crate::env::{
    CaseError, CaseResult, Env, count, describe, ensure, fail, mins, ms, race, resource, secs,
    subject,
};

fn fresh_id(env: &Env, who: &Subject) -> Result<SessionId, CaseError> {
    SessionId::generate(ShardTag::of(who), env.entropy())
        .map_err(|e| CaseError(format!("entropy failed: {e}")))
}

async fn stored(env: &Env, id: &SessionId) -> Result<SessionRecord, CaseError> {
    match env.store().load_session(id).await?.record {
        Some(r) => Ok(*r),
        None => fail!("session {id} does not load"),
    }
}

/// A fully populated record: resource, binding, summary, data, a predecessor with a sealed
/// successor, and retired verifiers.
async fn rich_record(env: &Env, s: &S) -> Result<SessionRecord, CaseError> {
    let binding = Context::bound("device-1");
    let c = s
        .create(
            &subject("alice")?,
            CreateOptions {
                resource: Some(resource("sandbox-7")?),
                context: binding.clone(),
                summary: Some("Firefox on Linux".into()),
                data: b"cart=1".to_vec(),
                absolute_lifetime: None,
            },
        )
        .await?;
    let mut t = text(&c);
    for _ in 0..3 {
        env.advance(secs(1));
        t = s
            .refresh(&t, &binding)
            .await?
            .token
            .expose_secret()
            .to_owned();
    }
    s.update_data(&c.session.id, 0, b"cart=2").await?;
    let r = stored(env, &c.session.id).await?;
    ensure!(
        r.credential.previous.is_some() && !r.credential.retired.is_empty(),
        "after 3 rotations the stored credential lacks its predecessor or retired verifiers"
    );
    Ok(r)
}

/// Insert-if-absent: a new record is inserted as is; inserting an existing id again is
/// `AlreadyExists` and changes nothing.
pub(crate) async fn insert_if_absent(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let before = stored(&env, &c.session.id).await?;
    let mut dup = before.clone();
    dup.data = b"overwritten".to_vec();
    match env
        .store()
        .insert_session(&dup, &CreateLimits::default(), env.now())
        .await
    {
        Err(StoreError::AlreadyExists) => {}
        other => fail!("insert of an existing id: expected AlreadyExists, got {other:?}"),
    }
    ensure!(
        stored(&env, &c.session.id).await? == before,
        "a refused insert changed the stored record"
    );
    let mut new = before.clone();
    new.id = fresh_id(&env, &before.subject)?;
    match env
        .store()
        .insert_session(&new, &CreateLimits::default(), env.now())
        .await?
    {
        InsertOutcome::Inserted { evicted } if evicted.is_empty() => {}
        other => fail!("insert of a new id: expected Inserted with no eviction, got {other:?}"),
    }
    ensure!(
        stored(&env, &new.id).await? == new,
        "the inserted record loads differently"
    );
    Ok(())
}

/// A retry after a lost reply: inserting the very record that is already stored answers
/// `Inserted` (no eviction, nothing written twice), so the client gets its working token and
/// no orphan session holds a place under the cap. Any difference is still `AlreadyExists`.
pub(crate) async fn insert_replay_is_idempotent(env: Env) -> CaseResult {
    let s = env.sessions(build(leasehold::Policy::builder().subject_cap(Some(
        leasehold::SubjectCap {
            max: 1,
            on_full: leasehold::CapPolicy::Reject,
        },
    )))?)?;
    let c = create(&s, &subject("alice")?).await?;
    let before = stored(&env, &c.session.id).await?;
    let limits = leasehold::decide::create::limits(s.policy());
    match env
        .store()
        .insert_session(&before, &limits, env.now())
        .await?
    {
        InsertOutcome::Inserted { evicted } if evicted.is_empty() => {}
        other => fail!("replay of the stored record: expected Inserted, got {other:?}"),
    }
    ensure!(
        stored(&env, &c.session.id).await? == before,
        "a replayed insert changed the stored record"
    );
    ensure!(
        s.list(&subject("alice")?).await?.len() == 1,
        "a replayed insert counted as a second session"
    );
    let mut touched = before.clone();
    touched.version += 1;
    match env
        .store()
        .insert_session(&touched, &limits, env.now())
        .await
    {
        Err(StoreError::AlreadyExists) => Ok(()),
        other => fail!(
            "insert of a different record under a stored id: expected AlreadyExists, got {other:?}"
        ),
    }
}

/// A session id carries its subject's shard tag (so a sharded store can place it beside the
/// subject's index from the id alone): an insert whose id was made for another subject is
/// refused with `InvalidWrite` and writes nothing.
pub(crate) async fn insert_refuses_foreign_shard_tag(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let mut foreign = stored(&env, &c.session.id).await?;
    let bob = subject("bob")?;
    ensure!(
        ShardTag::of(&bob) != ShardTag::of(&foreign.subject),
        "test subjects share a shard tag"
    );
    foreign.id = fresh_id(&env, &bob)?;
    match env
        .store()
        .insert_session(&foreign, &CreateLimits::default(), env.now())
        .await
    {
        Err(StoreError::InvalidWrite(_)) => {}
        other => fail!(
            "insert of an id tagged for another subject: expected InvalidWrite, got {other:?}"
        ),
    }
    ensure!(
        env.store()
            .load_session(&foreign.id)
            .await?
            .record
            .is_none(),
        "a refused insert was stored"
    );
    Ok(())
}

/// CAS succeeds on the expected version and refuses a stale one (`Conflict`), leaving the
/// first write in place.
pub(crate) async fn cas_stale_version_conflicts(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let base = stored(&env, &c.session.id).await?;
    let mut first = base.clone();
    first.version = base.version + 1;
    first.data = b"first".to_vec();
    env.store()
        .compare_and_swap(&first, base.version, env.now())
        .await?;
    let mut second = base.clone();
    second.version = base.version + 1;
    second.data = b"second".to_vec();
    match env
        .store()
        .compare_and_swap(&second, base.version, env.now())
        .await
    {
        Err(StoreError::Conflict) => {}
        other => fail!("CAS on a stale version: expected Conflict, got {other:?}"),
    }
    let now = stored(&env, &c.session.id).await?;
    ensure!(
        now == first,
        "after the refused CAS the record is not the first write"
    );
    Ok(())
}

/// CAS on an id that was never inserted is `NotFound` and creates nothing.
pub(crate) async fn cas_missing_record_not_found(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let mut ghost = stored(&env, &c.session.id).await?;
    ghost.id = fresh_id(&env, &ghost.subject)?;
    match env
        .store()
        .compare_and_swap(&ghost, ghost.version, env.now())
        .await
    {
        Err(StoreError::NotFound) => {}
        other => fail!("CAS on a missing record: expected NotFound, got {other:?}"),
    }
    ensure!(
        env.store().load_session(&ghost.id).await?.record.is_none(),
        "a CAS on a missing record created it"
    );
    Ok(())
}

/// A missing record loads as `None`; every operation on it is a clean denial.
pub(crate) async fn load_missing_is_none(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let alice = subject("alice")?;
    let c = create(&s, &alice).await?;
    let ghost = fresh_id(&env, &alice)?;
    ensure!(
        env.store().load_session(&ghost).await?.record.is_none(),
        "an id never inserted loads"
    );
    let t = text(&c);
    let forged = format!(
        "{}_{ghost}_{}",
        s.policy().token_prefix(),
        &t[t.len() - SECRET_TEXT_LEN..]
    );
    match s.validate(&forged, &Context::none()).await {
        Err(Error::NotAuthenticated) => {}
        other => fail!("a token for a missing id: expected NotAuthenticated, got {other:?}"),
    }
    match s.trusted_by_id().revoke(&ghost).await? {
        leasehold::RevokeOutcome::Unknown => {}
        other => fail!("revoking a missing id: expected Unknown, got {other:?}"),
    }
    match s.update_data(&ghost, 0, b"x").await {
        Err(Error::NotAuthenticated) => {}
        other => fail!("update_data on a missing id: expected NotAuthenticated, got {other:?}"),
    }
    let empty = env.store().list_subject(&subject("nobody")?).await?;
    ensure!(
        empty.is_empty(),
        "an unknown subject lists {} records",
        empty.len()
    );
    Ok(())
}

/// Every field of a record survives insert, CAS and tombstoning exactly.
pub(crate) async fn records_round_trip_exactly(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let rich = rich_record(&env, &s).await?;
    let mut copy = rich.clone();
    copy.id = fresh_id(&env, &rich.subject)?;
    env.store()
        .insert_session(&copy, &CreateLimits::default(), env.now())
        .await?;
    let loaded = stored(&env, &copy.id).await?;
    ensure!(
        loaded == copy,
        "an inserted record loads differently:\n wrote {copy:?}\n read  {loaded:?}"
    );
    let tomb = copy.tombstone(env.now(), RevokeReason::ReuseDetected);
    env.store()
        .compare_and_swap(&tomb, copy.version, env.now())
        .await?;
    let loaded = stored(&env, &copy.id).await?;
    ensure!(
        loaded == tomb,
        "a tombstone loads differently:\n wrote {tomb:?}\n read  {loaded:?}"
    );
    Ok(())
}

/// `list_subject` returns every record of the subject not yet reaped (live, tombstones and,
/// without native expiry, expired ones) and no other subject's; `list` shows the live ones,
/// oldest first.
pub(crate) async fn list_subject_returns_every_record(env: Env) -> CaseResult {
    let s = env.sessions(build(leasehold::Policy::builder().renewal_interval(None))?)?;
    let (alice, bob) = (subject("alice")?, subject("bob")?);
    let expired = create(&s, &alice).await?;
    env.advance(mins(31));
    let revoked = create(&s, &alice).await?;
    revoke_live(&s, &revoked.session.id).await?;
    let live1 = create(&s, &alice).await?;
    env.advance(ms(1));
    let live2 = create(&s, &alice).await?;
    create(&s, &bob).await?;
    let ids: BTreeSet<SessionId> = env
        .store()
        .list_subject(&alice)
        .await?
        .iter()
        .map(|r| r.id)
        .collect();
    let mut want: BTreeSet<SessionId> = [revoked.session.id, live1.session.id, live2.session.id]
        .into_iter()
        .collect();
    if env.capabilities().native_expiry {
        ensure!(
            ids.is_superset(&want),
            "list_subject is missing live or revoked records: got {ids:?}"
        );
        want.insert(expired.session.id);
        ensure!(
            ids.is_subset(&want),
            "list_subject returns foreign records: {ids:?}"
        );
    } else {
        want.insert(expired.session.id);
        ensure!(
            ids == want,
            "list_subject(alice) returned {ids:?}, expected her 4 records {want:?}"
        );
    }
    let listed: Vec<SessionId> = s.list(&alice).await?.into_iter().map(|x| x.id).collect();
    ensure!(
        listed == vec![live1.session.id, live2.session.id],
        "list(alice) = {listed:?}, expected her 2 live sessions oldest first"
    );
    Ok(())
}

/// Tickets: insert-if-absent, take only with the right verifier, take once, expired take
/// deletes.
pub(crate) async fn ticket_put_and_take(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let st = env.store();
    let tid = |b: u8| TicketId::from_bytes([b; 18]);
    let ticket = |id: TicketId, v: u8| TicketRecord {
        id,
        session: c.session.id,
        verifier: Verifier([v; 32]),
        created_at: env.now(),
        expires_at: env.now().saturating_add(secs(30)),
    };
    let t1 = ticket(tid(1), 1);
    st.put_ticket(&t1).await?;
    match st.put_ticket(&ticket(tid(1), 2)).await {
        Err(StoreError::AlreadyExists) => {}
        other => fail!("put of an existing ticket id: expected AlreadyExists, got {other:?}"),
    }
    match st
        .take_ticket(&t1.id, &Verifier([2; 32]), env.now())
        .await?
    {
        TakeOutcome::Missing => {}
        other => fail!("take with a wrong verifier: expected Missing, got {other:?}"),
    }
    match st
        .take_ticket(&t1.id, &Verifier([1; 32]), env.now())
        .await?
    {
        TakeOutcome::Taken(got) if got == t1 => {}
        other => fail!("take with the right verifier: expected Taken({t1:?}), got {other:?}"),
    }
    match st
        .take_ticket(&t1.id, &Verifier([1; 32]), env.now())
        .await?
    {
        TakeOutcome::Missing => {}
        other => fail!("second take: expected Missing, got {other:?}"),
    }
    let t2 = ticket(tid(2), 3);
    st.put_ticket(&t2).await?;
    env.advance(secs(30));
    match st
        .take_ticket(&t2.id, &Verifier([3; 32]), env.now())
        .await?
    {
        TakeOutcome::Expired | TakeOutcome::Missing => {}
        other => fail!("take at expiry: expected Expired, got {other:?}"),
    }
    match st
        .take_ticket(&t2.id, &Verifier([3; 32]), env.now())
        .await?
    {
        TakeOutcome::Missing => Ok(()),
        other => fail!("take after an expired take: expected Missing, got {other:?}"),
    }
}

/// A slot is released once; afterwards it is gone.
pub(crate) async fn release_slot_once(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let slot = s.acquire_slot(&c.session.id, None).await?;
    ensure!(
        s.release_slot(&slot.id).await?,
        "releasing a held slot returned false"
    );
    ensure!(
        !s.release_slot(&slot.id).await?,
        "releasing it again returned true"
    );
    match s.heartbeat_slot(&slot.id).await {
        Err(Error::SlotLost) => Ok(()),
        other => fail!("heartbeat of a released slot: expected SlotLost, got {other:?}"),
    }
}

/// `update_data` applies only on the expected data version, persists, and refuses oversize data.
pub(crate) async fn update_data_is_versioned(env: Env) -> CaseResult {
    let s = env.sessions(build(leasehold::Policy::builder().max_data_len(16))?)?;
    let c = create(&s, &subject("alice")?).await?;
    let id = c.session.id;
    let v1 = s.update_data(&id, 0, b"one").await?;
    ensure!(
        v1.data_version == 1,
        "data version {} after one update",
        v1.data_version
    );
    match s.update_data(&id, 0, b"stale").await {
        Err(Error::VersionConflict) => {}
        other => fail!("update on a stale data version: expected VersionConflict, got {other:?}"),
    }
    s.update_data(&id, 1, b"two").await?;
    let r = stored(&env, &id).await?;
    ensure!(
        r.data == b"two" && r.data_version == 2,
        "stored data {:?} v{}, expected \"two\" v2",
        String::from_utf8_lossy(&r.data),
        r.data_version
    );
    match s.update_data(&id, 2, &[0; 17]).await {
        Err(Error::InvalidInput(_)) => Ok(()),
        other => fail!("oversize data: expected InvalidInput, got {other:?}"),
    }
}

/// 32 CAS writers on the same version: exactly one wins, 31 get `Conflict`.
pub(crate) async fn concurrent_cas_one_winner(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let base = stored(&env, &c.session.id).await?;
    let now = env.now();
    let results = race(32, |i| {
        let (st, mut rec) = (env.store().clone(), base.clone());
        async move {
            rec.version += 1;
            rec.data = format!("writer-{i}").into_bytes();
            (i, st.compare_and_swap(&rec, base.version, now).await)
        }
    })
    .await?;
    let winners: Vec<usize> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| *i)
        .collect();
    let conflicts = count(&results, |(_, r)| matches!(r, Err(StoreError::Conflict)));
    ensure!(
        winners.len() == 1 && conflicts == 31,
        "32 racing CAS on one version: {} won, {conflicts} Conflict: {}",
        winners.len(),
        describe(&results)
    );
    let r = stored(&env, &c.session.id).await?;
    let want = format!("writer-{}", winners[0]).into_bytes();
    ensure!(
        r.data == want,
        "the stored record is not the winner's write"
    );
    Ok(())
}

/// 32 racing inserts of one new id, each a different record: exactly one `Inserted`, 31
/// `AlreadyExists`, and the winner's record is the one stored. (The records differ so that no
/// loser is a byte-identical replay of the winner, which a store may answer `Inserted`.)
pub(crate) async fn concurrent_insert_one_winner(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let mut rec = stored(&env, &c.session.id).await?;
    rec.id = fresh_id(&env, &rec.subject)?;
    let now = env.now();
    let variant = |i: usize| {
        let mut r = rec.clone();
        r.data = format!("racer-{i}").into_bytes();
        r
    };
    let results = race(32, |i| {
        let (st, rec) = (env.store().clone(), variant(i));
        async move { st.insert_session(&rec, &CreateLimits::default(), now).await }
    })
    .await?;
    let inserted = count(&results, |r| {
        matches!(r, Ok(InsertOutcome::Inserted { .. }))
    });
    let exists = count(&results, |r| matches!(r, Err(StoreError::AlreadyExists)));
    ensure!(
        inserted == 1 && exists == 31,
        "32 racing inserts of one id: {inserted} inserted, {exists} AlreadyExists: {}",
        describe(&results)
    );
    let n = env.store().list_subject(&rec.subject).await?.len();
    ensure!(n == 2, "the subject has {n} records, expected 2");
    let winner = results
        .iter()
        .position(|r| matches!(r, Ok(InsertOutcome::Inserted { .. })));
    let kept = stored(&env, &rec.id).await?;
    ensure!(
        winner.map(variant).as_ref() == Some(&kept),
        "the stored record is not the one whose insert answered Inserted"
    );
    Ok(())
}

/// The longest subject and resource the engine accepts ([`leasehold::MAX_NAME_LEN`] bytes,
/// multi-byte characters included) go through every store path that carries them: a capped,
/// rate-limited insert, validate, refresh, a slot under a per-resource cap, listing and
/// counting by both, and both group revocations. A store with a narrower column or parser
/// would refuse or misread them.
pub(crate) async fn longest_names_round_trip(env: Env) -> CaseResult {
    let policy = build(
        leasehold::Policy::builder()
            .subject_cap(Some(leasehold::SubjectCap {
                max: 2,
                on_full: leasehold::CapPolicy::EvictOldest,
            }))
            .creation_rate(Some(leasehold::Rate {
                max: 10,
                window: secs(60),
            }))
            .max_slots_per_resource(Some(2)),
    )?;
    let s = env.sessions(policy)?;
    // 1024 bytes each: 'é' is two bytes in UTF-8.
    let long = |c: &str| c.repeat(leasehold::MAX_NAME_LEN / 2);
    let who = subject(&long("é"))?;
    let res = resource(&long("ř"))?;
    ensure!(
        who.as_str().len() == leasehold::MAX_NAME_LEN
            && res.as_str().len() == leasehold::MAX_NAME_LEN,
        "the test's names are not {} bytes",
        leasehold::MAX_NAME_LEN
    );
    let opts = || CreateOptions {
        resource: Some(res.clone()),
        ..CreateOptions::default()
    };
    let mut tokens = Vec::new();
    for _ in 0..3 {
        env.advance(ms(1));
        tokens.push(text(&s.create(&who, opts()).await?));
    }
    // The cap of 2 evicted the first.
    ensure!(
        matches!(
            s.validate(&tokens[0], &Context::none()).await,
            Err(Error::Revoked { .. })
        ),
        "the oldest of 3 sessions under a cap of 2 was not evicted"
    );
    let v = s.validate(&tokens[2], &Context::none()).await?;
    ensure!(
        v.session.subject == who && v.session.resource.as_ref() == Some(&res),
        "a validated session lost its long subject or resource"
    );
    env.advance(secs(1));
    let rotated = s.refresh(&tokens[2], &Context::none()).await?;
    let newest = rotated.token.expose_secret().to_owned();
    let slot = s.acquire_slot(&v.session.id, Some(&res)).await?;
    let listed = s.list(&who).await?;
    ensure!(
        listed.len() == 2,
        "list by subject found {} of 2",
        listed.len()
    );
    let by_res = s
        .count(&leasehold::store::Scope::Resource(res.clone()))
        .await?;
    ensure!(by_res == 2, "count by resource found {by_res} of 2");
    ensure!(
        s.release_slot(&slot.id).await?,
        "the slot on the long resource was not held"
    );
    let n = s.revoke_resource(&res).await?;
    ensure!(n == 2, "revoke_resource revoked {n} of 2");
    ensure!(
        matches!(
            s.validate(&newest, &Context::none()).await,
            Err(Error::Revoked { .. })
        ),
        "a session on the long resource validates after revoke_resource"
    );
    let fresh = text(&s.create(&who, CreateOptions::default()).await?);
    let n = s.revoke_subject(&who).await?;
    ensure!(n == 1, "revoke_subject revoked {n} of 1");
    ensure!(
        matches!(
            s.validate(&fresh, &Context::none()).await,
            Err(Error::Revoked { .. })
        ),
        "a session of the long subject validates after revoke_subject"
    );
    Ok(())
}
