//! The `shoal` command line.

mod cli;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: a node allocates per request and per message, and the
/// allocator was a sixth of its CPU in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// shoal: a Dynamo-style key-value store.
#[derive(Parser, Debug)]
#[command(name = "shoal", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one node.
    Serve(cli::serve::ServeArgs),
    /// Run a local cluster of real node processes (the quick start).
    Dev(cli::dev::DevArgs),
    /// Read a key from any node; shows every sibling and the context.
    Get(cli::client_cmd::KeyArgs),
    /// Write a key with the context read first (or given), so the write supersedes it.
    Put(cli::client_cmd::PutArgs),
    /// Delete a key with the context read first (or given).
    Delete(cli::client_cmd::DeleteArgs),
    /// Drive a cluster over HTTP and print throughput and latency percentiles.
    Bench(cli::bench::BenchArgs),
    /// Serve the client API from memory, unreplicated: a baseline for `shoal bench`.
    Baseline(cli::baseline::BaselineArgs),
    /// Print a ring assignment and its load balance for given nodes, zones, Q and N.
    Ring(cli::ring_cmd::RingArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A node sizes its runtime from `--threads` (several nodes sharing a small machine run
    // best with one worker each); every other command uses one worker per core.
    let threads = match &cli.command {
        Command::Serve(args) => args.threads,
        Command::Bench(args) => args.threads,
        _ => None,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        runtime.worker_threads(n.max(1));
    }
    runtime.enable_all().build()?.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => cli::serve::run(args).await,
        Command::Dev(args) => cli::dev::run(args).await,
        Command::Get(args) => cli::client_cmd::get(args).await,
        Command::Put(args) => cli::client_cmd::put(args).await,
        Command::Delete(args) => cli::client_cmd::delete(args).await,
        Command::Bench(args) => cli::bench::run(args).await,
        Command::Baseline(args) => cli::baseline::run(args).await,
        Command::Ring(args) => {
            print!("{}", cli::ring_cmd::run(&args)?);
            Ok(())
        }
    }
}
