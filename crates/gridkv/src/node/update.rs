//! Read-modify-write operations of [`GridKv`]: store only if absent or
//! present, take a value, swap, expire at a time.
//!
//! Each reads the key (a quorum read), then writes what it computed as a
//! conditional write that owners apply only if what they store is not newer
//! than what was read ([`Condition`]): the write applies to the state it
//! read, so it never undoes a set, delete or flush made since (the
//! forgetting principle). When an owner stores something newer, the
//! operation reads again and retries, at most [`GridKv::UPDATE_ATTEMPTS`]
//! times ([`Error::Contended`] after that).
//!
//! A write that loses is taken back from the owners that applied it
//! before the call answers (the tombstone its read found put back), and a
//! conditional write is never re-stamped. One that fails otherwise (no
//! quorum, a timeout, an owner that did not answer the take-back) may have
//! reached some owners, and then spreads like any write. That is why
//! there is no `append`: its value holds the value it read, and surfacing
//! after a delete acknowledged meanwhile it would bring deleted data back.
//! The writes here hold only the caller's new value (or a delete).
//!
//! None of this is a lock or a transaction. During a partition, or with
//! `W + W <= N`, two writers can each find their condition holding on the
//! owners they reach, and both succeed; a write that fails (or reports a
//! conflict) may have reached some owners and surface later, as any failed
//! write may.

use std::time::Duration;

use bytes::Bytes;

use super::GridKv;
use crate::replication::coordinator::Conditional;
use crate::replication::{Error, ReadOptions, WriteData, WriteOptions};
use crate::store::{Condition, Lookup};

/// A live value and its expiry, as [`GridKv::get_found`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The value.
    pub value: Bytes,
    /// When it expires, in milliseconds since the Unix epoch (the
    /// cluster's time), if it does.
    pub expires_at_ms: Option<u64>,
}

/// A new expiry for [`GridKv::get_and_expire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryChange {
    /// Expire this long from now.
    In(Duration),
    /// Expire at this time, in milliseconds since the Unix epoch.
    AtMs(u64),
    /// Never expire.
    Persist,
}

/// One step of a read-modify-write: what to do about the state read.
enum Step<T> {
    /// Nothing to write: the answer.
    Done(T),
    /// Write `data` if `condition` holds; answer `then` when it did, and
    /// `on_conflict` (if any; else read again and retry) when it did not.
    Write {
        data: WriteData,
        condition: Condition,
        then: T,
        on_conflict: Option<T>,
    },
}

/// The order of what a read found, for a condition (zeros if nothing).
fn read_order(lookup: &Lookup) -> (crate::hlc::Version, crate::hlc::Timestamp) {
    lookup.order().unwrap_or(Condition::ABSENT)
}

impl GridKv {
    /// How many times a read-modify-write reads again after an owner
    /// refused its write because the key changed since its read.
    pub const UPDATE_ATTEMPTS: u32 = 5;

