//! The Redis commands GridKV answers, run against the node's quorum API.
//!
//! Reads and writes use the node's N/W/R. A failed operation becomes an
//! error reply whose first word says what happened, so clients can tell
//! them apart:
//!
//! | reply | meaning |
//! |---|---|
//! | `-NOQUORUM ...` | too few owners answered (reads) or applied (writes); a failed write is indeterminate: it may have reached some owners and appear later |
//! | `-TIMEOUT ...` | the deadline passed first (also indeterminate for writes) |
//! | `-BUSY ...` | owners are overloaded: retry later |
//! | `-SHUTDOWN ...` | the node is leaving |
//! | `-TRYAGAIN ...` | the node does not serve yet (not joined, the cluster still forming, or fewer ring members than W and R need) and did not within the command's deadline; or a write meets a hold on this node's clock: `restart barrier: ... N ms left at most` (it restarted moments ago) or `clock offset: ... +N ms from the cluster's median` (its clock is beyond the bound; it still serves reads). Nothing was read or written: retry, or write through another node |
//! | `-ERR ...` | a bad command, key or value (nothing was stored) |
//! | `-NOAUTH ...`, `-NOPERM ...`, `-WRONGPASS ...` | not logged in, not allowed (the command or a key), or a failed `AUTH`: see `gate` and [`crate::auth`] |
//!
//! Commands that touch several keys (`DEL`, `EXISTS`, `MGET`, `MSET`) run
//! the keys concurrently; if any key fails the whole reply is an error
//! that says how many keys failed and why the first one did (the writes
//! that succeeded stay written).
//!
//! `SET ... NX|XX|GET`, `SETNX`, `GETDEL`, `GETEX` and the expiry commands
//! are read-modify-writes that apply to the state they read (see the
//! library's `GridKv::set_if_absent`). Not supported, with a clear error:
//! `APPEND` (a failed one could bring a deleted value back), `SET ...
//! KEEPTTL`, `EXPIRE ... NX|XX|GT|LT` and `WATCH`. `MULTI`/`EXEC` is an
//! ordered batch, not a transaction (`multi`).
//!
//! A command is a [`Command`]: [`Command::parse`] reads it from the
//! frame's arguments without touching the node (a refusal is a typed
//! [`ParseError`]), and [`Command::apply`] runs it and returns its
//! [`Reply`], which the server writes in the connection's protocol. One
//! file per command or small family: `get` (GET, MGET), `set` (SET,
//! MSET, SETNX, SETEX, PSETEX), `strings` (GETDEL, GETEX, STRLEN, TYPE),
//! `del` (DEL, EXISTS, UNLINK, TOUCH), `expire` (EXPIRE, PEXPIRE, EXPIREAT,
//! PEXPIREAT, TTL, PTTL, EXPIRETIME, PEXPIRETIME, PERSIST), `multi`
//! (MULTI, EXEC, DISCARD), `connection` (PING, ECHO, SELECT), `hello`, `client`, `info`
//! (INFO, DBSIZE), `config`, `command`, `auth` (AUTH, ACL), `consistency`
//! (GRIDKV.CONSISTENCY: a connection's consistency level). Before it runs,
//! a command passes the `gate`: is the client logged in, and may its user
//! run it on these keys (see [`crate::auth`])?
//!
//! # Examples
//!
//! ```
//! use bytes::Bytes;
//! use gridkv_server::cmd::{Command, ParseError};
//!
//! let frame = |words: &[&str]| words.iter().map(|w| Bytes::from(w.to_string())).collect();
//! let get = Command::parse(frame(&["get", "user:1"])).unwrap();
//! assert_eq!(get.key(), Some(&b"user:1"[..]));
//! assert_eq!(Command::parse(frame(&["GET"])), Err(ParseError::Arity("get")));
//! ```

mod args;
mod auth;
mod client;
mod command;
mod config;
mod connection;
mod consistency;
mod del;
mod error;
mod expire;
mod gate;
mod get;
mod hello;
mod incr;
mod info;
mod many;
pub(crate) mod multi;
mod scan;
mod set;
mod strings;
mod table;

