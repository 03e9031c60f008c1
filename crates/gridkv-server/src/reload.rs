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

/// The files a node reloads: for each, what it looked like when last
/// acted on, and at the last poll.
#[derive(Debug)]
pub struct Watched {
    files: Vec<(PathBuf, Option<Stamp>, Option<Stamp>)>,
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
                    (p, s, s)
                })
                .collect(),
        }
    }

    /// Whether any file changed since it was last acted on (or since
    /// [`Watched::new`]) and has stayed the same since the previous call:
    /// a file caught while it is being written (truncated, half there) is
    /// not read until it settles. An ACL file read empty mid-write would
    /// log every user out.
    pub fn changed(&mut self) -> bool {
        let mut changed = false;
        for (path, acted, seen) in &mut self.files {
            let now = stamp(path);
            if now != *seen {
                *seen = now;
            } else if now != *acted {
                *acted = now;
                changed = true;
            }
        }
        changed
    }

    /// Marks every file as read as it is now (a reload that read them
    /// all, on SIGHUP).
    pub fn read_now(&mut self) {
        for (path, acted, seen) in &mut self.files {
            let now = stamp(path);
            *acted = now;
            *seen = now;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_acted_on_once_the_file_settles() {
        let path = std::env::temp_dir().join(format!("gridkv-watch-{}.acl", std::process::id()));
        std::fs::write(&path, "user a on\n").unwrap();
        let mut watched = Watched {
            files: vec![(path.clone(), stamp(&path), stamp(&path))],
        };
        assert!(!watched.changed());
        // Caught mid-write: truncated, not read yet.
        std::fs::write(&path, "").unwrap();
        assert!(!watched.changed(), "a file just changed waits a poll");
        std::fs::write(&path, "user a on\nuser b on\n").unwrap();
        assert!(!watched.changed(), "still changing");
        assert!(watched.changed(), "settled: read once");
        assert!(!watched.changed());
        std::fs::write(&path, "user c on\n").unwrap();
        watched.read_now();
        assert!(!watched.changed() && !watched.changed(), "read on SIGHUP");
        std::fs::remove_file(&path).unwrap();
    }
}
