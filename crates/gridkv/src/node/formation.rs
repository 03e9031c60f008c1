//! First formation: which node of a cluster that starts all at once goes
//! first, and whether a node serves data calls ([`Readiness`]). No I/O and
//! no clock: the driver feeds it the membership view and the time.
//!
//! Nodes started together, each given the others as seeds, all join (each
//! reaches a seed) with nobody owning ranges yet. If each then became the
//! first owner of its own ring, each would acknowledge writes the others
//! never see. So exactly one forms the cluster: the **smallest id** among
//! the reachable members a node knows, once
//!
//! - it has heard from every seed it was given (by address, or by count
//!   when seeds are named differently from the addresses members
//!   advertise), and
//! - its member list has been still for a settle period (a few probe
//!   intervals), long enough for gossip to bring members it has not heard
//!   from directly.
//!
//! If some seed never answers, after a formation timeout a node that has
//! heard from a majority of its seeds and itself applies the same rule, so
//! one dead machine does not stop a cluster from forming. Every other node
//! waits until a member owns ranges, then fills from the owners and
//! becomes one, as in any join. The rule applies only to first formation:
//! once a node has seen a member own ranges it never applies again.
//!
//! A node started with no seeds (other than itself) forms its own cluster
//! at once, before it answers any peer, so a node that joins through it
//! never sees it without an owner.
//!
//! The guarantee rests on gossip: two nodes that never learn of each other
//! within the settle period (a partition at first boot, or seed lists that
//! do not connect) could each form a cluster. Giving every node the same
//! seeds, or seeds that all lead to one node, rules that out whenever the
//! nodes can reach each other.

use std::time::Duration;

use crate::id::NodeId;
use crate::membership::{Member, RingState};

/// Whether a node serves data calls, and if not, what is missing.
///
/// Data calls made while the node does not serve wait for it up to their
/// deadline, then fail with [`Error::NotReady`](crate::Error::NotReady)
/// naming what was missing (its `Display`).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use gridkv::{GridKv, Readiness};
///
/// // No seeds: a one-node cluster that serves at once.
/// let node = GridKv::start(GridKv::builder("r1").build()?).await?;
/// node.ready().await?;
/// assert_eq!(node.readiness(), Readiness::Serving);
/// node.shutdown().await;
/// assert_eq!(node.readiness(), Readiness::Stopped);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Data calls run.
    Serving,
    /// None of the node's seeds has answered yet.
    Joining {
        /// How many seeds it was given (its own address not counted).
        seeds: usize,
    },
    /// The node has joined, but no member owns ranges yet.
    Forming(Forming),
    /// The ring has fewer members than the quorums need: W and R are never
    /// cut down to fit the ring of a node given seeds.
    TooFewOwners {
        /// Members of the ring, as this node sees it.
        owners: usize,
        /// Members it needs: max(W, R, 2) for a node given seeds.
        needed: usize,
    },
    /// The node has stopped.
    Stopped,
}

/// What a joined node waits for while the cluster forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forming {
    /// Not every seed has answered yet.
    Seeds {
        /// Seeds heard from.
        heard: usize,
        /// Seeds given.
        seeds: usize,
    },
    /// Another member forms the cluster: the one with the smallest id.
    By(NodeId),
    /// This node forms it once its member list has been still for the
    /// settle period.
    Settling,
    /// This node forms it once [`GridKv::mark_filled`](crate::GridKv::mark_filled)
    /// is called ([`FillMode::Manual`](crate::FillMode::Manual)).
    MarkFilled,
    /// The cluster has formed, but other members are still joining or
    /// leaving: a node serves for the first time only once the ring it
    /// sees has stopped moving (or after the formation timeout), so that
    /// nodes started together do not serve while the ring still grows
    /// faster than gossip spreads it.
    Moving {
        /// Reachable members other than this node that are joining or
        /// leaving.
        members: usize,
    },
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Readiness::Serving => f.write_str("serving"),
            Readiness::Joining { seeds } => {
                write!(f, "not joined: none of its {seeds} seeds has answered yet")
            }
            Readiness::Forming(Forming::Seeds { heard, seeds }) => write!(
                f,
                "cluster forming: {heard} of {seeds} seeds have answered; no member owns ranges yet"
            ),
            Readiness::Forming(Forming::By(id)) => write!(
                f,
                "cluster forming: waiting for {id} (the smallest id) to form it"
            ),
            Readiness::Forming(Forming::Settling) => f.write_str(
                "cluster forming: this node forms it once its member list has settled",
            ),
            Readiness::Forming(Forming::MarkFilled) => {
                f.write_str("cluster forming: this node forms it once mark_filled is called")
            }
            Readiness::Forming(Forming::Moving { members }) => write!(
                f,
                "cluster forming: other members still joining or leaving: {members}"
            ),
            Readiness::TooFewOwners { owners, needed } => write!(
                f,
                "the ring has {owners} of the {needed} members needed \
                 (W, R, and at least two for a node given seeds)"
            ),
            Readiness::Stopped => f.write_str("the node has stopped"),
        }
    }
}

