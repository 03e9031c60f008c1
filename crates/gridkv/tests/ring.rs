//! The consistent hash ring as other nodes and releases see it: fixed
//! placement vectors, balance, minimal movement, and the properties every
//! preference list must have.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use gridkv::NodeId;
use gridkv::keyspace::key_hash;
use gridkv::ring::{Ring, RingError, SharedRing, vnode_token};
use gridkv::rng::SplitMix64;
use proptest::prelude::*;

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn ids<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Vec<NodeId> {
    names.into_iter().map(|n| id(n.as_ref())).collect()
}

fn list(ring: &Ring, h: u64, n: usize) -> Vec<&str> {
    ring.preference_list(h, n)
        .iter()
        .map(|n| n.as_str())
        .collect()
}

/// Hashes of the keys `key-0` .. `key-999999`, shared by the tests.
fn key_hashes() -> &'static [u64] {
    static HASHES: OnceLock<Vec<u64>> = OnceLock::new();
    HASHES.get_or_init(|| {
        (0..1_000_000)
            .map(|i| key_hash(format!("key-{i}").as_bytes()))
            .collect()
    })
}

/// `count` random names of 6 to 20 characters from `[a-z0-9]`.
fn random_names(seed: u64, count: usize) -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = SplitMix64::new(seed);
    (0..count)
        .map(|_| {
            let len = 6 + (rng.next_u64() % 15) as usize;
            (0..len)
                .map(|_| ALPHABET[(rng.next_u64() % 36) as usize] as char)
                .collect()
        })
        .collect()
}

fn uuid_like_names(count: usize) -> Vec<String> {
    let mut rng = SplitMix64::new(0x5555);
    (0..count)
        .map(|_| {
            let (a, b) = (rng.next_u64(), rng.next_u64());
            format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                b >> 52,
                b & 0xffff_ffff_ffff
            )
        })
        .collect()
}

/// Keys per member (in `ring.nodes()` order) as primary owner.
fn primary_loads(ring: &Ring) -> Vec<usize> {
    let mut loads = vec![0; ring.len()];
    for &h in key_hashes() {
        let owner = ring.primary(h).unwrap();
        loads[ring.nodes().binary_search(owner).unwrap()] += 1;
    }
    loads
}

fn max_over_mean(loads: &[usize]) -> f64 {
    let mean = loads.iter().sum::<usize>() as f64 / loads.len() as f64;
    *loads.iter().max().unwrap() as f64 / mean
}

// ---------------------------------------------------------------------------
// Fixed vectors: these values are the placement protocol. If one changes,
// keys move between releases; that needs a versioned migration, not a new
// expected value.

#[test]
fn token_vectors() {
    let node = id("node-1");
    assert_eq!(vnode_token(&node, 0, 150), 0x0092_0fb2_0d92_eca3);
    assert_eq!(vnode_token(&node, 149, 150), 0xfebf_8ae2_17b2_d736);
    assert_eq!(
        vnode_token(&id("10.0.0.7:7946"), 42, 600),
        0x1224_6842_64b6_d9af
    );
}

#[test]
fn preference_list_vectors() {
    let ring = Ring::new(1, ids(["node-1", "node-2", "node-3", "node-4", "node-5"])).unwrap();
    let cases: [(&[u8], [&str; 3]); 5] = [
        (b"user:1", ["node-5", "node-1", "node-2"]),
        (b"user:42", ["node-2", "node-4", "node-5"]),
        (b"user:123", ["node-1", "node-4", "node-3"]),
        (b"session:abc", ["node-4", "node-5", "node-2"]),
        (b"k", ["node-5", "node-4", "node-2"]),
    ];
    for (key, expected) in cases {
        assert_eq!(
            list(&ring, key_hash(key), 3),
            expected,
            "key {:?}",
            String::from_utf8_lossy(key)
        );
    }
}

// ---------------------------------------------------------------------------
// Balance: 10 members x 150 virtual nodes over 1M keys, most loaded member
// <= 1.25 x the mean.

const BALANCE_LIMIT: f64 = 1.25;

/// How many seeded random name sets the balance test checks. Balance is
/// statistical: about 0.8% of random 10-member sets exceed 1.25 at 150
/// virtual nodes (docs/RING.md; the first such seed is 162), so checking
/// many more seeds would start to include them. Seeds 0..RANDOM_SETS are the
/// first sets of the bench's curve, and all of them pass (the worst, seed
/// 23, at 1.224). A change to the token scheme that makes balance worse
/// shows up here as a failing seed.
const RANDOM_SETS: u64 = 24;

