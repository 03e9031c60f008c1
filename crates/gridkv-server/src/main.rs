//! The `gridkv` binary: see `gridkv --help`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's malloc: a command allocates and frees a
/// few small blocks (its arguments, the write's buffers, a remote
/// request's future and oneshot), and glibc's free alone was a tenth of
/// a node's instructions under redis-benchmark (Redis links jemalloc for
/// the same reason).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// GridKV: a distributed key-value cache speaking the Redis protocol.
#[derive(Debug, Parser)]
#[command(name = "gridkv", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one node of a cluster (RESP and HTTP admin).
    Node(Box<gridkv_server::config::NodeArgs>),
    /// Start a local cluster in this process and walk through it.
    Demo(gridkv_server::demo::DemoArgs),
    /// Load-generate against a running cluster over RESP.
    Bench(gridkv_server::bench::BenchArgs),
    /// Make the certificates of a secured cluster (CA, nodes, operators).
    Cert(gridkv_server::cert::CertArgs),
    /// Remove a member for good, signed with an operator certificate.
    Remove(gridkv_server::remove::RemoveArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Node(args) => gridkv_server::node::run(*args).await,
            Command::Demo(args) => gridkv_server::demo::run(args).await,
            Command::Bench(args) => gridkv_server::bench::run(args)
                .await
                .map_err(|e| e.to_string()),
            Command::Cert(args) => gridkv_server::cert::run(args),
            Command::Remove(args) => gridkv_server::remove::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
