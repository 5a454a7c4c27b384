//! Policy: every knob of the lifecycle, with documented defaults, validated when built.

use std::time::Duration;

use crate::token::MAX_PREFIX_LEN;

/// What happens when a subject already has the maximum number of live sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapPolicy {
    /// Refuse the new session ([`Error::LimitReached`](crate::Error::LimitReached)).
    Reject,
    /// Revoke the subject's oldest live session(s), in the same atomic step as the insert.
    EvictOldest,
}

/// A cap on live sessions per subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubjectCap {
    /// Most live sessions one subject may hold (≥ 1).
    pub max: u32,
    /// What to do when a create would exceed it.
    pub on_full: CapPolicy,
}

/// A cap on live sessions in the whole store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalCap {
    /// Most live sessions the store may hold (≥ 1).
    pub max: u64,
    /// What to do when a create would exceed it: refuse it, or evict the store's oldest live
    /// session (a bounded registry). Evicting is exact only on an unsharded store.
    pub on_full: CapPolicy,
}

/// A rate: at most `max` events per rolling `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per window (≥ 1).
    pub max: u32,
    /// Length of the rolling window (> 0).
    pub window: Duration,
}

/// Longest duration any knob may take (≈ 100 years): keeps every deadline far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Largest `reuse_history` (older verifiers remembered to recognise a grand-predecessor).
pub const MAX_REUSE_HISTORY: usize = 64;
/// Largest `max_data_len`.
pub const MAX_DATA_LEN: usize = 1 << 20;

/// The session policy. Build it with [`Policy::builder`]; [`Policy::default`] is the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub(crate) absolute_lifetime: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) touch_granularity: Duration,
    pub(crate) renewal_interval: Option<Duration>,
    pub(crate) grace_window: Duration,
    pub(crate) orphan_window: Duration,
    pub(crate) reuse_detection: bool,
    pub(crate) reuse_history: usize,
    pub(crate) ticket_ttl: Duration,
    pub(crate) subject_cap: Option<SubjectCap>,
    pub(crate) creation_rate: Option<Rate>,
    pub(crate) global_cap: Option<GlobalCap>,
    pub(crate) slot_ttl: Duration,
    pub(crate) max_slots_per_session: Option<u32>,
    pub(crate) max_slots_per_resource: Option<u32>,
    pub(crate) enforce_binding: bool,
    pub(crate) max_data_len: usize,
    pub(crate) token_prefix: String,
    pub(crate) ticket_prefix: String,
    pub(crate) access_ttl: Option<Duration>,
    pub(crate) access_prefix: String,
    pub(crate) max_cas_retries: u32,
    pub(crate) future_tolerance: Duration,
    pub(crate) inexact_global_cap_ok: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            absolute_lifetime: Duration::from_secs(24 * 3600),
            idle_timeout: Some(Duration::from_secs(30 * 60)),
            touch_granularity: Duration::from_secs(60),
            renewal_interval: Some(Duration::from_secs(15 * 60)),
            grace_window: Duration::from_secs(30),
            orphan_window: Duration::from_secs(5 * 60),
            reuse_detection: true,
            reuse_history: 8,
            ticket_ttl: Duration::from_secs(30),
            subject_cap: None,
            creation_rate: None,
            global_cap: None,
            slot_ttl: Duration::from_secs(60),
            max_slots_per_session: None,
            max_slots_per_resource: None,
            enforce_binding: true,
            max_data_len: 4096,
            token_prefix: "lh1".to_owned(),
            ticket_prefix: "lht1".to_owned(),
            access_ttl: None,
            access_prefix: "lha1".to_owned(),
            max_cas_retries: 16,
            future_tolerance: Duration::from_secs(24 * 3600),
            inexact_global_cap_ok: false,
        }
    }
}

