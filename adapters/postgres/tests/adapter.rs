//! What the conformance suite cannot see from outside: statements per call, tombstones written
//! in SQL, rows the engine's codec would refuse, migrations from a newer build, the reaper task,
//! and the message when the server is not there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use leasehold::store::CreateLimits;
use leasehold::{
    CapPolicy, Clock, Context, CreateOptions, ManualClock, Policy, RevokeReason, SeededEntropy,
    Sessions, Store, StoreError, Subject, SubjectCap, SystemClock,
};
use leasehold_postgres::{OpenError, PostgresStore, spawn_reaper};

const HOUR: Duration = Duration::from_secs(3600);

/// A store on a fresh schema; the schema is dropped after the store (fields drop in order).
struct Fixture {
    store: PostgresStore,
    guard: common::DropSchema,
}

async fn store() -> Fixture {
    match common::fresh_store("adapter", 2).await {
        Ok((store, guard)) => Fixture { store, guard },
        Err(e) => panic!("{e}"),
    }
}

/// Sessions over `store` with `policy`, driven by `clock`, with seeded entropy.
fn driver(
    store: &PostgresStore,
    policy: Policy,
    clock: ManualClock,
    seed: u64,
) -> Sessions<PostgresStore> {
    Sessions::new(store.clone(), policy)
        .unwrap()
        .with_clock(clock)
        .with_entropy(SeededEntropy::new(seed))
}

/// A caller an hour ahead of the server, so every call is judged at the caller's clock.
fn ahead() -> ManualClock {
    ManualClock::new(SystemClock.now().saturating_add(HOUR))
}

#[tokio::test]
async fn validate_is_one_statement_and_a_touch_two() {
    let f = store().await;
    let store = f.store.clone();
    let clock = ahead();
    let s = driver(&store, Policy::default(), clock.clone(), 1);
    let c = s
        .create(&Subject::new("alice").unwrap(), CreateOptions::default())
        .await
        .unwrap();
    let token = c.token.expose_secret().to_owned();
    // Warm: the first use of a statement on a connection also prepares it.
    s.validate(&token, &Context::none()).await.unwrap();
    let before = store.statements_sent();
    s.validate(&token, &Context::none()).await.unwrap();
    assert_eq!(store.statements_sent() - before, 1, "validate: one load");

    // Past the touch granularity, a validate writes the touch: load + compare-and-swap.
    clock.advance(Duration::from_secs(120));
    let before = store.statements_sent();
    s.validate(&token, &Context::none()).await.unwrap();
    assert_eq!(store.statements_sent() - before, 2, "touch: load + swap");
}

/// Calls the store's `compare_and_swap` on the stored row of `id` with the columns in `change`
/// replaced (SQL expressions over the row `s`), in a transaction, and returns that
/// transaction's `synchronous_commit` as it would commit (then rolls it back).
async fn commit_mode_of_swap(store: &PostgresStore, id: &[u8], change: &[(&str, &str)]) -> String {
    let q = format!("\"{}\"", store.schema());
    // The function's arguments: the stored row as it is, one version on (a swap's minimum).
    let mut args: Vec<&str> = "s.id, s.subject, s.resource, s.kind, s.state, s.reason, \
        s.revoked_at, s.version + 1, s.created_at, s.last_seen_at, s.absolute_deadline, \
        s.expires_at, s.generation, s.verifier, s.rotated_at, s.prev_verifier, s.prev_sealed, \
        s.prev_successor_seen, s.retired, s.access_verifier, s.access_expires_at, s.binding, \
        s.context_summary, s.data, s.data_version, s.version, 0, 0"
        .split(", ")
        .collect();
    for (column, expr) in change {
        let at = args
            .iter()
            .position(|a| *a == format!("s.{column}"))
            .expect("a column of the call");
        args[at] = expr;
    }
    let sql = format!(
        "SELECT {q}.compare_and_swap({}) FROM {q}.sessions AS s WHERE s.id = $1",
        args.join(", ")
    );
    let mut tx = store.pool().begin().await.unwrap();
    let outcome: String = sqlx::query_scalar(&sql)
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(outcome, "OK", "the swap {change:?} applies");
    let mode: String = sqlx::query_scalar("SELECT current_setting('synchronous_commit')")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    mode
}

