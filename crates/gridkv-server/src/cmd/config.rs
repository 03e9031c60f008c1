//! `CONFIG GET pattern...`: a few settings under the names Redis tools
//! look for, matched by `*`/`?` globs. Settings are given at start (flags,
//! `GRIDKV_*` variables, a config file), so `CONFIG SET` is refused.

use bytes::Bytes;

use super::args::is;
use super::error::ParseError;
use crate::resp::Reply;
use crate::shared::Shared;

/// `CONFIG GET pattern [pattern ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigGet {
    /// Glob patterns; a setting matching any of them is answered.
    pub patterns: Vec<Bytes>,
}

impl ConfigGet {
    pub(crate) fn parse(mut args: Vec<Bytes>) -> Result<Self, ParseError> {
        if !is(&args[1], "GET") || args.len() < 3 {
            return Err(ParseError::Refused(
                "ERR GridKV supports only CONFIG GET; settings are given at start (flags, GRIDKV_* variables, config file)".into(),
            ));
        }
        Ok(ConfigGet {
            patterns: args.split_off(2),
        })
    }

    /// The matching settings: a map in RESP3, name/value pairs in RESP2.
    pub(crate) fn apply(self, shared: &Shared) -> Reply {
        let status = shared.node.replication_status();
        let store = shared.node.store().config();
        let limits = &shared.limits;
        let values: [(&str, String); 15] = [
            ("save", String::new()),
            ("appendonly", "no".into()),
            ("databases", "1".into()),
            ("maxmemory", store.memory_budget.to_string()),
            ("maxclients", shared.max_clients.to_string()),
            ("proto-max-bulk-len", limits.max_bulk.to_string()),
            ("max-command-bytes", limits.max_command.to_string()),
            ("max-command-args", limits.max_args.to_string()),
            ("max-bulk-bytes", limits.max_bulk.to_string()),
            ("max-inline-bytes", limits.max_inline.to_string()),
            (
                "max-client-output",
                shared.memory.max_client_output().to_string(),
            ),
            ("max-clients-memory", shared.memory.max_total().to_string()),
            ("replicas", status.replicas.to_string()),
            ("write-quorum", status.write_quorum.to_string()),
            ("read-quorum", status.read_quorum.to_string()),
        ];
        Reply::Map(
            values
                .into_iter()
                .filter(|(k, _)| self.patterns.iter().any(|p| glob(p, k.as_bytes())))
                .map(|(k, v)| (Reply::bulk(k), Reply::bulk(v)))
                .collect(),
        )
    }
}

/// `*`/`?` glob match, as CONFIG GET patterns use.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((&p, rest)) => text.split_first().is_some_and(|(&t, tail)| {
            (p == b'?' || p.eq_ignore_ascii_case(&t)) && glob(rest, tail)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_redis() {
        assert!(glob(b"*", b"save"));
        assert!(glob(b"max*", b"maxmemory"));
        assert!(glob(b"SAVE", b"save"));
        assert!(glob(b"s?ve", b"save"));
        assert!(!glob(b"max*", b"save"));
        assert!(!glob(b"sav", b"save"));
    }

    #[test]
    fn only_get_with_a_pattern() {
        let args = |w: &[&str]| {
            w.iter()
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect::<Vec<_>>()
        };
        assert!(ConfigGet::parse(args(&["CONFIG", "get", "max*", "save"])).is_ok());
        for bad in [&["CONFIG", "GET"][..], &["CONFIG", "SET", "save", ""]] {
            let e = ConfigGet::parse(args(bad)).unwrap_err().to_string();
            assert!(e.contains("only CONFIG GET"), "{e}");
        }
    }
}
