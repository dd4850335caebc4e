//! `shoal-model`: check a named configuration exhaustively, or explore it in a browser.
//!
//! ```text
//! shoal-model list
//! shoal-model check <config> [--servers S] [--n N] [--r R] [--w W] [--ops get0,put0 ...]
//!                            [--lossy] [--duplicating] [--crashes C] [--sloppy] [--read-repair]
//!                            [--anti-entropy] [--reap] [--lose L] [--clock dvv|classic] [--mutation M]
//!                            [--threads T] [--traces DIR]
//! shoal-model explore <config> [--addr 127.0.0.1:3000] [same flags]
//! ```

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use shoal_model::check::check_bounded;
use shoal_model::config::{self, Config, Op};
use shoal_model::model::build;
use shoal_model::mutation::Mutation;
use shoal_model::version::Clock;
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

/// A named configuration and flags that override parts of it.
#[derive(Args)]
struct Overrides {
    /// The named configuration (see `list`).
    config: String,
    /// Number of servers.
    #[arg(long)]
    servers: Option<u8>,
    /// Replicas per key.
    #[arg(long)]
    n: Option<u8>,
    /// Read quorum.
    #[arg(long)]
    r: Option<u8>,
    /// Write quorum.
    #[arg(long)]
    w: Option<u8>,
    /// A client script, e.g. `get0,put0` (repeat the flag for more clients; replaces all).
    #[arg(long = "ops")]
    ops: Vec<String>,
    /// Coordinators a client may choose among (first nodes of the preference list).
    #[arg(long)]
    coordinators: Option<u8>,
    /// The clock scheme.
    #[arg(long, value_enum)]
    clock: Option<Clock>,
    /// The network drops messages (`--lossy false` to turn off).
    #[arg(long)]
    lossy: Option<bool>,
    /// The network duplicates messages (`--duplicating false` to turn off).
    #[arg(long)]
    duplicating: Option<bool>,
    /// Total server crashes allowed.
    #[arg(long)]
    crashes: Option<u8>,
    /// Sloppy quorum with hinted handoff (`=false` to turn off).
    #[arg(long)]
    sloppy: Option<bool>,
    /// Read repair (`=false` to turn off).
    #[arg(long)]
    read_repair: Option<bool>,
    /// Anti-entropy (`=false` to turn off).
    #[arg(long)]
    anti_entropy: Option<bool>,
    /// Coordinator timeouts (implied by drops and sloppy quorum).
    #[arg(long)]
    timeouts: bool,
    /// Tombstone reaping (`=false` to turn off).
    #[arg(long)]
    reap: Option<bool>,
    /// Maximum messages in flight.
    #[arg(long)]
    max_network: Option<usize>,
    /// Bounded loss: each server may lose at most this many incoming `Replicate` and `Repair`
    /// messages (the network stays non-lossy).
    #[arg(long)]
    lose: Option<u8>,
    /// Introduce a deliberate bug.
    #[arg(long, value_enum)]
    mutation: Option<Mutation>,
}

impl Overrides {
    fn apply(&self) -> Result<Config> {
        let mut c = config::named(&self.config)
            .with_context(|| format!("no configuration {:?}; try `list`", self.config))?;
        let s = &mut c.settings;
        if let Some(v) = self.servers {
            s.ring.servers = v;
        }
        if let Some(v) = self.n {
            s.ring.n = v;
        }
        if let Some(v) = self.r {
            s.r = v;
        }
        if let Some(v) = self.w {
            s.w = v;
        }
        if let Some(v) = self.coordinators {
            s.coordinators = v;
        }
        if let Some(v) = self.clock {
            s.clock = v;
        }
        s.sloppy = self.sloppy.unwrap_or(s.sloppy);
        s.read_repair = self.read_repair.unwrap_or(s.read_repair);
        s.anti_entropy = self.anti_entropy.unwrap_or(s.anti_entropy);
        s.reap = self.reap.unwrap_or(s.reap);
        if let Some(v) = self.lose {
            s.lose = v;
        }
        if self.mutation.is_some() {
            s.mutation = self.mutation;
        }
        c.lossy = self.lossy.unwrap_or(c.lossy);
        c.duplicating = self.duplicating.unwrap_or(c.duplicating);
        if let Some(v) = self.crashes {
            c.crashes = v;
        }
        if self.max_network.is_some() {
            c.max_network = self.max_network;
        }
        if !self.ops.is_empty() {
            c.scripts = self
                .ops
                .iter()
                .map(|s| {
                    s.split(',')
                        .map(|o| Op::parse(o.trim()).with_context(|| format!("bad op {o:?}")))
                        .collect::<Result<Vec<Op>>>()
                })
                .collect::<Result<_>>()?;
        }
        c.settings.client_timeouts = c.lossy;
        c.settings.dedup = c.duplicating;
        c.settings.timeouts |= self.timeouts || c.settings.client_timeouts || c.settings.sloppy;
        if let Err(e) = c.validate() {
            bail!("invalid configuration: {e}");
        }
        Ok(c)
    }
}

fn describe(c: &Config) -> String {
    let s = &c.settings;
    let scripts: Vec<String> = c
        .scripts
        .iter()
        .map(|o| o.iter().map(Op::to_string).collect::<Vec<_>>().join(","))
        .collect();
    let mut feats = vec![];
    for (on, name) in [
        (c.lossy, "lossy"),
        (c.duplicating, "duplicating"),
        (s.sloppy, "sloppy"),
        (s.read_repair, "read-repair"),
        (s.anti_entropy, "anti-entropy"),
        (s.reap, "reap"),
    ] {
        if on {
            feats.push(name.to_string());
        }
    }
    if c.crashes > 0 {
        feats.push(format!("crashes={}", c.crashes));
    }
    if s.lose > 0 {
        feats.push(format!("lose={}", s.lose));
    }
    if let Some(m) = s.mutation {
        feats.push(format!("MUTATION={m:?}"));
    }
    format!(
        "{}: {} servers, N={} R={} W={}, clock {:?}, coordinators {}, clients [{}], {}",
        c.name,
        s.ring.servers,
        s.ring.n,
        s.r,
        s.w,
        s.clock,
        s.coordinators,
        scripts.join(" | "),
        if feats.is_empty() {
            "no faults".into()
        } else {
            feats.join(" ")
        }
    )
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::List => {
            println!("CI configurations:");
            for c in config::ci() {
                println!("  {}", describe(&c));
            }
            println!("Large configurations (run by hand):");
            for c in config::large() {
                println!("  {}", describe(&c));
            }
        }
        Cmd::Check {
            over,
            threads,
            max_states,
            traces,
        } => {
            let cfg = over.apply()?;
            println!("checking {}", describe(&cfg));
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
                    "  {:<11} {:<48} {verdict}",
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
            println!("exploring {} on http://{addr}", describe(&cfg));
            let _ = build(&cfg)
                .checker()
                .symmetry_fn(shoal_model::check::representative)
                .serve(addr.as_str());
        }
    }
    Ok(())
}