macro_rules! getters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        impl Policy {
            $( $(#[$doc])* pub fn $name(&self) -> $ty { self.$name.clone() } )*
        }
        impl PolicyBuilder {
            $( $(#[$doc])* pub fn $name(mut self, v: $ty) -> Self { self.policy.$name = v; self } )*
        }
    };
}

getters! {
    /// Hard lifetime from creation; nothing moves a session past it. Default 24 h; must be > 0.
    /// For sessions with no absolute lifetime use [`PolicyBuilder::no_absolute_lifetime`]
    /// (it sets [`MAX_DURATION`]); a create may ask for less
    /// ([`CreateOptions::absolute_lifetime`](crate::CreateOptions::absolute_lifetime)).
    absolute_lifetime: Duration;
    /// Inactivity after which a session expires; `None` disables. Default 30 min.
    idle_timeout: Option<Duration>;
    /// The idle deadline is written only when it would move by at least this much, so most
    /// reads are one round trip with no write. It is clamped to a tenth of the idle timeout
    /// ([`Policy::effective_touch_granularity`]), so a short idle timeout (a 1 s test lease)
    /// needs no tuning; the effective idle timeout is between `idle_timeout` minus that and
    /// `idle_timeout`. Default 60 s; 0 writes every read.
    touch_granularity: Duration;
    /// Validate rotates the secret once this much time passed since the last rotation, and
    /// returns the new token; `None` disables. Default 15 min.
    renewal_interval: Option<Duration>;
    /// After a rotation the predecessor stays accepted this long (answered with the *same*
    /// successor). Default 30 s; 0 disables.
    grace_window: Duration;
    /// While the successor has never been presented (its reply was lost), the predecessor stays
    /// accepted up to this long after the rotation. Default 5 min; must be ≥ `grace_window`.
    orphan_window: Duration;
    /// Presenting a predecessor outside its windows, or any older token, revokes the session
    /// (theft signal). Default on; off makes such tokens merely unauthenticated.
    reuse_detection: bool;
    /// How many retired verifiers (older than the predecessor) are remembered to recognise a
    /// grand-predecessor as reuse. Default 8; at most 64.
    reuse_history: usize;
    /// Lifetime of a one-shot ticket. Default 30 s; must be > 0.
    ticket_ttl: Duration;
    /// Live sessions per subject, enforced in the same atomic step as the insert. Default none.
    subject_cap: Option<SubjectCap>;
    /// Creations per subject per rolling window (rejections carry retry-after). Default none.
    creation_rate: Option<Rate>;
    /// Live sessions in the whole store, with the policy when full. Default none.
    global_cap: Option<GlobalCap>;
    /// A slot expires unless heartbeated within this. Default 60 s; must be > 0.
    slot_ttl: Duration;
    /// Live slots per session. Default none.
    max_slots_per_session: Option<u32>;
    /// Live slots per resource. Default none.
    max_slots_per_resource: Option<u32>;
    /// A session created with a context binding only validates with the same binding.
    /// Default on.
    enforce_binding: bool;
    /// Largest opaque data a session may carry, in bytes. Default 4096; at most 1 MiB.
    max_data_len: usize;
    /// Session token prefix (`lh1` → `lh1_<id>_<secret>`): lets secret scanners find leaks.
    /// 1–16 characters of `[a-z0-9]`.
    token_prefix: String;
    /// Ticket token prefix, distinct from `token_prefix`. Default `lht1`.
    ticket_prefix: String;
    /// Lifetime of the access token issued with every session and every rotation: a
    /// short-lived multi-use credential ([`Sessions::validate_access`](crate::Sessions::validate_access)),
    /// replaced on rotation, ended with its session, never past the session's own deadline.
    /// `None` (the default) issues none.
    access_ttl: Option<Duration>;
    /// Access token prefix, distinct from the other two. Default `lha1`.
    access_prefix: String;
    /// Bound on compare-and-swap retries under contention before `VersionConflict`. Default 16.
    max_cas_retries: u32;
    /// How far past the reader's (judged) time a session's last write may lie before the read
    /// distrusts it: a record last written further in the future was written by a clock that
    /// had jumped ahead (a glitch, a bad NTP step), and is ended (fail closed) rather than
    /// kept valid until a deadline computed from that wrong clock. Must exceed the clock skew
    /// between the processes that share a store. Default 24 h.
    future_tolerance: Duration;
    /// Accept a `global_cap` that the store can only keep as an upper bound (a sharded store,
    /// e.g. Redis Cluster, counts across shards without one atomic step: it never admits more
    /// than the cap, but may refuse a create while sessions it still counts have ended).
    /// Default off: [`Sessions::new`](crate::Sessions::new) refuses such a policy on such a
    /// store rather than let it mean less than it says.
    inexact_global_cap_ok: bool;
}

impl Policy {
    /// A builder starting from the defaults.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            policy: Policy::default(),
        }
    }

    /// Checks every rule a built policy satisfies. `Policy::default()` passes.
    pub fn validate(&self) -> Result<(), PolicyError> {
        use PolicyError as E;
        let mut durations = vec![
            ("absolute_lifetime", self.absolute_lifetime),
            ("touch_granularity", self.touch_granularity),
            ("grace_window", self.grace_window),
            ("orphan_window", self.orphan_window),
            ("ticket_ttl", self.ticket_ttl),
            ("slot_ttl", self.slot_ttl),
            ("future_tolerance", self.future_tolerance),
        ];
        durations.extend(self.idle_timeout.map(|d| ("idle_timeout", d)));
        durations.extend(self.renewal_interval.map(|d| ("renewal_interval", d)));
        durations.extend(self.access_ttl.map(|d| ("access_ttl", d)));
        durations.extend(
            self.creation_rate
                .map(|r| ("creation_rate.window", r.window)),
        );
        for (name, d) in durations {
            if d > MAX_DURATION {
                return Err(E::TooLong(name));
            }
        }
        for (name, d) in [
            ("absolute_lifetime", Some(self.absolute_lifetime)),
            ("idle_timeout", self.idle_timeout),
            ("renewal_interval", self.renewal_interval),
            ("ticket_ttl", Some(self.ticket_ttl)),
            ("slot_ttl", Some(self.slot_ttl)),
            ("access_ttl", self.access_ttl),
            ("creation_rate.window", self.creation_rate.map(|r| r.window)),
        ] {
            if d.is_some_and(|d| d.as_millis() == 0) {
                return Err(E::Zero(name));
            }
        }
        if self.grace_window >= self.absolute_lifetime {
            return Err(E::GraceNotBelowAbsolute);
        }
        if self.orphan_window < self.grace_window {
            return Err(E::OrphanBelowGrace);
        }
        if self.reuse_history > MAX_REUSE_HISTORY {
            return Err(E::ReuseHistoryTooLarge);
        }
        if self.max_data_len > MAX_DATA_LEN {
            return Err(E::DataLimitTooLarge);
        }
        if self.subject_cap.is_some_and(|c| c.max == 0)
            || self.creation_rate.is_some_and(|r| r.max == 0)
            || self.global_cap.is_some_and(|c| c.max == 0)
            || self.max_slots_per_session == Some(0)
            || self.max_slots_per_resource == Some(0)
        {
            return Err(E::ZeroCap);
        }
        for prefix in [&self.token_prefix, &self.ticket_prefix, &self.access_prefix] {
            let ok = !prefix.is_empty()
                && prefix.len() <= MAX_PREFIX_LEN
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !ok {
                return Err(E::InvalidPrefix(prefix.clone()));
            }
        }
        if self.token_prefix == self.ticket_prefix
            || self.token_prefix == self.access_prefix
            || self.ticket_prefix == self.access_prefix
        {
            return Err(E::SamePrefixes);
        }
        if self.max_cas_retries == 0 {
            return Err(E::ZeroCap);
        }
        Ok(())
    }
}

