//! Checking signed claims, once each: the keys certificates bound to node
//! runs, the claims already verified, and the counters of what was
//! refused.
//!
//! A claim is verified at most once per distinct signed content and
//! certificate: the verifier remembers a digest of every claim (with the
//! certificate it carried) whose signature checked out
//! (bounded, oldest forgotten first), so a claim relayed by many members
//! costs one signature check, not one per packet. Certificates are checked
//! once per distinct certificate (until they expire), and the key of each
//! node run that signed a verified own claim is kept, so its claims about
//! others can be checked.

use std::collections::{BTreeMap, VecDeque};

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use super::signed::{check_shape, signed_bytes, ClaimKind, Proof};
use super::trust::{CertRole, CertifiedKey, Credentials};
use super::wire::Update;
use crate::id::{Generation, NodeId};

/// Most node-run keys kept.
const MAX_KEYS: usize = 65_536;
/// Most certificates whose verdict is kept.
const MAX_CERTS: usize = 4096;
/// Most verified claims remembered.
const MAX_VERIFIED: usize = 65_536;
/// Most signatures this node made that are kept for reuse.
const MAX_SIGNED: usize = 1024;

/// What signed membership refused, and what it cost (see
/// `Swim::security_stats`). All zero
/// without credentials.
///
/// # Examples
///
/// ```
/// use gridkv::membership::MembershipSecurityStats;
///
/// let stats = MembershipSecurityStats::default();
/// assert_eq!(stats.refused(), 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MembershipSecurityStats {
    /// Claims refused as forged: unsigned, a bad signature, or signed by
    /// a node that may not make that claim (another node's own claim, a
    /// certificate naming another id).
    pub forged: u64,
    /// Claims refused because the signer's key is not known (a claimer
    /// whose own claims this node has not verified yet) or its certificate
    /// is not trusted (another CA, expired). They come again by gossip.
    pub unverifiable: u64,
    /// Claims with a valid signature that are older than what this node
    /// knows (a replay, or old news): a lower incarnation or an earlier
    /// run.
    pub stale: u64,
    /// Packets whose sender differs from the node the transport
    /// authenticated.
    pub sender_mismatch: u64,
    /// Votes to remove a member heard while no strict majority of the
    /// placement ring had voted (and no operator had removed it).
    pub removals_refused: u64,
    /// Signatures checked (each distinct claim once).
    pub signatures_checked: u64,
    /// Claims found already verified (no signature check).
    pub verified_cache_hits: u64,
}

impl MembershipSecurityStats {
    /// Everything refused: forged, unverifiable, stale, sender mismatches
    /// and refused removals.
    pub fn refused(&self) -> u64 {
        self.forged + self.unverifiable + self.stale + self.sender_mismatch + self.removals_refused
    }
}

/// Why a claim was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Unsigned, wrongly signed, or signed by one who may not claim it.
    Forged(&'static str),
    /// The signer's key is unknown or its certificate untrusted.
    Unverifiable(String),
}

/// A map that forgets its oldest entries beyond `cap`.
#[derive(Debug)]
pub(crate) struct Fifo<K: Ord + Clone, V> {
    map: BTreeMap<K, V>,
    order: VecDeque<K>,
    cap: usize,
}