/// What [`Formation::observe`] decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// A member owns ranges, or did once: fill from the owners as any
    /// join does.
    Formed,
    /// This node forms the cluster now: it becomes the first owner.
    Form,
    /// Not yet.
    Wait(Forming),
}

/// One node's part in first formation (see the module docs).
#[derive(Debug)]
pub(super) struct Formation {
    me: NodeId,
    /// Started with no seeds other than itself.
    standalone: bool,
    /// Distinct seed addresses, this node's own left out.
    seeds: Vec<String>,
    settle: Duration,
    timeout: Duration,
    /// A member has owned ranges in this node's view: formation is over.
    seen: bool,
    /// After `seen`, no other member was joining or leaving (or the
    /// timeout passed since `seen_at`): the node serves from then on.
    settled: bool,
    /// When this node first saw a member own ranges.
    seen_at: Option<Duration>,
    joined_at: Option<Duration>,
    /// The reachable members it knows, other than itself, sorted.
    view: Vec<NodeId>,
    view_since: Duration,
}

impl Formation {
    /// The formation of node `me`, given `seeds` (its own address
    /// `own_addr` among them is dropped), waiting `settle` for a still
    /// member list and `timeout` before it forms without every seed.
    pub(super) fn new(
        me: NodeId,
        own_addr: &str,
        seeds: &[String],
        settle: Duration,
        timeout: Duration,
    ) -> Self {
        let mut distinct: Vec<String> = Vec::new();
        for s in seeds {
            if s != own_addr && !distinct.contains(s) {
                distinct.push(s.clone());
            }
        }
        Self {
            me,
            standalone: distinct.is_empty(),
            seeds: distinct,
            settle,
            timeout,
            seen: false,
            settled: false,
            seen_at: None,
            joined_at: None,
            view: Vec::new(),
            view_since: Duration::ZERO,
        }
    }

    /// Whether the node was started with no seeds other than itself.
    pub(super) fn standalone(&self) -> bool {
        self.standalone
    }

    /// How many seeds it was given (its own address not counted).
    pub(super) fn seeds(&self) -> usize {
        self.seeds.len()
    }

    /// Whether a member has owned ranges in this node's view.
    pub(super) fn seen(&self) -> bool {
        self.seen
    }

    /// Whether formation is over for good: a member owned ranges, and then
    /// the ring stopped moving once (or the timeout passed).
    pub(super) fn settled(&self) -> bool {
        self.settled
    }

    /// The decision at `now` of a node that has joined, from its member
    /// table (`members`, this node included) and whether any member holds
    /// ring slots (`placement_empty`).
    pub(super) fn observe<'a>(
        &mut self,
        now: Duration,
        members: impl Iterator<Item = &'a Member>,
        placement_empty: bool,
    ) -> Step {
        if self.seen || !placement_empty {
            self.seen = true;
            return self.settle(now, members);
        }
        if self.standalone {
            return Step::Form;
        }
        let joined_at = *self.joined_at.get_or_insert(now);
        let mut view = Vec::new();
        let mut heard_by_addr = 0;
        for m in members {
            let gone = matches!(m.ring, RingState::Left | RingState::Removed);
            if m.id() == self.me || gone || !m.liveness.is_reachable() {
                continue;
            }
            view.push(m.id());
            if self.seeds.contains(&m.identity.addr) {
                heard_by_addr += 1;
            }
        }
        view.sort();
        if view != self.view {
            self.view = view;
            self.view_since = now;
        }
        let seeds = self.seeds.len();
        let others = self.view.len();
        let heard = heard_by_addr.max(others.min(seeds));
        let complete = heard >= seeds;
        let majority = 2 * (others + 1) > seeds + 1;
        let waited = now.saturating_sub(joined_at) >= self.timeout;
        let enough = complete || (waited && majority);
        if !enough {
            return Step::Wait(Forming::Seeds { heard, seeds });
        }
        if let Some(smaller) = self.view.first().filter(|id| **id < self.me) {
            return Step::Wait(Forming::By(*smaller));
        }
        if now.saturating_sub(self.view_since) < self.settle {
            return Step::Wait(Forming::Settling);
        }
        Step::Form
    }
}

