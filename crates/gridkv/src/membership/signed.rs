//! Signed claims: what a membership update's signature covers, who may
//! sign which claim, and the operator's signed removal.
//!
//! With credentials (see [`super::trust`]) every [`Update`] carries a
//! [`Proof`]: who signed it, as which kind of claimant, and the Ed25519
//! signature over [`signed_bytes`], a canonical encoding of every field of
//! the claim behind a domain tag and the cluster name. Three kinds:
//!
//! - [`ClaimKind::Own`]: a member about itself (alive at an incarnation,
//!   its address and datacenter, its ring state, joining, leaving, left,
//!   holding slots, its generation), signed by that member and carrying
//!   its certificate, so that any receiver can check it against the trust
//!   bundle;
//! - [`ClaimKind::About`]: a member about another (suspect, down, a vote to
//!   remove it), signed by the claimer, who is named in
//!   [`Update::suspector`]; receivers know the claimer's key from its own
//!   verified claims;
//! - [`ClaimKind::Operator`]: an operator's removal of one run of a node
//!   ([`Removal`]), carrying the operator's certificate.

use bytes::Bytes;

use super::member::{Identity, Liveness, RingState};
use super::trust::Credentials;
use super::wire::{Update, WireError};
use crate::id::{Generation, NodeId};

/// The largest certificate (DER) a claim may carry.
pub const MAX_CERT_BYTES: usize = 4096;

/// Every signed claim starts with this tag, so that a membership signature
/// can never be taken for a signature over anything else.
const DOMAIN: &[u8] = b"gridkv/membership/claim/v3\0";

/// Who makes a claim, relative to the member it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClaimKind {
    /// The member about itself.
    Own,
    /// A member about another: suspect, down, or a vote to remove it.
    About,
    /// An operator removing one run of a node.
    Operator,
}

impl ClaimKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            ClaimKind::Own => 0,
            ClaimKind::About => 1,
            ClaimKind::Operator => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Result<ClaimKind, WireError> {
        Ok(match code {
            0 => ClaimKind::Own,
            1 => ClaimKind::About,
            2 => ClaimKind::Operator,
            _ => return Err(WireError::Invalid { field: "claim kind" }),
        })
    }
}

/// The signature on one [`Update`] and who made it.
#[derive(Clone, PartialEq, Eq)]
pub struct Proof {
    /// As which kind of claimant the signer signed.
    pub kind: ClaimKind,
    /// The signer's id (an operator's name for [`ClaimKind::Operator`]).
    pub signer: NodeId,
    /// The run of the signer that signed (0 for an operator).
    pub signer_generation: Generation,
    /// Ed25519 over [`signed_bytes`].
    pub signature: [u8; 64],
    /// The signer's certificate (DER): always on own claims and operator
    /// removals, so any receiver can learn the key from the trust bundle.
    pub certificate: Option<Bytes>,
}

impl std::fmt::Debug for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proof")
            .field("kind", &self.kind)
            .field("signer", &self.signer)
            .field("signer_generation", &self.signer_generation)
            .field(
                "certificate_len",
                &self.certificate.as_ref().map(Bytes::len),
            )
            .finish_non_exhaustive()
    }
}