#[tokio::test]
async fn a_touch_commits_without_waiting_for_the_wal_flush_and_every_other_swap_waits() {
    let f = store().await;
    let store = f.store.clone();
    let s = driver(&store, Policy::default(), ahead(), 3);
    let c = s
        .create(&Subject::new("alice").unwrap(), CreateOptions::default())
        .await
        .unwrap();
    let id = c.session.id.as_bytes().to_vec();

    // A touch: last_seen_at, expires_at and the version move, nothing else (WriteClass::Routine).
    let touch = [
        ("last_seen_at", "s.last_seen_at + 1"),
        ("expires_at", "s.expires_at + 1"),
    ];
    assert_eq!(
        commit_mode_of_swap(&store, &id, &touch).await,
        "off",
        "a touch"
    );
    // A version-only swap is a touch too.
    assert_eq!(
        commit_mode_of_swap(&store, &id, &[]).await,
        "off",
        "version only"
    );

    // Security writes: any other change keeps the synchronous commit.
    let security: [(&str, &[(&str, &str)]); 9] = [
        (
            "a tombstone",
            &[
                ("state", "1::smallint"),
                ("reason", "1::smallint"),
                ("revoked_at", "s.created_at"),
            ],
        ),
        (
            "a rotation",
            &[
                ("generation", "s.generation + 1"),
                ("rotated_at", "s.rotated_at + 1"),
            ],
        ),
        ("a new verifier", &[("verifier", "sha256(s.verifier)")]),
        (
            "a predecessor",
            &[
                ("prev_verifier", "s.verifier"),
                ("prev_successor_seen", "false"),
            ],
        ),
        ("a retired verifier", &[("retired", "ARRAY[s.verifier]")]),
        ("a binding", &[("binding", "sha256(s.id)")]),
        ("a context summary", &[("context_summary", "'ua'")]),
        (
            "new data",
            &[
                ("data", "'\\x02'::bytea"),
                ("data_version", "s.data_version + 1"),
            ],
        ),
        (
            "an access grant",
            &[
                ("access_verifier", "s.verifier"),
                ("access_expires_at", "s.expires_at"),
            ],
        ),
    ];
    for (what, change) in security {
        let mode = commit_mode_of_swap(&store, &id, change).await;
        assert_eq!(mode, "on", "{what} must wait for its WAL flush");
    }

    // Each compared column on its own, so that none can drop out of the comparison unseen;
    // the predecessor's and the access grant's columns on a row that has them.
    let q = format!("\"{}\"", store.schema());
    sqlx::query(&format!(
        "UPDATE {q}.sessions SET prev_verifier = sha256(verifier), prev_sealed = sha256(id), \
         prev_successor_seen = false, access_verifier = verifier, \
         access_expires_at = expires_at WHERE id = $1"
    ))
    .bind(&id)
    .execute(store.pool())
    .await
    .unwrap();
    for (column, expr) in [
        ("generation", "s.generation + 1"),
        ("rotated_at", "s.rotated_at + 1"),
        ("data", "'\\x02'::bytea"),
        ("data_version", "s.data_version + 1"),
        ("prev_verifier", "sha256(s.prev_verifier)"),
        ("prev_sealed", "sha256(s.prev_sealed)"),
        ("prev_successor_seen", "NOT s.prev_successor_seen"),
        ("access_verifier", "sha256(s.access_verifier)"),
        ("access_expires_at", "s.access_expires_at + 1"),
    ] {
        let mode = commit_mode_of_swap(&store, &id, &[(column, expr)]).await;
        assert_eq!(
            mode, "on",
            "a change of {column} alone must wait for its WAL flush"
        );
    }
}

