//! Convergent counters (`INCR`, `DECR`, `INCRBY`, `DECRBY`): a PN-counter
//! per key, so that increments made on different nodes, concurrently or
//! on both sides of a partition, are all kept.
//!
//! A counter is a base (the integer value it started from: 0, or the
//! value a `SET` left) and one slot per writer: how much that writer added
//! (`p`) and took away (`n`), each only ever growing. Its value is `base +
//! Σp − Σn`. Two copies of one counter merge by taking, slot by slot, the
//! larger `p` and the larger `n`: merging is commutative, associative and
//! idempotent, so every replica that has seen the same increments holds the
//! same counter, in whatever order and however often they arrived.
//!
//! A counter is one *reset* of its key: it is stored at a version derived
//! from the version of the write it started from (the `SET` whose integer
//! it counts from, the delete or expiry it counts after, or nothing):
//! [`counter_version`]. Copies at equal versions merge; a newer version (a
//! `SET`, a `DEL`, an expiry, or a counter started after one) replaces the
//! counter whole, as any write does. Two nodes that start counting from
//! the same state derive the same version, so their increments merge.
//!
//! A slot is named by the writer's node id, its generation (its run) and a
//! serial the writer takes from a per-run sequence whenever it has no
//! memory of the slot it last used for the key (see the coordinator's
//! `CounterSlots`): a writer that restarted or forgot never reuses a slot
//! at a lower count, which max-merging would silently ignore.
//!
//! The state travels and is stored as the value's bytes, in a canonical
//! encoding (slots sorted), so equal counters have equal bytes.

use bytes::{BufMut, Bytes, BytesMut};

use crate::hlc::Version;
use crate::id::Generation;

/// Most slots one counter holds: a counter written through more node
/// runs (or by writers that forgot their slot more often) refuses new
/// slots until it is reset with `SET` or `DEL`.
pub const MAX_SLOTS: usize = 1024;

/// First byte of an encoded counter.
const MAGIC: u8 = 0xC7;

/// The bit of a version's generation that marks a counter's version (see
/// [`counter_version`]); real generations never reach it.
const COUNTER_BIT: u64 = 1 << 63;

/// The version a counter started after the write at `reset` is stored at
/// (`Version::ZERO` if the key held nothing): above `reset` and below any
/// write stamped after it, the same on every node that read `reset`. After
/// a counter's own version (one that expired, or was evicted), the next
/// counter's is one logical tick later, so it is always above `reset`.
///
/// # Examples
///
/// ```
/// use gridkv::hlc::{Timestamp, Version};
/// use gridkv::store::counter::counter_version;
///
/// let set = Version { ts: Timestamp::new(10, 0), writer: 7, ..Version::ZERO };
/// let later = Version { ts: Timestamp::new(10, 1), writer: 7, ..Version::ZERO };
/// assert!(set < counter_version(set) && counter_version(set) < later);
/// // A counter after an expired counter: above it too.
/// let again = counter_version(counter_version(set));
/// assert!(again > counter_version(set) && again < Version { writer: 1, ..later });
/// ```
pub fn counter_version(reset: Version) -> Version {
    if reset.generation.get() & COUNTER_BIT == 0 {
        Version {
            generation: Generation::new(reset.generation.get() | COUNTER_BIT),
            ..reset
        }
    } else {
        Version {
            ts: crate::hlc::Timestamp::from_u64(reset.ts.as_u64().saturating_add(1)),
            writer: 0,
            generation: Generation::new(COUNTER_BIT),
        }
    }
}

/// Who owns a slot: a node's run, and a serial within it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotId {
    /// The writer's node id.
    pub node: Bytes,
    /// The writer's generation.
    pub generation: u64,
    /// Which of the run's slots for this key.
    pub serial: u64,
}

/// One writer's part of a counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Whose.
    pub id: SlotId,
    /// Total added.
    pub p: u64,
    /// Total taken away.
    pub n: u64,
}

