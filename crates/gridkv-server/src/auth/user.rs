//! One ACL user: whether it may log in, with which passwords, which
//! commands it may run and which keys it may touch, built by applying
//! Redis ACL rules (`on`, `>password`, `~pattern`, `+@read`, `-del`, ...)
//! in order, as `ACL SETUSER` and ACL files do.
//!
//! Passwords are kept only as SHA-256 digests (as Redis keeps them) and
//! compared in constant time.
//!
//! # Examples
//!
//! ```
//! use gridkv_server::auth::{User, index};
//!
//! let mut alice = User::new("alice");
//! for rule in ["on", ">s3cret", "~cache:*", "+@read", "-mget"] {
//!     alice.apply(rule).unwrap();
//! }
//! assert!(alice.check_password(b"s3cret"));
//! assert!(!alice.check_password(b"guess"));
//! assert!(alice.can_run(index("get").unwrap()));
//! assert!(!alice.can_run(index("mget").unwrap()));
//! assert!(!alice.can_run(index("set").unwrap()));
//! assert!(alice.can_access(b"cache:1") && !alice.can_access(b"other"));
//! assert_eq!(alice.describe(), format!(
//!     "user alice on #{} ~cache:* -@all +@read -mget",
//!     gridkv_server::auth::sha256_hex(b"s3cret")
//! ));
//! ```

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::category::{self, ALL_ENTRIES, Category, EntrySet};
use super::glob::{Glob, GlobError};

/// Most passwords one user may have.
pub const MAX_PASSWORDS: usize = 64;
/// Most key patterns one user may have.
pub const MAX_PATTERNS: usize = 1024;

/// A password's SHA-256 digest.
pub type Digest32 = [u8; 32];

/// The SHA-256 digest of `password`.
pub fn sha256(password: &[u8]) -> Digest32 {
    Sha256::digest(password).into()
}

/// The SHA-256 digest of `password` in lowercase hex, as `#hash` rules and
/// `ACL LIST` write it.
pub fn sha256_hex(password: &[u8]) -> String {
    hex(&sha256(password))
}

fn hex(digest: &Digest32) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Not a rule GridKV knows.
    #[error("unknown rule '{0}'")]
    Unknown(String),
    /// `+name`/`-name` of a command GridKV does not have.
    #[error("unknown command '{0}' in '{1}'")]
    UnknownCommand(String, String),
    /// `+@name`/`-@name` of a category GridKV does not have.
    #[error("unknown category '{0}' in '{1}' (GridKV has @all, {cats})", cats = categories())]
    UnknownCategory(String, String),
    /// `#hash`/`!hash` that is not 64 hex digits.
    #[error("'{0}': a password hash is 64 hex digits (the SHA-256 of the password)")]
    BadHash(String),
    /// `<password`/`!hash` of a password the user does not have.
    #[error("'{0}': the user has no such password")]
    NoSuchPassword(String),
    /// A key pattern refused.
    #[error("'{0}': {1}")]
    Pattern(String, GlobError),
    /// Too many passwords or patterns.
    #[error("more than {0} {1} for one user")]
    TooMany(usize, &'static str),
    /// A Redis rule a cache does not need (read/write key selectors).
    #[error("'{0}' is not supported by GridKV (use ~pattern for keys)")]
    Unsupported(String),
}

