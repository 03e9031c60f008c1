//! Fake credentials for signed-membership tests: a "certificate" is
//! `FAKE | role | id | public key | not after | CA signature`, checked
//! against the fake CA keys of a trust bundle with Ed25519, so tests get
//! real signatures without X.509.
#![allow(dead_code)]

use std::sync::{Arc, RwLock};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use gridkv::NodeId;
use gridkv::membership::trust::{CertRole, CertifiedKey, Credentials, Untrusted};

const MAGIC: &[u8] = b"FAKE";

/// A fake certificate authority.
#[derive(Clone)]
pub struct FakeCa {
    key: SigningKey,
}

/// A key derived from `seed` and `label` (deterministic).
fn derive(seed: u64, label: &str) -> SigningKey {
    let mut bytes = [0u8; 32];
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    for (i, b) in label
        .bytes()
        .chain(std::iter::repeat_n(0, 32))
        .take(32)
        .enumerate()
    {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(u64::from(b) + i as u64);
        bytes[i] = (x >> 33) as u8 ^ b;
    }
    SigningKey::from_bytes(&bytes)
}

impl FakeCa {
    pub fn new(seed: u64) -> FakeCa {
        FakeCa {
            key: derive(seed, "ca"),
        }
    }

    /// A certificate for `id` with `role` and `public`, valid until
    /// `not_after_ms`.
    pub fn issue(
        &self,
        id: &str,
        role: CertRole,
        public: &VerifyingKey,
        not_after_ms: u64,
    ) -> Vec<u8> {
        let mut cert = MAGIC.to_vec();
        cert.push(match role {
            CertRole::Node => 0,
            CertRole::Operator => 1,
        });
        cert.push(id.len() as u8);
        cert.extend_from_slice(id.as_bytes());
        cert.extend_from_slice(public.as_bytes());
        cert.extend_from_slice(&not_after_ms.to_be_bytes());
        let sig = self.key.sign(&cert);
        cert.extend_from_slice(&sig.to_bytes());
        cert
    }

    /// Credentials for `id` (key derived from `seed`), trusting this CA.
    pub fn creds(&self, seed: u64, id: &str, role: CertRole) -> Arc<FakeCreds> {
        let key = derive(seed, id);
        let cert = self.issue(id, role, &key.verifying_key(), u64::MAX);
        Arc::new(FakeCreds {
            id: NodeId::new(id).unwrap(),
            key,
            cert,
            trusted: RwLock::new(vec![self.key.verifying_key()]),
        })
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }
}

/// One holder's fake credentials.
pub struct FakeCreds {
    pub id: NodeId,
    pub key: SigningKey,
    pub cert: Vec<u8>,
    /// The CAs trusted now (a test may change them, as a reload would).
    pub trusted: RwLock<Vec<VerifyingKey>>,
}

impl FakeCreds {
    /// The same identity with another certificate (for tests that forge).
    pub fn with_cert(&self, cert: Vec<u8>) -> Arc<FakeCreds> {
        Arc::new(FakeCreds {
            id: self.id,
            key: self.key.clone(),
            cert,
            trusted: RwLock::new(self.trusted()),
        })
    }

    /// The CAs trusted now.
    pub fn trusted(&self) -> Vec<VerifyingKey> {
        self.trusted.read().unwrap().clone()
    }

    /// Replaces the trusted CAs, as a trust bundle reload would.
    pub fn set_trusted(&self, cas: Vec<VerifyingKey>) {
        *self.trusted.write().unwrap() = cas;
    }
}

impl Credentials for FakeCreds {
    fn node_id(&self) -> NodeId {
        self.id
    }

    fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    fn certificate(&self) -> &[u8] {
        &self.cert
    }

    fn verify_certificate(&self, der: &[u8], now_ms: u64) -> Result<CertifiedKey, Untrusted> {
        let bad = |why: &str| Untrusted(why.to_owned());
        if der.len() < MAGIC.len() + 2 + 32 + 8 + 64 || !der.starts_with(MAGIC) {
            return Err(bad("not a fake certificate"));
        }
        let (body, sig) = der.split_at(der.len() - 64);
        let sig = Signature::from_bytes(sig.try_into().unwrap());
        if !self
            .trusted()
            .iter()
            .any(|ca| ca.verify(body, &sig).is_ok())
        {
            return Err(bad("no chain to a trusted CA"));
        }
        let role = match body[4] {
            0 => CertRole::Node,
            1 => CertRole::Operator,
            _ => return Err(bad("role")),
        };
        let len = body[5] as usize;
        if body.len() != 6 + len + 32 + 8 {
            return Err(bad("length"));
        }
        let id = std::str::from_utf8(&body[6..6 + len]).map_err(|_| bad("id"))?;
        let node_id = NodeId::new(id).map_err(|_| bad("id"))?;
        let public_key: [u8; 32] = body[6 + len..6 + len + 32].try_into().unwrap();
        let not_after_ms = u64::from_be_bytes(body[6 + len + 32..].try_into().unwrap());
        if not_after_ms < now_ms {
            return Err(bad("expired"));
        }
        Ok(CertifiedKey {
            node_id,
            role,
            public_key,
            not_after_ms,
        })
    }
}
