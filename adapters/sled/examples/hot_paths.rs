//! The sled adapter's hot paths as ratios to the raw sled operations they stand on, measured
//! in the same process and run (rounds interleaved).
//!
//! `cargo run --release -p leasehold-sled --example hot_paths -- [SESSIONS] [DIR]`
//!
//! Creates SESSIONS sessions (default 100 000; a tenth of them created early enough to be due
//! when the reap runs) in a fresh database under DIR (default: the system temp dir), and a raw
//! tree of as many 246-byte values. Then, per row:
//!
//! - **touch**: `load_session` + a compare-and-swap that only moves `last_seen`/`expires_at`
//!   later (routine: not flushed), against raw `Tree::get` + `Tree::compare_and_swap`;
//! - **security write**: the same with `data` changed too (a security write: flushed, the path
//!   of a rotation), against raw get + CAS + `Db::flush`;
//! - **revoke**: `load_session` + a compare-and-swap to a tombstone (flushed), against raw
//!   get + CAS + flush;
//! - **reap**: `reap(now, 1000)` until nothing is due, against a raw batched remove of as many
//!   rows (walk a raw expiry tree's due range, then one `Batch` removing the records and one
//!   the entries, per 1 000 rows).
//!
//! Each row also reports the write syscalls per operation (from `/proc/self/io`, Linux only:
//! sled's log writes are `pwrite`s). Figures are printed, never asserted.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use leasehold::{
    Clock, Context, CreateOptions, ManualClock, Policy, Resource, RevokeReason, Scope,
    SessionRecord, Sessions, Store, Subject, Timestamp,
};
use leasehold_sled::SledStore;

const IDLE: Duration = Duration::from_secs(30 * 60);
const ROUNDS: usize = 3;
const PER_ROUND: usize = 2_000;

