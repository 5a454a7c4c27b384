//! Seed 002, the session service with access tokens: login, access-token checks, a refresh that
//! replaces the access token, logout, and account deletion for a DID, on a `MemoryStore` with a
//! manual clock.
//!
//! `cargo run -p leasehold-examples --example seed_token_service`

use std::time::Duration;

use leasehold::{ManualClock, MemoryStore, Subject};
use leasehold_examples::token_service::{SessionConfig, TokenService};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::default();
    let svc =
        TokenService::new(MemoryStore::new(), SessionConfig::default())?.with_clock(clock.clone());
    let did = Subject::new("did:plc:ewvi7nxzyoun6zhxrhs64oiz")?;

    let s = svc.create_session(&did, "alice.bsky.social").await?;
    println!(
        "login: refresh cookie {}, access token {}",
        s.refresh_token, s.access_token
    );
    let who = svc
        .validate_access_token(s.access_token.expose_secret())
        .await?;
    println!(
        "access token → {} ({})",
        who.subject,
        String::from_utf8_lossy(&who.data)
    );

    clock.advance(Duration::from_secs(15 * 60));
    println!(
        "15 min later: {:?}",
        svc.validate_access_token(s.access_token.expose_secret())
            .await
            .err()
    );
    let r = svc.refresh_session(s.refresh_token.expose_secret()).await?;
    println!(
        "refreshed: new access token {}, new refresh cookie {}",
        r.access_token, r.refresh_token
    );
    println!(
        "old access token now: {:?}",
        svc.validate_access_token(s.access_token.expose_secret())
            .await
            .err()
    );

    let phone = svc.create_session(&did, "alice.bsky.social").await?;
    println!(
        "logout of the first: {:?}",
        svc.delete_session(r.refresh_token.expose_secret()).await?
    );
    println!(
        "account deletion: {} session(s) deleted",
        svc.delete_all_sessions_for_did(&did).await?
    );
    println!(
        "phone's access token: {:?}",
        svc.validate_access_token(phone.access_token.expose_secret())
            .await
            .err()
    );
    Ok(())
}