    /// The live value of `key` with its expiry (a quorum read), or `None`.
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
    /// use std::time::Duration;
    /// use gridkv::{GridKv, WriteOptions};
    ///
    /// let node = GridKv::start(GridKv::builder("u0").build()?).await?;
    /// node.ready().await?;
    /// node.set_opts("k", "v", WriteOptions::default().ttl(Duration::from_secs(60))).await?;
    /// let found = node.get_found("k").await?.unwrap();
    /// assert_eq!(&found.value[..], b"v");
    /// assert!(found.expires_at_ms.is_some());
    /// node.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_found(&self, key: impl AsRef<[u8]>) -> Result<Option<Found>, Error> {
        Ok(self
            .lookup(key.as_ref(), ReadOptions::default())
            .await?
            .into_item()
            .map(|item| Found {
                value: item.value,
                expires_at_ms: item.expires_at,
            }))
    }

    /// Stores `value` under `key` only if the key holds no live value
    /// (Redis's `SET NX`, the `add` of cache libraries); returns whether it
    /// stored it. Owners apply the write only if they hold no value newer
    /// than the read that found the key absent.
    ///
    /// Not a lock: during a partition two callers can both succeed, and a
    /// call that returns `false` may still have reached some owners and
    /// surface later (see `GridKv::take` and docs/SERVER.md).
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
    /// use gridkv::{GridKv, WriteOptions};
    ///
    /// let node = GridKv::start(GridKv::builder("u1").build()?).await?;
    /// node.ready().await?;
    /// assert!(node.set_if_absent("k", "first", WriteOptions::default()).await?);
    /// assert!(!node.set_if_absent("k", "second", WriteOptions::default()).await?);
    /// assert_eq!(node.get("k").await?.as_deref(), Some(&b"first"[..]));
    /// node.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn set_if_absent(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        options: WriteOptions,
    ) -> Result<bool, Error> {
        let value = value.into();
        let expires_at = self.expires_at(&options)?;
        self.update(key.as_ref(), options, |lookup| match lookup {
            Lookup::Live(_) => Step::Done(false),
            // Applied only where nothing newer than the read is stored (a
            // delete too: then a take-back puts back exactly what the
            // read found). A conflict answers false without reading
            // again: another writer got there first (or a delete did;
            // the caller may retry). Reading again would widen the window
            // in which a read repairs the loser's value onto other owners
            // before it is taken back.
            other => Step::Write {
                data: Some((value.clone(), expires_at)),
                condition: Condition::Unchanged(read_order(&other)),
                then: true,
                on_conflict: Some(false),
            },
        })
        .await
    }

    /// Stores `value` under `key` only if the key holds a live value
    /// (Redis's `SET XX`); returns whether it stored it. With no TTL in
    /// `options` the value never expires, as `SET XX` without `KEEPTTL`.
    ///
    /// # Errors
    ///
    /// As [`GridKv::set`]; [`Error::Contended`] if the key kept changing.
    pub async fn set_if_present(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        options: WriteOptions,
    ) -> Result<bool, Error> {
        let value = value.into();
        let expires_at = self.expires_at(&options)?;
        self.update(key.as_ref(), options, |lookup| match lookup {
            Lookup::Live(item) => Step::Write {
                data: Some((value.clone(), expires_at)),
                condition: Condition::Unchanged((item.version, item.expiry_stamp)),
                then: true,
                on_conflict: None,
            },
            _ => Step::Done(false),
        })
        .await
    }

    /// Stores `value` under `key` and returns the live value it replaced
    /// (Redis's `SET ... GET`).
    ///
    /// # Errors
    ///
    /// As [`GridKv::set`]; [`Error::Contended`] if the key kept changing.
    pub async fn swap(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        options: WriteOptions,
    ) -> Result<Option<Bytes>, Error> {
        let value = value.into();
        let expires_at = self.expires_at(&options)?;
        self.update(key.as_ref(), options, |lookup| {
            let condition = Condition::Unchanged(read_order(&lookup));
            Step::Write {
                data: Some((value.clone(), expires_at)),
                condition,
                then: lookup.into_value(),
                on_conflict: None,
            }
        })
        .await
    }

    /// Deletes `key` and returns the value it deleted (Redis's `GETDEL`);
    /// `None`, and nothing written, if it held none. The delete applies to
    /// the value read: a value written since is not deleted (the call reads
    /// again and takes that one instead).
    ///
    /// # Errors
    ///
    /// As [`GridKv::set`]; [`Error::Contended`] if the key kept changing.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let node = gridkv::GridKv::start(gridkv::GridKv::builder("u2").build()?).await?;
    /// node.ready().await?;
    /// node.set("job", "payload").await?;
    /// assert_eq!(node.take("job").await?.as_deref(), Some(&b"payload"[..]));
    /// assert_eq!(node.take("job").await?, None);
    /// node.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn take(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, Error> {
        self.update(key.as_ref(), WriteOptions::default(), |lookup| match lookup {
            // Unchanged, not merely "no newer value": of two callers taking
            // the same value, the second finds the first's delete and reads
            // again, so one value is taken once.
            Lookup::Live(item) => Step::Write {
                data: None,
                condition: Condition::Unchanged((item.version, item.expiry_stamp)),
                then: Some(item.user_value()),
                on_conflict: None,
            },
            _ => Step::Done(None),
        })
        .await
    }

    /// Sets `key` to expire at `at_ms` (milliseconds since the Unix epoch);
    /// returns whether it existed (Redis's `PEXPIREAT`). A time not in the
    /// future deletes the value read, as Redis does; like
    /// [`GridKv::expire`], the change applies to the value read only.
    ///
    /// # Errors
    ///
    /// As [`GridKv::set`].
    pub async fn expire_at(&self, key: impl AsRef<[u8]>, at_ms: u64) -> Result<bool, Error> {
        let key = key.as_ref();
        if at_ms <= self.inner.coordinator.replica.hlc.cluster_ms() {
            return Ok(self.take(key).await?.is_some());
        }
        self.check_expiry(at_ms)?;
        self.rewrite_expiry(key, Some(at_ms)).await
    }

    /// Reads `key` and changes its expiry (Redis's `GETEX`); the change
    /// applies to the value read only. A time not in the future deletes
    /// that value.
    ///
    /// # Errors
    ///
    /// As [`GridKv::set`].
    pub async fn get_and_expire(
        &self,
        key: impl AsRef<[u8]>,
        change: ExpiryChange,
    ) -> Result<Option<Bytes>, Error> {
        let key = key.as_ref();
        let expires_at = match change {
            ExpiryChange::In(ttl) => Some(self.expiry(ttl)),
            ExpiryChange::AtMs(at) => Some(at),
            ExpiryChange::Persist => None,
        };
        if let Some(at) = expires_at {
            if at <= self.inner.coordinator.replica.hlc.cluster_ms() {
                return self.take(key).await;
            }
            self.check_expiry(at)?;
        }
        let Some(item) = self.lookup(key, ReadOptions::default()).await?.into_item() else {
            return Ok(None);
        };
        if expires_at.is_some() || item.expires_at.is_some() {
            self.write_expiry_of(key, &item, expires_at).await?;
        }
        Ok(Some(item.user_value()))
    }

    /// Adds `delta` (negative: subtracts) to the counter at `key` and
    /// returns its value (Redis's `INCRBY`; `INCR`, `DECR` and `DECRBY` are
    /// the same call). Counters converge: increments made through any
    /// nodes, concurrently or on both sides of a partition, are all kept
    /// once acknowledged (a PN-counter per key; see `store::counter` with
    /// the `internals` feature, and docs/SERVER.md, "Counters"). An absent key counts from 0, one holding a decimal integer
    /// (a `SET`) from it; `get` reads the counter's integer, `set` replaces
    /// it, `delete` removes it, and TTLs apply as to any value (an
    /// increment keeps the TTL).
    ///
    /// What a counter does not give: the value returned is not unique
    /// across callers (two concurrent increments through different nodes
    /// may return the same value, or one may not include the other); an
    /// increment that fails may still count (a retry then counts twice);
    /// there is no compare-and-set.
    ///
    /// # Errors
    ///
    /// As [`GridKv::set`]; [`Error::NotAnInteger`] if the key holds
    /// another value, [`Error::Overflow`] past `i64`, and
    /// [`Error::CounterFull`] for a counter written through too many node
    /// runs.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let node = gridkv::GridKv::start(gridkv::GridKv::builder("c1").build()?).await?;
    /// node.ready().await?;
    /// assert_eq!(node.incr_by("hits", 1).await?, 1);
    /// assert_eq!(node.incr_by("hits", 41).await?, 42);
    /// assert_eq!(node.get("hits").await?.as_deref(), Some(&b"42"[..]));
    /// node.set("hits", "10").await?;
    /// assert_eq!(node.incr_by("hits", -3).await?, 7);
    /// node.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn incr_by(&self, key: impl AsRef<[u8]>, delta: i64) -> Result<i64, Error> {
        if self.is_closed() {
            return Err(Error::ShuttingDown);
        }
        self.until_serving(None).await?;
        let started = tokio::time::Instant::now();
        let coordinator = &self.inner.coordinator;
        let options = self.levelled_write(WriteOptions::default());
        let result = Box::pin(coordinator.incr(key.as_ref(), delta, options)).await;
        self.inner.metrics.writes.record(started.elapsed());
        result
    }

    /// Reads `key`, lets `step` decide, writes conditionally; again after a
    /// conflict, at most [`GridKv::UPDATE_ATTEMPTS`] times.
    async fn update<T>(
        &self,
        key: &[u8],
        options: WriteOptions,
        mut step: impl FnMut(Lookup) -> Step<T>,
    ) -> Result<T, Error> {
        let read = self.levelled_write(options).matching_read();
        for _ in 0..Self::UPDATE_ATTEMPTS {
            let lookup = self.lookup(key, read).await?;
            // The tombstone read, put back where a write that lost is
            // taken back.
            let restore = crate::replication::conditional::restore_of(&lookup);
            let (data, condition, then, on_conflict) = match step(lookup) {
                Step::Done(answer) => return Ok(answer),
                Step::Write {
                    data,
                    condition,
                    then,
                    on_conflict,
                } => (data, condition, then, on_conflict),
            };
            match self.write_if(key, data, condition, restore, options).await? {
                Conditional::Applied { .. } => return Ok(then),
                Conditional::Conflict => {
                    if let Some(answer) = on_conflict {
                        return Ok(answer);
                    }
                }
            }
        }
        Err(Error::Contended {
            attempts: Self::UPDATE_ATTEMPTS,
        })
    }
}
