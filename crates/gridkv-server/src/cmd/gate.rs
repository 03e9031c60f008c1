//! The check every command passes before it runs: is the client logged
//! in, may its user run this command, and touch every key it names?
//!
//! | reply | when |
//! |---|---|
//! | `-NOAUTH Authentication required.` | not logged in, and the command is not `AUTH`, `HELLO`, `PING` or `QUIT` (an unknown or malformed command too: nothing is said to a stranger but this) |
//! | `-NOPERM User NAME has no permissions to run the 'CMD' command` | the user's command rules exclude it (`CMD` is `acl\|list` for a subcommand) |
//! | `-NOPERM No permissions to access a key` | any key of the command matches none of the user's patterns (each key of `MGET`, `MSET`, `DEL`, `EXISTS` is checked) |
//!
//! The check runs when the command is about to run, not when it is
//! parsed: in a pipeline `AUTH pw` then `GET k`, the `GET` sees the login.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use super::Command;
use super::error::ParseError;
use crate::auth::{AclStore, ENTRIES};
use crate::resp::Reply;
use crate::session::Session;

/// The names of the commands a client may send before it logs in.
const OPEN: [&str; 4] = ["auth", "hello", "ping", "quit"];

/// Reads a command from a frame, marking a refusal of any command but
/// those of [`OPEN`], so that a client not logged in gets `-NOAUTH` for
/// it rather than the refusal (which would tell it what exists).
pub(crate) fn parse(args: Vec<Bytes>) -> Result<Command, ParseError> {
    let open = args
        .first()
        .is_some_and(|name| OPEN.iter().any(|o| name.eq_ignore_ascii_case(o.as_bytes())));
    let parsed = Command::parse(args);
    if open {
        parsed
    } else {
        parsed.map_err(|e| ParseError::Guarded(Box::new(e)))
    }
}

