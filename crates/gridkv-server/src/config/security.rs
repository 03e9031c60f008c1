//! The security settings of `gridkv node` (issue 16): cluster TLS files,
//! client authentication, TLS on the RESP and HTTP listeners, and the
//! admin token.
//!
//! | flag | variable | file key | default |
//! |---|---|---|---|
//! | `--tls-ca` | `GRIDKV_TLS_CA` | `tls_ca` | none |
//! | `--tls-cert` | `GRIDKV_TLS_CERT` | `tls_cert` | none |
//! | `--tls-key` | `GRIDKV_TLS_KEY` | `tls_key` | none |
//! | `--insecure` | `GRIDKV_INSECURE` | `insecure` | off |
//! | `--requirepass` | `GRIDKV_REQUIREPASS` | `requirepass` | none |
//! | `--acl-file` | `GRIDKV_ACL_FILE` | `acl_file` | none |
//! | `--resp-tls` | `GRIDKV_RESP_TLS` | `resp_tls` | off |
//! | `--resp-tls-client-certs` | `GRIDKV_RESP_TLS_CLIENT_CERTS` | `resp_tls_client_certs` | `none` |
//! | `--admin-token` | `GRIDKV_ADMIN_TOKEN` | `admin_token` | none |
//! | `--admin-token-file` | `GRIDKV_ADMIN_TOKEN_FILE` | `admin_token_file` | none |
//! | `--http-tls` | `GRIDKV_HTTP_TLS` | `http_tls` | off |
//! | `--http-tls-cert` | `GRIDKV_HTTP_TLS_CERT` | `http_tls_cert` | the node's (`--tls-cert`) |
//! | `--http-tls-key` | `GRIDKV_HTTP_TLS_KEY` | `http_tls_key` | the node's (`--tls-key`) |
//!
//! A switch is on if its flag, its variable (`1`, `true`, `yes`, `on`) or
//! its file key (`true`) says so.

use std::path::PathBuf;

use clap::Args;

use super::{ConfigError, FileConfig};
use crate::auth::AuthSettings;

/// The security flags of `gridkv node`, flattened into
/// [`NodeArgs`](super::NodeArgs).
#[derive(Debug, Clone, Default, Args)]
pub struct SecurityArgs {
    /// The cluster's trust bundle: every CA certificate (PEM) whose
    /// certificates this node accepts.
    #[arg(long, env = "GRIDKV_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// This node's certificate chain (PEM, leaf first), signed by a CA of
    /// the bundle and naming this node's id.
    #[arg(long, env = "GRIDKV_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM, PKCS#8).
    #[arg(long, env = "GRIDKV_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Run the cluster in plaintext on addresses that are not loopback.
    #[arg(long, env = "GRIDKV_INSECURE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub insecure: bool,
    /// The password of the RESP user `default`: clients must `AUTH` first.
    #[arg(long, env = "GRIDKV_REQUIREPASS", value_name = "PASSWORD")]
    pub requirepass: Option<String>,
    /// RESP users in Redis ACL file syntax (`user NAME on >PASS ~KEYS
    /// +@CATEGORY ...`); `ACL LOAD` re-reads it.
    #[arg(long, env = "GRIDKV_ACL_FILE", value_name = "FILE")]
    pub acl_file: Option<PathBuf>,
    /// Make the RESP listener TLS-only, with the node's certificate.
    #[arg(long, env = "GRIDKV_RESP_TLS", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub resp_tls: bool,
    /// Client certificates on the RESP listener, checked against
    /// `--tls-ca`: `none` (default), `optional` or `required`.
    #[arg(
        long,
        env = "GRIDKV_RESP_TLS_CLIENT_CERTS",
        value_name = "none|optional|required",
        value_enum
    )]
    pub resp_tls_client_certs: Option<ClientCerts>,
    /// The bearer token the HTTP admin asks for (`Authorization: Bearer
    /// TOKEN`) on state-changing endpoints, and on `/cluster` and
    /// `/metrics` when it is not bound to loopback.
    #[arg(long, env = "GRIDKV_ADMIN_TOKEN", value_name = "TOKEN")]
    pub admin_token: Option<String>,
    /// A file holding the admin token (its first line), so the token is
    /// not on the command line.
    #[arg(long, env = "GRIDKV_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Make the HTTP admin listener TLS-only.
    #[arg(long, env = "GRIDKV_HTTP_TLS", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub http_tls: bool,
    /// The HTTP admin's certificate, if not the node's (browsers need
    /// P-256 or RSA: they refuse Ed25519).
    #[arg(long, env = "GRIDKV_HTTP_TLS_CERT", value_name = "FILE")]
    pub http_tls_cert: Option<PathBuf>,
    /// The key of `--http-tls-cert`.
    #[arg(long, env = "GRIDKV_HTTP_TLS_KEY", value_name = "FILE")]
    pub http_tls_key: Option<PathBuf>,
}

