//! Seed 003, SSH session tokens: TTL, 3 connections per token and 20 per sandbox, sandbox
//! deletion and the reaper, on sled in a temp dir with a manual clock.
//!
//! `cargo run -p leasehold-examples --example seed_ssh_tokens`

use leasehold::{ManualClock, Resource, Subject};
use leasehold_examples::ssh_tokens::{REAPER_INTERVAL, SshConfig, SshTokens};
use leasehold_sled::SledStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::default();
    let gw = SshTokens::new(SledStore::open(dir.path())?, SshConfig::default())?
        .with_clock(clock.clone());
    let cli = Subject::new("mtls:cli-laptop")?;
    let sb = Resource::new("sandbox-7f3a")?;

    let s = gw.create_ssh_session(&cli, &sb).await?;
    println!("token {} expires_at_ms {}", s.token, s.expires_at_ms);
    let mut tunnels = Vec::new();
    for i in 1..=4 {
        match gw.open_tunnel(s.token.expose_secret(), &sb).await {
            Ok(c) => {
                println!("tunnel {i}: open (slot {})", c.slot.id);
                tunnels.push(c);
            }
            Err(e) => println!("tunnel {i}: {e}"),
        }
    }
    println!(
        "same token, other sandbox: {:?}",
        gw.open_tunnel(s.token.expose_secret(), &Resource::new("sandbox-other")?)
            .await
            .err()
    );

    let mut opened = tunnels.len();
    while opened < 21 {
        let t = gw.create_ssh_session(&cli, &sb).await?;
        for _ in 0..3 {
            match gw.open_tunnel(t.token.expose_secret(), &sb).await {
                Ok(_) => opened += 1,
                Err(e) => {
                    println!("connection {}: {e}", opened + 1);
                    opened = 21;
                    break;
                }
            }
        }
    }

    println!(
        "sandbox deleted: {} token(s) revoked",
        gw.delete_sandbox(&sb).await?
    );
    println!(
        "open tunnel's heartbeat: {:?}",
        gw.heartbeat(&tunnels[0].slot.id).await.err()
    );

    let none = SshTokens::new(
        SledStore::open(dir.path().join("ttl0"))?,
        SshConfig {
            ssh_session_ttl_secs: 0,
            ..SshConfig::default()
        },
    )?
    .with_clock(clock.clone());
    let forever = none
        .create_ssh_session(&cli, &Resource::new("sandbox-b")?)
        .await?;
    println!("TTL 0: expires_at_ms {}", forever.expires_at_ms);
    for hour in 1..=25 {
        clock.advance(REAPER_INTERVAL);
        let out = gw.reap(1000).await?;
        if out.sessions > 0 {
            println!(
                "reaper at +{hour} h: {} session(s), {} slot(s) removed",
                out.sessions, out.slots
            );
        }
    }
    println!(
        "TTL-0 token after 25 h: {:?}",
        none.open_tunnel(forever.token.expose_secret(), &Resource::new("sandbox-b")?)
            .await
            .map(|c| c.slot.id)
    );
    Ok(())
}
