//! The commands GridKV answers, as `COMMAND` describes them: name, arity,
//! flags and key positions. [`Command::parse`](super::Command::parse)
//! checks arity here, so a command's arity is written once.

/// What `COMMAND` says of one command.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Spec {
    /// Lowercase name.
    pub name: &'static str,
    /// Arguments including the name; negative: at least that many.
    pub arity: i64,
    /// Redis's command flags.
    pub flags: &'static [&'static str],
    /// Position of the first key (0: none).
    pub first_key: i64,
    /// Position of the last key (-1: the last argument).
    pub last_key: i64,
    /// Step between keys.
    pub step: i64,
}

impl Spec {
    /// Whether `argc` arguments (name included) fit the arity.
    pub fn arity_fits(&self, argc: usize) -> bool {
        let argc = argc as i64;
        if self.arity < 0 {
            argc >= -self.arity
        } else {
            argc == self.arity
        }
    }
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
    }
}

const NO_KEYS: (i64, i64, i64) = (0, 0, 0);
const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);

/// Every command, in the order `COMMAND` lists them.
pub(crate) const COMMANDS: &[Spec] = &[
    spec("ping", -1, &["fast"], NO_KEYS),
    spec("echo", 2, &["fast"], NO_KEYS),
    spec("get", 2, &["readonly", "fast"], ONE_KEY),
    spec("set", -3, &["write"], ONE_KEY),
    spec("del", -2, &["write"], ALL_KEYS),
    spec("exists", -2, &["readonly", "fast"], ALL_KEYS),
    spec("expire", -3, &["write", "fast"], ONE_KEY),
    spec("pexpire", -3, &["write", "fast"], ONE_KEY),
    spec("ttl", 2, &["readonly", "fast"], ONE_KEY),
    spec("pttl", 2, &["readonly", "fast"], ONE_KEY),
    spec("persist", 2, &["write", "fast"], ONE_KEY),
    spec("mget", -2, &["readonly", "fast"], ALL_KEYS),
    spec("mset", -3, &["write"], (1, -1, 2)),
    spec("dbsize", 1, &["readonly", "fast"], NO_KEYS),
    spec("info", -1, &["loading", "stale"], NO_KEYS),
    spec("command", -1, &["loading", "stale"], NO_KEYS),
    spec("config", -2, &["admin", "loading", "stale"], NO_KEYS),
    spec("client", -2, &["loading", "stale"], NO_KEYS),
    spec("select", 2, &["loading", "stale", "fast"], NO_KEYS),
    spec(
        "hello",
        -1,
        &["fast", "loading", "stale", "no_auth"],
        NO_KEYS,
    ),
    spec("quit", -1, &["fast"], NO_KEYS),
    spec(
        "auth",
        -2,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        NO_KEYS,
    ),
    spec("acl", -2, &["loading", "stale"], NO_KEYS),
    spec("setnx", 3, &["write", "denyoom", "fast"], ONE_KEY),
    spec("setex", 4, &["write", "denyoom"], ONE_KEY),
    spec("psetex", 4, &["write", "denyoom"], ONE_KEY),
    spec("getdel", 2, &["write", "fast"], ONE_KEY),
    spec("getex", -2, &["write", "fast"], ONE_KEY),
    spec("append", 3, &["write", "denyoom", "fast"], ONE_KEY),
    spec("strlen", 2, &["readonly", "fast"], ONE_KEY),
    spec("type", 2, &["readonly", "fast"], ONE_KEY),
    spec("unlink", -2, &["write", "fast"], ALL_KEYS),
    spec("touch", -2, &["readonly", "fast"], ALL_KEYS),
    spec("expireat", -3, &["write", "fast"], ONE_KEY),
    spec("pexpireat", -3, &["write", "fast"], ONE_KEY),
    spec("expiretime", 2, &["readonly", "fast"], ONE_KEY),
    spec("pexpiretime", 2, &["readonly", "fast"], ONE_KEY),
    spec(
        "multi",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        NO_KEYS,
    ),
    spec(
        "exec",
        1,
        &["noscript", "loading", "stale", "skip_slowlog"],
        NO_KEYS,
    ),
    spec(
        "discard",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        NO_KEYS,
    ),
    spec(
        "watch",
        -2,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        ALL_KEYS,
    ),
    spec("flushall", -1, &["write"], NO_KEYS),
    spec("flushdb", -1, &["write"], NO_KEYS),
    spec("incr", 2, &["write", "denyoom", "fast"], ONE_KEY),
    spec("decr", 2, &["write", "denyoom", "fast"], ONE_KEY),
    spec("incrby", 3, &["write", "denyoom", "fast"], ONE_KEY),
    spec("decrby", 3, &["write", "denyoom", "fast"], ONE_KEY),
    spec("incrbyfloat", 3, &["write", "denyoom", "fast"], ONE_KEY),
    spec("scan", -2, &["readonly"], NO_KEYS),
    spec("keys", 2, &["readonly"], NO_KEYS),
    spec("gridkv.dbsize", 1, &["readonly"], NO_KEYS),
    spec(
        "gridkv.consistency",
        -1,
        &["fast", "loading", "stale"],
        NO_KEYS,
    ),
    spec(
        "unwatch",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        NO_KEYS,
    ),
];

/// The name of every command.
#[cfg(test)]
pub(crate) fn command_names() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().map(|c| c.name)
}

/// The command named `name`, in any case.
pub(crate) fn find(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|c| name.eq_ignore_ascii_case(c.name.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arity_is_exact_or_a_minimum() {
        let get = find(b"GeT").unwrap();
        assert!(get.arity_fits(2) && !get.arity_fits(1) && !get.arity_fits(3));
        let del = find(b"del").unwrap();
        assert!(del.arity_fits(2) && del.arity_fits(9) && !del.arity_fits(1));
        assert_eq!(find(b"nosuch"), None);
    }

    #[test]
    fn every_command_has_an_acl_entry_and_every_entry_a_command() {
        for name in command_names() {
            assert_ne!(crate::auth::of_command(name), 0, "{name} has no ACL entry");
        }
        for e in crate::auth::ENTRIES {
            assert!(
                command_names().any(|n| n == e.command()),
                "{} is not a command",
                e.name
            );
        }
    }
}