/// Whether a TLS listener asks its clients for a certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCerts {
    /// Never asked.
    #[default]
    None,
    /// Asked; a client without one is served, one with a certificate that
    /// does not chain to `--tls-ca` is refused.
    Optional,
    /// A client without a valid certificate is refused at the handshake.
    Required,
}

/// The cluster's TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--tls-ca`: the trust bundle.
    pub ca: PathBuf,
    /// `--tls-cert`: the node's chain.
    pub cert: PathBuf,
    /// `--tls-key`: the node's key.
    pub key: PathBuf,
}

/// A certificate chain and its key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKey {
    /// The chain, leaf first.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// The security settings, merged and checked.
///
/// # Examples
///
/// ```
/// use gridkv_server::config::{FileConfig, NodeArgs, SecurityArgs, ServerConfig};
///
/// let args = NodeArgs {
///     id: Some("n1".into()),
///     security: SecurityArgs { requirepass: Some("pw".into()), ..Default::default() },
///     ..NodeArgs::default()
/// };
/// let file: FileConfig = toml::from_str("insecure = true").unwrap();
/// let config = ServerConfig::merge(args, file).unwrap();
/// assert_eq!(config.security.auth.requirepass.as_deref(), Some("pw"));
/// assert!(config.security.insecure);
/// assert!(!config.security.resp_tls);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecurityConfig {
    /// Cluster TLS (`--tls-ca`, `--tls-cert`, `--tls-key`, all or none).
    pub tls: Option<TlsFiles>,
    /// `--insecure`.
    pub insecure: bool,
    /// `--requirepass` and `--acl-file`.
    pub auth: AuthSettings,
    /// `--resp-tls`.
    pub resp_tls: bool,
    /// `--resp-tls-client-certs`.
    pub resp_client_certs: ClientCerts,
    /// The admin token, from `--admin-token` or `--admin-token-file`.
    pub admin_token: Option<String>,
    /// `--http-tls`.
    pub http_tls: bool,
    /// `--http-tls-cert` and `--http-tls-key`.
    pub http_cert: Option<CertKey>,
}

/// Secrets are not printed (a config may be logged).
impl std::fmt::Debug for SecurityConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |set: bool| if set { "<set>" } else { "<none>" };
        f.debug_struct("SecurityConfig")
            .field("tls", &self.tls)
            .field("insecure", &self.insecure)
            .field("requirepass", &hidden(self.auth.requirepass.is_some()))
            .field("acl_file", &self.auth.acl_file)
            .field("resp_tls", &self.resp_tls)
            .field("resp_client_certs", &self.resp_client_certs)
            .field("admin_token", &hidden(self.admin_token.is_some()))
            .field("http_tls", &self.http_tls)
            .field("http_cert", &self.http_cert)
            .finish()
    }
}

impl SecurityConfig {
    /// The certificate the RESP listener presents (`--resp-tls`): the
    /// node's.
    pub fn resp_cert(&self) -> Option<CertKey> {
        self.tls.as_ref().map(|t| CertKey {
            cert: t.cert.clone(),
            key: t.key.clone(),
        })
    }

    /// The certificate the HTTP listener presents (`--http-tls`): its own
    /// if given, else the node's.
    pub fn http_cert(&self) -> Option<CertKey> {
        self.http_cert.clone().or_else(|| self.resp_cert())
    }

