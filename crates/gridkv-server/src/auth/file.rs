//! ACL files (`--acl-file`), in Redis's syntax: one user a line,
//!
//! ```text
//! user <name> [on|off] [nopass] [>password] [#sha256hex] [~pattern]... [allkeys]
//!      [+@all|+@read|+@write|+@admin|-@...] [+cmd|-cmd|+cmd|sub]...
//! ```
//!
//! Rules apply left to right, as `ACL SETUSER` applies them (see
//! [`User::apply`]). Blank lines and lines starting with `#` are skipped
//! (Redis refuses comments; GridKV allows them). A line that cannot be
//! read fails the whole file, with its file and line number, so a typo
//! never silently opens or closes access.
//!
//! # Examples
//!
//! ```
//! use gridkv_server::auth::parse_acl;
//!
//! let users = parse_acl("users.acl", "# readers\nuser app on >pw ~cache:* +@read\n").unwrap();
//! assert_eq!(users[0].name(), "app");
//! let e = parse_acl("users.acl", "user app on\nuser bad on +@nosuch\n").unwrap_err();
//! assert!(e.to_string().starts_with("users.acl:2: "), "{e}");
//! ```

use std::collections::HashMap;

use super::user::User;

/// Largest ACL file read, in bytes.
pub const MAX_ACL_FILE: u64 = 16 << 20;
/// Most users in one ACL.
pub const MAX_USERS: usize = 100_000;
/// Longest user name, in bytes.
pub const MAX_NAME: usize = 256;

/// Why the ACL could not be built or reloaded; the ACL in force is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// A line of the file is wrong.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// The file, as configured.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The file cannot be read (or is too large).
    #[error("cannot read ACL file {path}: {reason}")]
    Read {
        /// The file, as configured.
        path: String,
        /// Why.
        reason: String,
    },
    /// `--requirepass` with an ACL file that defines `default` too: which
    /// one holds would be a guess.
    #[error(
        "{path} defines the user 'default' and --requirepass sets its password too: \
         give its password in the file (>password) and drop --requirepass"
    )]
    Conflict {
        /// The ACL file.
        path: String,
    },
    /// `ACL LOAD` on a node started without `--acl-file`.
    #[error("this node was started without --acl-file: there is no file to load")]
    NoFile,
}

/// Reads the users of an ACL file's text; `path` names it in errors.
///
/// # Errors
///
/// [`AclError::Parse`] for the first line that is not a valid user.
pub fn parse_acl(path: &str, text: &str) -> Result<Vec<User>, AclError> {
    let mut users = Vec::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let fail = |reason: String| AclError::Parse {
            path: path.to_owned(),
            line: line_no,
            reason,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_ascii_whitespace();
        if words.next() != Some("user") {
            return Err(fail("a line starts with the keyword 'user'".into()));
        }
        let Some(name) = words.next() else {
            return Err(fail("'user' needs a name".into()));
        };
        check_name(name).map_err(&fail)?;
        if let Some(first) = first_line.get(name) {
            return Err(fail(format!(
                "user '{name}' is already defined at line {first}"
            )));
        }
        if users.len() >= MAX_USERS {
            return Err(fail(format!("more than {MAX_USERS} users")));
        }
        let mut user = User::new(name);
        for rule in words {
            user.apply(rule).map_err(|e| fail(e.to_string()))?;
        }
        first_line.insert(name.to_owned(), line_no);
        users.push(user);
    }
    Ok(users)
}

/// Reads and parses the ACL file at `path`.
///
/// # Errors
///
/// [`AclError::Read`] or [`AclError::Parse`].
pub fn read_acl(path: &std::path::Path) -> Result<Vec<User>, AclError> {
    use std::io::Read;
    let shown = path.display().to_string();
    let read_error = |reason: String| AclError::Read {
        path: shown.clone(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| read_error(e.to_string()))?;
    let mut text = String::new();
    file.take(MAX_ACL_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| read_error(e.to_string()))?;
    if text.len() as u64 > MAX_ACL_FILE {
        return Err(read_error(format!("larger than {MAX_ACL_FILE} bytes")));
    }
    parse_acl(&shown, &text)
}

fn check_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME {
        return Err(format!("a user name is at most {MAX_NAME} bytes"));
    }
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("user name '{name}': printable ASCII only"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::index;

    #[test]
    fn users_and_their_rules() {
        let text = "\n# a comment\nuser default off\n  user app on >pw ~cache:* ~session:? +@read +@write -del\nuser admin on #5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 allkeys +@all\n";
        let users = parse_acl("f.acl", text).unwrap();
        let names: Vec<_> = users.iter().map(User::name).collect();
        assert_eq!(names, ["default", "app", "admin"]);
        assert!(!users[0].is_enabled());
        let app = &users[1];
        assert!(app.check_password(b"pw"));
        assert!(app.can_run(index("set").unwrap()) && !app.can_run(index("del").unwrap()));
        assert!(app.can_access(b"session:1") && !app.can_access(b"x"));
        assert!(users[2].check_password(b"password"), "sha256 of 'password'");
    }

    #[test]
    fn errors_name_file_and_line() {
        for (text, line, want) in [
            ("usr app on", 1, "starts with the keyword 'user'"),
            ("\n\nuser", 3, "needs a name"),
            ("user a on\nuser a off", 2, "already defined at line 1"),
            ("user a on +@nosuch", 1, "unknown category 'nosuch'"),
            ("user a on +lpush", 1, "unknown command 'lpush'"),
            ("user a on #1234", 1, "64 hex digits"),
            ("user a on sometimes", 1, "unknown rule 'sometimes'"),
            ("# ok\nuser a on %R~x", 2, "not supported"),
        ] {
            let e = parse_acl("users.acl", text).unwrap_err();
            let AclError::Parse { line: got, .. } = &e else {
                panic!("{e:?}")
            };
            assert_eq!(*got, line, "{text:?}: {e}");
            let shown = e.to_string();
            assert!(shown.starts_with(&format!("users.acl:{line}: ")), "{shown}");
            assert!(shown.contains(want), "{text:?}: {shown}");
        }
    }

    #[test]
    fn unreadable_and_oversized_files() {
        let dir = std::env::temp_dir().join(format!("gridkv-acl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.acl");
        assert!(matches!(read_acl(&missing), Err(AclError::Read { .. })));
        let big = dir.join("big.acl");
        let line = "# padding padding padding padding padding padding padding padding\n";
        let text = line.repeat((MAX_ACL_FILE as usize / line.len()) + 1);
        std::fs::write(&big, text).unwrap();
        let e = read_acl(&big).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        let ok = dir.join("ok.acl");
        std::fs::write(&ok, "user a on nopass +@all ~*\n").unwrap();
        assert_eq!(read_acl(&ok).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
