//! Consistency levels: how many of a key's owners, and in which
//! datacenters, an operation waits for (Cassandra's levels), and what a
//! pair of write and read levels guarantees.
//!
//! A level is resolved against the owners of one key on one ring into
//! owner sets with their required counts ([`level_sets`]); the quorum
//! plans ([`super::quorum`]) send to every owner and wait for those sets
//! only. Local levels count owners in the coordinator's datacenter and
//! never wait for remote ones: the write still goes to them, and reaches
//! them after the call returns.

use std::fmt;
use std::str::FromStr;

use super::quorum::OwnerSet;
use super::Error;
use crate::id::NodeId;
use crate::ring::{ReplicaPlacement, Ring};

/// How many of a key's owners an operation waits for, and where.
///
/// Written in flags, TOML and `GRIDKV.CONSISTENCY` as the names below,
/// case-insensitive, with underscores (`local_quorum`) or without.
///
/// # Examples
///
/// ```
/// use gridkv::ConsistencyLevel;
///
/// let level: ConsistencyLevel = "local_quorum".parse()?;
/// assert_eq!(level, ConsistencyLevel::LocalQuorum);
/// assert_eq!(level.to_string(), "LOCAL_QUORUM");
/// assert_eq!("EACH-QUORUM".parse(), Ok(ConsistencyLevel::EachQuorum));
/// assert!("majority".parse::<ConsistencyLevel>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsistencyLevel {
    /// One owner, in any datacenter.
    One,
    /// One owner in the coordinator's datacenter.
    LocalOne,
    /// A majority of the owners in the coordinator's datacenter.
    LocalQuorum,
    /// A majority of all owners, wherever they are.
    Quorum,
    /// A majority of the owners in every datacenter holding copies.
    /// Writes only: a read refuses it (as Cassandra's do), since a read
    /// at `QUORUM` or `LOCAL_QUORUM` after an `EACH_QUORUM` write already
    /// sees it.
    EachQuorum,
    /// Every owner.
    All,
}

impl ConsistencyLevel {
    /// Every level, weakest first.
    pub const ALL_LEVELS: [ConsistencyLevel; 6] = [
        ConsistencyLevel::One,
        ConsistencyLevel::LocalOne,
        ConsistencyLevel::LocalQuorum,
        ConsistencyLevel::Quorum,
        ConsistencyLevel::EachQuorum,
        ConsistencyLevel::All,
    ];

    /// The level's name, as Cassandra writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsistencyLevel::One => "ONE",
            ConsistencyLevel::LocalOne => "LOCAL_ONE",
            ConsistencyLevel::LocalQuorum => "LOCAL_QUORUM",
            ConsistencyLevel::Quorum => "QUORUM",
            ConsistencyLevel::EachQuorum => "EACH_QUORUM",
            ConsistencyLevel::All => "ALL",
        }
    }

    /// Whether it counts only owners in the coordinator's datacenter.
    pub fn is_local(self) -> bool {
        matches!(self, ConsistencyLevel::LocalOne | ConsistencyLevel::LocalQuorum)
    }

    /// Owners an operation at this level waits for, coordinated in
    /// datacenter `at` with every copy of `placement` in place.
    pub(crate) fn nominal(self, placement: &ReplicaPlacement, at: &str) -> usize {
        let copies = copies_of(placement);
        let dc = if placement.is_per_datacenter() { at } else { "" };
        self.minimum(dc, &copies, placement.total()).1
    }

    /// Answers needed of `n` owners it counts.
    fn of(self, n: usize) -> usize {
        match self {
            ConsistencyLevel::One | ConsistencyLevel::LocalOne => 1.min(n),
            ConsistencyLevel::All => n,
            _ => n / 2 + 1,
        }
    }

    /// The fewest owners in each datacenter, and in all, that an
    /// operation at this level coordinated in datacenter `at` waits for,
    /// with `copies` per datacenter (`(name, copies)`) and `total` in all.
    fn minimum(self, at: &str, copies: &[(String, usize)], total: usize) -> (Vec<usize>, usize) {
        let per_dc = |f: &dyn Fn(&str, usize) -> usize| {
            copies.iter().map(|(dc, n)| f(dc, *n)).collect::<Vec<usize>>()
        };
        match self {
            ConsistencyLevel::One | ConsistencyLevel::Quorum | ConsistencyLevel::All => {
                let k = self.of(total);
                (per_dc(&|_, n| k.saturating_sub(total - n)), k)
            }
            ConsistencyLevel::LocalOne | ConsistencyLevel::LocalQuorum => {
                let need = per_dc(&|dc, n| if dc == at { self.of(n) } else { 0 });
                let k = need.iter().sum();
                (need, k)
            }
            ConsistencyLevel::EachQuorum => {
                let need = per_dc(&|_, n| n / 2 + 1);
                let k = need.iter().sum();
                (need, k)
            }
        }
    }
}