/// A counter's state.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use gridkv::store::counter::{Counter, SlotId};
///
/// let a = SlotId { node: Bytes::from("a"), generation: 1, serial: 0 };
/// let b = SlotId { node: Bytes::from("b"), generation: 1, serial: 0 };
/// let mut one = Counter::new(10);
/// one.add(&a, 5);
/// let mut two = one.clone();
/// two.add(&b, -3);
/// one.add(&a, 1);
/// // Concurrent increments on two copies: the merge keeps both.
/// let merged = one.merge(&two);
/// assert_eq!(merged.value(), 10 + 6 - 3);
/// assert_eq!(Counter::decode(&merged.encode()).unwrap(), merged);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// The value counted from.
    pub base: i64,
    /// Slots, sorted by id.
    slots: Vec<Slot>,
}

/// Why bytes are not a counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed counter state: {0}")]
pub struct CounterError(&'static str);

impl Counter {
    /// A counter at `base` with no slots.
    pub fn new(base: i64) -> Self {
        Self {
            base,
            slots: Vec::new(),
        }
    }

    /// The value: base plus every slot's additions minus its subtractions
    /// (wider than `i64`: concurrent increments can pass its range).
    pub fn value(&self) -> i128 {
        self.slots.iter().fold(i128::from(self.base), |v, s| {
            v + i128::from(s.p) - i128::from(s.n)
        })
    }

    /// The slots, sorted by id.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The slot `id`, if the counter has it.
    pub fn slot(&self, id: &SlotId) -> Option<&Slot> {
        self.slots
            .binary_search_by(|s| s.id.cmp(id))
            .ok()
            .map(|i| &self.slots[i])
    }

    /// Adds `delta` to slot `id` (created at zero if absent).
    pub fn add(&mut self, id: &SlotId, delta: i64) {
        let i = match self.slots.binary_search_by(|s| s.id.cmp(id)) {
            Ok(i) => i,
            Err(i) => {
                self.slots.insert(
                    i,
                    Slot {
                        id: id.clone(),
                        p: 0,
                        n: 0,
                    },
                );
                i
            }
        };
        let slot = &mut self.slots[i];
        if delta >= 0 {
            slot.p = slot.p.saturating_add(delta as u64);
        } else {
            slot.n = slot.n.saturating_add(delta.unsigned_abs());
        }
    }

    /// Sets slot `id` to at least `p` added and `n` taken (a writer's own
    /// totals, which it knows better than any copy it read).
    pub fn raise(&mut self, id: &SlotId, p: u64, n: u64) {
        self.add(id, 0);
        let i = self
            .slots
            .binary_search_by(|s| s.id.cmp(id))
            .expect("just added");
        let slot = &mut self.slots[i];
        slot.p = slot.p.max(p);
        slot.n = slot.n.max(n);
    }

    /// The merge of two copies of one counter (same base): per slot, the
    /// larger of each total.
    pub fn merge(&self, other: &Counter) -> Counter {
        let mut slots = Vec::with_capacity(self.slots.len().max(other.slots.len()));
        let (mut a, mut b) = (self.slots.iter().peekable(), other.slots.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => a.next().cloned(),
                (None, Some(_)) => b.next().cloned(),
                (Some(x), Some(y)) => match x.id.cmp(&y.id) {
                    std::cmp::Ordering::Less => a.next().cloned(),
                    std::cmp::Ordering::Greater => b.next().cloned(),
                    std::cmp::Ordering::Equal => {
                        let (x, y) = (a.next().expect("peeked"), b.next().expect("peeked"));
                        Some(Slot {
                            id: x.id.clone(),
                            p: x.p.max(y.p),
                            n: x.n.max(y.n),
                        })
                    }
                },
            };
            slots.extend(next);
        }
        Counter {
            // Copies of one counter share their base; should they not
            // (bytes from a faulty peer), the larger wins on every node.
            base: self.base.max(other.base),
            slots,
        }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Bytes {
        let size = 13 + self.slots.iter().map(|s| 33 + s.id.node.len()).sum::<usize>();
        let mut out = BytesMut::with_capacity(size);
        out.put_u8(MAGIC);
        out.put_i64_le(self.base);
        out.put_u32_le(self.slots.len() as u32);
        for s in &self.slots {
            out.put_u8(s.id.node.len() as u8);
            out.put_slice(&s.id.node);
            out.put_u64_le(s.id.generation);
            out.put_u64_le(s.id.serial);
            out.put_u64_le(s.p);
            out.put_u64_le(s.n);
        }
        out.freeze()
    }

    /// Decodes [`Counter::encode`]'s bytes (slots must be sorted and
    /// distinct, at most [`MAX_SLOTS`]).
    ///
    /// # Errors
    ///
    /// [`CounterError`] for anything else.
    pub fn decode(bytes: &[u8]) -> Result<Counter, CounterError> {
        let mut rest = bytes;
        let mut take = |n: usize| -> Result<&[u8], CounterError> {
            if rest.len() < n {
                return Err(CounterError("truncated"));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        if take(1)? != [MAGIC] {
            return Err(CounterError("not a counter"));
        }
        let base = u64_of(take(8)?) as i64;
        let count = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        if count > MAX_SLOTS {
            return Err(CounterError("too many slots"));
        }
        let mut slots: Vec<Slot> = Vec::with_capacity(count);
        for _ in 0..count {
            let len = take(1)?[0] as usize;
            let node = Bytes::copy_from_slice(take(len)?);
            let id = SlotId {
                node,
                generation: u64_of(take(8)?),
                serial: u64_of(take(8)?),
            };
            if slots.last().is_some_and(|s| s.id >= id) {
                return Err(CounterError("slots out of order"));
            }
            slots.push(Slot {
                id,
                p: u64_of(take(8)?),
                n: u64_of(take(8)?),
            });
        }
        if !rest_is_empty(bytes, &slots) {
            return Err(CounterError("trailing bytes"));
        }
        Ok(Counter { base, slots })
    }
}

/// Whether `bytes` is exactly the encoding of `slots` (no trailing bytes).
fn rest_is_empty(bytes: &[u8], slots: &[Slot]) -> bool {
    bytes.len() == 13 + slots.iter().map(|s| 33 + s.id.node.len()).sum::<usize>()
}

/// A content digest of a counter's bytes, folded into its entry's digest
/// so that replicas holding one version with different slots differ.
pub(crate) fn content_digest(state: &[u8]) -> u64 {
    // FNV-1a: the states are small, and only equality matters.
    state.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(node: &str, serial: u64) -> SlotId {
        SlotId {
            node: Bytes::copy_from_slice(node.as_bytes()),
            generation: 1,
            serial,
        }
    }

    fn counter(ops: &[(u8, i64)]) -> Counter {
        let mut c = Counter::new(7);
        for &(who, delta) in ops {
            c.add(&id(["a", "b", "c"][who as usize % 3], 0), delta);
        }
        c
    }

    proptest! {
        #[test]
        fn merging_is_commutative_associative_and_idempotent(
            x in proptest::collection::vec((0u8..3, -50i64..50), 0..8),
            y in proptest::collection::vec((0u8..3, -50i64..50), 0..8),
            z in proptest::collection::vec((0u8..3, -50i64..50), 0..8),
        ) {
            let (a, b, c) = (counter(&x), counter(&y), counter(&z));
            prop_assert_eq!(a.merge(&b), b.merge(&a));
            prop_assert_eq!(a.merge(&b).merge(&c), a.merge(&b.merge(&c)));
            prop_assert_eq!(a.merge(&a), a.clone());
            prop_assert_eq!(Counter::decode(&a.encode()).unwrap(), a);
        }
    }

    #[test]
    fn malformed_states_are_refused() {
        let good = counter(&[(0, 1), (1, -2)]).encode();
        assert!(Counter::decode(&good).is_ok());
        assert!(Counter::decode(&good[..good.len() - 1]).is_err());
        let mut long = good.to_vec();
        long.push(0);
        assert!(Counter::decode(&long).is_err());
        assert!(Counter::decode(b"12").is_err());
        let mut many = vec![MAGIC];
        many.extend_from_slice(&0i64.to_le_bytes());
        many.extend_from_slice(&(MAX_SLOTS as u32 + 1).to_le_bytes());
        assert_eq!(
            Counter::decode(&many),
            Err(CounterError("too many slots"))
        );
    }
}
