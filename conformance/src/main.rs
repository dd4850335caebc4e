//! `shoal-conformance`: run the seeded simulation of the node, or replay the model's traces
//! against the node's cores, from the command line.
//!
//! ```text
//! shoal-conformance simulate --seeds 1000000 [--seed S] [--nodes 4] [--ops 8]
//! shoal-conformance simulate --forgetting [--grace-ms 1500] ...
//! shoal-conformance replay --config replay --depth 8 [--max N] [--store fjall|mem]
//! shoal-conformance replay --config sloppy --walks 100000 --seed 1 [--steps 200] [--store mem]
//! shoal-conformance replay --file traces.jsonl [--store mem]
//! ```

use anyhow::bail;
use clap::{Parser, Subcommand};
use shoal_conformance::replay::{Source, StoreKind, Tally};
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
        /// Operations per client (default: 8, or 10 with --forgetting).
        #[arg(long)]
        ops: Option<u64>,
        /// Steps before the faults stop (default: 600, or 900 with --forgetting).
        #[arg(long)]
        steps: Option<usize>,
        /// Runs built to exercise forgetting deleted keys: frequent deletes, the shortest
        /// safe grace, one clock, expiring messages.
        #[arg(long)]
        forgetting: bool,
        /// With --forgetting, a different grace in milliseconds (below 1500 the rule is
        /// broken on purpose: the simulation should then find a deleted value coming back).
        #[arg(long, requires = "forgetting")]
        grace_ms: Option<u64>,
    },
    /// Replay the model's traces against the node's cores, comparing after every step.
    Replay {
        /// The model configuration (`shoal-model list`); not needed with --file.
        #[arg(long, default_value = "replay")]
        config: String,
        /// Every path of the configuration to this depth.
        #[arg(long, conflicts_with = "walks")]
        depth: Option<usize>,
        /// With --depth, at most this many traces.
        #[arg(long, requires = "depth")]
        max: Option<usize>,
        /// This many seeded random walks instead.
        #[arg(long)]
        walks: Option<u64>,
        /// The traces of this JSON lines file instead (`shoal-model export`, counterexamples).
        #[arg(long, conflicts_with_all = ["depth", "walks"])]
        file: Option<std::path::PathBuf>,
        /// The first walk's seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Steps per walk, at most.
        #[arg(long, default_value_t = 200)]
        steps: usize,
        /// The store the cores run on: fjall (the node's, in temporary directories) or mem.
        #[arg(long, default_value = "fjall")]
        store: StoreKind,
        /// Print the reports of every divergence kept (the first few).
        #[arg(long)]
        verbose: bool,
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
            forgetting,
            grace_ms,
        } => {
            let base = if forgetting {
                SimConfig::forgetting()
            } else {
                SimConfig::default()
            };
            let cfg = SimConfig {
                nodes,
                ops: ops.unwrap_or(base.ops),
                max_steps: steps.unwrap_or(base.max_steps),
                forget: grace_ms
                    .map(std::time::Duration::from_millis)
                    .or(base.forget),
                ..base
            };
            let started = Instant::now();
            let (mut acked, mut answered, mut crashes, mut lost, mut dups) = (0, 0, 0, 0, 0);
            let (mut forgotten, mut expired) = (0, 0);
            for s in seed..seed + seeds {
                match Sim::new(s, cfg.clone()).run() {
                    Ok(report) => {
                        acked += report.acked;
                        answered += report.answered;
                        crashes += report.crashes;
                        lost += report.lost;
                        dups += report.duplicated;
                        forgotten += report.forgotten;
                        expired += report.expired;
                    }
                    Err(v) => {
                        eprintln!("{v}");
                        bail!("seed {s} broke an invariant");
                    }
                }
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "simulation: {seeds} seeds from {seed}, 0 violations; {answered} answers, {acked} writes acknowledged; {crashes} crashes, {lost} messages lost, {dups} duplicated, {expired} expired; {forgotten} histories forgotten; {secs:.1} s ({:.0} seeds/s)",
                seeds as f64 / secs
            );
        }
        Cmd::Replay {
            config,
            depth,
            max,
            walks,
            file,
            seed,
            steps,
            store,
            verbose,
        } => {
            let source = match (file, depth, walks) {
                (Some(path), _, _) => Source::File { path },
                (None, Some(depth), _) => Source::Exhaustive { config, depth, max },
                (None, None, Some(count)) => Source::Walks {
                    config,
                    count,
                    seed,
                    steps,
                },
                (None, None, None) => bail!("give --depth D, --walks N or --file F"),
            };
            let tally = Tally::run(&source, store).map_err(anyhow::Error::msg)?;
            println!("{tally}");
            for b in &tally.broken {
                eprintln!("{b}");
            }
            if verbose {
                for e in tally.examples.values() {
                    eprintln!("{e}");
                }
            }
            for (i, d) in tally.divergences.iter().enumerate() {
                if verbose || i == 0 {
                    eprintln!("{d}");
                }
            }
            if tally.diverged > 0 || !tally.broken.is_empty() {
                bail!(
                    "{} divergences, {} broken replays",
                    tally.diverged,
                    tally.broken.len()
                );
            }
        }
    }
    Ok(())
}
