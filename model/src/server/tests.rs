//! Unit tests of the server's mechanisms, one step at a time: what a single message or timer
//! does to one server's state and what it sends.

use super::*;
use crate::clock::Scheme;
use crate::value::VersionVector;
use stateright::actor::Command;

fn settings(w: u8) -> Settings {
    Settings {
        sloppy: true,
        reap: true,
        timeouts: true,
        ..Settings::plain(4, 3, 1, w)
    }
}

fn client() -> Id {
    Id::from(7)
}

/// The client's first request, a blind put of key 0.
fn first_req() -> RequestId {
    RequestId {
        client: client(),
        seq: 1,
    }
}

/// The clock a first blind put of key 0 by the client creates at server 0.
fn first_write() -> Clock {
    Clock::empty(Scheme::Dvv).update(
        &VersionVector::new(),
        0,
        Value {
            client: client(),
            seq: 1,
            key: 0,
            tomb: false,
        },
    )
}

fn put(seq: u8, tomb: bool) -> Msg {
    let req = RequestId {
        client: client(),
        seq,
    };
    Msg::Put {
        req,
        key: 0,
        context: VersionVector::new(),
        value: Value {
            client: client(),
            seq,
            key: 0,
            tomb,
        },
        seen: BTreeSet::new(),
    }
}

fn boot(cfg: &Settings, me: NodeId) -> ServerState {
    Server { cfg }.start(me, &None, &mut Out::new())
}

#[test]
fn the_store_is_saved_before_the_put_is_acknowledged() {
    let cfg = settings(1);
    let s = boot(&cfg, 0);
    let mut st = Cow::Borrowed(&s);
    let mut o = Out::new();
    Server { cfg: &cfg }.on_msg(&mut st, client(), put(1, false), &mut o);
    let save = o.iter().position(
        |c| matches!(c, Command::Save(store) if store.data.get(&0).is_some_and(|v| v.values().len() == 1)),
    );
    let ack = o
        .iter()
        .position(|c| matches!(c, Command::Send(to, Msg::PutOk { .. }) if *to == client()));
    assert!(save.is_some() && ack.is_some() && save < ack, "{o:?}");
    let replicas = o
        .iter()
        .filter(|c| matches!(c, Command::Send(_, Msg::Replicate { hint: None, .. })))
        .count();
    assert_eq!(replicas, 2, "the rest of the preference list");
}

#[test]
fn a_duplicated_ack_does_not_count_twice_towards_w() {
    let cfg = settings(3);
    let server = Server { cfg: &cfg };
    let s = boot(&cfg, 0);
    let mut st = Cow::Borrowed(&s);
    server.on_msg(&mut st, client(), put(1, false), &mut Out::new());
    let req = first_req();
    let acked = |o: &Out<Wiring>| {
        o.iter()
            .any(|c| matches!(c, Command::Send(_, Msg::PutOk { .. })))
    };
    for _ in 0..2 {
        let mut o = Out::new();
        server.on_msg(&mut st, Id::from(1), Msg::ReplicateAck { req }, &mut o);
        assert!(!acked(&o), "two acks from one replica are not W = 3");
    }
    let mut o = Out::new();
    server.on_msg(&mut st, Id::from(2), Msg::ReplicateAck { req }, &mut o);
    assert!(acked(&o));
}

#[test]
fn a_lost_replicate_changes_nothing_but_the_budget_and_is_not_acknowledged() {
    let mut cfg = settings(1);
    cfg.lose = 1;
    let server = Server { cfg: &cfg };
    let clock = first_write();
    let req = first_req();
    let m = Msg::Replicate {
        req,
        key: 0,
        clock,
        hint: None,
    };
    let s = boot(&cfg, 1);
    let mut st = Cow::Borrowed(&s);
    let mut o = Out::new();
    server.on_msg(&mut st, Id::from(0), m.clone(), &mut o);
    assert!(st.pending.is_some(), "held until the choice");
    assert!(o
        .iter()
        .any(|c| matches!(c, Command::ChooseRandom(_, r) if r.len() == 2)));
    let mut blocked = st.clone();
    server.on_msg(&mut blocked, Id::from(2), m.clone(), &mut Out::new());
    assert_eq!(blocked, st, "nothing else is received meanwhile");
    let mut o = Out::new();
    server.on_choice(&mut st, true, &mut o);
    assert!(st.pending.is_none() && st.store.data.is_empty());
    assert_eq!(st.store.lost, 1);
    assert!(!o.iter().any(|c| matches!(c, Command::Send(..))), "no ack");
    let mut o = Out::new();
    server.on_msg(&mut st, Id::from(0), m, &mut o);
    assert!(st.pending.is_none(), "budget spent: processed at once");
    assert_eq!(st.store.data[&0].values().len(), 1);
    assert!(o
        .iter()
        .any(|c| matches!(c, Command::Send(_, Msg::ReplicateAck { .. }))));
}

