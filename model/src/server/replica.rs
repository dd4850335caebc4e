//! The replica: storing what a coordinator or a get's repair sends, answering reads.
//!
//! A replica merges every clock it receives into its stored one with `sync` — never
//! overwrites — and saves before it acknowledges (*persist before you acknowledge*). Merging
//! makes a replicated clock idempotent, commutative and associative on arrival, so a
//! duplicated, reordered or stale message cannot undo a newer write; saving first makes every
//! acknowledgement a coordinator counts towards `W` survive a crash of the replica.

use super::{Server, ServerState};
use crate::actor::Wiring;
use crate::clock::Clock;
use crate::msg::Msg;
use crate::value::{Key, RequestId};
use stateright::actor::{Id, Out};
use std::borrow::Cow;

impl Server<'_> {
    /// A coordinator's put for this replica: merge, save, acknowledge.
    pub(super) fn replicate(
        &self,
        st: &mut Cow<ServerState>,
        src: Id,
        req: RequestId,
        key: Key,
        clock: &Clock,
        o: &mut Out<Wiring>,
    ) {
        self.merge(st, key, clock, o);
        o.send(src, Msg::ReplicateAck { req });
    }

    /// A get coordinator's read: answer with the stored clock (empty when absent).
    pub(super) fn read(
        &self,
        st: &mut Cow<ServerState>,
        src: Id,
        req: RequestId,
        key: Key,
        o: &mut Out<Wiring>,
    ) {
        let clock = self.local(st, key);
        o.send(src, Msg::ReadReply { req, clock });
    }

    /// Read repair's merged clock: merge it like a replicated one (not acknowledged).
    pub(super) fn repair(
        &self,
        st: &mut Cow<ServerState>,
        key: Key,
        clock: &Clock,
        o: &mut Out<Wiring>,
    ) {
        self.merge(st, key, clock, o);
    }
}
