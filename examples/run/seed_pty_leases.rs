//! Seed 000, the PTY lease registry: mint, attach once, refresh, restart, dispose, and the
//! bounded registry, on a `MemoryStore` with a manual clock (nothing sleeps).
//!
//! `cargo run -p leasehold-examples --example seed_pty_leases`

use std::time::Duration;

use leasehold::{Clock, ManualClock, MemoryStore};
use leasehold_examples::pty_leases::{LeaseConfig, PtyLeases};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::default();
    let config = LeaseConfig {
        max_leases: 3,
        ..LeaseConfig::from_env()
    };
    println!(
        "lease TTL {:?}, at most {} leases",
        config.lease_ttl, config.max_leases
    );
    let leases = PtyLeases::new(MemoryStore::new(), config)?.with_clock(clock.clone());

    let a = leases.mint_lease().await?;
    println!(
        "/pty-session: session id {} (loggable), attach token {}",
        a.lease.session_id, a.attach_token
    );
    leases
        .consume_attach_token(a.attach_token.expose_secret())
        .await?;
    println!("WS upgrade consumed the attach token");
    let again = leases
        .consume_attach_token(a.attach_token.expose_secret())
        .await;
    println!("a second upgrade with it: {again:?}");

    clock.advance(Duration::from_secs(20 * 60));
    let l = leases.refresh_lease(&a.lease.session_id).await?;
    println!(
        "refresh at +20 min: expires in {:?}",
        l.expires_at.since(clock.now())
    );
    let r = leases.reattach(&a.lease.session_id).await?;
    println!(
        "/pty-session/reattach: fresh attach token {}",
        r.attach_token
    );

    let b = leases.restart(&a.lease.session_id).await?;
    println!(
        "/pty-restart: {} replaces {}; old lease: {:?}",
        b.lease.session_id,
        a.lease.session_id,
        leases.validate_lease(&a.lease.session_id).await
    );

    for _ in 0..3 {
        leases.mint_lease().await?;
        clock.advance(Duration::from_millis(5));
    }
    println!(
        "after 3 more mints (cap 3): {} leases, the oldest evicted: {:?}",
        leases.lease_count().await?,
        leases.validate_lease(&b.lease.session_id).await
    );

    clock.advance(Duration::from_secs(31 * 60));
    println!("31 min later: {} live", leases.lease_count().await?);
    for e in leases.prune_expired(100).await?.ended {
        println!("lapsed, dispose its PTY: {} ({:?})", e.id, e.reason);
    }
    Ok(())
}
