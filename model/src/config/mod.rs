//! Named configurations: the sizes, faults and features of one exhaustive check.
//!
//! Every mechanism is a switch so that small configurations stay exhaustively checkable: a
//! configuration turns on only what it means to exercise. The `ci` set is what the tests pin
//! and CI runs (every property, every fault, each in some configuration); `large` ones are
//! run by hand (`check <name>`), with their measured sizes in the README.

use crate::clock::Scheme;
use crate::mutation::Mutation;
use crate::ring::Ring;
use crate::value::Key;
use serde::{Deserialize, Serialize};
use std::fmt;

pub mod overrides;
pub use overrides::Overrides;

/// One operation of a client's script; serialized as on the command line (`get0`, `put1`,
/// `blind0`, `del1`).
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Op {
    /// Read the key (and remember its context).
    Get(Key),
    /// Write with the context of the client's last get of the key (blind if none).
    Put(Key),
    /// Write with an empty context: concurrent with everything.
    Blind(Key),
    /// Delete with the context of the client's last get of the key.
    Delete(Key),
}

impl Op {
    /// The key the operation is on.
    pub fn key(self) -> Key {
        match self {
            Op::Get(k) | Op::Put(k) | Op::Blind(k) | Op::Delete(k) => k,
        }
    }

    /// Parses `get0`, `put1`, `blind0`, `del0`.
    pub fn parse(s: &str) -> Option<Op> {
        let (name, key) = s.split_at(s.find(|c: char| c.is_ascii_digit())?);
        let key: Key = key.parse().ok()?;
        Some(match name {
            "get" => Op::Get(key),
            "put" => Op::Put(key),
            "blind" => Op::Blind(key),
            "del" => Op::Delete(key),
            _ => return None,
        })
    }
}

impl TryFrom<String> for Op {
    type Error = String;
    fn try_from(s: String) -> Result<Op, String> {
        Op::parse(&s).ok_or_else(|| format!("bad operation {s:?}"))
    }
}

impl From<Op> for String {
    fn from(op: Op) -> String {
        op.to_string()
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Get(k) => write!(f, "get{k}"),
            Op::Put(k) => write!(f, "put{k}"),
            Op::Blind(k) => write!(f, "blind{k}"),
            Op::Delete(k) => write!(f, "del{k}"),
        }
    }
}

/// What every actor needs to know about the configuration (copied into each actor).
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub struct Settings {
    /// The ring and replication factor `N`.
    pub ring: Ring,
    /// Replies a get waits for.
    pub r: u8,
    /// Durable stores a put waits for.
    pub w: u8,
    /// How many nodes of a key's preference list a client may choose as coordinator (ignored
    /// with `forwarding`, where a client may choose any server).
    pub coordinators: u8,
    /// A server outside a key's preference list forwards a put to the first node of the list
    /// and relays its answer; clients then choose any server as coordinator.
    pub forwarding: bool,
    /// The causality scheme.
    pub scheme: Scheme,
    /// Sloppy quorum with hinted handoff.
    pub sloppy: bool,
    /// Read repair after gets.
    pub read_repair: bool,
    /// Anti-entropy between replicas.
    pub anti_entropy: bool,
    /// Reaping of tombstones once all N replicas hold them.
    pub reap: bool,
    /// Forgetting a reaped key's history (the node's `core/forget.rs`): the key's first
    /// unsuspected primary runs rounds asking every server for its clock of the key and
    /// whether it holds (or may just have handed off) a hint; two agreeing rounds, the second
    /// starting once the grace passed, and every primary still holding exactly that history
    /// removes the key. Needs reaping, and a network that neither drops nor duplicates (the
    /// grace is stated over messages in flight, see `model.rs`).
    pub forget: bool,
    /// How many forgetting rounds a server starts per key and incarnation (bounds the space;
    /// the node retries for ever).
    pub forget_rounds: u8,
    /// Clients give up on a request after a timeout (needed when requests or replies can be
    /// dropped; without drops every message arrives, if need be after its receiver recovers).
    pub client_timeouts: bool,
    /// Every coordinated or forwarded request has its own deadline (a `Deadline` timer): an
    /// unanswered request then fails (a put may first go sloppy), suspecting the silent
    /// replicas. Off in fault-free configurations to keep them small; a deadline is then never
    /// needed.
    pub timeouts: bool,
    /// Servers remember, durably, the last request of each client they coordinated or
    /// forwarded, so a duplicated request is executed once. What it models: a client's
    /// request travels once over its TCP connection (HTTP), so stateright duplicating a client
    /// request is not a fault the node sees, and a node's transport may resend a `Forward`,
    /// which must also execute once (deduplicated by the client's request id, like a put).
    /// Only needed, and only on, when the network duplicates.
    pub dedup: bool,
    /// The operator's faults of wiping or restoring a data directory can happen, so servers
    /// keep a backup, compare generations at a start and record the dots they issue
    /// (`restore.rs`; set from `Config::restores`).
    pub restore: bool,
    /// Bounded loss: each server may lose at most this many incoming `Replicate` and `Repair`
    /// messages, which ones chosen nondeterministically (0: none; the network itself stays
    /// non-lossy, so runs still end and convergence is checked).
    pub lose: u8,
    /// A deliberate bug, if any.
    pub mutation: Option<Mutation>,
}

