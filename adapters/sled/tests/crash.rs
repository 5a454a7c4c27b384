//! Crash recovery: a child process writes as fast as it can and acknowledges each revocation,
//! rotation and creation on stdout *after* the call returned; the parent kills it with SIGKILL
//! mid-stream, reopens the database and checks that everything acknowledged survived: no
//! acknowledged revocation is undone (no resurrection), every acknowledged rotation's new token
//! validates, every acknowledged creation exists.
//!
//! The child is this same test binary, re-executed with `CHILD_ENV` set and the ignored test
//! `crash_child` selected. It opens sled with the background flusher *off*
//! (`flush_every_ms(None)`), so only the adapter's own flushes make writes durable: the test
//! would see a missing flush instead of being rescued by a timer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use leasehold::{
    Context, CreateOptions, Error, ManualClock, Policy, RevokeReason, SessionId, SessionState,
    Sessions, Store, Subject,
};
use leasehold_sled::{OpenError, SledStore};

const CHILD_ENV: &str = "LEASEHOLD_SLED_CRASH_CHILD";
/// Acknowledgements read before the kill.
const KILL_AFTER: usize = 300;
const USERS: usize = 6;

fn user(i: usize) -> Subject {
    Subject::new(format!("user-{}", i % USERS)).unwrap()
}

/// The child half: never returns on its own (it is killed); a no-op unless run by the parent.
#[test]
#[ignore = "the child half of the crash test; the parent runs it with --ignored"]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let db = sled::Config::new()
        .path(&path)
        .flush_every_ms(None)
        .open()
        .unwrap();
    let store = SledStore::from_db(db).unwrap();
    let s = Sessions::new(store, Policy::default())
        .unwrap()
        .with_clock(ManualClock::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut out = std::io::stdout();
    let mut ack = |line: String| {
        // One write per line: a line is either whole in the pipe or absent.
        out.write_all(format!("\nACK {line}\n").as_bytes()).unwrap();
        out.flush().unwrap();
    };
    rt.block_on(async {
        for i in 0usize.. {
            let who = user(i);
            let c = s.create(&who, CreateOptions::default()).await.unwrap();
            let id = c.session.id;
            ack(format!(
                "CREATED {i} {id} {who} {}",
                c.token.expose_secret()
            ));
            // Unflushed writes between the flushed ones: slot leases.
            let _ = s.acquire_slot(&id, None).await.unwrap();
            match i % 4 {
                0 => {
                    let r = s
                        .refresh(c.token.expose_secret(), &Context::none())
                        .await
                        .unwrap();
                    ack(format!("ROTATED {id} {}", r.token.expose_secret()));
                }
                1 => {
                    assert_eq!(
                        s.trusted_by_id().revoke(&id).await.unwrap(),
                        leasehold::RevokeOutcome::Revoked
                    );
                    ack(format!("REVOKED {id}"));
                }
                2 => {
                    let r = s
                        .refresh(c.token.expose_secret(), &Context::none())
                        .await
                        .unwrap();
                    ack(format!("ROTATED {id} {}", r.token.expose_secret()));
                    let r2 = s
                        .refresh(r.token.expose_secret(), &Context::none())
                        .await
                        .unwrap();
                    ack(format!("ROTATED {id} {}", r2.token.expose_secret()));
                    assert_eq!(
                        s.trusted_by_id().revoke(&id).await.unwrap(),
                        leasehold::RevokeOutcome::Revoked
                    );
                    ack(format!("REVOKED {id}"));
                }
                _ => {}
            }
            if i % 25 == 24 {
                let victim = user(i / 25);
                let n = s.revoke_subject(&victim).await.unwrap();
                ack(format!("REVOKED_SUBJECT {victim} {n}"));
            }
        }
    });
}

