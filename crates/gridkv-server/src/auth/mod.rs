//! Client authentication and authorization for the RESP front end, the
//! Redis way: users with passwords, the commands they may run and the
//! keys they may touch.
//!
//! - Without `--requirepass` or `--acl-file` there is one user, `default`,
//!   with no password and every right: every connection is logged in as
//!   it (Redis's default).
//! - `--requirepass PASSWORD` gives `default` that password: a client
//!   must `AUTH PASSWORD` (or `HELLO 3 AUTH default PASSWORD`) first.
//! - `--acl-file FILE` defines the users ([`file`](parse_acl)). If the
//!   file does not define `default`, `default` has the `--requirepass`
//!   password if one is given, and is disabled otherwise (Redis would leave
//!   it open with every right: a file written to restrict access should not
//!   leave a door open). A file that defines `default` *and*
//!   `--requirepass` is refused ([`AclError::Conflict`]).
//!
//! [`AclStore`] holds the users in force and reloads them from the file
//! (`ACL LOAD`, and whatever else calls [`AclStore::reload`]); a reload
//! that fails keeps the users in force. Connections see a reload at their
//! next command: their user's new rights, or, if their user is gone or
//! disabled, no user at all (the next command gets `-NOAUTH`).
//!
//! # Examples
//!
//! ```
//! use gridkv_server::auth::{AclStore, AuthSettings};
//!
//! let store = AclStore::new(AuthSettings {
//!     requirepass: Some("s3cret".into()),
//!     acl_file: None,
//! })
//! .unwrap();
//! let acl = store.current();
//! assert!(acl.initial_user().is_none(), "a client must authenticate");
//! assert!(acl.authenticate(b"default", b"s3cret").is_ok());
//! assert!(acl.authenticate(b"default", b"guess").is_err());
//! ```

mod category;
mod file;
mod glob;
mod user;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub use category::{
    ALL_ENTRIES, Category, ENTRIES, Entry, EntrySet, entry, in_category, index, of_command,
    position,
};
pub use file::{AclError, MAX_ACL_FILE, parse_acl, read_acl};
pub use glob::{Glob, GlobError, MAX_PATTERN};
pub use user::{RuleError, User, sha256, sha256_hex};

/// Where the users come from (`--requirepass`, `--acl-file`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthSettings {
    /// The password of `default`.
    pub requirepass: Option<String>,
    /// The ACL file.
    pub acl_file: Option<PathBuf>,
}

/// Why `AUTH` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Wrong name or password, or the user is off.
    WrongPass,
    /// `AUTH password` while `default` needs none: the client's setup is
    /// probably wrong, as Redis says.
    NoPasswordConfigured,
}

impl AuthFailure {
    /// The error reply, as Redis words it.
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::WrongPass => {
                "WRONGPASS invalid username-password pair or user is disabled."
            }
            AuthFailure::NoPasswordConfigured => {
                "ERR AUTH <password> called without any password configured for the default user. \
                 Are you sure your configuration is correct?"
            }
        }
    }
}

/// The users in force at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    users: BTreeMap<String, Arc<User>>,
}

impl Acl {
    /// Builds the users `settings` describe (reading the ACL file, if any).
    ///
    /// # Errors
    ///
    /// [`AclError`]: the file cannot be read or parsed, or conflicts with
    /// `--requirepass`.
    pub fn build(settings: &AuthSettings) -> Result<Acl, AclError> {
        let pass = settings.requirepass.as_deref();
        let mut users = BTreeMap::new();
        let Some(path) = &settings.acl_file else {
            let default = User::default_user(pass);
            users.insert(default.name().to_owned(), Arc::new(default));
            return Ok(Acl { users });
        };
        for user in read_acl(path)? {
            users.insert(user.name().to_owned(), Arc::new(user));
        }
        if users.contains_key("default") {
            if pass.is_some() {
                return Err(AclError::Conflict {
                    path: path.display().to_string(),
                });
            }
        } else {
            let default = match pass {
                Some(_) => User::default_user(pass),
                None => User::new("default"),
            };
            users.insert("default".into(), Arc::new(default));
        }
        Ok(Acl { users })
    }

    /// The user named `name`.
    pub fn user(&self, name: &str) -> Option<&Arc<User>> {
        self.users.get(name)
    }

    /// Every user, by name.
    pub fn users(&self) -> impl Iterator<Item = &Arc<User>> {
        self.users.values()
    }

    /// The user a new connection is logged in as without `AUTH`: `default`
    /// when it is on and needs no password.
    pub fn initial_user(&self) -> Option<Arc<User>> {
        self.users
            .get("default")
            .filter(|u| u.is_enabled() && u.is_nopass())
            .cloned()
    }