#[tokio::test]
async fn tombstones_written_in_sql_are_the_engines() {
    let f = store().await;
    let store = f.store.clone();
    let clock = ahead();
    let cap = Policy::builder()
        .subject_cap(Some(SubjectCap {
            max: 1,
            on_full: CapPolicy::EvictOldest,
        }))
        .build()
        .unwrap();
    let s = driver(&store, cap, clock.clone(), 2);
    let alice = Subject::new("alice").unwrap();
    let first = s.create(&alice, CreateOptions::default()).await.unwrap();
    let stored = store
        .load_session(&first.session.id)
        .await
        .unwrap()
        .record
        .unwrap();

    clock.advance(Duration::from_secs(5));
    let second = s.create(&alice, CreateOptions::default()).await.unwrap();
    let evicted = store
        .load_session(&first.session.id)
        .await
        .unwrap()
        .record
        .unwrap();
    assert_eq!(
        *evicted,
        stored.tombstone(clock.now(), RevokeReason::Evicted),
        "eviction"
    );

    clock.advance(Duration::from_secs(5));
    let live = store
        .load_session(&second.session.id)
        .await
        .unwrap()
        .record
        .unwrap();
    assert_eq!(store.revoke_subject(&alice, clock.now()).await.unwrap(), 1);
    let revoked = store
        .load_session(&second.session.id)
        .await
        .unwrap()
        .record
        .unwrap();
    assert_eq!(*revoked, live.tombstone(clock.now(), RevokeReason::Subject));
    // Nothing else moved: a touch-free tombstone keeps every other field.
    assert_eq!(revoked.credential, live.credential);
}

#[tokio::test]
async fn a_row_the_codec_would_refuse_is_corrupt_and_blocks_no_group_operation() {
    let f = store().await;
    let store = f.store.clone();
    let s = driver(&store, Policy::default(), ahead(), 3);
    let alice = Subject::new("alice").unwrap();
    let a = s.create(&alice, CreateOptions::default()).await.unwrap();
    let b = s.create(&alice, CreateOptions::default()).await.unwrap();
    let t = format!("\"{}\".sessions", store.schema());
    // Values the engine's codec refuses: a subject with a control character, a retired
    // verifier of 1 byte.
    sqlx::query(&format!(
        "UPDATE {t} SET subject = 'alice' || chr(7) WHERE id = $1"
    ))
    .bind(a.session.id.as_bytes().as_slice())
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query(&format!(
        "UPDATE {t} SET retired = ARRAY['\\x01'::bytea] WHERE id = $1"
    ))
    .bind(b.session.id.as_bytes().as_slice())
    .execute(store.pool())
    .await
    .unwrap();
    for id in [a.session.id, b.session.id] {
        assert!(
            matches!(store.load_session(&id).await, Err(StoreError::Corrupt(_))),
            "{id}"
        );
    }
    assert!(matches!(
        store.list_subject(&alice).await,
        Err(StoreError::Corrupt(_))
    ));
    // Group operations work on the columns SQL needs: a bad row does not block them.
    let now = SystemClock.now().saturating_add(HOUR);
    assert_eq!(store.revoke_subject(&alice, now).await.unwrap(), 1);
}

#[tokio::test]
async fn check_limits_writes_nothing_and_agrees_with_the_insert() {
    let f = store().await;
    let store = f.store.clone();
    let clock = ahead();
    let s = driver(&store, Policy::default(), clock.clone(), 4);
    let alice = Subject::new("alice").unwrap();
    s.create(&alice, CreateOptions::default()).await.unwrap();
    let limits = CreateLimits {
        subject_cap: Some(SubjectCap {
            max: 1,
            on_full: CapPolicy::Reject,
        }),
        ..CreateLimits::default()
    };
    let dump = store.raw_dump().await.unwrap();
    assert_eq!(
        store
            .check_limits(&alice, &limits, clock.now())
            .await
            .unwrap(),
        leasehold::store::InsertOutcome::SubjectCapReached
    );
    assert_eq!(store.raw_dump().await.unwrap(), dump, "nothing written");
}

