//! Versions this node did not stamp: the one place they are checked
//! against the HLC drift bound before anything is done with them.
//!
//! A version stamped by a node whose clock ran far ahead (an hour fast,
//! before the clock monitor fenced it) may reach this node by any path
//! that installs others' versions: a write or hint a coordinator sends,
//! a read repair, a fill or rebalance stream, an anti-entropy pull. Were
//! it installed, it would win over every write for an hour, and every
//! coordinator superseded by it would have to stamp past it (the drift
//! bound refuses that, so each write would re-stamp in vain until it ran
//! out of attempts). So:
//! - [`admit`]: a version whose physical time is past this node's
//!   estimate of the cluster's clock plus the bound is skipped (neither
//!   installed nor merged into the clock) and counted
//!   ([`ReplicationStats::drift_skipped`](super::ReplicationStats::drift_skipped));
//!   anything else is merged into the clock (without reading the local
//!   wall clock into it, see [`Hlc::observe`]) and may be installed;
//! - [`stamp_past`]: a write that must be stamped above a version it met
//!   (a re-stamp past a superseding version, an expiry change above the
//!   value's last stamp) fails with [`Error::ClockDrift`] when that
//!   version is past the bound, instead of being stamped below it.

use crate::hlc::{Hlc, HlcError, Timestamp};
use crate::store::Write;

use super::stats::Counters;
use super::Error;

/// Checks `write`, stamped elsewhere, against the drift bound and merges
/// its timestamps (its version's and its expiry change's) into `hlc`; on
/// an error it is to be skipped, and was counted in `counters`.
pub(crate) fn admit(hlc: &Hlc, counters: &Counters, write: &Write<'_>) -> Result<(), HlcError> {
    let newest = write.version.ts.max(write.expiry_stamp);
    hlc.observe(newest).inspect_err(|_| {
        Counters::add(&counters.drift_skipped, 1);
    })
}

/// Moves `hlc` past `seen`, a timestamp a write must be stamped above;
/// [`Error::ClockDrift`] (and the clock unchanged) if `seen` is further
/// ahead of the cluster's clock than the bound.
pub(crate) fn stamp_past(hlc: &Hlc, seen: Timestamp) -> Result<(), Error> {
    hlc.update(seen)
        .map(|_| ())
        .map_err(|e| Error::ClockDrift(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::hlc::{ManualClock, Version};
    use crate::id::{Generation, NodeId};

    const NOW: u64 = 1_700_000_000_000;

    fn hlc() -> Hlc {
        Hlc::new(
            NodeId::new("r").unwrap(),
            Generation::new(1),
            Arc::new(ManualClock::new(NOW)),
        )
        .with_max_drift(Duration::from_secs(5))
    }

    fn version(ms: u64) -> Version {
        Version::new(Timestamp::new(ms, 0), &NodeId::new("w").unwrap(), Generation::new(1))
    }

    #[test]
    fn a_version_past_the_bound_is_skipped_counted_and_not_merged() {
        let (hlc, counters) = (hlc(), Counters::default());
        let far = Write::set(version(NOW + 3_600_000), b"v", None);
        assert!(admit(&hlc, &counters, &far).is_err());
        assert_eq!(counters.snapshot().drift_skipped, 1);
        assert!(hlc.last() < Timestamp::new(NOW + 1, 0), "{:?}", hlc.last());
        // An expiry change stamped far ahead, on an ordinary version.
        let far_expiry =
            Write::set(version(NOW), b"v", None).with_expiry_stamp(Timestamp::new(NOW + 60_000, 0));
        assert!(admit(&hlc, &counters, &far_expiry).is_err());
        assert_eq!(counters.snapshot().drift_skipped, 2);
        let near = Write::delete(version(NOW + 4_000));
        assert!(admit(&hlc, &counters, &near).is_ok());
        assert!(hlc.last() > Timestamp::new(NOW + 4_000, 0), "merged");
        assert_eq!(counters.snapshot().drift_skipped, 2);
    }

    #[test]
    fn stamping_past_a_version_beyond_the_bound_is_a_clock_drift_error() {
        let hlc = hlc();
        let before = hlc.last();
        let err = stamp_past(&hlc, Timestamp::new(NOW + 3_600_000, 0)).unwrap_err();
        assert!(matches!(err, Error::ClockDrift(_)), "{err:?}");
        assert_eq!(hlc.last(), before, "the clock did not move");
        stamp_past(&hlc, Timestamp::new(NOW + 2_000, 7)).unwrap();
        assert!(hlc.new_version().ts > Timestamp::new(NOW + 2_000, 7));
    }
}
