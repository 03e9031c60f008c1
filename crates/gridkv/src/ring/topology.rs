//! Datacenters and racks in placement: how many copies of a key each
//! datacenter holds, and how a ring picks them (NetworkTopologyStrategy's
//! walk, as Cassandra does it).
//!
//! # Placement protocol (continued from [the ring's](super))
//!
//! Every member has a [`Location`]: a datacenter and a rack (empty when the
//! node names none; members without a rack share the empty one).
//! [`ReplicaPlacement`] says how many copies each datacenter holds
//! ([`ReplicaPlacement::PerDatacenter`]), or how many copies the cluster
//! holds wherever they are ([`ReplicaPlacement::Total`], the only form
//! before datacenters). A key's replicas are found as follows:
//!
//! - **Groups.** With per-datacenter counts, each named datacenter's
//!   members form a group that holds its count of copies (members of
//!   datacenters not named hold none). With a total, all members form one
//!   group, listed as far as [`Ring::MAX_REPLICAS`]: a preference list of
//!   `n` takes the first `n`, so the total itself does not move keys.
//! - **Walk.** Within a group, the members met clockwise from the key's
//!   position (on the group's own tokens, so the first is the owner of the
//!   first group token at or past the key) are taken, one per rack first:
//!   a member whose rack is not taken yet is taken, the others are passed
//!   over; once every rack met has a copy (or the walk has met every
//!   member), the members passed over are taken in the order met. Racks are
//!   looked for among the first [`RACK_WALK`] distinct members met.
//! - **Order.** The groups are ordered by how far clockwise their first
//!   member's token lies from the key. The list is each group's first
//!   replica in that order, then each group's second, and so on. The
//!   primary is therefore the owner of the key's arc whenever its group
//!   holds copies.
//!
//! A ring of one datacenter and no racks places every key exactly as the
//! plain walk does: the first distinct members clockwise.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::Ring;

/// Most distinct members a group's walk looks through for racks not yet
/// holding a copy (and the longest group list the ring precomputes). Past
/// it, the members met first are taken whatever their rack.
pub const RACK_WALK: usize = 64;

/// Where a member runs: its datacenter and its rack (or zone).
///
/// # Examples
///
/// ```
/// use gridkv::ring::Location;
///
/// let here = Location::new("eu-west", "zone-b");
/// assert_eq!(here.to_string(), "eu-west/zone-b");
/// assert_eq!(Location::default().datacenter, "default");
/// assert_eq!(Location::default().rack, "");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The datacenter label.
    pub datacenter: String,
    /// The rack or zone label; empty when none was given.
    pub rack: String,
}

impl Location {
    /// A location from its labels.
    pub fn new(datacenter: impl Into<String>, rack: impl Into<String>) -> Self {
        Self {
            datacenter: datacenter.into(),
            rack: rack.into(),
        }
    }
}

impl Default for Location {
    /// The `default` datacenter, no rack: where a node that names neither
    /// runs.
    fn default() -> Self {
        Self::new("default", "")
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rack.is_empty() {
            f.write_str(&self.datacenter)
        } else {
            write!(f, "{}/{}", self.datacenter, self.rack)
        }
    }
}

/// How many copies of each key the cluster keeps, and where: the `N` of
/// N/W/R, as a total or per datacenter.
///
/// Written `3` (a total) or `a:2,b:1` (per datacenter), as the
/// `--replicas` flag takes it.
///
/// # Examples
///
/// ```
/// use gridkv::ring::ReplicaPlacement;
///
/// let total: ReplicaPlacement = "3".parse()?;
/// assert_eq!(total, ReplicaPlacement::Total(3));
/// let per_dc: ReplicaPlacement = "b:1, a:2".parse()?;
/// assert_eq!(per_dc.total(), 3);
/// assert_eq!(per_dc.in_datacenter("a"), 2);
/// assert_eq!(per_dc.in_datacenter("c"), 0);
/// assert_eq!(per_dc.to_string(), "a:2,b:1");
/// assert!("a:0".parse::<ReplicaPlacement>().is_err());
/// assert!("a:9,b:9".parse::<ReplicaPlacement>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaPlacement {
    /// This many copies, on members of any datacenter.
    Total(usize),
    /// So many copies in each named datacenter, sorted by name.
    PerDatacenter(Vec<(String, usize)>),
}

