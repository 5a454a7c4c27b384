//! INV-store-time: once any caller has been told `Expired` or `Revoked`, no operation by any
//! caller, at any clock setting, makes that session valid again. A clock stepped forward can
//! only end sessions early (fail closed); a revocation never depends on a clock; on a store with
//! a clock of its own (`server_clock`), windows and caps run on that clock, so a lagging caller
//! cannot stretch them.
//!
//! Every caller here has a clock of its own ([`Env::sessions_at`]); nothing sleeps. A write
//! "in flight" is a real request parked between its load and its compare-and-swap
//! ([`Env::cas_hook`]). Server clocks are moved with [`Env::set_store_time`].

use std::time::Duration;

use leasehold::decide::slot::{caps as slot_caps, new_slot};
use leasehold::store::{SlotOutcome, StoreError};
use leasehold::{
    CapPolicy, Context, CreateOptions, Created, Error, Limit, ManualClock, Policy, Rate,
    RevokeOutcome, RevokeReason, SessionId, SessionRecord, Subject, SubjectCap, Timestamp,
};

use super::{S, build, create, ended_by, global_capped, text, validates};
use crate::env::{CaseError, CaseResult, Env, ensure, fail, mins, ms, resource, secs, subject};

/// How a session ended: what every later caller must be told, and the stored tombstone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// Observed past its deadline (tombstone reason `Expired`).
    Expired,
    /// Revoked, evicted or reuse (tombstone with that reason).
    Revoked(RevokeReason),
}

impl Ended {
    fn reason(self) -> RevokeReason {
        match self {
            Ended::Expired => RevokeReason::Expired,
            Ended::Revoked(r) => r,
        }
    }

    fn is(self, e: &Error) -> bool {
        match self {
            Ended::Expired => matches!(e, Error::Expired),
            Ended::Revoked(want) => matches!(e, Error::Revoked { reason } if *reason == want),
        }
    }
}

/// Who ends the session: `revoke` by id, or a group revocation that covers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Revoker {
    Id,
    Subject,
    Resource,
}

impl Revoker {
    fn ended(self) -> Ended {
        Ended::Revoked(match self {
            Revoker::Id => RevokeReason::Revoked,
            Revoker::Subject => RevokeReason::Subject,
            Revoker::Resource => RevokeReason::Resource,
        })
    }

    /// Ends the session `c` (of `who`, tagged `on`) through `s`, which finds it past its
    /// deadline: `revoke` must still write the tombstone (`Revoked`), a group revocation must
    /// still cover it while counting only live sessions (0).
    async fn end(self, s: &S, c: &Created, who: &Subject, on: &str) -> CaseResult {
        match self {
            Revoker::Id => match s.trusted_by_id().revoke(&c.session.id).await? {
                RevokeOutcome::Revoked => Ok(()),
                other => fail!(
                    "revoke of a session past its deadline but not yet ended: expected Revoked \
                     (a revocation never depends on a clock), got {other:?}"
                ),
            },
            Revoker::Subject => {
                let n = s.revoke_subject(who).await?;
                ensure!(
                    n == 0,
                    "revoke_subject counted {n} live sessions; the only one is past its deadline"
                );
                Ok(())
            }
            Revoker::Resource => {
                let n = s.revoke_resource(&resource(on)?).await?;
                ensure!(
                    n == 0,
                    "revoke_resource counted {n} live sessions; the only one is past its deadline"
                );
                Ok(())
            }
        }
    }
}

const REVOKERS: [Revoker; 3] = [Revoker::Id, Revoker::Subject, Revoker::Resource];

fn no_renewal() -> Result<Policy, CaseError> {
    build(Policy::builder().renewal_interval(None))
}

fn tagged(on: &str) -> Result<CreateOptions, CaseError> {
    Ok(CreateOptions {
        resource: Some(resource(on)?),
        ..CreateOptions::default()
    })
}

/// Fails unless `r` is the denial `ended` says every caller now gets.
fn expect_ended<T: std::fmt::Debug>(r: &Result<T, Error>, ended: Ended, what: &str) -> CaseResult {
    match r {
        Err(e) if ended.is(e) => Ok(()),
        other => fail!("{what}: expected {ended:?}, got {other:?}"),
    }
}

async fn stored(env: &Env, id: &SessionId) -> Result<SessionRecord, CaseError> {
    match env.store().load_session(id).await?.record {
        Some(r) => Ok(*r),
        None => fail!("session {id} does not load"),
    }
}

/// The clocks a late caller may have: from creation to a day past the idle deadline.
fn clocks(c: &Created) -> Vec<Timestamp> {
    let e = c.session.expires_at;
    vec![
        c.session.created_at,
        c.session.created_at.saturating_add(mins(1)),
        e.saturating_sub(mins(5)),
        e.saturating_sub(ms(1)),
        e,
        e.saturating_add(ms(1)),
        e.saturating_add(mins(29)),
        e.saturating_add(mins(24 * 60)),
    ]
}

/// The session `c` has ended as `ended` says: at every clock a late caller may have
/// ([`clocks`]), it is refused every operation with exactly that denial, and the store holds
/// its tombstone with the deadline `deadline` (no late write moved it).
async fn never_valid_again(
    env: &Env,
    policy: &Policy,
    c: &Created,
    ended: Ended,
    deadline: Timestamp,
    what: &str,
) -> CaseResult {
    let (token, id) = (text(c), &c.session.id);
    let token = token.as_str();
    for t in clocks(c) {
        let s = env.sessions_at(policy.clone(), ManualClock::new(t))?;
        let ctx = Context::none();
        let when = format!("{what}: a caller whose clock reads {t}");
        let v = s.validate(token, &ctx).await.map(|_| ());
        expect_ended(&v, ended, &format!("{when}, validate"))?;
        let r = s.refresh(token, &ctx).await.map(|_| ());
        expect_ended(&r, ended, &format!("{when}, refresh"))?;
        let m = s.mint_ticket(token, &ctx).await.map(|_| ());
        expect_ended(&m, ended, &format!("{when}, mint_ticket"))?;
        let u = s.update_data(id, 0, b"x").await.map(|_| ());
        expect_ended(&u, ended, &format!("{when}, update_data"))?;
        let a = s.acquire_slot(id, None).await.map(|_| ());
        expect_ended(&a, ended, &format!("{when}, acquire_slot"))?;
        let k = s.trusted_by_id().keepalive(id).await.map(|_| ());
        expect_ended(&k, ended, &format!("{when}, by-id keepalive"))?;
        let g = s.trusted_by_id().get(id).await.map(|_| ());
        expect_ended(&g, ended, &format!("{when}, by-id get"))?;
        match s.logout(token).await {
            Ok(RevokeOutcome::AlreadyRevoked { reason }) if reason == ended.reason() => {}
            other => fail!("{when}, logout: expected AlreadyRevoked({ended:?}), got {other:?}"),
        }
    }
    let rec = stored(env, id).await?;
    ensure!(
        ended_by(&rec) == Some(ended.reason()),
        "{what}: the stored record is not a {:?} tombstone: {rec:?}",
        ended.reason()
    );
    ensure!(
        rec.expires_at == deadline,
        "{what}: the stored deadline moved from {deadline} to {} (a late write landed)",
        rec.expires_at
    );
    Ok(())
}

