//! INV-hash-at-rest: the store never holds a raw secret. The adapter's raw dump (every key and
//! value it stores, through its test-only `raw_dump` hook) must not contain any issued token's
//! secret, raw, hex or base64, whole or in 16-byte halves; `Debug`/`Display` are redacted.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use leasehold::token::SECRET_TEXT_LEN;
use leasehold::{Context, CreateOptions, Error, SessionId};

use super::{S, create, default_policy, text};
use crate::env::{CaseError, CaseResult, Env, ensure, fail, mins, resource, secs, subject};

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && hay.len() >= needle.len()
        && hay.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

/// The raw secret bytes of a token text (`<prefix>_<id>_<43 base64url>`).
fn secret_of(token: &str) -> Result<Vec<u8>, CaseError> {
    let Some(tail) = token.get(token.len().saturating_sub(SECRET_TEXT_LEN)..) else {
        fail!("token text too short");
    };
    URL_SAFE_NO_PAD
        .decode(tail)
        .map_err(|e| CaseError(format!("token secret is not base64url: {e}")))
}

/// Every form of a token's secret that must not appear at rest, with a label.
fn needles(token: &str) -> Result<Vec<(String, Vec<u8>)>, CaseError> {
    let raw = secret_of(token)?;
    let mut out = vec![("the whole token text".to_owned(), token.as_bytes().to_vec())];
    for (label, part) in [
        ("", &raw[..]),
        (" (first half)", &raw[..raw.len() / 2]),
        (" (second half)", &raw[raw.len() / 2..]),
    ] {
        out.push((format!("the raw secret{label}"), part.to_vec()));
        out.push((
            format!("the hex secret{label}"),
            hex(part, false).into_bytes(),
        ));
        out.push((
            format!("the HEX secret{label}"),
            hex(part, true).into_bytes(),
        ));
    }
    for (label, engine) in [
        ("base64url", &URL_SAFE_NO_PAD),
        ("padded base64url", &URL_SAFE),
        ("base64", &STANDARD),
        ("unpadded base64", &STANDARD_NO_PAD),
    ] {
        out.push((
            format!("the {label} secret"),
            engine.encode(&raw).into_bytes(),
        ));
    }
    Ok(out)
}

/// Dumps the store and checks that it is a real dump (every listed session id appears, raw or
/// hex) and that no form of any token's secret appears in it.
async fn audit(
    env: &Env,
    tokens: &[String],
    ids: &[SessionId],
    extra: &[(&str, &[u8])],
) -> CaseResult {
    let Some(dump) = env.store().raw_dump().await? else {
        fail!("the store declares raw_dump but raw_dump() returned None");
    };
    ensure!(
        !dump.is_empty(),
        "raw_dump() returned nothing for a non-empty store"
    );
    let all: Vec<u8> = dump.concat();
    for id in ids {
        let forms = [
            id.as_bytes().to_vec(),
            id.to_string().into_bytes(),
            id.to_string().to_uppercase().into_bytes(),
        ];
        ensure!(
            forms.iter().any(|f| contains(&all, f)),
            "raw_dump() does not contain session id {id} (raw or hex): the hook must return \
             every stored key and value"
        );
    }
    for (n, token) in tokens.iter().enumerate() {
        for (label, needle) in needles(token)? {
            if let Some(i) = dump.iter().position(|entry| contains(entry, &needle)) {
                fail!("{label} of token #{n} is stored in dump entry #{i}");
            }
            ensure!(
                !contains(&all, &needle),
                "{label} of token #{n} appears across dump entries"
            );
        }
    }
    for (label, needle) in extra {
        ensure!(!contains(&all, needle), "{label} is stored in the clear");
    }
    Ok(())
}

fn opts(i: usize) -> Result<CreateOptions, CaseError> {
    Ok(CreateOptions {
        resource: Some(resource(&format!("sandbox-{i}"))?),
        context: Context::none(),
        summary: Some(format!("Firefox on Linux #{i}")),
        data: format!("cart={i}").into_bytes(),
        absolute_lifetime: None,
    })
}

/// Five fresh sessions (with resource, summary and data): no secret in the dump.
pub(crate) async fn no_session_secret_in_dump(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let mut tokens = Vec::new();
    let mut ids = Vec::new();
    for i in 0..5 {
        let c = s.create(&subject(&format!("user-{i}"))?, opts(i)?).await?;
        tokens.push(text(&c));
        ids.push(c.session.id);
    }
    audit(&env, &tokens, &ids, &[]).await
}

/// Rotation chains (refresh, reissue to a predecessor, automatic renewal): neither the
/// current secret, the predecessor, the sealed successor's plaintext, nor any retired secret
/// is in the dump.
pub(crate) async fn no_rotated_secret_in_dump(env: Env) -> CaseResult {
    let s = env.sessions(
        leasehold::Policy::builder()
            .renewal_interval(Some(mins(5)))
            .build()?,
    )?;
    let mut tokens = Vec::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let c = create(&s, &subject(&format!("user-{i}"))?).await?;
        ids.push(c.session.id);
        let mut t = text(&c);
        tokens.push(t.clone());
        for _ in 0..3 {
            env.advance(secs(10));
            let r = s.refresh(&t, &Context::none()).await?;
            // The predecessor, presented again inside the grace window, gets the same successor.
            let again = s.refresh(&t, &Context::none()).await?;
            ensure!(
                again.token.expose_secret() == r.token.expose_secret(),
                "a retried refresh got a different successor"
            );
            t = r.token.expose_secret().to_owned();
            tokens.push(t.clone());
        }
        env.advance(mins(6));
        if let Some(renewed) = s.validate(&t, &Context::none()).await?.renewed {
            tokens.push(renewed.expose_secret().to_owned());
        } else {
            fail!("no automatic renewal after the renewal interval");
        }
    }
    audit(&env, &tokens, &ids, &[]).await
}

