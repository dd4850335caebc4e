//! The properties checked, each stated over a state of the whole system plus its ghost history.
//!
//! *Always* properties are safety: every reachable state satisfies them. *Sometimes* properties
//! prove the interesting states are reached, so the safety properties are not vacuous.
//! Convergence is checked twice: as stateright's `Eventually` (judged at terminal states) and,
//! more robustly, as an `Always` property "a quiescent state is converged", where quiescent
//! means the clients are done, no server is down, no timer is set and no message in flight
//! would change anything — exactly the terminal states of a configuration whose crash budget
//! is spent.

use crate::actor::{State, Wiring};
use crate::clock::{Clock, Scheme};
use crate::history::History;
use crate::model::ShoalModel;
use crate::server::Store;
use crate::value::Value;
use stateright::actor::{ActorModelAction, ActorModelState};
use stateright::{Expectation, Model};
use std::collections::BTreeSet;

/// A state of the model.
pub type SysState = ActorModelState<Wiring, History>;

/// What each server would have after a crash right now: its in-memory store if up, else the
/// store it last saved.
pub fn stores(state: &SysState) -> Vec<&Store> {
    static EMPTY: std::sync::OnceLock<Store> = std::sync::OnceLock::new();
    state
        .actor_states
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match &**a {
            State::Server(_) if state.crashed[i] => Some(
                state
                    .actor_storages
                    .get(i)
                    .and_then(Option::as_ref)
                    .unwrap_or_else(|| EMPTY.get_or_init(Store::default)),
            ),
            State::Server(s) => Some(&s.store),
            State::Client(_) => None,
        })
        .collect()
}

/// Every clock held by a replica, a hint or a server-to-server message in flight (or
/// received and held undecided, see `lose`).
fn copies(state: &SysState) -> Vec<&Clock> {
    let mut out = Vec::new();
    for s in stores(state) {
        out.extend(s.data.values());
        out.extend(s.hints.values());
    }
    for env in state.network.iter_deliverable() {
        out.extend(env.msg.carried_all());
    }
    for a in &state.actor_states {
        if let State::Server(s) = &**a {
            if let Some((_, m)) = s.pending.as_deref() {
                out.extend(m.carried_all());
            }
        }
    }
    out
}

/// No acknowledged write is lost: it is on a replica, in a hint or in flight, or a write that
/// is superseded it (transitively; a reaped tombstone still counts).
pub fn no_lost_write(_: &ShoalModel, state: &SysState) -> bool {
    if state.history.acked.is_empty() {
        return true;
    }
    let live: BTreeSet<Value> = copies(state).iter().flat_map(|v| v.values()).collect();
    if state.history.acked.is_subset(&live) {
        return true;
    }
    let covered = state.history.superseded_by(&live);
    state
        .history
        .acked
        .iter()
        .all(|a| live.contains(a) || covered.contains(a))
}

/// No resurrection: a write covered by a history a coordinator decided to forget is never
/// live again anywhere — as a sibling on a replica (live or saved), in a hint, in a
/// server-to-server message that carries a clock someone stores or acts on (read answers
/// included), in a message held undecided, or in what a coordinator holds (a put's clock, a
/// get's answers).
pub fn no_resurrection(_: &ShoalModel, state: &SysState) -> bool {
    let forgotten = &state.history.forgotten;
    if forgotten.is_empty() {
        return true;
    }
    let live = |c: &Clock| c.values().iter().all(|v| !forgotten.contains(v));
    let servers = stores(state).len();
    let stored = stores(state)
        .iter()
        .all(|s| s.data.values().all(live) && s.hints.values().all(live));
    let sent = state
        .network
        .iter_deliverable()
        .all(|env| usize::from(env.dst) >= servers || env.msg.holds().into_iter().all(live));
    let held = state
        .actor_states
        .iter()
        .zip(&state.crashed)
        .all(|(a, down)| {
            let State::Server(s) = &**a else {
                return true;
            };
            let pending = s
                .pending
                .as_deref()
                .is_none_or(|(_, m)| m.holds().into_iter().all(live));
            *down
                || (pending
                    && s.puts.values().all(|p| live(&p.clock))
                    && s.gets.values().all(|g| g.replies.values().all(live)))
        });
    stored && sent && held
}

