//! `AUTH [username] password` and `ACL WHOAMI|LIST|LOAD|CAT`: logging a
//! connection in, and what the users are (see [`crate::auth`]).
//!
//! `AUTH password` logs in as `default`; `AUTH name password` as `name`.
//! A failure leaves the connection logged in as it was, answers
//! `-WRONGPASS` whatever was wrong, and is counted
//! (`gridkv_resp_auth_failures_total`).

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use super::args::is;
use super::error::ParseError;
use crate::auth::{AclStore, AuthFailure, Category, ENTRIES, User};
use crate::resp::Reply;
use crate::session::Session;

/// A parsed `AUTH`.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    /// The user; `None`: `default`, and an error if it needs no password.
    pub user: Option<Bytes>,
    /// The password.
    pub password: Bytes,
}

/// The password is never printed, not even in a debug log.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

impl Auth {
    pub(crate) fn parse(args: Vec<Bytes>) -> Result<Self, ParseError> {
        let mut args = args.into_iter().skip(1);
        match (args.next(), args.next(), args.next()) {
            (Some(password), None, None) => Ok(Auth {
                user: None,
                password,
            }),
            (Some(user), Some(password), None) => Ok(Auth {
                user: Some(user),
                password,
            }),
            _ => Err(ParseError::Syntax),
        }
    }

    pub(crate) fn apply(self, acl: &AclStore, session: &mut Session) -> Reply {
        let current = acl.current();
        let result = match &self.user {
            None => current.authenticate_default(&self.password),
            Some(user) => current.authenticate(user, &self.password),
        };
        match login(acl, session, result) {
            Ok(()) => Reply::ok(),
            Err(failure) => Reply::error(failure.message()),
        }
    }
}

/// Logs `session` in as the user `result` names, or counts the failure
/// (a failure leaves the session as it was).
pub(crate) fn login(
    acl: &AclStore,
    session: &mut Session,
    result: Result<std::sync::Arc<User>, AuthFailure>,
) -> Result<(), AuthFailure> {
    match result {
        Ok(user) => {
            session.user = Some(user);
            session.acl_generation = acl.generation();
            Ok(())
        }
        Err(failure) => {
            if failure == AuthFailure::WrongPass {
                acl.counters.failures.fetch_add(1, Relaxed);
                tracing::debug!("client {}: AUTH failed", session.peer);
            }
            Err(failure)
        }
    }
}

/// A parsed `ACL` subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acl {
    /// `ACL WHOAMI`: the connection's user.
    WhoAmI,
    /// `ACL LIST`: every user as a rule line, passwords as `#<sha256>`.
    List,
    /// `ACL LOAD`: re-read the ACL file.
    Load,
    /// `ACL CAT [category]`: the categories, or a category's commands.
    Cat(Option<Bytes>),
}

impl Acl {
    pub(crate) fn parse(args: Vec<Bytes>) -> Result<Self, ParseError> {
        let sub = &args[1];
        let (acl, name, arity) = if is(sub, "WHOAMI") {
            (Acl::WhoAmI, "acl|whoami", 2..=2)
        } else if is(sub, "LIST") {
            (Acl::List, "acl|list", 2..=2)
        } else if is(sub, "LOAD") {
            (Acl::Load, "acl|load", 2..=2)
        } else if is(sub, "CAT") {
            (Acl::Cat(args.get(2).cloned()), "acl|cat", 2..=3)
        } else {
            return Err(ParseError::Refused(
                format!(
                    "ERR unknown subcommand '{}'. Try ACL HELP.",
                    String::from_utf8_lossy(sub)
                        .chars()
                        .take(64)
                        .collect::<String>()
                )
                .into(),
            ));
        };
        if arity.contains(&args.len()) {
            Ok(acl)
        } else {
            Err(ParseError::Arity(name))
        }
    }

