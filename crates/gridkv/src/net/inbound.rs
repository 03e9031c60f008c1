//! What arrives from peers for the application: requests and one-way
//! messages ([`Inbound`], delivered through [`Incoming`]), and the
//! [`Responder`] that answers a request on the connection it came in on.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::envelope::{Envelope, ErrorCode, Lane, ID_HEADER};
use super::error::TransportError;
use super::handshake::exchange::PeerInfo;
use super::queue::{BudgetGuard, PushError, SendQueue};

/// A request or one-way message from a peer, for the application.
///
/// Holding it holds a slot of the sending connection's inbound budget; drop
/// it (or answer) promptly.
///
/// # Examples
///
/// ```
/// use gridkv::net::Inbound;
///
/// /// An application loop: answer requests, count one-way messages.
/// async fn serve(mut data: tokio::sync::mpsc::Receiver<Inbound>) -> usize {
///     let mut messages = 0;
///     while let Some(inbound) = data.recv().await {
///         match inbound.reply {
///             Some(reply) => {
///                 let _ = reply.respond(inbound.body);
///             }
///             None => messages += 1,
///         }
///     }
///     messages
/// }
/// ```
#[derive(Debug)]
pub struct Inbound {
    /// Who sent it.
    pub from: PeerInfo,
    /// The lane it came on.
    pub lane: Lane,
    /// The message.
    pub body: Bytes,
    /// For a request: where the answer goes. `None` for a one-way message.
    pub reply: Option<Responder>,
    /// Holds a one-way message's share of the inbound budget while the
    /// application has it (a request's share travels in its responder).
    pub(crate) _budget: Option<BudgetGuard>,
}

/// Answers one inbound request. Dropping it unanswered sends the requester a
/// `NoAnswer` error at once, so it does not wait for its timeout.
///
/// # Examples
///
/// See [`Inbound`] and [`Transport`](super::Transport).
#[derive(Debug)]
pub struct Responder {
    queue: Arc<SendQueue>,
    peer: SocketAddr,
    lane: Lane,
    id: u64,
    max_frame: usize,
    armed: bool,
    _budget: BudgetGuard,
}

impl Responder {
    pub(crate) fn new(
        queue: Arc<SendQueue>,
        peer: SocketAddr,
        lane: Lane,
        id: u64,
        max_frame: usize,
        budget: BudgetGuard,
    ) -> Self {
        Self {
            queue,
            peer,
            lane,
            id,
            max_frame,
            armed: true,
            _budget: budget,
        }
    }

    /// Queues the answer.
    ///
    /// - A body too large for one frame is refused with
    ///   [`TransportError::TooLarge`]; the requester gets `NoAnswer`.
    /// - When the connection's send queue is full (the requester reads
    ///   answers slower than they are produced), the answer is refused with
    ///   [`TransportError::Backpressure`] and the requester gets
    ///   `Overloaded` at once instead of waiting for its timeout.
    /// - If the connection has closed meanwhile, the answer is dropped and
    ///   `Ok` returned: the requester has already failed.
    pub fn respond(mut self, body: Bytes) -> Result<(), TransportError> {
        let len = ID_HEADER + body.len();
        if len > self.max_frame {
            return Err(TransportError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        let answer = Envelope::Response {
            lane: self.lane,
            id: self.id,
            body,
        };
        self.armed = false;
        match self.queue.push(answer) {
            Ok(()) | Err(PushError::Closed) => Ok(()),
            Err(PushError::Full(limit)) => {
                self.queue.push_control(Envelope::Error {
                    lane: self.lane,
                    id: self.id,
                    code: ErrorCode::Overloaded,
                });
                Err(TransportError::Backpressure {
                    peer: self.peer.to_string(),
                    limit,
                })
            }
        }
    }

    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if self.armed {
            self.queue.push_control(Envelope::Error {
                lane: self.lane,
                id: self.id,
                code: ErrorCode::NoAnswer,
            });
        }
    }
}

/// Where inbound requests and messages arrive, one bounded channel per
/// lane, so a backlog of data never delays membership.
#[derive(Debug)]
pub struct Incoming {
    /// Control-lane traffic.
    pub control: mpsc::Receiver<Inbound>,
    /// Data-lane traffic.
    pub data: mpsc::Receiver<Inbound>,
}