#[test]
fn a_timeout_suspects_the_silent_and_writes_to_a_fallback_with_a_hint() {
    let cfg = settings(3);
    let server = Server { cfg: &cfg };
    let s = boot(&cfg, 0);
    let mut st = Cow::Borrowed(&s);
    server.on_msg(&mut st, client(), put(1, false), &mut Out::new());
    let mut o = Out::new();
    server.on_timeout(&mut st, &Timer::Deadline(0), &mut o);
    assert_eq!(st.suspects, BTreeSet::from([1, 2]));
    let hinted: Vec<(Id, Option<NodeId>)> = o
        .iter()
        .filter_map(|c| match c {
            Command::Send(to, Msg::Replicate { hint, .. }) => Some((*to, *hint)),
            _ => None,
        })
        .collect();
    assert_eq!(
        hinted,
        vec![(Id::from(3), Some(1))],
        "one fallback for two owners"
    );
    let mut o = Out::new();
    server.on_timeout(&mut st, &Timer::Deadline(0), &mut o);
    assert!(o
        .iter()
        .any(|c| matches!(c, Command::Send(_, Msg::Fail { put: true, .. }))));
    assert!(st.puts.is_empty());
}

#[test]
fn a_hint_is_kept_durably_until_its_owner_acknowledges_that_clock() {
    let cfg = settings(1);
    let server = Server { cfg: &cfg };
    let clock = first_write();
    let s = boot(&cfg, 3);
    let mut st = Cow::Borrowed(&s);
    let req = first_req();
    let mut o = Out::new();
    let m = Msg::Replicate {
        req,
        key: 0,
        clock: clock.clone(),
        hint: Some(1),
    };
    server.on_msg(&mut st, Id::from(0), m, &mut o);
    assert!(o
        .iter()
        .any(|c| matches!(c, Command::Save(s) if s.hints.contains_key(&(1, 0)))));
    assert!(st.store.data.is_empty(), "a hint is not the holder's data");
    let stale = Clock::empty(Scheme::Dvv);
    let m = Msg::HandoffAck {
        key: 0,
        clock: stale,
    };
    server.on_msg(&mut st, Id::from(1), m, &mut Out::new());
    assert!(st.store.hints.contains_key(&(1, 0)), "not that clock");
    let m = Msg::HandoffAck { key: 0, clock };
    server.on_msg(&mut st, Id::from(2), m.clone(), &mut Out::new());
    assert!(st.store.hints.contains_key(&(1, 0)), "not from the owner");
    server.on_msg(&mut st, Id::from(1), m, &mut Out::new());
    assert!(st.store.hints.is_empty());
}

#[test]
fn reaping_applies_only_to_the_clock_all_replicas_acknowledged() {
    let cfg = settings(1);
    let server = Server { cfg: &cfg };
    let s = boot(&cfg, 0);
    let mut st = Cow::Borrowed(&s);
    server.on_msg(&mut st, client(), put(1, true), &mut Out::new());
    let tomb = st.store.data[&0].clone();
    server.on_msg(&mut st, client(), put(2, false), &mut Out::new());
    let m = Msg::Reap {
        key: 0,
        clock: tomb,
        req: None,
    };
    server.on_msg(&mut st, Id::from(0), m, &mut Out::new());
    assert_eq!(st.store.data[&0].values().len(), 2, "a newer write arrived");
    let current = st.store.data[&0].clone();
    let m = Msg::Reap {
        key: 0,
        clock: current.clone(),
        req: None,
    };
    server.on_msg(&mut st, Id::from(0), m, &mut Out::new());
    assert!(st.store.data[&0].is_reaped());
    assert_eq!(st.store.data[&0].context(), current.context());
}

