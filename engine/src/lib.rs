//! # leasehold
//!
//! A session engine: issue, validate, rotate, limit, revoke and reap sessions, in whatever
//! store you already run.
//!
//! - [`decide`] is the pure state machine: every decision is a function of (stored record,
//!   presented credential, context, `now`, [`Policy`]). No I/O, no clock, no ambient RNG.
//! - [`Store`] is the contract adapters implement: atomic persistence, no policy.
//! - [`Sessions`] is the thin async driver applications call.
//! - [`MemoryStore`] is the reference adapter.
//!
//! ```
//! # futures::executor::block_on(async {
//! use leasehold::{Context, CreateOptions, MemoryStore, Policy, Sessions, Subject};
//!
//! let sessions = Sessions::new(MemoryStore::new(), Policy::default())?;
//! let alice = Subject::new("alice")?;
//! let created = sessions.create(&alice, CreateOptions::default()).await?;
//! // Hand `created.token.expose_secret()` to the client; later it presents it back:
//! let v = sessions.validate(created.token.expose_secret(), &Context::none()).await?;
//! assert_eq!(v.session.subject, alice);
//! sessions.logout(created.token.expose_secret()).await?;
//! assert!(sessions.validate(created.token.expose_secret(), &Context::none()).await.is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
//!
//! The security invariants (INV-…) this crate keeps are listed in `docs/invariants.md`.

pub mod codec;
pub mod crypto;
pub mod decide;
mod driver;
mod entropy;
mod error;
mod event;
mod ids;
mod memory;
mod os_rng;
mod policy;
pub mod record;
pub mod store;
mod sync;
mod time;

pub mod token;

pub use decide::mutate::RevokeOutcome;
pub use decide::{Context, CreateOptions, Session};
pub use driver::{
    Created, Minted, Refreshed, SessionPage, Sessions, SlotLease, Ticketed, TrustedById, Validated,
};
pub use entropy::{Entropy, EntropyError, OsEntropy, SeededEntropy};
pub use error::{Error, InputError, Limit};
pub use event::{CollectingSink, Event, EventSink, TracingSink};
pub use ids::{
    ID_TEXT_LEN, Kind, MAX_NAME_LEN, Resource, SessionId, ShardTag, SlotId, Subject, TicketId,
};
pub use memory::MemoryStore;
pub use policy::{
    CapPolicy, GlobalCap, MAX_DATA_LEN, MAX_DURATION, MAX_REUSE_HISTORY, Policy, PolicyBuilder,
    PolicyError, Rate, SubjectCap,
};
pub use record::{AccessGrant, RevokeReason, SessionRecord, SessionState, TOMBSTONE_RETENTION};
pub use store::{
    Capabilities, Loaded, MAX_PAGE, Page, ReapOutcome, Reaped, Scope, Store, StoreError,
};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
pub use token::{AccessToken, SessionToken, TicketToken, TokenError};
