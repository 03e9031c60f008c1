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
pub use super::proof::{ClaimKind, Proof, MAX_CERT_BYTES};
use super::trust::Credentials;
use super::wire::{liveness_code, ring_code, Update, WireError};
use crate::id::{Generation, NodeId};

/// Every signed claim starts with this tag, so that a membership signature
/// can never be taken for a signature over anything else.
const DOMAIN: &[u8] = b"gridkv/membership/claim/v3\0";

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
/// the removal's claim).
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
    push_label(&mut out, id.rack.as_bytes());
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
/// An operator signs; a node of the cluster verifies (here, one trust
/// bundle that accepts exactly the operator's certificate).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use ed25519_dalek::{Signer, SigningKey};
/// use gridkv::membership::signed::Removal;
/// use gridkv::membership::trust::{CertRole, CertifiedKey, Credentials, Untrusted};
/// use gridkv::membership::{Identity, RingState, Swim, SwimConfig};
/// use gridkv::{Generation, NodeId};
///
/// /// A "certificate" is the holder's name; the bundle trusts one key.
/// struct Creds { id: NodeId, key: SigningKey, cert: Vec<u8>, ops: [u8; 32] }
/// impl Credentials for Creds {
///     fn node_id(&self) -> NodeId { self.id }
///     fn sign(&self, m: &[u8]) -> [u8; 64] { self.key.sign(m).to_bytes() }
///     fn certificate(&self) -> &[u8] { &self.cert }
///     fn verify_certificate(&self, der: &[u8], _now: u64) -> Result<CertifiedKey, Untrusted> {
///         if der != b"ops" { return Err(Untrusted("unknown".into())); }
///         let node_id = NodeId::new("ops").unwrap();
///         Ok(CertifiedKey { node_id, role: CertRole::Operator, public_key: self.ops, not_after_ms: u64::MAX })
///     }
/// }
/// let ops_key = SigningKey::from_bytes(&[7; 32]);
/// let ops = ops_key.verifying_key().to_bytes();
/// let operator = Creds {
///     id: NodeId::new("ops")?, key: ops_key, cert: b"ops".to_vec(), ops,
/// };
/// let node = Creds {
///     id: NodeId::new("a")?, key: SigningKey::from_bytes(&[1; 32]),
///     cert: b"a".to_vec(), ops,
/// };
///
/// let me = Identity::new(NodeId::new("a")?, Generation::new(1), "a:1");
/// let mut swim = Swim::new(me, SwimConfig::lan(), vec![], 1, Duration::ZERO)?;
/// swim.set_cluster_name("prod")?;
/// swim.set_credentials(Arc::new(node))?;
///
/// // `gridkv remove a`: the CLI signs, the node checks (here it removes
/// // itself, the one member this one-node example knows).
/// let bytes = Removal::sign("prod", NodeId::new("a")?, Generation::new(1), &operator).encode();
/// let removal = Removal::decode(&bytes)?;
/// swim.apply_removal(Duration::ZERO, &removal)?;
/// // Back as its next run, a joiner that refills.
/// assert_eq!(swim.local().ring, RingState::Joining);
/// assert_eq!(swim.local().identity.generation, Generation::new(2));
///
/// // Signed for another cluster, it is refused.
/// let elsewhere = Removal::sign("test", NodeId::new("a")?, Generation::new(1), &operator);
/// assert!(swim.apply_removal(Duration::ZERO, &elsewhere).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// The node removed.
    pub target: NodeId,
    /// The run of it removed.
    pub generation: Generation,
    /// The operator's name (as its certificate names it).
    pub operator: NodeId,
    /// Ed25519 over `signed_bytes` of the removal's claim.
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
                rack: String::new(),
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
    pub(crate) fn to_update(&self) -> Update {
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
    pub(crate) fn from_update(update: &Update) -> Option<Removal> {
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

/// Why `Swim::apply_removal` did not apply
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::member::Member;

    fn base() -> Update {
        let mut m = Member::new(Identity::new(
            NodeId::new("x").unwrap(),
            Generation::new(5),
            "h:1",
        ));
        m.incarnation = 3;
        Update::of(&m)
    }

    fn bytes(u: &Update) -> Vec<u8> {
        signed_bytes("c", u, ClaimKind::Own, u.identity.id, u.identity.generation)
    }

    #[test]
    fn every_field_of_a_claim_is_covered() {
        let b = base();
        let mut changed: Vec<Update> = Vec::new();
        let mut u = b.clone();
        u.identity.id = NodeId::new("y").unwrap();
        changed.push(u);
        let mut u = b.clone();
        u.identity.generation = Generation::new(6);
        changed.push(u);
        let mut u = b.clone();
        u.identity.addr = "h:2".into();
        changed.push(u);
        let mut u = b.clone();
        u.identity.datacenter = "dc2".into();
        changed.push(u);
        let mut u = b.clone();
        u.identity.public_key = Some([0; 32]);
        changed.push(u);
        let mut u = b.clone();
        u.incarnation = 4;
        changed.push(u);
        let mut u = b.clone();
        u.liveness = Liveness::Left;
        changed.push(u);
        let mut u = b.clone();
        u.ring = RingState::Normal;
        changed.push(u);
        let mut u = b.clone();
        u.holds_slots = true;
        changed.push(u);
        let mut u = b.clone();
        u.suspector = Some(NodeId::new("z").unwrap());
        changed.push(u);
        let original = bytes(&b);
        for u in &changed {
            assert_ne!(bytes(u), original, "{u:?}");
        }
        // The cluster, the kind and the signer's run are covered too.
        let id = b.identity.id;
        let g = b.identity.generation;
        assert_ne!(signed_bytes("d", &b, ClaimKind::Own, id, g), original);
        assert_ne!(signed_bytes("c", &b, ClaimKind::About, id, g), original);
        assert_ne!(
            signed_bytes("c", &b, ClaimKind::Own, id, Generation::new(9)),
            original
        );
        // Labels are length-prefixed: moving bytes between fields shows.
        let mut a = b.clone();
        a.identity.addr = "ab".into();
        a.identity.datacenter = "c".into();
        let mut c = b.clone();
        c.identity.addr = "a".into();
        c.identity.datacenter = "bc".into();
        assert_ne!(bytes(&a), bytes(&c));
    }

    #[test]
    fn shapes_allowed_per_kind() {
        let x = NodeId::new("x").unwrap();
        let y = NodeId::new("y").unwrap();
        let proof = |kind, signer, generation: u64| Proof {
            kind,
            signer,
            signer_generation: Generation::new(generation),
            signature: [0; 64],
            certificate: Some(Bytes::from_static(b"c")),
        };
        let alive = base();
        assert!(check_shape(&alive, &proof(ClaimKind::Own, x, 5)).is_ok());
        // Another run, or another node, cannot make x's own claim.
        assert!(check_shape(&alive, &proof(ClaimKind::Own, x, 4)).is_err());
        assert!(check_shape(&alive, &proof(ClaimKind::Own, y, 5)).is_err());
        // Nobody claims "alive" about another.
        let mut about = alive.clone();
        about.suspector = Some(y);
        assert!(check_shape(&about, &proof(ClaimKind::About, y, 1)).is_err());
        about.liveness = Liveness::Down;
        assert!(check_shape(&about, &proof(ClaimKind::About, y, 1)).is_ok());
        // The claimer named must be the signer.
        assert!(check_shape(&about, &proof(ClaimKind::About, x, 1)).is_err());
        // A node does not claim itself down.
        let mut own_down = alive.clone();
        own_down.liveness = Liveness::Down;
        assert!(check_shape(&own_down, &proof(ClaimKind::Own, x, 5)).is_err());
        // An operator's removal carries nothing else.
        let removal = Removal::template(x, Generation::new(5));
        let op = proof(ClaimKind::Operator, y, 0);
        assert!(check_shape(&removal, &op).is_ok());
        let mut extra = removal.clone();
        extra.identity.addr = "h:9".into();
        assert!(check_shape(&extra, &op).is_err());
    }
}
