//! Merging a counter's state into the stored copy of the same counter.

use super::{expired, table_hash, timer_for, ApplyOutcome, Shard, State, Write, WriteOp};

impl Shard {
    /// Merges a counter's state into the live copy of the same counter (same
    /// version) stored here: per slot, the larger totals, and the expiry of
    /// the later expiry change. `None` when the key holds no such copy, or
    /// either state is malformed: the ordinary version rules apply.
    pub(super) fn merge_counter(
        &mut self,
        hash: u64,
        key: &[u8],
        write: &Write<'_>,
        expires_at: u64,
        now: u64,
    ) -> Option<(ApplyOutcome, i64)> {
        use crate::store::counter::Counter;
        let WriteOp::Set { value: incoming, .. } = write.op else {
            return None;
        };
        let leaf = self.leaf_index(hash);
        let grace = self.limits.grace_ms;
        let e = self
            .table
            .find_mut(table_hash(hash), |e| e.hash == hash && *e.key == *key)
            .filter(|e| {
                e.counter
                    && e.version == write.version
                    && e.state == State::Live
                    && !expired(e.expires_at, now)
            })?;
        let stored = Counter::decode(e.value.as_deref()?).ok()?;
        let merged = stored.merge(&Counter::decode(incoming).ok()?).encode();
        let later_expiry = write.expiry_stamp > e.expiry_stamp;
        if !later_expiry && e.value.as_ref() == Some(&merged) {
            self.counts.duplicates += 1;
            return Some((ApplyOutcome::Duplicate, 0));
        }
        let before = e.charge();
        self.leaves[leaf].remove(e);
        e.value = Some(merged);
        if later_expiry {
            e.expiry_stamp = write.expiry_stamp;
            e.expires_at = expires_at;
        }
        self.leaves[leaf].add(e);
        let after = e.charge();
        let timer = later_expiry.then(|| timer_for(e, grace)).flatten();
        self.counts.applied += 1;
        let delta = self
            .counts
            .account(Some((State::Live, before)), Some((State::Live, after)));
        if let Some(t) = timer {
            self.push_timer(t);
        }
        Some((ApplyOutcome::Applied { was_live: true }, delta))
    }
}
