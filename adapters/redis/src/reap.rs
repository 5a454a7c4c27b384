//! Reaping and the audit hooks. Redis removes records itself (`PXAT`), so `reap` only cleans
//! index entries whose deadline passed (the global index, in a bounded batch); every other index
//! is pruned by the scripts that read it and carries a TTL no earlier than its latest member.
//! Also: walking every key of the prefix on every node (`SCAN`), for the hash-at-rest and TTL
//! audits and for deleting a store's keys; and, for a store without the global index, walking
//! the session records (`Scope::All`), the marker of unindexed sessions and the index rebuild.

use leasehold::store::{KeyDeadline, KeyHolds, ReapOutcome};
use std::sync::atomic::Ordering;

use leasehold::{SessionId, StoreError, Timestamp};
use redis::aio::MultiplexedConnection;

use crate::keys::Held;
use crate::open::Conn;
use crate::{RedisStore, ms, ts};

impl RedisStore {
    pub(crate) async fn reap_now(
        &self,
        _now: Timestamp,
        limit: usize,
    ) -> Result<ReapOutcome, StoreError> {
        if !self.inner.global_index {
            return Ok(ReapOutcome::default());
        }
        let g = self.inner.keys.global();
        let mut inv = self.inner.scripts.reap_index.key(&g);
        inv.arg(limit.max(1));
        self.run::<i64>(&inv).await?;
        Ok(ReapOutcome::default())
    }

