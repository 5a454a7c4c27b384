//! Measures the on-disk size of a session in the sled store.
//!
//! `cargo run --release -p leasehold-sled --example size_per_session -- [COUNT] [SUBJECTS]`
//!
//! Creates COUNT sessions (default 10 000) spread over SUBJECTS subjects (default COUNT / 4),
//! each with a context summary and a resource, through `Sessions` with the default policy; then
//! flushes and reports `Db::size_on_disk()` and the directory's file sizes, before and after,
//! divided by COUNT.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use leasehold::{Context, CreateOptions, Policy, Resource, Sessions, Subject};
use leasehold_sled::SledStore;

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(p).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: u64 = args.next().map_or(10_000, |a| a.parse().unwrap());
    let subjects: u64 = args
        .next()
        .map_or((count / 4).max(1), |a| a.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    store.flush().unwrap();
    let empty_sled = store.size_on_disk().unwrap();
    let empty_dir = dir_size(dir.path());

    let sessions = Sessions::new(store, Policy::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    rt.block_on(async {
        for i in 0..count {
            let subject = Subject::new(format!("user-{:08}@example.com", i % subjects)).unwrap();
            let opts = CreateOptions {
                resource: Some(Resource::new(format!("tenant-{}", i % 16)).unwrap()),
                context: Context::bound("device"),
                summary: Some("Firefox on Linux".into()),
                data: Vec::new(),
                absolute_lifetime: None,
            };
            sessions.create(&subject, opts).await.unwrap();
        }
    });
    let elapsed = started.elapsed();
    let store = sessions.store();
    store.flush().unwrap();
    let sled_size = store.size_on_disk().unwrap();
    let dir_bytes = dir_size(dir.path());
    let record = leasehold::codec::encode_session(
        &rt.block_on(leasehold::Store::list_subject(
            store,
            &Subject::new(format!("user-{:08}@example.com", 0)).unwrap(),
        ))
        .unwrap()[0],
    )
    .len();
    println!("sessions created:      {count} over {subjects} subjects in {elapsed:.2?}");
    println!("encoded record:        {record} bytes");
    println!(
        "size_on_disk():        {empty_sled} B empty -> {sled_size} B = {:.0} B/session",
        (sled_size.saturating_sub(empty_sled)) as f64 / count as f64
    );
    println!(
        "directory files:       {empty_dir} B empty -> {dir_bytes} B = {:.0} B/session",
        (dir_bytes.saturating_sub(empty_dir)) as f64 / count as f64
    );
    let logical: usize = rt
        .block_on(leasehold::Store::raw_dump(store))
        .unwrap()
        .unwrap_or_default()
        .iter()
        .map(Vec::len)
        .sum();
    println!(
        "logical keys+values:   {logical} B = {:.0} B/session (all trees, before sled's overhead)",
        logical as f64 / count as f64
    );
    drop(sessions);
    let reopened = SledStore::open(dir.path()).unwrap();
    reopened.flush().unwrap();
    let after = reopened.size_on_disk().unwrap();
    println!(
        "after close + reopen:  {after} B = {:.0} B/session",
        (after.saturating_sub(empty_sled)) as f64 / count as f64
    );
}