#[tokio::test]
async fn a_schema_from_a_newer_build_is_refused() {
    let f = store().await;
    let store = f.store.clone();
    sqlx::query(&format!(
        "INSERT INTO \"{}\".schema_migrations (version, description) VALUES (999, 'future')",
        store.schema()
    ))
    .execute(store.pool())
    .await
    .unwrap();
    let again = PostgresStore::open(store.pool().clone(), &f.guard.schema).await;
    assert!(
        matches!(again, Err(OpenError::NewerSchema { found: 999, .. })),
        "{again:?}"
    );
    assert!(matches!(
        PostgresStore::open(store.pool().clone(), "Bad-Name").await,
        Err(OpenError::InvalidSchemaName(_))
    ));
}

#[tokio::test]
async fn the_reaper_task_reaps_then_stops_cleanly() {
    let f = store().await;
    let store = f.store.clone();
    // Sessions created two days ago with a one-hour idle timeout: due on every clock.
    let past = ManualClock::new(SystemClock.now().saturating_sub(48 * HOUR));
    let policy = Policy::builder().idle_timeout(Some(HOUR)).build().unwrap();
    let s = driver(&store, policy, past, 5);
    let alice = Subject::new("alice").unwrap();
    for _ in 0..5 {
        s.create(&alice, CreateOptions::default()).await.unwrap();
    }
    let reaper = spawn_reaper(store.clone(), Duration::from_secs(3600), 2);
    // The first round runs at once (batches of 2 until one comes back short); wait for the
    // task's effect, not for time (bounded).
    let mut left = usize::MAX;
    for _ in 0..200 {
        left = store.list_subject(&alice).await.unwrap().len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(left, 0, "the reaper removed every due session");
    tokio::time::timeout(Duration::from_secs(10), reaper.stop())
        .await
        .expect("the reaper stops while it waits for its next round");
}

#[tokio::test]
async fn an_unreachable_server_says_how_to_start_one() {
    let url = "postgres://postgres@127.0.0.1:1/test";
    let options = leasehold_postgres::recommended_connect_options(url).unwrap();
    let err = leasehold_postgres::recommended_pool_options()
        .acquire_timeout(Duration::from_secs(1))
        .connect_with(options)
        .await
        .map_err(|e| common::unreachable(url, e))
        .unwrap_err();
    assert!(err.contains("scripts/services.sh"), "{err}");
    // And the adapter's own connect reports it as a connection failure.
    assert!(matches!(
        PostgresStore::connect(url, "leasehold").await,
        Err(OpenError::Connect(_))
    ));
}

#[tokio::test]
async fn a_callers_search_path_cannot_redirect_the_store() {
    let url = common::url();
    let schema = common::fresh_schema("path");
    let decoy = format!("{schema}_decoy");
    let _guards = [
        common::DropSchema {
            url: url.clone(),
            schema: schema.clone(),
        },
        common::DropSchema {
            url: url.clone(),
            schema: decoy.clone(),
        },
    ];
    let admin = common::pool(&url, 1).await.unwrap();
    sqlx::raw_sql(&format!(
        "CREATE SCHEMA \"{decoy}\"; CREATE TABLE \"{decoy}\".sessions (id bytea); \
         CREATE TABLE \"{decoy}\".subjects (subject text); \
         CREATE FUNCTION \"{decoy}\".clock_timestamp() RETURNS timestamptz \
             LANGUAGE sql AS $$ SELECT timestamptz '2100-01-01 00:00:00+00' $$; \
         CREATE FUNCTION \"{decoy}\".floor(numeric) RETURNS numeric \
             LANGUAGE sql AS $$ SELECT 0::numeric $$"
    ))
    .execute(&admin)
    .await
    .unwrap();
    // The application's pool puts the decoy first on every connection's search_path, even
    // before pg_catalog: its clock_timestamp() and floor() would move the store's clock to
    // 2100 (or to 0) wherever a statement or an inlined function names them unqualified.
    let path = format!("\"{decoy}\",pg_catalog");
    let options = leasehold_postgres::recommended_connect_options(&url)
        .unwrap()
        .options([("search_path", path.as_str())]);
    let pool = leasehold_postgres::recommended_pool_options()
        .max_connections(2)
        .connect_with(options)
        .await
        .unwrap();
    let store = PostgresStore::open(pool, &schema).await.unwrap();
    let s = driver(&store, Policy::default(), ahead(), 6);
    let alice = Subject::new("alice").unwrap();
    let c = s.create(&alice, CreateOptions::default()).await.unwrap();
    s.validate(c.token.expose_secret(), &Context::none())
        .await
        .unwrap();
    assert_eq!(
        store.revoke_subject(&alice, ahead().now()).await.unwrap(),
        1
    );
    let count = |t: String| {
        let admin = admin.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {t}"))
                .fetch_one(&admin)
                .await
                .unwrap()
        }
    };
    assert_eq!(count(format!("\"{decoy}\".sessions")).await, 0);
    assert_eq!(count(format!("\"{decoy}\".subjects")).await, 0);
    assert_eq!(count(format!("\"{schema}\".sessions")).await, 1);
    store.pool().close().await;
    admin.close().await;
}

