//! Key names and hash tags: one layout for standalone and Cluster.
//!
//! Every key starts with the configured prefix `P` (never containing `{` or `}`: a hash tag
//! in the prefix would override every later one and put all keys in one slot), then a kind
//! letter, then a `{hash tag}`:
//!
//! | key | holds | tag |
//! |---|---|---|
//! | `P:s:{tag}:<id hex>` | session record (codec), PXAT its `expires_at` | the id's shard tag |
//! | `P:u:{tag}:<subject>` | subject index: ZSET `seq ‖ id` → `created_at` | the subject's tag |
//! | `P:r:{tag}:<subject>` | creation log: ZSET id → judged creation time | the subject's tag |
//! | `P:t:{tag}:<ticket id hex>` | ticket, PXAT its `expires_at` | the ticket id's (= its session's) |
//! | `P:l:{tag}:<slot id hex>` | slot, PXAT its `expires_at` | the slot id's (= its session's) |
//! | `P:ls:{tag}:<session id hex>` | the session's slots: ZSET slot id → `expires_at` | the session's |
//! | `P:x:{tag}:<id hex>` | undecodable bytes moved aside (TTL kept) | the id's |
//! | `P:m:{rtag}:<resource>` | resource membership: ZSET id → `absolute_deadline` | the resource's |
//! | `P:lr:{rtag}:<resource>` | per-resource slot reservations: ZSET `slot id ‖ session id` → slot expiry | the resource's |
//! | `P:g:{global}` | global index: ZSET id → `absolute_deadline` | one fixed slot |
//! | `P:g:{global}:unindexed` | marker: sessions were created without the global index; PXAT the latest such session's absolute deadline | the global index's |
//!
//! `tag` is the 4 lowercase hex digits of the id's [`ShardTag`](leasehold::ShardTag) (for a
//! session: derived from its subject, so a subject's keys share one slot). `rtag` is the first
//! two bytes of SHA-256(`"leasehold/v1/resource\0"` ‖ resource), in hex.

use leasehold::{Resource, SessionId, SlotId, Subject, TicketId};
use sha2::{Digest, Sha256};

/// The key builder for one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

/// Lowercase hex without a formatter per byte: record keys are built on every load.
fn push_hex(s: &mut String, b: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for x in b {
        s.push(char::from(DIGITS[usize::from(x >> 4)]));
        s.push(char::from(DIGITS[usize::from(x & 0x0f)]));
    }
}

/// The hash tag of a resource's keys.
pub(crate) fn resource_tag(r: &Resource) -> String {
    let h = Sha256::new()
        .chain_update(b"leasehold/v1/resource\0")
        .chain_update(r.as_str().as_bytes())
        .finalize();
    format!("{:02x}{:02x}", h[0], h[1])
}

impl Keys {
    pub(crate) fn new(prefix: String) -> Self {
        Keys { prefix }
    }

    /// `P:<kind>:{tag}:<id hex>`, in one allocation.
    fn id_key(&self, kind: &str, id: &[u8]) -> String {
        let mut k = String::with_capacity(self.prefix.len() + kind.len() + 9 + 2 * id.len());
        k.push_str(&self.prefix);
        k.push(':');
        k.push_str(kind);
        k.push_str(":{");
        push_hex(&mut k, id.get(..2).unwrap_or(id));
        k.push_str("}:");
        push_hex(&mut k, id);
        k
    }

    /// The prefix (scripts compute same-slot keys from it).
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn session(&self, id: &SessionId) -> String {
        self.id_key("s", id.as_bytes())
    }

    pub(crate) fn subject_index(&self, subject: &Subject) -> String {
        let t = leasehold::ShardTag::of(subject).to_hex();
        format!("{}:u:{{{t}}}:{}", self.prefix, subject.as_str())
    }

    pub(crate) fn creation_log(&self, subject: &Subject) -> String {
        let t = leasehold::ShardTag::of(subject).to_hex();
        format!("{}:r:{{{t}}}:{}", self.prefix, subject.as_str())
    }

    pub(crate) fn ticket(&self, id: &TicketId) -> String {
        self.id_key("t", id.as_bytes())
    }

    pub(crate) fn slot(&self, id: &SlotId) -> String {
        self.id_key("l", id.as_bytes())
    }

    pub(crate) fn session_slots(&self, id: &SessionId) -> String {
        self.id_key("ls", id.as_bytes())
    }

    pub(crate) fn resource_members(&self, r: &Resource) -> String {
        format!("{}:m:{{{}}}:{}", self.prefix, resource_tag(r), r.as_str())
    }