    /// Merges flags (and variables) over the file's keys and checks the
    /// combination.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the setting at fault.
    pub(super) fn merge(args: SecurityArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let pick = |flag: Option<PathBuf>, key: &Option<PathBuf>| flag.or_else(|| key.clone());
        let ca = pick(args.tls_ca, &file.tls_ca);
        let cert = pick(args.tls_cert, &file.tls_cert);
        let key = pick(args.tls_key, &file.tls_key);
        let tls = match (ca, cert, key) {
            (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca, cert, key }),
            (None, None, None) => None,
            (ca, cert, key) => {
                let missing = [("tls_ca", ca), ("tls_cert", cert), ("tls_key", key)]
                    .into_iter()
                    .find(|(_, v)| v.is_none())
                    .map_or("tls_ca", |(k, _)| k);
                return Err(ConfigError::new(
                    missing,
                    "--tls-ca, --tls-cert and --tls-key go together: give all three or none",
                ));
            }
        };
        let requirepass = args.requirepass.or_else(|| file.requirepass.clone());
        if requirepass.as_deref() == Some("") {
            return Err(ConfigError::new("requirepass", "must not be empty"));
        }
        let admin_token = match (
            args.admin_token.or_else(|| file.admin_token.clone()),
            pick(args.admin_token_file, &file.admin_token_file),
        ) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "admin_token_file",
                    "give --admin-token or --admin-token-file, not both",
                ));
            }
            (Some(token), None) => Some(token),
            (None, Some(path)) => Some(read_token(&path)?),
            (None, None) => None,
        };
        if admin_token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(ConfigError::new("admin_token", "must not be empty"));
        }
        let http_cert = match (
            pick(args.http_tls_cert, &file.http_tls_cert),
            pick(args.http_tls_key, &file.http_tls_key),
        ) {
            (Some(cert), Some(key)) => Some(CertKey { cert, key }),
            (None, None) => None,
            (_, None) => {
                return Err(ConfigError::new(
                    "http_tls_key",
                    "--http-tls-cert needs its key (--http-tls-key)",
                ));
            }
            (None, _) => {
                return Err(ConfigError::new(
                    "http_tls_cert",
                    "--http-tls-key needs its certificate (--http-tls-cert)",
                ));
            }
        };
        let config = SecurityConfig {
            tls,
            insecure: args.insecure || file.insecure.unwrap_or(false),
            auth: AuthSettings {
                requirepass,
                acl_file: pick(args.acl_file, &file.acl_file),
            },
            resp_tls: args.resp_tls || file.resp_tls.unwrap_or(false),
            resp_client_certs: args
                .resp_tls_client_certs
                .or(file.resp_tls_client_certs)
                .unwrap_or_default(),
            admin_token,
            http_tls: args.http_tls || file.http_tls.unwrap_or(false),
            http_cert,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.resp_tls && self.tls.is_none() {
            return Err(ConfigError::new(
                "resp_tls",
                "needs the node's certificate: --tls-ca, --tls-cert and --tls-key",
            ));
        }
        if self.resp_client_certs != ClientCerts::None && !self.resp_tls {
            return Err(ConfigError::new(
                "resp_tls_client_certs",
                "client certificates need --resp-tls",
            ));
        }
        if self.http_tls && self.http_cert().is_none() {
            return Err(ConfigError::new(
                "http_tls",
                "needs a certificate: --tls-cert and --tls-key (with --tls-ca), \
                 or --http-tls-cert and --http-tls-key",
            ));
        }
        if self.http_cert.is_some() && !self.http_tls {
            return Err(ConfigError::new(
                "http_tls_cert",
                "a certificate for the HTTP admin needs --http-tls",
            ));
        }
        // The users are read now, so a bad ACL file stops the start with
        // its file and line.
        crate::auth::Acl::build(&self.auth).map_err(|e| {
            let setting = if matches!(e, crate::auth::AclError::Conflict { .. }) {
                "requirepass"
            } else {
                "acl_file"
            };
            ConfigError::new(setting, e.to_string())
        })?;
        Ok(())
    }
}

