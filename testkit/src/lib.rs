//! Test kit for leasehold, shared by the engine's model-based tests, the conformance suite,
//! the fuzz targets and the simulation:
//!
//! - [`model`]: the reference model — plain, obviously-correct code that says what every
//!   operation must return;
//! - [`faults`]: a store wrapper that injects failures (before the write, after the write — a
//!   lost reply —, timeouts, corrupt bytes on load);
//! - [`broken`]: a store wrapper with one planted contract violation, so every layer can show
//!   it catches real adapter bugs;
//! - [`hooked`]: a forwarding store wrapper with hooks around every call (yield, park, count);
//! - [`simulate`]: a seeded simulation of many clients over a faulty store, checked against the
//!   model after every step.

pub mod broken;
pub mod faults;
pub mod fuzzing;
pub mod hooked;
pub mod model;
pub mod simulate;