/// A parked request: A validated with a write due and is held before its compare-and-swap.
struct InFlight {
    parked: crate::env::Parked,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl InFlight {
    /// Starts `validate(token)` through a hooked store at `clock` and waits until its write is
    /// parked.
    async fn validate(
        env: &Env,
        policy: &Policy,
        token: &str,
        clock: Timestamp,
    ) -> Result<InFlight, CaseError> {
        let token = token.to_owned();
        Self::start(env, policy, clock, |a| async move {
            a.validate(&token, &Context::none()).await.map(|_| ())
        })
        .await
    }

    /// Starts a trusted by-id `keepalive(id)` the same way.
    async fn keepalive(
        env: &Env,
        policy: &Policy,
        id: SessionId,
        clock: Timestamp,
    ) -> Result<InFlight, CaseError> {
        Self::start(env, policy, clock, move |a| async move {
            a.trusted_by_id().keepalive(&id).await.map(|_| ())
        })
        .await
    }

    /// Runs `op` on a driver over a hooked store at `clock` and waits until its write is parked.
    async fn start<F, Fut>(
        env: &Env,
        policy: &Policy,
        clock: Timestamp,
        op: F,
    ) -> Result<InFlight, CaseError>
    where
        F: FnOnce(std::sync::Arc<leasehold::Sessions<crate::env::DynStore>>) -> Fut,
        Fut: std::future::Future<Output = Result<(), Error>> + Send + 'static,
    {
        let (hooked, hook) = env.cas_hook();
        let a = env.sessions_over_at(hooked, policy.clone(), ManualClock::new(clock))?;
        let mut parked = hook.arm();
        let mut task = tokio::spawn(op(a));
        parked.reached(&mut task).await?;
        Ok(InFlight { parked, task })
    }

    /// Releases the write and returns A's answer.
    async fn finish(self) -> Result<Result<(), Error>, CaseError> {
        self.parked.release();
        self.task
            .await
            .map_err(|e| CaseError(format!("the parked caller failed: {e}")))
    }
}

async fn inflight_touch_after(env: Env, revoker: Revoker) -> CaseResult {
    for (kind, renewal) in [("touch", None), ("renewal", Some(mins(15)))] {
        let policy = build(Policy::builder().renewal_interval(renewal))?;
        let who = subject(&format!("alice-{kind}"))?;
        let on = format!("box-{kind}");
        let s = env.sessions(policy.clone())?;
        let c = s.create(&who, tagged(&on)?).await?;
        let (token, e) = (text(&c), c.session.expires_at);
        // A, 1 ms before the idle deadline: a write is due (touch, or renewal); it is parked.
        let a = InFlight::validate(&env, &policy, &token, e.saturating_sub(ms(1))).await?;
        // B, 2 ms later by its clock: the session is past its deadline; B revokes it.
        let b = env.sessions_at(policy.clone(), ManualClock::new(e.saturating_add(ms(1))))?;
        revoker
            .end(&b, &c, &who, &on)
            .await
            .map_err(|err| CaseError(format!("{kind}: {err}")))?;
        let ended = revoker.ended();
        // A's write lands now: it must not overwrite the tombstone.
        let r = a.finish().await?;
        expect_ended(
            &r,
            ended,
            &format!("{kind}: the validate whose write was in flight across the revocation"),
        )?;
        never_valid_again(
            &env,
            &policy,
            &c,
            ended,
            e,
            &format!("{kind} in flight across {revoker:?} revocation"),
        )
        .await?;
    }
    Ok(())
}

/// At the idle deadline, a validation (A, clock E−1 ms) that decided a touch — and, with
/// renewal on, a rotation — is parked before its compare-and-swap while B (clock E+1 ms)
/// revokes the session by id: `revoke` answers `Revoked` (a session past its deadline is still
/// revoked). Released, A's write must not land: A is answered `Revoked`, and afterwards no
/// caller at any clock gets the session, and the stored tombstone keeps the original deadline.
pub(crate) async fn inflight_touch_after_revoke(env: Env) -> CaseResult {
    inflight_touch_after(env, Revoker::Id).await
}

/// As [`inflight_touch_after_revoke`], with B calling `revoke_subject`: it counts 0 live (the
/// session is past its deadline at B's clock) but must tombstone it; A's late touch is refused
/// and the session answers `Revoked(Subject)` at every clock.
pub(crate) async fn inflight_touch_after_revoke_subject(env: Env) -> CaseResult {
    inflight_touch_after(env, Revoker::Subject).await
}

/// As [`inflight_touch_after_revoke`], with B calling `revoke_resource` (counts 0, answers
/// `Revoked(Resource)` at every clock afterwards).
pub(crate) async fn inflight_touch_after_revoke_resource(env: Env) -> CaseResult {
    inflight_touch_after(env, Revoker::Resource).await
}

/// Trusted server code keeps a lease alive by id while its client logs out: A (clock E−1 ms)
/// runs a by-id `keepalive` with a touch due and is parked before its compare-and-swap; B
/// (clock E+1 ms) logs out with the token (`Revoked`, though the session is past its deadline
/// at B's clock). Released, A's touch must not land: A re-decides and is told `Revoked`, and no
/// caller at any clock gets the session again.
pub(crate) async fn inflight_keepalive_after_logout(env: Env) -> CaseResult {
    let policy = no_renewal()?;
    let s = env.sessions(policy.clone())?;
    let c = create(&s, &subject("alice")?).await?;
    let (token, id, e) = (text(&c), c.session.id, c.session.expires_at);
    let a = InFlight::keepalive(&env, &policy, id, e.saturating_sub(ms(1))).await?;
    let b = env.sessions_at(policy.clone(), ManualClock::new(e.saturating_add(ms(1))))?;
    match b.logout(&token).await {
        Ok(RevokeOutcome::Revoked) => {}
        other => fail!("logout 1 ms past the idle deadline: expected Revoked, got {other:?}"),
    }
    let ended = Ended::Revoked(RevokeReason::Revoked);
    expect_ended(
        &a.finish().await?,
        ended,
        "the keepalive parked across the logout",
    )?;
    never_valid_again(
        &env,
        &policy,
        &c,
        ended,
        e,
        "after a logout raced a keepalive",
    )
    .await
}

/// At the idle deadline, A (clock E−1 ms) validates with a touch due and is parked before its
/// compare-and-swap; B (clock E+1 ms) observes the expiry through `validate`, `refresh`,
/// `update_data` or `acquire_slot` and is told `Expired` — by then the ending must already be
/// durable (an `Expired` tombstone is stored). Released, A's touch must not land: A is told
/// `Expired` and no caller at any clock gets the session again.
pub(crate) async fn inflight_touch_after_observed_expiry(env: Env) -> CaseResult {
    let policy = no_renewal()?;
    for observer in ["validate", "refresh", "update_data", "acquire_slot"] {
        let s = env.sessions(policy.clone())?;
        let c = create(&s, &subject(&format!("alice-{observer}"))?).await?;
        let (token, id, e) = (text(&c), c.session.id, c.session.expires_at);
        let a = InFlight::validate(&env, &policy, &token, e.saturating_sub(ms(1))).await?;
        let b = env.sessions_at(policy.clone(), ManualClock::new(e.saturating_add(ms(1))))?;
        let ctx = Context::none();
        let seen = match observer {
            "validate" => b.validate(&token, &ctx).await.map(|_| ()),
            "refresh" => b.refresh(&token, &ctx).await.map(|_| ()),
            "update_data" => b.update_data(&id, 0, b"x").await.map(|_| ()),
            _ => b.acquire_slot(&id, None).await.map(|_| ()),
        };
        expect_ended(
            &seen,
            Ended::Expired,
            &format!("{observer} 1 ms past the idle deadline"),
        )?;
        let rec = stored(&env, &id).await?;
        ensure!(
            ended_by(&rec) == Some(RevokeReason::Expired),
            "{observer} answered Expired, but the ending is not durable: the store holds {rec:?}"
        );
        let r = a.finish().await?;
        expect_ended(
            &r,
            Ended::Expired,
            &format!("the validate whose touch was in flight across {observer}'s Expired"),
        )?;
        never_valid_again(
            &env,
            &policy,
            &c,
            Ended::Expired,
            e,
            &format!("touch in flight across an expiry observed by {observer}"),
        )
        .await?;
    }
    Ok(())
}

/// A session past its idle deadline, not reaped and never observed expired, is revoked 5 min
/// after its deadline (by id → `Revoked`; by subject or resource → counted 0): the store holds
/// its tombstone. Then a caller whose clock lags (E−1 min, a touch due by its clock) is refused
/// with the revocation's reason, the same touch written straight to the store with the
/// pre-revoke version is refused (`NotFound`, or `Conflict`) and leaves the tombstone as it
/// was, a second revoke says `AlreadyRevoked`, and no caller at any clock gets the session.
pub(crate) async fn revoke_expired_unreaped_then_late_touch(env: Env) -> CaseResult {
    let policy = no_renewal()?;
    for revoker in REVOKERS {
        let what = format!("{revoker:?} revocation of an expired, unreaped session");
        let who = subject(&format!("alice-{revoker:?}"))?;
        let on = format!("box-{revoker:?}");
        let s = env.sessions(policy.clone())?;
        let c = s.create(&who, tagged(&on)?).await?;
        let (token, id, e) = (text(&c), c.session.id, c.session.expires_at);
        let before = stored(&env, &id).await?;
        let late = env.sessions_at(policy.clone(), ManualClock::new(e.saturating_add(mins(5))))?;
        revoker
            .end(&late, &c, &who, &on)
            .await
            .map_err(|err| CaseError(format!("{what}: {err}")))?;
        let ended = revoker.ended();
        let tomb = stored(&env, &id).await?;
        ensure!(
            ended_by(&tomb) == Some(ended.reason()) && tomb.expires_at == e,
            "{what}: expected a {:?} tombstone with deadline {e}, the store holds {tomb:?}",
            ended.reason()
        );
        let lag_at = e.saturating_sub(mins(1));
        let lagging = env.sessions_at(policy.clone(), ManualClock::new(lag_at))?;
        let r = lagging.validate(&token, &Context::none()).await.map(|_| ());
        expect_ended(
            &r,
            ended,
            &format!("{what}: validate by a caller 6 min behind"),
        )?;
        let mut touched = before.clone();
        touched.version = before.version.wrapping_add(1);
        touched.last_seen = lag_at;
        touched.expires_at = lag_at.saturating_add(mins(30));
        match env
            .store()
            .compare_and_swap(&touched, before.version, lag_at)
            .await
        {
            Err(StoreError::NotFound | StoreError::Conflict) => {}
            other => fail!(
                "{what}: a touch decided before it, written at the lagging clock: expected \
                 NotFound (or Conflict), got {other:?}"
            ),
        }
        let after = stored(&env, &id).await?;
        ensure!(
            after == tomb,
            "{what}: the late touch changed the tombstone:\n before {tomb:?}\n after  {after:?}"
        );
        match lagging.trusted_by_id().revoke(&id).await? {
            RevokeOutcome::AlreadyRevoked { reason } if reason == ended.reason() => {}
            other => fail!(
                "{what}: a second revoke: expected AlreadyRevoked({:?}), got {other:?}",
                ended.reason()
            ),
        }
        never_valid_again(&env, &policy, &c, ended, e, &what).await?;
    }
    Ok(())
}

/// One caller's clock is stepped 45 min forward (an NTP correction): the session is past its
/// idle deadline by it. A revocation then (by id → `Revoked`; by subject or resource →
/// counted 0) still ends the session; when the clock is stepped back, the session answers
/// `Revoked` with that reason — the logout is not lost — at that clock and every other.
pub(crate) async fn stepped_clock_around_revoke(env: Env) -> CaseResult {
    let policy = no_renewal()?;
    for revoker in REVOKERS {
        let what = format!("{revoker:?} revocation under a clock stepped +45 min");
        let who = subject(&format!("alice-{revoker:?}"))?;
        let on = format!("box-{revoker:?}");
        let t0 = env.now();
        let clock = ManualClock::new(t0);
        let s = env.sessions_at(policy.clone(), clock.clone())?;
        let c = s.create(&who, tagged(&on)?).await?;
        let token = text(&c);
        clock.set(t0.saturating_add(mins(1)));
        ensure!(
            validates(&s, &token).await,
            "{what}: a fresh session does not validate"
        );
        let deadline = stored(&env, &c.session.id).await?.expires_at;
        clock.set(t0.saturating_add(mins(46)));
        revoker
            .end(&s, &c, &who, &on)
            .await
            .map_err(|err| CaseError(format!("{what}: {err}")))?;
        clock.set(t0.saturating_add(mins(1)));
        let ended = revoker.ended();
        let r = s.validate(&token, &Context::none()).await.map(|_| ());
        expect_ended(
            &r,
            ended,
            &format!("{what}: validate once the clock is stepped back"),
        )?;
        never_valid_again(&env, &policy, &c, ended, deadline, &what).await?;
    }
    Ok(())
}

/// A caller's clock jumps ten years ahead for a minute, then is corrected. What was used
/// during the glitch fails closed and stays ended (`Expired`); what was not is untouched —
/// stores keep no high-water mark of times seen, so the glitch is not a permanent outage: an
/// untouched session validates again (and its touch then extends it), and new sessions work.
pub(crate) async fn clock_glitch_fails_closed_then_recovers(env: Env) -> CaseResult {
    let policy = no_renewal()?;
    let t0 = env.now();
    let clock = ManualClock::new(t0);
    let s = env.sessions_at(policy.clone(), clock.clone())?;
    let alice = subject("alice")?;
    let used = create(&s, &alice).await?;
    let untouched = create(&s, &alice).await?;
    clock.set(t0.saturating_add(mins(1)));
    clock.set(t0.saturating_add(Duration::from_secs(3650 * 24 * 3600)));
    let r = s.validate(text(&used), &Context::none()).await.map(|_| ());
    expect_ended(
        &r,
        Ended::Expired,
        "a session used while the clock was 10 years ahead",
    )?;
    clock.set(t0.saturating_add(mins(2)));
    let r = s.validate(text(&used), &Context::none()).await.map(|_| ());
    expect_ended(
        &r,
        Ended::Expired,
        "the session used during the glitch, once the clock is corrected",
    )?;
    ensure!(
        validates(&s, &text(&untouched)).await,
        "a session nobody used during the glitch does not validate once the clock is corrected \
         (time became sticky: one glitch ended every session)"
    );
    clock.set(t0.saturating_add(mins(31)));
    ensure!(
        validates(&s, &text(&untouched)).await,
        "the touch written after the glitch did not extend the session"
    );
    let fresh = create(&s, &alice).await?;
    ensure!(
        validates(&s, &text(&fresh)).await,
        "a session created after the glitch does not validate"
    );
    never_valid_again(
        &env,
        &policy,
        &used,
        Ended::Expired,
        used.session.expires_at,
        "the session used during the glitch",
    )
    .await
}

/// Two drivers over one store, the fast one's clock 5 min ahead. At the fast one's clock the
/// session is at its idle deadline: it observes the expiry (through `validate`, `refresh`,
/// `update_data` or `acquire_slot`) and is told `Expired`. The slow one — by whose clock the
/// session has 5 min left and a touch is due — is refused `Expired` too: what one saw end
/// stays ended for the other, on every store.
pub(crate) async fn skewed_drivers_share_endings(env: Env) -> CaseResult {
    let policy = no_renewal()?;
    for observer in ["validate", "refresh", "update_data", "acquire_slot"] {
        let slow_clock = ManualClock::new(env.now());
        let slow = env.sessions_at(policy.clone(), slow_clock.clone())?;
        let c = create(&slow, &subject(&format!("alice-{observer}"))?).await?;
        let (token, id, e) = (text(&c), c.session.id, c.session.expires_at);
        slow_clock.set(e.saturating_sub(mins(5)));
        let fast = env.sessions_at(policy.clone(), ManualClock::new(e))?;
        let ctx = Context::none();
        let seen = match observer {
            "validate" => fast.validate(&token, &ctx).await.map(|_| ()),
            "refresh" => fast.refresh(&token, &ctx).await.map(|_| ()),
            "update_data" => fast.update_data(&id, 0, b"x").await.map(|_| ()),
            _ => fast.acquire_slot(&id, None).await.map(|_| ()),
        };
        expect_ended(
            &seen,
            Ended::Expired,
            &format!("the fast driver's {observer} at the idle deadline"),
        )?;
        let r = slow.validate(&token, &ctx).await.map(|_| ());
        expect_ended(
            &r,
            Ended::Expired,
            &format!(
                "the slow driver's validate (5 min before the deadline by its clock) after the \
                 fast one's {observer} was told Expired"
            ),
        )?;
        never_valid_again(
            &env,
            &policy,
            &c,
            Ended::Expired,
            e,
            &format!("expiry seen by the fast driver's {observer}"),
        )
        .await?;
    }
    Ok(())
}

/// Subject cap 1 (`Reject`, then `EvictOldest`), two drivers 5 min apart. The slow one creates
/// A; 26 min later by its clock (31 by the fast one's) the fast one creates B: A is past its
/// deadline at the fast clock, so B is admitted — and A must then be ended for the slow one too
/// (`Expired`), never 2 live at the slow clock. The slow one's next create is refused
/// (`Reject`) or evicts B (`EvictOldest`); at either clock exactly one session is live.
pub(crate) async fn skewed_drivers_subject_cap_holds(env: Env) -> CaseResult {
    for on_full in [CapPolicy::Reject, CapPolicy::EvictOldest] {
        let policy = build(
            Policy::builder()
                .subject_cap(Some(SubjectCap { max: 1, on_full }))
                .renewal_interval(None),
        )?;
        let who = subject(&format!("alice-{on_full:?}"))?;
        let t0 = env.now();
        let slow_clock = ManualClock::new(t0);
        let fast_clock = ManualClock::new(t0.saturating_add(mins(5)));
        let slow = env.sessions_at(policy.clone(), slow_clock.clone())?;
        let fast = env.sessions_at(policy.clone(), fast_clock.clone())?;
        let a = create(&slow, &who).await?;
        slow_clock.set(t0.saturating_add(mins(26)));
        fast_clock.set(t0.saturating_add(mins(31)));
        let b = fast
            .create(&who, CreateOptions::default())
            .await
            .map_err(|e| {
                CaseError(format!(
                    "{on_full:?}: the fast driver's create, with the only other session past its \
                     deadline by its clock: {e:?}"
                ))
            })?;
        let r = slow.validate(text(&a), &Context::none()).await.map(|_| ());
        expect_ended(
            &r,
            Ended::Expired,
            &format!(
                "{on_full:?}: the session the fast driver's cap count found past its deadline, \
                 at the slow driver's clock"
            ),
        )?;
        let mut tokens = vec![text(&a), text(&b)];
        let third = slow.create(&who, CreateOptions::default()).await;
        match (on_full, third) {
            (CapPolicy::Reject, Err(Error::LimitReached { limit })) => ensure!(
                limit == Limit::SubjectSessions,
                "Reject: the slow driver's create was refused by {limit:?}"
            ),
            (CapPolicy::EvictOldest, Ok(c)) => {
                let r = slow.validate(text(&b), &Context::none()).await.map(|_| ());
                expect_ended(
                    &r,
                    Ended::Revoked(RevokeReason::Evicted),
                    "EvictOldest: the fast driver's session after the slow one's create",
                )?;
                tokens.push(text(&c));
            }
            (_, other) => fail!("{on_full:?}: the slow driver's create under cap 1: got {other:?}"),
        }
        for (name, s) in [("slow", &slow), ("fast", &fast)] {
            let listed = s.list(&who).await?.len();
            ensure!(
                listed == 1,
                "{on_full:?}: {listed} live sessions listed at the {name} driver's clock under \
                 cap 1"
            );
            let mut valid = 0;
            for t in &tokens {
                valid += usize::from(validates(s, t).await);
            }
            ensure!(
                valid == 1,
                "{on_full:?}: {valid} sessions validate at the {name} driver's clock under cap 1"
            );
        }
    }
    Ok(())
}

/// Sets the store's clock to read `t` (the store declares `server_clock`).
fn store_at(env: &Env, t: Timestamp) -> CaseResult {
    ensure!(
        env.set_store_time(t),
        "the store declares server_clock, but set_clock_offset returned false"
    );
    Ok(())
}

/// What a store ahead of its caller must decide on its own clock. Four sessions and a ticket
/// are made with store and caller agreeing; the caller then reads 10 s later (everything live
/// by its clock, the ticket unexpired, no touch due) while the store reads 1 min past the idle
/// deadline. `load_session` and `store_clock` return the store's time; a compare-and-swap of a
/// touch at the caller's clock is `NotFound` and changes nothing; `acquire_slot` is
/// `SessionNotLive` in the store (and `Expired` through `Sessions`); the ticket is `Expired`;
/// `validate` is `Expired`, decided from the store time `load_session` returned, and that
/// ending is durable. Once the store's clock is corrected, the session whose touch was merely
/// refused validates again (no store time is sticky) and those answered `Expired` stay ended.
pub(crate) async fn store_ahead_of_caller_decides(env: Env) -> CaseResult {
    let policy = no_renewal()?;
    let t0 = env.now();
    store_at(&env, t0)?;
    let s = env.sessions(policy.clone())?;
    let alice = subject("alice")?;
    let swapped = create(&s, &alice).await?;
    let slot = create(&s, &alice).await?;
    let ticketed = create(&s, &alice).await?;
    let seen = create(&s, &alice).await?;
    let ticket = s.mint_ticket(text(&ticketed), &Context::none()).await?;
    env.set_time(t0.saturating_add(secs(10)));
    let deadline = swapped.session.expires_at.max(seen.session.expires_at);
    let ahead = deadline.saturating_add(mins(1));
    store_at(&env, ahead)?;

    let loaded = env.store().load_session(&swapped.session.id).await?;
    match loaded.store_time {
        Some(t) if t >= ahead => {}
        other => fail!(
            "load_session on a server_clock store: expected the store's time (≥ {ahead}), got \
             {other:?}"
        ),
    }
    match env.store().store_clock().await? {
        Some(t) if t >= ahead => {}
        other => fail!("store_clock on a server_clock store: expected ≥ {ahead}, got {other:?}"),
    }
    let Some(before) = loaded.record else {
        fail!("a created session does not load");
    };
    let mut touched = (*before).clone();
    touched.version = before.version.wrapping_add(1);
    touched.last_seen = env.now();
    touched.expires_at = env.now().saturating_add(mins(30));
    match env
        .store()
        .compare_and_swap(&touched, before.version, env.now())
        .await
    {
        Err(StoreError::NotFound) => {}
        other => fail!(
            "CAS of a touch on a session past its deadline by the store's clock (not by the \
             caller's): expected NotFound, got {other:?}"
        ),
    }
    let after = stored(&env, &swapped.session.id).await?;
    ensure!(
        after == *before,
        "the refused CAS changed the record:\n before {before:?}\n after  {after:?}"
    );

    let rec = new_slot(&slot.session.id, None, env.now(), &policy, env.entropy())
        .map_err(|e| CaseError(format!("entropy failed: {e}")))?;
    match env
        .store()
        .acquire_slot(&rec, &slot_caps(&policy), env.now())
        .await
    {
        Ok(SlotOutcome::SessionNotLive) => {}
        other => fail!(
            "acquire_slot on a session past its deadline by the store's clock: expected \
             SessionNotLive, got {other:?}"
        ),
    }
    let r = s.acquire_slot(&slot.session.id, None).await.map(|_| ());
    expect_ended(
        &r,
        Ended::Expired,
        "Sessions::acquire_slot with the store ahead",
    )?;

    match s.redeem_ticket(ticket.ticket.expose_secret()).await {
        Err(Error::Expired) => {}
        other => fail!(
            "redeeming a 30 s ticket 10 s after minting by the caller's clock, minutes after by \
             the store's: expected Expired, got {other:?}"
        ),
    }

    let r = s.validate(text(&seen), &Context::none()).await.map(|_| ());
    expect_ended(
        &r,
        Ended::Expired,
        "validate 10 s after creation by the caller's clock, past the deadline by the store time \
         load_session returned",
    )?;
    let rec = stored(&env, &seen.session.id).await?;
    ensure!(
        ended_by(&rec) == Some(RevokeReason::Expired),
        "validate answered Expired, but the ending is not durable: the store holds {rec:?}"
    );

    store_at(&env, env.now())?;
    ensure!(
        validates(&s, &text(&swapped)).await,
        "once the store's clock is corrected, a session nobody was told had ended does not \
         validate (store time became sticky)"
    );
    for (c, what) in [(&slot, "acquire_slot"), (&seen, "validate")] {
        let r = s.validate(text(c), &Context::none()).await.map(|_| ());
        expect_ended(
            &r,
            Ended::Expired,
            &format!("after the store's clock is corrected, the session {what} was told Expired"),
        )?;
    }
    Ok(())
}

/// A store whose clock lags its caller by two hours never lets that lag stretch anything: at
/// the caller's idle deadline, a CAS of a touch is `NotFound`, `acquire_slot` is
/// `SessionNotLive` in the store (`Expired` through `Sessions`), an expired ticket is
/// `Expired` and `validate` is `Expired` — the later of the two clocks decides.
pub(crate) async fn store_behind_caller_still_refuses(env: Env) -> CaseResult {
    let policy = no_renewal()?;
    let t0 = env.now();
    store_at(&env, t0.saturating_sub(mins(120)))?;
    let s = env.sessions(policy.clone())?;
    let alice = subject("alice")?;
    let swapped = create(&s, &alice).await?;
    let slot = create(&s, &alice).await?;
    let ticketed = create(&s, &alice).await?;
    let seen = create(&s, &alice).await?;
    let ticket = s.mint_ticket(text(&ticketed), &Context::none()).await?;
    env.set_time(swapped.session.expires_at.max(seen.session.expires_at));

    let loaded = env.store().load_session(&swapped.session.id).await?;
    match loaded.store_time {
        Some(t) if t < env.now().saturating_sub(mins(60)) => {}
        other => fail!(
            "load_session with the store's clock set 2 h behind the caller ({}): got store time \
             {other:?}",
            env.now()
        ),
    }
    match env.store().store_clock().await? {
        Some(t) if t < env.now().saturating_sub(mins(60)) => {}
        other => fail!(
            "store_clock with the store's clock set 2 h behind the caller ({}): got {other:?}",
            env.now()
        ),
    }
    let Some(before) = loaded.record else {
        fail!("a created session does not load");
    };
    let mut touched = (*before).clone();
    touched.version = before.version.wrapping_add(1);
    touched.last_seen = env.now();
    touched.expires_at = env.now().saturating_add(mins(30));
    match env
        .store()
        .compare_and_swap(&touched, before.version, env.now())
        .await
    {
        Err(StoreError::NotFound) => {}
        other => fail!(
            "CAS of a touch at the caller's idle deadline, the store's clock 2 h behind: expected \
             NotFound, got {other:?}"
        ),
    }
    let rec = new_slot(&slot.session.id, None, env.now(), &policy, env.entropy())
        .map_err(|e| CaseError(format!("entropy failed: {e}")))?;
    match env
        .store()
        .acquire_slot(&rec, &slot_caps(&policy), env.now())
        .await
    {
        Ok(SlotOutcome::SessionNotLive) => {}
        other => fail!(
            "acquire_slot at the caller's idle deadline, the store's clock 2 h behind: expected \
             SessionNotLive, got {other:?}"
        ),
    }
    let r = s.acquire_slot(&slot.session.id, None).await.map(|_| ());
    expect_ended(
        &r,
        Ended::Expired,
        "Sessions::acquire_slot with the store behind",
    )?;
    match s.redeem_ticket(ticket.ticket.expose_secret()).await {
        Err(Error::Expired) => {}
        other => fail!(
            "redeeming a ticket 30 min after minting by the caller's clock (the store 2 h \
             behind): expected Expired, got {other:?}"
        ),
    }
    let r = s.validate(text(&seen), &Context::none()).await.map(|_| ());
    expect_ended(&r, Ended::Expired, "validate at the caller's idle deadline")?;
    Ok(())
}

/// The grace window runs on the store's clock: after a rotation (store and caller agreeing)
/// and a use of the successor, the store moves 31 s on while the caller reads 1 s: the
/// predecessor is reuse (`ReuseDetected`, the session revoked), not answered with the
/// successor as the caller's clock would have it.
pub(crate) async fn grace_window_on_store_clock(env: Env) -> CaseResult {
    let t0 = env.now();
    store_at(&env, t0)?;
    let s = env.sessions(no_renewal()?)?;
    let c = create(&s, &subject("alice")?).await?;
    let old = text(&c);
    let new = s
        .refresh(&old, &Context::none())
        .await?
        .token
        .expose_secret()
        .to_owned();
    ensure!(validates(&s, &new).await, "the successor does not validate");
    let rotated = stored(&env, &c.session.id).await?.credential.rotated_at;
    env.set_time(t0.saturating_add(secs(1)));
    store_at(&env, rotated.saturating_add(secs(31)))?;
    match s.validate(&old, &Context::none()).await {
        Err(Error::ReuseDetected) => {}
        other => fail!(
            "the predecessor 31 s after its rotation by the store's clock (1 s by the caller's): \
             expected ReuseDetected (a 30 s grace window, measured on the store's clock), got \
             {other:?}"
        ),
    }
    let r = s.validate(&new, &Context::none()).await.map(|_| ());
    expect_ended(
        &r,
        Ended::Revoked(RevokeReason::ReuseDetected),
        "the successor after the reuse",
    )
}

/// The orphan window runs on the store's clock: a successor never presented is recovered with
/// the predecessor 2 min after the rotation (store and caller agreeing), but once the store
/// reads 5 min 1 s — the caller still 2 min — the predecessor is reuse.
pub(crate) async fn orphan_window_on_store_clock(env: Env) -> CaseResult {
    let t0 = env.now();
    store_at(&env, t0)?;
    let s = env.sessions(no_renewal()?)?;
    let c = create(&s, &subject("alice")?).await?;
    let old = text(&c);
    let lost = s
        .refresh(&old, &Context::none())
        .await?
        .token
        .expose_secret()
        .to_owned();
    env.set_time(t0.saturating_add(mins(2)));
    store_at(&env, t0.saturating_add(mins(2)))?;
    let recovered = s
        .refresh(&old, &Context::none())
        .await?
        .token
        .expose_secret()
        .to_owned();
    ensure!(
        recovered == lost,
        "orphan recovery 2 min after the rotation gave a different successor"
    );
    let rotated = stored(&env, &c.session.id).await?.credential.rotated_at;
    store_at(&env, rotated.saturating_add(mins(5) + secs(1)))?;
    match s.refresh(&old, &Context::none()).await {
        Err(Error::ReuseDetected) => {}
        other => fail!(
            "the predecessor 5 min 1 s after its rotation by the store's clock (2 min by the \
             caller's): expected ReuseDetected (a 5 min orphan window, measured on the store's \
             clock), got {other:?}"
        ),
    }
    let r = s.validate(&lost, &Context::none()).await.map(|_| ());
    expect_ended(
        &r,
        Ended::Revoked(RevokeReason::ReuseDetected),
        "the successor after the reuse",
    )
}

/// The ticket TTL runs on the store's clock: of two 30 s tickets minted together, one is
/// redeemed at 10 s by the store's clock; the other, redeemed by a caller reading 1 s while
/// the store reads 4 min, is `Expired`.
pub(crate) async fn ticket_ttl_on_store_clock(env: Env) -> CaseResult {
    let t0 = env.now();
    store_at(&env, t0)?;
    let s = env.sessions(no_renewal()?)?;
    let c = create(&s, &subject("alice")?).await?;
    let first = s.mint_ticket(text(&c), &Context::none()).await?;
    let second = s.mint_ticket(text(&c), &Context::none()).await?;
    env.set_time(t0.saturating_add(secs(1)));
    store_at(&env, t0.saturating_add(secs(10)))?;
    s.redeem_ticket(first.ticket.expose_secret())
        .await
        .map_err(|e| CaseError(format!("a ticket redeemed 10 s after minting: {e:?}")))?;
    store_at(&env, t0.saturating_add(mins(4)))?;
    match s.redeem_ticket(second.ticket.expose_secret()).await {
        Err(Error::Expired) => Ok(()),
        other => fail!(
            "a 30 s ticket redeemed 4 min after minting by the store's clock (1 s by the \
             caller's): expected Expired, got {other:?}"
        ),
    }
}

/// The slot TTL runs on the store's clock. With 1 slot per session: once the store reads
/// 90 s past a 60 s slot taken with both clocks agreeing — the caller reads 10 s — that slot
/// has lapsed: it no longer counts (a new one is acquired, though the lagging caller would
/// still call it live), and a heartbeat of it is `SlotLost`.
pub(crate) async fn slot_ttl_on_store_clock(env: Env) -> CaseResult {
    let policy = build(
        Policy::builder()
            .max_slots_per_session(Some(1))
            .renewal_interval(None),
    )?;
    let t0 = env.now();
    store_at(&env, t0)?;
    let s = env.sessions(policy)?;
    let c = create(&s, &subject("alice")?).await?;
    let held = s.acquire_slot(&c.session.id, None).await?;
    env.set_time(t0.saturating_add(secs(10)));
    store_at(&env, t0.saturating_add(secs(90)))?;
    s.acquire_slot(&c.session.id, None).await.map_err(|e| {
        CaseError(format!(
            "a slot 90 s after the last one by the store's clock (10 s by the caller's), 1 per \
             session: the lapsed one must not count, got {e:?}"
        ))
    })?;
    match s.heartbeat_slot(&held.id).await {
        Err(Error::SlotLost) => Ok(()),
        other => fail!(
            "heartbeat of a 60 s slot 90 s after it was taken by the store's clock (10 s by the \
             caller's): expected SlotLost, got {other:?}"
        ),
    }
}

/// A caller whose clock lags the store's by more than the slot TTL cannot get around the slot
/// cap (1 per session). A slot it acquires, and a slot it heartbeats, must hold their place
/// for a TTL on the store's clock: the next acquisition on the session is refused
/// (`LimitReached(SessionSlots)`). A slot stored with a lifetime counted from the lagging
/// caller's clock would be lapsed by the store's from the start and never count.
pub(crate) async fn slot_cap_holds_for_lagging_caller(env: Env) -> CaseResult {
    let policy = build(
        Policy::builder()
            .max_slots_per_session(Some(1))
            .renewal_interval(None),
    )?;
    let t0 = env.now();
    store_at(&env, t0)?;
    let s = env.sessions(policy)?;
    let alice = subject("alice")?;
    let acquired = create(&s, &alice).await?;
    let beaten = create(&s, &alice).await?;
    let held = s.acquire_slot(&beaten.session.id, None).await?;

    // Acquire: the caller 110 s behind the store.
    env.set_time(t0.saturating_add(secs(10)));
    store_at(&env, t0.saturating_add(mins(2)))?;
    s.acquire_slot(&acquired.session.id, None)
        .await
        .map_err(|e| CaseError(format!("a first slot, the caller 110 s behind: {e:?}")))?;
    let second = s.acquire_slot(&acquired.session.id, None).await;
    ensure!(
        matches!(
            second,
            Err(Error::LimitReached {
                limit: Limit::SessionSlots
            })
        ),
        "a second slot under a cap of 1 per session, the caller 110 s behind the store: expected \
         LimitReached(SessionSlots), got {second:?}"
    );

    // Heartbeat: a live slot (taken at t0, 60 s TTL) heartbeated at store time t0+40 s by a
    // caller reading t0−30 s.
    env.set_time(t0.saturating_sub(secs(30)));
    store_at(&env, t0.saturating_add(secs(40)))?;
    match s.heartbeat_slot(&held.id).await {
        Ok(_) => {}
        other => fail!("heartbeat of a live slot, the caller 70 s behind: got {other:?}"),
    }
    let second = s.acquire_slot(&beaten.session.id, None).await;
    ensure!(
        matches!(
            second,
            Err(Error::LimitReached {
                limit: Limit::SessionSlots
            })
        ),
        "a second slot under a cap of 1 per session right after a heartbeat by a caller 70 s \
         behind the store: expected LimitReached(SessionSlots), got {second:?}"
    );
    Ok(())
}

/// The subject cap counts on the store's clock: cap 1 (`Reject`); the store reads 1 s past the
/// only session's idle deadline, the caller 10 min after its creation. The caller's create is
/// admitted (the old session is not live at the store's time), the old session is `Expired`
/// for that caller from then on (never 2 live at its clock), and a further create is refused.
pub(crate) async fn subject_cap_on_store_clock(env: Env) -> CaseResult {
    let policy = build(
        Policy::builder()
            .subject_cap(Some(SubjectCap {
                max: 1,
                on_full: CapPolicy::Reject,
            }))
            .renewal_interval(None),
    )?;
    let t0 = env.now();
    store_at(&env, t0)?;
    let s = env.sessions(policy)?;
    let alice = subject("alice")?;
    let old = create(&s, &alice).await?;
    env.set_time(t0.saturating_add(mins(10)));
    let deadline = stored(&env, &old.session.id).await?.expires_at;
    store_at(&env, deadline.saturating_add(secs(1)))?;
    let new = s
        .create(&alice, CreateOptions::default())
        .await
        .map_err(|e| {
            CaseError(format!(
                "cap 1, the only session past its deadline by the store's clock: create refused \
             with {e:?} (the cap was counted on the lagging caller's clock)"
            ))
        })?;
    let r = s.validate(text(&old), &Context::none()).await.map(|_| ());
    expect_ended(
        &r,
        Ended::Expired,
        "the session the cap count found past its deadline, at the lagging caller's clock",
    )?;
    ensure!(
        validates(&s, &text(&new)).await,
        "the admitted session does not validate"
    );
    let listed = s.list(&alice).await?.len();
    ensure!(listed == 1, "{listed} live sessions listed under cap 1");
    let r = s.create(&alice, CreateOptions::default()).await;
    ensure!(
        matches!(
            r,
            Err(Error::LimitReached {
                limit: Limit::SubjectSessions
            })
        ),
        "a second session under cap 1: expected LimitReached(SubjectSessions), got {r:?}"
    );
    Ok(())
}

/// The global cap counts on the store's clock: cap 1 (`Reject`; an upper bound on a sharded
/// store, which counts a session until its absolute deadline), sessions with a 5-minute
/// absolute lifetime; the store reads 1 s past the only session's absolute deadline, the caller
/// 1 min after its creation. Another subject's create is admitted (the old session is not live
/// at the store's time, however far the caller lags), the old session is `Expired` for that
/// caller, and a further create is refused.
pub(crate) async fn global_cap_on_store_clock(env: Env) -> CaseResult {
    let Some(policy) = global_capped(
        &env,
        Policy::builder()
            .global_cap(Some(leasehold::GlobalCap {
                max: 1,
                on_full: CapPolicy::Reject,
            }))
            .inexact_global_cap_ok(env.capabilities().sharded)
            .absolute_lifetime(mins(5))
            .renewal_interval(None),
    )?
    else {
        return Ok(());
    };
    let t0 = env.now();
    store_at(&env, t0)?;
    let s = env.sessions(policy)?;
    let old = create(&s, &subject("alice")?).await?;
    env.set_time(t0.saturating_add(mins(1)));
    let deadline = stored(&env, &old.session.id).await?.absolute_deadline;
    store_at(&env, deadline.saturating_add(secs(1)))?;
    let new = s
        .create(&subject("bob")?, CreateOptions::default())
        .await
        .map_err(|e| {
            CaseError(format!(
                "global cap 1, the only session past its absolute deadline by the store's clock: \
                 create refused with {e:?} (the cap was counted on the lagging caller's clock)"
            ))
        })?;
    let r = s.validate(text(&old), &Context::none()).await.map(|_| ());
    expect_ended(
        &r,
        Ended::Expired,
        "the session the global count found past its deadline, at the lagging caller's clock",
    )?;
    ensure!(
        validates(&s, &text(&new)).await,
        "the admitted session does not validate"
    );
    let r = s.create(&subject("carol")?, CreateOptions::default()).await;
    ensure!(
        matches!(
            r,
            Err(Error::LimitReached {
                limit: Limit::GlobalSessions
            })
        ),
        "a second session under global cap 1: expected LimitReached(GlobalSessions), got {r:?}"
    );
    Ok(())
}

/// The creation-rate window runs on the store's clock: 1 creation per minute; 90 s later by
/// the store's clock (5 s by the caller's) a creation is admitted, and the next is refused with
/// a retry-after measured from that creation on the store's clock (about 60 s; a creation
/// logged at the caller's clock would be out of the window already).
pub(crate) async fn rate_window_on_store_clock(env: Env) -> CaseResult {
    let policy = build(
        Policy::builder()
            .creation_rate(Some(Rate {
                max: 1,
                window: mins(1),
            }))
            .renewal_interval(None),
    )?;
    let t0 = env.now();
    store_at(&env, t0)?;
    let s = env.sessions(policy)?;
    let alice = subject("alice")?;
    create(&s, &alice).await?;
    env.set_time(t0.saturating_add(secs(5)));
    store_at(&env, t0.saturating_add(secs(90)))?;
    create(&s, &alice).await.map_err(|e| {
        CaseError(format!(
            "a creation 90 s after the last by the store's clock (5 s by the caller's), 1 per \
             minute allowed: {}",
            e.0
        ))
    })?;
    match s.create(&alice, CreateOptions::default()).await {
        Err(Error::RateLimited { retry_after }) if retry_after > secs(30) => Ok(()),
        other => fail!(
            "a second creation within the minute (store's clock): expected RateLimited with a \
             retry-after near 60 s, got {other:?}"
        ),
    }
}
