//! Issuing a session: a fresh id in the subject's shard, a 256-bit secret stored as a verifier.

use crate::codec::MAX_SUMMARY_LEN;
use crate::crypto::{BindingHash, Secret, SecretKind, Verifier};
use crate::decide::{Context, CreateOptions, MAX_BINDING_LEN};
use crate::entropy::Entropy;
use crate::error::{Error, InputError};
use crate::ids::{SessionId, ShardTag, Subject};
use crate::policy::Policy;
use crate::record::{Credential, SessionRecord, SessionState};
use crate::store::CreateLimits;
use crate::time::Timestamp;
use crate::token::SessionToken;

/// Checks the options against the policy; refused input never reaches the store.
pub fn check_options(opts: &CreateOptions, policy: &Policy) -> Result<(), InputError> {
    if opts.data.len() > policy.max_data_len {
        return Err(InputError::TooLong {
            what: "data",
            max: policy.max_data_len,
        });
    }
    if let Some(s) = &opts.summary {
        if s.len() > MAX_SUMMARY_LEN {
            return Err(InputError::TooLong {
                what: "summary",
                max: MAX_SUMMARY_LEN,
            });
        }
        // It is shown in "your devices" lists and logs: no line breaks or escapes smuggled in.
        if crate::ids::has_control(s) {
            return Err(InputError::ControlCharacter("summary"));
        }
    }
    if opts
        .absolute_lifetime
        .is_some_and(|d| d.as_millis() == 0 || d > policy.absolute_lifetime)
    {
        return Err(InputError::Invalid(
            "absolute_lifetime (must be at least 1 ms and at most the policy's)",
        ));
    }
    check_context(&opts.context)
}

/// Refuses an over-long binding (it is hashed; the limit bounds the work an attacker causes).
pub fn check_context(ctx: &Context) -> Result<(), InputError> {
    if ctx
        .binding
        .as_ref()
        .is_some_and(|b| b.len() > MAX_BINDING_LEN)
    {
        return Err(InputError::TooLong {
            what: "binding",
            max: MAX_BINDING_LEN,
        });
    }
    Ok(())
}

/// `min(from + idle_timeout, absolute_deadline)`: the one place an expiry is computed.
pub fn expiry(from: Timestamp, absolute_deadline: Timestamp, policy: &Policy) -> Timestamp {
    match policy.idle_timeout {
        Some(idle) => from.saturating_add(idle).min(absolute_deadline),
        None => absolute_deadline,
    }
}

/// A new session record and its token. The caller inserts it under [`limits`].
pub fn new_session(
    subject: &Subject,
    opts: &CreateOptions,
    now: Timestamp,
    policy: &Policy,
    entropy: &dyn Entropy,
) -> Result<(SessionRecord, SessionToken), Error> {
    check_options(opts, policy)?;
    let kind = policy
        .kind()
        .map_err(|_| InputError::Invalid("token_prefix"))?;
    let id = SessionId::generate(ShardTag::of(subject), entropy)?;
    let secret = Secret::generate(entropy)?;
    let lifetime = opts.absolute_lifetime.unwrap_or(policy.absolute_lifetime);
    let absolute_deadline = now.saturating_add(lifetime);
    let record = SessionRecord {
        id,
        subject: subject.clone(),
        resource: opts.resource.clone(),
        kind,
        version: 0,
        created_at: now,
        last_seen: now,
        absolute_deadline,
        expires_at: expiry(now, absolute_deadline, policy),
        state: SessionState::Active,
        credential: Credential {
            generation: 0,
            current: Verifier::derive(SecretKind::Session, id.as_bytes(), &secret),
            rotated_at: now,
            previous: None,
            retired: Vec::new(),
            access: crate::decide::access::grant(&id, 0, &secret, now, absolute_deadline, policy),
        },
        binding: opts
            .context
            .binding
            .as_deref()
            .map(|b| BindingHash::derive(id.as_bytes(), b)),
        context_summary: opts.summary.clone(),
        data: opts.data.clone(),
        data_version: 0,
    };
    let token = SessionToken::new(&policy.token_prefix, id, &secret);
    Ok((record, token))
}

/// The limits a create is checked against, in the store's atomic insert.
pub fn limits(policy: &Policy) -> CreateLimits {
    CreateLimits {
        subject_cap: policy.subject_cap,
        creation_rate: policy.creation_rate,
        global_cap: policy.global_cap,
    }
}