impl ReplicaPlacement {
    /// The copies of a key in all: the sum over datacenters.
    pub fn total(&self) -> usize {
        match self {
            ReplicaPlacement::Total(n) => *n,
            ReplicaPlacement::PerDatacenter(dcs) => dcs
                .iter()
                .fold(0usize, |sum, (_, n)| sum.saturating_add(*n)),
        }
    }

    /// Whether copies are counted per datacenter.
    pub fn is_per_datacenter(&self) -> bool {
        matches!(self, ReplicaPlacement::PerDatacenter(_))
    }

    /// Copies held in datacenter `dc`: its count, or 0 if it is not named
    /// (for a total, the total).
    pub fn in_datacenter(&self, dc: &str) -> usize {
        match self {
            ReplicaPlacement::Total(n) => *n,
            ReplicaPlacement::PerDatacenter(dcs) => dcs
                .iter()
                .find(|(name, _)| name == dc)
                .map_or(0, |(_, n)| *n),
        }
    }

    /// Per-datacenter counts from `(datacenter, copies)` pairs, checked.
    ///
    /// # Errors
    ///
    /// A datacenter named twice or with no copies, an empty or overlong
    /// name, no datacenter, or more than 16 copies (the ring's most replicas) in
    /// all.
    pub fn per_datacenter<S: Into<String>>(
        counts: impl IntoIterator<Item = (S, usize)>,
    ) -> Result<Self, String> {
        let mut dcs: Vec<(String, usize)> =
            counts.into_iter().map(|(dc, n)| (dc.into(), n)).collect();
        dcs.sort();
        let placement = ReplicaPlacement::PerDatacenter(dcs);
        placement.validate()?;
        Ok(placement)
    }

    /// Checks the counts (see [`ReplicaPlacement::per_datacenter`]).
    ///
    /// # Errors
    ///
    /// Why the counts cannot place keys.
    pub fn validate(&self) -> Result<(), String> {
        let max = Ring::MAX_REPLICAS;
        match self {
            ReplicaPlacement::Total(n) if *n == 0 || *n > max => {
                Err(format!("{n} copies: must be 1 to {max}"))
            }
            ReplicaPlacement::Total(_) => Ok(()),
            ReplicaPlacement::PerDatacenter(dcs) => {
                if dcs.is_empty() {
                    return Err("no datacenter named".into());
                }
                for (i, (dc, n)) in dcs.iter().enumerate() {
                    if dc.is_empty() || dc.len() > 255 || dc.contains([',', ':']) {
                        return Err(format!(
                            "datacenter {dc:?}: must be 1 to 255 bytes without ',' or ':'"
                        ));
                    }
                    if *n == 0 || *n > max {
                        return Err(format!("datacenter {dc}: 1 to {max} copies"));
                    }
                    if dcs[..i].iter().any(|(other, _)| other == dc) {
                        return Err(format!("datacenter {dc} is named twice"));
                    }
                }
                let total = self.total();
                if total > max {
                    return Err(format!("{total} copies in all: at most {max}"));
                }
                Ok(())
            }
        }
    }
}

impl FromStr for ReplicaPlacement {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if !s.contains(':') {
            let n: usize = s
                .parse()
                .map_err(|_| format!("{s:?}: expected a count (3) or per-datacenter counts (a:2,b:1)"))?;
            let placement = ReplicaPlacement::Total(n);
            placement.validate()?;
            return Ok(placement);
        }
        let mut counts = Vec::new();
        for part in s.split(',') {
            let (dc, n) = part
                .split_once(':')
                .ok_or_else(|| format!("{part:?}: expected datacenter:copies"))?;
            let n: usize = n
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the copies must be a number"))?;
            counts.push((dc.trim().to_owned(), n));
        }
        Self::per_datacenter(counts)
    }
}

impl fmt::Display for ReplicaPlacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicaPlacement::Total(n) => write!(f, "{n}"),
            ReplicaPlacement::PerDatacenter(dcs) => {
                for (i, (dc, n)) in dcs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{dc}:{n}")?;
                }
                Ok(())
            }
        }
    }
}

/// One group of the walk: its members' tokens and how many copies it
/// holds.
struct Group {
    /// Positions (in the whole ring) of the group's tokens, ascending.
    positions: Vec<usize>,
    copies: usize,
    /// Whether its members name more than one rack.
    racks: bool,
}

