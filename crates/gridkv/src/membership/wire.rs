//! The membership protocol's messages and their encoding (postcard).
//!
//! Every packet starts with a format version and carries the sender's own
//! current state, so any packet from a member is also news about it. Member
//! states in packets are [`Update`]s: the whole state of one member at one
//! incarnation, merged by the rules in [`Update::overrides`]. Every packet
//! also carries the sender's clocks ([`ClockReading`]): a ping and its ack
//! measure the offset between two nodes' wall clocks (see
//! [`super::clock`]).

use serde::{Deserialize, Serialize};

use bytes::Bytes;

use super::member::{Identity, Liveness, Member, RingState};
use super::proof::{ClaimKind, Proof, MAX_CERT_BYTES};
use crate::id::{Generation, NodeId};

/// The packet format this build writes and reads. Version 2 added the
/// sender's [`ClockReading`]; version 3 a signature ([`Proof`]) on every
/// update; version 4 the member's rack. Earlier versions are refused
/// ([`WireError::Version`]): membership has no mixed-version mode.
pub const WIRE_VERSION: u8 = 4;

/// Most member states one packet may carry; a larger table is sent as
/// several push-pull packets.
pub const MAX_UPDATES_PER_PACKET: usize = 4096;

/// Why a packet could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not valid postcard for `Packet` (truncated, garbled, trailing bytes).
    #[error("malformed membership packet: {0}")]
    Malformed(String),
    /// A format version this build does not read.
    #[error("membership packet version {got}, this node reads {WIRE_VERSION}")]
    Version {
        /// The version the packet claims.
        got: u8,
    },
    /// A field out of bounds (an invalid node id, an overlong label, too
    /// many updates).
    #[error("invalid membership packet field `{field}`")]
    Invalid {
        /// Which field.
        field: &'static str,
    },
}

/// One member's state as gossiped: identity, incarnation, liveness, ring
/// state, and for suspicions who raised it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Who.
    pub identity: Identity,
    /// The member's incarnation this state belongs to.
    pub incarnation: u64,
    /// Reachability.
    pub liveness: Liveness,
    /// Place on the ring.
    pub ring: RingState,
    /// See [`Member::holds_slots`].
    pub holds_slots: bool,
    /// For a suspicion: the member that raised it (confirmations from
    /// distinct members shorten the suspicion timeout). With signed
    /// membership, every claim about another member (suspect, down, a
    /// removal vote) names its claimer here.
    pub suspector: Option<NodeId>,
    /// The signature, when membership is signed (see
    /// [`super::signed`]); relays pass it on unchanged.
    pub proof: Option<Proof>,
}

impl Update {
    /// The state of `member`, as this node would gossip it.
    pub fn of(member: &Member) -> Self {
        Self {
            identity: member.identity.clone(),
            incarnation: member.incarnation,
            liveness: member.liveness,
            ring: member.ring,
            holds_slots: member.holds_slots,
            suspector: None,
            proof: None,
        }
    }

    /// The claim with its signature left off: what two updates carrying
    /// the same news have in common.
    pub fn unsigned(&self) -> Update {
        Update {
            proof: None,
            ..self.clone()
        }
    }

    /// How strong a claim this is at one incarnation: at equal incarnations
    /// the stronger wins (alive < suspect < down < left; removal on top).
    fn strength(&self) -> (u8, u8) {
        let live = match self.liveness {
            Liveness::Alive => 0,
            Liveness::Suspect => 1,
            Liveness::Down => 2,
            Liveness::Left => 3,
        };
        let ring = match self.ring {
            RingState::Removed => 1,
            _ => 0,
        };
        (ring, live)
    }

    /// Whether this update replaces `current` in the member table:
    /// - a later generation replaces everything (the node restarted), an
    ///   earlier one nothing;
    /// - within a generation a higher incarnation wins (only the member
    ///   itself raises it, so it is newer news);
    /// - at equal incarnations the stronger claim wins.
    pub fn overrides(&self, current: &Member) -> bool {
        let (g, cg) = (self.identity.generation, current.identity.generation);
        if g != cg {
            return g > cg;
        }
        if current.liveness == Liveness::Left || current.ring == RingState::Removed {
            // Final for this generation; only the member itself can come
            // back from a removal: alive at a higher incarnation, and as a
            // joiner holding no slots (its data is stale; it must refill).
            return self.incarnation > current.incarnation
                && current.ring == RingState::Removed
                && current.liveness != Liveness::Left
                && self.liveness == Liveness::Alive
                && self.ring == RingState::Joining
                && !self.holds_slots;
        }
        if self.incarnation != current.incarnation {
            return self.incarnation > current.incarnation;
        }
        let current = Update::of(current);
        self.strength() > current.strength()
            || (self.strength() == current.strength()
                && (self.ring, self.holds_slots) > (current.ring, current.holds_slots))
    }
}