fn write_syscalls() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("syscw: ").map(|n| n.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

struct Row {
    ops: u64,
    time: Duration,
    writes: u64,
}

impl Row {
    fn new() -> Self {
        Row {
            ops: 0,
            time: Duration::ZERO,
            writes: 0,
        }
    }
    fn measure(&mut self, ops: u64, f: impl FnOnce()) {
        let w = write_syscalls();
        let t = Instant::now();
        f();
        self.time += t.elapsed();
        self.writes += write_syscalls() - w;
        self.ops += ops;
    }
    fn rate(&self) -> f64 {
        self.ops as f64 / self.time.as_secs_f64()
    }
    fn per_op(&self) -> f64 {
        self.writes as f64 / self.ops as f64
    }
}

fn report(name: &str, ours: &Row, raw: &Row) {
    println!(
        "{name:<16} {:>10.0}/s {:>6.2} w/op | raw {:>10.0}/s {:>6.2} w/op | ratio {:.2}",
        ours.rate(),
        ours.per_op(),
        raw.rate(),
        raw.per_op(),
        ours.rate() / raw.rate()
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(100_000, |a| a.parse().unwrap());
    let dir = match args.next() {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let store = SledStore::open(dir.path()).unwrap();
    let raw = store.db().open_tree("raw.records").unwrap();
    let raw_expiry = store.db().open_tree("raw.expiry").unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000_000));
    let sessions = Sessions::new(store.clone(), Policy::default())
        .unwrap()
        .with_clock(clock.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let subjects = (count / 4).max(1);
    let due = count / 10;
    let t0 = clock.now();
    let started = Instant::now();
    let mut live_ids = Vec::new();
    rt.block_on(async {
        for i in 0..count {
            if i == due {
                // The rest is created late enough to outlive the reap.
                clock.advance(IDLE - Duration::from_secs(60));
            }
            let subject = Subject::new(format!("user-{:08}@example.com", i % subjects)).unwrap();
            let opts = CreateOptions {
                resource: Some(Resource::new(format!("tenant-{}", i % 16)).unwrap()),
                context: Context::bound("device"),
                summary: Some("Firefox on Linux".into()),
                data: Vec::new(),
                absolute_lifetime: None,
            };
            let c = sessions.create(&subject, opts).await.unwrap();
            if i >= due {
                live_ids.push(c.session.id);
            }
        }
    });
    for i in 0..count as u64 {
        let mut key = [0u8; 18];
        key[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
        raw.insert(key, vec![7u8; 246]).unwrap();
        let mut ekey = i.to_be_bytes().to_vec();
        ekey.extend_from_slice(&key);
        raw_expiry.insert(ekey, &[][..]).unwrap();
    }
    store.flush().unwrap();
    println!(
        "{count} sessions ({due} to be reaped) over {subjects} subjects, created in {:.1?}",
        started.elapsed()
    );

    let load = |id: &leasehold::SessionId| {
        rt.block_on(store.load_session(id))
            .unwrap()
            .record
            .map(|r| *r)
            .unwrap()
    };
    let raw_key = |i: usize| {
        let mut key = [0u8; 18];
        key[..8].copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
        key
    };
    let raw_rmw = |i: usize, flush: bool| {
        let k = raw_key(i);
        let old = raw.get(k).unwrap().unwrap();
        let mut new = old.to_vec();
        new[0] = new[0].wrapping_add(1);
        raw.compare_and_swap(k, Some(&old), Some(new))
            .unwrap()
            .unwrap();
        if flush {
            store.db().flush().unwrap();
        }
    };
    let swap = |r: &SessionRecord, new: SessionRecord| {
        rt.block_on(store.compare_and_swap(&new, r.version, clock.now()))
            .unwrap();
    };

    // Touches and security writes on live sessions, rounds interleaved with the raw ones.
    let (mut touch, mut raw_touch) = (Row::new(), Row::new());
    let (mut secure, mut raw_secure) = (Row::new(), Row::new());
    let (mut revoke, mut raw_revoke) = (Row::new(), Row::new());
    let mut next = 0usize;
    let mut take = |n: usize| {
        let ids = live_ids[next..next + n].to_vec();
        next += n;
        ids
    };
    for _ in 0..ROUNDS {
        clock.advance(Duration::from_secs(1));
        let now = clock.now();
        let ids = take(PER_ROUND);
        touch.measure(PER_ROUND as u64, || {
            for id in &ids {
                let r = load(id);
                let mut n = r.clone();
                n.version += 1;
                n.last_seen = now;
                n.expires_at = now.saturating_add(IDLE).min(r.absolute_deadline);
                swap(&r, n);
            }
        });
        raw_touch.measure(PER_ROUND as u64, || {
            (0..PER_ROUND).for_each(|i| raw_rmw(i, false));
        });
        let ids = take(PER_ROUND / 4);
        secure.measure((PER_ROUND / 4) as u64, || {
            for id in &ids {
                let r = load(id);
                let mut n = r.clone();
                n.version += 1;
                n.last_seen = now;
                n.expires_at = now.saturating_add(IDLE).min(r.absolute_deadline);
                n.data = b"rotated".to_vec();
                swap(&r, n);
            }
        });
        raw_secure.measure((PER_ROUND / 4) as u64, || {
            (0..PER_ROUND / 4).for_each(|i| raw_rmw(i, true));
        });
        let ids = take(PER_ROUND / 4);
        revoke.measure((PER_ROUND / 4) as u64, || {
            for id in &ids {
                let r = load(id);
                swap(&r, r.tombstone(now, RevokeReason::Revoked));
            }
        });
        raw_revoke.measure((PER_ROUND / 4) as u64, || {
            (0..PER_ROUND / 4).for_each(|i| raw_rmw(i, true));
        });
    }
    report("touch", &touch, &raw_touch);
    report("security write", &secure, &raw_secure);
    report("revoke", &revoke, &raw_revoke);

    // Reap: the early tenth is due now; everything else is live.
    store.flush().unwrap();
    clock.set(t0.saturating_add(IDLE + Duration::from_secs(1)));
    let now = clock.now();
    let mut reap = Row::new();
    let mut reaped = 0u64;
    reap.measure(0, || {
        loop {
            let out = rt.block_on(store.reap(now, 1_000)).unwrap();
            if out.total() == 0 {
                break;
            }
            reaped += out.sessions;
        }
    });
    reap.ops = reaped;
    let mut raw_reap = Row::new();
    raw_reap.measure(due as u64, || {
        let mut left = due as u64;
        while left > 0 {
            let mut records = sled::Batch::default();
            let mut entries = sled::Batch::default();
            let mut n = 0u64;
            for kv in raw_expiry.range(..(due as u64).to_be_bytes().to_vec()) {
                let (k, _) = kv.unwrap();
                records.remove(&k[8..]);
                entries.remove(k);
                n += 1;
                if n == 1_000 {
                    break;
                }
            }
            raw.apply_batch(records).unwrap();
            raw_expiry.apply_batch(entries).unwrap();
            left = left.saturating_sub(n);
        }
    });
    report("reap (rows)", &reap, &raw_reap);
    let left = rt.block_on(store.count_live(&Scope::All, now)).unwrap();
    println!("reaped {reaped}, {left} live left");
}
