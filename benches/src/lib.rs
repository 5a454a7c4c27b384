//! Shared fixtures for the criterion benches in `benches/benches/`.
//!
//! Every bench puts a leasehold operation beside the raw store operation it is built on (the
//! physical limit), so results read as ratios rather than absolute numbers.

use leasehold::{
    CreateOptions, ManualClock, Policy, PolicyError, SeededEntropy, Sessions, Store, Subject,
};

/// A driver over `store` with a manual clock, deterministic entropy and the default policy
/// (which every store guarantees: the error is only for a store that refuses it).
pub fn sessions<S: Store>(store: S) -> Result<(Sessions<S>, ManualClock), PolicyError> {
    let clock = ManualClock::default();
    let s = Sessions::new(store, Policy::default())?
        .with_clock(clock.clone())
        .with_entropy(SeededEntropy::new(42));
    Ok((s, clock))
}

/// Creates `n` sessions spread over `n / 4 + 1` subjects; returns their token texts.
pub async fn populate<S: Store>(
    s: &Sessions<S>,
    n: usize,
) -> Result<Vec<String>, leasehold::Error> {
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        let subject = Subject::new(format!("user-{}", i / 4))?;
        let c = s.create(&subject, CreateOptions::default()).await?;
        tokens.push(c.token.expose_secret().to_owned());
    }
    Ok(tokens)
}
