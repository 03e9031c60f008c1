//! The whole keyspace: walking it ([`GridKv::scan`],
//! [`GridKv::count_keys`]; see `replication::keys` for how a step works)
//! and flushing it ([`GridKv::flush`]; see `replication::flush`).

use super::GridKv;
use crate::replication::{Error, ScanPage};

impl GridKv {
    /// How many keys a step of [`GridKv::count_keys`] asks for: the most
    /// one owner answers at a time.
    pub const SCAN_BATCH: usize = crate::replication::wire::MAX_BATCH_ENTRIES;

    /// One step of a walk over every key of the cluster (Redis's `SCAN`):
    /// start with cursor 0, pass each returned cursor to the next call,
    /// stop when it is 0 again. Each step answers about `count` keys with a
    /// live value, in ring order. A key present for the whole walk is
    /// returned at least once (twice is possible, as in Redis), whatever
    /// the ring does meanwhile, provided `W + R > N`; keys written or
    /// deleted during the walk may or may not be. The cursor is a position
    /// on the ring: it survives reconnects and coordinators.
    ///
    /// # Errors
    ///
    /// As [`GridKv::get`]: too few owners of a piece of the ring answered.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let node = gridkv::GridKv::start(gridkv::GridKv::builder("s1").build()?).await?;
    /// node.ready().await?;
    /// for i in 0..25 {
    ///     node.set(format!("k{i}"), "v").await?;
    /// }
    /// let mut seen = std::collections::HashSet::new();
    /// let mut cursor = 0;
    /// loop {
    ///     let page = node.scan(cursor, 10).await?;
    ///     seen.extend(page.keys);
    ///     cursor = page.cursor;
    ///     if cursor == 0 {
    ///         break;
    ///     }
    /// }
    /// assert_eq!(seen.len(), 25);
    /// node.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn scan(&self, cursor: u64, count: usize) -> Result<ScanPage, Error> {
        if self.is_closed() {
            return Err(Error::ShuttingDown);
        }
        self.until_serving(None).await?;
        Box::pin(self.inner.coordinator.scan_keys(cursor, count)).await
    }

    /// How many keys of the whole cluster hold a live value: a walk over
    /// every key ([`GridKv::scan`]), so its cost grows with the key count
    /// (keys, not values, cross the network). Keys written or deleted
    /// during the count may or may not be counted.
    ///
    /// # Errors
    ///
    /// As [`GridKv::scan`].
    pub async fn count_keys(&self) -> Result<u64, Error> {
        let mut cursor = 0;
        let mut total = 0;
        loop {
            let page = self.scan(cursor, Self::SCAN_BATCH).await?;
            total += page.keys.len() as u64;
            cursor = page.cursor;
            if cursor == 0 {
                return Ok(total);
            }
        }
    }

    /// Removes every key of the whole cluster (Redis's `FLUSHALL`): a
    /// versioned flush. Every member removes what was written before it
    /// and refuses it from then on, so no late write, hint, repair, fill
    /// or anti-entropy brings any of it back; writes made after it are
    /// kept. Members that join or restart learn of it before they serve.
    ///
    /// # Errors
    ///
    /// [`Error::FlushIncomplete`] naming the members that did not apply
    /// it (the others did); [`Error::ShuttingDown`], [`Error::NotReady`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let node = gridkv::GridKv::start(gridkv::GridKv::builder("f1").build()?).await?;
    /// node.ready().await?;
    /// node.set("a", "1").await?;
    /// node.flush().await?;
    /// assert_eq!(node.get("a").await?, None);
    /// assert!(node.flush_floor_ms().is_some());
    /// node.set("a", "2").await?;
    /// assert_eq!(node.get("a").await?.as_deref(), Some(&b"2"[..]));
    /// node.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn flush(&self) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::ShuttingDown);
        }
        self.until_serving(None).await?;
        Box::pin(self.inner.coordinator.flush()).await.map(drop)
    }

    /// When the last flush this node applied was taken (its floor's
    /// time, ms since the Unix epoch), if any.
    pub fn flush_floor_ms(&self) -> Option<u64> {
        let floor = self.inner.coordinator.replica.store.floor();
        (floor > crate::hlc::Version::ZERO).then(|| floor.ts.physical_ms())
    }
}
