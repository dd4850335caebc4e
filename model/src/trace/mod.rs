//! Serializable traces: runs of the model as steps the conformance crate replays against the
//! node's core.
//!
//! A trace is self-contained, so that a replay needs nothing of this crate but the types: the
//! configuration's settings (sizes, features, faults, the clients' scripts), the placement of
//! every key it uses (the node builds its ring from it), where the trace came from, the
//! servers' stores before the first step, and the steps. stateright's actions are not
//! serializable, so a path is translated into [`Step`]s ([`build`]): each is one event — a
//! client issuing a request to the coordinator it chose, a message delivered or dropped, a
//! timer firing, a server crashing or recovering — with what the model observed right after
//! it: the messages the step sent, the reply a client received, and every server's saved
//! store. Actors are numbered as in the model: servers `0..servers`, then clients.
//!
//! Traces are written as JSON lines, one trace per line, versioned by `format` and `version`
//! (see the README for the fields). Three sources produce them, each a library function the
//! conformance crate calls in-process: an exhaustive breadth-first exploration to a depth
//! ([`exhaustive`]), seeded random walks ([`walk`]), and the checker's counterexamples and
//! examples ([`crate::check`]). [`render`] prints a trace for people.

use crate::actor::Timer;
use crate::clock::{Clock, Scheme};
use crate::config::{Config, Op, Settings};
use crate::dvv::NodeId;
use crate::msg::Msg;
use crate::mutation::Mutation;
use crate::ring::Ring;
use crate::value::{Key, RequestId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

pub mod build;
pub mod exhaustive;
pub mod render;
pub mod walk;

/// The value of every trace's `format` field.
pub const FORMAT: &str = "shoal-trace";
/// The version of the format this crate writes and reads.
pub const VERSION: u32 = 1;

/// A message with its endpoints (actor indices: servers `0..servers`, then clients).
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct Envelope {
    /// Sender.
    pub from: usize,
    /// Receiver.
    pub to: usize,
    /// The message.
    pub msg: Msg,
}

/// What happened in one step.
#[derive(Clone, Debug, Eq, Hash, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A client sent its next operation to the coordinator it chose.
    Request {
        /// The client.
        client: usize,
        /// The chosen coordinator.
        coordinator: usize,
        /// The script operation.
        op: Op,
        /// The request message (key, value, context as the model abstracts it).
        msg: Msg,
    },
    /// A message was delivered.
    Deliver(Envelope),
    /// A message was lost (dropped by the network, or lost by its receiver under `lose`).
    Drop(Envelope),
    /// A timer fired.
    Timer {
        /// The actor whose timer fired.
        node: usize,
        /// Which timer.
        timer: Timer,
        /// For a request's deadline, the request it belongs to (absent otherwise).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<RequestId>,
    },
    /// A server crashed: volatile state and timers are lost, its saved store is kept.
    Crash {
        /// The server.
        node: usize,
    },
    /// A server restarted from its saved store.
    Recover {
        /// The server.
        node: usize,
    },
    /// The operator stopped a running server, replaced its data directory by its backup (or
    /// by nothing: `wipe`) and started it again (`restore`).
    Restore {
        /// The server.
        node: usize,
        /// The directory was wiped rather than restored.
        wipe: bool,
    },
}

/// A server's durable state as observed after a step.
#[derive(Clone, Debug, Eq, Hash, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    /// The server's index.
    pub node: usize,
    /// Whether it is down.
    pub crashed: bool,
    /// Stored clocks per key.
    pub data: BTreeMap<Key, Clock>,
    /// Hints held: `(owner, key, clock)`.
    pub hints: Vec<(NodeId, Key, Clock)>,
}

/// What the model observed right after a step.
#[derive(Clone, Debug, Eq, Hash, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// Messages the step sent: the multiset difference of the envelopes in flight after and
    /// before the step, the delivered one excepted (a message sent twice appears twice; on a
    /// duplicating network, which is a set, one already in flight does not appear).
    pub sent: Vec<Envelope>,
    /// The reply a client received in this step, if any.
    pub reply: Option<Envelope>,
    /// Every server's store.
    pub replicas: Vec<Replica>,
}