use bytes::Bytes;

pub use auth::{Acl, Auth};
pub use client::{Client, LibAttr};
pub use command::Commands;
pub use config::ConfigGet;
pub use connection::Ping;
pub use consistency::SetConsistency;
pub use del::{Del, Exists};
pub use error::{ParseError, error_reply};
pub use expire::{Expire, ExpireAt, ExpireTime, Persist, Ttl, Unit};
pub use get::{Get, MGet};
pub use hello::Hello;
pub use incr::Incr;
pub use info::Info;
pub use multi::{MAX_QUEUED, MAX_QUEUED_BYTES, Transaction};
pub use scan::{Keys, MAX_KEYS, Scan};
pub use set::{MSet, Set, SetExpiry, SetIf};
pub use strings::{Describe, GetDel, GetEx, KeyInfo};

pub(crate) use gate::{authorize, parse as parse_gated};

use crate::resp::Reply;
use crate::session::Session;
use crate::shared::Shared;

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `GET key`.
    Get(Get),
    /// `MGET key...`.
    MGet(MGet),
    /// `SET key value [EX s | PX ms]`.
    Set(Set),
    /// `MSET key value...`.
    MSet(MSet),
    /// `DEL key...`.
    Del(Del),
    /// `EXISTS key...`.
    Exists(Exists),
    /// `EXPIRE`/`PEXPIRE key n`.
    Expire(Expire),
    /// `TTL`/`PTTL key`.
    Ttl(Ttl),
    /// `PERSIST key`.
    Persist(Persist),
    /// `PING [message]`.
    Ping(Ping),
    /// `ECHO message`.
    Echo(Bytes),
    /// `SELECT 0`.
    Select,
    /// `DBSIZE`.
    DbSize,
    /// `INFO [section]`.
    Info(Info),
    /// `COMMAND ...`.
    Commands(Commands),
    /// `CONFIG GET pattern...`.
    Config(ConfigGet),
    /// `CLIENT ...`.
    Client(Client),
    /// `HELLO ...`.
    Hello(Hello),
    /// `QUIT`: answer OK, then close the connection.
    Quit,
    /// `AUTH [username] password`.
    Auth(Auth),
    /// `ACL WHOAMI|LIST|LOAD|CAT`.
    Acl(Acl),
    /// `SETNX key value`.
    SetNx(Set),
    /// `SETEX key seconds value`.
    SetEx(Set),
    /// `PSETEX key ms value`.
    PSetEx(Set),
    /// `GETDEL key`.
    GetDel(GetDel),
    /// `GETEX key [EX|PX|EXAT|PXAT n | PERSIST]`.
    GetEx(GetEx),
    /// `STRLEN key` or `TYPE key`.
    KeyInfo(KeyInfo),
    /// `UNLINK key...`: `DEL`.
    Unlink(Del),
    /// `TOUCH key...`: how many exist.
    Touch(Exists),
    /// `EXPIREAT`/`PEXPIREAT key time`.
    ExpireAt(ExpireAt),
    /// `EXPIRETIME`/`PEXPIRETIME key`.
    ExpireTime(ExpireTime),
    /// `MULTI`.
    Multi,
    /// `EXEC`.
    Exec,
    /// `DISCARD`.
    Discard,
    /// `UNWATCH`.
    Unwatch,
    /// `SCAN cursor [MATCH p] [COUNT n] [TYPE t]`.
    Scan(Scan),
    /// `KEYS pattern`.
    Keys(Keys),
    /// `GRIDKV.DBSIZE`: the cluster's key count.
    ClusterDbSize,
    /// `GRIDKV.CONSISTENCY [level|DEFAULT]`.
    Consistency(SetConsistency),
    /// `FLUSHALL [ASYNC|SYNC]`.
    FlushAll,
    /// `FLUSHDB [ASYNC|SYNC]` (one database: the same).
    FlushDb,
    /// `INCR key`.
    Incr(Incr),
    /// `DECR key`.
    Decr(Incr),
    /// `INCRBY key n`.
    IncrBy(Incr),
    /// `DECRBY key n`.
    DecrBy(Incr),
}