/// A server that forgot a history never holds exactly it again (checked without read repair,
/// which writes back whatever history it read, as the node's does; a history so brought back
/// is forgotten again later). Anti-entropy in particular does not hand a values-free history
/// to a replica that holds nothing of the key.
pub fn forgotten_stays_forgotten(_: &ShoalModel, state: &SysState) -> bool {
    stores(state).iter().all(|s| {
        s.forgot
            .iter()
            .all(|(k, gone)| s.data.get(k).is_none_or(|c| !gone.contains(c)))
    })
}

/// Sometimes: a server removed a deleted key's history.
pub fn key_forgotten(_: &ShoalModel, state: &SysState) -> bool {
    stores(state).iter().any(|s| !s.forgot.is_empty())
}

/// Siblings are pairwise concurrent: no stored sibling is in another's causal past.
pub fn siblings_concurrent(_: &ShoalModel, state: &SysState) -> bool {
    let h = &state.history;
    copies(state).iter().all(|v| {
        let vals: Vec<Value> = v.values().into_iter().collect();
        if vals.len() < 2 {
            return true;
        }
        vals.iter()
            .all(|&a| vals.iter().all(|&b| a == b || !h.precedes(a, b)))
    })
}

/// No superseded or deleted value comes back: a replica never again holds a sibling it has
/// dropped as superseded.
pub fn nothing_comes_back(_: &ShoalModel, state: &SysState) -> bool {
    stores(state).iter().all(|s| {
        s.data
            .values()
            .all(|v| v.values().iter().all(|x| !s.gone.contains(x)))
    })
}

/// No dot names two writes: no server issued a dot it had issued before for another value
/// (judged as each dot is issued, against the ghost of every dot the server issued, which a
/// wipe or restore does not roll back; `restore` only).
pub fn no_reused_dot(_: &ShoalModel, state: &SysState) -> bool {
    stores(state).iter().all(|s| !s.reissued)
}

/// A server took a fresh identity after finding its directory wiped or restored, and wrote
/// under it.
pub fn fresh_identity_written(_: &ShoalModel, state: &SysState) -> bool {
    stores(state).iter().any(|s| {
        s.floor > 0
            && s.issued
                .keys()
                .any(|(_, (a, _))| crate::dvv::epoch_of(*a) >= s.floor)
    })
}

/// A server's directory was restored from a backup that held some of its own writes, and it
/// wrote again afterwards.
/// (The backup a start keeps is the directory it started on: after a restore, the restored
/// one; its own actors are those of the dots it issued.)
pub fn restored_backup_written(_: &ShoalModel, state: &SysState) -> bool {
    use crate::dvv::{epoch_of, server_of};
    stores(state).iter().any(|s| {
        let Some(me) = s.issued.keys().next().map(|(_, (a, _))| server_of(*a)) else {
            return false;
        };
        let own_old = |a: &u8| server_of(*a) == me && epoch_of(*a) < s.floor;
        s.floor > 0
            && s.backup
                .as_deref()
                .is_some_and(|b| b.data.values().any(|c| c.context().keys().any(own_old)))
            && s.issued.keys().any(|(_, (a, _))| epoch_of(*a) >= s.floor)
    })
}

/// With `R + W > N`, no crash and no sloppy write, a get sent after a put was acknowledged
/// returns that put's value or a successor.
pub fn read_your_acked_writes(_: &ShoalModel, state: &SysState) -> bool {
    !state.history.stale_read
}

/// A put's reply context never covers a write the client did not see: every write whose dot
/// it covers is the new write, one the request's context covered, or one a value of the new
/// clock already superseded (judged as each `PutOk` is sent, see [`History`]).
pub fn reply_covers_only_seen(_: &ShoalModel, state: &SysState) -> bool {
    !state.history.overreach
}

/// A put's reply context covers its own write when the new clock holds no other sibling.
pub fn reply_covers_own_write(_: &ShoalModel, state: &SysState) -> bool {
    !state.history.misses_own
}

/// The largest set of pairwise-concurrent writes among `writes` (brute force: sets are tiny).
fn width(h: &History, writes: &[Value]) -> usize {
    let n = writes.len().min(16);
    (0u32..(1 << n))
        .filter(|mask| {
            let chosen: Vec<Value> = (0..n)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| writes[i])
                .collect();
            chosen
                .iter()
                .all(|&a| chosen.iter().all(|&b| a == b || !h.precedes(a, b)))
        })
        .map(|mask| mask.count_ones() as usize)
        .max()
        .unwrap_or(0)
}

