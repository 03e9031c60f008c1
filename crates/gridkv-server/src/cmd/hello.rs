//! `HELLO [protover [AUTH user pass] [SETNAME name]]`: the handshake a
//! Redis 6+ client opens with, as Redis 7 answers it.
//!
//! - `protover` 2 or 3 switches the connection's protocol; anything else
//!   is `NOPROTO`. Without it the protocol stays as it is.
//! - `AUTH user pass` logs the connection in first, as the `AUTH`
//!   command does; if it fails, nothing else changes (`WRONGPASS`).
//!   Without `AUTH`, a client not logged in gets `NOAUTH`, as from Redis.
//! - The reply is a map in RESP3 and a flat array in RESP2: `server`,
//!   `version`, `proto`, `id`, `mode`, `role`, `node` (GridKV's node id),
//!   `modules`.

use bytes::Bytes;

use super::args::{is, parse_int};
use super::auth::login;
use super::client::client_name;
use super::error::ParseError;
use crate::auth::AclStore;
use crate::resp::{Protocol, Reply};
use crate::session::Session;

/// A parsed `HELLO`. Its `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Hello {
    /// The protocol asked for, if any.
    pub protocol: Option<Protocol>,
    /// `AUTH username password`.
    pub auth: Option<(Bytes, Bytes)>,
    /// `SETNAME name` (`Some(None)`: the empty name, which clears it).
    pub name: Option<Option<Bytes>>,
}

impl std::fmt::Debug for Hello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hello")
            .field("protocol", &self.protocol)
            .field(
                "auth",
                &self.auth.as_ref().map(|(user, _)| (user, "<hidden>")),
            )
            .field("name", &self.name)
            .finish()
    }
}

impl Hello {
    pub(crate) fn parse(args: Vec<Bytes>) -> Result<Self, ParseError> {
        let mut args = args.into_iter().skip(1);
        let protocol = match args.next() {
            None => None,
            Some(v) => match parse_int(&v) {
                Some(2) => Some(Protocol::Resp2),
                Some(3) => Some(Protocol::Resp3),
                Some(_) => {
                    return Err(ParseError::Refused(
                        "NOPROTO unsupported protocol version".into(),
                    ));
                }
                None => {
                    return Err(ParseError::Refused(
                        "ERR Protocol version is not an integer or out of range".into(),
                    ));
                }
            },
        };
        let mut hello = Hello {
            protocol,
            auth: None,
            name: None,
        };
        let mut setname = None;
        let rest: Vec<Bytes> = args.collect();
        let mut i = 0;
        while i < rest.len() {
            let more = rest.len() - 1 - i;
            let opt = &rest[i];
            if is(opt, "AUTH") && more >= 2 {
                hello.auth = Some((rest[i + 1].clone(), rest[i + 2].clone()));
                i += 3;
            } else if is(opt, "SETNAME") && more >= 1 {
                setname = Some(rest[i + 1].clone());
                i += 2;
            } else {
                return Err(ParseError::Refused(
                    format!(
                        "ERR Syntax error in HELLO option '{}'",
                        String::from_utf8_lossy(opt)
                    )
                    .into(),
                ));
            }
        }
        // Checked after every option is read, as Redis does.
        if let Some(name) = setname {
            hello.name = Some(client_name(name)?);
        }
        Ok(hello)
    }

