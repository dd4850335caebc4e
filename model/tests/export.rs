//! The exported traces, as the conformance crate reads them: a trace survives JSON lines, the
//! exhaustive export is deterministic and free of duplicates, a walk is reproducible from its
//! seed, and the `replay` configuration's export is pinned.

use shoal_model::config::{named, replay};
use shoal_model::msg::Msg;
use shoal_model::trace::exhaustive::{exhaustive, Exhaustive};
use shoal_model::trace::walk::{walk, walks};
use shoal_model::trace::{read_lines, write_lines, Event, Source, Trace, FORMAT, VERSION};
use std::collections::HashSet;

#[test]
fn a_trace_round_trips_through_json_lines() {
    let cfg = replay();
    let mut traces = exhaustive(&cfg, 6, Some(200));
    traces.extend(walks(&cfg, 20, 7, 60));
    for t in &traces {
        let line = t.to_json();
        assert!(!line.contains('\n'), "one trace per line");
        assert_eq!(&Trace::from_json(&line).expect("valid trace"), t);
        assert_eq!((t.format.as_str(), t.version), (FORMAT, VERSION));
        assert_eq!(t.settings.config(&t.config), cfg);
    }
    let file = std::env::temp_dir().join(format!("shoal-model-{}.jsonl", std::process::id()));
    assert_eq!(write_lines(&file, &traces).expect("written"), traces.len());
    let back = read_lines(&file).expect("read back");
    let _ = std::fs::remove_file(&file);
    assert_eq!(back, traces);
    assert!(Trace::from_json(&traces[0].to_json().replace(FORMAT, "other")).is_err());
}

#[test]
fn exhaustive_export_is_deterministic_and_deduplicated() {
    let cfg = replay();
    let a = exhaustive(&cfg, 5, None);
    let b = exhaustive(&cfg, 5, None);
    assert_eq!(
        a, b,
        "same configuration and depth, same traces in the same order"
    );
    let distinct: HashSet<String> = a.iter().map(Trace::to_json).collect();
    assert_eq!(distinct.len(), a.len(), "no trace twice");
    for t in &a {
        assert!(t.steps.len() <= 5);
        assert_eq!(t.source, Source::Exhaustive { depth: 5 });
    }
    assert_eq!(
        exhaustive(&cfg, 5, Some(10)),
        a[..10],
        "the cap keeps a prefix"
    );
}

/// Every step's observations are consistent with its event: a request is sent, a delivered
/// reply is the step's reply, and a Deliver of a put by its client carries the request.
#[test]
fn steps_observe_what_their_events_did() {
    for t in exhaustive(&replay(), 6, None) {
        for s in &t.steps {
            match &s.event {
                Event::Request { msg, client, .. } => {
                    assert!(s
                        .observed
                        .sent
                        .iter()
                        .any(|e| e.from == *client && &e.msg == msg));
                }
                Event::Deliver(e) if e.msg.answers().is_some() => {
                    assert_eq!(s.observed.reply.as_ref(), Some(e));
                }
                Event::Timer { request, .. } => {
                    let deadline = matches!(s.event, Event::Timer { node, .. } if node < 3);
                    assert_eq!(request.is_some(), deadline, "{:?}", s.event);
                }
                _ => assert!(s.observed.reply.is_none()),
            }
        }
    }
}

#[test]
fn the_replay_configuration_exports_over_ten_thousand_traces() {
    let cfg = replay();
    let mut export = Exhaustive::new(&cfg, 7, None);
    let mut traces = 0usize;
    let mut forwarded = false;
    for t in export.by_ref() {
        traces += 1;
        forwarded |= t.steps.iter().any(
            |s| matches!(&s.event, Event::Deliver(e) if matches!(e.msg, Msg::ForwardReply { .. })),
        );
    }
    assert_eq!((traces, export.visited()), (17_856, 26_695));
    assert!(forwarded, "some trace relays a forwarded put's answer");
}

#[test]
fn a_walk_is_reproduced_by_its_seed() {
    let cfg = named("chaos").expect("named configuration");
    let a = walk(&cfg, 42, 80);
    assert_eq!(a, walk(&cfg, 42, 80));
    assert_eq!(a.source, Source::Walk { seed: 42 });
    assert!(!a.steps.is_empty() && a.steps.len() <= 80);
    let batch = walks(&cfg, 3, 40, 80);
    assert_eq!(
        batch[2], a,
        "walk i of a batch seeded s is the walk seeded s + i"
    );
    assert_ne!(batch[0], batch[1]);
    // Without a step cap a walk of a configuration whose runs end stops at the end.
    let quorum = named("quorum").expect("named configuration");
    let done = walk(&quorum, 1, 10_000);
    assert!(done.steps.len() < 100);
    let last = done.steps.last().expect("some step");
    assert!(last.observed.replicas.iter().all(|r| !r.crashed));
}
