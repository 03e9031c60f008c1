//! Replication counters of one node.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of one node's replication counters (see
/// [`GridKv::replication_stats`](crate::GridKv::replication_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicationStats {
    /// Writes acknowledged (quorum reached).
    pub writes: u64,
    /// Reads answered (quorum reached, or local).
    pub reads: u64,
    /// Operations that failed for lack of a quorum (or its deadline).
    pub quorum_failures: u64,
    /// Writes re-stamped because a replica held a newer version.
    pub restamps: u64,
    /// Read-repair writes sent to stale owners.
    pub read_repairs: u64,
    /// Entries received while filling gained ranges.
    pub fill_entries: u64,
    /// Bytes of keys and values received while filling.
    pub fill_bytes: u64,
    /// Anti-entropy rounds run.
    pub anti_entropy_rounds: u64,
    /// Bytes anti-entropy exchanged (digests and pulled entries).
    pub anti_entropy_bytes: u64,
    /// Entries anti-entropy pulled.
    pub anti_entropy_entries: u64,
    /// Hints stored for unreachable owners.
    pub hints_stored: u64,
    /// Hints delivered to their owner.
    pub hints_delivered: u64,
    /// Hints dropped: the store was full, or they expired.
    pub hints_dropped: u64,
    /// Hints held now.
    pub hints_pending: u64,
    /// Reads that asked one more owner because one was slower than its
    /// usual.
    pub speculative_reads: u64,
    /// Operations failed at once because their quorum needed an owner
    /// this node cannot reach now (known down, or avoided after failed
    /// requests), instead of waiting out their deadline.
    pub fast_failures: u64,
    /// Peers this node avoids now after failed requests to them.
    pub peers_avoided: u64,
    /// Versions stamped elsewhere that this node skipped (neither stored
    /// nor merged into its clock): further ahead of the cluster's clock
    /// than the drift bound. Writes and repairs sent to it, and entries
    /// that fills and anti-entropy pulled.
    pub drift_skipped: u64,
    /// Conditional writes (`SET NX`, `GETDEL`, ...) owners refused
    /// because the key changed since the coordinator's read.
    pub conflicts: u64,
    /// Owners a conditional write that lost was taken back from.
    pub retractions: u64,
    /// Writes the cross-datacenter streams delivered to their remote
    /// owners.
    pub remote_sent: u64,
    /// Writes for remote owners kept as hints instead (a full stream, or
    /// an owner unreachable).
    pub remote_hinted: u64,
    /// Writes for remote owners that found the stream and the hints full:
    /// left to the remote owners' anti-entropy.
    pub remote_overflowed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) writes: AtomicU64,
    pub(crate) reads: AtomicU64,
    pub(crate) quorum_failures: AtomicU64,
    pub(crate) restamps: AtomicU64,
    pub(crate) read_repairs: AtomicU64,
    pub(crate) fill_entries: AtomicU64,
    pub(crate) fill_bytes: AtomicU64,
    pub(crate) anti_entropy_rounds: AtomicU64,
    pub(crate) anti_entropy_bytes: AtomicU64,
    pub(crate) anti_entropy_entries: AtomicU64,
    pub(crate) hints_stored: AtomicU64,
    pub(crate) hints_delivered: AtomicU64,
    pub(crate) hints_dropped: AtomicU64,
    pub(crate) speculative_reads: AtomicU64,
    pub(crate) fast_failures: AtomicU64,
    pub(crate) drift_skipped: AtomicU64,
    pub(crate) conflicts: AtomicU64,
    pub(crate) retractions: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ReplicationStats {
        ReplicationStats {
            writes: self.writes.load(Relaxed),
            reads: self.reads.load(Relaxed),
            quorum_failures: self.quorum_failures.load(Relaxed),
            restamps: self.restamps.load(Relaxed),
            read_repairs: self.read_repairs.load(Relaxed),
            fill_entries: self.fill_entries.load(Relaxed),
            fill_bytes: self.fill_bytes.load(Relaxed),
            anti_entropy_rounds: self.anti_entropy_rounds.load(Relaxed),
            anti_entropy_bytes: self.anti_entropy_bytes.load(Relaxed),
            anti_entropy_entries: self.anti_entropy_entries.load(Relaxed),
            hints_stored: self.hints_stored.load(Relaxed),
            hints_delivered: self.hints_delivered.load(Relaxed),
            hints_dropped: self.hints_dropped.load(Relaxed),
            hints_pending: 0,
            speculative_reads: self.speculative_reads.load(Relaxed),
            fast_failures: self.fast_failures.load(Relaxed),
            peers_avoided: 0,
            drift_skipped: self.drift_skipped.load(Relaxed),
            conflicts: self.conflicts.load(Relaxed),
            retractions: self.retractions.load(Relaxed),
            // Kept by the streams (see `GridKv::replication_stats`).
            remote_sent: 0,
            remote_hinted: 0,
            remote_overflowed: 0,
        }
    }
}
