//! # leasehold-sled
//!
//! An embedded [sled](https://docs.rs/sled/0.34.7) store for [`leasehold`] sessions: one
//! process, no server. [`SledStore`] implements [`leasehold::Store`] and behaves like the
//! reference [`leasehold::MemoryStore`], with durability on disk.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use leasehold::{CreateOptions, Policy, Sessions, Subject};
//! use leasehold_sled::SledStore;
//!
//! let store = SledStore::open("/var/lib/myapp/sessions")?;
//! let sessions = Sessions::new(store, Policy::default())?;
//! let created = sessions.create(&Subject::new("alice")?, CreateOptions::default()).await?;
//! # let _ = created; Ok(()) }
//! ```
//!
//! ## Layout
//!
//! Trees (all named `leasehold.*`, see [`trees`]):
//!
//! | tree | key | value |
//! |---|---|---|
//! | `sessions` | session id | `codec::encode_session` |
//! | `by_subject` | subject ‖ `0x00` ‖ session id | empty |
//! | `by_resource` | resource ‖ `0x00` ‖ session id | empty |
//! | `expiry` | deadline (u64 BE ms) ‖ kind ‖ id | empty |
//! | `tickets` | ticket id | `codec::encode_ticket` |
//! | `slots` | slot id | `codec::encode_slot` |
//! | `slots_by_session` | session id ‖ `0x00` ‖ slot id | empty |
//! | `slots_by_resource` | resource ‖ `0x00` ‖ slot id | empty |
//! | `groups` | kind ‖ subject / resource / session id | head: stamp, member count |
//! | `rates` | subject | creation log (due, creation times and session ids) |
//! | `meta` | `format`, `seq`, `live`, `order_head` | format marker, sequence, active counter, creation-order stamp |
//! | `created` | created_at (u64 BE ms) ‖ sequence (u64 BE) ‖ session id | empty |
//! | `created_by_id` | session id | its `created` position: created_at, sequence |
//!
//! Subjects and resources cannot contain control characters, so `0x00` ends a name and a
//! prefix scan over `name ‖ 0x00` lists exactly one group. Reaping walks `expiry` from its start
//! and stops at the first entry due after `now`: its cost is proportional to what it removes.
//!
//! ## How caps stay atomic
//!
//! Every multi-record operation is **one** sled transaction over all the trees. A
//! compare-and-swap that changes no index (the session stays `Active`, its deadline does not
//! move earlier: a touch, a rotation) is one single-key compare-and-swap of the stored bytes
//! instead, its expiry entry left at or before the new deadline for the reaper to re-file (see
//! `swap_single_key`). sled
//! transactions are serializable but cannot scan, and a cap needs a group's members (a subject's
//! sessions, a session's slots). So the operation first takes a *snapshot* outside the
//! transaction — the group head's stamp, then a prefix scan of its index — and the transaction
//! re-reads the head: if the stamp changed, a member joined in between, and the operation
//! retries with a fresh snapshot. A member only ever joins inside a transaction that gives the
//! head a new stamp from a store-wide sequence (so a head deleted and recreated never repeats
//! one), hence an unchanged stamp proves the scan saw every current member. The transaction then
//! reads each member's *record* and decides on what it reads, so liveness, versions and states
//! are exactly those at commit. Two creators racing for a subject's last place therefore cannot
//! both pass: the second one's transaction sees the first one's stamp and retries.
//!
//! Writes are O(1) per membership change (an index key and a 17-byte head), whatever the size
//! of the group, unlike a value listing every member id.
//!
//! ## Creation order
//!
//! "Oldest" means creation order: by `created_at`, then by the order the store inserted the
//! sessions, never by the random id. `created` lists every session in state `Active` not yet
//! reaped (the very set `meta/live` counts) under `created_at ‖ sequence`, the sequence drawn
//! from `meta/seq` inside the inserting transaction (so it follows commit order);
//! `created_by_id` finds a session's entry from its id. A session leaves both when it becomes a
//! tombstone or is reaped, so a walk from the start of `created` meets live sessions and the
//! expired ones the reaper has yet to remove, never tombstones. A subject cap that evicts sorts
//! the subject's live sessions by the same key.
//!
//! ## Global cap
//!
//! `meta/live` counts sessions in state `Active` that are not yet reaped — live *and* expired.
//! An insert under a global cap accepts at once while that counter is below the cap. When it is
//! not, the insert scans the expiry index for sessions due at or before `now` (cost ∝ what the
//! reaper has yet to remove), and the transaction subtracts those it reads as active and
//! expired: the cap is then enforced on the exact live count, as the reference store does. (It
//! writes no tombstones for them: a store-wide count must not let one caller whose clock
//! glitched ahead end every session.) The live sessions an evicting subject cap is about to end
//! count as gone.
//!
//! A global cap with `on_full: EvictOldest` evicts the store's oldest live sessions instead of
//! refusing: the insert walks the start of `created` outside the transaction, after reading the
//! index's stamp (`meta/order_head`, the sequence of its newest entry); the transaction checks
//! the stamp (unchanged: no entry joined, so the walk saw every entry before its last one),
//! reads the walked sessions' records in order and evicts the first live ones. A walk too short
//! asks for a longer one (doubling). Such inserts take one store-wide lock, so they wait for
//! each other instead of invalidating each other's walks.
//!
//! ## Time
//!
//! sled has no clock of its own: it judges at the caller's `now`. Endings are final whatever
//! the clock: compare-and-swap applies [`leasehold::store::check_swap`] (a tombstone may be
//! written over an expired record; nothing replaces a tombstone), group revocations tombstone
//! every member that is not one yet, expired or not, and a capped insert tombstones the expired
//! members it counted. These tombstones are security writes (flushed under both durability
//! modes), even when the insert itself is refused.
//!
//! ## Upgrading from layout 1
//!
//! Layout 1 (`leasehold-sled/1`) had no creation-order index and creation logs without session
//! ids. Opening such a database indexes its active sessions (in `created_at`, then id order:
//! their insertion order was never recorded), then marks it layout 2 — builds reading layout 1
//! only then refuse it, as they would not keep the index. Logs of format 1 are still read (their
//! entries count, but cannot be given back by `forget_creation`) and are rewritten in format 2
//! by the next creation.
//!
//! ## Durability
//!
//! See [`Durability`]. Flushes are synchronous (`Db::flush`): sled 0.34's `flush_async` can
//! hang when several are awaited at once (sled issue #1241).
//!
//! ## Source layout
//!
//! One file per concern (the names every adapter of this repository uses): `open` (opening,
//! durability, layout marker and upgrades), `error`, `session` (load, insert, compare-and-swap),
//! `groups` (group revocation, listing, counting, caps and evictions), `tickets`, `slots`,
//! `reap`, and `store` (the [`leasehold::Store`] impl, forwarding to them); `keys` (key and
//! value layouts), `tx` (the transaction view and how transactions run), `locks`.
//!
//! ## Blocking
//!
//! sled is a blocking library: every method runs on the calling thread (reads in microseconds,
//! flushed writes in the time of an `fsync`).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