impl Command {
    /// Reads a command from a frame's arguments (name first).
    ///
    /// # Errors
    ///
    /// [`ParseError`] for an unknown command, a wrong number of arguments,
    /// or an argument or option the command refuses.
    pub fn parse(args: Vec<Bytes>) -> Result<Command, ParseError> {
        let Some(name) = args.first() else {
            return Err(ParseError::UnknownCommand(String::new()));
        };
        let Some(spec) = table::find(name) else {
            let shown: String = String::from_utf8_lossy(name).chars().take(64).collect();
            return Err(ParseError::UnknownCommand(shown));
        };
        if !spec.arity_fits(args.len()) {
            return Err(ParseError::Arity(spec.name));
        }
        Ok(match spec.name {
            "get" => Command::Get(Get::parse(args)),
            "mget" => Command::MGet(MGet::parse(args)),
            "set" => Command::Set(Set::parse(args)?),
            "mset" => Command::MSet(MSet::parse(args)?),
            "del" => Command::Del(Del::parse(args)),
            "exists" => Command::Exists(Exists::parse(args)),
            "expire" => Command::Expire(Expire::parse(args, Unit::Seconds)?),
            "pexpire" => Command::Expire(Expire::parse(args, Unit::Millis)?),
            "ttl" => Command::Ttl(Ttl::parse(args, Unit::Seconds)),
            "pttl" => Command::Ttl(Ttl::parse(args, Unit::Millis)),
            "persist" => Command::Persist(Persist::parse(args)),
            "ping" => Command::Ping(Ping::parse(args)?),
            "echo" => Command::Echo(connection::parse_echo(args)),
            "select" => {
                connection::parse_select(&args)?;
                Command::Select
            }
            "dbsize" => Command::DbSize,
            "info" => Command::Info(Info::parse(args)),
            "command" => Command::Commands(Commands::parse(args)?),
            "config" => Command::Config(ConfigGet::parse(args)?),
            "client" => Command::Client(Client::parse(args)?),
            "hello" => Command::Hello(Hello::parse(args)?),
            "quit" => Command::Quit,
            "auth" => Command::Auth(Auth::parse(args)?),
            "acl" => Command::Acl(Acl::parse(args)?),
            "setnx" => Command::SetNx(Set::parse_setnx(args)),
            "setex" => Command::SetEx(Set::parse_setex(args, false)?),
            "psetex" => Command::PSetEx(Set::parse_setex(args, true)?),
            "getdel" => Command::GetDel(GetDel::parse(args)),
            "getex" => Command::GetEx(GetEx::parse(args)?),
            "append" => return Err(strings::append_refused()),
            "strlen" => Command::KeyInfo(KeyInfo::parse(args, Describe::Len)),
            "type" => Command::KeyInfo(KeyInfo::parse(args, Describe::Type)),
            "unlink" => Command::Unlink(Del::parse(args)),
            "touch" => Command::Touch(Exists::parse(args)),
            "expireat" => Command::ExpireAt(ExpireAt::parse(args, Unit::Seconds)?),
            "pexpireat" => Command::ExpireAt(ExpireAt::parse(args, Unit::Millis)?),
            "expiretime" => Command::ExpireTime(ExpireTime::parse(args, Unit::Seconds)),
            "pexpiretime" => Command::ExpireTime(ExpireTime::parse(args, Unit::Millis)),
            "multi" => Command::Multi,
            "exec" => Command::Exec,
            "discard" => Command::Discard,
            "watch" => return Err(multi::watch_refused()),
            "unwatch" => Command::Unwatch,
            "scan" => Command::Scan(Scan::parse(args)?),
            "keys" => Command::Keys(Keys::parse(args)?),
            "gridkv.dbsize" => Command::ClusterDbSize,
            "gridkv.consistency" => Command::Consistency(SetConsistency::parse(&args)?),
            "flushall" => {
                scan::parse_flush(&args)?;
                Command::FlushAll
            }
            "flushdb" => {
                scan::parse_flush(&args)?;
                Command::FlushDb
            }
            "incr" => Command::Incr(Incr::parse(args, Some(1), false)?),
            "decr" => Command::Decr(Incr::parse(args, Some(-1), false)?),
            "incrby" => Command::IncrBy(Incr::parse(args, None, false)?),
            "decrby" => Command::DecrBy(Incr::parse(args, None, true)?),
            "incrbyfloat" => return Err(incr::incrbyfloat_refused()),
            other => unreachable!("{other} is in the table but not parsed"),
        })
    }