impl Settings {
    /// `servers` servers, `N`/`R`/`W` as given, one coordinator, DVVSets, every optional
    /// mechanism and fault handling off: the base that configurations switch features on from.
    pub fn plain(servers: u8, n: u8, r: u8, w: u8) -> Settings {
        Settings {
            ring: Ring { servers, n },
            r,
            w,
            coordinators: 1,
            forwarding: false,
            scheme: Scheme::Dvv,
            sloppy: false,
            read_repair: false,
            anti_entropy: false,
            reap: false,
            forget: false,
            forget_rounds: 2,
            client_timeouts: false,
            timeouts: false,
            dedup: false,
            restore: false,
            lose: 0,
            mutation: None,
        }
    }

    /// Whether the deliberate bug `m` is switched on.
    pub fn mutated(&self, m: Mutation) -> bool {
        self.mutation == Some(m)
    }
}

/// A complete, named configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The name on the command line.
    pub name: String,
    /// What the actors need.
    pub settings: Settings,
    /// One script per client.
    pub scripts: Vec<Vec<Op>>,
    /// The network may drop messages.
    pub lossy: bool,
    /// The network may deliver a message more than once.
    pub duplicating: bool,
    /// How many server crashes a run may contain in total.
    pub crashes: u8,
    /// How many times in total an operator may wipe a server's data directory or restore it
    /// from its backup (`restore.rs`; switches `Settings::restore` on).
    pub restores: u8,
    /// At most this many messages in flight, if set. Spaces are finite without it (scripts and
    /// crashes are bounded, anti-entropy and handoff only follow changes); a bound prunes
    /// runs, and a pruned state looks terminal to `Eventually`, so CI configurations set none.
    pub max_network: Option<usize>,
}

impl Config {
    /// Whether the run can lose nothing: no crash, no drop, no sloppy write. With `R + W > N`
    /// this is when a get must see every put acknowledged before it started.
    pub fn strict_quorum(&self) -> bool {
        let s = &self.settings;
        s.r + s.w > s.ring.n && self.crashes == 0 && !s.sloppy
    }

    /// Whether a quiescent state must be converged: every message is eventually delivered,
    /// and no directory is wiped or restored (refilling one is anti-entropy's periodic work,
    /// which the model's change-driven push does not do; the node's tests show it).
    pub fn converges(&self) -> bool {
        !self.lossy && !self.duplicating && self.restores == 0
    }

    /// Number of servers.
    pub fn servers(&self) -> usize {
        usize::from(self.settings.ring.servers)
    }

