//! Get-or-load with single-flight: [`GridKv::try_get_with`].
//!
//! On a miss, one caller in the process loads while the others for the
//! same key wait for its result; across the cluster, the key's primary
//! owner grants a bounded load lease (`replication::lease`), so the other
//! nodes' callers wait for the holder's write instead of loading too. A
//! closure cannot run in another process: each node runs its own loader,
//! only the lease decides which one does.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use super::GridKv;
use crate::replication::lease::LeaseAnswer;
use crate::replication::{Error, ReadOptions, WriteOptions};
use crate::store::{Condition, Lookup};

/// A loader's error, shared with every caller that waited on it.
pub type LoaderError = Arc<dyn std::error::Error + Send + Sync>;

/// Why [`GridKv::try_get_with`] answered no value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// The cache failed (reading, or writing what was loaded).
    #[error(transparent)]
    Cache(#[from] Error),
    /// The loader failed (this caller's, or the one it waited on). Nothing
    /// was cached.
    #[error("loader failed: {0}")]
    Loader(LoaderError),
    /// No value within the call's deadline: the loader (here or on the
    /// node holding the lease) took longer.
    #[error("no value within {0:?}")]
    Timeout(Duration),
}

/// How [`GridKv::try_get_with`] loads and keeps a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// The loaded value's TTL (default: none).
    pub ttl: Option<Duration>,
    /// The whole call's deadline, loader included (default 30 s); also
    /// the load lease's length.
    pub timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            ttl: None,
            timeout: Duration::from_secs(30),
        }
    }
}

impl LoadOptions {
    /// Keeps the loaded value for `ttl`.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Bounds the call (and the loader) by `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

type Shared = Option<Result<Bytes, LoadError>>;

/// The loads running in this process, by key: their callers wait on the
/// channel. An entry lives as long as its load.
#[derive(Debug, Default)]
pub(crate) struct Loads {
    running: Mutex<HashMap<Bytes, watch::Receiver<Shared>>>,
}

/// How often a caller waiting on another node's lease looks for the value.
const POLL: Duration = Duration::from_millis(20);

/// Removes its key's entry when the load ends, however it ends.
struct Leader<'a> {
    loads: &'a Loads,
    key: Bytes,
    tx: watch::Sender<Shared>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.loads.running.lock().remove(&self.key);
    }
}