/// With DVVSets a key never holds more siblings than there were concurrent writes to it.
pub fn siblings_bounded(_: &ShoalModel, state: &SysState) -> bool {
    let h = &state.history;
    copies(state).iter().all(|v| {
        let vals = v.values();
        if vals.len() < 2 {
            return true;
        }
        let Some(key) = vals.iter().next().map(|x| x.key) else {
            return true;
        };
        let writes: Vec<Value> = h.writes.keys().filter(|w| w.key == key).copied().collect();
        vals.iter().all(|x| h.writes.contains_key(x)) && vals.len() <= width(h, &writes)
    })
}

/// Whether nothing can happen any more: no client about to send, servers up, no timers, and
/// every message in flight would be ignored by its receiver.
pub fn quiescent(model: &ShoalModel, state: &SysState) -> bool {
    // A client is idle once done, or waiting on a request a crash lost (it then never times
    // out: only drops make clients give up).
    let clients_idle = state.random_choices.iter().all(|r| r.map.is_empty());
    clients_idle
        && !state.crashed.iter().any(|c| *c)
        && state.timers_set.iter().all(|t| t.iter().next().is_none())
        && state.network.iter_deliverable().all(|env| {
            let action = ActorModelAction::Deliver {
                src: env.src,
                dst: env.dst,
                msg: env.msg.clone(),
            };
            model.next_state(state, action).is_none()
        })
}

/// All replicas of every key hold the same clock and no hint is left.
pub fn converged(model: &ShoalModel, state: &SysState) -> bool {
    let cfg = &model.cfg;
    let ring = cfg.settings.ring;
    let stores = stores(state);
    let empty = Clock::empty(cfg.settings.scheme);
    stores.iter().all(|s| s.hints.is_empty())
        && cfg.keys().into_iter().all(|k| {
            let clocks: Vec<&Clock> = ring
                .preference(k)
                .into_iter()
                .map(|n| stores[usize::from(n)].data.get(&k).unwrap_or(&empty))
                .collect();
            clocks.windows(2).all(|w| w[0] == w[1])
        })
}

/// Convergence as a safety property: a quiescent state is converged.
pub fn quiescent_converged(model: &ShoalModel, state: &SysState) -> bool {
    // `converged` first: it is cheap, and `quiescent` tries every message in flight.
    converged(model, state) || !quiescent(model, state)
}

/// Convergence as stateright's liveness property: every run ends quiescent and converged.
pub fn eventually_converged(model: &ShoalModel, state: &SysState) -> bool {
    converged(model, state) && quiescent(model, state)
}

/// Sometimes: a replica holds siblings.
pub fn has_siblings(_: &ShoalModel, state: &SysState) -> bool {
    stores(state)
        .iter()
        .any(|s| s.data.values().any(|v| v.values().len() >= 2))
}

/// Sometimes: a hint reached its owner.
pub fn hint_handed_off(_: &ShoalModel, state: &SysState) -> bool {
    state.history.handed_off
}

/// Sometimes: read repair changed a replica.
pub fn read_repaired(_: &ShoalModel, state: &SysState) -> bool {
    state.history.repaired
}

/// Sometimes: a put failed for want of `W` replicas.
pub fn put_failed(_: &ShoalModel, state: &SysState) -> bool {
    state.history.put_failed
}

/// Sometimes: a put was refused because its context was ahead of its coordinator.
pub fn stale_put_refused(_: &ShoalModel, state: &SysState) -> bool {
    state.history.stale_refused
}

/// Sometimes: a forwarded put was acknowledged to the server that forwarded it.
pub fn forward_acknowledged(_: &ShoalModel, state: &SysState) -> bool {
    state.history.forwarded
}

/// Sometimes: a replica reaped a tombstone.
pub fn tombstone_reaped(_: &ShoalModel, state: &SysState) -> bool {
    stores(state)
        .iter()
        .any(|s| s.data.values().any(Clock::is_reaped))
}

/// A property to check: its expectation, name and condition.
pub type Prop = (
    Expectation,
    &'static str,
    fn(&ShoalModel, &SysState) -> bool,
);

/// Whether two writes can be concurrent: writes from two clients, or a client's write with
/// no context (blind, or before its first get) following another of its writes.
fn may_have_siblings(cfg: &crate::config::Config) -> bool {
    use crate::config::Op;
    let writers = cfg
        .scripts
        .iter()
        .filter(|ops| ops.iter().any(|o| !matches!(o, Op::Get(_))))
        .count();
    let alone = cfg.scripts.iter().any(|ops| {
        let mut wrote = false;
        let mut read = false;
        ops.iter().any(|o| {
            let concurrent =
                wrote && (matches!(o, Op::Blind(_)) || (!read && !matches!(o, Op::Get(_))));
            read |= matches!(o, Op::Get(_));
            wrote |= !matches!(o, Op::Get(_));
            concurrent
        })
    });
    writers >= 2 || alone
}

