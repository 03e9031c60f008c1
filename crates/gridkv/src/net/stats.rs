//! Per-transport counters: one set per node, never process-global, so nodes
//! sharing a process (tests, the demo) report only their own traffic.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// The live counters, updated with relaxed atomics.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
        }

        /// A snapshot of a node's cluster-transport counters
        /// ([`GridKv::transport_stats`](crate::GridKv::transport_stats)).
        ///
        /// Counters only grow, except the gauges `open_connections`,
        /// `queued_frames` and `links`.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct TransportStats {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            /// Counts a failed handshake, by kind.
            pub(crate) fn handshake_failed(&self, error: &crate::net::handshake::HandshakeError) {
                use crate::net::handshake::HandshakeError;
                self.handshake_failures.fetch_add(1, Relaxed);
                match error {
                    HandshakeError::Tls { .. } => {
                        self.tls_failures.fetch_add(1, Relaxed);
                    }
                    HandshakeError::IdentityMismatch(_) => {
                        self.identity_mismatches.fetch_add(1, Relaxed);
                    }
                    _ => {}
                }
            }

            pub(crate) fn snapshot(&self) -> TransportStats {
                TransportStats { $($name: self.$name.load(Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Bytes written to sockets, frame prefixes included.
    bytes_sent,
    /// Bytes read from sockets.
    bytes_received,
    /// Frames written.
    frames_sent,
    /// Frames read.
    frames_received,
    /// Buffers handed to the socket by writers: with many frames queued,
    /// far fewer than `frames_sent` (the writer coalesces them).
    write_batches,
    /// Connections this node dialled that completed the handshake.
    connections_dialled,
    /// Inbound connections that completed the handshake.
    connections_accepted,
    /// Connections open now (gauge), both directions.
    open_connections,
    /// Dials that failed (connect error, timeout, or refused handshake).
    dial_failures,
    /// Dials after a previous connection to the same peer and lane broke
    /// or failed: reconnect attempts.
    reconnects,
    /// Handshakes refused or failed, either direction.
    handshake_failures,
    /// TLS handshakes that failed, either direction (counted in
    /// `handshake_failures` too): a plaintext peer, a certificate missing,
    /// untrusted, expired or naming no node.
    tls_failures,
    /// Handshakes refused, either direction, because the peer claimed
    /// another node id than its certificate names (counted in
    /// `handshake_failures` too).
    identity_mismatches,
    /// Inbound connections closed at once because the cap was reached.
    inbound_rejected,
    /// Connections closed for a frame over the limit or one that did not
    /// decode.
    frame_errors,
    /// Connections closed because nothing arrived within the idle timeout
    /// or a write stalled.
    idle_timeouts,
    /// Requests that timed out waiting for their answer.
    request_timeouts,
    /// Requests failed because their connection broke or could not be
    /// opened.
    requests_failed,
    /// Answers that arrived for no pending request (late, duplicated or
    /// unknown); dropped.
    late_responses,
    /// Sends refused locally because a queue or in-flight limit was full.
    backpressure,
    /// Inbound requests and messages refused because the local application
    /// had too many unanswered (answered `Overloaded` or dropped).
    inbound_overloaded,
    /// Frames dropped by the fault-injection hooks.
    fault_dropped,
    /// Frames duplicated by the fault-injection hooks.
    fault_duplicated,
    /// Frames waiting in send queues now (gauge).
    queued_frames,
    /// Peer addresses with links now (gauge; each has one link per lane).
    links,
    /// Links refused because `max_links` addresses had links already.
    links_refused,
}
