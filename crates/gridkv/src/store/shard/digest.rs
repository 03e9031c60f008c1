//! Range digests' arithmetic: each entry's contribution and the
//! order-independent sum of one leaf.

use super::Entry;
use crate::hlc::{Timestamp, Version};

/// A key's contribution to its digest leaf. A version identifies one write,
/// so (ring position, version) identifies the stored state without hashing
/// the value. Folded multiplies mix all four words in a few nanoseconds (this
/// runs twice on every overwrite); the constants are arbitrary odd digits of
/// pi and only need to be fixed, since digests are compared across nodes.
#[inline]
pub(crate) fn entry_digest(hash: u64, version: &Version, stamp: Timestamp) -> u64 {
    let a = fold_mul(
        hash ^ 0x243F_6A88_85A3_08D3,
        version.ts.as_u64() ^ 0x1319_8A2E_0370_7345,
    );
    // An expiry change keeps the version and moves the stamp: replicas
    // that differ only in it must differ in digest too.
    let b = fold_mul(
        version.writer ^ 0xA409_3822_299F_31D1,
        version.generation.get() ^ 0x082E_FA98_EC4E_6C89 ^ stamp.as_u64().rotate_left(29),
    );
    fold_mul(a ^ 0x4528_21E6_38D0_1377, b ^ 0xBE54_66CF_34E9_0C6D)
}

/// The 128-bit product of `a` and `b`, folded to 64 bits.
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Digest of one leaf: an order-independent sum, so it updates in O(1)
/// when an entry is added, replaced or removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Leaf {
    pub sum: u64,
    pub count: u64,
}

impl Leaf {
    pub(super) fn add(&mut self, e: &Entry) {
        self.sum = self.sum.wrapping_add(leaf_digest(e));
        self.count += 1;
    }

    pub(super) fn remove(&mut self, e: &Entry) {
        self.sum = self.sum.wrapping_sub(leaf_digest(e));
        self.count -= 1;
    }
}

/// An entry's contribution to its leaf: [`entry_digest`], and for a
/// counter its state too (copies at one version differ by their slots).
pub(super) fn leaf_digest(e: &Entry) -> u64 {
    let digest = entry_digest(e.hash, &e.version, e.expiry_stamp);
    match (&e.value, e.counter) {
        (Some(state), true) => digest ^ crate::store::counter::content_digest(state),
        _ => digest,
    }
}