/// The replica table of a ring whose placement needs groups or racks: for
/// every token position, `stride` node indices in preference order (see
/// the [protocol](self)). Returns `(table, stride)`.
///
/// `owners[p]` is the node index owning position `p`; `locations[i]` is
/// node `i`'s location.
pub(super) fn placed_table(
    owners: &[u32],
    locations: &[Location],
    placement: &ReplicaPlacement,
) -> (Box<[u32]>, usize) {
    let positions = owners.len();
    // Rack labels as small numbers, for the walk.
    let mut rack_ids: BTreeMap<&str, u32> = BTreeMap::new();
    let node_rack: Vec<u32> = locations
        .iter()
        .map(|l| {
            let next = rack_ids.len() as u32;
            *rack_ids.entry(&l.rack).or_insert(next)
        })
        .collect();
    let mut groups: Vec<Group> = Vec::new();
    // Group of each node (None: holds no copies).
    let mut node_group: Vec<Option<usize>> = vec![None; locations.len()];
    match placement {
        ReplicaPlacement::Total(_) => {
            groups.push(Group {
                positions: Vec::new(),
                copies: Ring::MAX_REPLICAS,
                racks: false,
            });
            node_group.iter_mut().for_each(|g| *g = Some(0));
        }
        ReplicaPlacement::PerDatacenter(dcs) => {
            for (dc, copies) in dcs {
                let g = groups.len();
                groups.push(Group {
                    positions: Vec::new(),
                    copies: *copies,
                    racks: false,
                });
                for (i, l) in locations.iter().enumerate() {
                    if l.datacenter == *dc {
                        node_group[i] = Some(g);
                    }
                }
            }
        }
    }
    for (p, &owner) in owners.iter().enumerate() {
        if let Some(g) = node_group[owner as usize] {
            groups[g].positions.push(p);
        }
    }
    // Per group: its members, copies actually held, and its walk table.
    let mut tables: Vec<(Box<[u32]>, usize, usize)> = Vec::with_capacity(groups.len());
    for (g, group) in groups.iter_mut().enumerate() {
        let members = node_group.iter().filter(|&&ng| ng == Some(g)).count();
        let first_rack = node_group
            .iter()
            .position(|&ng| ng == Some(g))
            .map(|i| node_rack[i]);
        group.racks = node_group
            .iter()
            .zip(&node_rack)
            .any(|(&ng, &r)| ng == Some(g) && Some(r) != first_rack);
        let copies = group.copies.min(members);
        let walk = if group.racks {
            members.min(RACK_WALK)
        } else {
            copies
        };
        let sub_owners: Vec<u32> = group.positions.iter().map(|&p| owners[p]).collect();
        let table = super::successor_table(&sub_owners, locations.len(), walk);
        tables.push((table, walk, copies));
    }
    let stride: usize = tables.iter().map(|t| t.2).sum::<usize>().min(Ring::MAX_REPLICAS);
    let mut table = vec![0u32; positions * stride];
    // For every group, the index of its first token at or past the current
    // position (moves forward as the position does).
    let mut next: Vec<usize> = vec![0; groups.len()];
    let mut picks: Vec<Vec<u32>> = vec![Vec::new(); groups.len()];
    let mut order: Vec<(usize, usize)> = Vec::with_capacity(groups.len());
    for p in 0..positions {
        order.clear();
        for (g, group) in groups.iter().enumerate() {
            if group.positions.is_empty() {
                continue;
            }
            while next[g] < group.positions.len() && group.positions[next[g]] < p {
                next[g] += 1;
            }
            let q = if next[g] == group.positions.len() { 0 } else { next[g] };
            let (sub, walk, copies) = &tables[g];
            let met = &sub[q * walk..(q + 1) * walk];
            rack_order(met, *copies, &node_rack, group.racks, &mut picks[g]);
            // How far clockwise the group's first token lies.
            let at = group.positions[q];
            let distance = if at >= p { at - p } else { at + positions - p };
            order.push((distance, g));
        }
        order.sort_unstable();
        let row = &mut table[p * stride..(p + 1) * stride];
        let mut filled = 0;
        'fill: for i in 0.. {
            let mut any = false;
            for &(_, g) in &order {
                if let Some(&node) = picks[g].get(i) {
                    any = true;
                    if filled == stride {
                        break 'fill;
                    }
                    row[filled] = node;
                    filled += 1;
                }
            }
            if !any {
                break;
            }
        }
        debug_assert_eq!(filled, stride, "every group yields its copies");
    }
    (table.into_boxed_slice(), stride)
}