    /// `AUTH name password`: the user, if it is on and `password` is one
    /// of its own (compared in constant time).
    ///
    /// # Errors
    ///
    /// [`AuthFailure::WrongPass`], whatever was wrong (no such user, off,
    /// wrong password), as Redis does not say which.
    pub fn authenticate(&self, name: &[u8], password: &[u8]) -> Result<Arc<User>, AuthFailure> {
        let user = std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.users.get(n));
        // The password is checked even for an unknown or disabled user, so
        // the reply takes about as long either way.
        let ok = user.is_some_and(|u| u.check_password(password) & u.is_enabled());
        if user.is_none() {
            let _ = User::new("").check_password(password);
        }
        match user {
            Some(u) if ok => Ok(u.clone()),
            _ => Err(AuthFailure::WrongPass),
        }
    }

    /// `AUTH password`: as `AUTH default password`, except that it is an
    /// error while `default` needs no password.
    ///
    /// # Errors
    ///
    /// [`AuthFailure`].
    pub fn authenticate_default(&self, password: &[u8]) -> Result<Arc<User>, AuthFailure> {
        if self.users.get("default").is_some_and(|u| u.is_nopass()) {
            return Err(AuthFailure::NoPasswordConfigured);
        }
        self.authenticate(b"default", password)
    }
}

/// Counts of authentication and authorization refusals (`INFO`,
/// `/metrics`).
#[derive(Debug, Default)]
pub struct AuthCounters {
    /// `AUTH`/`HELLO AUTH` refused.
    pub failures: AtomicU64,
    /// Commands refused: not authenticated (`-NOAUTH`).
    pub noauth: AtomicU64,
    /// Commands refused: the user may not run them (`-NOPERM`).
    pub denied_commands: AtomicU64,
    /// Commands refused: a key the user may not touch (`-NOPERM`).
    pub denied_keys: AtomicU64,
    /// ACL reloads that took effect.
    pub reloads: AtomicU64,
    /// ACL reloads refused (the users in force were kept).
    pub reload_failures: AtomicU64,
}

/// [`AuthCounters`] read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthCounts {
    /// `AUTH`/`HELLO AUTH` refused.
    pub failures: u64,
    /// Commands refused with `-NOAUTH`.
    pub noauth: u64,
    /// Commands refused with `-NOPERM` for the command.
    pub denied_commands: u64,
    /// Commands refused with `-NOPERM` for a key.
    pub denied_keys: u64,
    /// ACL reloads that took effect.
    pub reloads: u64,
    /// ACL reloads refused.
    pub reload_failures: u64,
}

impl AuthCounters {
    /// The counts now.
    pub fn load(&self) -> AuthCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AuthCounts {
            failures: get(&self.failures),
            noauth: get(&self.noauth),
            denied_commands: get(&self.denied_commands),
            denied_keys: get(&self.denied_keys),
            reloads: get(&self.reloads),
            reload_failures: get(&self.reload_failures),
        }
    }
}

/// The users in force, shared by every connection, and how to reload
/// them.
#[derive(Debug)]
pub struct AclStore {
    settings: AuthSettings,
    current: RwLock<Arc<Acl>>,
    /// Bumped on every reload that took effect, so a connection re-reads
    /// its user only then (one atomic load per command otherwise).
    generation: AtomicU64,
    /// Refusals, for `INFO` and `/metrics`.
    pub counters: AuthCounters,
}

impl AclStore {
    /// The users `settings` describe.
    ///
    /// # Errors
    ///
    /// [`AclError`], as [`Acl::build`].
    pub fn new(settings: AuthSettings) -> Result<AclStore, AclError> {
        let acl = Acl::build(&settings)?;
        Ok(AclStore {
            settings,
            current: RwLock::new(Arc::new(acl)),
            generation: AtomicU64::new(0),
            counters: AuthCounters::default(),
        })
    }

    /// No password, every right: what a node without `--requirepass` or
    /// `--acl-file` has.
    pub fn open() -> AclStore {
        AclStore::new(AuthSettings::default()).expect("no file to fail")
    }

    /// The users in force.
    pub fn current(&self) -> Arc<Acl> {
        self.current.read().expect("acl lock").clone()
    }

    /// How many reloads took effect.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the node has an ACL file to reload.
    pub fn has_file(&self) -> bool {
        self.settings.acl_file.is_some()
    }

    /// Re-reads the ACL file; on failure the users in force stay. Returns
    /// how many users are now defined.
    ///
    /// # Errors
    ///
    /// [`AclError::NoFile`] without `--acl-file`, else as [`Acl::build`].
    pub fn reload(&self) -> Result<usize, AclError> {
        if self.settings.acl_file.is_none() {
            return Err(AclError::NoFile);
        }
        match Acl::build(&self.settings) {
            Ok(acl) => {
                let users = acl.users.len();
                *self.current.write().expect("acl lock") = Arc::new(acl);
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.counters.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!("ACL reloaded: {users} users");
                Ok(users)
            }
            Err(e) => {
                self.counters
                    .reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!("ACL reload failed, the users in force are kept: {e}");
                Err(e)
            }
        }
    }