/// The admin token in `path`: its first line, without surrounding spaces.
fn read_token(path: &std::path::Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(64 << 10).read_to_string(&mut text))
        .map_err(|e| {
            ConfigError::new(
                "admin_token_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
    let token = text.lines().next().unwrap_or_default().trim().to_owned();
    if token.is_empty() {
        return Err(ConfigError::new(
            "admin_token_file",
            format!("{}: the first line is empty", path.display()),
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NodeArgs, ServerConfig};

    fn merge(security: SecurityArgs, file: &str) -> Result<ServerConfig, ConfigError> {
        let args = NodeArgs {
            id: Some("n1".into()),
            security,
            ..NodeArgs::default()
        };
        ServerConfig::merge(args, toml::from_str(file).unwrap())
    }

    fn p(s: &str) -> Option<PathBuf> {
        Some(PathBuf::from(s))
    }

    /// Real certificates for node `n1` (the node loads them when the
    /// config is checked), made once per test process.
    fn pki() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gridkv-security-{}", std::process::id()));
        if !dir.join("n1/node.key").exists() {
            let from = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
            crate::cert::make_cluster(&dir, &["n1".to_owned()], &[], from, 1).unwrap();
        }
        dir
    }

    fn tls() -> SecurityArgs {
        let dir = pki();
        SecurityArgs {
            tls_ca: Some(dir.join("ca/ca.pem")),
            tls_cert: Some(dir.join("n1/node.pem")),
            tls_key: Some(dir.join("n1/node.key")),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_off() {
        let c = merge(SecurityArgs::default(), "").unwrap().security;
        assert_eq!(c, SecurityConfig::default());
        assert_eq!(c.resp_client_certs, ClientCerts::None);
    }

    #[test]
    fn file_keys_and_flags() {
        let c = merge(
            SecurityArgs {
                resp_tls: true,
                ..tls()
            },
            "insecure = true\nrequirepass = \"pw\"\nresp_tls_client_certs = \"required\"\nhttp_tls = true\nadmin_token = \"t0k\"",
        )
        .unwrap()
        .security;
        assert!(c.insecure && c.resp_tls && c.http_tls);
        assert_eq!(c.resp_client_certs, ClientCerts::Required);
        assert_eq!(c.admin_token.as_deref(), Some("t0k"));
        assert_eq!(c.http_cert().unwrap().cert, pki().join("n1/node.pem"));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("t0k") && !shown.contains("\"pw\""),
            "{shown}"
        );
        // The file alone gives the cluster files too.
        let dir = pki();
        let file = format!(
            "tls_ca = {:?}\ntls_cert = {:?}\ntls_key = {:?}",
            dir.join("ca/ca.pem"),
            dir.join("n1/node.pem"),
            dir.join("n1/node.key")
        );
        let c = merge(SecurityArgs::default(), &file).unwrap().security;
        assert_eq!(c.tls.unwrap().key, dir.join("n1/node.key"));
        assert!(toml::from_str::<FileConfig>("resp_tls_client_certs = \"maybe\"").is_err());
    }

    #[test]
    fn invalid_combinations_name_the_setting() {
        for (args, file, setting, words) in [
            (
                SecurityArgs {
                    tls_cert: p("n.pem"),
                    tls_key: p("n.key"),
                    ..Default::default()
                },
                "",
                "tls_ca",
                "go together",
            ),
            (
                SecurityArgs {
                    resp_tls: true,
                    ..Default::default()
                },
                "",
                "resp_tls",
                "--tls-cert",
            ),
            (
                tls(),
                "http_tls = true\nhttp_tls_cert = \"x\"",
                "http_tls_key",
                "its key",
            ),
            (
                SecurityArgs {
                    http_tls: true,
                    ..Default::default()
                },
                "",
                "http_tls",
                "--http-tls-cert",
            ),
            (
                tls(),
                "http_tls_cert = \"x\"\nhttp_tls_key = \"y\"",
                "http_tls_cert",
                "needs --http-tls",
            ),
            (
                tls(),
                "resp_tls_client_certs = \"optional\"",
                "resp_tls_client_certs",
                "--resp-tls",
            ),
            (
                SecurityArgs {
                    admin_token: Some("a".into()),
                    admin_token_file: p("t"),
                    ..Default::default()
                },
                "",
                "admin_token_file",
                "not both",
            ),
            (
                SecurityArgs {
                    requirepass: Some(String::new()),
                    ..Default::default()
                },
                "",
                "requirepass",
                "empty",
            ),
            (
                SecurityArgs {
                    acl_file: p("/nonexistent/users.acl"),
                    ..Default::default()
                },
                "",
                "acl_file",
                "cannot read",
            ),
        ] {
            let e = merge(args, file).unwrap_err();
            assert_eq!(e.setting, setting, "{e}");
            assert!(e.to_string().contains(words), "{e}");
        }
    }

    #[test]
    fn admin_token_from_a_file() {
        let path = std::env::temp_dir().join(format!("gridkv-token-{}", std::process::id()));
        std::fs::write(&path, "  s3cret-token \nignored\n").unwrap();
        let c = merge(
            SecurityArgs {
                admin_token_file: Some(path.clone()),
                ..Default::default()
            },
            "",
        )
        .unwrap()
        .security;
        assert_eq!(c.admin_token.as_deref(), Some("s3cret-token"));
        std::fs::write(&path, "\n").unwrap();
        let e = merge(
            SecurityArgs {
                admin_token_file: Some(path.clone()),
                ..Default::default()
            },
            "",
        )
        .unwrap_err();
        assert!(e.to_string().contains("first line is empty"), "{e}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn an_acl_file_defining_default_conflicts_with_requirepass() {
        let path = std::env::temp_dir().join(format!("gridkv-conflict-{}.acl", std::process::id()));
        std::fs::write(&path, "user default on >x ~* +@all\n").unwrap();
        let e = merge(
            SecurityArgs {
                acl_file: Some(path.clone()),
                requirepass: Some("pw".into()),
                ..Default::default()
            },
            "",
        )
        .unwrap_err();
        assert_eq!(e.setting, "requirepass");
        std::fs::write(&path, "user default on >x ~* +@all\nuser a on +@bogus\n").unwrap();
        let e = merge(
            SecurityArgs {
                acl_file: Some(path.clone()),
                ..Default::default()
            },
            "",
        )
        .unwrap_err();
        assert_eq!(e.setting, "acl_file");
        assert!(e.to_string().contains(":2: unknown category"), "{e}");
        std::fs::remove_file(path).unwrap();
    }
}
