//! Reloading what a node reads from files while it runs: the cluster TLS
//! material (trust bundle, certificate, key), the RESP and HTTP
//! certificates, and the ACL file. On SIGHUP, and when any of those files
//! changes (checked every [`POLL`]); a reload that fails keeps what is in
//! force, and each one is a log line and a metric
//! (`gridkv_tls_reloads_total`, `gridkv_acl_reloads_total`). What to watch
//! and when is here; the reload itself is `RunningNode::reload_all`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::config::ServerConfig;

/// How often the watched files' modification times are compared.
pub const POLL: Duration = Duration::from_secs(2);

/// The files a node reloads, and what each looked like last time.
#[derive(Debug)]
pub struct Watched {
    files: Vec<(PathBuf, Option<Stamp>)>,
}

/// What tells a file changed: its modification time and length (a rename
/// over it changes both, or at least the time).
type Stamp = (SystemTime, u64);

fn stamp(path: &PathBuf) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl Watched {
    /// The files `config` names that a reload re-reads.
    pub fn new(config: &ServerConfig) -> Watched {
        let security = &config.security;
        let mut paths: Vec<PathBuf> = Vec::new();
        if let Some(tls) = &security.tls {
            paths.extend([tls.ca.clone(), tls.cert.clone(), tls.key.clone()]);
        }
        if let Some(http) = &security.http_cert {
            paths.extend([http.cert.clone(), http.key.clone()]);
        }
        if let Some(acl) = &security.auth.acl_file {
            paths.push(acl.clone());
        }
        paths.sort();
        paths.dedup();
        Watched {
            files: paths
                .into_iter()
                .map(|p| {
                    let s = stamp(&p);
                    (p, s)
                })
                .collect(),
        }
    }

    /// Whether any file changed since the last call (or since
    /// [`Watched::new`]).
    pub fn changed(&mut self) -> bool {
        let mut changed = false;
        for (path, last) in &mut self.files {
            let now = stamp(path);
            if now != *last {
                *last = now;
                changed = true;
            }
        }
        changed
    }

    /// Whether there is anything to watch.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// SIGHUP, as a stream of reload requests.
#[derive(Debug)]
pub struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    /// Listens for SIGHUP (from now on it no longer terminates the
    /// process).
    pub fn new() -> Hangup {
        Hangup {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// The next SIGHUP (never, where there is none).
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}

impl Default for Hangup {
    fn default() -> Self {
        Self::new()
    }
}
