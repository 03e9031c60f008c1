//! What an ACL grants commands by: one [`Entry`] per command, or per
//! subcommand for commands whose subcommands differ in danger (`ACL
//! WHOAMI` is harmless, `ACL LOAD` is not), each in the categories Redis 7
//! puts it in (`@read`, `@write`, `@admin`, `@connection`, `@fast`, ...).
//!
//! A user's command rights are a bit set over [`ENTRIES`]: `+@write`
//! sets the bit of every entry in `@write`, `-get` clears `get`'s.
//!
//! # Examples
//!
//! ```
//! use gridkv_server::auth::{Category, entry};
//!
//! let get = entry("get").unwrap();
//! assert!(get.is_in(Category::Read) && get.is_in(Category::Fast));
//! assert!(entry("acl|load").unwrap().is_in(Category::Admin));
//! assert!(!entry("acl|whoami").unwrap().is_in(Category::Admin));
//! ```

/// A command category, as Redis names them after `@`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Reads keys.
    Read,
    /// Writes keys.
    Write,
    /// Administers the node (settings, ACLs).
    Admin,
    /// Runs in constant time.
    Fast,
    /// Not `@fast`.
    Slow,
    /// About the connection itself.
    Connection,
    /// Touches keys whatever their type.
    Keyspace,
    /// String values.
    String,
    /// May harm the node or reveal what other users should not see.
    Dangerous,
    /// `MULTI`, `EXEC` and their kin.
    Transaction,
}

impl Category {
    /// Every category, as `ACL CAT` lists them.
    pub const ALL: [Category; 10] = [
        Category::Keyspace,
        Category::Read,
        Category::Write,
        Category::String,
        Category::Admin,
        Category::Fast,
        Category::Slow,
        Category::Dangerous,
        Category::Connection,
        Category::Transaction,
    ];

    /// The name after `@`.
    pub fn name(self) -> &'static str {
        match self {
            Category::Read => "read",
            Category::Write => "write",
            Category::Admin => "admin",
            Category::Fast => "fast",
            Category::Slow => "slow",
            Category::Connection => "connection",
            Category::Keyspace => "keyspace",
            Category::String => "string",
            Category::Dangerous => "dangerous",
            Category::Transaction => "transaction",
        }
    }

    /// The category named `name` (any case), if GridKV has it.
    pub fn parse(name: &str) -> Option<Category> {
        Category::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// One command (or subcommand, `acl|list`) as the ACL sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    /// `get`, or `command|subcommand`.
    pub name: &'static str,
    categories: u16,
}

impl Entry {
    /// Whether the entry is in `category`.
    pub fn is_in(&self, category: Category) -> bool {
        self.categories & category.bit() != 0
    }

    /// The command part of the name (`acl` of `acl|list`).
    pub fn command(&self) -> &'static str {
        self.name.split_once('|').map_or(self.name, |(c, _)| c)
    }
}

const fn e(name: &'static str, categories: &[Category]) -> Entry {
    let mut bits = 0;
    let mut i = 0;
    while i < categories.len() {
        bits |= categories[i].bit();
        i += 1;
    }
    Entry {
        name,
        categories: bits,
    }
}

use Category::{
    Admin, Connection, Dangerous, Fast, Keyspace, Read, Slow, String as Str, Transaction, Write,
};

/// Every command and subcommand GridKV answers, with Redis 7's
/// categories. A test checks that every command of the command table has
/// an entry here (`cmd::table`).
pub const ENTRIES: &[Entry] = &[
    e("ping", &[Fast, Connection]),
    e("echo", &[Fast, Connection]),
    e("get", &[Read, Str, Fast]),
    e("set", &[Write, Str, Slow]),
    e("del", &[Keyspace, Write, Slow]),
    e("exists", &[Keyspace, Read, Fast]),
    e("expire", &[Keyspace, Write, Fast]),
    e("pexpire", &[Keyspace, Write, Fast]),
    e("ttl", &[Keyspace, Read, Fast]),
    e("pttl", &[Keyspace, Read, Fast]),
    e("persist", &[Keyspace, Write, Fast]),
    e("mget", &[Read, Str, Fast]),
    e("mset", &[Write, Str, Slow]),
    e("dbsize", &[Keyspace, Read, Fast]),
    e("info", &[Slow, Dangerous]),
    e("command", &[Slow, Connection]),
    e("config|get", &[Admin, Slow, Dangerous]),
    e("client|setname", &[Slow, Connection]),
    e("client|getname", &[Slow, Connection]),
    e("client|id", &[Slow, Connection]),
    e("client|setinfo", &[Slow, Connection]),
    e("client|info", &[Slow, Connection]),
    e("select", &[Fast, Connection]),
    e("hello", &[Fast, Connection]),
    e("quit", &[Fast, Connection]),
    e("auth", &[Fast, Connection]),
    e("acl|whoami", &[Slow]),
    e("acl|cat", &[Slow]),
    e("acl|list", &[Admin, Slow, Dangerous]),
    e("acl|load", &[Admin, Slow, Dangerous]),
    e("setnx", &[Write, Str, Fast]),
    e("setex", &[Write, Str, Slow]),
    e("psetex", &[Write, Str, Slow]),
    e("getdel", &[Write, Str, Fast]),
    e("getex", &[Write, Str, Fast]),
    e("append", &[Write, Str, Fast]),
    e("strlen", &[Read, Str, Fast]),
    e("type", &[Keyspace, Read, Fast]),
    e("unlink", &[Keyspace, Write, Fast]),
    e("touch", &[Keyspace, Read, Fast]),
    e("expireat", &[Keyspace, Write, Fast]),
    e("pexpireat", &[Keyspace, Write, Fast]),
    e("expiretime", &[Keyspace, Read, Fast]),
    e("pexpiretime", &[Keyspace, Read, Fast]),
    e("multi", &[Fast, Transaction]),
    e("exec", &[Slow, Transaction]),
    e("discard", &[Fast, Transaction]),
    e("watch", &[Fast, Transaction]),
    e("unwatch", &[Fast, Transaction]),
    e("flushall", &[Keyspace, Write, Slow, Dangerous]),
    e("flushdb", &[Keyspace, Write, Slow, Dangerous]),
    e("incr", &[Write, Str, Fast]),
    e("decr", &[Write, Str, Fast]),
    e("incrby", &[Write, Str, Fast]),
    e("decrby", &[Write, Str, Fast]),
    e("incrbyfloat", &[Write, Str, Fast]),
    e("scan", &[Keyspace, Read, Slow]),
    e("keys", &[Keyspace, Read, Slow, Dangerous]),
    e("gridkv.dbsize", &[Keyspace, Read, Slow]),
    e("gridkv.consistency", &[Fast, Connection]),
];

