//! The cases, one module per invariant, and the table built from `__for_each_case!`.

pub(crate) mod absolute_bound;
pub(crate) mod authority;
pub(crate) mod bounded_storage;
pub(crate) mod caps;
pub(crate) mod contract;
pub(crate) mod enumeration;
pub(crate) mod fail_closed;
pub(crate) mod hash_at_rest;
pub(crate) mod no_resurrection;
pub(crate) mod one_shot;
pub(crate) mod revoke_all;
pub(crate) mod single_successor;
pub(crate) mod store_time;

use leasehold::{Context, CreateOptions, Created, Policy, Subject};

use crate::env::CaseError;
use crate::runner::{Capability, Case, Invariant, Requirement};

macro_rules! requirement {
    (none) => {
        None
    };
    (native_expiry) => {
        Some(Requirement::Has(Capability::NativeExpiry))
    };
    (raw_dump) => {
        Some(Requirement::Has(Capability::RawDump))
    };
    (multi_process) => {
        Some(Requirement::Has(Capability::MultiProcess))
    };
    (server_clock) => {
        Some(Requirement::Has(Capability::ServerClock))
    };
    (sharded) => {
        Some(Requirement::Has(Capability::Sharded))
    };
    (no_sharded) => {
        Some(Requirement::Lacks(Capability::Sharded))
    };
    (reaper) => {
        Some(Requirement::REAPER)
    };
}

macro_rules! build_table {
    ({} $($group:ident $inv:ident { $($case:ident $req:ident;)* })*) => {
        /// Every case, in suite order.
        pub(crate) static CASES: &[Case] = &[
            $($(
                Case {
                    name: concat!(stringify!($group), "::", stringify!($case)),
                    invariant: Invariant::$inv,
                    requires: requirement!($req),
                    run: |env| Box::pin($group::$case(env)),
                },
            )*)*
        ];
    };
}

crate::__for_each_case! { [build_table] {} }

/// Sessions over the type-erased store under test.
pub(crate) type S = std::sync::Arc<leasehold::Sessions<crate::env::DynStore>>;

/// The policy most cases use: the documented defaults.
pub(crate) fn default_policy() -> Policy {
    Policy::default()
}

/// Builds a policy, turning a rule violation into a case failure.
pub(crate) fn build(b: leasehold::PolicyBuilder) -> Result<Policy, CaseError> {
    Ok(b.build()?)
}

/// A policy with a global cap, or `None` on a store that declares `no_global_index` — after
/// checking that such a store refuses it: `Sessions::new` must fail with `NotGuaranteed` (a
/// global cap that nothing counts would never refuse anything).
pub(crate) fn global_capped(
    env: &crate::env::Env,
    b: leasehold::PolicyBuilder,
) -> Result<Option<Policy>, CaseError> {
    let policy = build(b)?;
    if !env.capabilities().no_global_index {
        return Ok(Some(policy));
    }
    match leasehold::Sessions::new(env.store().clone(), policy) {
        Err(leasehold::PolicyError::NotGuaranteed {
            what: "a global_cap",
            ..
        }) => Ok(None),
        Err(e) => crate::env::fail!(
            "a store without a global index refused a global cap with {e:?}, expected NotGuaranteed(a global_cap)"
        ),
        Ok(_) => crate::env::fail!(
            "a store without a global index accepted a policy with a global cap: nothing would count it"
        ),
    }
}

/// Creates a session with default options.
pub(crate) async fn create(s: &S, who: &Subject) -> Result<Created, CaseError> {
    Ok(s.create(who, CreateOptions::default()).await?)
}

/// The token text of a created session.
pub(crate) fn text(c: &Created) -> String {
    c.token.expose_secret().to_owned()
}

/// Whether `token` validates right now.
pub(crate) async fn validates(s: &S, token: &str) -> bool {
    s.validate(token, &Context::none()).await.is_ok()
}

/// Revokes a live session by id; fails the case unless this call wrote its tombstone
/// ([`RevokeOutcome::Revoked`](leasehold::RevokeOutcome::Revoked)).
pub(crate) async fn revoke_live(s: &S, id: &leasehold::SessionId) -> crate::env::CaseResult {
    match s.trusted_by_id().revoke(id).await? {
        leasehold::RevokeOutcome::Revoked => Ok(()),
        other => Err(CaseError(format!(
            "revoke of a live session: expected Revoked, got {other:?}"
        ))),
    }
}

/// Why a stored record ended, if it is a tombstone.
pub(crate) fn ended_by(rec: &leasehold::SessionRecord) -> Option<leasehold::RevokeReason> {
    match rec.state {
        leasehold::SessionState::Revoked { reason, .. } => Some(reason),
        leasehold::SessionState::Active => None,
    }
}