fn assert_balanced(scheme: &str, names: &[String]) {
    let ring = Ring::new(1, ids(names)).unwrap();
    let ratio = max_over_mean(&primary_loads(&ring));
    println!("{scheme:>24}: max/mean {ratio:.4}");
    assert!(
        ratio <= BALANCE_LIMIT,
        "{scheme}: most loaded member holds {ratio:.4} x the mean; members {names:?}"
    );
}

#[test]
fn balance_over_fixed_naming_schemes() {
    let schemes: [(&str, Vec<String>); 4] = [
        (
            "node-1..10",
            (1..=10).map(|i| format!("node-{i}")).collect(),
        ),
        (
            "ip:port",
            (1..=10).map(|i| format!("10.0.0.{i}:7946")).collect(),
        ),
        (
            "host:port",
            (0..10)
                .map(|i| format!("cache-{i}.eu-west:{}", 6379 + i))
                .collect(),
        ),
        ("uuid", uuid_like_names(10)),
    ];
    for (scheme, names) in &schemes {
        assert_balanced(scheme, names);
    }
}

#[test]
fn balance_over_seeded_random_names() {
    for seed in 0..RANDOM_SETS {
        assert_balanced(&format!("random seed {seed}"), &random_names(seed, 10));
    }
}

// ---------------------------------------------------------------------------
// Minimal movement.

/// Adding one member to M moves at most 1.2 / (M + 1) of the keys, and only
/// to the new member; replica lists only gain the new member.
#[test]
fn adding_a_member_moves_only_its_share() {
    for m in [3usize, 5, 10] {
        let names: Vec<String> = (1..=m).map(|i| format!("node-{i}")).collect();
        let before = Ring::new(1, ids(&names)).unwrap();
        let joiner = id(&format!("node-{}", m + 1));
        let after = Ring::new(2, ids(&names).into_iter().chain([joiner])).unwrap();

        let mut moved = 0usize;
        for &h in key_hashes() {
            let (old, new) = (before.primary(h).unwrap(), after.primary(h).unwrap());
            if old != new {
                assert_eq!(new, &joiner, "a key moved between old members");
                moved += 1;
            }
        }
        let fraction = moved as f64 / key_hashes().len() as f64;
        let bound = 1.2 / (m + 1) as f64;
        println!(
            "add 1 to {m}: moved {fraction:.4} of keys, ideal {:.4}, ratio {:.3}",
            1.0 / (m + 1) as f64,
            fraction * (m + 1) as f64
        );
        assert!(
            fraction <= bound,
            "adding to {m} moved {fraction:.4} > {bound:.4}"
        );

        for &h in &key_hashes()[..200_000] {
            let old = before.preference_list(h, 3);
            let new = after.preference_list(h, 3);
            let without: Vec<_> = new.iter().filter(|&n| n != &joiner).collect();
            assert!(
                old.iter().zip(&without).all(|(a, b)| a == *b),
                "replicas {old:?} became {new:?}"
            );
        }
    }
}

