//! The negotiation: who this node is ([`LocalIdentity`]) and the rules by
//! which it accepts or refuses a peer's hello ([`check_hello`]).

use super::error::{IdMismatch, RefusalReason};
use super::hello::Hello;
use super::reply::HelloReply;
use super::wire::{MAGIC, PROTOCOL_VERSION};
use crate::{Generation, NodeId};

/// Who this node is, as the handshake needs it.
///
/// # Examples
///
/// ```
/// use gridkv::net::handshake::{check_hello, LocalIdentity};
/// use gridkv::{Generation, NodeId};
///
/// let me = LocalIdentity {
///     cluster: "prod".to_owned(),
///     node_id: NodeId::new("node-1")?,
///     generation: Generation::new(7),
/// };
/// let peer = LocalIdentity { node_id: NodeId::new("node-2")?, ..me.clone() };
/// assert_eq!(check_hello(&me, &peer.hello()), Ok(()));
/// # Ok::<(), gridkv::NodeIdError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIdentity {
    /// The cluster this node belongs to; peers must name the same one.
    pub cluster: String,
    /// This node's id.
    pub node_id: NodeId,
    /// This run's generation.
    pub generation: Generation,
}

impl LocalIdentity {
    /// The hello this node sends when it dials a peer.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::net::handshake::LocalIdentity;
    /// use gridkv::{Generation, NodeId};
    ///
    /// let me = LocalIdentity {
    ///     cluster: "prod".to_owned(),
    ///     node_id: NodeId::new("node-1")?,
    ///     generation: Generation::new(7),
    /// };
    /// let hello = me.hello();
    /// assert_eq!((hello.cluster.as_str(), hello.generation), ("prod", 7));
    /// # Ok::<(), gridkv::NodeIdError>(())
    /// ```
    pub fn hello(&self) -> Hello {
        Hello::new(&self.cluster, self.node_id, self.generation)
    }

    /// The reply this node sends when [`check_hello`] accepted a peer.
    ///
    /// # Examples
    ///
    /// ```
    /// use gridkv::net::handshake::{HelloReply, LocalIdentity};
    /// use gridkv::{Generation, NodeId};
    ///
    /// let me = LocalIdentity {
    ///     cluster: "prod".to_owned(),
    ///     node_id: NodeId::new("node-1")?,
    ///     generation: Generation::new(7),
    /// };
    /// assert!(matches!(me.accepted(), HelloReply::Accepted { generation, .. } if generation.get() == 7));
    /// # Ok::<(), gridkv::NodeIdError>(())
    /// ```
    pub fn accepted(&self) -> HelloReply {
        HelloReply::Accepted {
            node_id: self.node_id,
            generation: self.generation,
            auth: Vec::new(),
        }
    }
}

/// Decides whether to accept a peer's hello.
///
/// Rules, in this order (the first that fails is the reason):
/// 1. the magic is [`MAGIC`];
/// 2. the protocol version is [`PROTOCOL_VERSION`];
/// 3. the cluster name equals ours;
/// 4. the node id is a valid [`NodeId`];
/// 5. the node id is not ours: with another generation it is a second node
///    running under our id ([`RefusalReason::DuplicateNodeId`]); with our
///    own generation it is this very node, reached through its own address
///    (a seed list that includes it) ([`RefusalReason::SelfConnection`]).
///
/// Whether the peer's id clashes with *another* member is for membership to
/// decide; the handshake only knows this node.
///
/// # Examples
///
/// ```
/// use gridkv::net::handshake::{check_hello, LocalIdentity, RefusalReason};
/// use gridkv::{Generation, NodeId};
///
/// let me = LocalIdentity {
///     cluster: "prod".to_owned(),
///     node_id: NodeId::new("node-1")?,
///     generation: Generation::new(7),
/// };
/// let stranger = LocalIdentity {
///     cluster: "test".to_owned(),
///     node_id: NodeId::new("node-2")?,
///     generation: Generation::new(3),
/// };
/// let refusal = check_hello(&me, &stranger.hello()).unwrap_err();
/// assert_eq!(refusal.to_string(), "cluster name mismatch: expected prod, got test");
/// # Ok::<(), gridkv::NodeIdError>(())
/// ```
pub fn check_hello(local: &LocalIdentity, hello: &Hello) -> Result<(), RefusalReason> {
    if hello.magic != MAGIC {
        return Err(RefusalReason::BadMagic);
    }
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(RefusalReason::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: hello.protocol_version,
        });
    }
    if hello.cluster != local.cluster {
        return Err(RefusalReason::ClusterMismatch {
            expected: local.cluster.clone(),
            got: hello.cluster.clone(),
        });
    }
    let peer = NodeId::new(&hello.node_id).map_err(RefusalReason::InvalidNodeId)?;
    if peer == local.node_id {
        let theirs = Generation::new(hello.generation);
        return Err(if theirs == local.generation {
            RefusalReason::SelfConnection
        } else {
            RefusalReason::DuplicateNodeId {
                node_id: local.node_id,
                ours: local.generation,
                theirs,
            }
        });
    }
    Ok(())
}