    /// Brings a connection's user up to date after a reload: the same
    /// user's new rights, or `None` if it is gone or off. `seen` is the
    /// generation the connection last saw.
    pub fn refresh(&self, user: &mut Option<Arc<User>>, seen: &mut u64) {
        let now = self.generation();
        if *seen == now {
            return;
        }
        *seen = now;
        if let Some(u) = user.take() {
            *user = self
                .current()
                .user(u.name())
                .filter(|u| u.is_enabled())
                .cloned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(file: Option<&str>, pass: Option<&str>) -> (AuthSettings, Option<PathBuf>) {
        let path = file.map(|text| {
            static SEQ: AtomicU64 = AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "gridkv-acl-store-{}-{}.acl",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&path, text).unwrap();
            path
        });
        (
            AuthSettings {
                requirepass: pass.map(str::to_owned),
                acl_file: path.clone(),
            },
            path,
        )
    }

    #[test]
    fn without_settings_everyone_is_default() {
        let acl = Acl::build(&AuthSettings::default()).unwrap();
        let user = acl.initial_user().expect("logged in at once");
        assert_eq!(user.name(), "default");
        assert_eq!(
            acl.authenticate_default(b"x"),
            Err(AuthFailure::NoPasswordConfigured)
        );
        assert!(acl.authenticate(b"default", b"anything").is_ok());
        assert_eq!(acl.authenticate(b"bob", b"x"), Err(AuthFailure::WrongPass));
    }

    #[test]
    fn requirepass_and_the_file_combine() {
        // The file does not define default: requirepass gives its password.
        let (s, path) = settings(Some("user app on >a ~* +@read\n"), Some("pw"));
        let acl = Acl::build(&s).unwrap();
        assert!(acl.initial_user().is_none());
        assert!(acl.authenticate_default(b"pw").is_ok());
        assert!(acl.authenticate(b"app", b"a").is_ok());
        assert_eq!(acl.authenticate(b"app", b"pw"), Err(AuthFailure::WrongPass));
        std::fs::remove_file(path.unwrap()).unwrap();
        // Nor requirepass: default is off.
        let (s, path) = settings(Some("user app on >a ~* +@read\n"), None);
        let acl = Acl::build(&s).unwrap();
        assert!(acl.initial_user().is_none());
        assert!(!acl.user("default").unwrap().is_enabled());
        assert_eq!(acl.authenticate_default(b""), Err(AuthFailure::WrongPass));
        std::fs::remove_file(path.unwrap()).unwrap();
        // Both define default: refused.
        let (s, path) = settings(Some("user default on >a ~* +@all\n"), Some("pw"));
        assert!(matches!(Acl::build(&s), Err(AclError::Conflict { .. })));
        std::fs::remove_file(path.unwrap()).unwrap();
        // An off user cannot log in, even with its password.
        let (s, path) = settings(Some("user app off >a ~* +@all\n"), None);
        let acl = Acl::build(&s).unwrap();
        assert_eq!(acl.authenticate(b"app", b"a"), Err(AuthFailure::WrongPass));
        std::fs::remove_file(path.unwrap()).unwrap();
    }

    #[test]
    fn reload_keeps_the_old_users_on_failure_and_refreshes_sessions() {
        let (s, path) = settings(Some("user a on >1 ~* +@all\nuser b on >2 ~* +@all\n"), None);
        let path = path.unwrap();
        let store = AclStore::new(s).unwrap();
        let mut a = Some(store.current().authenticate(b"a", b"1").unwrap());
        let mut b = Some(store.current().authenticate(b"b", b"2").unwrap());
        let (mut seen_a, mut seen_b) = (store.generation(), store.generation());
        std::fs::write(&path, "user a on >1 ~x:* +@read\nuser b on >2 +@nosuch\n").unwrap();
        let e = store.reload().unwrap_err();
        assert!(e.to_string().contains(":2: "), "{e}");
        assert_eq!(store.generation(), 0);
        assert!(store.current().authenticate(b"b", b"2").is_ok(), "kept");
        std::fs::write(&path, "user a on >1 ~x:* +@read\nuser b off >2\n").unwrap();
        assert_eq!(store.reload(), Ok(3));
        store.refresh(&mut a, &mut seen_a);
        store.refresh(&mut b, &mut seen_b);
        let a = a.expect("a stays logged in");
        assert!(!a.has_all_keys(), "with its new rights");
        assert!(b.is_none(), "b is off now");
        assert_eq!(seen_a, 1);
        assert_eq!(store.counters.reloads.load(Ordering::Relaxed), 1);
        assert_eq!(store.counters.reload_failures.load(Ordering::Relaxed), 1);
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(store.reload(), Err(AclError::Read { .. })));
        assert_eq!(AclStore::open().reload(), Err(AclError::NoFile));
    }
}