    /// One plain connection per master node (a Cluster) or the shared connection (standalone).
    /// On a Cluster the masters not marked failed must serve all 16 384 slots: in a failover,
    /// before a replica takes over, a walk of "every key" would silently miss a shard, so it is
    /// `Unavailable` instead.
    async fn node_connections(&self) -> Result<Vec<Conn2>, StoreError> {
        match &self.inner.conn {
            Conn::Single(c) => Ok(vec![Conn2::Shared(c.clone())]),
            Conn::Cluster(_) => {
                let first = self
                    .inner
                    .nodes
                    .first()
                    .ok_or_else(|| StoreError::Unavailable("no cluster node".into()))?;
                let mut c = connect(first).await?;
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut c)
                    .await
                    .map_err(crate::error::store_error)?;
                let served = served_slots(&nodes);
                if served < SLOTS {
                    return Err(StoreError::Unavailable(format!(
                        "the cluster's serving masters cover {served} of {SLOTS} slots (a \
                         failover in progress?): a walk of every key would miss some"
                    )));
                }
                let mut out = Vec::new();
                for addr in serving_masters(&nodes) {
                    out.push(Conn2::Node(connect(&format!("redis://{addr}")).await?));
                }
                Ok(out)
            }
        }
    }

    /// Every key under the prefix, on every node. Test and maintenance use only: it walks
    /// the whole keyspace with `SCAN`.
    pub async fn all_keys(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.scan(&self.inner.keys.pattern()).await
    }

    /// The ids of every session record on every node, sorted (`SCAN`: what `Scope::All` walks
    /// without the global index).
    pub(crate) async fn record_ids(&self) -> Result<Vec<SessionId>, StoreError> {
        let keys = self.scan(&self.inner.keys.record_pattern()).await?;
        Ok(keys
            .iter()
            .filter_map(|k| match self.inner.keys.classify(k) {
                Some(Held::Session(id)) => Some(id),
                _ => None,
            })
            .collect())
    }

    /// Without the global index on a Cluster, before a session is written: keeps the
    /// `unindexed` marker alive until `deadline` (the session's absolute deadline), so that a
    /// store opened with the index later knows to rebuild it. (On a single server the insert
    /// script does this itself.) Skipped when this store already set the marker as late.
    pub(crate) async fn mark_unindexed(&self, deadline: Timestamp) -> Result<(), StoreError> {
        let until = i64::try_from(ms(deadline)).unwrap_or(i64::MAX);
        if until <= self.inner.unindexed_until.load(Ordering::Relaxed) {
            return Ok(());
        }
        let k = self.inner.keys.unindexed();
        let mut p = redis::pipe();
        p.cmd("SET")
            .arg(&k)
            .arg(1)
            .arg("NX")
            .arg("PXAT")
            .arg(until)
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&k)
            .arg(until)
            .arg("GT")
            .ignore();
        self.pipe::<Vec<redis::Value>>(&p).await?;
        self.inner
            .unindexed_until
            .fetch_max(until, Ordering::Relaxed);
        Ok(())
    }

    /// Rebuilds the global index from the session records (`SCAN`), then drops the
    /// `unindexed` marker; run by [`RedisStore::open`] with the index on when the marker is
    /// present. Every record joins with its absolute deadline, as an insert registers it.
    pub(crate) async fn rebuild_global_index(&self) -> Result<(), StoreError> {
        let g = self.inner.keys.global();
        let ids = self.record_ids().await?;
        for chunk in ids.chunks(1_000) {
            let (_, records) = self.fetch(chunk).await?;
            let Some(latest) = records.iter().map(|r| ms(r.absolute_deadline)).max() else {
                continue;
            };
            let mut p = redis::pipe();
            for r in &records {
                p.cmd("ZADD")
                    .arg(&g)
                    .arg("GT")
                    .arg(ms(r.absolute_deadline))
                    .arg(r.id.as_bytes().as_slice())
                    .ignore();
            }
            // Never a key without a TTL; only ever extended (the scripts' ttl_at_least).
            p.cmd("PEXPIREAT").arg(&g).arg(latest).arg("NX").ignore();
            p.cmd("PEXPIREAT").arg(&g).arg(latest).arg("GT").ignore();
            self.pipe::<Vec<redis::Value>>(&p).await?;
        }
        self.cmd::<i64>(redis::cmd("DEL").arg(self.inner.keys.unindexed()))
            .await?;
        Ok(())
    }

    /// Every key matching `pattern`, on every node, sorted and deduplicated.
    async fn scan(&self, pattern: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut keys = Vec::new();
        for mut c in self.node_connections().await? {
            let mut cursor: u64 = 0;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let (next, batch): (u64, Vec<Vec<u8>>) = c.query(&cmd).await?;
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Deletes every key under this store's prefix (tests: clean up after a run).
    pub async fn delete_all_keys(&self) -> Result<u64, StoreError> {
        let keys = self.all_keys().await?;
        let mut n = 0;
        for k in &keys {
            let d: i64 = self.cmd(redis::cmd("UNLINK").arg(k.as_slice())).await?;
            n += u64::try_from(d).unwrap_or(0);
        }
        Ok(n)
    }

    pub(crate) async fn dump(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        for k in self.all_keys().await? {
            let ty: String = self.cmd(redis::cmd("TYPE").arg(k.as_slice())).await?;
            match ty.as_str() {
                "string" => {
                    let v: Option<Vec<u8>> = self.cmd(redis::cmd("GET").arg(k.as_slice())).await?;
                    out.extend(v);
                }
                "zset" => {
                    let v: Vec<Vec<u8>> = self
                        .cmd(
                            redis::cmd("ZRANGE")
                                .arg(k.as_slice())
                                .arg(0)
                                .arg(-1)
                                .arg("WITHSCORES"),
                        )
                        .await?;
                    out.extend(v);
                }
                "none" => continue,
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "a key of type {other} under the prefix"
                    )));
                }
            }
            out.push(k);
        }
        Ok(out)
    }

    pub(crate) async fn deadlines(&self) -> Result<Vec<KeyDeadline>, StoreError> {
        let mut out = Vec::new();
        for k in self.all_keys().await? {
            let t: i64 = self
                .cmd(redis::cmd("PEXPIRETIME").arg(k.as_slice()))
                .await?;
            if t == -2 {
                continue; // gone since the scan
            }
            let holds = match self.inner.keys.classify(&k) {
                Some(Held::Session(id)) => KeyHolds::Session(id),
                Some(Held::Ticket(id)) => KeyHolds::Ticket(id),
                Some(Held::Slot(id)) => KeyHolds::Slot(id),
                _ => KeyHolds::Index,
            };
            out.push(KeyDeadline {
                key: k,
                holds,
                deadline: (t >= 0).then(|| ts(t)),
            });
        }
        Ok(out)
    }
}

