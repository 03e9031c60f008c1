//! One established connection: a reader and a writer driven by one task.
//!
//! Both directions of a connection run the same loop, whoever dialled:
//! - the writer takes everything queued at once and writes it with as few
//!   syscalls as it can (small frames are copied into one buffer, large
//!   bodies are written from their own memory); under load (its last batch,
//!   or the reader's last read, held more than one frame) it first lets the
//!   ready tasks run once, so the frames they queue join the batch; when
//!   nothing was written for a heartbeat interval it sends a ping;
//! - the reader cuts frames out of its buffer, answers pings, completes
//!   pending requests (outbound links) and hands requests and one-way
//!   messages to the application (within an inbound budget);
//! - nothing received within the idle timeout, a write that stalls as long,
//!   a frame over the limit or one that does not decode: the connection
//!   ends, with the reason, and the caller fails whatever was pending on it.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::envelope::{Envelope, ErrorCode};
use super::frame::{FrameDecoder, LEN_PREFIX};
use super::handshake::exchange::PeerInfo;
use super::inbound::{Inbound, Responder};
use super::pending::PendingRequests;
use super::queue::{Budget, Outgoing, SendQueue};
use super::shared::Shared;

/// Bodies at least this large are written from their own buffer rather than
/// copied into the batch.
const COPY_LIMIT: usize = 32 * 1024;
/// A batch buffer this full is written out before more is added.
const BATCH_BYTES: usize = 256 * 1024;
/// How much read buffer is added when it runs out.
const READ_CHUNK: usize = 64 * 1024;

/// Everything a running connection needs.
pub(crate) struct Conn {
    pub(crate) shared: Arc<Shared>,
    pub(crate) peer: PeerInfo,
    pub(crate) queue: Arc<SendQueue>,
    /// The requests of the outbound link this connection carries; `None`
    /// on an accepted connection (answers arriving there are unknown).
    pub(crate) pending: Option<Arc<PendingRequests>>,
    /// Limits on what the peer may have pending with this node's
    /// application through this connection.
    pub(crate) inbound: Arc<Budget>,
    /// Ends the connection: the transport's token, or the link's (which
    /// also fires when the link is forgotten).
    pub(crate) stop: CancellationToken,
    /// The application's channels, one per lane.
    pub(crate) handlers: [mpsc::Sender<Inbound>; 2],
    /// Whether the reader's last read brought more than one frame (a sign
    /// of load the writer acts on).
    pub(crate) read_burst: AtomicBool,
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnEnd {
    /// The transport is shutting down.
    Shutdown,
    /// The peer closed it, or it broke; the text says how.
    Broken(String),
}

impl Conn {
    /// Runs the connection until it ends. `buf` holds whatever arrived after
    /// the handshake.
    pub(crate) async fn run(
        self,
        mut read: Box<dyn AsyncRead + Send + Unpin>,
        mut write: Box<dyn AsyncWrite + Send + Unpin>,
        buf: BytesMut,
    ) -> ConnEnd {
        let counters = &self.shared.counters;
        counters.open_connections.fetch_add(1, Relaxed);
        let end = tokio::select! {
            biased;
            _ = self.stop.cancelled() => ConnEnd::Shutdown,
            end = self.read_loop(&mut read, buf) => end,
            end = self.write_loop(&mut write) => end,
        };
        counters.open_connections.fetch_sub(1, Relaxed);
        if let ConnEnd::Broken(reason) = &end {
            tracing::debug!(peer = %self.peer, %reason, "connection closed");
        }
        // Best effort: tell the peer we are done (it notices anyway).
        let _ = tokio::time::timeout(Duration::from_millis(50), write.shutdown()).await;
        end
    }

    async fn read_loop(
        &self,
        read: &mut (dyn AsyncRead + Send + Unpin),
        mut buf: BytesMut,
    ) -> ConnEnd {
        let config = &self.shared.config;
        let counters = &self.shared.counters;
        let decoder = FrameDecoder::new(config.max_frame);
        loop {
            let mut frames = 0;
            loop {
                let frame = match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(error) => return self.protocol_error(error.to_string()),
                };
                frames += 1;
                counters.frames_received.fetch_add(1, Relaxed);
                match Envelope::decode(frame) {
                    Ok(envelope) => self.dispatch(envelope).await,
                    Err(error) => return self.protocol_error(error.to_string()),
                }
            }
            self.read_burst.store(frames > 1, Relaxed);
            if buf.capacity() - buf.len() < LEN_PREFIX {
                buf.reserve(READ_CHUNK);
            }
            match tokio::time::timeout(config.idle_timeout, read.read_buf(&mut buf)).await {
                Err(_) => {
                    counters.idle_timeouts.fetch_add(1, Relaxed);
                    return ConnEnd::Broken(format!(
                        "nothing received for {:?} (idle timeout)",
                        config.idle_timeout
                    ));
                }
                Ok(Ok(0)) => return ConnEnd::Broken("closed by peer".to_owned()),
                Ok(Ok(n)) => {
                    counters.bytes_received.fetch_add(n as u64, Relaxed);
                }
                Ok(Err(error)) => return ConnEnd::Broken(format!("read failed: {error}")),
            }
        }
    }