    /// Keys used by the scripts.
    pub fn keys(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = self.scripts.iter().flatten().map(|op| op.key()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// A one-line summary: sizes, causality scheme, scripts, faults and features.
    pub fn describe(&self) -> String {
        let c = self;
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
            (s.forwarding, "forwarding"),
            (s.sloppy, "sloppy"),
            (s.read_repair, "read-repair"),
            (s.anti_entropy, "anti-entropy"),
            (s.reap, "reap"),
            (s.forget, "forget"),
        ] {
            if on {
                feats.push(name.to_string());
            }
        }
        if c.crashes > 0 {
            feats.push(format!("crashes={}", c.crashes));
        }
        if c.restores > 0 {
            feats.push(format!("restores={}", c.restores));
        }
        if s.lose > 0 {
            feats.push(format!("lose={}", s.lose));
        }
        if let Some(m) = s.mutation {
            feats.push(format!("MUTATION={m:?}"));
        }
        format!(
            "{}: {} servers, N={} R={} W={}, scheme {:?}, coordinators {}, clients [{}], {}",
            c.name,
            s.ring.servers,
            s.ring.n,
            s.r,
            s.w,
            s.scheme,
            s.coordinators,
            scripts.join(" | "),
            if feats.is_empty() {
                "no faults".into()
            } else {
                feats.join(" ")
            }
        )
    }

    /// Checks the configuration is one the model supports.
    pub fn validate(&self) -> Result<(), String> {
        let s = &self.settings;
        let n = s.ring.n;
        if !(2..=5).contains(&s.ring.servers) || n == 0 || n > s.ring.servers {
            return Err(format!(
                "need 2..=5 servers and 1 <= N <= servers, got {s:?}"
            ));
        }
        if s.r == 0 || s.r > n || s.w == 0 || s.w > n {
            return Err(format!("R and W must be within 1..=N={n}"));
        }
        if s.coordinators == 0 || s.coordinators > n {
            return Err("coordinators must be within 1..=N".into());
        }
        if self.scripts.is_empty() || self.scripts.len() > 4 {
            return Err("need 1 to 4 clients".into());
        }
        if self.keys().iter().any(|&k| k >= s.ring.servers) {
            return Err("keys must be below the number of servers".into());
        }
        if s.reap && s.scheme == Scheme::Classic {
            return Err("reaping needs the DVVSet's causal context".into());
        }
        if s.forget && (!s.reap || self.lossy || self.duplicating) {
            // The grace is the guarantee that every message queued before a round is gone by
            // the next: the model tracks messages in flight, which drops and duplicates
            // would falsify (and the node's lifetime bounds both).
            return Err(
                "forgetting needs reaping and a network that neither drops nor duplicates".into(),
            );
        }
        if s.forget && !(1..=7).contains(&s.forget_rounds) {
            return Err("forget rounds must be within 1..=7".into());
        }
        if s.restore && s.scheme == Scheme::Classic {
            return Err("restores are checked with the DVVSet's dots".into());
        }
        if s.reap && n < 2 {
            // The history learns of a reap from its messages to the other primaries.
            return Err("reaping needs N >= 2".into());
        }
        Ok(())
    }
}

fn script(ops: &[&str]) -> Vec<Op> {
    ops.iter()
        .map(|s| Op::parse(s).unwrap_or_else(|| panic!("bad op {s}")))
        .collect()
}

struct Builder(Config);

impl Builder {
    fn new(name: &str, servers: u8, n: u8, r: u8, w: u8, clients: &[&[&str]]) -> Builder {
        Builder(Config {
            name: name.into(),
            settings: Settings::plain(servers, n, r, w),
            scripts: clients.iter().map(|c| script(c)).collect(),
            lossy: false,
            duplicating: false,
            crashes: 0,
            restores: 0,
            max_network: None,
        })
    }
    fn with(mut self, f: impl FnOnce(&mut Config)) -> Builder {
        f(&mut self.0);
        self
    }
    fn done(mut self) -> Config {
        let c = &mut self.0;
        c.settings.client_timeouts = c.lossy;
        c.settings.timeouts |= c.settings.client_timeouts || c.settings.sloppy;
        c.settings.dedup = c.duplicating;
        c.settings.restore = c.restores > 0;
        self.0
    }
}

/// The configurations CI checks exhaustively (pinned in `tests/`).
pub fn ci() -> Vec<Config> {
    vec![
        // The lost update of Dynamo's clock: two blind writes through one coordinator.
        Builder::new("classic", 3, 3, 1, 1, &[&["blind0"], &["blind0"]])
            .with(|c| c.settings.scheme = Scheme::Classic)
            .done(),
        // A write and a read through different coordinators: R + W > N makes the read see it.
        Builder::new("quorum", 3, 3, 2, 2, &[&["blind0"], &["get0"]])
            .with(|c| c.settings.coordinators = 2)
            .done(),
        // Three clients: two concurrent writers and a reader, through two coordinators.
        Builder::new("three", 3, 3, 2, 2, &[&["blind0"], &["blind0"], &["get0"]])
            .with(|c| c.settings.coordinators = 2)
            .done(),
        // The same scenario with DVVSets, plus reads: siblings instead of a lost write.
        Builder::new(
            "siblings",
            3,
            3,
            2,
            2,
            &[&["blind0", "get0"], &["blind0", "get0"]],
        )
        .done(),
        // Read-modify-write and delete over a network that duplicates and reorders.
        Builder::new(
            "duplicating",
            3,
            2,
            1,
            2,
            &[&["get0", "put0"], &["get0", "del0"]],
        )
        .with(|c| c.duplicating = true)
        .done(),
        // The same over a network that drops: timeouts, failed puts, clients giving up.
        Builder::new("lossy", 3, 2, 1, 2, &[&["get0", "put0"], &["blind0"]])
            .with(|c| c.lossy = true)
            .done(),
        // A crash and recovery anywhere, with a quorum read afterwards.
        Builder::new("crash", 3, 3, 2, 2, &[&["put0", "get0"], &["blind0"]])
            .with(|c| {
                c.crashes = 1;
                c.settings.coordinators = 2;
            })
            .done(),
        // Every fault at once: drops, duplicates, a crash.
        Builder::new("chaos", 3, 2, 1, 2, &[&["blind0"], &["blind0"]])
            .with(|c| {
                c.lossy = true;
                c.duplicating = true;
                c.crashes = 1;
            })
            .done(),
        // Sloppy quorum and hinted handoff on four servers, with a detector that may be wrong.
        Builder::new("sloppy", 4, 2, 1, 2, &[&["blind0"], &["blind0"]])
            .with(|c| {
                c.settings.sloppy = true;
                c.crashes = 1;
            })
            .done(),
        // Read repair with R < N so stale replicas answer.
        Builder::new("repair", 3, 3, 2, 1, &[&["blind0", "get0"], &["get0"]])
            .with(|c| c.settings.read_repair = true)
            .done(),
        // A delete, its tombstone reaped, anti-entropy between replicas.
        Builder::new(
            "reap",
            3,
            2,
            1,
            2,
            &[&["blind0", "get0", "del0"], &["blind0"]],
        )
        .with(|c| {
            c.settings.reap = true;
            c.settings.anti_entropy = true;
        })
        .done(),
        // W = 1 leaves replicas behind; anti-entropy brings them up; R = 3 reads meanwhile.
        Builder::new("entropy", 3, 3, 3, 1, &[&["blind0"], &["blind0"]])
            .with(|c| c.settings.anti_entropy = true)
            .done(),
        // W = 1 acknowledges a put its other replica may then lose (at most one replication
        // message per server): only anti-entropy brings that replica up, so switched off,
        // convergence fails.
        Builder::new("entropy-loss", 3, 2, 1, 1, &[&["blind0"], &["blind0"]])
            .with(|c| {
                c.settings.anti_entropy = true;
                c.settings.lose = 1;
            })
            .done(),
        // Forwarding: clients pick any server; the one outside the preference list forwards
        // puts to the list's first node, and coordinates gets without a local copy, repairing
        // both replicas.
        Builder::new("forward", 3, 2, 1, 2, &[&["blind0"], &["get0", "put0"]])
            .with(|c| {
                c.settings.forwarding = true;
                c.settings.read_repair = true;
            })
            .done(),
    ]
}

/// The configurations of forgetting (`forget`), CI's and the larger ones.
pub fn forgetting() -> Vec<Config> {
    vec![
        // A write, a read and a delete through one coordinator, W = 1: the delete is reaped
        // and its history forgotten while the write's copy to the other primary may still be
        // in flight; anti-entropy pushes what changes.
        Builder::new("forget", 3, 2, 1, 1, &[&["blind0", "get0", "del0"]])
            .with(|c| {
                c.settings.reap = true;
                c.settings.forget = true;
                c.settings.anti_entropy = true;
            })
            .done(),
    ]
}

/// The configuration of the operator's faults: a server's data directory wiped, or restored
/// from the backup taken when it last stopped (`restore.rs`).
pub fn restoring() -> Vec<Config> {
    vec![
        // Two clients writing through either server, W = N = 2: a crash lets the backup hold
        // a write, a wipe or a restore then takes later ones out of the directory, and the
        // next write through that server must not reuse their dots.
        Builder::new("restore", 2, 2, 1, 2, &[&["blind0", "blind0"], &["blind0"]])
            .with(|c| {
                c.crashes = 1;
                c.restores = 1;
                c.settings.coordinators = 2;
            })
            .done(),
    ]
}

/// The configuration whose exhaustive export the conformance crate replays: three servers,
/// two clients, a network that drops, a crash, read repair and forwarding (its full check is
/// run by hand; `tests/export.rs` pins its export).
pub fn replay() -> Config {
    Builder::new("replay", 3, 2, 1, 2, &[&["blind0", "get0"], &["get0"]])
        .with(|c| {
            c.lossy = true;
            c.crashes = 1;
            c.settings.read_repair = true;
            c.settings.forwarding = true;
        })
        .done()
}

/// A configuration for the conformance crate's walks: `W = N = 3` over a duplicating
/// network, where an acknowledgement counted twice would answer a put before three servers
/// hold it (with `W < N` the coordinator's own copy hides a double count).
pub fn acks() -> Config {
    Builder::new("acks", 3, 3, 1, 3, &[&["blind0"], &["blind0", "get0"]])
        .with(|c| {
            c.duplicating = true;
            c.settings.coordinators = 2;
        })
        .done()
}

/// Larger configurations, run by hand; their sizes are in the README.
pub fn large() -> Vec<Config> {
    vec![
        // Read-modify-write and delete under message loss.
        Builder::new(
            "lossy-rmw",
            3,
            2,
            1,
            2,
            &[&["get0", "put0"], &["get0", "del0"]],
        )
        .with(|c| c.lossy = true)
        .done(),
        // The same with a crash.
        Builder::new(
            "lossy-crash",
            3,
            2,
            1,
            2,
            &[&["get0", "put0"], &["get0", "del0"]],
        )
        .with(|c| {
            c.lossy = true;
            c.crashes = 1;
        })
        .done(),
        // The same with two crashes: the configuration of more than 10^7 states.
        Builder::new("large", 3, 2, 1, 2, &[&["get0", "put0"], &["get0", "del0"]])
            .with(|c| {
                c.lossy = true;
                c.crashes = 2;
            })
            .done(),
    ]
}

/// Every named configuration.
pub fn all() -> Vec<Config> {
    let mut all = ci();
    all.extend(forgetting());
    all.extend(restoring());
    all.extend(large());
    all.push(replay());
    all.push(acks());
    all
}

/// The configuration called `name`.
pub fn named(name: &str) -> Option<Config> {
    all().into_iter().find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_configuration_is_valid_and_unique() {
        let all = all();
        for c in &all {
            c.validate().unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(all.iter().filter(|d| d.name == c.name).count(), 1);
        }
    }

    #[test]
    fn ops_parse_and_print_back() {
        for s in ["get0", "put1", "blind0", "del1"] {
            assert_eq!(Op::parse(s).map(|o| o.to_string()).as_deref(), Some(s));
        }
        assert_eq!(Op::parse("frob0"), None);
        assert_eq!(Op::parse("get"), None);
    }

    #[test]
    fn strict_quorum_needs_intersection_and_no_loss() {
        let c = named("entropy").unwrap_or_else(|| unreachable!());
        assert!(c.strict_quorum());
        let mut d = c.clone();
        d.settings.r = 1;
        assert!(!d.strict_quorum());
        let mut e = c;
        e.crashes = 1;
        assert!(!e.strict_quorum());
    }
}
