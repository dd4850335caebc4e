//! The `shoal` command line.

mod cli;

use clap::{Parser, Subcommand};

/// shoal: a Dynamo-style key-value store.
#[derive(Parser, Debug)]
#[command(name = "shoal", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a ring assignment and its load balance for given nodes, zones, Q and N.
    Ring(cli::ring_cmd::RingArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Ring(args) => print!("{}", cli::ring_cmd::run(&args)?),
    }
    Ok(())
}
