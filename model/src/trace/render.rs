//! The human-readable rendering of a trace, as `check` prints a counterexample.
//!
//! Kept apart from the format ([`super`]) because the two change for different reasons: the
//! JSON is a contract with the conformance crate, the rendering is for people and free to
//! change. Each step is one numbered line; under it, the replies a server sent to clients and
//! every server whose saved state changed (values as `c<client>#<seq>`, a tombstone marked †,
//! with the clock's context).

use super::{Event, Replica, Trace};
use crate::clock::Clock;
use crate::msg::Msg;
use std::fmt::Write as _;

impl Trace {
    /// A human-readable rendering, one numbered step per line with the stores it changed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut last = self.initial.clone();
        for (i, step) in self.steps.iter().enumerate() {
            let _ = writeln!(out, "{:>3}. {}", i + 1, describe(&step.event));
            for e in &step.observed.sent {
                if e.msg.answers().is_some() {
                    let _ = writeln!(
                        out,
                        "       server {} answers client {}: {}",
                        e.from,
                        e.to,
                        show_msg(&e.msg)
                    );
                }
            }
            for r in &step.observed.replicas {
                let before = last.iter().find(|l| l.node == r.node);
                if before != Some(r) {
                    let _ = writeln!(out, "       server {} now {}", r.node, show_replica(r));
                }
            }
            last = step.observed.replicas.clone();
        }
        out
    }
}

fn show_clock(v: &Clock) -> String {
    let vals: Vec<String> = v
        .values()
        .iter()
        .map(|x| {
            format!(
                "{}c{}#{}",
                if x.tomb { "†" } else { "" },
                usize::from(x.client),
                x.seq
            )
        })
        .collect();
    format!("{{{}}} ctx {:?}", vals.join(", "), v.context())
}

fn show_replica(r: &Replica) -> String {
    let mut parts: Vec<String> = r
        .data
        .iter()
        .map(|(k, v)| format!("k{k}={}", show_clock(v)))
        .collect();
    for (o, k, v) in &r.hints {
        parts.push(format!("hint(for {o}) k{k}={}", show_clock(v)));
    }
    if r.crashed {
        parts.push("(down)".into());
    }
    parts.join("; ")
}

fn show_msg(m: &Msg) -> String {
    match m {
        Msg::Put {
            key,
            context,
            value,
            ..
        } => format!(
            "{} k{key} value c{}#{} ctx {context:?}",
            if value.tomb { "Delete" } else { "Put" },
            usize::from(value.client),
            value.seq
        ),
        Msg::Replicate {
            key, clock, hint, ..
        } => format!(
            "Replicate k{key} {}{}",
            show_clock(clock),
            hint.map(|h| format!(" hint for {h}")).unwrap_or_default()
        ),
        Msg::ReadReply { clock, .. } => format!("ReadReply {}", show_clock(clock)),
        Msg::Repair { key, clock, .. } => format!("Repair k{key} {}", show_clock(clock)),
        Msg::Handoff { key, clock } => format!("Handoff k{key} {}", show_clock(clock)),
        Msg::Reap { key, clock, .. } => format!("Reap k{key} {}", show_clock(clock)),
        Msg::ForgetCheck { round, key } => format!("ForgetCheck k{key} round {round}"),
        Msg::ForgetCheckReply {
            round,
            key,
            clock,
            hinted,
        } => format!(
            "ForgetCheckReply k{key} round {round} {}{}",
            show_clock(clock),
            if *hinted { " hinted" } else { "" }
        ),
        Msg::Forget { key, clock } => format!("Forget k{key} {}", show_clock(clock)),
        Msg::GetOk {
            values, context, ..
        } => {
            let vals: Vec<String> = values
                .iter()
                .map(|x| format!("c{}#{}", usize::from(x.client), x.seq))
                .collect();
            format!("GetOk {{{}}} ctx {context:?}", vals.join(", "))
        }
        Msg::PutOk { req, context, .. } => format!(
            "PutOk c{}#{} ctx {context:?}",
            usize::from(req.client),
            req.seq
        ),
        Msg::PutStale { req } => format!(
            "PutStale c{}#{} (context ahead of the coordinator)",
            usize::from(req.client),
            req.seq
        ),
        Msg::Fail { req, put } => format!(
            "Fail {} c{}#{}",
            if *put { "put" } else { "get" },
            usize::from(req.client),
            req.seq
        ),
        Msg::Forward {
            key,
            context,
            value,
            ..
        } => format!(
            "Forward k{key} value {}c{}#{} ctx {context:?}",
            if value.tomb { "†" } else { "" },
            usize::from(value.client),
            value.seq
        ),
        Msg::ForwardReply { reply, .. } => format!("ForwardReply {}", show_msg(reply)),
        other => format!("{other:?}"),
    }
}

fn describe(e: &Event) -> String {
    match e {
        Event::Request {
            client,
            coordinator,
            msg,
            ..
        } => format!("client {client} → server {coordinator}: {}", show_msg(msg)),
        Event::Deliver(env) => format!("deliver {} → {}: {}", env.from, env.to, show_msg(&env.msg)),
        Event::Drop(env) => format!("drop {} → {}: {}", env.from, env.to, show_msg(&env.msg)),
        Event::Timer {
            node,
            timer,
            request,
        } => match request {
            Some(r) => format!(
                "timer {timer:?} fires at {node} (request c{}#{})",
                usize::from(r.client),
                r.seq
            ),
            None => format!("timer {timer:?} fires at {node}"),
        },
        Event::Crash { node } => format!("server {node} crashes"),
        Event::Recover { node } => format!("server {node} recovers"),
        Event::Restore { node, wipe: true } => {
            format!("server {node}'s data directory is wiped; it starts again")
        }
        Event::Restore { node, wipe: false } => {
            format!("server {node}'s data directory is restored from its backup; it starts again")
        }
    }
}
