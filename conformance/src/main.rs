//! `shoal-conformance`: run the seeded simulation of the node (and, later, replay model
//! traces) from the command line.
//!
//! ```text
//! shoal-conformance simulate --seeds 1000000 [--seed S] [--nodes 4] [--ops 8]
//! ```

use anyhow::bail;
use clap::{Parser, Subcommand};
use shoal_conformance::sim::{Sim, SimConfig};
use std::time::Instant;

#[derive(Parser)]
#[command(about = "shoal's conformance tools: the node held to the model")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the seeded simulation of a cluster of real cores under faults.
    Simulate {
        /// The first seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// How many consecutive seeds.
        #[arg(long, default_value_t = 1000)]
        seeds: u64,
        /// Nodes.
        #[arg(long, default_value_t = 4)]
        nodes: u64,
        /// Operations per client.
        #[arg(long, default_value_t = 8)]
        ops: u64,
        /// Steps before the faults stop.
        #[arg(long, default_value_t = 600)]
        steps: usize,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Simulate {
            seed,
            seeds,
            nodes,
            ops,
            steps,
        } => {
            let cfg = SimConfig {
                nodes,
                ops,
                max_steps: steps,
                ..SimConfig::default()
            };
            let started = Instant::now();
            let (mut acked, mut answered, mut crashes, mut lost, mut dups) = (0, 0, 0, 0, 0);
            for s in seed..seed + seeds {
                match Sim::new(s, cfg.clone()).run() {
                    Ok(report) => {
                        acked += report.acked;
                        answered += report.answered;
                        crashes += report.crashes;
                        lost += report.lost;
                        dups += report.duplicated;
                    }
                    Err(v) => {
                        eprintln!("{v}");
                        bail!("seed {s} broke an invariant");
                    }
                }
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "simulation: {seeds} seeds from {seed}, 0 violations; {answered} answers, {acked} writes acknowledged; {crashes} crashes, {lost} messages lost, {dups} duplicated; {secs:.1} s ({:.0} seeds/s)",
                seeds as f64 / secs
            );
        }
    }
    Ok(())
}