/// One step of a trace.
#[derive(Clone, Debug, Eq, Hash, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The event.
    pub event: Event,
    /// What was observed after it.
    pub observed: Observed,
}

/// Everything a trace's configuration sets, flat (the model's `Settings` and `Config`).
#[derive(Clone, Debug, Eq, Hash, PartialEq, Serialize, Deserialize)]
pub struct TraceSettings {
    /// Servers (actors `0..servers`).
    pub servers: u8,
    /// Replicas per key.
    pub n: u8,
    /// Read quorum.
    pub r: u8,
    /// Write quorum.
    pub w: u8,
    /// The causality scheme.
    pub scheme: Scheme,
    /// How many nodes of the preference list a client may choose (without forwarding).
    pub coordinators: u8,
    /// Non-replicas forward puts; clients choose any server.
    pub forwarding: bool,
    /// Sloppy quorum with hinted handoff.
    pub sloppy: bool,
    /// Read repair after gets.
    pub read_repair: bool,
    /// Anti-entropy between replicas.
    pub anti_entropy: bool,
    /// Tombstone reaping.
    pub reap: bool,
    /// Forgetting reaped histories (absent in traces written before it existed: `false`).
    #[serde(default)]
    pub forget: bool,
    /// Forgetting rounds per key and incarnation (absent: 2).
    #[serde(default = "default_forget_rounds")]
    pub forget_rounds: u8,
    /// Per-request deadlines.
    pub timeouts: bool,
    /// Clients give up on a request after a timeout.
    pub client_timeouts: bool,
    /// Servers execute a client's request once.
    pub dedup: bool,
    /// Bounded loss per server.
    pub lose: u8,
    /// The network drops messages.
    pub lossy: bool,
    /// The network duplicates messages.
    pub duplicating: bool,
    /// Server crashes allowed in all.
    pub crashes: u8,
    /// Wipes or restores of a data directory allowed in all.
    #[serde(default)]
    pub restores: u8,
    /// Messages in flight allowed, if bounded.
    pub max_network: Option<usize>,
    /// A deliberate bug, if any.
    pub mutation: Option<Mutation>,
    /// One script per client (clients are actors `servers..`).
    pub scripts: Vec<Vec<Op>>,
}

impl TraceSettings {
    /// The settings of `cfg`.
    pub fn of(cfg: &Config) -> TraceSettings {
        let s = &cfg.settings;
        TraceSettings {
            servers: s.ring.servers,
            n: s.ring.n,
            r: s.r,
            w: s.w,
            scheme: s.scheme,
            coordinators: s.coordinators,
            forwarding: s.forwarding,
            sloppy: s.sloppy,
            read_repair: s.read_repair,
            anti_entropy: s.anti_entropy,
            reap: s.reap,
            forget: s.forget,
            forget_rounds: s.forget_rounds,
            timeouts: s.timeouts,
            client_timeouts: s.client_timeouts,
            dedup: s.dedup,
            lose: s.lose,
            lossy: cfg.lossy,
            duplicating: cfg.duplicating,
            crashes: cfg.crashes,
            restores: cfg.restores,
            max_network: cfg.max_network,
            mutation: s.mutation,
            scripts: cfg.scripts.clone(),
        }
    }

    /// The configuration these settings describe, under `name`.
    pub fn config(&self, name: &str) -> Config {
        Config {
            name: name.into(),
            settings: Settings {
                ring: Ring {
                    servers: self.servers,
                    n: self.n,
                },
                r: self.r,
                w: self.w,
                coordinators: self.coordinators,
                forwarding: self.forwarding,
                scheme: self.scheme,
                sloppy: self.sloppy,
                read_repair: self.read_repair,
                anti_entropy: self.anti_entropy,
                reap: self.reap,
                forget: self.forget,
                forget_rounds: self.forget_rounds,
                client_timeouts: self.client_timeouts,
                timeouts: self.timeouts,
                dedup: self.dedup,
                restore: self.restores > 0,
                lose: self.lose,
                mutation: self.mutation,
            },
            scripts: self.scripts.clone(),
            lossy: self.lossy,
            duplicating: self.duplicating,
            crashes: self.crashes,
            restores: self.restores,
            max_network: self.max_network,
        }
    }
}

