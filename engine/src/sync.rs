//! The one place the engine takes its synchronisation primitives from.
//!
//! Under `--cfg leasehold_loom` these are loom's model-checked types, so the loom tests explore
//! every interleaving of the in-memory store; otherwise they are std's. (Plain `cfg(loom)` is
//! avoided because it changes a dependency of sqlx/redis; see TOOLCHAIN.md.)

#[cfg(leasehold_loom)]
pub(crate) use loom::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicU64, Ordering},
};
#[cfg(not(leasehold_loom))]
pub(crate) use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicU64, Ordering},
};

/// Lets another thread run (a no-op outside loom); used only by planted-bug twins.
#[cfg(all(leasehold_planted_bug, leasehold_loom))]
pub(crate) fn yield_now() {
    loom::thread::yield_now();
}
/// Lets another thread run; used only by planted-bug twins.
#[cfg(all(leasehold_planted_bug, not(leasehold_loom)))]
pub(crate) fn yield_now() {
    std::thread::yield_now();
}
