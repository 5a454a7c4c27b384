//! The reference model: plain, obviously-correct code that says what every operation must
//! return, written from DESIGN.md and the documented engine rules — never from `leasehold::decide`.
//!
//! # How it fits together
//!
//! - [`ModelOp`] is an abstract operation ("refresh the predecessor of the 2nd most recent
//!   session", "jump to the end of the grace window"). Indices are resolved against what the
//!   model knows when the operation runs, so any sequence is valid (proptest can shrink it, a
//!   fuzzer can feed [`decode_ops`] arbitrary bytes).
//! - [`resolve`] turns it into a concrete [`Action`] (token texts, ids, data); [`perform`] runs an
//!   action against a [`Sessions`](leasehold::Sessions) and returns what it [`Observed`].
//! - [`Model::step`] predicts the outcome of the action, compares it with the observation and
//!   learns what the system chose freely (fresh ids and tokens). Tokens are opaque: the model
//!   maps each issued token text to (session, generation) and knows the current generation, when
//!   it was rotated, whether the successor was presented, and which older generations are still
//!   remembered for reuse detection.
//! - Where the store contract leaves a choice open (which due records a bounded reap removes,
//!   which of equally old sessions an eviction takes), the model keeps a record's presence as
//!   [`Presence::Maybe`], accepts every outcome a conforming store could give, and learns from
//!   later observations.
//! - [`Checker`] checks the named invariants (INV-…) from observations and from the stored
//!   records, independently of the model's predictions.
//! - [`Harness`] wires it all to `Sessions<MemoryStore>` with a manual clock and seeded
//!   entropy; [`check_sequence`] is the one-call entry point (model-based tests, fuzzing).

mod action;
mod check;
mod ops;
mod run;
mod state;

pub use action::{
    AccessInput, AccessKind, Action, Denial, Observed, TicketInput, TicketKind, TokenInput,
    TokenKind, perform,
};
pub use check::{Checker, Violation, decode_dump};
pub use ops::{
    AccessPick, Anchor, ByteSource, CtxPick, Jump, Knob, ModelOp, PolicyChoice, ScopePick,
    TicketPick, TokenPick, VersionPick, decode_ops, decode_ops_v3, jump_duration, resolve,
};
pub use run::{Harness, check_sequence};
pub use state::{Divergence, MSession, MSlot, MState, MTicket, Model, ModelSettings, Presence};

/// Pieces the simulation reuses.
pub(crate) mod run_support {
    pub(crate) use super::action::fill_evicted;
    pub(crate) use super::ops::SUBJECTS;
    pub(crate) use super::run::EventLog;
}
