//! Replays the committed `postgres_row` fuzz corpus (and any regressions) through the same entry
//! point the fuzz target calls, so stable `cargo test` checks every input found so far. Needs no
//! server: it exercises the row ↔ record mapping only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

/// (inputs, inputs whose row mapped to a record)
fn replay(dir: &Path) -> (usize, usize) {
    let (mut n, mut mapped) = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if leasehold_postgres::fuzzing::row_round_trip(&std::fs::read(&path).unwrap()) {
            mapped += 1;
        }
        n += 1;
    }
    (n, mapped)
}

#[test]
fn postgres_row_corpus_replays_clean() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let corpus = fuzz.join("corpus/postgres_row");
    let (n, mapped) = replay(&corpus);
    assert!(n >= 10, "corpus {} has only {n} inputs", corpus.display());
    assert!(
        mapped >= 10,
        "only {mapped} of {n} inputs reached a record: the oracle is vacuous"
    );
    let regressions = fuzz.join("regressions/postgres_row");
    if regressions.is_dir() {
        replay(&regressions);
    }
}

/// Records the engine really writes — fresh, bound, with data and a resource, rotated (a sealed
/// successor, retired verifiers), with an access grant, updated, revoked — map to rows and back
/// exactly. With `POSTGRES_ROW_SEEDS=<dir>` set, they are also written there as fuzz seeds.
#[tokio::test]
async fn engine_records_map_to_rows_and_back() {
    use std::time::Duration;

    use leasehold::{
        Context, CreateOptions, ManualClock, MemoryStore, Policy, Resource, SeededEntropy,
        Sessions, Store, Subject,
    };

    let store = MemoryStore::new();
    let clock = ManualClock::default();
    let policy = Policy::builder()
        .access_ttl(Some(Duration::from_secs(300)))
        .build()
        .unwrap();
    let s = Sessions::new(store.clone(), policy)
        .unwrap()
        .with_clock(clock.clone())
        .with_entropy(SeededEntropy::new(21));
    let alice = Subject::new("alice").unwrap();
    let plain = s.create(&alice, CreateOptions::default()).await.unwrap();
    let rich = s
        .create(
            &alice,
            CreateOptions {
                resource: Some(Resource::new("pty:7").unwrap()),
                context: Context::bound("device-1"),
                summary: Some("Firefox on Linux".into()),
                data: b"{\"k\":1}".to_vec(),
                ..CreateOptions::default()
            },
        )
        .await
        .unwrap();
    let mut token = plain.token.expose_secret().to_owned();
    for _ in 0..4 {
        clock.advance(Duration::from_secs(120));
        token = s
            .refresh(&token, &Context::none())
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_owned();
    }
    s.update_data(&rich.session.id, 0, b"new").await.unwrap();
    let gone = s.create(&alice, CreateOptions::default()).await.unwrap();
    s.trusted_by_id().revoke(&gone.session.id).await.unwrap();

    let bob = Subject::new("bob").unwrap();
    for j in 0..5u8 {
        s.create(
            &bob,
            CreateOptions {
                resource: (j % 2 == 0).then(|| Resource::new(format!("r{j}")).unwrap()),
                context: if j % 3 == 0 {
                    Context::bound(format!("d{j}"))
                } else {
                    Context::none()
                },
                data: vec![j; usize::from(j) * 7],
                ..CreateOptions::default()
            },
        )
        .await
        .unwrap();
    }
    s.revoke_subject(&bob).await.unwrap();

    let seeds = std::env::var_os("POSTGRES_ROW_SEEDS");
    let mut records = store.list_subject(&alice).await.unwrap();
    records.extend(store.list_subject(&bob).await.unwrap());
    assert_eq!(records.len(), 8);
    for (i, r) in records.iter().enumerate() {
        let mut input = vec![0u8];
        input.extend(leasehold::codec::encode_session(r));
        assert!(
            leasehold_postgres::fuzzing::row_round_trip(&input),
            "record {i} did not map"
        );
        if let Some(dir) = &seeds {
            std::fs::write(Path::new(dir).join(format!("engine-{i}")), &input).unwrap();
        }
    }
}
