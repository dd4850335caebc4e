//! The lost update of Dynamo's coordinator-incremented vector clock, found and pinned, and its
//! absence with DVVSets.

use shoal_model::check::check;
use shoal_model::clock::Scheme;
use shoal_model::config::named;
use shoal_model::trace::{Event, Trace};

const LOST: &str = "no acknowledged write is lost";

#[test]
fn classic_clock_loses_an_acknowledged_write() {
    let cfg = named("classic").expect("classic configuration");
    let report = check(&cfg, 1);
    assert_eq!((report.unique, report.generated), (148, 409));
    let outcome = report.outcome(LOST).expect("property checked");
    assert!(!outcome.ok, "the classic scheme must lose a write");
    let trace = outcome.trace.as_ref().expect("counterexample");
    let expected = "\
  1. client 3 → server 0: Put k0 value c3#1 ctx {}
  2. client 4 → server 0: Put k0 value c4#1 ctx {}
  3. deliver 3 → 0: Put k0 value c3#1 ctx {}
       server 0 answers client 3: PutOk c3#1 ctx {0: 1}
       server 0 now k0={c3#1} ctx {0: 1}
  4. deliver 4 → 0: Put k0 value c4#1 ctx {}
       server 0 answers client 4: PutOk c4#1 ctx {0: 2}
       server 0 now k0={c4#1} ctx {0: 2}
  5. deliver 0 → 2: Replicate k0 {c3#1} ctx {0: 1}
       server 2 now k0={c3#1} ctx {0: 1}
  6. deliver 0 → 2: Replicate k0 {c4#1} ctx {0: 2}
       server 2 now k0={c4#1} ctx {0: 2}
  7. deliver 0 → 1: Replicate k0 {c3#1} ctx {0: 1}
       server 1 now k0={c3#1} ctx {0: 1}
  8. deliver 0 → 1: Replicate k0 {c4#1} ctx {0: 2}
       server 1 now k0={c4#1} ctx {0: 2}
";
    let lines = |s: &str| s.lines().map(str::trim).collect::<Vec<_>>().join("\n");
    assert_eq!(lines(&trace.render()), lines(expected));
    // The trace survives a JSON round trip, as the conformance crate will read it.
    let back = Trace::from_json(&trace.to_json()).expect("valid JSON trace");
    assert_eq!(&back, trace);
    assert!(matches!(
        back.steps[0].event,
        Event::Request {
            client: 3,
            coordinator: 0,
            ..
        }
    ));
}

#[test]
fn dvvsets_keep_both_writes_as_siblings() {
    let mut cfg = named("classic").expect("classic configuration");
    cfg.settings.scheme = Scheme::Dvv;
    let report = check(&cfg, 1);
    assert!(report.ok(), "{:?}", report.outcomes);
    assert!(report.outcome("siblings appear").is_some_and(|o| o.ok));
}
