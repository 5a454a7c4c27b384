//! The Lua scripts, loaded from `adapters/redis/lua/*.lua` at compile time. Each script's
//! first line (`#!lua` with its flags) stays first; the shared helpers of `lua/prelude.lua`
//! are inserted right after it, so no helper is duplicated in the script files.

use redis::Script;

const PRELUDE: &str = include_str!("../lua/prelude.lua");

/// Builds one script: its `#!lua` line, the prelude, then its body. `first_line` replaces the
/// script's own first line when given (the allow-oom variant of `cas`).
fn build(src: &str, first_line: Option<&str>) -> Script {
    let (line, body) = src.split_once('\n').unwrap_or((src, ""));
    let retention = leasehold::TOMBSTONE_RETENTION.as_millis().to_string();
    let prelude = PRELUDE.replace("__RETENTION_MS__", &retention);
    Script::new(&format!(
        "{}\n{prelude}\n{body}",
        first_line.unwrap_or(line)
    ))
}

/// Every script, built once per store.
pub(crate) struct Scripts {
    pub(crate) load: Script,
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
    ("load", include_str!("../lua/load.lua")),
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
            load: b("load"),
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
}
