//! The shared conformance suite (`leasehold-conformance`) against `SledStore`: every case gets
//! a fresh database in its own temp dir, removed when the case's store is dropped. The suite
//! runs twice: with the default durability and with a flush after every write.

#![allow(clippy::unwrap_used, clippy::expect_used)]

leasehold_conformance::conformance_tests!(
    leasehold_conformance::fallible(|| async {
        let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let store = leasehold_sled::SledStore::open(dir.path()).map_err(|e| e.to_string())?;
        Ok::<_, String>(leasehold_conformance::Guarded::new(store, dir))
    }),
    capabilities = [raw_dump],
);

mod flush_on_every_write {
    use leasehold_sled::{Durability, SledStore};

    leasehold_conformance::conformance_tests!(
        leasehold_conformance::fallible(|| async {
            let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
            let store = SledStore::open_with(dir.path(), Durability::FlushOnEveryWrite)
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(leasehold_conformance::Guarded::new(store, dir))
        }),
        capabilities = [raw_dump],
    );
}