impl Formation {
    /// After a member has owned ranges: `Formed` once no other reachable
    /// member is joining or leaving, or once the formation timeout has
    /// passed since this node first saw an owner; from then on always
    /// `Formed`.
    ///
    /// Joint quorums (a write also needs the owners of the ring before the
    /// last change) cover a reader and a writer whose rings are one change
    /// apart. Nodes started together join in quick succession (their fills
    /// are empty), faster than gossip spreads each change: a node serving
    /// in the middle could read through a ring several changes behind the
    /// writer's, from owners the write never reached. Serving for the first
    /// time only once the ring has stopped moving rules that out; a node
    /// joining a formed cluster alone waits for nothing.
    fn settle<'a>(&mut self, now: Duration, members: impl Iterator<Item = &'a Member>) -> Step {
        if self.settled {
            return Step::Formed;
        }
        // Timed from formation's end, not the join: a node that waited
        // out the seed timeout must still wait for the joins that follow.
        let seen_at = *self.seen_at.get_or_insert(now);
        let moving = members
            .filter(|m| {
                m.id() != self.me
                    && m.liveness.is_reachable()
                    && matches!(m.ring, RingState::Joining | RingState::Leaving)
            })
            .count();
        if moving == 0 || now.saturating_sub(seen_at) >= self.timeout {
            self.settled = true;
            return Step::Formed;
        }
        Step::Wait(Forming::Moving { members: moving })
    }
}

/// Whether a node serves data calls: `joined`, the formation `step`, the
/// ring's member count, and the members its quorums need.
pub(super) fn readiness(
    joined: bool,
    seeds: usize,
    step: &Step,
    ring: usize,
    needed: usize,
) -> Readiness {
    if !joined {
        return Readiness::Joining { seeds };
    }
    match step {
        Step::Wait(forming) => Readiness::Forming(forming.clone()),
        Step::Form if ring == 0 => Readiness::Forming(Forming::MarkFilled),
        Step::Form | Step::Formed if ring < needed => Readiness::TooFewOwners {
            owners: ring,
            needed,
        },
        Step::Form | Step::Formed => Readiness::Serving,
    }
}

