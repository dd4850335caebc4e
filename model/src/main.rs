//! `shoal-model`: check a named configuration exhaustively, or explore it in a browser.
//!
//! ```text
//! shoal-model list
//! shoal-model check <config> [--servers S] [--n N] [--r R] [--w W] [--ops get0,put0 ...]
//!                            [--lossy] [--duplicating] [--crashes C] [--sloppy] [--read-repair]
//!                            [--anti-entropy] [--reap] [--lose L] [--scheme dvv|classic] [--mutation M]
//!                            [--threads T] [--traces DIR]
//! shoal-model explore <config> [--addr 127.0.0.1:3000] [same flags]
//! shoal-model export <config> --exhaustive --depth D [--max N] --out FILE [same flags]
//! shoal-model export <config> --walks N --seed S [--steps MAX] --out FILE [same flags]
//! ```
//!
//! Only the command line lives here: the overrides and their meaning are the library's
//! (`shoal_model::config::Overrides`), as are the traces' format and file names.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use shoal_model::check::check_bounded;
use shoal_model::config::{self, Overrides};
use shoal_model::model::build;
use shoal_model::trace::exhaustive::Exhaustive;
use shoal_model::trace::walk::walks as walks_of;
use shoal_model::trace::write_lines;
use stateright::{Expectation, Model};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "shoal's protocol as an exhaustively checked stateright model")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the named configurations.
    List,
    /// Check a configuration exhaustively (DFS with symmetry reduction).
    Check {
        #[command(flatten)]
        over: Overrides,
        /// Checker threads. With more than one the exploration order, and so the unique count
        /// under symmetry reduction, can vary slightly from run to run; the pinned counts are
        /// single-threaded.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Stop after about this many states (the check is then not exhaustive).
        #[arg(long)]
        max_states: Option<usize>,
        /// Where to write JSON traces of counterexamples and examples.
        #[arg(long, default_value = "target/shoal-model")]
        traces: PathBuf,
    },
    /// Export traces as JSON lines, for the conformance crate: every path to a depth
    /// (`--exhaustive --depth D`) or seeded random walks (`--walks N --seed S`).
    Export {
        #[command(flatten)]
        over: Overrides,
        /// Every path of the plain state graph to `--depth`, one trace per leaf, deduplicated.
        #[arg(long, requires = "depth", conflicts_with = "walks")]
        exhaustive: bool,
        /// The depth (in actions) of the exhaustive export.
        #[arg(long)]
        depth: Option<usize>,
        /// Stop after this many traces.
        #[arg(long)]
        max: Option<usize>,
        /// This many random walks, walk `i` seeded `seed + i`.
        #[arg(long, requires = "seed")]
        walks: Option<u64>,
        /// The first walk's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// The most actions a walk takes.
        #[arg(long, default_value_t = 200)]
        steps: usize,
        /// The JSON lines file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve stateright's web Explorer for a configuration.
    Explore {
        #[command(flatten)]
        over: Overrides,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: String,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::List => {
            println!("CI configurations:");
            for c in config::ci() {
                println!("  {}", c.describe());
            }
            println!("Forgetting, wipes and restores (pinned by tests, run in CI):");
            for c in config::forgetting().into_iter().chain(config::restoring()) {
                println!("  {}", c.describe());
            }
            println!("Large configurations (run by hand):");
            for c in config::large() {
                println!("  {}", c.describe());
            }
            println!("Exported for the conformance crate (export pinned by tests):");
            println!("  {}", config::replay().describe());
            println!("  {}", config::acks().describe());
        }
        Cmd::Check {
            over,
            threads,
            max_states,
            traces,
        } => {
            let cfg = over.apply()?;
            println!("checking {}", cfg.describe());
            let report = check_bounded(&cfg, threads, max_states);
            println!(
                "states: {} generated, {} unique, max depth {}; time {:.2?}{}",
                report.generated,
                report.unique,
                report.max_depth,
                report.elapsed,
                if max_states.is_some() {
                    " (bounded by --max-states: not exhaustive)"
                } else {
                    ""
                }
            );
            std::fs::create_dir_all(&traces)
                .with_context(|| format!("creating {}", traces.display()))?;
            for o in &report.outcomes {
                let verdict = match (o.expectation.clone(), o.ok) {
                    (Expectation::Sometimes, true) => "example found",
                    (Expectation::Sometimes, false) => "FAILED: never reached",
                    (_, true) => "holds",
                    (_, false) => "FAILED: counterexample",
                };
                println!(
                    "  {:<11} {:<72} {verdict}",
                    format!("{:?}", o.expectation),
                    o.name
                );
                if let (Some(t), false) = (&o.trace, o.ok) {
                    print!("{}", t.render());
                }
                if let Some(t) = &o.trace {
                    let file = t
                        .write_to(&traces)
                        .with_context(|| format!("writing a trace into {}", traces.display()))?;
                    if !o.ok {
                        println!("       trace written to {}", file.display());
                    }
                }
            }
            if !report.ok() {
                bail!("{}: some properties failed", cfg.name);
            }
        }
        Cmd::Export {
            over,
            exhaustive,
            depth,
            max,
            walks,
            seed,
            steps,
            out,
        } => {
            let cfg = over.apply()?;
            println!("exporting {}", cfg.describe());
            let start = Instant::now();
            let (how, written) = match (exhaustive, depth, walks, seed) {
                (true, Some(depth), _, _) => {
                    let mut export = Exhaustive::new(&cfg, depth, max);
                    let traces: Vec<_> = export.by_ref().collect();
                    let n = write_lines(&out, &traces)?;
                    let how = format!(
                        "exhaustive to depth {depth}: {} frontier states, {} states visited",
                        export.frontier(),
                        export.visited()
                    );
                    (how, n)
                }
                (false, _, Some(count), Some(seed)) => {
                    let traces = walks_of(&cfg, count, seed, steps);
                    let n = write_lines(&out, &traces)?;
                    (format!("walks from seed {seed}, at most {steps} steps"), n)
                }
                _ => bail!("say --exhaustive --depth D, or --walks N --seed S"),
            };
            println!(
                "{written} traces ({how}) written to {} in {:.2?}",
                out.display(),
                start.elapsed()
            );
        }
        Cmd::Explore { over, addr } => {
            let cfg = over.apply()?;
            println!("exploring {} on http://{addr}", cfg.describe());
            let _ = build(&cfg)
                .checker()
                .symmetry_fn(shoal_model::check::representative)
                .serve(addr.as_str());
        }
    }
    Ok(())
}
