//! The signature a membership update carries, and who made it (see
//! [`super::signed`] for what it covers and who may sign what).

use bytes::Bytes;

use crate::id::{Generation, NodeId};

/// The largest certificate (DER) a claim may carry.
pub const MAX_CERT_BYTES: usize = 4096;

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

    pub(crate) fn from_code(code: u8) -> Option<ClaimKind> {
        Some(match code {
            0 => ClaimKind::Own,
            1 => ClaimKind::About,
            2 => ClaimKind::Operator,
            _ => return None,
        })
    }
}

/// The signature on one membership update (`wire::Update`) and who made it.
#[derive(Clone, PartialEq, Eq)]
pub struct Proof {
    /// As which kind of claimant the signer signed.
    pub kind: ClaimKind,
    /// The signer's id (an operator's name for [`ClaimKind::Operator`]).
    pub signer: NodeId,
    /// The run of the signer that signed (0 for an operator).
    pub signer_generation: Generation,
    /// Ed25519 over `signed_bytes`.
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