impl GridKv {
    /// The value of `key`; on a miss, the value `loader` makes, written
    /// to the cluster (with `options.ttl`) and returned, the loader run
    /// once for all callers: concurrent callers in this process wait for
    /// one load (single-flight), and across the cluster the key's primary
    /// owner grants one node a load lease while the others wait for its
    /// write. So N application instances missing the same key cause one
    /// load, not N (a lease is advisory: when the primary cannot be
    /// reached, or the lease ends before the value is written, another
    /// load may run). The loaded value is cached only if the key did not
    /// change while the loader ran (a `set` or `delete` acknowledged
    /// meanwhile is newer than what it loaded: it is returned, not
    /// cached). A failing loader caches nothing: its error reaches
    /// the callers waiting on it; a hanging one is bounded by
    /// `options.timeout`. Named after moka's `try_get_with`.
    ///
    /// # Errors
    ///
    /// [`LoadError`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use gridkv::{GridKv, LoadOptions};
    ///
    /// let node = GridKv::start(GridKv::builder("l1").build()?).await?;
    /// node.ready().await?;
    /// let load = || async { Ok::<_, std::io::Error>(bytes::Bytes::from("from the db")) };
    /// let v = node.try_get_with("user:7", LoadOptions::default(), load).await?;
    /// assert_eq!(&v[..], b"from the db");
    /// // Now cached: the loader does not run again.
    /// let never = || async { Err::<bytes::Bytes, _>(std::io::Error::other("not called")) };
    /// assert_eq!(node.try_get_with("user:7", LoadOptions::default(), never).await?, v);
    /// node.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn try_get_with<F, Fut, E>(
        &self,
        key: impl AsRef<[u8]>,
        options: LoadOptions,
        loader: F,
    ) -> Result<Bytes, LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let key = key.as_ref();
        let deadline = Instant::now() + options.timeout;
        if let Some(value) = self.get(key).await? {
            return Ok(value);
        }
        let mut loader = Some(loader);
        loop {
            // Lead the load in this process, or wait for the one leading.
            let waiting = {
                let mut running = self.inner.loads.running.lock();
                let rx = running.get(key).cloned();
                if rx.is_none() {
                    let (tx, rx) = watch::channel(None);
                    running.insert(Bytes::copy_from_slice(key), rx);
                    Err(tx)
                } else {
                    Ok(rx)
                }
            };
            let waiting = match waiting {
                Ok(rx) => rx,
                Err(tx) => {
                    let leader = Leader {
                        loads: &self.inner.loads,
                        key: Bytes::copy_from_slice(key),
                        tx,
                    };
                    let loader = loader.take().expect("a caller leads once");
                    let result = self.load(key, options, deadline, loader).await;
                    leader.tx.send_replace(Some(result.clone()));
                    return result;
                }
            };
            let Some(mut rx) = waiting else { continue };
            let done = tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some)).await;
            match done {
                Ok(Ok(result)) => return result.clone().expect("waited for a result"),
                // The leader was dropped (its caller gave up): try again,
                // leading this time if nobody else does.
                Ok(Err(_)) => continue,
                Err(_) => return Err(LoadError::Timeout(options.timeout)),
            }
        }
    }

    /// This process's load of `key`: under the cluster's lease, unless the
    /// value appears meanwhile.
    async fn load<F, Fut, E>(
        &self,
        key: &[u8],
        options: LoadOptions,
        deadline: Instant,
        loader: F,
    ) -> Result<Bytes, LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let coordinator = &self.inner.coordinator;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LoadError::Timeout(options.timeout));
            }
            match coordinator.lease(key, left, false).await {
                LeaseAnswer::Granted => break,
                LeaseAnswer::Held(wait) => {
                    // Another node loads: wait for its write, or its
                    // lease's end (then ask again).
                    let until = (Instant::now() + wait).min(deadline);
                    while Instant::now() < until {
                        tokio::time::sleep(POLL.min(until - Instant::now())).await;
                        if let Some(value) = self.get(key).await? {
                            return Ok(value);
                        }
                    }
                }
            }
        }
        let result = self.run_loader(key, options, deadline, loader).await;
        coordinator.lease(key, Duration::ZERO, true).await;
        result
    }

    async fn run_loader<F, Fut, E>(
        &self,
        key: &[u8],
        options: LoadOptions,
        deadline: Instant,
        loader: F,
    ) -> Result<Bytes, LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // A holder before this one may have written it.
        let miss = self.lookup(key, ReadOptions::default()).await?;
        if let Lookup::Live(item) = miss {
            return Ok(item.user_value());
        }
        let loaded = match tokio::time::timeout_at(deadline, loader()).await {
            Err(_) => return Err(LoadError::Timeout(options.timeout)),
            Ok(Err(e)) => return Err(LoadError::Loader(Arc::from(e.into()))),
            Ok(Ok(value)) => value,
        };
        let write = WriteOptions {
            ttl: options.ttl,
            ..WriteOptions::default()
        };
        let expires_at = self.expires_at(&write)?;
        // Cached only if the key did not change while the loader ran: a
        // SET or DEL acknowledged meanwhile is newer than what it loaded.
        let restore = crate::replication::conditional::restore_of(&miss);
        let unchanged = Condition::Unchanged(miss.order().unwrap_or(Condition::ABSENT));
        let data = Some((loaded.clone(), expires_at));
        self.write_if(key, data, unchanged, restore, write).await?;
        Ok(loaded)
    }
}