/// Whether a put's context can be ahead of its coordinator: a client reads, then writes with
/// the context through a coordinator that may differ from the get's (another coordinator, or
/// any server with forwarding: a get is coordinated where it lands, a put by the first
/// primary). DVVSet only.
fn can_be_stale(cfg: &crate::config::Config) -> bool {
    let s = &cfg.settings;
    let rmw = cfg.scripts.iter().any(|ops| {
        ops.iter()
            .skip_while(|o| !matches!(o, crate::config::Op::Get(_)))
            .any(|o| matches!(o, crate::config::Op::Put(_) | crate::config::Op::Delete(_)))
    });
    s.scheme == Scheme::Dvv && rmw && (s.forwarding || s.coordinators >= 2)
}

/// The properties that apply to a configuration (a mechanism switched off has no "sometimes").
pub fn for_config(model: &ShoalModel) -> Vec<Prop> {
    let cfg = &model.cfg;
    let s = &cfg.settings;
    let mut p: Vec<Prop> = vec![
        (
            Expectation::Always,
            "no acknowledged write is lost",
            no_lost_write,
        ),
        (
            Expectation::Always,
            "siblings are pairwise concurrent",
            siblings_concurrent,
        ),
        (
            Expectation::Always,
            "no superseded or deleted value comes back",
            nothing_comes_back,
        ),
    ];
    if s.forget {
        p.push((
            Expectation::Always,
            "no forgotten write comes back",
            no_resurrection,
        ));
        if !s.read_repair {
            p.push((
                Expectation::Always,
                "a forgotten history is not spread again",
                forgotten_stays_forgotten,
            ));
        }
    }
    if s.restore {
        p.push((
            Expectation::Always,
            "no dot names two writes",
            no_reused_dot,
        ));
        p.push((
            Expectation::Sometimes,
            "a server writes under a fresh identity after a wipe or restore",
            fresh_identity_written,
        ));
        p.push((
            Expectation::Sometimes,
            "a server restored from a backup of its own writes writes again",
            restored_backup_written,
        ));
    }
    if cfg.strict_quorum() {
        p.push((
            Expectation::Always,
            "a get sees every put acknowledged before it",
            read_your_acked_writes,
        ));
    }
    if s.scheme == Scheme::Dvv {
        p.push((
            Expectation::Always,
            "no more siblings than concurrent writes",
            siblings_bounded,
        ));
        p.push((
            Expectation::Always,
            "a put's context never covers a value the client did not see",
            reply_covers_only_seen,
        ));
        p.push((
            Expectation::Always,
            "a put's context covers its own write when it has no concurrent siblings",
            reply_covers_own_write,
        ));
    }
    if cfg.converges() {
        p.push((
            Expectation::Always,
            "quiescent states are converged",
            quiescent_converged,
        ));
        p.push((
            Expectation::Eventually,
            "replicas converge",
            eventually_converged,
        ));
    }
    if may_have_siblings(cfg) && s.scheme == Scheme::Dvv {
        p.push((Expectation::Sometimes, "siblings appear", has_siblings));
    }
    if s.w >= 2 && s.timeouts {
        p.push((
            Expectation::Sometimes,
            "a put fails for want of W",
            put_failed,
        ));
    }
    if s.sloppy {
        p.push((
            Expectation::Sometimes,
            "a hint is handed off",
            hint_handed_off,
        ));
    }
    if s.read_repair {
        p.push((
            Expectation::Sometimes,
            "read repair repairs a replica",
            read_repaired,
        ));
    }
    if s.reap {
        p.push((
            Expectation::Sometimes,
            "a tombstone is reaped",
            tombstone_reaped,
        ));
    }
    if s.forwarding {
        p.push((
            Expectation::Sometimes,
            "a forwarded put is acknowledged",
            forward_acknowledged,
        ));
    }
    if s.forget {
        p.push((
            Expectation::Sometimes,
            "a deleted key is forgotten",
            key_forgotten,
        ));
    }
    if can_be_stale(cfg) {
        p.push((
            Expectation::Sometimes,
            "a put with a stale context is refused",
            stale_put_refused,
        ));
    }
    p
}
