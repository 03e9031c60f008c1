//! Why `gridkv bench` could not run, or did not run to the end.

/// Why `gridkv bench` could not run, or did not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// `--clients 0`.
    #[error("--clients must be at least 1")]
    ZeroClients,
    /// `--pipeline 0`.
    #[error("--pipeline must be at least 1")]
    ZeroPipeline,
    /// `--requests 0`.
    #[error("--requests must be at least 1")]
    ZeroRequests,
    /// `--keyspace 0`.
    #[error("--keyspace must be at least 1")]
    ZeroKeyspace,
    /// `--duration` is zero, negative, not a number or absurdly large.
    #[error("--duration must be a positive number of seconds, got {0}")]
    BadDuration(f64),
    /// `--read-ratio` is outside `[0, 1]`.
    #[error("--read-ratio must be between 0 and 1, got {0}")]
    BadReadRatio(f64),
    /// `--data-size` above what a bulk string may hold.
    #[error("--data-size {0} is above the 512 MiB limit of a bulk string")]
    DataTooLarge(usize),
    /// `--servers` or `--tests` lists nothing.
    #[error("--{0} lists nothing")]
    Empty(&'static str),
    /// A `--servers` entry does not resolve to an address.
    #[error("cannot resolve server {server:?}: {source}")]
    Resolve {
        /// The entry as given.
        server: String,
        /// What the resolver said.
        #[source]
        source: std::io::Error,
    },
    /// `--cacert` names no usable CA bundle.
    #[error("--cacert: {0}")]
    Tls(String),
    /// A server refused the `AUTH` every connection sends first.
    #[error("{server} refused AUTH: {reply}")]
    Auth {
        /// The server, as given to `--servers`.
        server: String,
        /// Its answer.
        reply: String,
    },
    /// A client could not connect before a test started.
    #[error("cannot connect to {server}: {source}")]
    Connect {
        /// The server, as given to `--servers`.
        server: String,
        /// Why the connection failed.
        #[source]
        source: std::io::Error,
    },
    /// Some clients stopped during a test (lost connection or malformed
    /// reply). The summaries were printed and count only the replies that
    /// arrived.
    #[error(
        "{failed} client(s) stopped early (first: {first}); \
         the summary counts only the replies received"
    )]
    ClientsFailed {
        /// Clients that stopped, summed over all tests.
        failed: usize,
        /// Why the first of them stopped.
        first: String,
    },
    /// Ctrl-C. The test it stopped was summarised if it could finish its
    /// in-flight batches; later tests were skipped.
    #[error("interrupted")]
    Interrupted,
    /// Writing the summary to stdout failed (for instance a closed pipe).
    #[error("cannot write the summary: {0}")]
    Output(#[source] std::io::Error),
}