/// Tickets (live, redeemed) and slots: no ticket or session secret in the dump.
pub(crate) async fn no_ticket_secret_in_dump(env: Env) -> CaseResult {
    let s: S = env.sessions(default_policy())?;
    let mut tokens = Vec::new();
    let mut ids = Vec::new();
    for i in 0..2 {
        let c = create(&s, &subject(&format!("user-{i}"))?).await?;
        let t = text(&c);
        ids.push(c.session.id);
        tokens.push(t.clone());
        for _ in 0..3 {
            let m = s.mint_ticket(&t, &Context::none()).await?;
            tokens.push(m.ticket.expose_secret().to_owned());
        }
        let spent = s.mint_ticket(&t, &Context::none()).await?;
        tokens.push(spent.ticket.expose_secret().to_owned());
        s.redeem_ticket(spent.ticket.expose_secret()).await?;
        s.acquire_slot(&c.session.id, Some(&resource("term")?))
            .await?;
    }
    audit(&env, &tokens, &ids, &[]).await
}

/// A context binding is stored only as a hash: its value is not in the dump.
pub(crate) async fn no_raw_binding_in_dump(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let binding = "device-4f1c2a9e-binding-value-7d3b";
    let c = s
        .create(
            &subject("alice")?,
            CreateOptions {
                context: Context::bound(binding),
                ..CreateOptions::default()
            },
        )
        .await?;
    ensure!(
        s.validate(text(&c), &Context::bound(binding)).await.is_ok(),
        "the bound session does not validate with its binding"
    );
    audit(
        &env,
        &[text(&c)],
        &[c.session.id],
        &[("the context binding", binding.as_bytes())],
    )
    .await
}

/// `Debug`/`Display` of tokens, driver results, contexts and errors never show a secret.
pub(crate) async fn tokens_redacted_in_debug_and_errors(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let binding = "device-binding-0123456789";
    let c = s
        .create(
            &subject("alice")?,
            CreateOptions {
                context: Context::bound(binding),
                ..CreateOptions::default()
            },
        )
        .await?;
    let t = text(&c);
    let ctx = Context::bound(binding);
    let r = s.refresh(&t, &ctx).await?;
    let t2 = r.token.expose_secret().to_owned();
    let m = s.mint_ticket(&t2, &ctx).await?;
    let v = s.validate(&t, &ctx).await?; // predecessor in grace: renewed = successor
    let denied: Error = match s.validate(&t2, &Context::none()).await {
        Err(e) => e,
        Ok(_) => fail!("a bound session validated without its binding"),
    };
    let shown = [
        format!("{:?}", c),
        format!("{}", c.token),
        format!("{:?}", r),
        format!("{}", r.token),
        format!("{:?}", m),
        format!("{}", m.ticket),
        format!("{:?}", v),
        format!("{:?}", ctx),
        format!("{denied:?} {denied}"),
    ];
    let mut secrets = Vec::new();
    for tok in [&t, &t2, &m.ticket.expose_secret().to_owned()] {
        secrets.extend(needles(tok)?);
    }
    secrets.push(("the binding".to_owned(), binding.as_bytes().to_vec()));
    for text in &shown {
        for (label, needle) in &secrets {
            ensure!(
                !contains(text.as_bytes(), needle),
                "{label} appears in a Debug/Display output: {text}"
            );
        }
    }
    ensure!(
        shown[1].contains(&c.session.id.to_string()),
        "a token's Display does not show its (non-secret) id: {}",
        shown[1]
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_encoding_of_a_secret_is_detected() {
        let raw: Vec<u8> = (0u8..32)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        let token = format!("lh1_{}_{}", "ab".repeat(18), URL_SAFE_NO_PAD.encode(&raw));
        assert_eq!(secret_of(&token).unwrap(), raw);
        let found = needles(&token).unwrap();
        let stored_forms = [
            raw.clone(),
            raw[..16].to_vec(),
            raw[16..].to_vec(),
            hex(&raw, false).into_bytes(),
            hex(&raw, true).into_bytes(),
            hex(&raw[..16], false).into_bytes(),
            STANDARD.encode(&raw).into_bytes(),
            STANDARD_NO_PAD.encode(&raw).into_bytes(),
            URL_SAFE.encode(&raw).into_bytes(),
            token.clone().into_bytes(),
        ];
        for form in stored_forms {
            let entry = [b"k:".to_vec(), form.clone(), b":v".to_vec()].concat();
            assert!(
                found.iter().any(|(_, n)| contains(&entry, n)),
                "not detected: {:?}",
                String::from_utf8_lossy(&form)
            );
        }
        let clean = [vec![0u8; 64], hex(&[9u8; 32], false).into_bytes()].concat();
        assert!(!found.iter().any(|(_, n)| contains(&clean, n)));
    }
}
