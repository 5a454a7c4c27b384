//! Grows a `MemoryStore` to N sessions through `insert_session` and reports the longest
//! single call (a stall: e.g. an index rehashing under the store's lock) and the median, then
//! the median `load_session` at that size. A measurement, not a test: it asserts nothing.
//!
//! ```text
//! cargo run -p leasehold --release --example memory_growth -- [N] [SUBJECTS]
//! ```
//!
//! N defaults to 1,000,000; SUBJECTS (how many distinct subjects the sessions spread over,
//! round-robin) defaults to N, one subject per session. SUBJECTS = 1 grows one subject's group.

#![allow(clippy::expect_used)] // a measurement: any failure ends it

use std::time::{Duration, Instant};

use futures::executor::block_on;
use leasehold::decide::create::new_session;
use leasehold::store::{CreateLimits, Store};
use leasehold::{
    CreateOptions, MemoryStore, Policy, SeededEntropy, SessionId, ShardTag, Subject, Timestamp,
};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .map(|a| a.replace(['_', ','], "").parse().expect("a number"))
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let n = arg(1, 1_000_000);
    let subjects = arg(2, n).max(1);
    let policy = Policy::builder().build().expect("policy");
    let entropy = SeededEntropy::new(7);
    let now = Timestamp::from_millis(1_700_000_000_000);
    let who = Subject::new("template").expect("subject");
    let (template, _) =
        new_session(&who, &CreateOptions::default(), now, &policy, &entropy).expect("record");
    let names: Vec<Subject> = (0..subjects)
        .map(|i| Subject::new(format!("user-{i}")).expect("subject"))
        .collect();
    let store = MemoryStore::new();
    let limits = CreateLimits::default();

    let mut ids = Vec::with_capacity(n);
    let mut took = Vec::with_capacity(n);
    // The five longest calls with their index: stalls from growth recur at sizes that double,
    // while a scheduler preemption (a busy machine) lands anywhere.
    let mut longest: Vec<(Duration, usize)> = Vec::new();
    let started = Instant::now();
    for i in 0..n {
        let mut r = template.clone();
        r.subject = names[i % subjects].clone();
        r.id = SessionId::generate(ShardTag::of(&r.subject), &entropy).expect("id");
        ids.push(r.id);
        let t = Instant::now();
        block_on(store.insert_session(&r, &limits, now)).expect("insert");
        let dt = t.elapsed();
        if longest.len() < 5 || dt > longest[4].0 {
            longest.push((dt, i));
            longest.sort_unstable_by(|a, b| b.cmp(a));
            longest.truncate(5);
        }
        took.push(dt);
    }
    let total = started.elapsed();
    took.sort_unstable();

    let mut loads = Vec::with_capacity(200_000);
    let mut x = 0x9E37_79B9_7F4A_7C15_u64;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let id = ids[(x % n as u64) as usize];
        let t = Instant::now();
        let loaded = block_on(store.load_session(&id)).expect("load");
        loads.push(t.elapsed());
        std::hint::black_box(loaded);
    }
    loads.sort_unstable();

    println!(
        "sessions {n}, subjects {subjects}, grown in {total:.2?} (a record is {} bytes)",
        std::mem::size_of::<leasehold::SessionRecord>()
    );
    println!(
        "insert: median {:?}, p99 {:?}, p99.99 {:?}, calls over 10 ms: {}",
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        percentile(&took, 0.9999),
        took.iter()
            .filter(|d| **d > Duration::from_millis(10))
            .count(),
    );
    let top: Vec<String> = longest
        .iter()
        .map(|(d, i)| format!("{d:.2?} (at {i})"))
        .collect();
    println!("insert: longest {}", top.join(", "));
    println!(
        "load at {n}: median {:?}, p99 {:?}",
        percentile(&loads, 0.5),
        percentile(&loads, 0.99)
    );
}
