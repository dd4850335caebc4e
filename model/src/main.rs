//! `shoal-model`: check a named configuration exhaustively, or explore it in a browser.
//!
//! ```text
//! shoal-model list
//! shoal-model check <config> [--servers S] [--n N] [--r R] [--w W] [--ops get0,put0 ...]
//!                            [--lossy] [--duplicating] [--crashes C] [--sloppy] [--read-repair]
//!                            [--anti-entropy] [--reap] [--lose L] [--scheme dvv|classic] [--mutation M]
//!                            [--threads T] [--traces DIR]
//! shoal-model explore <config> [--addr 127.0.0.1:3000] [same flags]
//! ```
//!
//! Only the command line lives here: the overrides and their meaning are the library's
//! (`shoal_model::config::Overrides`), as are the traces' format and file names.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use shoal_model::check::check_bounded;
use shoal_model::config::{self, Overrides};
use shoal_model::model::build;
use stateright::{Expectation, Model};
use std::path::PathBuf;

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
            println!("Large configurations (run by hand):");
            for c in config::large() {
                println!("  {}", c.describe());
            }
            println!("Exported for the conformance crate (export pinned by tests):");
            println!("  {}", config::replay().describe());
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