    pub(crate) fn apply(self, acl: &AclStore, session: &Session) -> Reply {
        match self {
            Acl::WhoAmI => session
                .user
                .as_ref()
                .map_or(Reply::Null, |u| Reply::bulk(u.name().to_owned())),
            Acl::List => Reply::Array(
                acl.current()
                    .users()
                    .map(|u| Reply::bulk(u.describe()))
                    .collect(),
            ),
            Acl::Load => match acl.reload() {
                Ok(_) => Reply::ok(),
                Err(e) => Reply::error(format!("ERR {e}")),
            },
            Acl::Cat(None) => Reply::Array(
                Category::ALL
                    .iter()
                    .map(|c| Reply::bulk(c.name()))
                    .collect(),
            ),
            Acl::Cat(Some(name)) => {
                let category = std::str::from_utf8(&name).ok().and_then(Category::parse);
                match category {
                    Some(category) => Reply::Array(
                        ENTRIES
                            .iter()
                            .filter(|e| e.is_in(category))
                            .map(|e| Reply::bulk(e.name))
                            .collect(),
                    ),
                    None => Reply::error(format!(
                        "ERR Unknown category '{}'",
                        String::from_utf8_lossy(&name)
                            .chars()
                            .take(64)
                            .collect::<String>()
                    )),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthSettings;

    fn words(w: &[&str]) -> Vec<Bytes> {
        w.iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn session() -> Session {
        Session::new(1, "127.0.0.1:1".parse().unwrap())
    }

    fn store(pass: &str) -> AclStore {
        AclStore::new(AuthSettings {
            requirepass: Some(pass.into()),
            acl_file: None,
        })
        .unwrap()
    }

    #[test]
    fn auth_forms() {
        assert_eq!(
            Auth::parse(words(&["AUTH", "pw"])),
            Ok(Auth {
                user: None,
                password: Bytes::from_static(b"pw")
            })
        );
        assert_eq!(
            Auth::parse(words(&["AUTH", "u", "pw"])).unwrap().user,
            Some(Bytes::from_static(b"u"))
        );
        assert_eq!(
            Auth::parse(words(&["AUTH", "a", "b", "c"])),
            Err(ParseError::Syntax)
        );
        let shown = format!("{:?}", Auth::parse(words(&["AUTH", "hunter2"])).unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn auth_logs_in_and_a_failure_changes_nothing() {
        let acl = store("pw");
        let mut s = session();
        let wrong = Auth::parse(words(&["AUTH", "nope"]))
            .unwrap()
            .apply(&acl, &mut s);
        assert_eq!(wrong, Reply::error(AuthFailure::WrongPass.message()));
        assert!(s.user.is_none());
        assert_eq!(acl.counters.failures.load(Relaxed), 1);
        let ok = Auth::parse(words(&["AUTH", "pw"]))
            .unwrap()
            .apply(&acl, &mut s);
        assert_eq!(ok, Reply::ok());
        assert_eq!(s.user.as_ref().unwrap().name(), "default");
        let again = Auth::parse(words(&["AUTH", "default", "bad"]))
            .unwrap()
            .apply(&acl, &mut s);
        assert!(again.is_error());
        assert!(s.user.is_some(), "still logged in after a failed AUTH");
        assert_eq!(acl.counters.failures.load(Relaxed), 2);
        // No password configured: AUTH password is a configuration error,
        // not a failure.
        let open = AclStore::open();
        let reply = Auth::parse(words(&["AUTH", "x"]))
            .unwrap()
            .apply(&open, &mut s);
        assert!(
            matches!(&reply, Reply::Error(m) if m.starts_with("ERR AUTH <password> called without"))
        );
        assert_eq!(open.counters.failures.load(Relaxed), 0);
    }

    #[test]
    fn acl_subcommands() {
        let acl = store("pw");
        let mut s = session();
        assert_eq!(
            Acl::parse(words(&["ACL", "whoami"]))
                .unwrap()
                .apply(&acl, &s),
            Reply::Null
        );
        Auth::parse(words(&["AUTH", "pw"]))
            .unwrap()
            .apply(&acl, &mut s);
        assert_eq!(
            Acl::parse(words(&["ACL", "WHOAMI"]))
                .unwrap()
                .apply(&acl, &s),
            Reply::bulk("default")
        );
        let list = Acl::parse(words(&["ACL", "LIST"])).unwrap().apply(&acl, &s);
        let line = format!(
            "user default on #{} ~* +@all",
            crate::auth::sha256_hex(b"pw")
        );
        assert_eq!(list, Reply::Array(vec![Reply::bulk(line)]));
        let load = Acl::parse(words(&["ACL", "LOAD"])).unwrap().apply(&acl, &s);
        assert!(matches!(load, Reply::Error(m) if m.contains("without --acl-file")));
        let cat = Acl::parse(words(&["ACL", "CAT", "admin"]))
            .unwrap()
            .apply(&acl, &s);
        assert_eq!(
            cat,
            Reply::Array(vec![
                Reply::bulk("config|get"),
                Reply::bulk("acl|list"),
                Reply::bulk("acl|load")
            ])
        );
        assert!(
            Acl::parse(words(&["ACL", "CAT", "x"]))
                .unwrap()
                .apply(&acl, &s)
                .is_error()
        );
        assert_eq!(
            Acl::parse(words(&["ACL", "WHOAMI", "x"])),
            Err(ParseError::Arity("acl|whoami"))
        );
        assert!(
            Acl::parse(words(&["ACL", "SETUSER", "x"]))
                .unwrap_err()
                .to_string()
                .starts_with("ERR unknown subcommand 'SETUSER'")
        );
    }
}