fn default_forget_rounds() -> u8 {
    2
}

/// Where one key lives: its preference list and, in ring order, its fallbacks.
#[derive(Clone, Debug, Eq, Hash, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The key.
    pub key: Key,
    /// The `N` servers that replicate it, the first being where forwarded puts go.
    pub preference: Vec<NodeId>,
    /// The other servers in ring order: stand-ins for sloppy quorum.
    pub fallbacks: Vec<NodeId>,
}

impl Placement {
    /// The placement of every key `cfg`'s scripts use.
    pub fn of(cfg: &Config) -> Vec<Placement> {
        let ring = cfg.settings.ring;
        cfg.keys()
            .into_iter()
            .map(|key| Placement {
                key,
                preference: ring.preference(key),
                fallbacks: ring.fallbacks(key),
            })
            .collect()
    }
}

/// How a trace was produced.
#[derive(Clone, Debug, Eq, Hash, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A path of the breadth-first exploration to `depth` (see [`exhaustive`]).
    Exhaustive {
        /// The exploration's depth.
        depth: usize,
    },
    /// A random walk from `seed` (see [`walk`]).
    Walk {
        /// The walk's seed: the same seed gives the same trace.
        seed: u64,
    },
    /// The checker's counterexample to a property.
    Counterexample {
        /// The property.
        property: String,
    },
    /// The checker's example of a "sometimes" property.
    Example {
        /// The property.
        property: String,
    },
}

/// A run of the model: its configuration, placement and origin, and its steps.
#[derive(Clone, Debug, Eq, Hash, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format's version, [`VERSION`].
    pub version: u32,
    /// The configuration's name.
    pub config: String,
    /// The configuration's settings.
    pub settings: TraceSettings,
    /// Where each key used lives.
    pub placement: Vec<Placement>,
    /// How the trace was produced.
    pub source: Source,
    /// The servers' stores before the first step.
    pub initial: Vec<Replica>,
    /// The steps.
    pub steps: Vec<Step>,
}

impl Trace {
    /// The trace as one line of JSON (no newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Reads a trace from JSON, checking its format and version.
    pub fn from_json(line: &str) -> Result<Trace, String> {
        let t: Trace = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if t.format != FORMAT || t.version != VERSION {
            return Err(format!(
                "not a {FORMAT} version {VERSION} trace: {} version {}",
                t.format, t.version
            ));
        }
        Ok(t)
    }

    /// The property a counterexample or example is about.
    pub fn property(&self) -> Option<&str> {
        match &self.source {
            Source::Counterexample { property } | Source::Example { property } => Some(property),
            _ => None,
        }
    }

    /// Writes the trace as JSON lines into `dir`, named after its configuration and property
    /// (`<config>-<property>.jsonl`, non-alphanumerics in the property replaced by `-`), and
    /// returns the file's path.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let name = self
            .property()
            .unwrap_or("trace")
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        let file = dir.join(format!("{}-{name}.jsonl", self.config));
        write_lines(&file, std::slice::from_ref(self))?;
        Ok(file)
    }
}

/// Writes traces to `file` as JSON lines, one trace per line.
pub fn write_lines<'a>(
    file: &Path,
    traces: impl IntoIterator<Item = &'a Trace>,
) -> std::io::Result<usize> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
    let mut n = 0;
    for t in traces {
        out.write_all(t.to_json().as_bytes())?;
        out.write_all(b"\n")?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

/// Reads the traces of a JSON lines file (empty lines are skipped).
pub fn read_lines(file: &Path) -> Result<Vec<Trace>, String> {
    let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(Trace::from_json(&line).map_err(|e| format!("line {}: {e}", i + 1))?);
    }
    Ok(out)
}