/// Removing a member moves only its keys: every other key keeps its
/// primary, and a replica list changes only if it held the removed member,
/// which is then dropped and the next member appended.
#[test]
fn removing_a_member_moves_only_its_keys() {
    for m in [3usize, 5, 10] {
        let all = ids((1..=m + 1).map(|i| format!("node-{i}")));
        let removed = all[m / 2];
        let before = Ring::new(1, all.clone()).unwrap();
        let after = Ring::new(2, all.into_iter().filter(|n| *n != removed)).unwrap();

        for &h in key_hashes() {
            let old = before.primary(h).unwrap();
            if old != &removed {
                assert_eq!(after.primary(h).unwrap(), old);
            }
        }
        for &h in &key_hashes()[..200_000] {
            let old = before.preference_list(h, 3);
            let new = after.preference_list(h, 3);
            if old.contains(&removed) {
                let kept: Vec<_> = old.iter().filter(|&n| n != &removed).collect();
                assert_eq!(new.iter().take(kept.len()).collect::<Vec<_>>(), kept);
                assert_eq!(new.len(), 3);
            } else {
                assert_eq!(old, new);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Properties of every ring.

fn members() -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set("[a-z0-9.:-]{1,12}", 0..12).prop_map(|s| s.into_iter().collect())
}

proptest! {
    #[test]
    fn preference_lists_are_distinct_members_primary_first(
        names in members(), vnodes in 1u32..64, n in 0usize..20, h: u64,
    ) {
        let ring = Ring::with_vnodes(1, ids(&names), vnodes).unwrap();
        let replicas = ring.preference_list(h, n);
        prop_assert_eq!(replicas.len(), n.min(names.len()).min(Ring::MAX_REPLICAS));
        let mut seen: Vec<_> = replicas.iter().collect();
        seen.sort();
        seen.dedup();
        prop_assert_eq!(seen.len(), replicas.len());
        prop_assert!(replicas.iter().all(|node| ring.contains(node)));
        if n > 0 {
            prop_assert_eq!(replicas.primary(), ring.primary(h));
        }
    }

    #[test]
    fn member_order_does_not_matter(
        names in members().prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
        vnodes in 1u32..64,
        h: u64,
    ) {
        let (sorted, shuffled) = names;
        let a = Ring::with_vnodes(3, ids(&sorted), vnodes).unwrap();
        let b = Ring::with_vnodes(3, ids(&shuffled), vnodes).unwrap();
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.preference_list(h, 4), b.preference_list(h, 4));
    }

    #[test]
    fn ranges_cover_the_ring_once_with_the_keys_replicas(
        names in members(), vnodes in 1u32..32, n in 0usize..6, h: u64,
    ) {
        let ring = Ring::with_vnodes(1, ids(&names), vnodes).unwrap();
        let holding: Vec<_> = ring.ranges(n).filter(|(r, _)| r.contains(h)).collect();
        if names.is_empty() {
            prop_assert!(holding.is_empty());
        } else {
            prop_assert_eq!(holding.len(), 1);
            prop_assert_eq!(holding[0].1, ring.preference_list(h, n));
        }
        for node in ring.nodes() {
            let mine: Vec<_> = ring.ranges_of(node, n).collect();
            let expected: Vec<_> = ring.ranges(n).filter(|(_, l)| l.contains(node)).collect();
            prop_assert_eq!(mine, expected);
        }
    }
}

#[test]
fn bad_configurations_are_typed_errors() {
    let a = id("a");
    assert_eq!(Ring::with_vnodes(1, [a], 0), Err(RingError::ZeroVnodes));
    assert_eq!(
        Ring::new(1, [a, id("b"), a]),
        Err(RingError::DuplicateNode(a))
    );
    let empty = Ring::new(1, []).unwrap();
    assert!(empty.is_empty());
    assert!(empty.preference_list(42, 3).is_empty());
    assert_eq!(empty.ranges(3).count(), 0);
}

#[test]
fn more_replicas_than_members_returns_every_member() {
    let nodes = ids(["a", "b", "c"]);
    let ring = Ring::new(1, nodes.clone()).unwrap();
    for &h in &key_hashes()[..1000] {
        let mut all: Vec<_> = ring.preference_list(h, 10).iter().copied().collect();
        all.sort();
        assert_eq!(all, nodes);
    }
}

/// Readers racing a writer always see a whole snapshot, and with one writer
/// the versions they see never go backwards.
#[test]
fn shared_ring_swaps_whole_snapshots() {
    let small = ids(["a", "b"]);
    let large = ids(["a", "b", "c", "d"]);
    let shared = Arc::new(SharedRing::new(Ring::new(0, small.clone()).unwrap()));
    let done = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (shared, done) = (shared.clone(), done.clone());
            std::thread::spawn(move || {
                let mut last = 0;
                while !done.load(Ordering::Relaxed) {
                    let ring = shared.load();
                    assert!(ring.version() >= last, "version went backwards");
                    last = ring.version();
                    // Even versions have 2 members, odd ones 4.
                    let expected = if last % 2 == 0 { 2 } else { 4 };
                    assert_eq!(ring.len(), expected);
                    assert_eq!(ring.preference_list(last, 8).len(), expected);
                }
                last
            })
        })
        .collect();

    for version in 1..=2_000u64 {
        let members = if version % 2 == 0 { &small } else { &large };
        shared.store(Ring::with_vnodes(version, members.clone(), 8).unwrap());
    }
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().unwrap() <= 2_000);
    }
    assert_eq!(shared.load_full().version(), 2_000);
}