/// Builds a [`Policy`]; `build` validates it.
#[derive(Clone, Debug)]
pub struct PolicyBuilder {
    policy: Policy,
}

impl PolicyBuilder {
    /// Sessions with no absolute lifetime (only the idle timeout, if any, ends them):
    /// `absolute_lifetime` = [`MAX_DURATION`]. Their tombstones are still reclaimed
    /// ([`TOMBSTONE_RETENTION`](crate::record::TOMBSTONE_RETENTION)).
    pub fn no_absolute_lifetime(mut self) -> Self {
        self.policy.absolute_lifetime = MAX_DURATION;
        self
    }

    /// The validated policy, or the first rule it breaks.
    pub fn build(self) -> Result<Policy, PolicyError> {
        self.policy.validate()?;
        Ok(self.policy)
    }
}

/// A policy that makes no sense. Each variant names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A duration that must be positive is zero (or rounds to zero milliseconds).
    #[error("{0} must be at least 1 ms")]
    Zero(&'static str),
    /// A duration exceeds [`MAX_DURATION`].
    #[error("{0} exceeds the 100-year maximum")]
    TooLong(&'static str),
    /// The grace window must be shorter than the absolute lifetime.
    #[error("grace_window must be shorter than absolute_lifetime")]
    GraceNotBelowAbsolute,
    /// The orphan window must be at least the grace window.
    #[error("orphan_window must be at least grace_window")]
    OrphanBelowGrace,
    /// `reuse_history` exceeds [`MAX_REUSE_HISTORY`].
    #[error("reuse_history exceeds {MAX_REUSE_HISTORY}")]
    ReuseHistoryTooLarge,
    /// `max_data_len` exceeds [`MAX_DATA_LEN`].
    #[error("max_data_len exceeds {MAX_DATA_LEN}")]
    DataLimitTooLarge,
    /// A cap, rate or retry bound of zero (use `None` to disable a cap instead).
    #[error("caps, rates and retry bounds must be at least 1 (use None to disable)")]
    ZeroCap,
    /// A token prefix is empty, too long, or not `[a-z0-9]`.
    #[error("invalid token prefix {0:?}: 1-16 characters of [a-z0-9]")]
    InvalidPrefix(String),
    /// Session, ticket and access prefixes must differ.
    #[error("token_prefix, ticket_prefix and access_prefix must differ")]
    SamePrefixes,
    /// The policy asks for a guarantee the store cannot give (said when `Sessions` is built).
    #[error("the store cannot guarantee {what}: {why}")]
    NotGuaranteed {
        /// What the policy asks for.
        what: &'static str,
        /// Why the store cannot give it, and what to do.
        why: &'static str,
    },
}

impl Policy {
    /// The touch granularity in effect: `touch_granularity`, at most a tenth of the idle
    /// timeout.
    pub fn effective_touch_granularity(&self) -> Duration {
        match self.idle_timeout {
            Some(idle) => self.touch_granularity.min(idle / 10),
            None => self.touch_granularity,
        }
    }

    /// The kind of the sessions this policy issues: its token prefix.
    pub fn kind(&self) -> Result<crate::Kind, PolicyError> {
        crate::Kind::new(self.token_prefix.clone())
            .map_err(|_| PolicyError::InvalidPrefix(self.token_prefix.clone()))
    }

    /// Refuses a policy that asks for something a store with `caps` cannot guarantee.
    pub fn check_against(&self, caps: &crate::Capabilities) -> Result<(), PolicyError> {
        if self.global_cap.is_some() && caps.no_global_index {
            return Err(PolicyError::NotGuaranteed {
                what: "a global_cap",
                why: "the store keeps no global index, so nothing counts every session in one \
                      step; turn the store's global index on (Redis: \
                      RedisConfig::global_index(true), the default), or drop the global cap",
            });
        }
        if self
            .global_cap
            .is_some_and(|c| c.on_full == CapPolicy::EvictOldest)
            && caps.sharded
        {
            return Err(PolicyError::NotGuaranteed {
                what: "a global_cap that evicts the oldest session",
                why: "on a sharded store no one step sees every shard's oldest session; use \
                      CapPolicy::Reject for the global cap",
            });
        }
        if self.global_cap.is_some() && caps.sharded && !self.inexact_global_cap_ok {
            return Err(PolicyError::NotGuaranteed {
                what: "an exact global_cap",
                why: "on a sharded store the global count spans shards and is only an upper \
                      bound (never more than the cap, but it may refuse early); accept that \
                      with inexact_global_cap_ok(true), or drop the global cap",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_idle_timeout_needs_no_touch_tuning() {
        let p = Policy::builder()
            .idle_timeout(Some(Duration::from_secs(1)))
            .build()
            .unwrap();
        assert_eq!(p.effective_touch_granularity(), Duration::from_millis(100));
        assert_eq!(
            Policy::default().effective_touch_granularity(),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn a_global_cap_that_evicts_is_refused_on_a_sharded_store() {
        let p = Policy::builder()
            .global_cap(Some(GlobalCap {
                max: 10,
                on_full: CapPolicy::EvictOldest,
            }))
            .inexact_global_cap_ok(true)
            .build()
            .unwrap();
        let sharded = crate::Capabilities::NONE.with_sharded(true);
        assert!(matches!(
            p.check_against(&sharded),
            Err(PolicyError::NotGuaranteed { .. })
        ));
        assert!(p.check_against(&crate::Capabilities::NONE).is_ok());
    }

    #[test]
    fn any_global_cap_is_refused_on_a_store_without_a_global_index() {
        let unindexed = crate::Capabilities::NONE.with_no_global_index(true);
        for on_full in [CapPolicy::Reject, CapPolicy::EvictOldest] {
            let capped = Policy::builder()
                .global_cap(Some(GlobalCap { max: 10, on_full }))
                .inexact_global_cap_ok(true)
                .build()
                .unwrap();
            assert!(matches!(
                capped.check_against(&unindexed),
                Err(PolicyError::NotGuaranteed {
                    what: "a global_cap",
                    ..
                })
            ));
            assert!(capped.check_against(&crate::Capabilities::NONE).is_ok());
        }
        assert!(Policy::default().check_against(&unindexed).is_ok());
    }

    #[test]
    fn an_exact_global_cap_is_refused_on_a_sharded_store_unless_accepted() {
        let sharded = crate::Capabilities::NONE.with_sharded(true);
        let capped = Policy::builder()
            .global_cap(Some(GlobalCap {
                max: 10,
                on_full: CapPolicy::Reject,
            }))
            .build()
            .unwrap();
        assert!(matches!(
            capped.check_against(&sharded),
            Err(PolicyError::NotGuaranteed { .. })
        ));
        capped.check_against(&crate::Capabilities::NONE).unwrap();
        Policy::default().check_against(&sharded).unwrap();
        let accepted = Policy::builder()
            .global_cap(Some(GlobalCap {
                max: 10,
                on_full: CapPolicy::Reject,
            }))
            .inexact_global_cap_ok(true)
            .build()
            .unwrap();
        accepted.check_against(&sharded).unwrap();
    }

    #[test]
    fn default_is_valid() {
        Policy::default().validate().unwrap();
        assert_eq!(Policy::builder().build().unwrap(), Policy::default());
    }

    #[test]
    fn nonsense_is_a_clear_error() {
        let b = Policy::builder;
        let cases = [
            (
                b().grace_window(Duration::from_secs(25 * 3600))
                    .orphan_window(Duration::from_secs(26 * 3600)),
                PolicyError::GraceNotBelowAbsolute,
            ),
            (
                b().absolute_lifetime(Duration::ZERO),
                PolicyError::Zero("absolute_lifetime"),
            ),
            (
                b().absolute_lifetime(Duration::from_micros(999)),
                PolicyError::Zero("absolute_lifetime"),
            ),
            (
                b().idle_timeout(Some(Duration::ZERO)),
                PolicyError::Zero("idle_timeout"),
            ),
            (
                b().ticket_ttl(Duration::ZERO),
                PolicyError::Zero("ticket_ttl"),
            ),
            (b().slot_ttl(Duration::ZERO), PolicyError::Zero("slot_ttl")),
            (
                b().renewal_interval(Some(Duration::ZERO)),
                PolicyError::Zero("renewal_interval"),
            ),
            (
                b().absolute_lifetime(MAX_DURATION * 2),
                PolicyError::TooLong("absolute_lifetime"),
            ),
            (
                b().orphan_window(Duration::from_secs(1)),
                PolicyError::OrphanBelowGrace,
            ),
            (b().reuse_history(65), PolicyError::ReuseHistoryTooLarge),
            (
                b().max_data_len(MAX_DATA_LEN + 1),
                PolicyError::DataLimitTooLarge,
            ),
            (
                b().subject_cap(Some(SubjectCap {
                    max: 0,
                    on_full: CapPolicy::Reject,
                })),
                PolicyError::ZeroCap,
            ),
            (
                b().creation_rate(Some(Rate {
                    max: 0,
                    window: Duration::from_secs(1),
                })),
                PolicyError::ZeroCap,
            ),
            (
                b().creation_rate(Some(Rate {
                    max: 1,
                    window: Duration::ZERO,
                })),
                PolicyError::Zero("creation_rate.window"),
            ),
            (
                b().global_cap(Some(GlobalCap {
                    max: 0,
                    on_full: CapPolicy::Reject,
                })),
                PolicyError::ZeroCap,
            ),
            (b().access_prefix("lh1".into()), PolicyError::SamePrefixes),
            (b().max_slots_per_session(Some(0)), PolicyError::ZeroCap),
            (b().max_slots_per_resource(Some(0)), PolicyError::ZeroCap),
            (b().max_cas_retries(0), PolicyError::ZeroCap),
            (
                b().token_prefix("LH".into()),
                PolicyError::InvalidPrefix("LH".into()),
            ),
            (
                b().token_prefix(String::new()),
                PolicyError::InvalidPrefix(String::new()),
            ),
            (
                b().ticket_prefix("a_b".into()),
                PolicyError::InvalidPrefix("a_b".into()),
            ),
            (
                b().token_prefix("x".repeat(17)),
                PolicyError::InvalidPrefix("x".repeat(17)),
            ),
            (b().ticket_prefix("lh1".into()), PolicyError::SamePrefixes),
        ];
        for (builder, want) in cases {
            assert_eq!(builder.build(), Err(want));
        }
    }

    #[test]
    fn limits_are_inclusive() {
        assert_eq!(MAX_DURATION, Duration::from_secs(3_153_600_000));
        let b = Policy::builder;
        b().absolute_lifetime(MAX_DURATION).build().unwrap();
        assert_eq!(
            b().absolute_lifetime(MAX_DURATION + Duration::from_millis(1))
                .build(),
            Err(PolicyError::TooLong("absolute_lifetime"))
        );
        b().reuse_history(MAX_REUSE_HISTORY).build().unwrap();
        b().max_data_len(MAX_DATA_LEN).build().unwrap();
    }

    #[test]
    fn disabling_knobs_is_valid() {
        Policy::builder()
            .idle_timeout(None)
            .touch_granularity(Duration::from_secs(3600))
            .renewal_interval(None)
            .grace_window(Duration::ZERO)
            .orphan_window(Duration::ZERO)
            .reuse_detection(false)
            .reuse_history(0)
            .build()
            .unwrap();
    }
}