    fn protocol_error(&self, detail: String) -> ConnEnd {
        self.shared.counters.frame_errors.fetch_add(1, Relaxed);
        tracing::warn!(peer = %self.peer, %detail, "closing connection: bad frame");
        ConnEnd::Broken(format!("bad frame from peer: {detail}"))
    }

    /// Acts on one envelope. Requests never wait: over the inbound budget or
    /// with the application's channel full they are answered `Overloaded`.
    /// One-way messages have no answer to say so with; instead the reader
    /// waits for room, which stops it reading, so TCP flow control pushes
    /// back until the sender's own queue reports backpressure. Nothing is
    /// dropped silently either way. An application that stalls longer than
    /// the idle timeout makes the sender's writes stall as long, and the
    /// sender closes the connection (failing what was pending on it): a
    /// receiver that slow is treated as a dead one.
    async fn dispatch(&self, envelope: Envelope) {
        let counters = &self.shared.counters;
        match envelope {
            Envelope::Ping { token } => {
                self.queue.push_control(Envelope::Pong { token });
            }
            Envelope::Pong { token } => {
                if let Some(pending) = &self.pending {
                    pending.observe_pong(self.shared.instant_of(token));
                }
            }
            Envelope::Response { id, body, .. } => match &self.pending {
                Some(pending) => pending.complete(id, Ok(body), counters),
                None => {
                    counters.late_responses.fetch_add(1, Relaxed);
                }
            },
            Envelope::Error { id, code, .. } => match &self.pending {
                Some(pending) => {
                    let error = pending.remote_error(code);
                    pending.complete(id, Err(error), counters);
                }
                None => {
                    counters.late_responses.fetch_add(1, Relaxed);
                }
            },
            Envelope::Request { lane, id, body } => {
                let refuse = |queue: &SendQueue| {
                    counters.inbound_overloaded.fetch_add(1, Relaxed);
                    queue.push_control(Envelope::Error {
                        lane,
                        id,
                        code: ErrorCode::Overloaded,
                    });
                };
                let Ok(budget) = self.inbound.try_acquire(body.len()) else {
                    return refuse(&self.queue);
                };
                let responder = Responder::new(
                    Arc::clone(&self.queue),
                    self.peer.addr,
                    lane,
                    id,
                    self.shared.config.max_frame,
                    budget,
                );
                let inbound = Inbound {
                    from: self.peer,
                    lane,
                    body,
                    reply: Some(responder),
                    _budget: None,
                };
                if let Err(TrySendError::Full(mut inbound) | TrySendError::Closed(mut inbound)) =
                    self.handlers[lane.index()].try_send(inbound)
                {
                    // Answer `Overloaded`, not the responder's `NoAnswer`:
                    // the application never saw it.
                    if let Some(responder) = inbound.reply.take() {
                        responder.disarm();
                    }
                    refuse(&self.queue);
                }
            }
            Envelope::OneWay { lane, body } => {
                let budget = self.inbound.acquire(body.len()).await;
                let inbound = Inbound {
                    from: self.peer,
                    lane,
                    body,
                    reply: None,
                    _budget: Some(budget),
                };
                // Fails only when the application dropped its receiver: it
                // takes no more messages.
                let _ = self.handlers[lane.index()].send(inbound).await;
            }
        }
    }