/// The command, if the session may run it now; else the reply that
/// refuses it (a parse refusal included), counted in `acl`'s counters.
pub(crate) fn authorize(
    acl: &AclStore,
    session: &mut Session,
    parsed: Result<Command, ParseError>,
) -> Result<Command, Reply> {
    acl.refresh(&mut session.user, &mut session.acl_generation);
    let Some(user) = &session.user else {
        return match parsed {
            Ok(
                command @ (Command::Auth(_) | Command::Hello(_) | Command::Ping(_) | Command::Quit),
            ) => Ok(command),
            Ok(_) | Err(ParseError::Guarded(_)) => {
                acl.counters.noauth.fetch_add(1, Relaxed);
                Err(Reply::error("NOAUTH Authentication required."))
            }
            Err(refused) => Err(refused.into()),
        };
    };
    let command = parsed.map_err(Reply::from)?;
    // As in Redis, logging in (again) and leaving need no right.
    if matches!(
        command,
        Command::Auth(_) | Command::Hello(_) | Command::Quit
    ) {
        return Ok(command);
    }
    let entry = command.acl_entry();
    if !user.can_run(entry) {
        acl.counters.denied_commands.fetch_add(1, Relaxed);
        return Err(Reply::error(format!(
            "NOPERM User {} has no permissions to run the '{}' command",
            user.name(),
            ENTRIES[entry].name
        )));
    }
    if !user.has_all_keys() && !command.all_keys(|key| user.can_access(key)) {
        acl.counters.denied_keys.fetch_add(1, Relaxed);
        return Err(Reply::error("NOPERM No permissions to access a key"));
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthSettings;

    fn line(text: &str) -> Vec<Bytes> {
        text.split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    /// A store with the users of `acl` (an ACL file's text).
    fn store(acl: &str) -> (AclStore, std::path::PathBuf) {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "gridkv-gate-{}-{}.acl",
            std::process::id(),
            SEQ.fetch_add(1, Relaxed)
        ));
        std::fs::write(&path, acl).unwrap();
        let store = AclStore::new(AuthSettings {
            requirepass: None,
            acl_file: Some(path.clone()),
        })
        .unwrap();
        (store, path)
    }

    fn check(acl: &AclStore, s: &mut Session, text: &str) -> Result<(), String> {
        authorize(acl, s, parse(line(text)))
            .map(drop)
            .map_err(|r| match r {
                Reply::Error(m) => m,
                other => panic!("{other:?}"),
            })
    }

    fn login(acl: &AclStore, user: &str, pass: &str) -> Session {
        let mut s = Session::new(1, "127.0.0.1:1".parse().unwrap());
        s.user = Some(
            acl.current()
                .authenticate(user.as_bytes(), pass.as_bytes())
                .unwrap(),
        );
        s
    }

    #[test]
    fn before_login_only_the_open_commands_answer() {
        let (acl, path) = store("user a on >pw ~* +@all\n");
        let mut s = Session::new(1, "127.0.0.1:1".parse().unwrap());
        for open in ["PING", "AUTH a pw", "HELLO 3", "QUIT", "hello 3 AUTH a pw"] {
            assert_eq!(check(&acl, &mut s, open), Ok(()), "{open}");
        }
        // An open command's own refusal is shown.
        assert_eq!(
            check(&acl, &mut s, "HELLO 4"),
            Err("NOPROTO unsupported protocol version".into())
        );
        for closed in [
            "GET k",
            "SET k v",
            "ACL WHOAMI",
            "FLUSHALL",
            "GET",
            "INFO",
            "SELECT 1",
        ] {
            assert_eq!(
                check(&acl, &mut s, closed),
                Err("NOAUTH Authentication required.".into()),
                "{closed}"
            );
        }
        assert_eq!(acl.counters.noauth.load(Relaxed), 7);
        // Logged in: refusals are shown as they are.
        let mut s = login(&acl, "a", "pw");
        assert_eq!(
            check(&acl, &mut s, "GET"),
            Err("ERR wrong number of arguments for 'get' command".into())
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn categories_and_commands_per_user() {
        let (acl, path) = store(
            "user r on >r ~* +@read\n\
             user w on >w ~* +@write -del\n\
             user adm on >a ~* +@all -@admin +acl|load\n",
        );
        let mut r = login(&acl, "r", "r");
        for ok in [
            "GET k", "MGET a b", "EXISTS k", "TTL k", "DBSIZE", "AUTH r r", "QUIT",
        ] {
            assert_eq!(check(&acl, &mut r, ok), Ok(()), "r: {ok}");
        }
        assert_eq!(
            check(&acl, &mut r, "SET k v"),
            Err("NOPERM User r has no permissions to run the 'set' command".into())
        );
        assert!(check(&acl, &mut r, "PING").is_err(), "ping is not @read");
        let mut w = login(&acl, "w", "w");
        for ok in ["SET k v", "MSET a 1 b 2", "EXPIRE k 5", "PERSIST k"] {
            assert_eq!(check(&acl, &mut w, ok), Ok(()), "w: {ok}");
        }
        for no in ["GET k", "DEL k", "CONFIG GET *"] {
            assert!(check(&acl, &mut w, no).is_err(), "w: {no}");
        }
        let mut adm = login(&acl, "adm", "a");
        assert_eq!(check(&acl, &mut adm, "ACL WHOAMI"), Ok(()));
        assert_eq!(check(&acl, &mut adm, "ACL LOAD"), Ok(()));
        assert_eq!(
            check(&acl, &mut adm, "ACL LIST"),
            Err("NOPERM User adm has no permissions to run the 'acl|list' command".into())
        );
        assert!(check(&acl, &mut adm, "CONFIG GET maxmemory").is_err());
        assert_eq!(acl.counters.denied_commands.load(Relaxed), 7);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn every_key_of_a_command_is_checked() {
        let (acl, path) = store("user app on >p ~app:* ~shared +@all\n");
        let mut s = login(&acl, "app", "p");
        for ok in [
            "GET app:1",
            "SET app:1 v",
            "MGET app:1 shared app:2",
            "MSET app:1 x shared y",
            "DEL app:1 app:2",
            "EXISTS shared",
            "EXPIRE app:x 5",
            "TTL app:x",
            "PTTL app:x",
            "PERSIST app:x",
            "PEXPIRE app:x 5",
            "DBSIZE",
        ] {
            assert_eq!(check(&acl, &mut s, ok), Ok(()), "{ok}");
        }
        for no in [
            "GET other",
            "SET other v",
            "MGET app:1 other",
            "MGET other app:1",
            "MSET app:1 x other y",
            "MSET other x app:1 y",
            // A value is not a key.
            "MSET app:1 x app:2 y other z",
            "DEL app:1 other",
            "DEL other",
            "EXISTS app:1 sharedX",
            "EXPIRE other 5",
            "TTL other",
            "PERSIST other",
        ] {
            assert_eq!(
                check(&acl, &mut s, no),
                Err("NOPERM No permissions to access a key".into()),
                "{no}"
            );
        }
        assert_eq!(check(&acl, &mut s, "MSET app:1 other"), Ok(()), "a value");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_reload_applies_at_the_next_command() {
        let (acl, path) = store("user a on >p ~* +@all\n");
        let mut s = login(&acl, "a", "p");
        assert_eq!(check(&acl, &mut s, "SET k v"), Ok(()));
        std::fs::write(&path, "user a on >p ~* +@read\n").unwrap();
        acl.reload().unwrap();
        assert!(
            check(&acl, &mut s, "SET k v")
                .unwrap_err()
                .starts_with("NOPERM")
        );
        std::fs::write(&path, "user b on >p ~* +@read\n").unwrap();
        acl.reload().unwrap();
        assert_eq!(
            check(&acl, &mut s, "GET k"),
            Err("NOAUTH Authentication required.".into()),
            "a was removed"
        );
        std::fs::remove_file(path).unwrap();
    }
}
