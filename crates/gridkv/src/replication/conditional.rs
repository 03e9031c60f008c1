//! Writes that apply to what a read found: conditional writes (`SET NX`,
//! `GETDEL`, ...: [`Coordinator::write_if`], and taking back one that lost)
//! and expiry changes ([`Coordinator::write_expiry`]). The fan-out and the
//! attempts they share are the coordinator's.

use bytes::Bytes;
use tokio::time::Instant;

use super::coordinator::{Conditional, Coordinator, Outgoing, Restore};
use super::in_flight::{Request, Requests};
use super::placement::{Placement, Target};
use super::quorum::WritePlan;
use super::replica::WriteData;
use super::stats::Counters;
use super::wire::DataRequest;
use super::{Error, WriteOptions};
use crate::keyspace::key_hash;
use crate::store::{Condition, Item, Write};

/// The tombstone a read found, to put back where a conditional write
/// computed from that read is taken back (`None` for anything else).
pub(crate) fn restore_of(lookup: &crate::store::Lookup) -> Option<Restore> {
    match *lookup {
        crate::store::Lookup::Dead {
            version,
            expired_at,
            expiry_stamp,
        } => Some((version, expiry_stamp, expired_at)),
        _ => None,
    }
}

impl Coordinator {
    /// Writes a set (`Some`) or delete (`None`) of `key` that owners apply
    /// only if `condition` holds for what they store: the second half of a
    /// read-modify-write, which must apply to the state it read.
    ///
    /// [`Conditional::Conflict`] when the write fell short of its quorum
    /// and some owner refused it on its condition: it may still have
    /// reached other owners (and surface, as a failed write may). A sloppy
    /// quorum is not used: a stand-in cannot check the condition.
    ///
    /// A write that lost is taken back from the owners that applied it
    /// ([`Store::retract`](crate::store::Store::retract)), putting back
    /// `restore`, the tombstone its read found, if any.
    pub(crate) async fn write_if(
        &self,
        key: &[u8],
        data: WriteData,
        condition: Condition,
        restore: Option<Restore>,
        opts: WriteOptions,
    ) -> Result<Conditional, Error> {
        let opts = WriteOptions {
            sloppy: false,
            ..opts
        };
        let result = self
            .write_attempts(key, data, Some((condition, restore)), opts)
            .await;
        self.count(&result, &self.counters.writes);
        result
    }

    /// Changes the expiry of the value `item` that a read of `key` found,
    /// and of that value only: the write keeps the item's version and
    /// carries a new expiry stamp ([`Write::expiry_stamp`]), so every newer
    /// set or delete, acknowledged before or concurrently, wins over it on
    /// every replica; a replica that lacks the value gets it with the new
    /// expiry. A replica that holds something newer counts as done (the
    /// change is ordered before that write). Never re-stamped.
    pub(crate) async fn write_expiry(
        &self,
        key: &[u8],
        item: &Item,
        expires_at: Option<u64>,
        opts: WriteOptions,
    ) -> Result<(), Error> {
        let result = self.write_expiry_inner(key, item, expires_at, opts).await;
        self.count(&result, &self.counters.writes);
        result
    }

    async fn write_expiry_inner(
        &self,
        key: &[u8],
        item: &Item,
        expires_at: Option<u64>,
        opts: WriteOptions,
    ) -> Result<(), Error> {
        self.check_key(key)?;
        self.pass_write_barrier(&opts).await?;
        self.check_value(&item.value)?;
        // The stamp must follow the item's own (an earlier change may have
        // been stamped by a clock ahead of this one). Past the drift bound
        // this clock cannot follow: the change would be older than the
        // one it replaces, and every replica would ignore it.
        super::pulled::stamp_past(&self.replica.hlc, item.version.ts.max(item.expiry_stamp))?;
        let stamp = self.replica.hlc.new_version().ts;
        if stamp <= item.expiry_stamp {
            return Err(Error::ClockDrift(format!(
                "the new expiry stamp {stamp:?} is not past the current one {:?}",
                item.expiry_stamp
            )));
        }
        let write = Write {
            op: crate::store::WriteOp::Set {
                value: &item.value,
                expires_at,
            },
            ..item.write()
        }
        .with_expiry_stamp(stamp);
        let now = Instant::now();
        let deadline = now + opts.timeout.unwrap_or(self.config.timeout);
        let p = self.placement.load_full();
        let plan = WritePlan::new(&self.config, &p, &self.me, key_hash(key), &opts, now)?;
        let tally = plan.tally(item.version).superseded_applies();
        let out = Outgoing {
            key,
            write,
            condition: None,
        };
        let tally = self.fan_out(out, &plan, &p, deadline, tally).await?;
        if tally.satisfied() {
            Ok(())
        } else {
            Err(tally.failure(plan.w))
        }
    }

    /// Takes a conditional write that lost back from the owners (by plan
    /// slot), within the write's deadline, so that it does not spread over
    /// the write that won (see `Store::retract`: each owner drops it if it
    /// holds it, and refuses it for a while, should a read's repair bring
    /// it). An owner that does not answer in time keeps it: as any failed
    /// write, it may surface.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn retract(
        &self,
        key: &[u8],
        version: crate::hlc::Version,
        restore: Option<Restore>,
        slots: &[usize],
        plan: &WritePlan,
        p: &Placement,
        deadline: Instant,
    ) {
        let mut body: Option<Bytes> = None;
        let mut requests = Requests::default();
        for &slot in slots {
            let Some((id, _)) = plan.owners.get(slot) else {
                continue;
            };
            match p.target(&self.me, id) {
                Some(Target::Local) => {
                    let _ = self.replica.retract(key, version, restore);
                }
                Some(Target::Remote(addr)) => {
                    let body = body
                        .get_or_insert_with(|| {
                            Bytes::from(DataRequest::encode_retract(key, version, restore))
                        })
                        .clone();
                    requests.push(Request::new(slot, self.request(addr, body), None));
                }
                None => {}
            }
        }
        Counters::add(&self.counters.retractions, slots.len() as u64);
        while !requests.is_empty() {
            let next = requests.next(self.finisher.keeper());
            if !matches!(tokio::time::timeout_at(deadline, next).await, Ok(Some(_))) {
                break;
            }
        }
    }
}