    pub(crate) fn apply(self, node_id: &str, acl: &AclStore, session: &mut Session) -> Reply {
        if let Some((user, password)) = &self.auth {
            let result = acl.current().authenticate(user, password);
            if let Err(failure) = login(acl, session, result) {
                return Reply::error(failure.message());
            }
        } else if session.user.is_none() {
            return Reply::error(
                "NOAUTH HELLO must be called with the client already authenticated, \
                 otherwise the HELLO <proto> AUTH <user> <pass> option can be used to \
                 authenticate the client and select the RESP protocol version at the same time",
            );
        }
        if let Some(name) = self.name {
            session.name = name;
        }
        if let Some(protocol) = self.protocol {
            session.protocol = protocol;
        }
        let field = |k: &'static str, v: Reply| (Reply::bulk(k), v);
        Reply::Map(vec![
            field("server", Reply::bulk("gridkv")),
            field("version", Reply::bulk(env!("CARGO_PKG_VERSION"))),
            field("proto", Reply::Integer(session.protocol.version())),
            field("id", Reply::Integer(session.id as i64)),
            field("mode", Reply::bulk("cluster")),
            field("role", Reply::bulk("master")),
            field("node", Reply::bulk(node_id.to_owned())),
            field("modules", Reply::Array(Vec::new())),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Hello, ParseError> {
        Hello::parse(
            words
                .iter()
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect(),
        )
    }

    /// A session logged in as `default` on a node without passwords.
    fn session() -> Session {
        let mut s = Session::new(9, "127.0.0.1:1".parse().unwrap());
        s.user = AclStore::open().current().initial_user();
        s
    }

    #[test]
    fn versions() {
        assert_eq!(parse(&["HELLO"]).unwrap().protocol, None);
        assert_eq!(
            parse(&["HELLO", "2"]).unwrap().protocol,
            Some(Protocol::Resp2)
        );
        assert_eq!(
            parse(&["HELLO", "3"]).unwrap().protocol,
            Some(Protocol::Resp3)
        );
        for v in ["1", "4", "-3"] {
            assert_eq!(
                parse(&["HELLO", v]).unwrap_err().to_string(),
                "NOPROTO unsupported protocol version"
            );
        }
        assert!(
            parse(&["HELLO", "x"])
                .unwrap_err()
                .to_string()
                .contains("not an integer")
        );
    }

    #[test]
    fn options() {
        let h = parse(&["HELLO", "3", "auth", "default", "pw", "setname", "app"]).unwrap();
        assert_eq!(h.auth.as_ref().map(|a| &a.0[..]), Some(&b"default"[..]));
        assert_eq!(h.name, Some(Some(Bytes::from_static(b"app"))));
        let shown = format!("{h:?}");
        assert!(
            shown.contains("default") && !shown.contains("\"pw\""),
            "{shown}"
        );
        assert_eq!(
            parse(&["HELLO", "3", "AUTH", "default"])
                .unwrap_err()
                .to_string(),
            "ERR Syntax error in HELLO option 'AUTH'"
        );
        assert!(
            parse(&["HELLO", "3", "SETNAME", "a b"])
                .unwrap_err()
                .to_string()
                .contains("cannot contain spaces")
        );
    }

    #[test]
    fn switches_protocol_and_answers_a_map() {
        let mut s = session();
        let reply = parse(&["HELLO", "3", "SETNAME", "app"]).unwrap().apply(
            "n1",
            &AclStore::open(),
            &mut s,
        );
        assert_eq!(s.protocol, Protocol::Resp3);
        assert_eq!(s.name.as_deref(), Some(&b"app"[..]));
        let Reply::Map(fields) = reply else {
            panic!("not a map: {reply:?}");
        };
        let keys: Vec<_> = fields
            .iter()
            .map(|(k, _)| match k {
                Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            keys,
            [
                "server", "version", "proto", "id", "mode", "role", "node", "modules"
            ]
        );
        assert_eq!(fields[2].1, Reply::Integer(3));
        assert_eq!(fields[3].1, Reply::Integer(9));
    }

    #[test]
    fn without_passwords_auth_accepts_only_the_default_user() {
        let open = AclStore::open();
        let mut s = session();
        let bad = parse(&["HELLO", "3", "AUTH", "bob", "pw"])
            .unwrap()
            .apply("n1", &open, &mut s);
        assert!(matches!(bad, Reply::Error(m) if m.starts_with("WRONGPASS")));
        assert_eq!(
            s.protocol,
            Protocol::Resp2,
            "a refused HELLO changes nothing"
        );
        let ok = parse(&["HELLO", "3", "AUTH", "default", "anything"])
            .unwrap()
            .apply("n1", &open, &mut s);
        assert!(matches!(ok, Reply::Map(_)));
        assert_eq!(s.protocol, Protocol::Resp3);
    }

    #[test]
    fn with_a_password_hello_logs_in_or_changes_nothing() {
        let acl = AclStore::new(crate::auth::AuthSettings {
            requirepass: Some("pw".into()),
            acl_file: None,
        })
        .unwrap();
        let mut s = Session::new(9, "127.0.0.1:1".parse().unwrap());
        let plain = parse(&["HELLO", "3"]).unwrap().apply("n1", &acl, &mut s);
        assert!(matches!(&plain, Reply::Error(m) if m.starts_with("NOAUTH HELLO must be called")));
        let wrong = parse(&["HELLO", "3", "AUTH", "default", "no", "SETNAME", "x"])
            .unwrap()
            .apply("n1", &acl, &mut s);
        assert!(matches!(&wrong, Reply::Error(m) if m.starts_with("WRONGPASS")));
        assert!(s.user.is_none() && s.name.is_none() && s.protocol == Protocol::Resp2);
        let ok = parse(&["HELLO", "3", "AUTH", "default", "pw", "SETNAME", "x"])
            .unwrap()
            .apply("n1", &acl, &mut s);
        assert!(matches!(ok, Reply::Map(_)));
        assert_eq!(s.user.as_ref().map(|u| u.name()), Some("default"));
        assert_eq!(s.protocol, Protocol::Resp3);
        assert_eq!(
            acl.counters
                .failures
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
}