    /// The key, for a command that touches exactly one (`GET`, `SET`,
    /// `EXPIRE`, ..., and `DEL`/`EXISTS` of one key). The server may run
    /// such commands on distinct keys of a pipeline concurrently (see
    /// [`PipelineOrder`](crate::server::PipelineOrder)).
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Command::Get(c) => Some(&c.key),
            Command::Set(c) => Some(&c.key),
            Command::Expire(c) => Some(&c.key),
            Command::Ttl(c) => Some(&c.key),
            Command::Persist(c) => Some(&c.key),
            Command::SetNx(c) | Command::SetEx(c) | Command::PSetEx(c) => Some(&c.key),
            Command::GetDel(c) => Some(&c.key),
            Command::GetEx(c) => Some(&c.key),
            Command::KeyInfo(c) => Some(&c.key),
            Command::ExpireAt(c) => Some(&c.key),
            Command::ExpireTime(c) => Some(&c.key),
            Command::Incr(c) | Command::Decr(c) | Command::IncrBy(c) | Command::DecrBy(c) => {
                Some(&c.key)
            }
            Command::Del(Del { keys })
            | Command::Exists(Exists { keys })
            | Command::Unlink(Del { keys })
            | Command::Touch(Exists { keys })
                if keys.len() == 1 =>
            {
                Some(&keys[0])
            }
            _ => None,
        }
    }

    /// Calls `allowed` with each key the command names, in order, until it
    /// answers `false`; whether it answered `true` for all (commands with
    /// no key: `true`). `MSET`'s values are not keys.
    pub fn all_keys(&self, mut allowed: impl FnMut(&[u8]) -> bool) -> bool {
        match self {
            Command::Get(Get { key })
            | Command::Set(Set { key, .. })
            | Command::Expire(Expire { key, .. })
            | Command::Ttl(Ttl { key, .. })
            | Command::Persist(Persist { key })
            | Command::SetNx(Set { key, .. })
            | Command::SetEx(Set { key, .. })
            | Command::PSetEx(Set { key, .. })
            | Command::GetDel(GetDel { key })
            | Command::GetEx(GetEx { key, .. })
            | Command::KeyInfo(KeyInfo { key, .. })
            | Command::ExpireAt(ExpireAt { key, .. })
            | Command::ExpireTime(ExpireTime { key, .. })
            | Command::Incr(Incr { key, .. })
            | Command::Decr(Incr { key, .. })
            | Command::IncrBy(Incr { key, .. })
            | Command::DecrBy(Incr { key, .. }) => allowed(key),
            Command::MGet(MGet { keys })
            | Command::Del(Del { keys })
            | Command::Unlink(Del { keys })
            | Command::Touch(Exists { keys })
            | Command::Exists(Exists { keys }) => keys.iter().all(|k| allowed(k)),
            Command::MSet(MSet { pairs }) => pairs.iter().all(|(k, _)| allowed(k)),
            Command::Ping(_)
            | Command::Echo(_)
            | Command::Select
            | Command::DbSize
            | Command::Info(_)
            | Command::Commands(_)
            | Command::Config(_)
            | Command::Client(_)
            | Command::Hello(_)
            | Command::Quit
            | Command::Auth(_)
            | Command::Acl(_)
            | Command::Multi
            | Command::Exec
            | Command::Discard
            | Command::Unwatch
            | Command::ClusterDbSize
            | Command::Consistency(_)
            | Command::FlushAll
            | Command::FlushDb => true,
            // Keys are not named: they are what the walk finds. A user
            // limited to some keys may not walk them all.
            Command::Scan(_) | Command::Keys(_) => allowed(b"*"),
        }
    }

    /// The command's index in the ACL's [`ENTRIES`](crate::auth::ENTRIES):
    /// what a user needs the right of to run it.
    pub fn acl_entry(&self) -> usize {
        use crate::auth::position as at;
        match self {
            Command::Get(_) => const { at("get") },
            Command::MGet(_) => const { at("mget") },
            Command::Set(_) => const { at("set") },
            Command::MSet(_) => const { at("mset") },
            Command::Del(_) => const { at("del") },
            Command::Exists(_) => const { at("exists") },
            Command::Expire(Expire {
                unit: Unit::Seconds,
                ..
            }) => const { at("expire") },
            Command::Expire(_) => const { at("pexpire") },
            Command::Ttl(Ttl {
                unit: Unit::Seconds,
                ..
            }) => const { at("ttl") },
            Command::Ttl(_) => const { at("pttl") },
            Command::Persist(_) => const { at("persist") },
            Command::Ping(_) => const { at("ping") },
            Command::Echo(_) => const { at("echo") },
            Command::Select => const { at("select") },
            Command::DbSize => const { at("dbsize") },
            Command::Info(_) => const { at("info") },
            Command::Commands(_) => const { at("command") },
            Command::Config(_) => const { at("config|get") },
            Command::Client(Client::SetName(_)) => const { at("client|setname") },
            Command::Client(Client::GetName) => const { at("client|getname") },
            Command::Client(Client::Id) => const { at("client|id") },
            Command::Client(Client::SetInfo(..)) => const { at("client|setinfo") },
            Command::Client(Client::Info) => const { at("client|info") },
            Command::Hello(_) => const { at("hello") },
            Command::Quit => const { at("quit") },
            Command::Auth(_) => const { at("auth") },
            Command::Acl(Acl::WhoAmI) => const { at("acl|whoami") },
            Command::Acl(Acl::List) => const { at("acl|list") },
            Command::Acl(Acl::Load) => const { at("acl|load") },
            Command::Acl(Acl::Cat(_)) => const { at("acl|cat") },
            Command::SetNx(_) => const { at("setnx") },
            Command::SetEx(_) => const { at("setex") },
            Command::PSetEx(_) => const { at("psetex") },
            Command::GetDel(_) => const { at("getdel") },
            Command::GetEx(_) => const { at("getex") },
            Command::KeyInfo(KeyInfo {
                what: Describe::Len,
                ..
            }) => const { at("strlen") },
            Command::KeyInfo(_) => const { at("type") },
            Command::Unlink(_) => const { at("unlink") },
            Command::Touch(_) => const { at("touch") },
            Command::ExpireAt(ExpireAt {
                unit: Unit::Seconds,
                ..
            }) => const { at("expireat") },
            Command::ExpireAt(_) => const { at("pexpireat") },
            Command::ExpireTime(ExpireTime {
                unit: Unit::Seconds,
                ..
            }) => const { at("expiretime") },
            Command::ExpireTime(_) => const { at("pexpiretime") },
            Command::Multi => const { at("multi") },
            Command::Exec => const { at("exec") },
            Command::Discard => const { at("discard") },
            Command::Unwatch => const { at("unwatch") },
            Command::Scan(_) => const { at("scan") },
            Command::Keys(_) => const { at("keys") },
            Command::ClusterDbSize => const { at("gridkv.dbsize") },
            Command::Consistency(_) => const { at("gridkv.consistency") },
            Command::FlushAll => const { at("flushall") },
            Command::FlushDb => const { at("flushdb") },
            Command::Incr(_) => const { at("incr") },
            Command::Decr(_) => const { at("decr") },
            Command::IncrBy(_) => const { at("incrby") },
            Command::DecrBy(_) => const { at("decrby") },
        }
    }

    /// Whether the connection closes once the reply is written (`QUIT`).
    pub fn closes(&self) -> bool {
        matches!(self, Command::Quit)
    }

    /// Runs the command against the node and returns its reply.
    pub async fn apply(self, shared: &Shared, session: &mut Session) -> Reply {
        let levelled;
        let node = match session.consistency {
            None => &shared.node,
            Some(level) => {
                levelled = shared.node.with_consistency(level);
                &levelled
            }
        };
        match self {
            Command::Get(c) => c.apply(node).await,
            Command::MGet(c) => c.apply(node).await,
            Command::Set(c) => c.apply(node).await,
            Command::MSet(c) => c.apply(node).await,
            Command::Del(c) => c.apply(node).await,
            Command::Exists(c) => c.apply(node).await,
            Command::Expire(c) => c.apply(node).await,
            Command::Ttl(c) => c.apply(node).await,
            Command::Persist(c) => c.apply(node).await,
            Command::Ping(c) => c.apply(),
            Command::Echo(message) => Reply::Bulk(message),
            Command::Select | Command::Quit => Reply::ok(),
            Command::DbSize => info::dbsize(shared),
            Command::Info(c) => c.apply(shared),
            Command::Commands(c) => c.apply(),
            Command::Config(c) => c.apply(shared),
            Command::Client(c) => c.apply(session),
            Command::Hello(c) => c.apply(&node.id().to_string(), &shared.acl, session),
            Command::Auth(c) => c.apply(&shared.acl, session),
            Command::Acl(c) => c.apply(&shared.acl, session),
            Command::SetNx(c) | Command::SetEx(c) | Command::PSetEx(c) => c.apply(node).await,
            Command::GetDel(c) => c.apply(node).await,
            Command::GetEx(c) => c.apply(node).await,
            Command::KeyInfo(c) => c.apply(node).await,
            Command::Unlink(c) => c.apply(node).await,
            Command::Touch(c) => c.apply(node).await,
            Command::ExpireAt(c) => c.apply(node).await,
            Command::ExpireTime(c) => c.apply(node).await,
            Command::Multi => multi::multi(session),
            Command::Exec => multi::exec(shared, session).await,
            Command::Discard => multi::discard(session),
            Command::Unwatch => Reply::ok(),
            Command::Scan(c) => c.apply(node).await,
            Command::Keys(c) => c.apply(node).await,
            Command::ClusterDbSize => scan::cluster_dbsize(node).await,
            Command::Consistency(c) => c.apply(node, session),
            Command::Incr(c) | Command::Decr(c) | Command::IncrBy(c) | Command::DecrBy(c) => {
                c.apply(node).await
            }
            Command::FlushAll | Command::FlushDb => scan::flush(node).await,
        }
    }
}