/// What a packet says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A probe; answered with [`Message::Ack`] of the same `seq`.
    Ping {
        /// Matches the answer to the probe.
        seq: u64,
        /// The member the prober means (a different node at that address
        /// answers, but its ack does not count for `target`).
        target: NodeId,
    },
    /// The answer to a ping, direct or relayed by an indirect prober.
    Ack {
        /// The probe's sequence number.
        seq: u64,
    },
    /// Asks the receiver to probe `target` on the sender's behalf.
    PingReq {
        /// The requester's sequence number, echoed in the relayed answer.
        seq: u64,
        /// The member to probe.
        target: NodeId,
        /// Where to reach it.
        target_addr: String,
    },
    /// From an indirect prober: `target` did not answer it either (the
    /// requester is not the only one cut off, so it is not the slow one).
    Nack {
        /// The requester's sequence number.
        seq: u64,
    },
    /// A node asks to join; answered with [`Message::JoinReply`] or
    /// [`Message::JoinRefused`].
    Join,
    /// The member table, for a joiner.
    JoinReply {
        /// Every member the answering node knows.
        members: Vec<Update>,
    },
    /// The join is refused (another live node uses the joiner's id).
    JoinRefused {
        /// The address of the member already holding the id.
        holder: String,
    },
    /// Anti-entropy for the member table: the sender's whole table. When
    /// `reply` is set the receiver answers with its own.
    PushPull {
        /// The sender's table.
        members: Vec<Update>,
        /// Whether the receiver should answer with its table.
        reply: bool,
    },
}

/// One membership packet: the sender's state, a message, and piggybacked
/// updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The sender's own current state.
    pub from: Update,
    /// The message.
    pub message: Message,
    /// Gossip riding along.
    pub updates: Vec<Update>,
    /// The sender's clocks when it sent the packet.
    pub clock: ClockReading,
}

/// A node's clocks as it sends a membership packet: the wall clock (what
/// the clock monitor compares) and the highest Hybrid Logical Clock
/// timestamp it has handed out or merged (what a restarted node learns
/// the cluster's clock from). Zero means unknown: a state machine driven
/// without clocks (simulations of membership alone) sends zeros, and
/// receivers ignore them.
///
/// # Examples
///
/// ```
/// use gridkv::membership::wire::ClockReading;
///
/// assert!(!ClockReading::default().has_wall());
/// assert!(ClockReading { wall_ms: 1_700_000_000_000, hlc: 0 }.has_wall());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockReading {
    /// Wall-clock milliseconds since the Unix epoch; 0 if unknown.
    pub wall_ms: u64,
    /// A packed [`Timestamp`](crate::hlc::Timestamp) no lower than any the
    /// sender has issued or merged; 0 if it does not vouch for one (it is
    /// itself a restart still waiting out its write barrier).
    pub hlc: u64,
}

impl ClockReading {
    /// Whether the wall clock was read.
    pub fn has_wall(&self) -> bool {
        self.wall_ms != 0
    }
}

#[derive(Serialize, Deserialize)]
struct IdentityWire<'a> {
    id: &'a str,
    generation: u64,
    addr: &'a str,
    datacenter: &'a str,
    rack: &'a str,
    public_key: Option<[u8; 32]>,
}

#[derive(Serialize, Deserialize)]
struct UpdateWire<'a> {
    #[serde(borrow)]
    identity: IdentityWire<'a>,
    incarnation: u64,
    liveness: u8,
    ring: u8,
    holds_slots: bool,
    suspector: Option<&'a str>,
    #[serde(borrow)]
    proof: Option<ProofWire<'a>>,
}

#[derive(Serialize, Deserialize)]
struct ProofWire<'a> {
    kind: u8,
    signer: &'a str,
    signer_generation: u64,
    #[serde(borrow)]
    signature: RawBytes<'a>,
    #[serde(borrow)]
    certificate: Option<RawBytes<'a>>,
}

/// A byte string that postcard writes as its length and the bytes, and
/// reads without copying.
struct RawBytes<'a>(&'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawBytes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = RawBytes<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(RawBytes(v))
            }
        }
        d.deserialize_bytes(Visit)
    }
}