impl fmt::Display for ConsistencyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConsistencyLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let plain: String = s
            .trim()
            .chars()
            .filter(|c| !matches!(c, '_' | '-'))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        Self::ALL_LEVELS
            .into_iter()
            .find(|l| l.as_str().replace('_', "") == plain)
            .ok_or_else(|| {
                format!(
                    "{s:?}: expected one of ONE, LOCAL_ONE, LOCAL_QUORUM, QUORUM, EACH_QUORUM, ALL"
                )
            })
    }
}

/// What a pair of write and read levels guarantees a reader.
///
/// # Examples
///
/// ```
/// use gridkv::ring::ReplicaPlacement;
/// use gridkv::{ConsistencyLevel as L, Guarantee};
///
/// let two_dcs: ReplicaPlacement = "a:3,b:3".parse()?;
/// assert_eq!(Guarantee::of(L::LocalQuorum, L::LocalQuorum, &two_dcs), Guarantee::StrongWithinDatacenter);
/// assert_eq!(Guarantee::of(L::EachQuorum, L::LocalQuorum, &two_dcs), Guarantee::Strong);
/// assert_eq!(Guarantee::of(L::Quorum, L::Quorum, &two_dcs), Guarantee::Strong);
/// assert_eq!(Guarantee::of(L::LocalOne, L::LocalOne, &two_dcs), Guarantee::Eventual);
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarantee {
    /// Every read quorum meets every write quorum, wherever each is
    /// coordinated: a read sees every write acknowledged before it began.
    Strong,
    /// A read sees writes acknowledged before it began by coordinators in
    /// its own datacenter; writes made elsewhere arrive later (the
    /// cross-datacenter lag).
    StrongWithinDatacenter,
    /// A read may miss an acknowledged write until repair brings the
    /// owners level.
    Eventual,
}

impl Guarantee {
    /// What writes at `write` and reads at `read` guarantee with copies
    /// placed as `placement` (all owners up; a smaller ring weakens
    /// nothing, as quorums count the owners there are).
    pub fn of(write: ConsistencyLevel, read: ConsistencyLevel, placement: &ReplicaPlacement) -> Self {
        let copies = copies_of(placement);
        let total = placement.total();
        let meet = |w_at: &str, r_at: &str| {
            let (w, w_total) = write.minimum(w_at, &copies, total);
            let (r, r_total) = read.minimum(r_at, &copies, total);
            w_total + r_total > total
                || copies
                    .iter()
                    .enumerate()
                    .any(|(i, (_, n))| w[i] + r[i] > *n)
        };
        let dcs = || copies.iter().map(|(dc, _)| dc.as_str());
        if dcs().all(|w_at| dcs().all(|r_at| meet(w_at, r_at))) {
            Guarantee::Strong
        } else if dcs().all(|at| meet(at, at)) {
            Guarantee::StrongWithinDatacenter
        } else {
            Guarantee::Eventual
        }
    }

    /// How `/cluster` and logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::Strong => "strong",
            Guarantee::StrongWithinDatacenter => "strong within a datacenter, eventual across",
            Guarantee::Eventual => "eventual",
        }
    }
}