mod error;
#[doc(hidden)]
pub mod fuzzing;
mod groups;
mod keys;
mod locks;
mod open;
mod reap;
mod session;
mod slots;
mod store;
mod tickets;
mod tx;

pub use error::OpenError;
pub use open::{Durability, FORMAT};

use keys::ID_LEN;
use locks::GroupLocks;

/// Names of the trees this adapter uses (for tests and tools that inspect a database).
pub mod trees {
    /// Session records by id.
    pub const SESSIONS: &str = "leasehold.sessions";
    /// Subject index: `subject ‖ 0x00 ‖ session id`.
    pub const BY_SUBJECT: &str = "leasehold.by_subject";
    /// Resource index: `resource ‖ 0x00 ‖ session id`.
    pub const BY_RESOURCE: &str = "leasehold.by_resource";
    /// Group heads (stamp and member count of every subject, resource and slot group).
    pub const GROUPS: &str = "leasehold.groups";
    /// Expiry index: `deadline (u64 big-endian ms) ‖ kind ‖ id`.
    pub const EXPIRY: &str = "leasehold.expiry";
    /// Ticket records by id.
    pub const TICKETS: &str = "leasehold.tickets";
    /// Slot records by id.
    pub const SLOTS: &str = "leasehold.slots";
    /// Slot index by session: `session id ‖ 0x00 ‖ slot id`.
    pub const SLOTS_BY_SESSION: &str = "leasehold.slots_by_session";
    /// Slot index by resource: `resource ‖ 0x00 ‖ slot id`.
    pub const SLOTS_BY_RESOURCE: &str = "leasehold.slots_by_resource";
    /// Per-subject creation logs for the creation rate.
    pub const RATES: &str = "leasehold.rates";
    /// Format marker, sequence and counters.
    pub const META: &str = "leasehold.meta";
    /// Bytes the reaper found undecodable, moved aside for inspection: `tree number ‖ key`.
    pub const QUARANTINE: &str = "leasehold.quarantine";
    /// Creation order of the active sessions: `created_at ‖ sequence ‖ session id`.
    pub const CREATED: &str = "leasehold.created";
    /// A session's position in [`CREATED`], by session id.
    pub const CREATED_BY_ID: &str = "leasehold.created_by_id";

    /// Every tree, in transaction order.
    pub const ALL: [&str; 14] = [
        SESSIONS,
        BY_SUBJECT,
        BY_RESOURCE,
        GROUPS,
        EXPIRY,
        TICKETS,
        SLOTS,
        SLOTS_BY_SESSION,
        SLOTS_BY_RESOURCE,
        RATES,
        META,
        QUARANTINE,
        CREATED,
        CREATED_BY_ID,
    ];
}

#[derive(Clone)]
struct Trees {
    all: Vec<sled::Tree>,
}

impl Trees {
    fn get(&self, i: usize) -> &sled::Tree {
        &self.all[i]
    }
}

/// The sled store. Cheap to clone: clones share the database.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    trees: Trees,
    durability: Durability,
    locks: GroupLocks,
    /// Session records read by cap counts (a test hook: the cost must follow live members).
    counted: Arc<AtomicU64>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

// Keep the id length in one place: ids are 18 bytes in every tree.
const _: () = assert!(ID_LEN == 18);
