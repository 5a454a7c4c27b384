//! The session layers of the five systems in `docs/seeds.md`, each rebuilt on leasehold's
//! public API only (no `store()`, no `decide::`), generic over the store so each runs on
//! [`MemoryStore`](leasehold::MemoryStore) and on sled.
//!
//! Each module keeps the seed's vocabulary in its method names and says, per method, which
//! leasehold operation carries it.
