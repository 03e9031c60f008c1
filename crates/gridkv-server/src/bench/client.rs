//! One bench client: a connection that sends pipelined batches, reads
//! their replies and tallies latencies, errors and misses.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::args::TestKind;
use super::job::Job;
use super::reply::{ProtocolError, Reply, error_message, parse_reply};
use super::workload::{KeyRng, Op, encode_command};

/// A connection to a server: TCP, or TLS over it.
pub(super) trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

/// What one client measured.
pub(super) struct ClientReport {
    pub(super) latency_us: Histogram<u64>,
    pub(super) tally: Tally,
    pub(super) failure: Option<String>,
}

impl ClientReport {
    pub(super) fn new() -> Self {
        ClientReport {
            latency_us: new_histogram(),
            tally: Tally::default(),
            failure: None,
        }
    }
}

/// An empty latency histogram, in microseconds, 3 significant digits.
pub(super) fn new_histogram() -> Histogram<u64> {
    // Auto-resizing: it grows to the largest latency seen, instead of every
    // client paying up front for an hour's range.
    Histogram::new(3).expect("3 significant digits is within hdrhistogram's 0..=5")
}

/// Records `count` requests that took `took` each.
pub(super) fn record_latency(latency_us: &mut Histogram<u64>, took: Duration, count: u64) {
    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    // `record_n` grows the histogram to fit; `saturating_record_n` would
    // clamp instead, silently capping every latency at the current top.
    // Growing fails only past what a `usize` can index: clamp then.
    if latency_us.record_n(micros, count).is_err() {
        latency_us.saturating_record_n(micros, count);
    }
}

/// Counts of reply kinds that the summary reports.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Tally {
    pub(super) replies: u64,
    pub(super) errors: u64,
    pub(super) misses: u64,
    pub(super) first_error: Option<String>,
}

impl Tally {
    pub(super) fn count(&mut self, reply: &Reply<'_>) {
        self.replies += 1;
        match reply {
            Reply::Error(message) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(error_message(message));
                }
            }
            Reply::Bulk(None) => self.misses += 1,
            _ => {}
        }
    }

    pub(super) fn merge(&mut self, other: Tally) {
        self.replies += other.replies;
        self.errors += other.errors;
        self.misses += other.misses;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Why a client stopped during a test.
#[derive(Debug, thiserror::Error)]
pub(super) enum ClientError {
    #[error("connection to {server} failed: {source}")]
    Io {
        server: Arc<str>,
        source: std::io::Error,
    },
    #[error("{server} closed the connection with replies outstanding")]
    Closed { server: Arc<str> },
    #[error("{server} sent a malformed reply: {source}")]
    Protocol {
        server: Arc<str>,
        source: ProtocolError,
    },
}

/// One client: batches of commands out, replies in, until the job says stop
/// or the connection fails.
pub(super) async fn run_client(
    mut stream: Box<dyn Connection>,
    server: Arc<str>,
    job: Arc<Job>,
    mut rng: KeyRng,
) -> ClientReport {
    let mut report = ClientReport::new();
    let mut out = Vec::with_capacity(job.pipeline * (job.value.len() + 48));
    let mut input = BytesMut::with_capacity(16 * 1024);
    loop {
        let sent_at = Instant::now();
        let batch = job.claim(sent_at);
        if batch == 0 {
            break;
        }
        out.clear();
        for _ in 0..batch {
            let op = match job.kind {
                TestKind::Set => Op::Set,
                TestKind::Get => Op::Get,
                TestKind::Mixed if rng.chance(job.read_ratio) => Op::Get,
                TestKind::Mixed => Op::Set,
            };
            encode_command(&mut out, op, rng.below(job.keyspace), &job.value);
        }
        // Write and read at once: a batch of large values must not wait for
        // the socket's send buffer while the server waits for us to read.
        let (mut reader, mut writer) = tokio::io::split(&mut stream);
        let sent = tokio::try_join!(
            async {
                writer
                    .write_all(&out)
                    .await
                    .map_err(|source| ClientError::Io {
                        server: Arc::clone(&server),
                        source,
                    })
            },
            read_replies(&mut reader, &mut input, batch, &mut report.tally, &server),
        );
        if let Err(e) = sent {
            report.failure = Some(e.to_string());
            break;
        }
        record_latency(&mut report.latency_us, sent_at.elapsed(), batch as u64);
        job.done.fetch_add(batch as u64, Ordering::Relaxed);
    }
    report
}

/// Reads exactly `count` replies into `tally`. Bytes after them stay in
/// `input` (no correct server sends any).
pub(super) async fn read_replies(
    reader: &mut (impl AsyncRead + Unpin),
    input: &mut BytesMut,
    count: usize,
    tally: &mut Tally,
    server: &Arc<str>,
) -> Result<(), ClientError> {
    let mut left = count;
    while left > 0 {
        match parse_reply(input) {
            Ok(Some((reply, used))) => {
                tally.count(&reply);
                input.advance(used);
                left -= 1;
            }
            Ok(None) => {
                // `reserve` reuses the buffer's front once its replies are
                // consumed, so this allocates only while a reply is larger
                // than any before it.
                input.reserve(16 * 1024);
                let read = reader
                    .read_buf(input)
                    .await
                    .map_err(|source| ClientError::Io {
                        server: Arc::clone(server),
                        source,
                    })?;
                if read == 0 {
                    return Err(ClientError::Closed {
                        server: Arc::clone(server),
                    });
                }
            }
            Err(source) => {
                return Err(ClientError::Protocol {
                    server: Arc::clone(server),
                    source,
                });
            }
        }
    }
    Ok(())
}