    async fn write_loop(&self, write: &mut (dyn AsyncWrite + Send + Unpin)) -> ConnEnd {
        let config = &self.shared.config;
        let mut batch: VecDeque<Outgoing> = VecDeque::new();
        let mut out = BytesMut::with_capacity(BATCH_BYTES);
        // Pings go out every heartbeat interval whatever else is sent, so
        // both ends keep hearing from each other and RTT samples keep
        // coming even on a link that only answers.
        let mut next_ping = Instant::now() + config.heartbeat_interval;
        // Whether the last batch held more than one frame.
        let mut busy = false;
        loop {
            let taken = tokio::time::timeout_at(next_ping, self.queue.take_all(&mut batch)).await;
            if Instant::now() >= next_ping {
                let token = self.shared.ticks();
                self.queue.push_control(Envelope::Ping { token });
                next_ping = Instant::now() + config.heartbeat_interval;
            }
            match taken {
                Err(_) => continue,
                Ok(false) => return ConnEnd::Shutdown,
                Ok(true) => {}
            }
            // Under load, let the tasks that are ready run first, so frames
            // they are about to queue join this batch: the runtime runs a
            // task it has just woken next, so without this the writer
            // would write each frame the moment its producer queued it, one
            // syscall each. Load is a last batch of more than one frame, or
            // a last read that brought more than one (answers that woke
            // several callers, requests for several answers). Light traffic
            // (one caller, one request at a time) is written at once, with
            // no added wait.
            if busy || self.read_burst.load(Relaxed) {
                tokio::task::yield_now().await;
                self.queue.take_ready(&mut batch);
            }
            let faults = self.shared.faults.get(&self.peer.node_id);
            let mut frames = 0u64;
            let mut bytes = 0u64;
            for item in batch.drain(..) {
                // A request whose caller gave up while it was queued is not
                // sent: it would cost the peer work nobody awaits.
                if let (Envelope::Request { id, .. }, Some(pending)) =
                    (&item.envelope, &self.pending)
                {
                    if !pending.is_pending(*id) {
                        continue;
                    }
                }
                let mut copies = 1;
                if let Some(faults) = faults {
                    if !faults.delay.is_zero() {
                        if let Err(end) = self.flush(write, &mut out).await {
                            return end;
                        }
                        tokio::time::sleep_until(item.queued_at + faults.delay).await;
                    }
                    if self.shared.faults.roll(faults.drop) {
                        self.shared.counters.fault_dropped.fetch_add(1, Relaxed);
                        continue;
                    }
                    if self.shared.faults.roll(faults.duplicate) {
                        self.shared.counters.fault_duplicated.fetch_add(1, Relaxed);
                        copies = 2;
                    }
                }
                for _ in 0..copies {
                    let len = item.envelope.encoded_len();
                    frames += 1;
                    bytes += (LEN_PREFIX + len) as u64;
                    // Lengths were checked against the peer's limit when the
                    // frame was queued.
                    out.put_u32(len as u32);
                    let body = item.envelope.split_header(&mut out);
                    match body {
                        Some(body) if body.len() >= COPY_LIMIT => {
                            if let Err(end) = self.flush(write, &mut out).await {
                                return end;
                            }
                            if let Err(end) = self.write_all(write, body).await {
                                return end;
                            }
                        }
                        Some(body) => out.put_slice(body),
                        None => {}
                    }
                    if out.len() >= BATCH_BYTES {
                        if let Err(end) = self.flush(write, &mut out).await {
                            return end;
                        }
                    }
                }
            }
            if let Err(end) = self.flush(write, &mut out).await {
                return end;
            }
            busy = frames > 1;
            let counters = &self.shared.counters;
            counters.frames_sent.fetch_add(frames, Relaxed);
            counters.bytes_sent.fetch_add(bytes, Relaxed);
        }
    }

    async fn flush(
        &self,
        write: &mut (dyn AsyncWrite + Send + Unpin),
        out: &mut BytesMut,
    ) -> Result<(), ConnEnd> {
        if out.is_empty() {
            return Ok(());
        }
        let result = self.write_all(write, out).await;
        out.clear();
        result
    }

    /// Writes all of `bytes`, or ends the connection if that stalls for the
    /// idle timeout (a peer that stopped reading).
    async fn write_all(
        &self,
        write: &mut (dyn AsyncWrite + Send + Unpin),
        bytes: &[u8],
    ) -> Result<(), ConnEnd> {
        let timeout = self.shared.config.idle_timeout;
        self.shared.counters.write_batches.fetch_add(1, Relaxed);
        // Flushed: under TLS, bytes may otherwise wait in the session.
        let written = async {
            write.write_all(bytes).await?;
            write.flush().await
        };
        match tokio::time::timeout(timeout, written).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(ConnEnd::Broken(format!("write failed: {error}"))),
            Err(_) => {
                self.shared.counters.idle_timeouts.fetch_add(1, Relaxed);
                Err(ConnEnd::Broken(format!(
                    "write stalled for {timeout:?}: the peer stopped reading"
                )))
            }
        }
    }
}