/// `import_sessions` writes what `insert_session` (no limits) writes: records that load back
/// exactly and validate, lock rows with the same expiry for a subject and a resource; and it
/// is all or nothing.
#[tokio::test]
async fn import_writes_what_insert_session_writes() {
    use leasehold::{OsEntropy, Resource, Scope, decide};

    let f = store().await;
    let store = f.store.clone();
    let clock = ahead();
    let policy = Policy::default();
    let now = clock.now();
    let new = |subject: &str, resource: &str| {
        let opts = CreateOptions {
            resource: Some(Resource::new(resource).unwrap()),
            summary: Some("laptop".into()),
            data: b"prefs".to_vec(),
            ..CreateOptions::default()
        };
        decide::create::new_session(
            &Subject::new(subject).unwrap(),
            &opts,
            now,
            &policy,
            &OsEntropy,
        )
        .unwrap()
    };
    // The same shape twice: alice on r1 through insert_session, bob on r2 through the import.
    let (inserted, _) = new("alice", "r1");
    let (imported, token) = new("bob", "r2");
    let limits = CreateLimits::default();
    store.insert_session(&inserted, &limits, now).await.unwrap();
    assert_eq!(
        store
            .import_sessions(std::slice::from_ref(&imported))
            .await
            .unwrap(),
        1
    );
    for r in [&inserted, &imported] {
        let loaded = store.load_session(&r.id).await.unwrap();
        assert_eq!(loaded.record.as_deref(), Some(r));
    }
    let expiry = |table: &str, column: &str, name: &str| {
        let sql = format!(
            "SELECT expires_at FROM \"{}\".{table} WHERE {column} = $1",
            store.schema()
        );
        let (pool, name) = (store.pool().clone(), name.to_owned());
        async move {
            sqlx::query_scalar::<_, i64>(&sql)
                .bind(name)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        expiry("subjects", "subject", "alice").await,
        expiry("subjects", "subject", "bob").await
    );
    assert_eq!(
        expiry("resources", "resource", "r1").await,
        expiry("resources", "resource", "r2").await
    );
    let s = driver(&store, policy.clone(), clock.clone(), 7);
    s.validate(token.expose_secret(), &Context::none())
        .await
        .unwrap();

    // All or nothing: a batch holding an id already stored writes none of its records.
    let (fresh, _) = new("carol", "r1");
    let refused = store
        .import_sessions(&[fresh.clone(), inserted.clone()])
        .await;
    assert_eq!(refused, Err(StoreError::AlreadyExists));
    assert_eq!(store.load_session(&fresh.id).await.unwrap().record, None);
    assert_eq!(store.count_live(&Scope::All, now).await.unwrap(), 2);

    // A record whose id does not carry its subject's shard tag is refused, as by an insert.
    let (mut moved, _) = new("dave", "r1");
    let erin = Subject::new("erin").unwrap();
    assert_ne!(leasehold::ShardTag::of(&erin), moved.id.shard_tag());
    moved.subject = erin;
    assert!(matches!(
        store.import_sessions(&[moved]).await,
        Err(StoreError::InvalidWrite(_))
    ));
}
