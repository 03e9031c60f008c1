//! Timers and bounds of the membership protocol, with LAN and WAN profiles.

use std::time::Duration;

use crate::config_error::ConfigError;

/// Membership timers and bounds.
///
/// [`SwimConfig::lan`] (the default) detects a crashed member of a
/// 10-node cluster within 1 s (suspected) and 3 s (down) at the 99th
/// percentile; [`SwimConfig::wan`] is five times more patient.
///
/// Time to first suspicion is at most about one probe round over the
/// members, `probe_interval × (n − 1) / probers`, plus `2 × probe_timeout`.
/// Time from suspicion to down is between [`suspicion_min`] and
/// [`suspicion_max`], shrinking as independent members confirm.
///
/// [`suspicion_min`]: SwimConfig::suspicion_min
/// [`suspicion_max`]: SwimConfig::suspicion_max
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use gridkv::membership::SwimConfig;
///
/// let mut config = SwimConfig::lan();
/// assert_eq!(config.probe_interval, Duration::from_millis(200));
/// assert!(config.validate().is_ok());
///
/// config.probe_timeout = Duration::from_millis(150);
/// assert_eq!(config.validate().unwrap_err().field, "probe_timeout");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwimConfig {
    /// Time between probes of the next member (round-robin over a shuffled
    /// list). Scaled up by the local health multiplier.
    pub probe_interval: Duration,
    /// How long a direct probe waits for its ack before asking
    /// [`indirect_probes`](Self::indirect_probes) members to probe, and how
    /// long those get. Both are scaled by local health. `2 × probe_timeout`
    /// must fit in `probe_interval`.
    pub probe_timeout: Duration,
    /// Members asked to probe indirectly when a direct probe gets no ack.
    pub indirect_probes: usize,
    /// Suspicion timeout with many confirmations, for clusters up to 10
    /// nodes (multiplied by `log10(n)` above).
    pub suspicion_min: Duration,
    /// Suspicion timeout with no confirmation (a lone suspector), for
    /// clusters up to 10 nodes (multiplied by `log10(n)` above).
    pub suspicion_max: Duration,
    /// Independent confirmations at which a suspicion's timeout reaches
    /// [`suspicion_min`](Self::suspicion_min).
    pub suspicion_confirmations: usize,
    /// The local health multiplier's ceiling (Lifeguard): a node that
    /// misses its own acks waits up to `1 + max_local_health` times longer
    /// before suspecting others.
    pub max_local_health: u32,
    /// Each update is piggybacked about `retransmit_mult × log10(n + 1)`
    /// times.
    pub retransmit_mult: u32,
    /// Most updates piggybacked on one probe packet.
    pub max_piggyback: usize,
    /// Time between full member-table exchanges with a random member (and
    /// with a random down member, which heals partitions). Above 32
    /// members it is multiplied by `1 + ⌈log2(n / 32)⌉`, as the table grows.
    pub push_pull_interval: Duration,
    /// Time between join attempts to the seeds while not joined, and while
    /// every other member is down.
    pub join_retry: Duration,
    /// How long a member stays down before a node that reaches a strict
    /// majority of the ring removes it from the ring.
    pub remove_after: Duration,
    /// How long left and removed members stay in the table (so stale
    /// gossip cannot bring them back) before they are forgotten.
    pub forget_after: Duration,
    /// Most members the table holds; news of more is dropped.
    pub max_members: usize,
    /// A link whose smoothed probe round trip is above this is a WAN link
    /// (so is every link to a member of another datacenter, whatever its
    /// round trip). WAN links get the `wan_*` timing; a WAN probe runs
    /// beside the LAN one, so a slow WAN never delays detection inside
    /// this node's datacenter.
    pub wan_rtt_threshold: Duration,
    /// [`probe_timeout`](Self::probe_timeout) of a WAN link (and at least
    /// three of its round trips).
    pub wan_probe_timeout: Duration,
    /// [`suspicion_min`](Self::suspicion_min) of a member across a WAN link.
    pub wan_suspicion_min: Duration,
    /// [`suspicion_max`](Self::suspicion_max) of a member across a WAN link.
    pub wan_suspicion_max: Duration,
    /// How long every member of a datacenter may be down before its
    /// members are removed from the ring: a datacenter cut off or lost is a
    /// state of its own, in which its members keep their slots (and its
    /// copies stay assigned to it) until an operator removes them
    /// (`gridkv remove`) or this long passes. Default 24 hours.
    pub datacenter_remove_after: Duration,
}

impl Default for SwimConfig {
    fn default() -> Self {
        Self::lan()
    }
}

