//! The data operations of [`GridKv`]: sets, gets, deletes, TTLs and the
//! batch calls, each timed into the node's metrics and handed to the
//! coordinator (or answered from the local store for a local read).

use std::time::Duration;

use tokio::time::Instant;

use super::GridKv;
use crate::replication::WriteData;
use crate::replication::{Error, ReadOptions, WriteOptions};
use crate::store::Lookup;

/// How long a key has left, as [`GridKv::ttl`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The key is absent, deleted or expired.
    Missing,
    /// The key has no expiry.
    Persistent,
    /// The key expires after this long (rounded down to milliseconds).
    ExpiresIn(Duration),
}

/// The data operations.
impl GridKv {
    /// Stores `value` under `key` on the key's owners (W of N must apply
    /// it), with no expiry.
    ///
    /// # Errors
    ///
    /// [`Error`]; a failed write is indeterminate (see [`Error`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let node = gridkv::GridKv::start(gridkv::GridKv::builder("d1").build()?).await?;
    /// node.ready().await?;
    /// node.set("user:1", "alice").await?;
    /// assert_eq!(node.get("user:1").await?.as_deref(), Some(&b"alice"[..]));
    /// node.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<bytes::Bytes>,
    ) -> Result<(), Error> {
        self.set_opts(key, value, WriteOptions::default()).await
    }

    /// A set with per-call options: a TTL ([`WriteOptions::ttl`]), the
    /// write quorum, a timeout, a sloppy quorum.
    ///
    /// # Errors
    ///
    /// As [`GridKv::set`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use gridkv::{GridKv, Ttl, WriteOptions};
    ///
    /// let node = GridKv::start(GridKv::builder("d2").build()?).await?;
    /// node.ready().await?;
    /// let session = WriteOptions::default().ttl(Duration::from_secs(60));
    /// node.set_opts("session:9", "token", session).await?;
    /// assert!(matches!(node.ttl("session:9").await?, Ttl::ExpiresIn(_)));
    /// node.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn set_opts(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<bytes::Bytes>,
        options: WriteOptions,
    ) -> Result<(), Error> {
        let expires_at = self.expires_at(&options)?;
        self.write(key.as_ref(), Some((value.into(), expires_at)), options)
            .await
            .map(|_| ())
    }

    /// The value of `key` (quorum read; `None` if absent, deleted or
    /// expired).
    ///
    /// # Errors
    ///
    /// [`Error`]: never a partial result.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<bytes::Bytes>, Error> {
        self.get_opts(key, ReadOptions::default()).await
    }

    /// A read with per-call options: the read quorum, a timeout, or
    /// [`ReadOptions::local`] for a local read.
    ///
    /// # Errors
    ///
    /// As [`GridKv::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use gridkv::{GridKv, ReadOptions};
    ///
    /// let node = GridKv::start(GridKv::builder("d3").build()?).await?;
    /// node.ready().await?;
    /// node.set("k", "v").await?;
    /// assert!(node.get_opts("k", ReadOptions::local()).await?.is_some());
    /// node.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_opts(
        &self,
        key: impl AsRef<[u8]>,
        options: ReadOptions,
    ) -> Result<Option<bytes::Bytes>, Error> {
        let key = key.as_ref();
        if options.local && !self.is_closed() {
            // Answered before any future of the network path is built.
            if let Some(result) = self.inner.coordinator.read_local(key) {
                self.count_local_read();
                return Ok(result?.into_value());
            }
        }
        Ok(self.read_remote(key, options).await?.into_value())
    }

    /// Deletes `key`; returns whether a live value was there (as far as the
    /// owners that applied the delete know).
    ///
    /// # Errors
    ///
    /// As [`GridKv::set`].
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        self.delete_opts(key, WriteOptions::default()).await
    }

    /// A delete with per-call options (quorum, timeout, sloppy).
    ///
    /// # Errors
    ///
    /// As [`GridKv::set`]; [`Error::InvalidOptions`] if `options` carry a
    /// TTL, which a delete cannot have.
    pub async fn delete_opts(
        &self,
        key: impl AsRef<[u8]>,
        options: WriteOptions,
    ) -> Result<bool, Error> {
        if options.ttl.is_some() || options.expires_at_ms.is_some() {
            return Err(Error::InvalidOptions("a delete takes no ttl"));
        }
        self.write(key.as_ref(), None, options).await
    }

    /// Whether `key` has a live value.
    ///
    /// # Errors
    ///
    /// As [`GridKv::get`].
    pub async fn exists(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        Ok(self.get(key).await?.is_some())
    }

    /// The time `key` has left (a quorum read).
    ///
    /// # Errors
    ///
    /// As [`GridKv::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use gridkv::{GridKv, Ttl};
    ///
    /// let node = GridKv::start(GridKv::builder("d4").build()?).await?;
    /// node.ready().await?;
    /// node.set("forever", "v").await?;
    /// assert_eq!(node.ttl("forever").await?, Ttl::Persistent);
    /// assert_eq!(node.ttl("nothing").await?, Ttl::Missing);
    /// node.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn ttl(&self, key: impl AsRef<[u8]>) -> Result<Ttl, Error> {
        let now = self.inner.coordinator.replica.hlc.cluster_ms();
        Ok(
            match self.lookup(key.as_ref(), ReadOptions::default()).await? {
                Lookup::Live(item) => match item.expires_at {
                    Some(at) => Ttl::ExpiresIn(Duration::from_millis(at.saturating_sub(now))),
                    None => Ttl::Persistent,
                },
                _ => Ttl::Missing,
            },
        )
    }

    /// Sets `key` to expire after `ttl`; returns whether it existed. A read,
    /// then a change of that value's expiry that applies to the version
    /// read only: a set or delete acknowledged meanwhile (or concurrently)
    /// always wins, and is never undone.
    ///
    /// # Errors
    ///
    /// As [`GridKv::set`].
    pub async fn expire(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<bool, Error> {
        let expires_at = self.expiry(ttl);
        self.check_expiry(expires_at)?;
        self.rewrite_expiry(key.as_ref(), Some(expires_at)).await
    }

    /// Removes `key`'s expiry; returns whether it had one (as Redis's
    /// `PERSIST`). A key that is absent or never expires is not written;
    /// like [`GridKv::expire`], it never undoes a concurrent set or delete.
    ///
    /// # Errors
    ///
    /// As [`GridKv::set`].
    pub async fn persist(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        self.rewrite_expiry(key.as_ref(), None).await
    }

    /// Reads several keys at once; one result per key, in order. At most
    /// [`GridKv::MANY_IN_FLIGHT`] of them are in flight at a time, all in
    /// the caller's task: dropping the returned future stops the reads.
    pub async fn get_many<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
    ) -> Vec<Result<Option<bytes::Bytes>, Error>> {
        let mut window = Window::new(keys.len());
        for key in keys {
            window.push(self.get(key.as_ref())).await;
        }
        window.finish().await
    }

    /// Writes several keys at once; one result per pair, in order. At most
    /// [`GridKv::MANY_IN_FLIGHT`] of them are in flight at a time, all in
    /// the caller's task. Dropping the returned future stops the batch:
    /// writes not yet started are not made; those already sent still reach
    /// every owner (or leave hints), as with a dropped [`GridKv::set`].
    pub async fn set_many<K: AsRef<[u8]>, V: Clone + Into<bytes::Bytes>>(
        &self,
        pairs: &[(K, V)],
    ) -> Vec<Result<(), Error>> {
        let mut window = Window::new(pairs.len());
        for (key, value) in pairs {
            window.push(self.set(key.as_ref(), value.clone())).await;
        }
        window.finish().await
    }

    /// How many operations of one [`GridKv::get_many`] or
    /// [`GridKv::set_many`] run at once.
    pub const MANY_IN_FLIGHT: usize = 64;

    /// The expiry of a value written now with `ttl`, in the cluster's
    /// time (the clock versions are stamped with), not the local wall
    /// clock's: a node whose clock is behind must not write values that
    /// other nodes find already expired.
    /// The expiry a write with `options` gives its value.
    pub(super) fn expires_at(&self, options: &WriteOptions) -> Result<Option<u64>, Error> {
        match (options.ttl, options.expires_at_ms) {
            (Some(_), Some(_)) => Err(Error::InvalidOptions(
                "a write takes a ttl or an expiry time, not both",
            )),
            (Some(ttl), None) => Ok(Some(self.expiry(ttl))),
            (None, at) => Ok(at),
        }
    }

    pub(super) fn expiry(&self, ttl: Duration) -> u64 {
        let now = self.inner.coordinator.replica.hlc.cluster_ms();
        now.saturating_add(ttl.as_millis().min(u64::MAX as u128) as u64)
    }

    async fn write(
        &self,
        key: &[u8],
        data: WriteData,
        options: WriteOptions,
    ) -> Result<bool, Error> {
        if self.is_closed() {
            return Err(Error::ShuttingDown);
        }
        self.until_serving(options.timeout).await?;
        self.check_stamp(&data)?;
        let histogram = match data {
            Some(_) => &self.inner.metrics.writes,
            None => &self.inner.metrics.deletes,
        };
        let started = Instant::now();
        let options = self.levelled_write(options);
        let result = Box::pin(self.inner.coordinator.write(key, data, options)).await;
        histogram.record(started.elapsed());
        result
    }

    fn count_local_read(&self) {
        self.inner
            .metrics
            .local_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub(super) async fn lookup(&self, key: &[u8], options: ReadOptions) -> Result<Lookup, Error> {
        if options.local && !self.is_closed() {
            if let Some(result) = self.inner.coordinator.read_local(key) {
                self.count_local_read();
                return result;
            }
        }
        self.read_remote(key, options).await
    }

    /// A read past the local fast path (already tried, or not asked for).
    async fn read_remote(&self, key: &[u8], options: ReadOptions) -> Result<Lookup, Error> {
        if self.is_closed() {
            return Err(Error::ShuttingDown);
        }
        self.until_serving(options.timeout).await?;
        // Boxed: the network path's state is large, and callers' futures
        // stay small.
        let started = Instant::now();
        let options = self.levelled_read(options);
        let result = Box::pin(self.inner.coordinator.read(key, options)).await;
        self.inner.metrics.reads.record(started.elapsed());
        result
    }

    /// Changes the expiry of `key`'s live value to `expires_at`; returns
    /// whether it did. The change applies to the version read only (see
    /// `Coordinator::write_expiry`): a set or delete acknowledged meanwhile
    /// is never undone. Nothing is written for an absent key, nor when
    /// removing the expiry of one that has none.
    pub(super) async fn rewrite_expiry(
        &self,
        key: &[u8],
        expires_at: Option<u64>,
    ) -> Result<bool, Error> {
        match self.lookup(key, ReadOptions::default()).await? {
            Lookup::Live(item) if expires_at.is_some() || item.expires_at.is_some() => {
                self.write_expiry_of(key, &item, expires_at).await.map(|()| true)
            }
            _ => Ok(false),
        }
    }

    /// Changes the expiry of `item`, which a read of `key` found, to
    /// `expires_at` (see `Coordinator::write_expiry`).
    pub(super) async fn write_expiry_of(
        &self,
        key: &[u8],
        item: &crate::store::Item,
        expires_at: Option<u64>,
    ) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::ShuttingDown);
        }
        let started = Instant::now();
        let coordinator = &self.inner.coordinator;
        let options = self.levelled_write(WriteOptions::default());
        let change = coordinator.write_expiry(key, item, expires_at, options);
        let result = Box::pin(change).await;
        self.inner.metrics.writes.record(started.elapsed());
        result
    }

    /// A write that owners apply only if `condition` holds (the second
    /// half of a read-modify-write: see `update`).
    pub(super) async fn write_if(
        &self,
        key: &[u8],
        data: WriteData,
        condition: crate::store::Condition,
        restore: Option<crate::replication::coordinator::Restore>,
        options: WriteOptions,
    ) -> Result<crate::replication::coordinator::Conditional, Error> {
        if self.is_closed() {
            return Err(Error::ShuttingDown);
        }
        self.until_serving(options.timeout).await?;
        self.check_stamp(&data)?;
        let histogram = match data {
            Some(_) => &self.inner.metrics.writes,
            None => &self.inner.metrics.deletes,
        };
        let started = Instant::now();
        let options = self.levelled_write(options);
        let result =
            Box::pin(self.inner.coordinator.write_if(key, data, condition, restore, options)).await;
        histogram.record(started.elapsed());
        result
    }
}

/// Operations run at once, at most [`GridKv::MANY_IN_FLIGHT`], all in the
/// caller's task (no task and no key copy per item: they wait on the
/// network, not on a CPU); results in the order they were pushed.
struct Window<F: Future> {
    running: futures_util::stream::FuturesOrdered<F>,
    out: Vec<F::Output>,
}

impl<F: Future> Window<F> {
    fn new(items: usize) -> Self {
        Self {
            running: futures_util::stream::FuturesOrdered::new(),
            out: Vec::with_capacity(items),
        }
    }

    /// Starts `op`, after waiting for the oldest one if the window is full.
    async fn push(&mut self, op: F) {
        use futures_util::StreamExt;
        if self.running.len() == GridKv::MANY_IN_FLIGHT {
            let done = self.running.next().await.expect("the window is full");
            self.out.push(done);
        }
        self.running.push_back(op);
    }

    /// Every result, in order.
    async fn finish(mut self) -> Vec<F::Output> {
        use futures_util::StreamExt;
        while let Some(done) = self.running.next().await {
            self.out.push(done);
        }
        self.out
    }
}
