//! The session layers of the five systems in `docs/seeds.md`, each
//! rebuilt on leasehold's public API only (no `store()`, no `decide::`), generic over the
//! store so each runs on [`MemoryStore`](leasehold::MemoryStore) and on sled.
//!
//! Each module keeps the seed's vocabulary in its method names and says, per method, which
//! leasehold operation carries it.
//!
//! | module | seed |
//! |---|---|
//! | [`pty_leases`] | 000: PTY lease registry (non-secret id, 30 s attach token, bounded count) |
//! | [`web_pty`] | 001: web PTY session manager (caps, hourly rate, grace, resume, admin) |
//! | [`token_service`] | 002: Valkey session service (refresh session + 15 min access token) |
//! | [`ssh_tokens`] | 003: SSH session tokens (TTL 0 = none, connection limits, reaper) |
//! | [`user_sessions`] | 004: user-session manager library (idle, renewal, device binding) |

pub mod pty_leases;
pub mod ssh_tokens;
pub mod token_service;
pub mod user_sessions;
pub mod web_pty;