fn push_label(out: &mut Vec<u8>, s: &[u8]) {
    // Labels are at most 255 bytes (ids 55): a u16 length cannot overflow.
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// The bytes a claim's signature covers: the domain tag, the cluster name,
/// the claim's kind and signer (id and run), the subject's id and
/// generation, and for member claims every other field too (incarnation,
/// address, datacenter, public key, liveness, ring state, slots,
/// suspector). An operator's removal covers the target's id and
/// generation only: its other fields must be empty (see
/// [`Removal::to_update`]).
///
/// # Examples
///
/// ```
/// use gridkv::membership::signed::{signed_bytes, ClaimKind};
/// use gridkv::membership::wire::Update;
/// use gridkv::membership::{Identity, Member};
/// use gridkv::{Generation, NodeId};
///
/// let a = NodeId::new("a")?;
/// let mut m = Member::new(Identity::new(a, Generation::new(1), "h:1"));
/// let one = signed_bytes("prod", &Update::of(&m), ClaimKind::Own, a, Generation::new(1));
/// m.identity.addr = "h:2".into();
/// let other = signed_bytes("prod", &Update::of(&m), ClaimKind::Own, a, Generation::new(1));
/// assert_ne!(one, other);
/// # Ok::<(), gridkv::NodeIdError>(())
/// ```
pub fn signed_bytes(
    cluster: &str,
    update: &Update,
    kind: ClaimKind,
    signer: NodeId,
    signer_generation: Generation,
) -> Vec<u8> {
    let id = &update.identity;
    let mut out = Vec::with_capacity(DOMAIN.len() + 96 + id.addr.len() + id.datacenter.len());
    out.extend_from_slice(DOMAIN);
    push_label(&mut out, cluster.as_bytes());
    out.push(kind.code());
    push_label(&mut out, signer.as_bytes());
    out.extend_from_slice(&signer_generation.get().to_be_bytes());
    push_label(&mut out, id.id.as_bytes());
    out.extend_from_slice(&id.generation.get().to_be_bytes());
    if kind == ClaimKind::Operator {
        return out;
    }
    out.extend_from_slice(&update.incarnation.to_be_bytes());
    push_label(&mut out, id.addr.as_bytes());
    push_label(&mut out, id.datacenter.as_bytes());
    match &id.public_key {
        Some(k) => {
            out.push(1);
            out.extend_from_slice(k);
        }
        None => out.push(0),
    }
    out.push(liveness_code(update.liveness));
    out.push(ring_code(update.ring));
    out.push(u8::from(update.holds_slots));
    match &update.suspector {
        Some(s) => {
            out.push(1);
            push_label(&mut out, s.as_bytes());
        }
        None => out.push(0),
    }
    out
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

/// Checks that a signed update has the shape its kind allows, before any
/// signature is checked: own claims say alive or left and name no
/// suspector; claims about others say suspect or down (or vote a removal)
/// and name their signer as suspector; operator removals say down and
/// removed and nothing else.
///
/// # Errors
///
/// Why the shape is wrong (a forged or misattributed claim).
pub(crate) fn check_shape(update: &Update, proof: &Proof) -> Result<(), &'static str> {
    let subject = &update.identity;
    match proof.kind {
        ClaimKind::Own => {
            if proof.signer != subject.id || proof.signer_generation != subject.generation {
                return Err("own claim signed by another node");
            }
            if !matches!(update.liveness, Liveness::Alive | Liveness::Left)
                || update.ring == RingState::Removed
                || update.suspector.is_some()
            {
                return Err("own claim of a state only others claim");
            }
            if proof.certificate.is_none() {
                return Err("own claim without certificate");
            }
        }
        ClaimKind::About => {
            if proof.signer == subject.id {
                return Err("claim about a node signed by itself");
            }
            if update.suspector != Some(proof.signer) {
                return Err("claim whose claimer is not its signer");
            }
            let ok = match update.ring {
                RingState::Removed => update.liveness == Liveness::Down,
                _ => matches!(update.liveness, Liveness::Suspect | Liveness::Down),
            };
            if !ok {
                return Err("claim about another node of a state only it claims");
            }
        }
        ClaimKind::Operator => {
            let template = Removal::template(subject.id, subject.generation);
            let mut plain = update.clone();
            plain.proof = None;
            if plain != template || proof.signer_generation.get() != 0 {
                return Err("operator removal with extra fields");
            }
            if proof.certificate.is_none() {
                return Err("operator removal without certificate");
            }
        }
    }
    Ok(())
}

/// An operator's signed removal of one run (generation) of a node from the
/// ring: every receiver verifies the operator's certificate (role
/// [`Operator`](super::trust::CertRole::Operator)) and signature, then
/// takes that run off the ring without waiting for a majority of votes. A
/// later run of the node may join again.
///
/// # Examples
///
/// ```
/// # use gridkv::membership::signed::Removal;
/// # use gridkv::{Generation, NodeId};
/// # fn operator() -> std::sync::Arc<dyn gridkv::membership::trust::Credentials> { unimplemented!() }
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let removal = Removal::sign("prod", NodeId::new("n3")?, Generation::new(42), &*operator());
/// let bytes = removal.encode();
/// assert_eq!(Removal::decode(&bytes)?, removal);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// The node removed.
    pub target: NodeId,
    /// The run of it removed.
    pub generation: Generation,
    /// The operator's name (as its certificate names it).
    pub operator: NodeId,
    /// Ed25519 over [`signed_bytes`] of [`Removal::to_update`].
    pub signature: [u8; 64],
    /// The operator's certificate (DER).
    pub certificate: Bytes,
}

