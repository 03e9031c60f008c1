//! `CLIENT SETNAME|GETNAME|ID|SETINFO|INFO`: the connection's name, id and
//! library, kept in its [`Session`].

use std::fmt::Write;

use bytes::Bytes;

use super::args::is;
use super::error::ParseError;
use crate::resp::Reply;
use crate::session::Session;

/// A parsed `CLIENT` subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    /// `CLIENT SETNAME name` (an empty name clears it).
    SetName(Option<Bytes>),
    /// `CLIENT GETNAME`.
    GetName,
    /// `CLIENT ID`.
    Id,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value` (an empty value clears it).
    SetInfo(LibAttr, Option<Bytes>),
    /// `CLIENT INFO`.
    Info,
}

/// What `CLIENT SETINFO` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibAttr {
    /// `LIB-NAME`: the client library's name.
    Name,
    /// `LIB-VER`: its version.
    Version,
}

/// Whether `value` may be a client name or library field: printable
/// ASCII, no spaces (as Redis: `CLIENT LIST` separates fields by spaces).
fn printable(value: &[u8]) -> bool {
    value.iter().all(|b| (b'!'..=b'~').contains(b))
}

/// A client name as `CLIENT SETNAME` and `HELLO ... SETNAME` take it:
/// `None` for the empty name, which clears it.
///
/// # Errors
///
/// Names with spaces, newlines or other unprintable bytes.
pub(crate) fn client_name(name: Bytes) -> Result<Option<Bytes>, ParseError> {
    if !printable(&name) {
        return Err(ParseError::Refused(
            "ERR Client names cannot contain spaces, newlines or special characters.".into(),
        ));
    }
    Ok((!name.is_empty()).then_some(name))
}

impl Client {
    pub(crate) fn parse(args: Vec<Bytes>) -> Result<Self, ParseError> {
        let sub = &args[1];
        match args.len() {
            3 if is(sub, "SETNAME") => {
                let name = args.into_iter().nth(2).unwrap_or_default();
                client_name(name).map(Client::SetName)
            }
            2 if is(sub, "GETNAME") => Ok(Client::GetName),
            2 if is(sub, "ID") => Ok(Client::Id),
            2 if is(sub, "INFO") => Ok(Client::Info),
            4 if is(sub, "SETINFO") => {
                let attr = if is(&args[2], "LIB-NAME") {
                    LibAttr::Name
                } else if is(&args[2], "LIB-VER") {
                    LibAttr::Version
                } else {
                    return Err(ParseError::Refused(
                        format!(
                            "ERR Unrecognized option '{}'",
                            String::from_utf8_lossy(&args[2])
                        )
                        .into(),
                    ));
                };
                if !printable(&args[3]) {
                    return Err(ParseError::Refused(
                        format!(
                            "ERR {} cannot contain spaces, newlines or special characters.",
                            String::from_utf8_lossy(&args[2])
                        )
                        .into(),
                    ));
                }
                let value = args.into_iter().nth(3).filter(|v| !v.is_empty());
                Ok(Client::SetInfo(attr, value))
            }
            _ => Err(ParseError::Refused(
                format!(
                    "ERR unknown or unsupported subcommand '{}' of 'client'",
                    String::from_utf8_lossy(sub)
                )
                .into(),
            )),
        }
    }

    pub(crate) fn apply(self, session: &mut Session) -> Reply {
        match self {
            Client::SetName(name) => {
                session.name = name;
                Reply::ok()
            }
            Client::GetName => Reply::bulk_or_null(session.name.clone()),
            Client::Id => Reply::Integer(session.id as i64),
            Client::SetInfo(LibAttr::Name, value) => {
                session.lib_name = value;
                Reply::ok()
            }
            Client::SetInfo(LibAttr::Version, value) => {
                session.lib_ver = value;
                Reply::ok()
            }
            Client::Info => Reply::Verbatim(info_line(session).into()),
        }
    }
}

/// `CLIENT INFO`'s line, fields as `CLIENT LIST` names them in Redis.
fn info_line(session: &Session) -> String {
    let text = |v: &Option<Bytes>| {
        v.as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default()
            .into_owned()
    };
    let mut line = format!(
        "id={} addr={} name={} db=0",
        session.id,
        session.peer,
        text(&session.name)
    );
    let user = session.user.as_ref().map_or("", |u| u.name());
    let _ = writeln!(
        line,
        " user={user} resp={} lib-name={} lib-ver={}",
        session.protocol.version(),
        text(&session.lib_name),
        text(&session.lib_ver)
    );
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Client, ParseError> {
        Client::parse(
            words
                .iter()
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect(),
        )
    }

    #[test]
    fn subcommands() {
        assert_eq!(
            parse(&["CLIENT", "setname", "app"]),
            Ok(Client::SetName(Some(Bytes::from_static(b"app"))))
        );
        assert_eq!(parse(&["CLIENT", "SETNAME", ""]), Ok(Client::SetName(None)));
        assert_eq!(parse(&["CLIENT", "GETNAME"]), Ok(Client::GetName));
        assert_eq!(parse(&["CLIENT", "ID"]), Ok(Client::Id));
        assert_eq!(parse(&["CLIENT", "INFO"]), Ok(Client::Info));
        assert_eq!(
            parse(&["CLIENT", "SETINFO", "lib-name", "redis-py"]),
            Ok(Client::SetInfo(
                LibAttr::Name,
                Some(Bytes::from_static(b"redis-py"))
            ))
        );
        assert_eq!(
            parse(&["CLIENT", "SETINFO", "LIB-VER", "8.0.0"]),
            Ok(Client::SetInfo(
                LibAttr::Version,
                Some(Bytes::from_static(b"8.0.0"))
            ))
        );
    }

    #[test]
    fn refusals() {
        let msg = |r: Result<Client, ParseError>| r.unwrap_err().to_string();
        assert!(msg(parse(&["CLIENT", "SETNAME", "a b"])).contains("cannot contain spaces"));
        assert_eq!(
            msg(parse(&["CLIENT", "SETINFO", "color", "x"])),
            "ERR Unrecognized option 'color'"
        );
        assert!(
            msg(parse(&["CLIENT", "SETINFO", "LIB-NAME", "a\nb"]))
                .starts_with("ERR LIB-NAME cannot contain")
        );
        assert_eq!(
            msg(parse(&["CLIENT", "KILL"])),
            "ERR unknown or unsupported subcommand 'KILL' of 'client'"
        );
        // SETNAME with no name is not SETNAME.
        assert!(msg(parse(&["CLIENT", "SETNAME"])).contains("unknown or unsupported"));
    }

    #[test]
    fn info_names_the_library_and_protocol() {
        let mut s = Session::new(4, "127.0.0.1:9".parse().unwrap());
        Client::SetInfo(LibAttr::Name, Some(Bytes::from_static(b"redis-py"))).apply(&mut s);
        assert_eq!(
            info_line(&s),
            "id=4 addr=127.0.0.1:9 name= db=0 user= resp=2 lib-name=redis-py lib-ver=\n"
        );
        s.user = crate::auth::AclStore::open().current().initial_user();
        assert!(
            info_line(&s).contains(" user=default "),
            "{}",
            info_line(&s)
        );
    }
}