    pub(crate) fn resource_slots(&self, r: &Resource) -> String {
        format!("{}:lr:{{{}}}:{}", self.prefix, resource_tag(r), r.as_str())
    }

    pub(crate) fn global(&self) -> String {
        format!("{}:g:{{global}}", self.prefix)
    }

    /// Marks a prefix whose sessions were (recently) created without the global index: a store
    /// opened with the index rebuilds it while this key exists.
    pub(crate) fn unindexed(&self) -> String {
        format!("{}:g:{{global}}:unindexed", self.prefix)
    }

    /// The `SCAN` pattern matching every session record of this prefix.
    pub(crate) fn record_pattern(&self) -> String {
        let mut p = self.pattern();
        p.pop();
        p.push_str("s:*");
        p
    }

    /// The `SCAN` pattern matching every key of this prefix (glob metacharacters escaped).
    pub(crate) fn pattern(&self) -> String {
        let mut p = String::new();
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                p.push('\\');
            }
            p.push(c);
        }
        p.push_str(":*");
        p
    }

    /// What a key of this prefix holds, from its name (`None`: not one of ours).
    pub(crate) fn classify(&self, key: &[u8]) -> Option<Held> {
        let rest = key
            .strip_prefix(self.prefix.as_bytes())?
            .strip_prefix(b":")?;
        let (kind, rest) = split_once(rest, b':')?;
        let id = || -> Option<[u8; 18]> {
            let (_, hexid) = split_once(rest, b':')?;
            let s = std::str::from_utf8(hexid).ok()?;
            SessionId::parse(s).map(|i| *i.as_bytes())
        };
        Some(match kind {
            b"s" => Held::Session(SessionId::from_bytes(id()?)),
            b"t" => Held::Ticket(TicketId::from_bytes(id()?)),
            b"l" => Held::Slot(SlotId::from_bytes(id()?)),
            _ => Held::Other,
        })
    }
}

fn split_once(s: &[u8], c: u8) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&b| b == c)?;
    Some((&s[..i], &s[i + 1..]))
}

/// What a key holds (from its name).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Held {
    Session(SessionId),
    Ticket(TicketId),
    Slot(SlotId),
    Other,
}

/// Checks a key prefix: non-empty, printable, no hash-tag braces, at most 64 bytes.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty() {
        return Err("the key prefix is empty");
    }
    if prefix.len() > 64 {
        return Err("the key prefix is longer than 64 bytes");
    }
    if prefix.contains(['{', '}']) {
        return Err(
            "the key prefix contains '{' or '}': a hash tag in the prefix would put every key in one slot",
        );
    }
    if prefix.chars().any(char::is_control) {
        return Err("the key prefix contains a control character");
    }
    Ok(())
}

/// The shard group of a session id: ids with the same tag share a Cluster slot.
pub(crate) fn group_of(id: &SessionId) -> [u8; 2] {
    let b = id.as_bytes();
    [b[0], b[1]]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_are_tagged_and_classified() {
        let k = Keys::new("lh".into());
        let s = Subject::new("alice").unwrap();
        let tag = leasehold::ShardTag::of(&s).to_hex();
        assert_eq!(k.subject_index(&s), format!("lh:u:{{{tag}}}:alice"));
        let id = SessionId::from_bytes([0xab; 18]);
        let key = k.session(&id);
        assert!(key.starts_with("lh:s:{abab}:abab"));
        let b: [u8; 18] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(9));
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let tag = &hex[..4];
        for (built, kind) in [
            (k.session(&SessionId::from_bytes(b)), "s"),
            (k.ticket(&TicketId::from_bytes(b)), "t"),
            (k.slot(&SlotId::from_bytes(b)), "l"),
            (k.session_slots(&SessionId::from_bytes(b)), "ls"),
        ] {
            assert_eq!(built, format!("lh:{kind}:{{{tag}}}:{hex}"));
        }
        assert_eq!(k.classify(key.as_bytes()), Some(Held::Session(id)));
        assert_eq!(k.classify(b"lh:g:{global}"), Some(Held::Other));
        assert_eq!(k.classify(b"other:s:x"), None);
        assert!(check_prefix("a{b").is_err());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("leasehold").is_ok());
        assert_eq!(Keys::new("a*b".into()).pattern(), "a\\*b:*");
        assert_eq!(Keys::new("a*b".into()).record_pattern(), "a\\*b:s:*");
        assert_eq!(k.classify(k.unindexed().as_bytes()), Some(Held::Other));
    }
}