impl<K: Ord + Clone, V> Fifo<K, V> {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            map: BTreeMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    pub(crate) fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// Verifies claims and signs this node's own, with the caches that make
/// each happen once per distinct claim.
pub(crate) struct Verifier {
    /// Node run → the Ed25519 key its verified certificate bound.
    keys: Fifo<(NodeId, Generation), [u8; 32]>,
    /// Certificate digest → what it certifies.
    certs: Fifo<[u8; 32], CertifiedKey>,
    /// Digests of claims (content and signature) that verified.
    verified: Fifo<[u8; 32], ()>,
    /// Digests of claims this node signed → their signatures.
    signed: Fifo<[u8; 32], [u8; 64]>,
    pub(crate) stats: MembershipSecurityStats,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .field("certs", &self.certs.len())
            .field("verified", &self.verified.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Default for Verifier {
    fn default() -> Self {
        Self {
            keys: Fifo::new(MAX_KEYS),
            certs: Fifo::new(MAX_CERTS),
            verified: Fifo::new(MAX_VERIFIED),
            signed: Fifo::new(MAX_SIGNED),
            stats: MembershipSecurityStats::default(),
        }
    }
}

impl Verifier {
    /// Signs `update` as `kind` with this node's credentials (reusing a
    /// signature made before for the same content).
    pub(crate) fn seal(
        &mut self,
        creds: &dyn Credentials,
        cluster: &str,
        mut update: Update,
        kind: ClaimKind,
        generation: Generation,
    ) -> Update {
        let signer = creds.node_id();
        let bytes = signed_bytes(cluster, &update, kind, signer, generation);
        let key = digest(&[&bytes]);
        let signature = match self.signed.get(&key) {
            Some(s) => *s,
            None => {
                let s = creds.sign(&bytes);
                self.signed.insert(key, s);
                s
            }
        };
        let certificate = (kind == ClaimKind::Own)
            .then(|| bytes::Bytes::copy_from_slice(creds.certificate()));
        update.proof = Some(Proof {
            kind,
            signer,
            signer_generation: generation,
            signature,
            certificate,
        });
        update
    }

    /// Checks one claim: its shape, its signer's key, its signature. A
    /// claim that verified before is not checked again.
    pub(crate) fn check(
        &mut self,
        creds: &dyn Credentials,
        cluster: &str,
        update: &Update,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let result = self.check_inner(creds, cluster, update, now_ms);
        match &result {
            Err(Refusal::Forged(_)) => self.stats.forged += 1,
            Err(Refusal::Unverifiable(_)) => self.stats.unverifiable += 1,
            Ok(()) => {}
        }
        result
    }

    fn check_inner(
        &mut self,
        creds: &dyn Credentials,
        cluster: &str,
        update: &Update,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let Some(proof) = &update.proof else {
            return Err(Refusal::Forged("unsigned"));
        };
        check_shape(update, proof).map_err(Refusal::Forged)?;
        let bytes = signed_bytes(
            cluster,
            update,
            proof.kind,
            proof.signer,
            proof.signer_generation,
        );
        let der = proof.certificate.as_deref().unwrap_or_default();
        // The certificate is part of what was verified: a claim seen with
        // one certificate proves nothing about another attached to it.
        let seen = digest(&[&bytes, &proof.signature, der]);
        let run = (proof.signer, proof.signer_generation);
        let key = match proof.kind {
            ClaimKind::Own | ClaimKind::Operator => {
                let role = if proof.kind == ClaimKind::Own {
                    CertRole::Node
                } else {
                    CertRole::Operator
                };
                // Cached per certificate, its expiry checked on every use.
                let certified = self.certificate(creds, der, now_ms)?;
                if certified.role != role {
                    return Err(Refusal::Forged("certificate of the wrong role"));
                }
                if certified.node_id != proof.signer {
                    return Err(Refusal::Forged("certificate names another id"));
                }
                certified.public_key
            }
            ClaimKind::About => match self.keys.get(&run) {
                Some(k) => *k,
                None => {
                    return Err(Refusal::Unverifiable(format!(
                        "no verified key for {} run {}",
                        proof.signer, proof.signer_generation
                    )))
                }
            },
        };
        if self.verified.get(&seen).is_some() {
            self.stats.verified_cache_hits += 1;
            if proof.kind == ClaimKind::Own {
                self.keys.insert(run, key);
            }
            return Ok(());
        }
        let vk = VerifyingKey::from_bytes(&key)
            .map_err(|_| Refusal::Forged("certificate key is not an Ed25519 point"))?;
        self.stats.signatures_checked += 1;
        vk.verify_strict(&bytes, &Signature::from_bytes(&proof.signature))
            .map_err(|_| Refusal::Forged("bad signature"))?;
        self.verified.insert(seen, ());
        if proof.kind == ClaimKind::Own {
            self.keys.insert(run, key);
        }
        Ok(())
    }

    /// What a certificate certifies, checked once per distinct certificate
    /// until it expires.
    fn certificate(
        &mut self,
        creds: &dyn Credentials,
        der: &[u8],
        now_ms: u64,
    ) -> Result<CertifiedKey, Refusal> {
        let key = digest(&[der]);
        if let Some(c) = self.certs.get(&key) {
            if c.not_after_ms >= now_ms {
                return Ok(*c);
            }
        }
        let certified = creds
            .verify_certificate(der, now_ms)
            .map_err(|e| Refusal::Unverifiable(e.to_string()))?;
        self.certs.insert(key, certified);
        Ok(certified)
    }

    /// Forgets every certificate verdict, learnt key and verified claim:
    /// the trust bundle changed, so what a dropped CA certified must stop
    /// verifying. Keys are learnt again from the next own claims. The
    /// counters and this node's own signatures are kept.
    pub(crate) fn trust_changed(&mut self) {
        self.keys = Fifo::new(MAX_KEYS);
        self.certs = Fifo::new(MAX_CERTS);
        self.verified = Fifo::new(MAX_VERIFIED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_forgets_the_oldest_beyond_its_bound() {
        let mut f = Fifo::new(2);
        f.insert(1, 'a');
        f.insert(2, 'b');
        f.insert(1, 'c');
        assert_eq!(f.len(), 2);
        f.insert(3, 'd');
        assert_eq!(f.len(), 2);
        assert!(f.get(&1).is_none());
        assert_eq!(f.get(&3), Some(&'d'));
    }
}
