//! A client: runs a fixed script of gets, puts and deletes, one request at a time.
//!
//! Before each request the client chooses its coordinator among the first `coordinators` nodes
//! of the key's preference list, or, with forwarding, among all servers (a stateright random
//! choice, so every choice is explored). A put carries the context of the client's last get of
//! the key — or none, a blind write — and, as a ghost, the values that get saw (tombstones
//! included), which is what the put means to supersede. When
//! replies can be lost, a timeout makes the client give up and move on, so every run ends.
//! The script lives in the state, not the actor, so that clients with equal states are
//! interchangeable and symmetry reduction is sound.

use crate::actor::{Choice, Timer, Wiring};
use crate::config::{Op, Settings};
use crate::msg::Msg;
use crate::value::{Key, RequestId, Value, VersionVector};
use serde::{Deserialize, Serialize};
use stateright::actor::{model_timeout, Id, Out};
use stateright::{Rewrite, RewritePlan};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// A client's state.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct ClientState {
    /// The operations to issue, in order.
    pub script: Vec<Op>,
    /// Index of the next (or current) operation.
    pub next: u8,
    /// Whether the current operation awaits its reply.
    pub waiting: bool,
    /// Per key, the context of the last get and (a ghost) the values it saw, tombstones
    /// included.
    pub last: BTreeMap<Key, (VersionVector, BTreeSet<Value>)>,
}

impl ClientState {
    /// Whether the script is finished.
    pub fn done(&self) -> bool {
        usize::from(self.next) >= self.script.len()
    }

    /// The operation in progress or about to start.
    pub fn current(&self) -> Option<Op> {
        self.script.get(usize::from(self.next)).copied()
    }

    /// The name of the current request.
    pub fn req(&self, me: Id) -> RequestId {
        RequestId {
            client: me,
            seq: self.next + 1,
        }
    }
}

impl Rewrite<Id> for ClientState {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        ClientState {
            script: self.script.clone(),
            next: self.next,
            waiting: self.waiting,
            last: self
                .last
                .iter()
                .map(|(k, (c, vs))| (*k, (c.clone(), vs.rewrite(plan))))
                .collect(),
        }
    }
}

/// The client's behaviour.
pub struct Client<'a> {
    /// The configuration.
    pub cfg: &'a Settings,
}

impl Client<'_> {
    /// Starts the script.
    pub fn start(&self, script: &[Op], o: &mut Out<Wiring>) -> ClientState {
        let s = ClientState {
            script: script.to_vec(),
            next: 0,
            waiting: false,
            last: BTreeMap::new(),
        };
        self.offer_choice(&s, o);
        s
    }

    fn offer_choice(&self, s: &ClientState, o: &mut Out<Wiring>) {
        if let Some(op) = s.current() {
            let coords: Vec<_> = if self.cfg.forwarding {
                (0..self.cfg.ring.servers).collect()
            } else {
                let pref = self.cfg.ring.preference(op.key());
                pref.into_iter()
                    .take(usize::from(self.cfg.coordinators))
                    .collect()
            };
            let coords = coords
                .into_iter()
                .map(|n| Choice::Coordinator(Id::from(usize::from(n))))
                .collect();
            o.choose_random("coordinator", coords);
        }
    }

    /// The request the client sends for `op`.
    pub fn request(&self, s: &ClientState, me: Id, op: Op) -> Msg {
        let req = s.req(me);
        let write =
            |key: Key, context: VersionVector, seen: BTreeSet<Value>, tomb: bool| Msg::Put {
                req,
                key,
                context,
                value: Value {
                    client: me,
                    seq: req.seq,
                    key,
                    tomb,
                },
                seen,
            };
        let last = |key: Key| s.last.get(&key).cloned().unwrap_or_default();
        match op {
            Op::Get(key) => Msg::Get { req, key },
            Op::Put(key) => {
                let (context, seen) = last(key);
                write(key, context, seen, false)
            }
            Op::Blind(key) => write(key, VersionVector::new(), BTreeSet::new(), false),
            Op::Delete(key) => {
                let (context, seen) = last(key);
                write(key, context, seen, true)
            }
        }
    }

    /// The coordinator was chosen: send the request.
    pub fn on_choice(&self, st: &mut Cow<ClientState>, me: Id, coord: Id, o: &mut Out<Wiring>) {
        let Some(op) = st.current() else {
            return;
        };
        if st.waiting {
            return;
        }
        o.send(coord, self.request(st, me, op));
        st.to_mut().waiting = true;
        if self.cfg.client_timeouts {
            o.set_timer(Timer::Client, model_timeout());
        }
    }

    fn advance(&self, st: &mut Cow<ClientState>, o: &mut Out<Wiring>) {
        let s = st.to_mut();
        s.next += 1;
        s.waiting = false;
        if self.cfg.client_timeouts {
            o.cancel_timer(Timer::Client);
        }
        self.offer_choice(s, o);
    }

    /// A reply: record a get's result and move on.
    pub fn on_msg(&self, st: &mut Cow<ClientState>, me: Id, msg: Msg, o: &mut Out<Wiring>) {
        if !st.waiting || msg.answers() != Some(st.req(me)) {
            return;
        }
        if let (Msg::GetOk { context, seen, .. }, Some(op)) = (msg, st.current()) {
            st.to_mut().last.insert(op.key(), (context, seen));
        }
        self.advance(st, o);
    }

    /// The request timed out: give up on it.
    pub fn on_timeout(&self, st: &mut Cow<ClientState>, o: &mut Out<Wiring>) {
        if st.waiting {
            self.advance(st, o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            coordinators: 2,
            ..Settings::plain(3, 3, 1, 1)
        }
    }

    #[test]
    fn a_put_carries_the_context_of_the_last_get_and_a_blind_write_none() {
        let cfg = settings();
        let me = Id::from(5);
        let c = Client { cfg: &cfg };
        let mut o = Out::new();
        let s = c.start(&[Op::Get(0), Op::Put(0), Op::Blind(0)], &mut o);
        let mut st = Cow::Borrowed(&s);
        c.on_choice(&mut st, me, Id::from(1), &mut Out::new());
        let seen = Value {
            client: Id::from(6),
            seq: 1,
            key: 0,
            tomb: false,
        };
        let context = VersionVector::from([(1, 1)]);
        let reply = Msg::GetOk {
            req: st.req(me),
            values: BTreeSet::from([seen]),
            context: context.clone(),
            seen: BTreeSet::from([seen]),
        };
        c.on_msg(&mut st, me, reply.clone(), &mut Out::new());
        assert_eq!(st.next, 1);
        c.on_msg(&mut st, me, reply, &mut Out::new());
        assert_eq!(st.next, 1, "a duplicated reply is ignored");
        match c.request(&st, me, Op::Put(0)) {
            Msg::Put {
                context: c2,
                seen: s2,
                req,
                ..
            } => {
                assert_eq!((c2, s2, req.seq), (context, BTreeSet::from([seen]), 2));
            }
            other => panic!("{other:?}"),
        }
        match c.request(&st, me, Op::Blind(0)) {
            Msg::Put { context, seen, .. } => assert!(context.is_empty() && seen.is_empty()),
            other => panic!("{other:?}"),
        }
    }
}