impl From<ParseError> for Reply {
    fn from(e: ParseError) -> Reply {
        Reply::Error(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(words: &[&str]) -> Result<Command, ParseError> {
        Command::parse(
            words
                .iter()
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect(),
        )
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn every_command_parses() {
        let cases: Vec<(&[&str], Command)> = vec![
            (&["GET", "k"], Command::Get(Get { key: b("k") })),
            (
                &["mget", "a", "b"],
                Command::MGet(MGet {
                    keys: vec![b("a"), b("b")],
                }),
            ),
            (
                &["SET", "k", "v", "PX", "5"],
                Command::Set(Set {
                    key: b("k"),
                    value: b("v"),
                    expiry: Some(SetExpiry::In(Duration::from_millis(5))),
                    only_if: SetIf::Always,
                    get: false,
                    integer_reply: false,
                }),
            ),
            (
                &["MSET", "a", "1"],
                Command::MSet(MSet {
                    pairs: vec![(b("a"), b("1"))],
                }),
            ),
            (
                &["DEL", "a", "b"],
                Command::Del(Del {
                    keys: vec![b("a"), b("b")],
                }),
            ),
            (
                &["EXISTS", "a"],
                Command::Exists(Exists { keys: vec![b("a")] }),
            ),
            (
                &["EXPIRE", "k", "10"],
                Command::Expire(Expire {
                    key: b("k"),
                    amount: 10,
                    unit: Unit::Seconds,
                }),
            ),
            (
                &["PEXPIRE", "k", "-1"],
                Command::Expire(Expire {
                    key: b("k"),
                    amount: -1,
                    unit: Unit::Millis,
                }),
            ),
            (
                &["TTL", "k"],
                Command::Ttl(Ttl {
                    key: b("k"),
                    unit: Unit::Seconds,
                }),
            ),
            (
                &["PTTL", "k"],
                Command::Ttl(Ttl {
                    key: b("k"),
                    unit: Unit::Millis,
                }),
            ),
            (&["PERSIST", "k"], Command::Persist(Persist { key: b("k") })),
            (&["PING"], Command::Ping(Ping { message: None })),
            (
                &["ping", "hi"],
                Command::Ping(Ping {
                    message: Some(b("hi")),
                }),
            ),
            (&["ECHO", "x"], Command::Echo(b("x"))),
            (&["SELECT", "0"], Command::Select),
            (&["DBSIZE"], Command::DbSize),
            (&["INFO"], Command::Info(Info { section: None })),
            (
                &["INFO", "memory"],
                Command::Info(Info {
                    section: Some(b("memory")),
                }),
            ),
            (&["COMMAND"], Command::Commands(Commands::All)),
            (&["COMMAND", "count"], Command::Commands(Commands::Count)),
            (
                &["COMMAND", "INFO", "get"],
                Command::Commands(Commands::Info(vec![b("get")])),
            ),
            (&["COMMAND", "DOCS"], Command::Commands(Commands::Docs)),
            (
                &["CONFIG", "GET", "*"],
                Command::Config(ConfigGet {
                    patterns: vec![b("*")],
                }),
            ),
            (&["CLIENT", "ID"], Command::Client(Client::Id)),
            (
                &["HELLO", "3"],
                Command::Hello(Hello {
                    protocol: Some(crate::resp::Protocol::Resp3),
                    auth: None,
                    name: None,
                }),
            ),
            (&["QUIT"], Command::Quit),
        ];
        for (words, want) in cases {
            assert_eq!(parse(words), Ok(want), "{words:?}");
        }
    }

    #[test]
    fn arity_errors_name_the_command() {
        for (words, name) in [
            (&["GET"][..], "get"),
            (&["get", "a", "b"], "get"),
            (&["SET", "k"], "set"),
            (&["DEL"], "del"),
            (&["EXISTS"], "exists"),
            (&["MGET"], "mget"),
            (&["MSET", "a"], "mset"),
            (&["MSET", "a", "1", "b"], "mset"),
            (&["EXPIRE", "k"], "expire"),
            (&["PEXPIRE", "k"], "pexpire"),
            (&["TTL"], "ttl"),
            (&["PTTL", "a", "b"], "pttl"),
            (&["PERSIST"], "persist"),
            (&["PING", "a", "b"], "ping"),
            (&["ECHO"], "echo"),
            (&["SELECT"], "select"),
            (&["DBSIZE", "x"], "dbsize"),
            (&["CONFIG"], "config"),
            (&["CLIENT"], "client"),
        ] {
            assert_eq!(parse(words), Err(ParseError::Arity(name)), "{words:?}");
        }
    }

    #[test]
    fn unknown_commands_and_refusals() {
        assert_eq!(
            parse(&["FLUSHEVERYTHING"]),
            Err(ParseError::UnknownCommand("FLUSHEVERYTHING".into()))
        );
        assert_eq!(parse(&["FLUSHALL", "ASYNC"]), Ok(Command::FlushAll));
        assert_eq!(parse(&["FLUSHDB", "LATER"]), Err(ParseError::Syntax));
        let long = "x".repeat(100);
        assert_eq!(
            parse(&[&long]),
            Err(ParseError::UnknownCommand("x".repeat(64)))
        );
        assert_eq!(
            parse(&["EXPIRE", "k", "10", "NX"]),
            Err(ParseError::ConditionalExpire)
        );
        assert_eq!(parse(&["EXPIRE", "k", "ten"]), Err(ParseError::NotInteger));
        assert!(
            parse(&["SELECT", "1"])
                .unwrap_err()
                .to_string()
                .starts_with("ERR DB index is out of range")
        );
        assert_eq!(
            parse(&["COMMAND", "BOGUS"]).unwrap_err().to_string(),
            "ERR unknown subcommand of 'command'"
        );
    }

    #[test]
    fn every_command_with_keys_shows_each_of_them() {
        // One line per command of the table that has keys (first_key > 0).
        let lines: &[&[&str]] = &[
            &["GET", "k"],
            &["SET", "k", "v"],
            &["DEL", "a", "k"],
            &["EXISTS", "a", "k"],
            &["EXPIRE", "k", "1"],
            &["PEXPIRE", "k", "1"],
            &["TTL", "k"],
            &["PTTL", "k"],
            &["PERSIST", "k"],
            &["MGET", "a", "k"],
            &["MSET", "a", "1", "k", "2"],
            &["SETNX", "k", "v"],
            &["SETEX", "k", "1", "v"],
            &["PSETEX", "k", "1", "v"],
            &["GETDEL", "k"],
            &["GETEX", "k", "PERSIST"],
            &["STRLEN", "k"],
            &["TYPE", "k"],
            &["UNLINK", "a", "k"],
            &["TOUCH", "a", "k"],
            &["EXPIREAT", "k", "1"],
            &["PEXPIREAT", "k", "1"],
            &["EXPIRETIME", "k"],
            &["PEXPIRETIME", "k"],
            &["INCR", "k"],
            &["DECR", "k"],
            &["INCRBY", "k", "2"],
            &["DECRBY", "k", "2"],
        ];
        // WATCH names keys but is refused.
        assert!(parse(&["WATCH", "k"]).is_err());
        assert!(parse(&["APPEND", "k", "v"]).is_err());
        let with_keys: Vec<&str> = table::COMMANDS
            .iter()
            .filter(|c| c.first_key > 0 && !["watch", "append", "incrbyfloat"].contains(&c.name))
            .map(|c| c.name)
            .collect();
        assert_eq!(with_keys.len(), lines.len());
        for words in lines {
            let command = parse(words).unwrap();
            assert!(with_keys.contains(&words[0].to_ascii_lowercase().as_str()));
            let mut seen = Vec::new();
            assert!(command.all_keys(|k| {
                seen.push(k.to_vec());
                true
            }));
            assert_eq!(seen.last().map(Vec::as_slice), Some(&b"k"[..]), "{words:?}");
            assert!(!command.all_keys(|k| k != b"k"), "{words:?}");
        }
        assert!(parse(&["PING"]).unwrap().all_keys(|_| false));
        assert_eq!(
            crate::auth::ENTRIES[parse(&["ACL", "LOAD"]).unwrap().acl_entry()].name,
            "acl|load"
        );
        assert_eq!(
            crate::auth::ENTRIES[parse(&["PTTL", "k"]).unwrap().acl_entry()].name,
            "pttl"
        );
    }

    #[test]
    fn single_key_commands_know_their_key() {
        for words in [
            &["GET", "k"][..],
            &["SET", "k", "v"],
            &["DEL", "k"],
            &["EXISTS", "k"],
            &["EXPIRE", "k", "1"],
            &["TTL", "k"],
            &["PERSIST", "k"],
        ] {
            assert_eq!(parse(words).unwrap().key(), Some(&b"k"[..]), "{words:?}");
        }
        for words in [
            &["DEL", "a", "b"][..],
            &["MGET", "a"],
            &["MSET", "a", "1"],
            &["PING"],
            &["INFO"],
        ] {
            assert_eq!(parse(words).unwrap().key(), None, "{words:?}");
        }
        assert!(parse(&["QUIT"]).unwrap().closes());
        assert!(!parse(&["PING"]).unwrap().closes());
    }
}