/// Decides whether a peer's claimed id is the one its TLS certificate
/// names: on a TLS connection, the id in a hello (or in a reply) must be
/// the certified one, or a node holding a valid certificate could speak
/// as any other.
///
/// # Examples
///
/// ```
/// use gridkv::net::handshake::{check_certified, IdMismatch, RefusalReason};
/// use gridkv::NodeId;
///
/// let (x, y) = (NodeId::new("x")?, NodeId::new("y")?);
/// assert_eq!(check_certified(x, x), Ok(()));
/// let refusal = check_certified(y, x).unwrap_err();
/// assert_eq!(refusal, RefusalReason::IdentityMismatch(IdMismatch::boxed(y, x)));
/// assert_eq!(
///     refusal.to_string(),
///     "identity mismatch: the peer's certificate names y, its hello claims x"
/// );
/// # Ok::<(), gridkv::NodeIdError>(())
/// ```
pub fn check_certified(certified: NodeId, claimed: NodeId) -> Result<(), RefusalReason> {
    if certified == claimed {
        Ok(())
    } else {
        Err(RefusalReason::IdentityMismatch(IdMismatch::boxed(
            certified, claimed,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::handshake::HandshakeError;
    use crate::NodeIdError;

    fn identity(cluster: &str, node: &str, generation: u64) -> LocalIdentity {
        LocalIdentity {
            cluster: cluster.to_owned(),
            node_id: NodeId::new(node).unwrap(),
            generation: Generation::new(generation),
        }
    }

    fn me() -> LocalIdentity {
        identity("prod", "node-1", 100)
    }

    #[test]
    fn accepts_a_peer_of_the_same_cluster() {
        assert_eq!(
            check_hello(&me(), &identity("prod", "node-2", 5).hello()),
            Ok(())
        );
    }

    #[test]
    fn refuses_bad_magic() {
        let mut hello = identity("prod", "node-2", 5).hello();
        hello.magic = *b"HTTP";
        let reason = check_hello(&me(), &hello).unwrap_err();
        assert_eq!(reason, RefusalReason::BadMagic);
        assert_eq!(reason.to_string(), "bad magic: not a GridKV peer");
    }

    #[test]
    fn refuses_another_version_with_both_numbers() {
        let mut hello = identity("prod", "node-2", 5).hello();
        hello.protocol_version = 2;
        let reason = check_hello(&me(), &hello).unwrap_err();
        assert_eq!(
            reason.to_string(),
            "protocol version mismatch: we speak 1, peer speaks 2"
        );
        assert_eq!(
            HandshakeError::Refused(reason).to_string(),
            "refused by peer: protocol version mismatch: peer speaks 1, we speak 2"
        );
    }

    #[test]
    fn refuses_another_cluster_in_the_same_words_on_both_sides() {
        let reason = check_hello(&me(), &identity("test", "node-2", 5).hello()).unwrap_err();
        assert_eq!(
            reason,
            RefusalReason::ClusterMismatch {
                expected: "prod".to_owned(),
                got: "test".to_owned()
            }
        );
        assert_eq!(
            reason.to_string(),
            "cluster name mismatch: expected prod, got test"
        );
        let seen = HelloReply::decode(&HelloReply::Refused { reason }.encode().unwrap()).unwrap();
        let HelloReply::Refused { reason } = seen else {
            panic!("a refusal decodes as a refusal");
        };
        assert_eq!(
            HandshakeError::Refused(reason).to_string(),
            "refused by peer: cluster name mismatch: expected prod, got test"
        );
    }

    #[test]
    fn refuses_an_invalid_node_id() {
        for (node_id, error) in [
            ("", NodeIdError::Empty),
            ("a b", NodeIdError::InvalidChar { ch: ' ' }),
            ("a\u{0}", NodeIdError::InvalidChar { ch: '\u{0}' }),
        ] {
            let mut hello = me().hello();
            hello.node_id = node_id.to_owned();
            // It decodes (validity is the check's job) and is then refused.
            let hello = Hello::decode(&hello.encode().unwrap()).unwrap();
            assert_eq!(
                check_hello(&me(), &hello),
                Err(RefusalReason::InvalidNodeId(error))
            );
        }
        let mut hello = me().hello();
        hello.node_id = "n".repeat(NodeId::MAX_LEN + 1);
        assert!(matches!(
            check_hello(&me(), &hello),
            Err(RefusalReason::InvalidNodeId(NodeIdError::TooLong { .. }))
        ));
    }

    #[test]
    fn refuses_our_own_id_from_another_run() {
        let reason = check_hello(&me(), &identity("prod", "node-1", 99).hello()).unwrap_err();
        assert_eq!(
            reason,
            RefusalReason::DuplicateNodeId {
                node_id: NodeId::new("node-1").unwrap(),
                ours: Generation::new(100),
                theirs: Generation::new(99)
            }
        );
        assert_eq!(
            reason.to_string(),
            "duplicate node id: node-1 is this node (generation 100), the peer claims it with generation 99"
        );
        assert_eq!(
            HandshakeError::Refused(reason).to_string(),
            "refused by peer: duplicate node id: node-1 is already running (generation 100); we are generation 99"
        );
    }

    #[test]
    fn refuses_a_connection_to_itself() {
        assert_eq!(
            check_hello(&me(), &me().hello()),
            Err(RefusalReason::SelfConnection)
        );
    }

    #[test]
    fn rules_apply_in_order() {
        // With the version and the cluster both wrong, the version is
        // reported; with the magic wrong as well, the magic is.
        let mut hello = identity("test", "node-2", 5).hello();
        hello.protocol_version = 9;
        assert!(matches!(
            check_hello(&me(), &hello),
            Err(RefusalReason::VersionMismatch { .. })
        ));
        hello.magic = [0; 4];
        assert_eq!(check_hello(&me(), &hello), Err(RefusalReason::BadMagic));
    }
}