impl SwimConfig {
    /// The LAN profile (the default): probes every 200 ms.
    pub fn lan() -> Self {
        Self {
            probe_interval: Duration::from_millis(200),
            probe_timeout: Duration::from_millis(60),
            indirect_probes: 3,
            suspicion_min: Duration::from_millis(1200),
            suspicion_max: Duration::from_millis(2200),
            suspicion_confirmations: 3,
            max_local_health: 8,
            retransmit_mult: 4,
            max_piggyback: 64,
            push_pull_interval: Duration::from_secs(5),
            join_retry: Duration::from_secs(1),
            remove_after: Duration::from_secs(30),
            forget_after: Duration::from_secs(600),
            max_members: 16_384,
            wan_rtt_threshold: Duration::from_millis(10),
            wan_probe_timeout: Duration::from_millis(600),
            wan_suspicion_min: Duration::from_secs(4),
            wan_suspicion_max: Duration::from_secs(12),
            datacenter_remove_after: Duration::from_secs(24 * 3600),
        }
    }

    /// The WAN profile: probes every second, patient suspicions.
    pub fn wan() -> Self {
        Self {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(400),
            suspicion_min: Duration::from_secs(4),
            suspicion_max: Duration::from_secs(12),
            push_pull_interval: Duration::from_secs(30),
            join_retry: Duration::from_secs(3),
            remove_after: Duration::from_secs(120),
            ..Self::lan()
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: &'static str| Err(ConfigError::new("membership", field, reason));
        const MINUTE: Duration = Duration::from_secs(60);
        const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
        // Upper bounds keep every scaled timer (×65 local health, ×log n)
        // far from `Duration` overflow.
        for (field, value, max) in [
            ("probe_interval", self.probe_interval, MINUTE),
            ("probe_timeout", self.probe_timeout, MINUTE),
            ("suspicion_min", self.suspicion_min, 10 * MINUTE),
            ("suspicion_max", self.suspicion_max, 10 * MINUTE),
            ("push_pull_interval", self.push_pull_interval, 60 * MINUTE),
            ("join_retry", self.join_retry, 10 * MINUTE),
            ("remove_after", self.remove_after, WEEK),
            ("forget_after", self.forget_after, WEEK),
            ("wan_rtt_threshold", self.wan_rtt_threshold, MINUTE),
            ("wan_probe_timeout", self.wan_probe_timeout, MINUTE),
            ("wan_suspicion_min", self.wan_suspicion_min, 10 * MINUTE),
            ("wan_suspicion_max", self.wan_suspicion_max, 10 * MINUTE),
            ("datacenter_remove_after", self.datacenter_remove_after, 4 * WEEK),
        ] {
            if value > max {
                return err(field, "too long");
            }
        }
        if self.probe_interval.is_zero() {
            return err("probe_interval", "must be positive");
        }
        if self.probe_timeout.is_zero() {
            return err("probe_timeout", "must be positive");
        }
        if self.probe_timeout * 2 > self.probe_interval {
            return err("probe_timeout", "twice it must fit in probe_interval");
        }
        if self.indirect_probes > 16 {
            return err("indirect_probes", "at most 16");
        }
        if self.suspicion_min < self.probe_interval {
            return err("suspicion_min", "must be at least probe_interval");
        }
        if self.suspicion_max < self.suspicion_min {
            return err("suspicion_max", "must be at least suspicion_min");
        }
        if self.wan_probe_timeout < self.probe_timeout {
            return err("wan_probe_timeout", "must be at least probe_timeout");
        }
        if self.wan_suspicion_min < self.suspicion_min {
            return err("wan_suspicion_min", "must be at least suspicion_min");
        }
        if self.wan_suspicion_max < self.wan_suspicion_min {
            return err("wan_suspicion_max", "must be at least wan_suspicion_min");
        }
        if self.suspicion_confirmations == 0 {
            return err("suspicion_confirmations", "must be at least 1");
        }
        if self.max_local_health > 64 {
            return err("max_local_health", "at most 64");
        }
        if self.retransmit_mult == 0 {
            return err("retransmit_mult", "must be at least 1");
        }
        if self.max_piggyback == 0 || self.max_piggyback > 1024 {
            return err("max_piggyback", "must be 1 to 1024");
        }
        if self.push_pull_interval < self.probe_interval {
            return err("push_pull_interval", "must be at least probe_interval");
        }
        if self.join_retry.is_zero() {
            return err("join_retry", "must be positive");
        }
        if self.remove_after < self.suspicion_max {
            return err("remove_after", "must be at least suspicion_max");
        }
        if self.datacenter_remove_after < self.remove_after {
            return err("datacenter_remove_after", "must be at least remove_after");
        }
        if self.forget_after < self.remove_after {
            return err("forget_after", "must be at least remove_after");
        }
        if self.max_members < 2 || self.max_members > super::wire::MAX_UPDATES_PER_PACKET * 16 {
            return err("max_members", "must be 2 to 65536");
        }
        Ok(())
    }
}