/// A set of [`ENTRIES`], by index.
pub type EntrySet = u128;

const _: () = assert!(ENTRIES.len() <= EntrySet::BITS as usize);

/// Every entry.
pub const ALL_ENTRIES: EntrySet = if ENTRIES.len() == EntrySet::BITS as usize {
    EntrySet::MAX
} else {
    (1 << ENTRIES.len()) - 1
};

/// The index in [`ENTRIES`] of `name` (`get`, `acl|list`; any case).
pub fn index(name: &str) -> Option<usize> {
    ENTRIES
        .iter()
        .position(|e| e.name.eq_ignore_ascii_case(name))
}

/// The index in [`ENTRIES`] of `name`, exactly as written there, at
/// compile time: `const { position("get") }` (a name not in the table
/// fails the build).
pub const fn position(name: &str) -> usize {
    let mut i = 0;
    while i < ENTRIES.len() {
        let (a, b) = (ENTRIES[i].name.as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("no ACL entry of that name")
}

/// The entry named `name`.
pub fn entry(name: &str) -> Option<&'static Entry> {
    index(name).map(|i| &ENTRIES[i])
}

/// The entries in `category`.
pub fn in_category(category: Category) -> EntrySet {
    set_of(|e| e.is_in(category))
}

/// The entries of command `name`: the command itself, or all its
/// subcommands (`acl` is `acl|whoami`, `acl|list`, ...); empty if GridKV
/// has no such command.
pub fn of_command(name: &str) -> EntrySet {
    set_of(|e| e.command().eq_ignore_ascii_case(name))
}

fn set_of(pick: impl Fn(&Entry) -> bool) -> EntrySet {
    ENTRIES
        .iter()
        .enumerate()
        .filter(|(_, e)| pick(e))
        .fold(0, |set, (i, _)| set | 1 << i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_fast_or_slow() {
        for e in ENTRIES {
            assert!(e.is_in(Fast) != e.is_in(Slow), "{}: fast or slow", e.name);
            assert_eq!(index(e.name), Some(position(e.name)));
        }
        assert_eq!(ALL_ENTRIES.count_ones() as usize, ENTRIES.len());
    }

    #[test]
    fn categories_as_redis_puts_them() {
        let names = |set: EntrySet| -> Vec<&str> {
            ENTRIES
                .iter()
                .enumerate()
                .filter(|(i, _)| set & 1 << i != 0)
                .map(|(_, e)| e.name)
                .collect()
        };
        assert_eq!(
            names(in_category(Read)),
            [
                "get",
                "exists",
                "ttl",
                "pttl",
                "mget",
                "dbsize",
                "strlen",
                "type",
                "touch",
                "expiretime",
                "pexpiretime",
                "scan",
                "keys",
                "gridkv.dbsize"
            ]
        );
        assert_eq!(
            names(in_category(Write)),
            [
                "set",
                "del",
                "expire",
                "pexpire",
                "persist",
                "mset",
                "setnx",
                "setex",
                "psetex",
                "getdel",
                "getex",
                "append",
                "unlink",
                "expireat",
                "pexpireat",
                "flushall",
                "flushdb",
                "incr",
                "decr",
                "incrby",
                "decrby",
                "incrbyfloat"
            ]
        );
        assert_eq!(
            names(in_category(Transaction)),
            ["multi", "exec", "discard", "watch", "unwatch"]
        );
        assert_eq!(
            names(in_category(Admin)),
            ["config|get", "acl|list", "acl|load"]
        );
        assert_eq!(names(of_command("ACL")).len(), 4);
        assert_eq!(of_command("nosuch"), 0);
        assert_eq!(Category::parse("WRITE"), Some(Write));
        assert_eq!(Category::parse("pubsub"), None);
        assert_eq!(entry("acl|list").unwrap().command(), "acl");
    }
}
