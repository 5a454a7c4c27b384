//! Engine CPU per decision, and validate over the memory store beside a raw locked map lookup.
//!
//! `cargo bench --bench engine -- --quick --noplot`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Mutex;

use criterion::{Criterion, criterion_group, criterion_main};
use leasehold::decide::read::{ReadMode, read};
use leasehold::{
    Clock, Context, MemoryStore, OsEntropy, Policy, SeededEntropy, SessionId, Store, token,
};
use leasehold_benches::{populate, sessions};

fn engine(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (s, clock) = sessions(MemoryStore::new()).unwrap();
    let tokens = rt.block_on(populate(&s, 1_000)).unwrap();
    let token_text = tokens[0].clone();
    let presented = token::parse(token_text.as_bytes(), "lh1").unwrap();
    let id = SessionId::from_bytes(*presented.id_bytes());
    let record = rt
        .block_on(s.store().load_session(&id))
        .unwrap()
        .record
        .map(|r| *r)
        .unwrap();
    let policy = Policy::default();
    let entropy = SeededEntropy::new(1);
    let now = clock.now();

    let mut g = c.benchmark_group("decision");
    g.bench_function("token_parse", |b| {
        b.iter(|| token::parse(black_box(token_text.as_bytes()), "lh1").is_ok())
    });
    // What a store read hands the engine: the record's bytes, decoded on every load.
    let encoded = leasehold::codec::encode_session(&record);
    g.bench_function("record_decode", |b| {
        b.iter(|| leasehold::codec::decode_session(black_box(&encoded)).is_ok())
    });
    g.bench_function("read_no_touch_due", |b| {
        b.iter(|| {
            let d = read(
                Some(black_box(&record)),
                &presented,
                &Context::none(),
                ReadMode::Validate,
                now,
                &policy,
                &entropy,
            );
            assert!(d.write.is_none());
            d.outcome.is_ok()
        })
    });
    g.bench_function("rotation_os_entropy", |b| {
        b.iter(|| {
            let d = read(
                Some(black_box(&record)),
                &presented,
                &Context::none(),
                ReadMode::Refresh,
                now,
                &policy,
                &OsEntropy,
            );
            assert!(d.write.is_some());
            d.outcome.is_ok()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("validate_memory_1k");
    let raw: Mutex<HashMap<SessionId, leasehold::SessionRecord>> =
        Mutex::new(HashMap::from([(id, record.clone())]));
    g.bench_function("raw_locked_map_get_clone", |b| {
        b.iter(|| raw.lock().unwrap().get(black_box(&id)).cloned().is_some())
    });
    g.bench_function("leasehold_validate", |b| {
        b.iter(|| {
            rt.block_on(s.validate(black_box(&token_text), &Context::none()))
                .is_ok()
        })
    });
    g.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
