//! Per-connection state: who the client is and what it negotiated. One
//! [`Session`] lives as long as its connection; commands that change it
//! (`HELLO`, `CLIENT SETNAME`, `CLIENT SETINFO`) get it mutably, and the
//! server writes every reply in its [`Protocol`]. It also holds who the
//! client is logged in as (`AUTH`, `HELLO ... AUTH`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::auth::User;
use crate::cmd::Transaction;
use crate::resp::Protocol;

/// One client connection's state.
///
/// # Examples
///
/// ```
/// use gridkv_server::resp::Protocol;
/// use gridkv_server::session::Session;
///
/// let session = Session::new(7, "127.0.0.1:50000".parse().unwrap());
/// assert_eq!(session.protocol, Protocol::Resp2);
/// assert_eq!(session.name, None);
/// assert!(session.user.is_none(), "not logged in until the server says so");
/// ```
#[derive(Debug, Clone)]
pub struct Session {
    /// Client id (`CLIENT ID`, `HELLO`'s `id`).
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// `CLIENT SETNAME` or `HELLO ... SETNAME`.
    pub name: Option<Bytes>,
    /// The protocol replies are written in: RESP2 until `HELLO 3`.
    pub protocol: Protocol,
    /// `CLIENT SETINFO LIB-NAME`.
    pub lib_name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-VER`.
    pub lib_ver: Option<Bytes>,
    /// The user the client is logged in as; `None`: not authenticated, so
    /// only `AUTH`, `HELLO`, `PING` and `QUIT` answer.
    pub user: Option<Arc<User>>,
    /// The ACL generation `user` was read at (see
    /// [`AclStore::refresh`](crate::auth::AclStore::refresh)).
    pub acl_generation: u64,
    /// The batch queued since `MULTI`, if one is open.
    pub transaction: Option<Transaction>,
    /// `GRIDKV.CONSISTENCY`: the level of this connection's reads and
    /// writes; `None`: the node's.
    pub consistency: Option<gridkv::ConsistencyLevel>,
}

impl Session {
    /// A new client's session.
    pub fn new(id: u64, peer: SocketAddr) -> Self {
        Self {
            id,
            peer,
            name: None,
            protocol: Protocol::Resp2,
            lib_name: None,
            lib_ver: None,
            user: None,
            acl_generation: 0,
            transaction: None,
            consistency: None,
        }
    }
}
