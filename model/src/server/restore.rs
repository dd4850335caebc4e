//! Wiping a data directory or restoring it from a backup (`restore`), and the fresh identity
//! that keeps either from reusing a dot.
//!
//! A server issues a key's dots under its own actor, continuing the newest counter its clock
//! of the key holds. That is safe across crashes because a write is saved before any message
//! carries its dot. It is not safe across an operator's faults: a wiped directory, or one
//! restored from a backup, has lost dots the server already issued, and continuing from what
//! is left would issue them again for other writes — which every replica that holds the
//! first write would take as already seen, silently dropping the second.
//!
//! The fault: at any moment a running server stops, its directory is replaced — by its
//! backup (the directory as it last stopped, `Store::backup`) or by nothing (a wipe) — and
//! it starts again. What survives is outside the directory: the identity file's generation
//! (`boots`) and the ghosts.
//!
//! The remedy, the node's `identity.rs`: the identity is recorded twice, in the directory and
//! in an identity file outside it, with a generation every start raises in both; a start
//! whose two records differ takes a fresh identity. The model keeps the generation only
//! (`generation` in the directory, `boots` in the file): a wiped or restored directory's is
//! behind the file's. A fresh identity means actors with epochs beyond every epoch the server
//! ever used (`floor`). The node draws a random 64-bit identity; the model, which cannot draw
//! one that is certainly unused, takes the epoch after the largest in its ghost of issued
//! dots. Since that choice reads the ghost the property is judged against, what the check
//! establishes is the detection (every wipe and restore is noticed before the next write) and
//! that writes then use the fresh actors only — not the freshness of a random draw.
//!
//! Modelled: one backup per server, the directory as it last stopped, kept at every start;
//! not older backups, nor a directory copied to another server (the node's record names its
//! node, so such a copy differs from the file; `impl/tests/identity.rs`).
//!
//! A backup is taken of a stopped server. A copy of a running node's directory is not a
//! consistent copy of its storage engine, and a copy taken after the last start would carry
//! the current generation: restoring it could not be told from a restart.

use super::{Server, ServerState, Store};
use crate::actor::{Choice, Timer, Wiring};
use crate::dvv::epoch_of;
use crate::mutation::Mutation;
use stateright::actor::Out;
use std::borrow::Cow;

impl Server<'_> {
    /// Offers the operator's faults on this running server: restore its backup (when it holds
    /// anything) or wipe its directory (bounded by the configuration's `restores`).
    /// (Offered at a start, so a wipe is offered even while the directory is still empty: it
    /// may hold writes by the time the choice is taken. A restore of an empty backup is a wipe.)
    pub(super) fn offer_restore(&self, s: &ServerState, o: &mut Out<Wiring>) {
        let backup = s.store.backup.as_deref();
        let restorable = backup.is_some_and(|b| !b.data.is_empty() || !b.hints.is_empty());
        let mut choices = vec![Choice::Wipe];
        if restorable {
            choices.insert(0, Choice::Restore);
        }
        o.choose_random("restore", choices);
    }

    /// At a start: keeps the backup of the directory as it stopped, compares the directory's
    /// generation with the identity file's, and takes a fresh identity if the directory is
    /// older. `boots` has just been raised; `restarted` tells a restart from the first start.
    pub(super) fn check_identity(&self, restarted: bool, store: &mut Store) {
        store.backup = Some(Box::new(store.directory()));
        let older = store.generation.saturating_add(1) != store.boots;
        if restarted && older && !self.cfg.mutated(Mutation::RestoreKeepsIdentity) {
            let used = store.issued.keys().map(|(_, (a, _))| epoch_of(*a)).max();
            store.floor = used.map_or(store.floor, |e| e.saturating_add(1));
        }
        store.generation = store.boots;
    }

    /// The operator's fault: the server stops, its directory is replaced by its backup or
    /// wiped, and it starts again on what remains. Not while the server holds a message undecided (`lose`): like a crash then, that would
    /// be a loss outside the budget; the choice is offered again.
    pub fn on_restore(&self, st: &mut Cow<ServerState>, wipe: bool, o: &mut Out<Wiring>) {
        if st.pending.is_some() {
            self.offer_restore(st, o);
            return;
        }
        let s = st.to_mut();
        for slot in s
            .puts
            .values()
            .map(|p| p.slot)
            .chain(s.gets.values().map(|g| g.slot))
            .chain(s.forwards.values().map(|f| f.slot))
        {
            o.cancel_timer(Timer::Deadline(slot));
        }
        for timer in [Timer::AntiEntropy, Timer::Handoff, Timer::Expire] {
            o.cancel_timer(timer);
        }
        for key in s.forgets.keys().chain(s.store.data.keys()) {
            o.cancel_timer(Timer::Forget(*key));
        }
        let directory = match s.store.backup.as_deref() {
            Some(backup) if !wipe => backup.clone(),
            _ => Store::default(),
        };
        let mut store = s.store.with_directory(&directory);
        store.restores = store.restores.saturating_add(1);
        *s = self.start(s.me, &Some(store), o);
    }
}