#[derive(Serialize, Deserialize)]
enum MessageWire<'a> {
    Ping {
        seq: u64,
        target: &'a str,
    },
    Ack {
        seq: u64,
    },
    PingReq {
        seq: u64,
        target: &'a str,
        target_addr: &'a str,
    },
    Nack {
        seq: u64,
    },
    Join,
    JoinReply {
        #[serde(borrow)]
        members: Vec<UpdateWire<'a>>,
    },
    JoinRefused {
        holder: &'a str,
    },
    PushPull {
        #[serde(borrow)]
        members: Vec<UpdateWire<'a>>,
        reply: bool,
    },
}

#[derive(Serialize, Deserialize)]
struct PacketWire<'a> {
    version: u8,
    #[serde(borrow)]
    from: UpdateWire<'a>,
    #[serde(borrow)]
    message: MessageWire<'a>,
    #[serde(borrow)]
    updates: Vec<UpdateWire<'a>>,
    wall_ms: u64,
    hlc: u64,
}

pub(crate) fn liveness_code(l: Liveness) -> u8 {
    match l {
        Liveness::Alive => 0,
        Liveness::Suspect => 1,
        Liveness::Down => 2,
        Liveness::Left => 3,
    }
}

pub(crate) fn ring_code(r: RingState) -> u8 {
    match r {
        RingState::Joining => 0,
        RingState::Normal => 1,
        RingState::Leaving => 2,
        RingState::Left => 3,
        RingState::Removed => 4,
    }
}

fn to_wire(u: &Update) -> UpdateWire<'_> {
    UpdateWire {
        identity: IdentityWire {
            id: u.identity.id.as_str(),
            generation: u.identity.generation.get(),
            addr: &u.identity.addr,
            datacenter: &u.identity.datacenter,
            rack: &u.identity.rack,
            public_key: u.identity.public_key,
        },
        incarnation: u.incarnation,
        liveness: liveness_code(u.liveness),
        ring: ring_code(u.ring),
        holds_slots: u.holds_slots,
        suspector: u.suspector.as_ref().map(NodeId::as_str),
        proof: u.proof.as_ref().map(|p| ProofWire {
            kind: p.kind.code(),
            signer: p.signer.as_str(),
            signer_generation: p.signer_generation.get(),
            signature: RawBytes(&p.signature),
            certificate: p.certificate.as_deref().map(RawBytes),
        }),
    }
}

fn proof_from_wire(w: &ProofWire<'_>) -> Result<Proof, WireError> {
    let signature: [u8; 64] = w
        .signature
        .0
        .try_into()
        .map_err(|_| WireError::Invalid { field: "signature" })?;
    let certificate = match &w.certificate {
        Some(c) if c.0.len() > MAX_CERT_BYTES || c.0.is_empty() => {
            return Err(WireError::Invalid {
                field: "certificate",
            })
        }
        Some(c) => Some(Bytes::copy_from_slice(c.0)),
        None => None,
    };
    Ok(Proof {
        kind: ClaimKind::from_code(w.kind).ok_or(WireError::Invalid {
            field: "claim kind",
        })?,
        signer: node_id(w.signer, "signer")?,
        signer_generation: Generation::new(w.signer_generation),
        signature,
        certificate,
    })
}

fn node_id(s: &str, field: &'static str) -> Result<NodeId, WireError> {
    NodeId::new(s).map_err(|_| WireError::Invalid { field })
}

fn label(s: &str, field: &'static str) -> Result<String, WireError> {
    if s.len() > Identity::MAX_LABEL {
        return Err(WireError::Invalid { field });
    }
    Ok(s.to_owned())
}

fn from_wire(w: &UpdateWire<'_>) -> Result<Update, WireError> {
    let liveness = match w.liveness {
        0 => Liveness::Alive,
        1 => Liveness::Suspect,
        2 => Liveness::Down,
        3 => Liveness::Left,
        _ => return Err(WireError::Invalid { field: "liveness" }),
    };
    let ring = match w.ring {
        0 => RingState::Joining,
        1 => RingState::Normal,
        2 => RingState::Leaving,
        3 => RingState::Left,
        4 => RingState::Removed,
        _ => return Err(WireError::Invalid { field: "ring" }),
    };
    if w.incarnation == u64::MAX {
        // Nothing could refute it: a member's incarnation must leave room
        // to be raised.
        return Err(WireError::Invalid {
            field: "incarnation",
        });
    }
    Ok(Update {
        identity: Identity {
            id: node_id(w.identity.id, "id")?,
            generation: Generation::new(w.identity.generation),
            addr: label(w.identity.addr, "addr")?,
            datacenter: label(w.identity.datacenter, "datacenter")?,
            rack: label(w.identity.rack, "rack")?,
            public_key: w.identity.public_key,
        },
        incarnation: w.incarnation,
        liveness,
        ring,
        holds_slots: w.holds_slots,
        suspector: w.suspector.map(|s| node_id(s, "suspector")).transpose()?,
        proof: w.proof.as_ref().map(proof_from_wire).transpose()?,
    })
}

