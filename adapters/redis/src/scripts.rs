//! The Lua scripts, loaded from `adapters/redis/lua/*.lua` at compile time. Each script's
//! first line (`#!lua` with its flags) stays first; the shared helpers of `lua/prelude.lua`
//! are inserted right after it, so no helper is duplicated in the script files.

use redis::Script;

const PRELUDE: &str = include_str!("../lua/prelude.lua");

/// Builds one script: its `#!lua` line, the prelude's helpers it uses, then its body.
/// `first_line` replaces the script's own first line when given (the allow-oom variant of
/// `cas`).
fn build(src: &str, first_line: Option<&str>) -> Script {
    Script::new(&text(src, first_line))
}

/// The text [`build`] loads.
fn text(src: &str, first_line: Option<&str>) -> String {
    let (line, body) = src.split_once('\n').unwrap_or((src, ""));
    let retention = leasehold::TOMBSTONE_RETENTION.as_millis().to_string();
    let prelude = used_helpers(body).replace("__RETENTION_MS__", &retention);
    format!("{}\n{prelude}\n{body}", first_line.unwrap_or(line))
}

/// The prelude's top-level definitions (`local function f`, `local X =`) that `body` uses,
/// directly or through another helper, in the prelude's order. Redis runs a script's whole
/// chunk on every call, so each helper it carries is a closure made per call: the former load
/// script (`GET` and `TIME`, one helper; a load is a pipeline now) ran about 30 % slower with
/// the whole prelude (`redis-benchmark`, 32 clients: 76 k against 99 k calls/s; a plain `GET`,
/// 105 k).
fn used_helpers(body: &str) -> String {
    // Each item runs from a top-level `local` line to the next one (comments before a
    // definition belong to it).
    let mut items: Vec<(String, String)> = Vec::new();
    let mut pending = String::new();
    for line in PRELUDE.lines() {
        if let Some(rest) = line.strip_prefix("local ") {
            let rest = rest.strip_prefix("function ").unwrap_or(rest);
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            items.push((name, std::mem::take(&mut pending)));
        }
        let target = match items.last_mut() {
            Some((_, text)) if pending.is_empty() && !line.starts_with("--") => text,
            _ => &mut pending,
        };
        target.push_str(line);
        target.push('\n');
    }
    let mut used = vec![false; items.len()];
    let mut scan = vec![body.to_owned()];
    while let Some(text) = scan.pop() {
        for (i, (name, def)) in items.iter().enumerate() {
            if !used[i] && uses(&text, name) {
                used[i] = true;
                scan.push(def.clone());
            }
        }
    }
    items
        .into_iter()
        .zip(used)
        .filter_map(|((_, def), u)| u.then_some(def))
        .collect()
}

/// Whether `name` occurs in `text` as a whole identifier.
fn uses(text: &str, name: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// Every script, built once per store.
pub(crate) struct Scripts {
    pub(crate) insert: Script,
    pub(crate) cas: Script,
    pub(crate) cas_tombstone: Script,
    pub(crate) revoke_subject: Script,
    pub(crate) revoke_members: Script,
    pub(crate) index_snapshot: Script,
    pub(crate) index_reserve: Script,
    pub(crate) index_remove: Script,
    pub(crate) put_ticket: Script,
    pub(crate) take_ticket: Script,
    pub(crate) acquire_slot: Script,
    pub(crate) heartbeat_slot: Script,
    pub(crate) release_slot: Script,
    pub(crate) get_many: Script,
    pub(crate) list_subject: Script,
    pub(crate) reap_index: Script,
}

/// The source of every script file, by name (for the hygiene tests).
pub(crate) const SOURCES: &[(&str, &str)] = &[
    ("insert", include_str!("../lua/insert.lua")),
    ("cas", include_str!("../lua/cas.lua")),
    ("revoke_subject", include_str!("../lua/revoke_subject.lua")),
    ("revoke_members", include_str!("../lua/revoke_members.lua")),
    ("index_snapshot", include_str!("../lua/index_snapshot.lua")),
    ("index_reserve", include_str!("../lua/index_reserve.lua")),
    ("index_remove", include_str!("../lua/index_remove.lua")),
    ("put_ticket", include_str!("../lua/put_ticket.lua")),
    ("take_ticket", include_str!("../lua/take_ticket.lua")),
    ("acquire_slot", include_str!("../lua/acquire_slot.lua")),
    ("heartbeat_slot", include_str!("../lua/heartbeat_slot.lua")),
    ("release_slot", include_str!("../lua/release_slot.lua")),
    ("get_many", include_str!("../lua/get_many.lua")),
    ("list_subject", include_str!("../lua/list_subject.lua")),
    ("reap_index", include_str!("../lua/reap_index.lua")),
];

fn src(name: &str) -> &'static str {
    SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, s)| s)
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let b = |n: &str| build(src(n), None);
        Scripts {
            insert: b("insert"),
            cas: b("cas"),
            cas_tombstone: build(src("cas"), Some("#!lua flags=allow-oom")),
            revoke_subject: b("revoke_subject"),
            revoke_members: b("revoke_members"),
            index_snapshot: b("index_snapshot"),
            index_reserve: b("index_reserve"),
            index_remove: b("index_remove"),
            put_ticket: b("put_ticket"),
            take_ticket: b("take_ticket"),
            acquire_slot: b("acquire_slot"),
            heartbeat_slot: b("heartbeat_slot"),
            release_slot: b("release_slot"),
            get_many: b("get_many"),
            list_subject: b("list_subject"),
            reap_index: b("reap_index"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_starts_with_a_lua_line_and_defines_no_helper_of_the_prelude() {
        let helpers: Vec<&str> = PRELUDE
            .lines()
            .filter_map(|l| l.strip_prefix("local function "))
            .filter_map(|l| l.split('(').next())
            .collect();
        assert!(helpers.len() > 5);
        for (name, s) in SOURCES {
            assert!(s.starts_with("#!lua"), "{name} does not start with #!lua");
            for h in &helpers {
                assert!(
                    !s.contains(&format!("local function {h}(")),
                    "{name} redefines the prelude's {h}"
                );
            }
        }
        assert!(!PRELUDE.starts_with("#!"));
    }

    /// A script carries the helpers it calls and theirs, and no others.
    #[test]
    fn a_script_carries_only_the_helpers_it_uses() {
        let put = text(src("put_ticket"), None);
        assert!(put.contains("local function judged("), "{put}");
        assert!(!put.contains("local function header("), "{put}");
        let cas = text(src("cas"), None);
        for h in ["header", "u64", "due", "judged", "num"] {
            assert!(
                cas.contains(&format!("local function {h}(")),
                "cas lacks {h}"
            );
        }
        assert!(!cas.contains("local function quarantine("), "{cas}");
        // Definitions keep their comments and order, and the retention constant is filled in.
        let revoke = text(src("revoke_subject"), None);
        assert!(!revoke.contains("__RETENTION_MS__"));
        // Every helper any script needs is defined before the body uses it: the prelude's
        // order is kept, so a script's text is the prelude with whole items left out.
        for (name, source) in SOURCES {
            let t = text(source, None);
            let body = source.split_once('\n').map_or("", |(_, b)| b);
            assert!(t.ends_with(body), "{name}: body not last");
        }
    }
}