fn categories() -> String {
    Category::ALL
        .iter()
        .map(|c| format!("@{}", c.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One user of the ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    name: String,
    enabled: bool,
    nopass: bool,
    passwords: Vec<Digest32>,
    all_keys: bool,
    keys: Vec<Glob>,
    commands: EntrySet,
    /// `true`: the command rules below start from `+@all`; else `-@all`.
    from_all: bool,
    /// Command rules since the last `+@all`/`-@all`, for `ACL LIST`.
    command_rules: Vec<String>,
}

impl User {
    /// A user as Redis creates one: off, no password, no keys, no
    /// commands.
    pub fn new(name: &str) -> User {
        User {
            name: name.to_owned(),
            enabled: false,
            nopass: false,
            passwords: Vec::new(),
            all_keys: false,
            keys: Vec::new(),
            commands: 0,
            from_all: false,
            command_rules: Vec::new(),
        }
    }

    /// The `default` user of a node with no ACL file: on, any password,
    /// every key and command (Redis's default). With `password` (the
    /// `--requirepass` one) it needs that password.
    pub fn default_user(password: Option<&str>) -> User {
        let mut user = User::new("default");
        let pass = password.map(|p| format!(">{p}"));
        let rules = ["on", pass.as_deref().unwrap_or("nopass"), "~*", "+@all"];
        for rule in rules {
            user.apply(rule)
                .expect("the default user's rules are valid");
        }
        user
    }

    /// The user's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the user may log in (`on`).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether any password logs the user in (`nopass`).
    pub fn is_nopass(&self) -> bool {
        self.nopass
    }

    /// Whether `password` is one of the user's (any is, for `nopass`),
    /// compared digest against digest in constant time: every stored
    /// digest is compared, and each comparison takes the same time
    /// wherever the digests differ.
    pub fn check_password(&self, password: &[u8]) -> bool {
        let digest = sha256(password);
        let mut ok = Choice::from(u8::from(self.nopass));
        for stored in &self.passwords {
            ok |= stored.ct_eq(&digest);
        }
        ok.into()
    }

    /// Whether the user may run entry `index` of
    /// [`ENTRIES`](super::ENTRIES).
    pub fn can_run(&self, index: usize) -> bool {
        self.commands & 1 << index != 0
    }

    /// Whether the user may touch `key`.
    pub fn can_access(&self, key: &[u8]) -> bool {
        self.all_keys || self.keys.iter().any(|p| p.matches(key))
    }

    /// Whether every key is allowed (`~*` or `allkeys`): commands need
    /// not look at their keys.
    pub fn has_all_keys(&self) -> bool {
        self.all_keys
    }

    /// Applies one rule, as `ACL SETUSER` does.
    ///
    /// # Errors
    ///
    /// [`RuleError`] naming the rule; the user is then unchanged.
    pub fn apply(&mut self, rule: &str) -> Result<(), RuleError> {
        let lower = rule.to_ascii_lowercase();
        match lower.as_str() {
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            "resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            "allkeys" => self.set_all_keys(),
            "resetkeys" => {
                self.all_keys = false;
                self.keys.clear();
            }
            "allcommands" => self.set_commands(true),
            "nocommands" => self.set_commands(false),
            "reset" => {
                let name = std::mem::take(&mut self.name);
                *self = User::new(&name);
            }
            // No pub/sub in GridKV: channel rules are accepted (so files
            // written by `ACL SAVE` of Redis load) and mean nothing.
            "allchannels" | "resetchannels" | "sanitize-payload" | "skip-sanitize-payload" => {}
            _ => return self.apply_prefixed(rule),
        }
        Ok(())
    }

    fn apply_prefixed(&mut self, rule: &str) -> Result<(), RuleError> {
        let mut chars = rule.chars();
        let first = chars.next();
        let rest = chars.as_str();
        match first {
            Some('>') => {
                self.add_password(sha256(rest.as_bytes()))?;
            }
            Some('<') => {
                let digest = sha256(rest.as_bytes());
                self.remove_password(&digest, rule)?;
            }
            Some('#') => {
                self.add_password(parse_hash(rest, rule)?)?;
            }
            Some('!') => {
                let digest = parse_hash(rest, rule)?;
                self.remove_password(&digest, rule)?;
            }
            Some('~') => {
                let glob = Glob::new(rest.as_bytes())
                    .map_err(|e| RuleError::Pattern(rule.to_owned(), e))?;
                if glob.is_all() {
                    self.set_all_keys();
                } else if !self.all_keys {
                    if self.keys.len() >= MAX_PATTERNS {
                        return Err(RuleError::TooMany(MAX_PATTERNS, "key patterns"));
                    }
                    self.keys.push(glob);
                }
            }
            Some('&') => {}
            Some('%') => return Err(RuleError::Unsupported(rule.to_owned())),
            Some(sign @ ('+' | '-')) => self.apply_command_rule(sign == '+', rest, rule)?,
            _ => return Err(RuleError::Unknown(rule.to_owned())),
        }
        Ok(())
    }

    fn apply_command_rule(&mut self, grant: bool, what: &str, rule: &str) -> Result<(), RuleError> {
        let set = if let Some(name) = what.strip_prefix('@') {
            if name.eq_ignore_ascii_case("all") {
                self.set_commands(grant);
                return Ok(());
            }
            let category = Category::parse(name)
                .ok_or_else(|| RuleError::UnknownCategory(name.to_owned(), rule.to_owned()))?;
            category::in_category(category)
        } else if what.contains('|') {
            category::index(what)
                .map(|i| 1 << i)
                .ok_or_else(|| RuleError::UnknownCommand(what.to_owned(), rule.to_owned()))?
        } else {
            match category::of_command(what) {
                0 => return Err(RuleError::UnknownCommand(what.to_owned(), rule.to_owned())),
                set => set,
            }
        };
        if grant {
            self.commands |= set;
        } else {
            self.commands &= !set;
        }
        self.command_rules.push(rule.to_ascii_lowercase());
        Ok(())
    }

    fn set_commands(&mut self, all: bool) {
        self.commands = if all { ALL_ENTRIES } else { 0 };
        self.from_all = all;
        self.command_rules.clear();
    }

    fn set_all_keys(&mut self) {
        self.all_keys = true;
        self.keys.clear();
    }

    fn add_password(&mut self, digest: Digest32) -> Result<(), RuleError> {
        if !self.passwords.contains(&digest) {
            if self.passwords.len() >= MAX_PASSWORDS {
                return Err(RuleError::TooMany(MAX_PASSWORDS, "passwords"));
            }
            self.passwords.push(digest);
        }
        self.nopass = false;
        Ok(())
    }

    fn remove_password(&mut self, digest: &Digest32, rule: &str) -> Result<(), RuleError> {
        let before = self.passwords.len();
        self.passwords.retain(|d| d != digest);
        if self.passwords.len() == before {
            // The rule names the password; show only its first character.
            let shown: String = rule.chars().take(2).collect();
            return Err(RuleError::NoSuchPassword(format!("{shown}...")));
        }
        Ok(())
    }

    /// The user as `ACL LIST` shows it: passwords as `#<sha256>`, never in
    /// clear.
    pub fn describe(&self) -> String {
        let mut words = vec![
            "user".to_owned(),
            self.name.clone(),
            if self.enabled { "on" } else { "off" }.to_owned(),
        ];
        if self.nopass {
            words.push("nopass".into());
        }
        words.extend(self.passwords.iter().map(|d| format!("#{}", hex(d))));
        if self.all_keys {
            words.push("~*".into());
        }
        words.extend(
            self.keys
                .iter()
                .map(|k| format!("~{}", String::from_utf8_lossy(k.as_bytes()))),
        );
        words.push(if self.from_all { "+@all" } else { "-@all" }.into());
        words.extend(self.command_rules.iter().cloned());
        words.join(" ")
    }
}

fn parse_hash(text: &str, rule: &str) -> Result<Digest32, RuleError> {
    let bad = || RuleError::BadHash(rule.to_owned());
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::index;

    fn user(rules: &[&str]) -> User {
        let mut u = User::new("u");
        for r in rules {
            u.apply(r).unwrap_or_else(|e| panic!("{r}: {e}"));
        }
        u
    }

    fn runs(u: &User, name: &str) -> bool {
        u.can_run(index(name).unwrap())
    }

    #[test]
    fn a_new_user_can_do_nothing() {
        let u = User::new("u");
        assert!(!u.is_enabled());
        assert!(!u.check_password(b""));
        assert!(!runs(&u, "get"));
        assert!(!u.can_access(b"k"));
        assert_eq!(u.describe(), "user u off -@all");
    }

    #[test]
    fn passwords_plain_hashed_and_removed() {
        let hash = sha256_hex(b"two");
        let mut u = user(&["on", ">one", &format!("#{}", hash.to_uppercase())]);
        assert!(u.check_password(b"one") && u.check_password(b"two"));
        assert!(!u.check_password(b"three") && !u.check_password(b""));
        u.apply("<one").unwrap();
        assert!(!u.check_password(b"one") && u.check_password(b"two"));
        u.apply(&format!("!{hash}")).unwrap();
        assert!(!u.check_password(b"two"));
        assert!(matches!(
            u.apply("<one"),
            Err(RuleError::NoSuchPassword(shown)) if shown == "<o..."
        ));
        u.apply("nopass").unwrap();
        assert!(u.check_password(b"anything"));
        u.apply(">again").unwrap();
        assert!(!u.check_password(b"anything"), "a password ends nopass");
        u.apply("resetpass").unwrap();
        assert!(!u.check_password(b"again"));
        for bad in ["#abc", &format!("#{}", "g".repeat(64)), "!00"] {
            assert!(matches!(u.apply(bad), Err(RuleError::BadHash(_))), "{bad}");
        }
    }

    #[test]
    fn command_rules_apply_in_order() {
        let u = user(&["+@all", "-@write", "+set", "-acl|list"]);
        assert!(runs(&u, "get") && runs(&u, "set") && runs(&u, "acl|whoami"));
        assert!(!runs(&u, "del") && !runs(&u, "mset") && !runs(&u, "acl|list"));
        assert!(runs(&u, "acl|load"));
        let u = user(&["+@read", "+acl", "-@dangerous"]);
        assert!(runs(&u, "get") && runs(&u, "acl|whoami") && runs(&u, "acl|cat"));
        assert!(!runs(&u, "acl|load") && !runs(&u, "set"));
        let u = user(&["allcommands", "nocommands", "+ping"]);
        assert!(runs(&u, "ping") && !runs(&u, "get"));
        assert_eq!(u.describe(), "user u off -@all +ping");
        let u = user(&["+@all", "-@admin"]);
        assert_eq!(u.describe(), "user u off +@all -@admin");
        for (rule, want) in [
            ("+nosuch", "unknown command 'nosuch'"),
            ("-acl|nosuch", "unknown command 'acl|nosuch'"),
            ("+@pubsub", "unknown category 'pubsub'"),
            ("%R~k", "not supported"),
            ("bogus", "unknown rule 'bogus'"),
        ] {
            let e = User::new("u").apply(rule).unwrap_err().to_string();
            assert!(e.contains(want), "{rule}: {e}");
        }
    }

    #[test]
    fn key_patterns() {
        let u = user(&["~a:*", "~b?"]);
        assert!(u.can_access(b"a:1") && u.can_access(b"bx"));
        assert!(!u.can_access(b"bxx") && !u.can_access(b"c"));
        assert!(!u.has_all_keys());
        let mut u = user(&["~a:*", "allkeys"]);
        assert!(u.has_all_keys() && u.can_access(b"zzz"));
        assert_eq!(u.describe(), "user u off ~* -@all");
        u.apply("resetkeys").unwrap();
        assert!(!u.can_access(b"a:1"));
        let u = user(&["~*"]);
        assert!(u.has_all_keys());
    }

    #[test]
    fn reset_and_bounds() {
        let mut u = user(&["on", ">p", "~*", "+@all"]);
        u.apply("reset").unwrap();
        assert_eq!(u, User::new("u"));
        let mut u = User::new("u");
        for i in 0..MAX_PASSWORDS {
            u.apply(&format!(">p{i}")).unwrap();
        }
        assert_eq!(
            u.apply(">one-more"),
            Err(RuleError::TooMany(MAX_PASSWORDS, "passwords"))
        );
        let d = User::default_user(None);
        assert!(d.is_enabled() && d.is_nopass() && d.has_all_keys());
        assert_eq!(d.describe(), "user default on nopass ~* +@all");
        let d = User::default_user(Some("pw"));
        assert!(d.check_password(b"pw") && !d.check_password(b"no"));
    }
}