fn sends(o: &Out<Wiring>) -> Vec<(Id, &Msg)> {
    o.iter()
        .filter_map(|c| match c {
            Command::Send(to, m) => Some((*to, m)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_deadline_gives_up_only_its_own_request() {
    let cfg = Settings {
        sloppy: false,
        r: 2,
        ..settings(3)
    };
    let server = Server { cfg: &cfg };
    let s = boot(&cfg, 0);
    let mut st = Cow::Borrowed(&s);
    server.on_msg(&mut st, client(), put(1, false), &mut Out::new());
    let other = Msg::Get {
        req: RequestId {
            client: Id::from(8),
            seq: 1,
        },
        key: 0,
    };
    let mut o = Out::new();
    server.on_msg(&mut st, Id::from(8), other, &mut o);
    assert!(o
        .iter()
        .any(|c| matches!(c, Command::SetTimer(Timer::Deadline(1), _))));
    let mut o = Out::new();
    server.on_timeout(&mut st, &Timer::Deadline(0), &mut o);
    assert_eq!(
        sends(&o),
        vec![(
            client(),
            &Msg::Fail {
                req: first_req(),
                put: true
            }
        )]
    );
    assert!(st.puts.is_empty() && st.gets.len() == 1, "the get waits on");
}

#[test]
fn a_get_answers_at_r_and_repairs_once_every_replica_answered() {
    let cfg = Settings {
        read_repair: true,
        r: 2,
        ..settings(1)
    };
    let server = Server { cfg: &cfg };
    let s = boot(&cfg, 0);
    let mut st = Cow::Borrowed(&s);
    server.on_msg(&mut st, client(), put(1, false), &mut Out::new());
    let req = RequestId {
        client: client(),
        seq: 2,
    };
    server.on_msg(&mut st, client(), Msg::Get { req, key: 0 }, &mut Out::new());
    let stale = Clock::empty(Scheme::Dvv);
    let mut o = Out::new();
    let reply = Msg::ReadReply {
        req,
        clock: stale.clone(),
    };
    server.on_msg(&mut st, Id::from(1), reply.clone(), &mut o);
    let answered = sends(&o);
    assert!(
        matches!(answered[..], [(to, Msg::GetOk { values, .. })] if to == client() && values.len() == 1),
        "{answered:?}"
    );
    let mut o = Out::new();
    server.on_msg(&mut st, Id::from(1), reply, &mut o);
    assert!(o.is_empty(), "a second answer of a replica does not count");
    let mut o = Out::new();
    let reply = Msg::ReadReply { req, clock: stale };
    server.on_msg(&mut st, Id::from(2), reply, &mut o);
    let repaired: Vec<Id> = sends(&o)
        .into_iter()
        .filter(|(_, m)| matches!(m, Msg::Repair { .. }))
        .map(|(to, _)| to)
        .collect();
    assert_eq!(repaired, vec![Id::from(1), Id::from(2)]);
    assert!(st.gets.is_empty());
}

#[test]
fn a_forwarded_put_executes_once_and_its_answer_goes_to_the_forwarder() {
    let cfg = Settings {
        forwarding: true,
        dedup: true,
        ..settings(1)
    };
    let server = Server { cfg: &cfg };
    // Server 3 is outside key 0's preference list [0, 1, 2]: it forwards to server 0.
    let s = boot(&cfg, 3);
    let mut fwd = Cow::Borrowed(&s);
    let mut o = Out::new();
    server.on_msg(&mut fwd, client(), put(1, false), &mut o);
    let forwarded = match sends(&o)[..] {
        [(to, m @ Msg::Forward { .. })] if to == Id::from(0) => m.clone(),
        ref other => panic!("{other:?}"),
    };
    let s0 = boot(&cfg, 0);
    let mut coord = Cow::Borrowed(&s0);
    let mut o = Out::new();
    server.on_msg(&mut coord, Id::from(3), forwarded.clone(), &mut o);
    let answer = sends(&o)
        .into_iter()
        .find(|(_, m)| matches!(m, Msg::ForwardReply { .. }))
        .map(|(to, m)| (to, m.clone()));
    let Some((to, answer)) = answer else {
        panic!("W = 1: answered at once");
    };
    assert_eq!(to, Id::from(3));
    let mut o = Out::new();
    server.on_msg(&mut coord, Id::from(3), forwarded, &mut o);
    assert!(o.is_empty(), "a resent Forward is executed once");
    assert_eq!(coord.store.data[&0].values().len(), 1);
    let mut o = Out::new();
    server.on_msg(&mut fwd, Id::from(1), answer.clone(), &mut o);
    assert!(o.is_empty(), "only the node forwarded to is heard");
    server.on_msg(&mut fwd, Id::from(0), answer, &mut o);
    assert!(matches!(sends(&o)[..], [(to, Msg::PutOk { .. })] if to == client()));
    assert!(fwd.forwards.is_empty());
}

#[test]
fn the_coordinator_of_a_delete_reaps_its_own_copy_at_once() {
    let cfg = Settings {
        sloppy: false,
        ..Settings::plain(3, 2, 1, 2)
    };
    let cfg = Settings { reap: true, ..cfg };
    let server = Server { cfg: &cfg };
    let s = boot(&cfg, 0);
    let mut st = Cow::Borrowed(&s);
    server.on_msg(&mut st, client(), put(1, true), &mut Out::new());
    let mut o = Out::new();
    let ack = Msg::ReplicateAck { req: first_req() };
    server.on_msg(&mut st, Id::from(1), ack, &mut o);
    assert!(st.store.data[&0].is_reaped());
    let reaps: Vec<Id> = sends(&o)
        .into_iter()
        .filter(|(_, m)| matches!(m, Msg::Reap { .. }))
        .map(|(to, _)| to)
        .collect();
    assert_eq!(reaps, vec![Id::from(1)], "the other primaries are told");
}

#[test]
fn a_put_whose_context_is_ahead_is_refused_and_the_coordinator_catches_up() {
    let cfg = Settings {
        sloppy: false,
        read_repair: true,
        ..settings(1)
    };
    let server = Server { cfg: &cfg };
    // Server 1 has not received the client's first write (made at server 0): a put with the
    // context read from server 0 is ahead of it.
    let s = boot(&cfg, 1);
    let mut st = Cow::Borrowed(&s);
    let req = RequestId {
        client: client(),
        seq: 2,
    };
    let ahead = Msg::Put {
        req,
        key: 0,
        context: first_write().context(),
        value: Value {
            client: client(),
            seq: 2,
            key: 0,
            tomb: false,
        },
        seen: first_write().values(),
    };
    let mut o = Out::new();
    server.on_msg(&mut st, client(), ahead.clone(), &mut o);
    let sent = sends(&o);
    assert_eq!(sent[0], (client(), &Msg::PutStale { req }), "{sent:?}");
    let reads: Vec<Id> = sent
        .iter()
        .filter(|(_, m)| matches!(m, Msg::Read { .. }))
        .map(|(to, _)| *to)
        .collect();
    assert_eq!(reads, vec![Id::from(0), Id::from(2)], "every other primary");
    assert!(
        st.store.data.is_empty() && st.puts.is_empty(),
        "nothing stored"
    );
    // Server 0's answer brings server 1 up to date (its own answer, empty, differs).
    let reply = Msg::ReadReply {
        req,
        clock: first_write(),
    };
    server.on_msg(&mut st, Id::from(0), reply, &mut Out::new());
    let reply = Msg::ReadReply {
        req,
        clock: Clock::empty(Scheme::Dvv),
    };
    let mut o = Out::new();
    server.on_msg(&mut st, Id::from(2), reply, &mut o);
    assert!(sends(&o)
        .iter()
        .all(|(_, m)| !matches!(m, Msg::GetOk { .. })));
    assert_eq!(st.store.data.get(&0), Some(&first_write()));
    assert!(st.gets.is_empty(), "the catch-up ended");
    // The retry is accepted.
    let retry = match ahead {
        Msg::Put {
            context,
            value,
            seen,
            ..
        } => Msg::Put {
            req: RequestId { seq: 3, ..req },
            key: 0,
            context,
            value: Value { seq: 3, ..value },
            seen,
        },
        _ => unreachable!(),
    };
    let mut o = Out::new();
    server.on_msg(&mut st, client(), retry, &mut o);
    assert!(sends(&o)
        .iter()
        .any(|(_, m)| matches!(m, Msg::PutOk { .. })));
}

/// The dot server 0's clock of key 0 gave the client's write `seq`.
fn dot_of(s: &ServerState, seq: u8) -> Option<crate::dvv::Dot> {
    let value = Value {
        client: client(),
        seq,
        key: 0,
        tomb: false,
    };
    s.store.data.get(&0)?.dot_of(value)
}

/// Server 0 of a restore configuration after a blind put of `seq`, stored with W = 1.
fn written(cfg: &Settings, s: &ServerState, seq: u8) -> ServerState {
    let mut st = Cow::Borrowed(s);
    Server { cfg }.on_msg(&mut st, client(), put(seq, false), &mut Out::new());
    st.into_owned()
}

fn restore_settings(mutation: Option<Mutation>) -> Settings {
    Settings {
        restore: true,
        mutation,
        ..Settings::plain(2, 2, 1, 1)
    }
}

#[test]
fn a_restart_keeps_the_identity_and_continues_its_counter() {
    let cfg = restore_settings(None);
    let s = written(&cfg, &boot(&cfg, 0), 1);
    let s = Server { cfg: &cfg }.start(0, &Some(s.store), &mut Out::new());
    assert_eq!(s.store.floor, 0);
    let s = written(&cfg, &s, 2);
    assert_eq!(dot_of(&s, 2), Some((0, 2)));
    assert!(!s.store.reissued);
}

#[test]
fn a_restored_backup_takes_a_fresh_identity_and_reuses_no_dot() {
    for mutation in [None, Some(Mutation::RestoreKeepsIdentity)] {
        let cfg = restore_settings(mutation);
        // Write 1, stop (the backup holds write 1), start, write 2: dot (0, 2).
        let s = written(&cfg, &boot(&cfg, 0), 1);
        let s = Server { cfg: &cfg }.start(0, &Some(s.store), &mut Out::new());
        let s = written(&cfg, &s, 2);
        assert_eq!(dot_of(&s, 2), Some((0, 2)));
        // The directory goes back to the backup; write 3 must not get (0, 2) again.
        let mut st = Cow::Borrowed(&s);
        Server { cfg: &cfg }.on_restore(&mut st, false, &mut Out::new());
        let s = st.into_owned();
        assert_eq!(dot_of(&s, 1), Some((0, 1)), "the backup's write is back");
        assert_eq!(dot_of(&s, 2), None, "the later write is not");
        let s = written(&cfg, &s, 3);
        if mutation.is_none() {
            assert!(s.store.floor >= 1);
            assert!(dot_of(&s, 3).is_some_and(|(a, _)| crate::dvv::epoch_of(a) >= 1));
            assert!(!s.store.reissued);
        } else {
            assert_eq!(dot_of(&s, 3), Some((0, 2)), "the bug reissues the dot");
            assert!(s.store.reissued);
        }
    }
}

#[test]
fn a_wiped_directory_takes_a_fresh_identity() {
    let cfg = restore_settings(None);
    let s = written(&cfg, &boot(&cfg, 0), 1);
    let mut st = Cow::Borrowed(&s);
    Server { cfg: &cfg }.on_restore(&mut st, true, &mut Out::new());
    let s = written(&cfg, &st, 2);
    assert!(s.store.data.get(&0).is_some_and(|c| c.values().len() == 1));
    assert_eq!(
        dot_of(&s, 2).map(|(a, c)| (crate::dvv::epoch_of(a), c)),
        Some((1, 1))
    );
    assert_eq!(s.store.restores, 1, "counted outside the directory");
    assert!(!s.store.reissued);
}
