//! Replay in CI: the model's traces run against the node's real cores, compared after every
//! step through one abstraction function. Every exhaustive trace of the `replay`
//! configuration (3 servers, 2 clients, a network that drops, a crash, read repair and
//! forwarding) to depth 7 — 17,856 traces — on the in-memory store, a slice of them on the
//! node's fjall store, and 1,000 seeded walks of each mechanism's configuration. Traces the
//! node cannot follow are counted by reason and printed, never skipped silently; a divergence
//! fails the test with the trace prefix and both sides' state.

use shoal_conformance::replay::{Source, StoreKind, Tally};

/// Walks per mechanism (`SHOAL_REPLAY_WALKS` changes it).
fn walks() -> u64 {
    std::env::var("SHOAL_REPLAY_WALKS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

/// Replays `source`, prints the tally and the first example of each unsupported reason, and
/// fails on any divergence or broken replay. At least `min_followed` of the traces must be
/// followed to the end, so that "unsupported" cannot quietly swallow a mechanism.
fn replays(source: Source, store: StoreKind, min_followed: f64) -> Tally {
    let tally = Tally::run(&source, store).expect("traces");
    println!("{tally}");
    for (reason, example) in &tally.examples {
        println!("first trace unsupported for {reason}:\n{example}");
    }
    assert!(
        tally.broken.is_empty(),
        "broken replays:\n{}",
        tally.broken.join("\n")
    );
    assert_eq!(
        tally.diverged,
        0,
        "the node diverged from the model:\n{}",
        tally.divergences.join("\n")
    );
    let followed = tally.conforming as f64 / tally.traces.max(1) as f64;
    assert!(
        followed >= min_followed,
        "only {:.0}% of the traces followed to the end",
        followed * 100.0
    );
    tally
}

fn walks_of(config: &str, min_followed: f64) {
    let tally = replays(
        Source::Walks {
            config: config.into(),
            count: walks(),
            seed: 1,
            steps: 200,
        },
        StoreKind::Mem,
        min_followed,
    );
    assert_eq!(tally.traces as u64, walks());
}

#[test]
fn every_trace_of_the_replay_configuration_to_depth_7() {
    let tally = replays(
        Source::Exhaustive {
            config: "replay".into(),
            depth: 7,
            max: None,
        },
        StoreKind::Mem,
        0.95,
    );
    assert!(tally.traces >= 10_000, "{} traces", tally.traces);
}

#[test]
fn exhaustive_traces_on_the_fjall_store() {
    replays(
        Source::Exhaustive {
            config: "replay".into(),
            depth: 7,
            max: Some(150),
        },
        StoreKind::Fjall,
        0.95,
    );
}

#[test]
fn walks_quorum_put_and_get() {
    walks_of("quorum", 1.0);
}

#[test]
fn walks_concurrent_writers_and_siblings() {
    walks_of("siblings", 1.0);
}

#[test]
fn walks_forwarding() {
    walks_of("forward", 1.0);
}

#[test]
fn walks_deletes_and_reaping() {
    walks_of("reap", 1.0);
}

#[test]
fn walks_deletes_over_a_duplicating_network() {
    walks_of("duplicating", 1.0);
}

#[test]
fn walks_write_quorum_of_three_over_a_duplicating_network() {
    walks_of("acks", 1.0);
}

#[test]
fn walks_read_repair() {
    walks_of("repair", 1.0);
}

#[test]
fn walks_crash_and_recovery() {
    walks_of("crash", 1.0);
}

#[test]
fn walks_message_loss() {
    walks_of("lossy", 0.9);
}

#[test]
fn walks_every_fault_at_once() {
    walks_of("chaos", 0.9);
}

#[test]
fn walks_sloppy_quorum_and_hinted_handoff() {
    walks_of("sloppy", 0.7);
}

#[test]
fn walks_anti_entropy() {
    walks_of("entropy", 1.0);
    walks_of("entropy-loss", 1.0);
}

#[test]
fn walks_of_the_replay_configuration() {
    walks_of("replay", 0.9);
}

/// The exported format round-trips: traces written as JSON lines by the model replay from the
/// file as they did in-process.
#[test]
fn traces_replay_from_a_json_lines_file() {
    let cfg = shoal_model::config::named("forward").expect("configuration");
    let traces = shoal_model::trace::walk::walks(&cfg, 50, 7, 200);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("forward.jsonl");
    shoal_model::trace::write_lines(&path, traces.iter()).expect("write");
    let tally = replays(Source::File { path }, StoreKind::Mem, 1.0);
    assert_eq!(tally.traces, 50);
}
