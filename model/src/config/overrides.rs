//! Command-line overrides of a named configuration.
//!
//! A check is always of a named configuration, so that its counts can be compared with the
//! pinned ones; the overrides change parts of it for an experiment. Switches that follow from
//! others (client timeouts from drops, deduplication from duplicates, coordinator timeouts from
//! either or from sloppy quorum) are derived again after the overrides, as for the named
//! configurations, so an override cannot leave them inconsistent.

use super::{Config, Op};
use crate::clock::Scheme;
use crate::mutation::Mutation;
use anyhow::{bail, Context, Result};
use clap::Args;

/// A named configuration and flags that override parts of it.
#[derive(Clone, Debug, Args)]
pub struct Overrides {
    /// The named configuration (see `list`).
    pub config: String,
    /// Number of servers.
    #[arg(long)]
    pub servers: Option<u8>,
    /// Replicas per key.
    #[arg(long)]
    pub n: Option<u8>,
    /// Read quorum.
    #[arg(long)]
    pub r: Option<u8>,
    /// Write quorum.
    #[arg(long)]
    pub w: Option<u8>,
    /// A client script, e.g. `get0,put0` (repeat the flag for more clients; replaces all).
    #[arg(long = "ops")]
    pub ops: Vec<String>,
    /// Coordinators a client may choose among (first nodes of the preference list).
    #[arg(long)]
    pub coordinators: Option<u8>,
    /// Servers outside a key's preference list forward puts; clients choose any server
    /// (`=false` to turn off).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub forwarding: Option<bool>,
    /// The causality scheme (`--clock` is an alias).
    #[arg(long, value_enum, alias = "clock")]
    pub scheme: Option<Scheme>,
    /// The network drops messages (`--lossy false` to turn off).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub lossy: Option<bool>,
    /// The network duplicates messages (`--duplicating false` to turn off).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub duplicating: Option<bool>,
    /// Total server crashes allowed.
    #[arg(long)]
    pub crashes: Option<u8>,
    /// Total wipes or restores from backup of a server's data directory allowed.
    #[arg(long)]
    pub restores: Option<u8>,
    /// Sloppy quorum with hinted handoff (`=false` to turn off).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub sloppy: Option<bool>,
    /// Read repair (`=false` to turn off).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub read_repair: Option<bool>,
    /// Anti-entropy (`=false` to turn off).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub anti_entropy: Option<bool>,
    /// Coordinator timeouts (implied by drops and sloppy quorum).
    #[arg(long)]
    pub timeouts: bool,
    /// Tombstone reaping (`=false` to turn off).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub reap: Option<bool>,
    /// Forgetting reaped histories (`=false` to turn off).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub forget: Option<bool>,
    /// Forgetting rounds a server starts per key and incarnation.
    #[arg(long)]
    pub forget_rounds: Option<u8>,
    /// Maximum messages in flight.
    #[arg(long)]
    pub max_network: Option<usize>,
    /// Bounded loss: each server may lose at most this many incoming `Replicate` and `Repair`
    /// messages (the network stays non-lossy).
    #[arg(long)]
    pub lose: Option<u8>,
    /// Introduce a deliberate bug.
    #[arg(long, value_enum)]
    pub mutation: Option<Mutation>,
}

impl Overrides {
    /// The named configuration with the overrides applied, its derived switches recomputed,
    /// validated.
    pub fn apply(&self) -> Result<Config> {
        let mut c = super::named(&self.config)
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
        if let Some(v) = self.scheme {
            s.scheme = v;
        }
        s.forwarding = self.forwarding.unwrap_or(s.forwarding);
        s.sloppy = self.sloppy.unwrap_or(s.sloppy);
        s.read_repair = self.read_repair.unwrap_or(s.read_repair);
        s.anti_entropy = self.anti_entropy.unwrap_or(s.anti_entropy);
        s.reap = self.reap.unwrap_or(s.reap);
        s.forget = self.forget.unwrap_or(s.forget);
        if let Some(v) = self.forget_rounds {
            s.forget_rounds = v;
        }
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
        if let Some(v) = self.restores {
            c.restores = v;
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
        c.settings.restore = c.restores > 0;
        c.settings.timeouts |= self.timeouts || c.settings.client_timeouts || c.settings.sloppy;
        if let Err(e) = c.validate() {
            bail!("invalid configuration: {e}");
        }
        Ok(c)
    }
}