impl Removal {
    /// The unsigned update an operator removal stands for.
    fn template(target: NodeId, generation: Generation) -> Update {
        Update {
            identity: Identity {
                id: target,
                generation,
                addr: String::new(),
                datacenter: String::new(),
                public_key: None,
            },
            incarnation: 0,
            liveness: Liveness::Down,
            ring: RingState::Removed,
            holds_slots: false,
            suspector: None,
            proof: None,
        }
    }

    /// Builds and signs the removal of run `generation` of `target` with
    /// an operator's credentials (whose certificate must have the
    /// operator role, or receivers refuse it), for the cluster named
    /// `cluster`.
    pub fn sign(
        cluster: &str,
        target: NodeId,
        generation: Generation,
        signer: &dyn Credentials,
    ) -> Removal {
        let operator = signer.node_id();
        let bytes = signed_bytes(
            cluster,
            &Self::template(target, generation),
            ClaimKind::Operator,
            operator,
            Generation::new(0),
        );
        Removal {
            target,
            generation,
            operator,
            signature: signer.sign(&bytes),
            certificate: Bytes::copy_from_slice(signer.certificate()),
        }
    }

    /// The removal as the membership update that gossips it.
    pub fn to_update(&self) -> Update {
        let mut update = Self::template(self.target, self.generation);
        update.proof = Some(Proof {
            kind: ClaimKind::Operator,
            signer: self.operator,
            signer_generation: Generation::new(0),
            signature: self.signature,
            certificate: Some(self.certificate.clone()),
        });
        update
    }

    /// The removal carried by `update`, if it is an operator removal.
    pub fn from_update(update: &Update) -> Option<Removal> {
        let proof = update.proof.as_ref()?;
        if proof.kind != ClaimKind::Operator {
            return None;
        }
        Some(Removal {
            target: update.identity.id,
            generation: update.identity.generation,
            operator: proof.signer,
            signature: proof.signature,
            certificate: proof.certificate.clone()?,
        })
    }

    /// Encodes the removal (for a CLI to hand to a node).
    pub fn encode(&self) -> Vec<u8> {
        super::wire::encode_update(&self.to_update())
    }

    /// Decodes a removal made by [`Removal::encode`].
    ///
    /// # Errors
    ///
    /// [`WireError`] for bytes that are not an operator removal.
    pub fn decode(bytes: &[u8]) -> Result<Removal, WireError> {
        let update = super::wire::decode_update(bytes)?;
        let removal = Removal::from_update(&update).ok_or(WireError::Invalid {
            field: "claim kind",
        })?;
        let proof = update.proof.as_ref().ok_or(WireError::Invalid { field: "proof" })?;
        check_shape(&update, proof).map_err(|_| WireError::Invalid { field: "removal" })?;
        Ok(removal)
    }
}

/// Why [`Swim::apply_removal`](super::Swim::apply_removal) did not apply
/// an operator's removal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemovalError {
    /// It does not verify: not signed by an operator the trust bundle
    /// certifies, or not for this cluster.
    #[error("operator removal refused: {0}")]
    Refused(String),
    /// This node knows no member of that id at that generation.
    #[error("no member {target} at generation {generation}")]
    Unknown {
        /// The node named.
        target: NodeId,
        /// The run named.
        generation: Generation,
    },
}