/// Takes `copies` of the members `met` (distinct, in walk order) into
/// `out`: one per rack first, then the others in walk order.
fn rack_order(met: &[u32], copies: usize, node_rack: &[u32], racks: bool, out: &mut Vec<u32>) {
    out.clear();
    if !racks {
        out.extend_from_slice(&met[..copies.min(met.len())]);
        return;
    }
    let mut taken = vec![false; met.len()];
    let mut racks_used: Vec<u32> = Vec::new();
    for (i, &node) in met.iter().enumerate() {
        if out.len() == copies {
            return;
        }
        let rack = node_rack[node as usize];
        if !racks_used.contains(&rack) {
            racks_used.push(rack);
            taken[i] = true;
            out.push(node);
        }
    }
    for (i, &node) in met.iter().enumerate() {
        if out.len() == copies {
            return;
        }
        if !taken[i] {
            out.push(node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::NodeId;
    use crate::ring::RingError;
    use proptest::prelude::*;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    /// The protocol walked plainly: per group, the distinct members met
    /// clockwise from the key's position, one per rack first; groups
    /// ordered by their first token's distance; lists interleaved.
    fn reference(ring: &Ring, h: u64) -> Vec<NodeId> {
        let tokens: Vec<(u64, NodeId)> = ring.tokens().map(|(t, n)| (t, *n)).collect();
        let start = tokens.iter().position(|(t, _)| *t >= h).unwrap_or(0);
        let groups: Vec<(Option<String>, usize)> = match ring.placement() {
            // A total does not shape the table: a list of n is its prefix.
            ReplicaPlacement::Total(_) => vec![(None, Ring::MAX_REPLICAS)],
            ReplicaPlacement::PerDatacenter(dcs) => {
                dcs.iter().map(|(dc, n)| (Some(dc.clone()), *n)).collect()
            }
        };
        let mut lists: Vec<(usize, Vec<NodeId>)> = Vec::new();
        for (dc, copies) in groups {
            let in_group =
                |n: &NodeId| dc.as_ref().is_none_or(|dc| ring.location(n).unwrap().datacenter == *dc);
            let mut met: Vec<NodeId> = Vec::new();
            let mut first = None;
            for k in 0..tokens.len() {
                let node = tokens[(start + k) % tokens.len()].1;
                if in_group(&node) {
                    first.get_or_insert(k);
                    if !met.contains(&node) {
                        met.push(node);
                    }
                }
            }
            let Some(first) = first else { continue };
            met.truncate(RACK_WALK);
            let mut picked: Vec<NodeId> = Vec::new();
            let mut racks: Vec<&str> = Vec::new();
            for node in &met {
                let rack = ring.location(node).unwrap().rack.as_str();
                if picked.len() < copies && !racks.contains(&rack) {
                    racks.push(rack);
                    picked.push(*node);
                }
            }
            for node in &met {
                if picked.len() < copies && !picked.contains(node) {
                    picked.push(*node);
                }
            }
            lists.push((first, picked));
        }
        lists.sort_by_key(|(first, _)| *first);
        let mut out = Vec::new();
        for i in 0..Ring::MAX_REPLICAS {
            for (_, list) in &lists {
                if let Some(node) = list.get(i) {
                    out.push(*node);
                }
            }
        }
        out.truncate(Ring::MAX_REPLICAS);
        out
    }

    fn members() -> impl Strategy<Value = Vec<(NodeId, Location)>> {
        prop::collection::vec((0usize..3, 0usize..3), 1..12).prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(i, (dc, rack))| {
                    let rack = if rack == 0 { String::new() } else { format!("r{rack}") };
                    (id(&format!("n{i}")), Location::new(format!("dc{dc}"), rack))
                })
                .collect()
        })
    }

    fn placements() -> impl Strategy<Value = ReplicaPlacement> {
        prop_oneof![
            (1usize..5).prop_map(ReplicaPlacement::Total),
            (1usize..4, 0usize..3, 1usize..3).prop_map(|(a, b, c)| {
                let mut counts = vec![("dc0", a), ("dc2", c)];
                if b > 0 {
                    counts.push(("dc1", b));
                }
                ReplicaPlacement::per_datacenter(counts).unwrap()
            }),
        ]
    }

    proptest! {
        #[test]
        fn the_table_matches_the_plain_walk(
            members in members(),
            placement in placements(),
            h in any::<u64>(),
            vnodes in 1u32..8,
        ) {
            let ring = Ring::placed(1, members, vnodes, &placement).unwrap();
            let got: Vec<NodeId> = ring.preference_list(h, Ring::MAX_REPLICAS).iter().copied().collect();
            prop_assert_eq!(got, reference(&ring, h));
        }

        #[test]
        fn each_datacenter_holds_its_copies_on_distinct_racks(
            members in members(),
            placement in placements(),
            h in any::<u64>(),
        ) {
            let ring = Ring::placed(1, members.clone(), 16, &placement).unwrap();
            let list = ring.preference_list(h, placement.total());
            let mut seen = std::collections::HashSet::new();
            for dc in ["dc0", "dc1", "dc2"] {
                let here: Vec<&(NodeId, Location)> =
                    members.iter().filter(|(_, l)| l.datacenter == dc).collect();
                let wanted = match &placement {
                    ReplicaPlacement::Total(_) => continue,
                    p => p.in_datacenter(dc).min(here.len()),
                };
                let owners: Vec<&NodeId> = list.iter().filter(|n| ring.in_datacenter(n, dc)).collect();
                prop_assert_eq!(owners.len(), wanted, "datacenter {}", dc);
                let racks: std::collections::HashSet<&str> =
                    here.iter().map(|(_, l)| l.rack.as_str()).collect();
                let owner_racks: std::collections::HashSet<&str> = owners
                    .iter()
                    .map(|n| ring.location(n).unwrap().rack.as_str())
                    .collect();
                // As many distinct racks as there are copies, or racks.
                prop_assert_eq!(owner_racks.len(), wanted.min(racks.len()));
                for n in owners {
                    prop_assert!(seen.insert(*n), "{} listed twice", n);
                }
            }
            // The owner of the key's arc is the primary when its
            // datacenter holds copies.
            if let Some(p) = list.primary() {
                let arc_owner = ring.tokens().find(|(t, _)| *t >= h).or_else(|| ring.tokens().next()).unwrap().1;
                if placement.in_datacenter(&ring.location(arc_owner).unwrap().datacenter) > 0 {
                    prop_assert_eq!(p, arc_owner);
                }
            }
        }
    }

    #[test]
    fn one_datacenter_without_racks_places_as_the_plain_ring() {
        let nodes: Vec<NodeId> = (0..7).map(|i| id(&format!("n{i}"))).collect();
        let plain = Ring::new(3, nodes.iter().copied()).unwrap();
        let placed = Ring::placed(
            3,
            nodes.iter().map(|n| (*n, Location::default())),
            Ring::DEFAULT_VNODES,
            &ReplicaPlacement::Total(3),
        )
        .unwrap();
        for h in (0..1000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) {
            assert_eq!(plain.preference_list(h, 3), placed.preference_list(h, 3));
        }
    }

    #[test]
    fn a_datacenter_with_fewer_members_than_copies_holds_what_it_has() {
        let placement: ReplicaPlacement = "a:2,b:3".parse().unwrap();
        let members = [
            (id("a1"), Location::new("a", "")),
            (id("a2"), Location::new("a", "")),
            (id("b1"), Location::new("b", "")),
            (id("c1"), Location::new("c", "")),
        ];
        let ring = Ring::placed(1, members, 32, &placement).unwrap();
        for h in [0, 1 << 40, u64::MAX] {
            let mut owners: Vec<&str> = ring.preference_list(h, 5).iter().map(|n| n.as_str()).collect();
            owners.sort_unstable();
            // c holds nothing; b has one member for three copies.
            assert_eq!(owners, ["a1", "a2", "b1"]);
        }
        assert_eq!(ring.copies(5), 3);
    }

    #[test]
    fn placements_parse_and_refuse() {
        assert_eq!("3".parse(), Ok(ReplicaPlacement::Total(3)));
        for bad in ["0", "17", "a:0", "a:2,a:1", ":2", "a:x", "a", "a:10,b:7", ""] {
            assert!(bad.parse::<ReplicaPlacement>().is_err(), "{bad:?}");
        }
        let p: ReplicaPlacement = " eu : 2 , us:1 ".parse().unwrap();
        assert_eq!(p.to_string(), "eu:2,us:1");
        assert_eq!(Ring::placed(1, [], 1, &ReplicaPlacement::Total(0)), Err(RingError::Placement("0 copies: must be 1 to 16".into())));
    }
}
