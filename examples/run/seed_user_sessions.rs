//! Seed 004, the user-session manager: device-bound sessions, renewal with an old-session
//! window, reads with the expected subject, read all / delete one / delete all, on a
//! `MemoryStore` with a manual clock.
//!
//! `cargo run -p leasehold-examples --example seed_user_sessions`

use std::time::Duration;

use leasehold::{ManualClock, MemoryStore, Subject};
use leasehold_examples::user_sessions::{Device, UserSessionManager, UserSessionManagerOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::default();
    let m = UserSessionManager::new(MemoryStore::new(), &UserSessionManagerOptions::default())?
        .with_clock(clock.clone());
    let alice = Subject::new("alice")?;
    let phone = Device::new("Pixel 8", "smartphone");
    let laptop = Device::new("ThinkPad", "desktop");

    let t = m.create(&alice, Some(&phone), None).await?;
    let short = m
        .create(&alice, Some(&laptop), Some(Duration::from_secs(3600)))
        .await?;
    println!("created {t} (phone) and {short} (laptop, 1 h)");
    println!(
        "read from the laptop with the phone's id: {:?}",
        m.read(&alice, t.expose_secret(), Some(&laptop)).await.err()
    );
    println!(
        "read as bob: {:?}",
        m.read(&Subject::new("bob")?, t.expose_secret(), Some(&phone))
            .await
            .err()
    );

    clock.advance(Duration::from_secs(15 * 60));
    let (_, renewed) = m.read(&alice, t.expose_secret(), Some(&phone)).await?;
    let new = renewed.ok_or("expected a renewal")?;
    println!("15 min: renewed, Set-Cookie {new}");
    clock.advance(Duration::from_secs(3));
    println!(
        "old id 3 s later: {:?}",
        m.read(&alice, t.expose_secret(), Some(&phone))
            .await
            .map(|(_, r)| r.map(|r| r.to_string()))
    );
    clock.advance(Duration::from_secs(3));
    println!(
        "old id 6 s later: {:?}",
        m.read(&alice, t.expose_secret(), Some(&phone)).await.err()
    );

    for s in m.read_all(&alice).await? {
        println!("alice's session {} on {:?}", s.id, s.summary);
    }
    let laptop_id = *short.id();
    println!(
        "delete the laptop's: {:?}",
        m.delete(&alice, &laptop_id).await?
    );
    println!("delete all: {}", m.delete_all(&alice).await?);
    Ok(())
}