#[derive(Default, Debug)]
struct Acked {
    subject: String,
    tokens: Vec<String>,
    rotated: bool,
    revoked: bool,
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());

    let mut sessions: HashMap<SessionId, Acked> = HashMap::new();
    // Subject → (position in the ack stream of its revocation).
    let mut subject_revocations: Vec<(String, usize)> = Vec::new();
    let mut created_order: Vec<(SessionId, usize)> = Vec::new();
    let mut acks = 0usize;
    // The last session acknowledged as created, with its iteration: an operation on it may
    // have been in flight (done but not acknowledged) when the child died.
    let mut last: Option<(usize, SessionId)> = None;
    let mut killed = false;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if !line.ends_with('\n') {
            break; // a partial last line is not an acknowledgement
        }
        let Some(rest) = line.trim_end().strip_prefix("ACK ") else {
            continue;
        };
        let parts: Vec<&str> = rest.split(' ').collect();
        match parts.as_slice() {
            ["CREATED", i, id, who, token] => {
                let id = SessionId::parse(id).unwrap();
                last = Some((i.parse::<usize>().unwrap(), id));
                created_order.push((id, acks));
                let e = sessions.entry(id).or_default();
                e.subject = (*who).to_owned();
                e.tokens.push((*token).to_owned());
            }
            ["ROTATED", id, token] => {
                let e = sessions.get_mut(&SessionId::parse(id).unwrap()).unwrap();
                e.tokens.push((*token).to_owned());
                e.rotated = true;
            }
            ["REVOKED", id] => {
                sessions
                    .get_mut(&SessionId::parse(id).unwrap())
                    .unwrap()
                    .revoked = true;
            }
            ["REVOKED_SUBJECT", who, _n] => subject_revocations.push(((*who).to_owned(), acks)),
            other => panic!("unexpected line {other:?}"),
        }
        acks += 1;
        if acks == 1 {
            // While the child holds the database, another process cannot open it.
            let err = SledStore::open(dir.path()).unwrap_err();
            assert!(
                matches!(err, OpenError::Locked { ref path } if path == dir.path()),
                "{err:?}"
            );
        }
        if acks == KILL_AFTER && !killed {
            child.kill().unwrap(); // SIGKILL
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        killed,
        "the child stopped by itself after {acks} acks: {status:?}"
    );
    assert!(!status.success());

    // Reopen after the crash (the kernel released the dead child's lock).
    let store = SledStore::open(dir.path()).unwrap();
    let s = Sessions::new(store, Policy::default())
        .unwrap()
        .with_clock(ManualClock::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut verified = BTreeMap::<&str, usize>::new();
    let (last_i, last_id) = last.unwrap();
    let in_flight_session = Some(last_id);
    let in_flight_subject = (last_i % 25 == 24).then(|| user(last_i / 25).as_str().to_owned());
    rt.block_on(async {
        // Subject-wide revocations: every session of the subject acknowledged before the
        // revocation's acknowledgement is revoked.
        for (who, at) in &subject_revocations {
            for (id, created_at) in &created_order {
                if created_at < at && sessions[id].subject == *who {
                    sessions.get_mut(id).unwrap().revoked = true;
                }
            }
        }
        for (id, acked) in &sessions {
            let rec = s.store().load_session(id).await.unwrap().record;
            let rec = rec.unwrap_or_else(|| panic!("acknowledged creation of {id} was lost"));
            if acked.revoked {
                assert!(
                    matches!(rec.state, SessionState::Revoked { .. }),
                    "acknowledged revocation of {id} was lost"
                );
                for t in &acked.tokens {
                    let v = s.validate(t, &Context::none()).await;
                    assert!(
                        matches!(v, Err(Error::Revoked { .. })),
                        "a revoked session validated: {v:?}"
                    );
                }
                *verified.entry("revoked").or_default() += 1;
            } else {
                let newest = acked.tokens.last().unwrap();
                let acked_generation = acked.tokens.len() as u64 - 1;
                match s.validate(newest, &Context::none()).await {
                    Ok(v) => {
                        assert_eq!(v.session.id, *id);
                        if Some(*id) == in_flight_session {
                            // A rotation may have committed without its acknowledgement.
                            assert!(v.session.generation >= acked_generation);
                        } else {
                            assert_eq!(v.session.generation, acked_generation);
                        }
                        let kind = if acked.rotated { "rotated" } else { "created" };
                        *verified.entry(kind).or_default() += 1;
                    }
                    // Unacknowledged writes may or may not have survived: a revocation of
                    // the last session, or of the subject due at the last iteration.
                    Err(Error::Revoked {
                        reason: RevokeReason::Revoked,
                    }) if Some(*id) == in_flight_session => {
                        *verified.entry("in flight").or_default() += 1;
                    }
                    Err(Error::Revoked {
                        reason: RevokeReason::Subject,
                    }) if in_flight_subject.as_deref() == Some(acked.subject.as_str()) => {
                        *verified.entry("in flight").or_default() += 1;
                    }
                    Err(e) => panic!("acknowledged session {id} ({acked:?}) lost: {e:?}"),
                }
            }
        }
        // The indexes survived with the records: each subject lists what was acknowledged.
        for u in 0..USERS {
            let who = user(u);
            let listed = s.store().list_subject(&who).await.unwrap();
            let expected = sessions
                .values()
                .filter(|a| a.subject == who.as_str())
                .count();
            assert!(
                listed.len() >= expected,
                "{who}: {} < {expected}",
                listed.len()
            );
        }
    });
    eprintln!(
        "crash test: {acks} acknowledgements read ({KILL_AFTER} before SIGKILL), \
         {} sessions, {} subject revocations; verified after reopen: {verified:?}",
        sessions.len(),
        subject_revocations.len()
    );
    assert!(acks >= KILL_AFTER);
}
