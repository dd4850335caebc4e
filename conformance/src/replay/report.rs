//! What a divergence prints: the trace up to the step, rendered as the model's checker prints
//! traces, and both sides' state after it — every server's data and hints as the model saved
//! them and as the node stores them, each as writes (live, history) and as its raw clock.

use super::driver::Driver;
use super::placement::node_id;
use super::view::{model_abstract, node_abstract};
use crate::store::TestStore;
use std::fmt::Write as _;

impl<S: TestStore> Driver<'_, S> {
    /// The trace's prefix through step `step` and both sides' state.
    pub(super) fn report(&self, step: usize) -> String {
        let mut out = String::new();
        let t = self.trace;
        let _ = writeln!(
            out,
            "trace: config {} ({:?}), {} steps",
            t.config,
            t.source,
            t.steps.len()
        );
        let mut prefix = t.clone();
        prefix.steps.truncate(step + 1);
        let _ = writeln!(out, "trace prefix:");
        out.push_str(&prefix.render());
        let replicas = t
            .steps
            .get(step)
            .map_or(&t.initial, |s| &s.observed.replicas);
        let _ = writeln!(out, "model (saved stores after step {}):", step + 1);
        for r in replicas {
            let state = if r.crashed { " (crashed)" } else { "" };
            let _ = writeln!(out, "  server {}{state}:", r.node);
            for (k, c) in &r.data {
                let a = model_abstract(&self.mdots, *k, Some(c));
                let _ = writeln!(out, "    key {k}: {}   raw {c:?}", show(&a));
            }
            for (o, k, c) in &r.hints {
                let a = model_abstract(&self.mdots, *k, Some(c));
                let _ = writeln!(out, "    hint for {o} key {k}: {}   raw {c:?}", show(&a));
            }
        }
        let _ = writeln!(out, "node (stores after step {}):", step + 1);
        for s in 0..self.servers {
            let id = node_id(s);
            let Some(n) = self.h.nodes.get(&id) else {
                continue;
            };
            let state = if n.core.is_some() { "" } else { " (down)" };
            let _ = writeln!(out, "  node {id} (server {s}){state}, time {:?}:", n.now);
            for k in self.place.model_keys() {
                if let Ok(Some(c)) = n.store.load(&self.place.storage_key(k)) {
                    let a = node_abstract(&self.ndots, k, Some(&c));
                    let _ = writeln!(out, "    key {k}: {}   raw {c:?}", show(&a));
                }
            }
            for ((o, skey), c) in n.store.all_hints() {
                let _ = writeln!(out, "    hint for {o} {skey:?}: raw {c:?}");
            }
            if let Some(core) = &n.core {
                let _ = writeln!(out, "    detector {:?}", core.peer_health());
            }
        }
        let _ = writeln!(out, "node messages in flight:");
        for m in &self.h.network {
            let _ = writeln!(out, "  {} → {}: {:?}", m.from, m.to, m.msg);
        }
        out
    }
}

fn show(a: &Result<crate::abstraction::Abstract, String>) -> String {
    match a {
        Ok(a) => a.to_string(),
        Err(e) => format!("<{e}>"),
    }
}