/// Hash slots of a Redis Cluster.
const SLOTS: usize = 16_384;

/// The fields of the masters not marked failed (`fail` or `fail?`) in `CLUSTER NODES` text.
fn serving_master_lines(nodes: &str) -> impl Iterator<Item = Vec<&str>> {
    nodes
        .lines()
        .map(|line| line.split(' ').collect::<Vec<&str>>())
        .filter(|f| f.len() > 2 && f[2].contains("master") && !f[2].contains("fail"))
}

/// The `host:port` of each serving master.
fn serving_masters(nodes: &str) -> Vec<&str> {
    serving_master_lines(nodes)
        .map(|f| f[1].split('@').next().unwrap_or_default())
        .collect()
}

/// How many slots the serving masters own (`start-end` or `slot` fields from the ninth on;
/// `[slot->-node]` migration marks are not ownership). Distinct slots: a slot listed twice
/// counts once.
fn served_slots(nodes: &str) -> usize {
    let mut owned = vec![false; SLOTS];
    for f in serving_master_lines(nodes) {
        for range in f.iter().skip(8).filter(|r| !r.starts_with('[')) {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                for slot in owned
                    .iter_mut()
                    .take(b.saturating_add(1).min(SLOTS))
                    .skip(a)
                {
                    *slot = true;
                }
            }
        }
    }
    owned.iter().filter(|&&o| o).count()
}

async fn connect(url: &str) -> Result<MultiplexedConnection, StoreError> {
    let client = redis::Client::open(url).map_err(crate::error::store_error)?;
    client
        .get_multiplexed_async_connection()
        .await
        .map_err(crate::error::store_error)
}

/// A connection to one node.
enum Conn2 {
    Shared(redis::aio::ConnectionManager),
    Node(MultiplexedConnection),
}

impl Conn2 {
    async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        match self {
            Conn2::Shared(c) => cmd.query_async(c).await,
            Conn2::Node(c) => cmd.query_async(c).await,
        }
        .map_err(crate::error::store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::{SLOTS, served_slots, serving_masters};

    /// `CLUSTER NODES` of 3 masters (one with a migration mark) and a replica.
    const NODES: &str = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
a2 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922 [10923->-a3]
a3 127.0.0.1:7003@17003 master - 0 0 3 connected 10923-16383
r1 127.0.0.1:7004@17004 slave a1 0 0 1 connected
";

    #[test]
    fn every_slot_served_or_the_gap_counted() {
        assert_eq!(served_slots(NODES), SLOTS);
        assert_eq!(
            serving_masters(NODES),
            ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]
        );
        // A failed master's slots are not served until its replica is promoted.
        let failed = NODES.replace("master - 0 0 3", "master,fail - 0 0 3");
        assert_eq!(served_slots(&failed), 10_923);
        assert_eq!(serving_masters(&failed).len(), 2);
        let promoted =
            format!("{failed}r3 127.0.0.1:7005@17005 master - 0 0 4 connected 10923-16383\n");
        assert_eq!(served_slots(&promoted), SLOTS);
        // A suspected failure counts as failed; single slots and odd fields are handled.
        let odd = "x 1:1@2 master,fail? - 0 0 1 connected 0-16383\n\
                   y 1:2@3 master - 0 0 2 connected 5 7-8 junk 20000-30000\n";
        assert_eq!(served_slots(odd), 3);
    }
}
