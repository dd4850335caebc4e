//! Where traces come from, and the tally of replaying them.
//!
//! Traces are made in-process through the model's library: every path of a configuration to
//! a depth (`shoal_model::trace::exhaustive`) or seeded random walks
//! (`shoal_model::trace::walk`). A [`Tally`] counts, per source: traces replayed, those the
//! node followed to the end, those it could not follow (by [`Reason`]), divergences (each
//! kept with its report) and broken replays, and the time taken.

use super::{replay, Reason, Stop, StoreKind};
use shoal_model::config::{named, Config};
use shoal_model::trace::exhaustive::Exhaustive;
use shoal_model::trace::walk::walks;
use shoal_model::trace::Trace;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// A source of traces.
#[derive(Clone, Debug)]
pub enum Source {
    /// Every path of `config` to `depth` actions (at most `max` traces).
    Exhaustive {
        /// The model configuration's name.
        config: String,
        /// Depth in actions.
        depth: usize,
        /// At most this many traces.
        max: Option<usize>,
    },
    /// `count` random walks of `config` from seeds `seed..`, of at most `steps` actions.
    Walks {
        /// The model configuration's name.
        config: String,
        /// How many walks.
        count: u64,
        /// The first seed.
        seed: u64,
        /// Step cap per walk.
        steps: usize,
    },
    /// The traces of a JSON lines file: `shoal-model export`'s, or a counterexample the
    /// checker wrote (each trace names its own configuration).
    File {
        /// The file.
        path: std::path::PathBuf,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Exhaustive { config, depth, .. } => {
                write!(f, "{config} exhaustive to depth {depth}")
            }
            Source::Walks {
                config,
                count,
                seed,
                ..
            } => write!(f, "{config} {count} walks from seed {seed}"),
            Source::File { path } => write!(f, "{}", path.display()),
        }
    }
}

impl Source {
    /// The model configuration (a file's traces carry their own).
    pub fn config(&self) -> Result<Config, String> {
        let name = match self {
            Source::Exhaustive { config, .. } | Source::Walks { config, .. } => config,
            Source::File { path } => {
                return Err(format!(
                    "{}: each trace names its configuration",
                    path.display()
                ))
            }
        };
        named(name).ok_or_else(|| format!("no model configuration {name:?}"))
    }

    /// The traces, made in-process or read from the file.
    pub fn traces(&self) -> Result<Box<dyn Iterator<Item = Trace>>, String> {
        if let Source::File { path } = self {
            return Ok(Box::new(shoal_model::trace::read_lines(path)?.into_iter()));
        }
        let cfg = self.config()?;
        Ok(match self {
            Source::File { .. } => unreachable!("handled above"),
            Source::Exhaustive { depth, max, .. } => Box::new(Exhaustive::new(&cfg, *depth, *max)),
            Source::Walks {
                count, seed, steps, ..
            } => Box::new(walks(&cfg, *count, *seed, *steps).into_iter()),
        })
    }
}

/// What replaying one source gave.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// The source, for printing.
    pub source: String,
    /// The store the cores ran on.
    pub store: String,
    /// Traces replayed.
    pub traces: usize,
    /// Traces the node followed to the end, every step equal.
    pub conforming: usize,
    /// Steps replayed and found equal, over all traces.
    pub steps: usize,
    /// Traces the node could not follow (from some step on), by reason.
    pub unsupported: BTreeMap<Reason, usize>,
    /// Divergences, with their reports (the first few in full).
    pub divergences: Vec<String>,
    /// How many traces diverged.
    pub diverged: usize,
    /// Replays the driver could not interpret.
    pub broken: Vec<String>,
    /// The first trace of each unsupported reason, with the step and details.
    pub examples: BTreeMap<Reason, String>,
    /// Time spent making the traces and replaying them.
    pub elapsed: Duration,
    /// Of which making the traces (the model's export).
    pub export: Duration,
}

/// Divergence reports kept in full per tally.
const KEEP: usize = 3;

impl Tally {
    /// Replays every trace of `source` on `store`.
    pub fn run(source: &Source, store: StoreKind) -> Result<Tally, String> {
        let started = Instant::now();
        let mut t = Tally {
            source: source.to_string(),
            store: format!("{store:?}").to_lowercase(),
            ..Tally::default()
        };
        let mut traces = source.traces()?;
        loop {
            let made = Instant::now();
            let Some(trace) = traces.next() else {
                t.export += made.elapsed();
                break;
            };
            t.export += made.elapsed();
            t.add(&trace, store);
        }
        t.elapsed = started.elapsed();
        Ok(t)
    }

    /// Replays one trace and counts it.
    pub fn add(&mut self, trace: &Trace, store: StoreKind) {
        let outcome = replay(trace, store);
        self.traces += 1;
        self.steps += outcome.steps;
        match outcome.result {
            Ok(()) => self.conforming += 1,
            Err(Stop::Unsupported {
                reason,
                step,
                detail,
            }) => {
                *self.unsupported.entry(reason).or_default() += 1;
                self.examples.entry(reason).or_insert_with(|| {
                    let mut prefix = trace.clone();
                    prefix.steps.truncate(step + 1);
                    format!(
                        "{reason} at step {}: {detail}\n{}",
                        step + 1,
                        prefix.render()
                    )
                });
            }
            Err(Stop::Diverged(d)) => {
                self.diverged += 1;
                if self.divergences.len() < KEEP {
                    self.divergences.push(d.to_string());
                }
            }
            Err(b @ Stop::Broken { .. }) => {
                if self.broken.len() < KEEP {
                    self.broken.push(format!("{b}\n{}", trace.render()));
                } else {
                    self.broken.push(b.to_string());
                }
            }
        }
    }

    /// Traces the node could not follow, all reasons.
    pub fn unsupported_total(&self) -> usize {
        self.unsupported.values().sum()
    }

    /// Traces replayed per second.
    pub fn rate(&self) -> f64 {
        self.traces as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reasons: Vec<String> = self
            .unsupported
            .iter()
            .map(|(r, n)| format!("{r}: {n}"))
            .collect();
        write!(
            f,
            "replay {} [{}]: {} traces, {} followed to the end ({} steps equal in all); unsupported {}{}; divergences {}; broken {}; {:.2} s ({:.2} s making traces), {:.0} traces/s",
            self.source,
            self.store,
            self.traces,
            self.conforming,
            self.steps,
            self.unsupported_total(),
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            },
            self.diverged,
            self.broken.len(),
            self.elapsed.as_secs_f64(),
            self.export.as_secs_f64(),
            self.rate()
        )
    }
}
