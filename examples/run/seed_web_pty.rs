//! Seed 001, the web PTY session manager: caps, the hourly creation rate with Retry-After, a
//! failed spawn not counted, grace and resume, the admin view, and expiry teardown, on sled in a
//! temp dir with a manual clock.
//!
//! `cargo run -p leasehold-examples --example seed_web_pty`

use std::time::Duration;

use leasehold::{ManualClock, Subject};
use leasehold_examples::web_pty::{CreateError, WebPty, WebPtyConfig};
use leasehold_sled::SledStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::default();
    let config = WebPtyConfig {
        max_sessions: 4,
        max_sessions_per_user: Some(2),
        max_sessions_per_hour: 3,
        grace_period: Duration::from_secs(60),
    };
    let m = WebPty::new(SledStore::open(dir.path())?, config)?.with_clock(clock.clone());
    let alice = Subject::new("alice")?;

    let failed = m.create(&alice, || Err::<(), _>("spawn ENOENT")).await;
    println!("spawn failed: {:?}", failed.err());
    let mut ids = Vec::new();
    for i in 0..3 {
        clock.advance(Duration::from_millis(1_500));
        println!("peek before spawning: {:?}", m.can_create(&alice).await);
        match m
            .create(&alice, || Ok::<_, String>(format!("pty#{i}")))
            .await
        {
            Ok(s) => {
                println!("spawned {} for alice: {}", s.pty, s.session.id);
                ids.push(s.session.id);
            }
            Err(CreateError::Refused(e)) => {
                println!("refused: {e} (Retry-After {:?})", e.retry_after_secs())
            }
            Err(CreateError::Spawn(e)) => println!("spawn failed: {e}"),
        }
    }
    m.destroy_session(&ids[0]).await?;
    match m
        .create(&alice, || Ok::<String, String>("pty#3".into()))
        .await
    {
        Err(CreateError::Refused(e)) => println!(
            "after destroying one: {e}; Retry-After: {:?} s",
            e.retry_after_secs()
        ),
        other => println!(
            "after destroying one (3rd counted creation this hour): {:?}",
            other.map(|s| s.session.id)
        ),
    }

    clock.advance(Duration::from_secs(45));
    m.keepalive(&ids[1]).await?;
    println!(
        "alice's WebSocket closes; 50 s later she resumes: {:?}",
        m.resume(&alice, &ids[1]).await.map(|s| s.id)
    );
    for row in m.all_sessions(100).await? {
        println!(
            "admin: {} {} created {}",
            row.id, row.user_id, row.created_at
        );
    }
    clock.advance(Duration::from_secs(61));
    for e in m.reap_expired(100).await? {
        println!(
            "grace over, kill PTY of {} ({}): {:?}",
            e.id, e.subject, e.reason
        );
    }
    println!("active: {}", m.active_count().await?);
    // The 4th counted creation this hour is refused, with a Retry-After in whole seconds.
    if let Err(CreateError::Refused(e)) = m
        .create(&alice, || Ok::<String, String>("pty#4".into()))
        .await
    {
        println!(
            "4th creation this hour: {e}; Retry-After: {:?} s",
            e.retry_after_secs()
        );
    }
    Ok(())
}