/// Encodes one update on its own (an operator's removal, for example),
/// behind the format version.
pub(crate) fn encode_update(update: &Update) -> Vec<u8> {
    let wire = (WIRE_VERSION, to_wire(update));
    postcard::to_allocvec(&wire).expect("membership updates always serialise")
}

/// Decodes one update made by [`encode_update`].
pub(crate) fn decode_update(bytes: &[u8]) -> Result<Update, WireError> {
    check_version(bytes)?;
    if bytes.len() > MAX_CERT_BYTES * 2 {
        return Err(WireError::Invalid { field: "update size" });
    }
    let ((_, wire), rest): ((u8, UpdateWire<'_>), _) =
        postcard::take_from_bytes(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Malformed(format!("{} trailing bytes", rest.len())));
    }
    from_wire(&wire)
}

fn check_version(bytes: &[u8]) -> Result<(), WireError> {
    match bytes.first() {
        Some(&WIRE_VERSION) => Ok(()),
        Some(&got) => Err(WireError::Version { got }),
        None => Err(WireError::Malformed("empty".to_owned())),
    }
}

fn list(l: &[Update]) -> Vec<UpdateWire<'_>> {
    l.iter().map(to_wire).collect()
}

fn list_from_wire(list: &[UpdateWire<'_>]) -> Result<Vec<Update>, WireError> {
    if list.len() > MAX_UPDATES_PER_PACKET {
        return Err(WireError::Invalid { field: "updates" });
    }
    list.iter().map(from_wire).collect()
}

impl Packet {
    /// Encodes the packet.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::membership::wire::{Message, Packet, Update};
    /// use gridkv::membership::{Identity, Member};
    /// use gridkv::{Generation, NodeId};
    ///
    /// let me = Member::new(Identity::new(NodeId::new("a")?, Generation::new(1), "h:1"));
    /// let packet = Packet {
    ///     from: Update::of(&me),
    ///     message: Message::Ping { seq: 7, target: NodeId::new("b")? },
    ///     updates: vec![],
    ///     clock: Default::default(),
    /// };
    /// let bytes = packet.encode();
    /// assert_eq!(Packet::decode(&bytes).unwrap(), packet);
    /// assert!(Packet::decode(&bytes[..bytes.len() - 1]).is_err());
    /// # Ok::<(), gridkv::NodeIdError>(())
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let message = match &self.message {
            Message::Ping { seq, target } => MessageWire::Ping {
                seq: *seq,
                target: target.as_str(),
            },
            Message::Ack { seq } => MessageWire::Ack { seq: *seq },
            Message::PingReq {
                seq,
                target,
                target_addr,
            } => MessageWire::PingReq {
                seq: *seq,
                target: target.as_str(),
                target_addr,
            },
            Message::Nack { seq } => MessageWire::Nack { seq: *seq },
            Message::Join => MessageWire::Join,
            Message::JoinReply { members } => MessageWire::JoinReply {
                members: list(members),
            },
            Message::JoinRefused { holder } => MessageWire::JoinRefused { holder },
            Message::PushPull { members, reply } => MessageWire::PushPull {
                members: list(members),
                reply: *reply,
            },
        };
        let wire = PacketWire {
            version: WIRE_VERSION,
            from: to_wire(&self.from),
            message,
            updates: list(&self.updates),
            wall_ms: self.clock.wall_ms,
            hlc: self.clock.hlc,
        };
        // Serialising into a Vec only fails on types postcard cannot
        // express; these are all plain data.
        postcard::to_allocvec(&wire).expect("membership packets always serialise")
    }

    /// Decodes a packet, validating every field.
    ///
    /// # Errors
    ///
    /// [`WireError`] naming what was wrong; nothing is partially applied.
    pub fn decode(bytes: &[u8]) -> Result<Packet, WireError> {
        check_version(bytes)?;
        let (wire, rest): (PacketWire<'_>, _) =
            postcard::take_from_bytes(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(WireError::Malformed(format!(
                "{} trailing bytes",
                rest.len()
            )));
        }
        let message = match &wire.message {
            MessageWire::Ping { seq, target } => Message::Ping {
                seq: *seq,
                target: node_id(target, "target")?,
            },
            MessageWire::Ack { seq } => Message::Ack { seq: *seq },
            MessageWire::PingReq {
                seq,
                target,
                target_addr,
            } => Message::PingReq {
                seq: *seq,
                target: node_id(target, "target")?,
                target_addr: label(target_addr, "target_addr")?,
            },
            MessageWire::Nack { seq } => Message::Nack { seq: *seq },
            MessageWire::Join => Message::Join,
            MessageWire::JoinReply { members } => Message::JoinReply {
                members: list_from_wire(members)?,
            },
            MessageWire::JoinRefused { holder } => Message::JoinRefused {
                holder: label(holder, "holder")?,
            },
            MessageWire::PushPull { members, reply } => Message::PushPull {
                members: list_from_wire(members)?,
                reply: *reply,
            },
        };
        Ok(Packet {
            from: from_wire(&wire.from)?,
            message,
            updates: list_from_wire(&wire.updates)?,
            clock: ClockReading {
                wall_ms: wire.wall_ms,
                hlc: wire.hlc,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(r#gen: u64, inc: u64, liveness: Liveness, ring: RingState) -> Member {
        let mut m = Member::new(Identity::new(
            NodeId::new("x").unwrap(),
            Generation::new(r#gen),
            "h:1",
        ));
        m.incarnation = inc;
        m.liveness = liveness;
        m.ring = ring;
        m
    }

    fn update(r#gen: u64, inc: u64, liveness: Liveness, ring: RingState) -> Update {
        Update::of(&member(r#gen, inc, liveness, ring))
    }

    use Liveness::*;
    use RingState::*;

    #[test]
    fn precedence_within_a_generation() {
        let alive = member(1, 3, Alive, Normal);
        // Same incarnation: stronger claims win, weaker do not.
        assert!(update(1, 3, Suspect, Normal).overrides(&alive));
        assert!(update(1, 3, Down, Normal).overrides(&alive));
        assert!(!update(1, 3, Alive, Normal).overrides(&alive));
        assert!(!update(1, 3, Alive, Normal).overrides(&member(1, 3, Suspect, Normal)));
        // Refutation: a higher incarnation beats suspicion and down.
        assert!(update(1, 4, Alive, Normal).overrides(&member(1, 3, Suspect, Normal)));
        assert!(update(1, 4, Alive, Normal).overrides(&member(1, 3, Down, Normal)));
        // Stale news loses.
        assert!(!update(1, 2, Down, Normal).overrides(&alive));
        // Removal is a stronger claim at the same incarnation.
        assert!(update(1, 3, Down, Removed).overrides(&member(1, 3, Down, Normal)));
    }

    #[test]
    fn left_is_final_and_removal_needs_the_member_itself() {
        let left = member(1, 5, Liveness::Left, RingState::Left);
        assert!(!update(1, 9, Alive, Normal).overrides(&left));
        let removed = member(1, 5, Down, Removed);
        assert!(!update(1, 5, Alive, Joining).overrides(&removed));
        assert!(!update(1, 6, Suspect, Normal).overrides(&removed));
        // Back only as a joiner that refills, never straight to normal.
        assert!(!update(1, 6, Alive, Normal).overrides(&removed));
        assert!(update(1, 6, Alive, Joining).overrides(&removed));
    }

    #[test]
    fn a_later_generation_replaces_everything() {
        assert!(update(2, 0, Alive, Joining).overrides(&member(
            1,
            9,
            Liveness::Left,
            RingState::Left
        )));
        assert!(update(2, 0, Alive, Joining).overrides(&member(1, 9, Alive, Normal)));
        assert!(!update(1, 99, Alive, Normal).overrides(&member(2, 0, Alive, Joining)));
    }

    #[test]
    fn decoding_rejects_bad_fields_and_versions() {
        let p = Packet {
            from: update(1, 0, Alive, Joining),
            message: Message::JoinReply {
                members: vec![update(1, 2, Down, Normal)],
            },
            updates: vec![],
            clock: ClockReading {
                wall_ms: 1_700_000_000_000,
                hlc: 7,
            },
        };
        let bytes = p.encode();
        assert_eq!(Packet::decode(&bytes).unwrap(), p);
        let mut wrong = bytes.clone();
        wrong[0] = 9;
        assert_eq!(Packet::decode(&wrong), Err(WireError::Version { got: 9 }));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            Packet::decode(&trailing),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(Packet::decode(&[]), Err(WireError::Malformed(_))));
        let max = Packet {
            updates: vec![update(1, u64::MAX, Alive, Normal)],
            ..p.clone()
        };
        assert_eq!(
            Packet::decode(&max.encode()),
            Err(WireError::Invalid {
                field: "incarnation"
            })
        );
        for cut in 1..bytes.len() {
            assert!(Packet::decode(&bytes[..cut]).is_err());
        }
    }
}