/// The ring members a node needs before it serves: W and R are never cut
/// down to fit the ring of a node given seeds, nor does it serve as a
/// cluster of one; a node started alone serves with what it has.
pub(super) fn needed_owners(standalone: bool, write_quorum: usize, read_quorum: usize) -> usize {
    if standalone {
        1
    } else {
        write_quorum.max(read_quorum).max(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Generation;
    use crate::membership::{Identity, Liveness};

    const SETTLE: Duration = Duration::from_millis(600);
    const TIMEOUT: Duration = Duration::from_secs(10);

    fn id(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    fn addr(name: &str) -> String {
        format!("{name}:7000")
    }

    fn member(name: &str) -> Member {
        Member::new(Identity::new(id(name), Generation::new(1), addr(name)))
    }

    /// Node `me`'s formation with seeds named after `seeds`.
    fn formation(me: &str, seeds: &[&str]) -> Formation {
        let seeds: Vec<String> = seeds.iter().map(|s| addr(s)).collect();
        Formation::new(id(me), &addr(me), &seeds, SETTLE, TIMEOUT)
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn observe(f: &mut Formation, now: Duration, members: &[Member]) -> Step {
        let empty = !members.iter().any(Member::in_placement);
        f.observe(now, members.iter(), empty)
    }

    fn members(names: &[&str]) -> Vec<Member> {
        names.iter().map(|n| member(n)).collect()
    }

    #[test]
    fn the_smallest_id_forms_once_every_seed_answered_and_the_view_settled() {
        let all = ["a", "b", "c", "d", "e"];
        let mut a = formation("a", &["b", "c", "d", "e"]);
        // Two seeds answered: not complete, whoever is smallest.
        assert_eq!(
            observe(&mut a, ms(0), &members(&["a", "b", "c"])),
            Step::Wait(Forming::Seeds { heard: 2, seeds: 4 })
        );
        // Everyone answered: a waits for the view to stay still.
        assert_eq!(
            observe(&mut a, ms(100), &members(&all)),
            Step::Wait(Forming::Settling)
        );
        assert_eq!(
            observe(&mut a, ms(100) + SETTLE, &members(&all)),
            Step::Form
        );
        // Every other node waits for a, whenever it looks.
        for me in ["b", "c", "d", "e"] {
            let seeds: Vec<&str> = all.iter().copied().filter(|n| *n != me).collect();
            let mut f = formation(me, &seeds);
            for t in [0, 1_000, 60_000] {
                assert_eq!(
                    observe(&mut f, ms(t), &members(&all)),
                    Step::Wait(Forming::By(id("a"))),
                    "{me} at {t} ms"
                );
            }
        }
    }

    #[test]
    fn a_member_that_owns_ranges_ends_formation_for_good() {
        let mut c = formation("c", &["a", "b"]);
        let mut view = members(&["a", "b", "c"]);
        view[0].ring = RingState::Normal;
        view[1].ring = RingState::Normal;
        assert_eq!(observe(&mut c, ms(0), &view), Step::Formed);
        assert!(c.settled());
        // Even if the owner leaves later, c never forms a cluster itself.
        view[1].ring = RingState::Left;
        assert_eq!(observe(&mut c, ms(1), &view), Step::Formed);
        assert!(c.seen());
    }

    #[test]
    fn a_node_first_serves_once_no_other_member_is_joining_or_leaving() {
        // a formed; b, c, d (and e itself) are still joining, as when five
        // nodes start at once: e waits, whether or not it has filled.
        let mut e = formation("e", &["a", "b", "c", "d"]);
        let mut view = members(&["a", "b", "c", "d", "e"]);
        view[0].ring = RingState::Normal;
        assert_eq!(
            observe(&mut e, ms(0), &view),
            Step::Wait(Forming::Moving { members: 3 })
        );
        view[4].ring = RingState::Normal;
        view[1].ring = RingState::Normal;
        view[2].ring = RingState::Leaving;
        assert_eq!(
            observe(&mut e, ms(100), &view),
            Step::Wait(Forming::Moving { members: 2 })
        );
        // A joiner that is down does not hold it back.
        view[2].ring = RingState::Normal;
        view[3].liveness = Liveness::Down;
        assert_eq!(observe(&mut e, ms(200), &view), Step::Formed);
        assert!(e.settled());
        // Once serving, later joins never take it back.
        view[3].liveness = Liveness::Alive;
        view.push(member("f"));
        assert_eq!(observe(&mut e, ms(300), &view), Step::Formed);
        assert_eq!(
            readiness(true, 4, &Step::Wait(Forming::Moving { members: 2 }), 1, 2)
                .to_string(),
            "cluster forming: other members still joining or leaving: 2"
        );
    }

    #[test]
    fn a_ring_that_keeps_moving_is_served_after_the_timeout() {
        // b joined long before anyone owned ranges (waiting for a): the
        // timeout counts from when it first saw an owner, not the join.
        let mut b = formation("b", &["a", "c"]);
        let mut view = members(&["a", "b", "c"]);
        assert_eq!(
            observe(&mut b, ms(0), &view),
            Step::Wait(Forming::By(id("a")))
        );
        view[0].ring = RingState::Normal;
        let seen = TIMEOUT * 2;
        assert_eq!(
            observe(&mut b, seen, &view),
            Step::Wait(Forming::Moving { members: 1 })
        );
        assert_eq!(
            observe(&mut b, seen + TIMEOUT - ms(1), &view),
            Step::Wait(Forming::Moving { members: 1 })
        );
        assert_eq!(observe(&mut b, seen + TIMEOUT, &view), Step::Formed);
    }

    #[test]
    fn a_member_list_that_keeps_changing_delays_forming() {
        let mut a = formation("a", &["b", "c"]);
        assert_eq!(
            observe(&mut a, ms(0), &members(&["a", "b", "c"])),
            Step::Wait(Forming::Settling)
        );
        // A member nobody named as a seed turns up: the settle restarts.
        let four = members(&["a", "b", "c", "x"]);
        assert_eq!(
            observe(&mut a, ms(500), &four),
            Step::Wait(Forming::Settling)
        );
        assert_eq!(
            observe(&mut a, ms(500) + SETTLE - ms(1), &four),
            Step::Wait(Forming::Settling)
        );
        assert_eq!(observe(&mut a, ms(500) + SETTLE, &four), Step::Form);
    }

    #[test]
    fn a_smaller_id_learned_while_settling_takes_over() {
        // b heard from its only seed, c; then a (smaller) turns up through
        // gossip before the settle ends: b defers to a.
        let mut b = formation("b", &["c"]);
        assert_eq!(
            observe(&mut b, ms(0), &members(&["b", "c"])),
            Step::Wait(Forming::Settling)
        );
        assert_eq!(
            observe(&mut b, ms(300), &members(&["a", "b", "c"])),
            Step::Wait(Forming::By(id("a")))
        );
    }

    #[test]
    fn down_and_departed_members_do_not_count() {
        let mut b = formation("b", &["a", "c"]);
        let mut view = members(&["a", "b", "c"]);
        view[0].liveness = Liveness::Down;
        // a is down: b heard from one of two seeds, short of all.
        assert_eq!(
            observe(&mut b, ms(0), &view),
            Step::Wait(Forming::Seeds { heard: 1, seeds: 2 })
        );
        assert_eq!(
            observe(&mut b, TIMEOUT - ms(1), &view),
            Step::Wait(Forming::Seeds { heard: 1, seeds: 2 })
        );
        // After the timeout, b and c are a majority of three: the smallest
        // reachable id, b, forms (its view has long been still).
        assert_eq!(observe(&mut b, TIMEOUT, &view), Step::Form);
        // c, which heard from b, waits for it.
        let mut c = formation("c", &["a", "b"]);
        assert_eq!(
            observe(&mut c, TIMEOUT, &view),
            Step::Wait(Forming::Seeds { heard: 1, seeds: 2 })
        );
        assert_eq!(
            observe(&mut c, TIMEOUT * 2, &view),
            Step::Wait(Forming::By(id("b")))
        );
    }

    #[test]
    fn without_a_majority_nobody_forms_even_after_the_timeout() {
        let mut a = formation("a", &["b", "c", "d", "e"]);
        let view = members(&["a", "b"]);
        for t in [0, 10_000, 600_000] {
            assert_eq!(
                observe(&mut a, ms(t), &view),
                Step::Wait(Forming::Seeds { heard: 1, seeds: 4 }),
                "at {t} ms"
            );
        }
    }

    #[test]
    fn seeds_named_otherwise_count_by_number() {
        // Seeds given as names the members do not advertise.
        let seeds = vec!["node-b.local:7000".to_owned(), "node-c.local:7000".to_owned()];
        let mut a = Formation::new(id("a"), &addr("a"), &seeds, SETTLE, TIMEOUT);
        let view = members(&["a", "b", "c"]);
        assert_eq!(
            observe(&mut a, ms(0), &view),
            Step::Wait(Forming::Settling)
        );
        assert_eq!(observe(&mut a, SETTLE, &view), Step::Form);
    }

    #[test]
    fn a_node_with_no_other_seed_forms_at_once() {
        let mut lone = formation("z", &["z", "z"]);
        assert!(lone.standalone());
        assert_eq!(lone.seeds(), 0);
        assert_eq!(observe(&mut lone, ms(0), &members(&["z"])), Step::Form);
    }

    #[test]
    fn readiness_names_what_is_missing() {
        let forming = Step::Wait(Forming::By(id("a")));
        #[rustfmt::skip]
        let rows = [
            ("not joined", readiness(false, 4, &Step::Formed, 5, 2),
             Readiness::Joining { seeds: 4 }),
            ("forming", readiness(true, 4, &forming, 0, 2),
             Readiness::Forming(Forming::By(id("a")))),
            ("formed, one owner of two needed", readiness(true, 4, &Step::Formed, 1, 2),
             Readiness::TooFewOwners { owners: 1, needed: 2 }),
            ("formed, enough owners", readiness(true, 4, &Step::Formed, 2, 2),
             Readiness::Serving),
            ("alone, forming on mark_filled", readiness(true, 0, &Step::Form, 0, 1),
             Readiness::Forming(Forming::MarkFilled)),
            ("alone, formed", readiness(true, 0, &Step::Formed, 1, 1), Readiness::Serving),
        ];
        for (name, got, expected) in rows {
            assert_eq!(got, expected, "{name}");
        }
        assert_eq!(
            Readiness::Forming(Forming::By(id("a"))).to_string(),
            "cluster forming: waiting for a (the smallest id) to form it"
        );
        assert!(Readiness::TooFewOwners { owners: 1, needed: 2 }
            .to_string()
            .starts_with("the ring has 1 of the 2 members needed"));
    }

    #[test]
    fn quorums_are_never_cut_down_for_a_node_given_seeds() {
        assert_eq!(needed_owners(false, 2, 2), 2);
        assert_eq!(needed_owners(false, 3, 1), 3);
        assert_eq!(needed_owners(false, 1, 1), 2);
        assert_eq!(needed_owners(true, 2, 2), 1);
    }
}
