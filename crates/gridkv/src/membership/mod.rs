//! Cluster membership: SWIM gossip with Lifeguard, and ring states.
//!
//! Nodes agree on who is in the cluster with no central server:
//!
//! - **Failure detection.** Each probe interval a node pings the next
//!   member of a shuffled round-robin list. No ack within the probe
//!   timeout: it asks [`SwimConfig::indirect_probes`] others to ping the
//!   member for it. Still nothing: the member is *suspect*. A suspect that
//!   is alive refutes by raising its incarnation; one that does not is
//!   declared *down* when its suspicion times out.
//! - **Lifeguard.** A node whose own probes go unanswered (even the
//!   indirect helpers stay silent) raises its local health multiplier and
//!   probes and suspects more slowly: it is likely the slow one.
//!   Suspicion timeouts start at [`SwimConfig::suspicion_max`] and shrink
//!   towards [`SwimConfig::suspicion_min`] as independent members confirm.
//! - **Dissemination.** Member updates ride on probe packets, each about
//!   `λ·log10(n + 1)` times; a periodic push-pull of the whole table with a
//!   random member (and a random *down* member) heals views after
//!   partitions.
//! - **Identity.** A node is an id plus a generation (one per start). A
//!   restart rejoins under the same id with a later generation and
//!   replaces its old entry; a join naming an id that a live member holds is
//!   refused ([`MemberEvent::JoinRefused`]).
//!
//! - **Clocks.** Every packet carries its sender's wall clock; a ping's
//!   round trip measures the peer's offset, and [`clock`] compares this
//!   node with the median of the members it reaches.
//!
//! Liveness is not placement. Each member also has a [`RingState`]:
//! joining → normal → leaving → left, or removed. A down member keeps its
//! ring slots until it has been down for [`SwimConfig::remove_after`], and a
//! node removes others only while it reaches a strict majority of the
//! ring's members, so the minority side of a partition never shrinks its
//! ring. [`RingMembers`] is what the replication layer builds rings from.
//!
//! - **Signed membership.** With credentials ([`Swim::set_credentials`])
//!   every claim is signed: a member's own state by the member, claims
//!   about others by their claimer, removals by a majority of the ring or
//!   an operator ([`signed`]); what does not verify is refused and counted
//!   ([`MembershipSecurityStats`]).
//!
//! The protocol is the sans-IO [`Swim`] state machine; the node handle
//! drives it over the transport's control lane.

mod broadcast;
pub mod clock;
mod config;
mod keys;
mod member;
mod proof;
pub mod signed;
mod swim;
pub mod trust;
pub mod wire;

pub use config::SwimConfig;
pub use keys::MembershipSecurityStats;
pub use member::{Identity, Liveness, Member, RingState};
pub use swim::{MemberEvent, Output, RingMembers, Swim};