/// The fewest owners a write at level `write` coordinated anywhere is
/// sure to reach, with copies placed as `placement`: a fill must pull from
/// all but one less than that many of a range's former owners to meet
/// every acknowledged write.
pub(crate) fn fewest_acknowledging(write: ConsistencyLevel, placement: &ReplicaPlacement) -> usize {
    let copies = copies_of(placement);
    copies
        .iter()
        .map(|(at, _)| write.minimum(at, &copies, placement.total()).1)
        .min()
        .unwrap_or(1)
        .max(1)
}

/// The copies per datacenter of `placement`; one unnamed datacenter for a
/// total.
fn copies_of(placement: &ReplicaPlacement) -> Vec<(String, usize)> {
    match placement {
        ReplicaPlacement::Total(n) => vec![(String::new(), *n)],
        ReplicaPlacement::PerDatacenter(dcs) => dcs.clone(),
    }
}

/// The owner sets an operation at `level` waits for among `owners` (one
/// key's, on `ring`), coordinated in datacenter `at`.
///
/// # Errors
///
/// [`Error::InvalidOptions`] for a local level when datacenter `at` holds
/// no copies of the key.
pub(crate) fn level_sets(
    level: ConsistencyLevel,
    owners: &[NodeId],
    ring: &Ring,
    at: &str,
) -> Result<Vec<OwnerSet>, Error> {
    let in_dc = |dc: &str| -> Vec<NodeId> {
        owners
            .iter()
            .filter(|id| ring.in_datacenter(id, dc))
            .copied()
            .collect()
    };
    Ok(match level {
        ConsistencyLevel::One | ConsistencyLevel::Quorum | ConsistencyLevel::All => {
            vec![OwnerSet {
                owners: owners.to_vec(),
                required: level.of(owners.len()).max(1),
            }]
        }
        ConsistencyLevel::LocalOne | ConsistencyLevel::LocalQuorum => {
            let local = in_dc(at);
            if local.is_empty() && !owners.is_empty() {
                return Err(Error::InvalidOptions(
                    "a local consistency level needs copies in this node's datacenter",
                ));
            }
            let required = level.of(local.len()).max(1);
            vec![OwnerSet {
                owners: local,
                required,
            }]
        }
        ConsistencyLevel::EachQuorum => {
            let mut dcs: Vec<&str> = Vec::new();
            for id in owners {
                if let Some(l) = ring.location(id) {
                    if !dcs.contains(&l.datacenter.as_str()) {
                        dcs.push(&l.datacenter);
                    }
                }
            }
            if dcs.is_empty() {
                return Ok(vec![OwnerSet {
                    owners: Vec::new(),
                    required: 1,
                }]);
            }
            dcs.into_iter()
                .map(|dc| {
                    let set = in_dc(dc);
                    let required = level.of(set.len());
                    OwnerSet {
                        owners: set,
                        required,
                    }
                })
                .collect()
        }
    })
}

/// The fewest of the `set_len` owners of one set (of `list_len` owners of
/// the key in all) that a read at `read` is sure to ask: what a write must
/// leave for such a reader to meet it.
pub(crate) fn read_minimum_in(read: ConsistencyLevel, set_len: usize, list_len: usize) -> usize {
    match read {
        ConsistencyLevel::One | ConsistencyLevel::Quorum | ConsistencyLevel::All => {
            read.of(list_len).saturating_sub(list_len - set_len.min(list_len))
        }
        // A local reader in this set's datacenter.
        _ => read.of(set_len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConsistencyLevel as L;

    #[test]
    fn names_round_trip() {
        for level in ConsistencyLevel::ALL_LEVELS {
            assert_eq!(level.as_str().parse(), Ok(level));
            assert_eq!(level.as_str().to_lowercase().parse(), Ok(level));
        }
        assert!("".parse::<L>().is_err());
        assert!("local".parse::<L>().is_err());
    }

    #[test]
    fn guarantees_of_every_pair() {
        let one_dc = ReplicaPlacement::Total(3);
        let two = ReplicaPlacement::per_datacenter([("a", 2), ("b", 1)]).unwrap();
        // One datacenter: local levels are the global ones.
        assert_eq!(Guarantee::of(L::Quorum, L::Quorum, &one_dc), Guarantee::Strong);
        assert_eq!(Guarantee::of(L::LocalQuorum, L::LocalQuorum, &one_dc), Guarantee::Strong);
        assert_eq!(Guarantee::of(L::One, L::All, &one_dc), Guarantee::Strong);
        assert_eq!(Guarantee::of(L::One, L::Quorum, &one_dc), Guarantee::Eventual);
        // a:2,b:1.
        assert_eq!(Guarantee::of(L::LocalQuorum, L::LocalQuorum, &two), Guarantee::StrongWithinDatacenter);
        assert_eq!(Guarantee::of(L::Quorum, L::Quorum, &two), Guarantee::Strong);
        assert_eq!(Guarantee::of(L::EachQuorum, L::LocalOne, &two), Guarantee::Strong);
        assert_eq!(Guarantee::of(L::LocalQuorum, L::Quorum, &two), Guarantee::Eventual);
        assert_eq!(Guarantee::of(L::All, L::LocalOne, &two), Guarantee::Strong);
        assert_eq!(Guarantee::of(L::LocalOne, L::LocalQuorum, &two), Guarantee::StrongWithinDatacenter);
        assert_eq!(Guarantee::of(L::LocalOne, L::LocalOne, &two), Guarantee::Eventual);
    }

    #[test]
    fn fills_pull_from_enough_sources() {
        let two = ReplicaPlacement::per_datacenter([("a", 2), ("b", 1)]).unwrap();
        // A LOCAL_QUORUM write from b reaches one owner: pull from all.
        assert_eq!(fewest_acknowledging(L::LocalQuorum, &two), 1);
        assert_eq!(fewest_acknowledging(L::EachQuorum, &two), 3);
        assert_eq!(fewest_acknowledging(L::Quorum, &ReplicaPlacement::Total(5)), 3);
    }

    #[test]
    fn read_minimums() {
        // QUORUM of 3 asks 2: at least one of a two-owner set.
        assert_eq!(read_minimum_in(L::Quorum, 2, 3), 1);
        assert_eq!(read_minimum_in(L::One, 2, 3), 0);
        assert_eq!(read_minimum_in(L::All, 1, 3), 1);
        assert_eq!(read_minimum_in(L::LocalQuorum, 3, 5), 2);
    }

    /// Plans on a ring of a1..a3 in datacenter a and b1, b2 in b, with
    /// copies a:2,b:1, coordinated in `dc`.
    mod plans {
        use std::collections::BTreeMap;
        use std::sync::Arc;

        use tokio::time::Instant;

        use super::*;
        use crate::id::Generation;
        use crate::membership::{Identity, Member};
        use crate::replication::quorum::{read_plan, WritePlan};
        use crate::replication::{Placement, ReadOptions, ReplicationConfig, WriteOptions};
        use crate::ring::Location;

        fn id(name: &str) -> NodeId {
            NodeId::new(name).unwrap()
        }

        fn placement(dc: &str) -> (Placement, ReplicationConfig) {
            let names = [("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b"), ("b2", "b")];
            let copies: ReplicaPlacement = "a:2,b:1".parse().unwrap();
            let ring = Arc::new(
                Ring::placed(1, names.map(|(n, d)| (id(n), Location::new(d, ""))), 64, &copies).unwrap(),
            );
            let mut members = BTreeMap::new();
            for (n, d) in names {
                let mut identity = Identity::new(id(n), Generation::new(1), format!("{n}:1"));
                identity.datacenter = d.into();
                let mut m = Member::new(identity);
                m.ring = crate::membership::RingState::Normal;
                members.insert(id(n), m);
            }
            let p = Placement {
                future: ring.clone(),
                ring,
                members,
                local_serves_reads: true,
                previous: None,
                datacenter: dc.into(),
            };
            (p, ReplicationConfig::default().with_placement(copies))
        }

        /// Each set's owners' datacenters and its required count.
        fn shape(p: &Placement, sets: &[crate::replication::quorum::OwnerSet]) -> Vec<(String, usize)> {
            sets.iter()
                .map(|s| {
                    let dcs: String = s
                        .owners
                        .iter()
                        .map(|o| p.ring.location(o).unwrap().datacenter.clone())
                        .collect();
                    (dcs, s.required)
                })
                .collect()
        }

        #[test]
        fn write_levels_wait_for_their_datacenters_and_send_to_all() {
            let (p, config) = placement("a");
            let me = id("a1");
            let now = Instant::now();
            for h in [0u64, 1 << 20, 1 << 62, u64::MAX - 5] {
                let plan = |level: Option<ConsistencyLevel>| {
                    let opts = WriteOptions { consistency: level, ..Default::default() };
                    WritePlan::new(&config, &p, &me, h, &opts, now)
                };
                let sorted = |mut v: Vec<(String, usize)>| {
                    v.iter_mut().for_each(|(d, _)| {
                        let mut c: Vec<char> = d.chars().collect();
                        c.sort_unstable();
                        *d = c.into_iter().collect();
                    });
                    v
                };
                let local = plan(None).unwrap();
                assert_eq!(sorted(shape(&p, &local.sets)), [("aa".to_owned(), 2)]);
                // The remote owner gets the write, counted in no set.
                assert_eq!(local.owners.len(), 3);
                let remote: Vec<_> = local.owners.iter().filter(|(o, _)| p.ring.in_datacenter(o, "b")).collect();
                assert_eq!(remote.len(), 1);
                assert_eq!(remote[0].1, 0);
                let each = plan(Some(ConsistencyLevel::EachQuorum)).unwrap();
                let mut each_shape = sorted(shape(&p, &each.sets));
                each_shape.sort();
                assert_eq!(each_shape, [("aa".to_owned(), 2), ("b".to_owned(), 1)]);
                let quorum = plan(Some(ConsistencyLevel::Quorum)).unwrap();
                assert_eq!(sorted(shape(&p, &quorum.sets)), [("aab".to_owned(), 2)]);
                let all = plan(Some(ConsistencyLevel::All)).unwrap();
                assert_eq!(all.sets[0].required, 3);
                let numeric = WriteOptions { quorum: Some(2), ..Default::default() };
                assert!(matches!(
                    WritePlan::new(&config, &p, &me, h, &numeric, now),
                    Err(Error::InvalidOptions(_))
                ));
            }
            // A datacenter that holds no copies cannot run a local level.
            let (elsewhere, config) = placement("c");
            let opts = WriteOptions::default();
            assert!(matches!(
                WritePlan::new(&config, &elsewhere, &me, 7, &opts, now),
                Err(Error::InvalidOptions(_))
            ));
            let one = WriteOptions::default().consistency(ConsistencyLevel::One);
            assert!(WritePlan::new(&config, &elsewhere, &me, 7, &one, now).is_ok());
        }

        #[test]
        fn read_levels_ask_their_datacenter_first() {
            let (p, config) = placement("b");
            let me = id("b2");
            for h in [0u64, 1 << 20, 1 << 62] {
                let read = |level: Option<ConsistencyLevel>| {
                    let opts = ReadOptions { consistency: level, ..Default::default() };
                    read_plan(&config, &p, &me, h, &opts)
                };
                let local = read(None).unwrap();
                assert_eq!(shape(&p, std::slice::from_ref(&local)), [("b".to_owned(), 1)]);
                let quorum = read(Some(ConsistencyLevel::Quorum)).unwrap();
                let dcs = shape(&p, std::slice::from_ref(&quorum));
                // b's owner first, then a's.
                assert_eq!(dcs, [("baa".to_owned(), 2)]);
                assert!(matches!(read(Some(ConsistencyLevel::EachQuorum)), Err(Error::InvalidOptions(_))));
            }
        }
    }
}
